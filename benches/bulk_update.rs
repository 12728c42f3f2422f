//! `bulk_update` against the two ways a batch of updates is usually written: Django's
//! `bulk_update` form (one `UPDATE … SET col = CASE WHEN key = … THEN … END WHERE key IN (…)`
//! per batch of 1 000 rows) and one `UPDATE … WHERE key = …` per row, each in one transaction.
//!
//! ```text
//! cargo bench --bench bulk_update -- --rows 20000 --reps 5
//! ```
//!
//! One measurement: the table holds `rows` rows (`qty` 0); every variant sets every row's `qty`
//! (to its index + 1), keyed by the unique `sku`, in the same shuffled order. Nothing of the
//! setup is timed. Repetitions run the variants round-robin, starting with a different one each
//! time, and check the table afterwards (the sum of `qty`); the table reports medians of wall
//! time and of the process's CPU time, and ratios of medians to the crate's.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "measure.rs"]
mod measure;

use measure::{median, process_cpu_time};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use diesel_upsert::prelude::*;
use std::time::{Duration, Instant};

diesel::table! {
    bu_bench (id) {
        id -> Int8,
        sku -> Text,
        qty -> Int4,
    }
}

const CREATE: &str = "DROP TABLE IF EXISTS bu_bench; \
    CREATE TABLE bu_bench (id BIGSERIAL PRIMARY KEY, sku TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL)";

/// Django's default batch for `bulk_update` on PostgreSQL is unbounded; 1 000 is what most
/// code passes as `batch_size`.
const CASE_BATCH: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Crate,
    CaseWhen,
    PerRow,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Crate => {
                "crate `bulk_update` (`UPDATE … FROM unnest`, rows locked in key order)"
            }
            Variant::CaseWhen => "Django form: `CASE WHEN sku = … THEN …` per 1 000 rows",
            Variant::PerRow => "one `diesel::update(..).filter(sku.eq(..))` per row",
        }
    }
}

fn reset(conn: &mut PgConnection, n: usize) {
    conn.batch_execute(&format!(
        "TRUNCATE bu_bench; INSERT INTO bu_bench (sku, qty) \
         SELECT format('k%s', lpad(i::text, 8, '0')), 0 FROM generate_series(0, {n} - 1) AS i; \
         ANALYZE bu_bench"
    ))
    .expect("reset");
}

fn run(conn: &mut PgConnection, variant: Variant, changes: &[(String, i32)]) {
    match variant {
        Variant::Crate => {
            let rows: Vec<_> = changes
                .iter()
                .map(|(sku, qty)| (bu_bench::sku.eq(sku), bu_bench::qty.eq(*qty)))
                .collect();
            let outcomes = diesel_upsert::bulk_update(bu_bench::table)
                .set(&rows)
                .by(bu_bench::sku)
                .apply(conn)
                .unwrap();
            assert_eq!(outcomes.len(), changes.len());
        }
        Variant::CaseWhen => conn
            .transaction::<_, diesel::result::Error, _>(|conn| {
                for batch in changes.chunks(CASE_BATCH) {
                    let mut sql = String::from("UPDATE bu_bench SET qty = CASE");
                    for i in 0..batch.len() {
                        sql.push_str(&format!(" WHEN sku = ${} THEN ${}", 2 * i + 1, 2 * i + 2));
                    }
                    sql.push_str(" END WHERE sku IN (");
                    for i in 0..batch.len() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("${}", 2 * i + 1));
                    }
                    sql.push(')');
                    let mut query = diesel::sql_query(sql).into_boxed();
                    for (sku, qty) in batch {
                        query = query.bind::<Text, _>(sku).bind::<Integer, _>(*qty);
                    }
                    let updated = query.execute(conn)?;
                    assert_eq!(updated, batch.len());
                }
                Ok(())
            })
            .unwrap(),
        Variant::PerRow => conn
            .transaction::<_, diesel::result::Error, _>(|conn| {
                for (sku, qty) in changes {
                    let updated = diesel::update(bu_bench::table.filter(bu_bench::sku.eq(sku)))
                        .set(bu_bench::qty.eq(*qty))
                        .execute(conn)?;
                    assert_eq!(updated, 1);
                }
                Ok(())
            })
            .unwrap(),
    }
}

fn main() {
    let (mut rows, mut reps) = (20_000_usize, 5_usize);
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--rows" => rows = pair[1].parse().expect("--rows N"),
            "--reps" => reps = pair[1].parse().expect("--reps N"),
            _ => {}
        }
    }
    let conn = &mut PgConnection::establish(harness::database_url()).expect("connection");
    conn.batch_execute(CREATE).expect("create table");
    conn.batch_execute("SET synchronous_commit = off").unwrap();
    // Every variant sends the keys in the same shuffled order.
    let changes: Vec<(String, i32)> = (0..rows)
        .map(|i| (i * 7919) % rows)
        .map(|i| (format!("k{i:08}"), i as i32 + 1))
        .collect();
    let expected: i64 = (1..=rows as i64).sum();
    let variants = [Variant::Crate, Variant::CaseWhen, Variant::PerRow];
    let mut samples = vec![(Vec::new(), Vec::new()); variants.len()];
    for rep in 0..=reps {
        for k in 0..variants.len() {
            let v = (k + rep) % variants.len();
            reset(conn, rows);
            let (cpu, wall) = (process_cpu_time(), Instant::now());
            run(conn, variants[v], &changes);
            let (wall, cpu) = (wall.elapsed(), process_cpu_time() - cpu);
            let sum: Option<i64> = bu_bench::table
                .select(diesel::dsl::sum(bu_bench::qty))
                .get_result(conn)
                .unwrap();
            assert_eq!(
                sum,
                Some(expected),
                "{:?} left the table wrong",
                variants[v]
            );
            if rep > 0 {
                samples[v].0.push(wall);
                samples[v].1.push(cpu);
            }
        }
    }
    println!("# bulk_update: {rows} rows keyed by a unique text column, {reps} repetitions");
    println!();
    println!("| variant | wall (median) | ÷ crate | client CPU | ÷ crate |");
    println!("|---|---:|---:|---:|---:|");
    let medians: Vec<(Duration, Duration)> = samples
        .into_iter()
        .map(|(wall, cpu)| (median(wall), median(cpu)))
        .collect();
    let (base_wall, base_cpu) = medians[0];
    for (variant, (wall, cpu)) in variants.iter().zip(&medians) {
        println!(
            "| {} | {:.1} ms | {:.2} | {:.1} ms | {:.2} |",
            variant.name(),
            wall.as_secs_f64() * 1e3,
            wall.as_secs_f64() / base_wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() / base_cpu.as_secs_f64()
        );
    }
}
