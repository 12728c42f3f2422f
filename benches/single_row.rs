//! Single-row upserts returning the row: this crate against hand-written Diesel, the same
//! statement as a raw prepared statement (rust-postgres), and the naive SELECT-then-write.
//!
//! ```text
//! cargo bench --bench single_row                       # 10 000 operations, 7 timed rounds
//! cargo bench --bench single_row -- --ops 500 --reps 1 # a quick run (CI)
//! SINGLE_ROW_OPS=500 SINGLE_ROW_REPS=1 cargo bench --bench single_row
//! ```
//!
//! Every variant runs on its own connection (`SET synchronous_commit = off` on each, so that
//! fsync does not hide the client and planning costs), all without TLS: rust-postgres runs
//! with `NoTls`, so the Diesel connections get `sslmode=disable` (libpq would otherwise
//! negotiate TLS with a server that offers it and pay for encryption the raw variant does not). One measurement: the table is emptied,
//! `ops / 2` rows are seeded, then `ops` sequential upserts alternate between a seeded key
//! (update) and a new key (insert), each returning the row. Nothing of the setup is timed.
//! Rounds run the four variants round-robin, starting with a different variant each round, so
//! that the noise of a shared machine spreads over all of them; the table reports medians and
//! ratios of medians of the same run.
//!
//! Before the timed rounds, one untimed round checks that every variant really wrote what it
//! should (row count and every value, read back with rust-postgres) and counts the statements
//! each Diesel connection sends and prepares. Every timed round also checks the rows the
//! variant returned (key, name, quantity), so a variant cannot silently measure nothing.
//!
//! Diagnostics: `SINGLE_ROW_ONLY=crate,raw` runs only some variants (e.g. under `perf`);
//! `SINGLE_ROW_SSLMODE=prefer` lets the Diesel connections use TLS, to measure what it costs.
//! The CPU columns read `/proc/<task>/schedstat` of the client thread and of the server process
//! behind the connection (Linux, server on the same host; zero otherwise).

#[path = "../tests/harness/mod.rs"]
mod harness;

use chrono::{DateTime, Utc};
use diesel::connection::{InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use harness::models::{NewProduct, Product};
use harness::schema::products;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const DEFAULT_OPS: usize = 10_000;
const DEFAULT_REPS: usize = 7;

fn main() -> BoxResult<()> {
    let config = Config::from_env_and_args()?;
    let variants = selected_variants()?;
    let mut bench = Bench::connect()?;

    println!("# Single-row upserts");
    println!();
    println!("- machine: {}", machine_description());
    println!("- server: {}", bench.server_version()?);
    println!("- connections: {}", bench.connection_settings()?);
    println!(
        "- {} operations per measurement ({} seeded keys updated, {} new keys inserted), \
         {} timed rounds after one untimed checking round",
        config.ops,
        config.ops.div_ceil(2),
        config.ops / 2,
        config.reps
    );
    println!();

    // Untimed round: table state, statement counts, prepared statements.
    let mut counters = Vec::new();
    let mut digests = Vec::new();
    for &variant in &variants {
        let counter = bench.instrument(variant);
        bench.measure(variant, "check", config.ops)?;
        digests.push(bench.verify_table(variant, "check", config.ops)?);
        counters.push((variant, counter));
    }
    digests.dedup();
    if digests.len() != 1 {
        return Err("the variants left different table states".into());
    }
    println!(
        "- every variant left the same table state (digest {:016x})",
        digests[0]
    );
    bench.remove_instrumentation();
    bench.report_statements(&counters, config.ops)?;

    let mut samples: Vec<(Variant, Vec<Sample>)> =
        variants.iter().map(|v| (*v, Vec::new())).collect();
    for round in 0..config.reps {
        let prefix = format!("r{round}");
        // Round-robin, each round starting one variant later.
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let sample = bench.measure(variants[index], &prefix, config.ops)?;
            samples[index].1.push(sample);
        }
        let line: Vec<String> = samples
            .iter()
            .map(|(v, s)| format!("{} {:.1} µs", v.short(), per_op(s[round].wall, config.ops)))
            .collect();
        eprintln!("round {}/{}: {}", round + 1, config.reps, line.join(", "));
    }

    print_table(&samples, config.ops);
    Ok(())
}

/// Number of operations and of timed rounds: `--ops N` / `--reps N` on the command line (after
/// `cargo bench --bench single_row --`), else `SINGLE_ROW_OPS` / `SINGLE_ROW_REPS`, else
/// 10 000 and 7.
struct Config {
    ops: usize,
    reps: usize,
}

/// `SINGLE_ROW_ONLY=crate,raw`: run only some variants (for profiling one of them). The table
/// then leaves out the ratios it cannot compute.
fn selected_variants() -> BoxResult<Vec<Variant>> {
    let Ok(list) = std::env::var("SINGLE_ROW_ONLY") else {
        return Ok(Variant::ALL.to_vec());
    };
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|name| {
            Variant::ALL
                .into_iter()
                .find(|v| v.short() == name.trim())
                .ok_or_else(|| format!("SINGLE_ROW_ONLY: unknown variant {name:?}").into())
        })
        .collect()
}

impl Config {
    fn from_env_and_args() -> BoxResult<Config> {
        let mut ops = env_usize("SINGLE_ROW_OPS")?.unwrap_or(DEFAULT_OPS);
        let mut reps = env_usize("SINGLE_ROW_REPS")?.unwrap_or(DEFAULT_REPS);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let target = match name.as_str() {
                "--ops" => &mut ops,
                "--reps" => &mut reps,
                // `cargo bench` passes `--bench`; other harness flags are ignored too.
                _ => continue,
            };
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a number"))?;
            *target = value
                .parse()
                .map_err(|e| format!("{name} {value:?}: {e}"))?;
        }
        if ops < 2 || reps < 1 {
            return Err("--ops must be at least 2 and --reps at least 1".into());
        }
        Ok(Config { ops, reps })
    }
}

fn env_usize(name: &str) -> BoxResult<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(
            v.trim().parse().map_err(|e| format!("{name}={v:?}: {e}"))?,
        )),
        _ => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `on_conflict_do(sku, ConflictAction::Update).insert_and_get::<Product, _>`.
    Crate,
    /// `on_conflict(sku).do_update().set((… excluded(…) …)).get_result::<Product>`.
    Diesel,
    /// The crate's SQL text, prepared once with rust-postgres.
    Raw,
    /// `SELECT … FOR UPDATE`, then `UPDATE … RETURNING` or `INSERT … RETURNING`, in a
    /// transaction per row.
    Naive,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Crate,
        Variant::Diesel,
        Variant::Raw,
        Variant::Naive,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Crate => "diesel-upsert `on_conflict_do(..).insert_and_get`",
            Variant::Diesel => "hand-written Diesel `on_conflict().do_update().set(..)`",
            Variant::Raw => "raw prepared statement (rust-postgres)",
            Variant::Naive => "naive SELECT … FOR UPDATE, then UPDATE/INSERT, per-row transaction",
        }
    }

    fn index(self) -> usize {
        Variant::ALL
            .iter()
            .position(|v| *v == self)
            .expect("listed")
    }

    fn short(self) -> &'static str {
        match self {
            Variant::Crate => "crate",
            Variant::Diesel => "diesel",
            Variant::Raw => "raw",
            Variant::Naive => "naive",
        }
    }
}

/// One operation: the values upserted for one key.
struct Op {
    sku: String,
    name: String,
    description: String,
    qty: i32,
    price_cents: i64,
}

impl Op {
    fn new_product(&self) -> NewProduct<'_> {
        NewProduct {
            sku: &self.sku,
            name: &self.name,
            description: Some(&self.description),
            qty: self.qty,
            price_cents: self.price_cents,
        }
    }
}

/// `"<variant>-<prefix>-<key>"`: keys `0..seed` are seeded, `seed..` are new.
fn key(variant: Variant, prefix: &str, k: usize) -> String {
    format!("{}-{prefix}-{k:06}", variant.short())
}

fn seed_count(ops: usize) -> usize {
    ops.div_ceil(2)
}

/// Operation `i` touches a seeded key when `i` is even and a new key when it is odd; every key
/// is touched exactly once.
fn key_of_op(i: usize, ops: usize) -> usize {
    if i % 2 == 0 {
        i / 2
    } else {
        seed_count(ops) + i / 2
    }
}

fn operations(variant: Variant, prefix: &str, ops: usize) -> Vec<Op> {
    (0..ops)
        .map(|i| {
            let k = key_of_op(i, ops);
            Op {
                sku: key(variant, prefix, k),
                name: format!("item {k} written by op {i}"),
                description: format!("description {i}"),
                qty: i as i32,
                price_cents: 3 * i as i64 + 1,
            }
        })
        .collect()
}

/// Checks every returned row against its operation. Part of each variant's timed loop, so it
/// costs every variant the same.
#[derive(Default)]
struct Returned {
    rows: usize,
    wrong: usize,
}

impl Returned {
    fn record(&mut self, op: &Op, sku: &str, name: &str, qty: i32) {
        self.rows += 1;
        if sku != op.sku || name != op.name || qty != op.qty {
            self.wrong += 1;
        }
    }
}

struct Bench {
    crate_conn: PgConnection,
    diesel_conn: PgConnection,
    naive_conn: PgConnection,
    raw: postgres::Client,
    /// The crate's statement text, prepared once on `raw`.
    raw_statement: postgres::Statement,
    /// The pid of the server process behind each variant's connection, in `Variant::ALL` order.
    backends: Vec<String>,
    /// Seeds and checks the table; never timed.
    admin: postgres::Client,
}

impl Bench {
    fn connect() -> BoxResult<Bench> {
        // rust-postgres runs without TLS here (`NoTls`); libpq (under Diesel) would negotiate
        // TLS with a server that offers it. Same transport for every variant, unless
        // `SINGLE_ROW_SSLMODE` says otherwise (to measure what TLS costs the Diesel variants).
        let sslmode = std::env::var("SINGLE_ROW_SSLMODE").unwrap_or_else(|_| "disable".into());
        let url = with_sslmode(harness::database_url(), &sslmode);
        let diesel_connection = || -> BoxResult<PgConnection> {
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute("SET synchronous_commit = off")?;
            Ok(conn)
        };
        let crate_conn = diesel_connection()?;
        let diesel_conn = diesel_connection()?;
        let naive_conn = diesel_connection()?;
        let mut raw = harness::pg_client();
        raw.batch_execute("SET synchronous_commit = off")?;
        let raw_statement = raw.prepare(&crate_statement_text()?)?;
        let mut admin = harness::pg_client();
        admin.batch_execute(
            "SET synchronous_commit = off; \
             ALTER TABLE products SET (autovacuum_enabled = false)",
        )?;
        let mut bench = Bench {
            crate_conn,
            diesel_conn,
            naive_conn,
            raw,
            raw_statement,
            backends: Vec::new(),
            admin,
        };
        for variant in Variant::ALL {
            let pid = bench.backend_pid(variant)?;
            bench.backends.push(pid);
        }
        Ok(bench)
    }

    /// TLS and `synchronous_commit` of each variant's connection, as the server sees them.
    fn connection_settings(&mut self) -> BoxResult<String> {
        let pids: Vec<i32> = self
            .backends
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        let mut described = Vec::new();
        for (variant, pid) in Variant::ALL.iter().zip(&pids) {
            let row = self.admin.query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = $1), false)",
                &[pid],
            )?;
            let tls: bool = row.get(0);
            described.push(format!(
                "{} {}",
                variant.short(),
                if tls { "TLS" } else { "no TLS" }
            ));
        }
        Ok(format!(
            "one per variant, {}; synchronous_commit = {}",
            described.join(", "),
            self.synchronous_commit()?
        ))
    }

    /// `synchronous_commit` on every variant's connection: `off` when they all agree.
    fn synchronous_commit(&mut self) -> BoxResult<String> {
        #[derive(QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            synchronous_commit: String,
        }
        let mut values = Vec::new();
        for variant in Variant::ALL {
            let value = match self.diesel_conn(variant) {
                Some(conn) => {
                    diesel::sql_query("SHOW synchronous_commit")
                        .get_result::<Setting>(conn)?
                        .synchronous_commit
                }
                None => self.raw.query_one("SHOW synchronous_commit", &[])?.get(0),
            };
            values.push(value);
        }
        values.dedup();
        Ok(values.join("/"))
    }

    fn server_version(&mut self) -> BoxResult<String> {
        let row = self.admin.query_one("SELECT version()", &[])?;
        Ok(row.get(0))
    }

    fn diesel_conn(&mut self, variant: Variant) -> Option<&mut PgConnection> {
        match variant {
            Variant::Crate => Some(&mut self.crate_conn),
            Variant::Diesel => Some(&mut self.diesel_conn),
            Variant::Naive => Some(&mut self.naive_conn),
            Variant::Raw => None,
        }
    }

    /// The pid of the server process serving the variant's connection.
    fn backend_pid(&mut self, variant: Variant) -> BoxResult<String> {
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        const SQL: &str = "SELECT pg_backend_pid() AS pid";
        let pid: i32 = match self.diesel_conn(variant) {
            Some(conn) => diesel::sql_query(SQL).get_result::<Pid>(conn)?.pid,
            None => self.raw.query_one(SQL, &[])?.get(0),
        };
        Ok(pid.to_string())
    }

    /// Empties the table, seeds `ops / 2` keys of the variant and `prefix`, refreshes the
    /// statistics. Untimed.
    fn prepare_table(&mut self, variant: Variant, prefix: &str, ops: usize) -> BoxResult<()> {
        let keys: Vec<String> = (0..seed_count(ops))
            .map(|k| key(variant, prefix, k))
            .collect();
        self.admin
            .batch_execute("TRUNCATE products RESTART IDENTITY")?;
        self.admin.execute(
            "INSERT INTO products (sku, name, description, qty, price_cents) \
             SELECT k, 'seeded ' || k, 'seeded', -1, -1 FROM unnest($1::text[]) AS k",
            &[&keys],
        )?;
        self.admin.batch_execute("ANALYZE products")?;
        Ok(())
    }

    /// One measurement: prepares the table (untimed), runs `ops` upserts (timed), checks the
    /// returned rows.
    fn measure(&mut self, variant: Variant, prefix: &str, ops: usize) -> BoxResult<Sample> {
        let ops_list = operations(variant, prefix, ops);
        self.prepare_table(variant, prefix, ops)?;
        let backend = &self.backends[variant.index()];
        let mut returned = Returned::default();
        let client_before = cpu_time("thread-self");
        let server_before = cpu_time(backend);
        let started = Instant::now();
        match variant {
            Variant::Crate => run_crate(&mut self.crate_conn, &ops_list, &mut returned)?,
            Variant::Diesel => run_diesel(&mut self.diesel_conn, &ops_list, &mut returned)?,
            Variant::Raw => run_raw(&mut self.raw, &self.raw_statement, &ops_list, &mut returned)?,
            Variant::Naive => run_naive(&mut self.naive_conn, &ops_list, &mut returned)?,
        }
        let sample = Sample {
            wall: started.elapsed(),
            client_cpu: cpu_time("thread-self").saturating_sub(client_before),
            server_cpu: cpu_time(backend).saturating_sub(server_before),
        };
        if returned.rows != ops || returned.wrong != 0 {
            return Err(format!(
                "{}: {} rows returned for {ops} operations, {} of them with wrong values",
                variant.short(),
                returned.rows,
                returned.wrong
            )
            .into());
        }
        Ok(sample)
    }

    /// Reads the table back with rust-postgres: exactly the seeded and the new keys, each with
    /// the values of the one operation that touched it.
    /// Returns a digest of the table state with the variant's key prefix removed, which must be
    /// the same for every variant.
    fn verify_table(&mut self, variant: Variant, prefix: &str, ops: usize) -> BoxResult<u64> {
        let rows = self.admin.query(
            "SELECT sku, name, description, qty, price_cents FROM products ORDER BY sku",
            &[],
        )?;
        let mut expected = operations(variant, prefix, ops);
        expected.sort_by(|a, b| a.sku.cmp(&b.sku));
        if rows.len() != expected.len() {
            return Err(format!(
                "{}: {} rows in the table, expected {}",
                variant.short(),
                rows.len(),
                expected.len()
            )
            .into());
        }
        let key_prefix = key(variant, prefix, 0);
        let key_prefix = key_prefix.trim_end_matches('0');
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        for (row, op) in rows.iter().zip(&expected) {
            let found: (String, String, Option<String>, i32, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            std::hash::Hash::hash(
                &(
                    found.0.strip_prefix(key_prefix),
                    &found.1,
                    &found.2,
                    found.3,
                    found.4,
                ),
                &mut digest,
            );
            let wanted = (
                op.sku.clone(),
                op.name.clone(),
                Some(op.description.clone()),
                op.qty,
                op.price_cents,
            );
            if found != wanted {
                return Err(format!(
                    "{}: table holds {found:?}, expected {wanted:?}",
                    variant.short()
                )
                .into());
            }
        }
        println!(
            "- checked {}: {} rows ({} updated, {} inserted), every value as written",
            variant.short(),
            rows.len(),
            seed_count(ops),
            ops / 2
        );
        Ok(std::hash::Hasher::finish(&digest))
    }

    /// Counts what a Diesel connection sends.
    fn instrument(&mut self, variant: Variant) -> Option<Arc<Mutex<Counts>>> {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let sink = counts.clone();
        let conn = self.diesel_conn(variant)?;
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            let mut counts = sink.lock().unwrap();
            match event {
                InstrumentationEvent::StartQuery { query, .. } => {
                    counts.sent += 1;
                    if counts.upsert_sql.is_none() {
                        let text = query.to_string();
                        if text.starts_with("INSERT") && text.contains("ON CONFLICT") {
                            let sql = text.split(" -- binds: ").next().unwrap_or("").to_owned();
                            counts.upsert_sql = Some(sql);
                        }
                    }
                }
                InstrumentationEvent::CacheQuery { .. } => counts.cached += 1,
                _ => {}
            }
        });
        Some(counts)
    }

    fn remove_instrumentation(&mut self) {
        for variant in [Variant::Crate, Variant::Diesel, Variant::Naive] {
            if let Some(conn) = self.diesel_conn(variant) {
                conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});
            }
        }
    }

    /// Prints the statements each connection sent in the checking round and what PostgreSQL
    /// holds prepared on it (`pg_prepared_statements`).
    fn report_statements(
        &mut self,
        counters: &[(Variant, Option<Arc<Mutex<Counts>>>)],
        ops: usize,
    ) -> BoxResult<()> {
        println!();
        println!("Statements in the checking round ({ops} operations per variant):");
        println!();
        println!(
            "| variant | statements sent | put in Diesel's statement cache \
             | prepared on the server (generic / custom plans) |"
        );
        println!("|---|---:|---:|---|");
        for (variant, counts) in counters {
            let prepared = self.prepared_statements(*variant)?;
            let prepared = if prepared.is_empty() {
                "none".to_owned()
            } else {
                prepared
                    .iter()
                    .map(|(kind, generic, custom)| format!("{kind} ({generic} / {custom})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (sent, cached) = match counts {
                Some(c) => {
                    let c = c.lock().unwrap();
                    (c.sent.to_string(), c.cached.to_string())
                }
                None => (
                    format!("{ops} (executions)"),
                    "n/a (prepared once)".to_owned(),
                ),
            };
            println!("| {} | {sent} | {cached} | {prepared} |", variant.short());
        }
        println!();
        for (variant, counts) in counters {
            if let Some(sql) = counts
                .as_ref()
                .and_then(|c| c.lock().unwrap().upsert_sql.clone())
            {
                println!("- {} sends: `{sql}`", variant.short());
            }
        }
        println!();
        Ok(())
    }

    /// The statements prepared on the variant's connection (`pg_prepared_statements`): the
    /// first word of each (`INSERT`, `SELECT`) and its generic and custom plan counts.
    fn prepared_statements(&mut self, variant: Variant) -> BoxResult<Vec<(String, i64, i64)>> {
        const SQL: &str = "SELECT split_part(statement, ' ', 1) AS kind, generic_plans, \
                           custom_plans FROM pg_prepared_statements \
                           WHERE statement NOT LIKE '%pg_prepared_statements%' ORDER BY name";
        #[derive(QueryableByName)]
        struct Plans {
            #[diesel(sql_type = diesel::sql_types::Text)]
            kind: String,
            #[diesel(sql_type = BigInt)]
            generic_plans: i64,
            #[diesel(sql_type = BigInt)]
            custom_plans: i64,
        }
        Ok(match self.diesel_conn(variant) {
            Some(conn) => diesel::sql_query(SQL)
                .load::<Plans>(conn)?
                .into_iter()
                .map(|p| (p.kind, p.generic_plans, p.custom_plans))
                .collect(),
            None => self
                .raw
                .query(SQL, &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        })
    }
}

/// `url` with `sslmode=<mode>` added, unless it already names an sslmode.
fn with_sslmode(url: &str, mode: &str) -> String {
    if url.contains("sslmode=") || mode.is_empty() {
        url.to_owned()
    } else if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}sslmode={mode}")
    } else {
        format!("{url} sslmode={mode}")
    }
}

/// The SQL text of the crate's upsert, as Diesel prepares it: one upsert on a throwaway
/// connection inside a transaction that is rolled back.
fn crate_statement_text() -> BoxResult<String> {
    let mut conn = harness::test_connection();
    let captured: Arc<Mutex<Option<String>>> = Arc::default();
    let sink = captured.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::CacheQuery { sql, .. } = event {
            *sink.lock().unwrap() = Some(sql.to_owned());
        }
    });
    let op = Op {
        sku: "probe".to_owned(),
        name: "probe".to_owned(),
        description: "probe".to_owned(),
        qty: 0,
        price_cents: 0,
    };
    run_crate(
        &mut conn,
        std::slice::from_ref(&op),
        &mut Returned::default(),
    )?;
    let sql = captured.lock().unwrap().take();
    sql.ok_or_else(|| "the crate's upsert was not put in Diesel's statement cache".into())
}

#[derive(Default)]
struct Counts {
    sent: usize,
    cached: usize,
    upsert_sql: Option<String>,
}

fn run_crate(conn: &mut PgConnection, ops: &[Op], returned: &mut Returned) -> BoxResult<()> {
    for op in ops {
        let new = op.new_product();
        let p = diesel::insert_into(products::table)
            .values(&new)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .insert_and_get::<Product, _>(conn)?;
        returned.record(op, &p.sku, &p.name, p.qty);
    }
    Ok(())
}

fn run_diesel(conn: &mut PgConnection, ops: &[Op], returned: &mut Returned) -> BoxResult<()> {
    use products::{description, name, price_cents, qty, sku};
    for op in ops {
        let new = op.new_product();
        let p = diesel::insert_into(products::table)
            .values(&new)
            .on_conflict(sku)
            .do_update()
            .set((
                name.eq(excluded(name)),
                description.eq(excluded(description)),
                qty.eq(excluded(qty)),
                price_cents.eq(excluded(price_cents)),
            ))
            .get_result::<Product>(conn)?;
        returned.record(op, &p.sku, &p.name, p.qty);
    }
    Ok(())
}

fn run_raw(
    client: &mut postgres::Client,
    statement: &postgres::Statement,
    ops: &[Op],
    returned: &mut Returned,
) -> BoxResult<()> {
    for op in ops {
        let row = client.query_one(
            statement,
            &[&op.sku, &op.name, &op.description, &op.qty, &op.price_cents],
        )?;
        // Read the whole row into the same model the Diesel variants load.
        let p = Product {
            id: row.get(0),
            sku: row.get(1),
            name: row.get(2),
            description: row.get(3),
            qty: row.get(4),
            price_cents: row.get(5),
            created_at: DateTime::<Utc>::from(row.get::<_, SystemTime>(6)),
            updated_at: DateTime::<Utc>::from(row.get::<_, SystemTime>(7)),
        };
        let _inserted: bool = row.get(8);
        returned.record(op, &p.sku, &p.name, p.qty);
    }
    Ok(())
}

fn run_naive(conn: &mut PgConnection, ops: &[Op], returned: &mut Returned) -> BoxResult<()> {
    use products::{description, name, price_cents, qty, sku};
    for op in ops {
        let new = op.new_product();
        let p = conn.transaction(|conn| {
            let existing = products::table
                .filter(sku.eq(&op.sku))
                .for_update()
                .select(Product::as_select())
                .first::<Product>(conn)
                .optional()?;
            match existing {
                Some(row) => diesel::update(products::table.find(row.id))
                    .set((
                        name.eq(&op.name),
                        description.eq(&op.description),
                        qty.eq(op.qty),
                        price_cents.eq(op.price_cents),
                    ))
                    .returning(Product::as_select())
                    .get_result::<Product>(conn),
                None => diesel::insert_into(products::table)
                    .values(&new)
                    .returning(Product::as_select())
                    .get_result::<Product>(conn),
            }
        })?;
        returned.record(op, &p.sku, &p.name, p.qty);
    }
    Ok(())
}

/// One timed measurement: wall-clock time, and the CPU time of the client thread and of the
/// server backend serving the connection (Linux `schedstat`, nanoseconds on CPU; zero where
/// unavailable, e.g. a remote server).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    client_cpu: Duration,
    server_cpu: Duration,
}

/// Nanoseconds `task` (`thread-self` or a pid) has spent on a CPU.
fn cpu_time(task: &str) -> Duration {
    std::fs::read_to_string(format!("/proc/{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn per_op(total: Duration, ops: usize) -> f64 {
    total.as_secs_f64() * 1e6 / ops as f64
}

fn median(values: impl Iterator<Item = Duration>) -> Duration {
    let mut sorted: Vec<Duration> = values.collect();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn print_table(samples: &[(Variant, Vec<Sample>)], ops: usize) {
    let wall = |variant: Variant| {
        samples
            .iter()
            .find(|(v, _)| *v == variant)
            .map(|(_, s)| median(s.iter().map(|s| s.wall)).as_secs_f64())
    };
    let ratio = |time: f64, base: Option<f64>| match base {
        Some(base) => format!("{:.2}×", time / base),
        None => "–".to_owned(),
    };
    let raw = wall(Variant::Raw);
    let diesel = wall(Variant::Diesel);
    let reps = samples[0].1.len();
    println!(
        "Medians of {reps} rounds, {ops} operations each (CPU: client thread and server backend):"
    );
    println!();
    println!(
        "| variant | median total | µs/op | µs/op min–max | client CPU µs/op | server CPU µs/op \
         | × raw prepared | × hand-written Diesel |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (variant, s) in samples {
        let m = median(s.iter().map(|s| s.wall));
        let min = s.iter().map(|s| s.wall).min().unwrap_or_default();
        let max = s.iter().map(|s| s.wall).max().unwrap_or_default();
        println!(
            "| {} | {:.3} s | {:.1} | {:.1}–{:.1} | {:.1} | {:.1} | {} | {} |",
            variant.label(),
            m.as_secs_f64(),
            per_op(m, ops),
            per_op(min, ops),
            per_op(max, ops),
            per_op(median(s.iter().map(|s| s.client_cpu)), ops),
            per_op(median(s.iter().map(|s| s.server_cpu)), ops),
            ratio(m.as_secs_f64(), raw),
            ratio(m.as_secs_f64(), diesel),
        );
    }
    println!();
    let (Some(crate_time), Some(raw), Some(naive)) =
        (wall(Variant::Crate), raw, wall(Variant::Naive))
    else {
        return;
    };
    // The same ratios paired within each round (both variants ran seconds apart), then the
    // median over the rounds: less sensitive to a round where the whole machine was slow.
    let paired = |num: Variant, den: Variant| {
        let times = |v: Variant| &samples.iter().find(|(x, _)| *x == v).expect("measured").1;
        let mut ratios: Vec<f64> = times(num)
            .iter()
            .zip(times(den))
            .map(|(n, d)| n.wall.as_secs_f64() / d.wall.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        }
    };
    println!(
        "Targets (ratios of medians): crate ≤ 1.5× raw prepared: {:.2}× ({}); \
         crate ≥ 3× faster than naive: {:.2}× ({}).",
        crate_time / raw,
        verdict(crate_time / raw <= 1.5),
        naive / crate_time,
        verdict(naive / crate_time >= 3.0),
    );
    println!(
        "Paired per round (median of the {} per-round ratios): crate / raw {:.2}×, \
         naive / crate {:.2}×, hand-written Diesel / raw {:.2}×, hand-written Diesel / crate {:.2}×.",
        samples[0].1.len(),
        paired(Variant::Crate, Variant::Raw),
        paired(Variant::Naive, Variant::Crate),
        paired(Variant::Diesel, Variant::Raw),
        paired(Variant::Diesel, Variant::Crate),
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

fn machine_description() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "{cores} cores ({cpu}), shared with other jobs (load average at start: {load}), \
         client and server on the same host over TCP"
    )
}
