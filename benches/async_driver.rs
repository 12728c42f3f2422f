//! The asynchronous driver against the synchronous one, in one run: the same calls on
//! diesel-async's `AsyncPgConnection` (on a current-thread tokio runtime) and on Diesel's
//! `PgConnection`.
//!
//! ```text
//! cargo bench --bench async_driver --features async
//! cargo bench --bench async_driver --features async -- --ops 2000 --rows 100000 --reps 7
//! ```
//!
//! Workloads (each on a table emptied and seeded with half of the keys before every measurement;
//! nothing of the setup is timed):
//! - `single`: `ops` sequential `insert_and_get` (`DO UPDATE`, returning the row), alternating
//!   between a seeded key (update) and a new one (insert); beside it, the same statement
//!   written with Diesel's own `on_conflict(..).do_update()` on each driver (`plain`), which
//!   shows what the driver itself costs;
//! - `bulk_execute`: one `bulk_execute` (`DO UPDATE`) of `rows` rows, half of them updates;
//! - `bulk_insert_and_get`: the same rows, each returned as a model.
//!
//! Every repetition runs the variants of a workload back to back, starting with a different one
//! each time, and checks the table afterwards (row count and the sum of a column) and what the
//! call returned, so that no variant measures nothing. The table reports medians of wall time
//! and of the process's CPU time (every thread: the client's share of the work), and ratios of
//! medians to the workload's first row (the crate on the sync driver).

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "measure.rs"]
mod measure;

use measure::{median, process_cpu_time};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::time::{Duration, Instant};

diesel::table! {
    async_bench (id) {
        id -> Int8,
        sku -> Text,
        name -> Text,
        qty -> Int4,
    }
}

#[derive(Insertable, Clone)]
#[diesel(table_name = async_bench)]
struct NewRow {
    sku: String,
    name: String,
    qty: i32,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = async_bench, check_for_backend(diesel::pg::Pg))]
#[allow(dead_code)]
struct Row {
    id: i64,
    sku: String,
    name: String,
    qty: i32,
}

const CREATE: &str = "DROP TABLE IF EXISTS async_bench; \
    CREATE TABLE async_bench (id BIGSERIAL PRIMARY KEY, sku TEXT NOT NULL UNIQUE, \
    name TEXT NOT NULL, qty INTEGER NOT NULL)";

/// `n` rows; row `i` has key `k<i>` and quantity `i + 1`.
fn input(n: usize) -> Vec<NewRow> {
    (0..n)
        .map(|i| NewRow {
            sku: format!("k{i:08}"),
            name: format!("name {i}"),
            qty: i as i32 + 1,
        })
        .collect()
}

/// Empties the table and stores every second key of `n` (the ones the calls update), with
/// quantity 0.
fn reset(conn: &mut PgConnection, n: usize) {
    conn.batch_execute(&format!(
        "TRUNCATE async_bench; INSERT INTO async_bench (sku, name, qty) \
         SELECT format('k%s', lpad(i::text, 8, '0')), 'old', 0 \
         FROM generate_series(0, {} - 1, 2) AS i; ANALYZE async_bench",
        n
    ))
    .expect("reset");
}

/// Rows in the table, and the sum of their quantities: `n` rows and `n (n + 1) / 2` after any
/// of the workloads on `n` keys.
fn check(conn: &mut PgConnection, n: usize) {
    let (count, sum): (i64, Option<i64>) = async_bench::table
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::sum(async_bench::qty),
        ))
        .get_result(conn)
        .expect("check");
    let n = n as i64;
    assert_eq!(
        (count, sum.unwrap_or(0)),
        (n, n * (n + 1) / 2),
        "table state"
    );
}

/// The crate's builder for these rows (one row or a slice), on either driver's prelude.
macro_rules! upsert {
    ($rows:expr) => {
        diesel::insert_into(async_bench::table)
            .values($rows)
            .on_conflict_do(async_bench::sku, ConflictAction::Update)
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Single,
    BulkExecute,
    BulkGet,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Single => "insert_and_get",
            Workload::BulkExecute => "bulk_execute",
            Workload::BulkGet => "bulk_insert_and_get",
        }
    }
}

/// Who sends the workload: the crate or Diesel's own upsert (`plain`, single-row only), on
/// either driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Sync,
    Async,
    PlainSync,
    PlainAsync,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Sync => "crate, sync",
            Variant::Async => "crate, async",
            Variant::PlainSync => "plain Diesel, sync",
            Variant::PlainAsync => "plain diesel-async",
        }
    }
}

/// The crate on the sync driver: runs the workload on `input`, returns how many results came
/// back.
fn run_sync(conn: &mut PgConnection, workload: Workload, input: &[NewRow]) -> usize {
    use diesel_upsert::prelude::*;
    match workload {
        Workload::Single => input
            .iter()
            .map(|row| {
                let got: Row = upsert!(row).insert_and_get(conn).unwrap();
                assert_eq!(got.qty, row.qty);
            })
            .count(),
        Workload::BulkExecute => {
            let summary = upsert!(input).bulk_execute(conn).unwrap();
            (summary.inserted + summary.updated) as usize
        }
        Workload::BulkGet => {
            let got: Vec<Row> = upsert!(input).bulk_insert_and_get(conn).unwrap();
            got.len()
        }
    }
}

/// The crate on the async driver: the same calls, awaited.
async fn run_async(conn: &mut AsyncPgConnection, workload: Workload, input: &[NewRow]) -> usize {
    use diesel_upsert::asynchronous::prelude::*;
    match workload {
        Workload::Single => {
            for row in input {
                let got: Row = upsert!(row).insert_and_get(conn).await.unwrap();
                assert_eq!(got.qty, row.qty);
            }
            input.len()
        }
        Workload::BulkExecute => {
            let summary = upsert!(input).bulk_execute(conn).await.unwrap();
            (summary.inserted + summary.updated) as usize
        }
        Workload::BulkGet => {
            let got: Vec<Row> = upsert!(input).bulk_insert_and_get(conn).await.unwrap();
            got.len()
        }
    }
}

/// Diesel's own single-row upsert returning the row (the statement the crate sends, less the
/// inserted flag), on the sync driver.
fn plain_sync(conn: &mut PgConnection, input: &[NewRow]) -> usize {
    use diesel::upsert::excluded;
    for row in input {
        let got: Row = diesel::insert_into(async_bench::table)
            .values(row)
            .on_conflict(async_bench::sku)
            .do_update()
            .set((
                async_bench::name.eq(excluded(async_bench::name)),
                async_bench::qty.eq(excluded(async_bench::qty)),
            ))
            .returning(Row::as_returning())
            .get_result(conn)
            .unwrap();
        assert_eq!(got.qty, row.qty);
    }
    input.len()
}

/// [`plain_sync`] on diesel-async.
async fn plain_async(conn: &mut AsyncPgConnection, input: &[NewRow]) -> usize {
    use diesel::upsert::excluded;
    for row in input {
        let query = diesel::insert_into(async_bench::table)
            .values(row)
            .on_conflict(async_bench::sku)
            .do_update()
            .set((
                async_bench::name.eq(excluded(async_bench::name)),
                async_bench::qty.eq(excluded(async_bench::qty)),
            ))
            .returning(Row::as_returning());
        let got: Row = diesel_async::RunQueryDsl::get_result(query, conn)
            .await
            .unwrap();
        assert_eq!(got.qty, row.qty);
    }
    input.len()
}

struct Options {
    ops: usize,
    rows: usize,
    reps: usize,
}

fn options() -> Options {
    let mut o = Options {
        ops: 5_000,
        rows: 100_000,
        reps: 7,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--ops" => o.ops = value().expect("--ops N"),
            "--rows" => o.rows = value().expect("--rows N"),
            "--reps" => o.reps = value().expect("--reps N"),
            _ => {} // `cargo bench` passes `--bench`
        }
        i += 1;
    }
    o
}

fn main() {
    let o = options();
    let url = harness::database_url();
    let sync = &mut PgConnection::establish(url).expect("sync connection");
    sync.batch_execute(CREATE).expect("create table");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let asynchronous = &mut runtime
        .block_on(AsyncPgConnection::establish(url))
        .expect("async connection");
    // As in the other benchmarks: fsync would hide the client's costs.
    let setting = "SET synchronous_commit = off";
    sync.batch_execute(setting).unwrap();
    runtime
        .block_on(diesel_async::SimpleAsyncConnection::batch_execute(
            asynchronous,
            setting,
        ))
        .unwrap();
    println!("# The async driver against the sync driver");
    println!();
    println!(
        "- {} single-row operations, {} rows per bulk call, {} repetitions after one untimed",
        o.ops, o.rows, o.reps
    );
    println!("- async: diesel-async 0.9 `AsyncPgConnection` on a current-thread tokio runtime");
    println!();
    println!("| workload | variant | wall (median) | ÷ crate, sync | client CPU | ÷ crate, sync |");
    println!("|---|---|---:|---:|---:|---:|");
    for workload in [Workload::Single, Workload::BulkExecute, Workload::BulkGet] {
        let (n, variants) = match workload {
            Workload::Single => (
                o.ops,
                &[
                    Variant::Sync,
                    Variant::Async,
                    Variant::PlainSync,
                    Variant::PlainAsync,
                ][..],
            ),
            _ => (o.rows, &[Variant::Sync, Variant::Async][..]),
        };
        let rows = input(n);
        let mut samples = vec![(Vec::new(), Vec::new()); variants.len()];
        for rep in 0..=o.reps {
            for k in 0..variants.len() {
                let v = (k + rep) % variants.len();
                reset(sync, n);
                let (cpu, wall) = (process_cpu_time(), Instant::now());
                let results = match variants[v] {
                    Variant::Sync => run_sync(sync, workload, &rows),
                    Variant::Async => runtime.block_on(run_async(asynchronous, workload, &rows)),
                    Variant::PlainSync => plain_sync(sync, &rows),
                    Variant::PlainAsync => runtime.block_on(plain_async(asynchronous, &rows)),
                };
                let (wall, cpu) = (wall.elapsed(), process_cpu_time() - cpu);
                assert_eq!(results, n, "{workload:?} {:?} results", variants[v]);
                check(sync, n);
                if rep > 0 {
                    samples[v].0.push(wall);
                    samples[v].1.push(cpu);
                }
            }
        }
        let medians: Vec<(Duration, Duration)> = samples
            .into_iter()
            .map(|(wall, cpu)| (median(wall), median(cpu)))
            .collect();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
        let (base_wall, base_cpu) = medians[0];
        for (variant, (wall, cpu)) in variants.iter().zip(&medians) {
            println!(
                "| {} ({n}) | {} | {} | {} | {} | {} |",
                workload.name(),
                variant.name(),
                ms(*wall),
                ratio(*wall, base_wall),
                ms(*cpu),
                ratio(*cpu, base_cpu)
            );
        }
    }
}
