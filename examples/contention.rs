//! Contention demo: the same workloads written with this crate and the naive way
//! (SELECT, then INSERT or UPDATE, in a READ COMMITTED transaction), on 8 threads of one r2d2
//! pool. The naive code loses updates and hits unique violations; the crate does not.
//!
//! `cargo run --release --example contention` (figures in docs/concurrency.md).

#[path = "../tests/harness/mod.rs"]
mod harness;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::pool::{PgPool, PoolBuilder};
use diesel_upsert::prelude::*;
use harness::models::{NewProduct, Product};
use harness::schema::products;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const PER_THREAD: usize = 200;
const KEYS: usize = 20;

/// Runs `op(thread, i, conn)` 200 times on each of 8 threads; returns the time and the errors.
type OpResult = Result<(), Box<dyn std::error::Error>>;

fn run(
    pool: &PgPool,
    op: impl Fn(usize, usize, &mut PgConnection) -> OpResult + Send + Sync + 'static,
) -> (Duration, usize) {
    let op = Arc::new(op);
    let errors = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, op, errors, barrier) =
                (pool.clone(), op.clone(), errors.clone(), barrier.clone());
            thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                barrier.wait();
                for i in 0..PER_THREAD {
                    if op(t, i, &mut conn).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    (started.elapsed(), errors.load(Ordering::Relaxed))
}

fn total(conn: &mut PgConnection, prefix: &str) -> (i64, i64) {
    let qty: Vec<i32> = products::table
        .filter(products::sku.like(format!("{prefix}-%")))
        .select(products::qty)
        .load(conn)
        .unwrap();
    (qty.len() as i64, qty.iter().map(|q| i64::from(*q)).sum())
}

fn main() {
    let pool = PoolBuilder::new()
        .max_size(THREADS as u32)
        .build(harness::database_url())
        .unwrap();
    let conn = &mut harness::connection();
    println!("{THREADS} threads x {PER_THREAD} increments over {KEYS} keys (expected: {KEYS} rows, sum {})\n", THREADS * PER_THREAD);
    println!("| variant | time | errors | rows | sum |");
    println!("|---|---|---|---|---|");

    let (time, errors) = run(&pool, |t, i, conn| {
        let key = format!("crate-{:02}", (i * 7 + t) % KEYS);
        diesel::insert_into(products::table)
            .values(&NewProduct::new(&key, "counter").qty(1))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_values(products::qty.eq(products::qty + excluded(products::qty)))
            .insert::<i64, _>(conn)
            .map(|_| ())
            .map_err(Into::into)
    });
    let (rows, sum) = total(conn, "crate");
    println!("| diesel-upsert `update_values(qty + excluded(qty))` | {:.0} ms | {errors} | {rows} | {sum} |", time.as_secs_f64() * 1e3);

    let (time, errors) = run(&pool, |t, i, conn| {
        let key = format!("naive-{:02}", (i * 7 + t) % KEYS);
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            let existing: Option<Product> = products::table
                .filter(products::sku.eq(&key))
                .first(conn)
                .optional()?;
            match existing {
                Some(p) => diesel::update(products::table.find(p.id))
                    .set(products::qty.eq(p.qty + 1))
                    .execute(conn)?,
                None => diesel::insert_into(products::table)
                    .values(&NewProduct::new(&key, "counter").qty(1))
                    .execute(conn)?,
            };
            Ok(())
        })
        .map_err(Into::into)
    });
    let (rows, sum) = total(conn, "naive");
    println!(
        "| naive SELECT then UPDATE/INSERT | {:.0} ms | {errors} | {rows} | {sum} |",
        time.as_secs_f64() * 1e3
    );

    println!("\n{THREADS} threads racing get-or-create on one new key, {PER_THREAD} rounds (expected: 1 row per round, every thread gets it)\n");
    println!("| variant | time | errors | rows |");
    println!("|---|---|---|---|");
    let (time, errors) = run(&pool, |_, i, conn| {
        let key = format!("getc-{i:03}");
        diesel::insert_into(products::table)
            .values(&NewProduct::new(&key, "got"))
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .insert_and_get::<Product, _>(conn)
            .map(|_| ())
            .map_err(Into::into)
    });
    let (rows, _) = total(conn, "getc");
    println!(
        "| diesel-upsert `Nothing` + `insert_and_get` | {:.0} ms | {errors} | {rows} |",
        time.as_secs_f64() * 1e3
    );
    let (time, errors) = run(&pool, |_, i, conn| {
        let key = format!("getn-{i:03}");
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            let existing: Option<Product> = products::table
                .filter(products::sku.eq(&key))
                .first(conn)
                .optional()?;
            if existing.is_none() {
                diesel::insert_into(products::table)
                    .values(&NewProduct::new(&key, "got"))
                    .execute(conn)?;
            }
            Ok(())
        })
        .map_err(Into::into)
    });
    let (rows, _) = total(conn, "getn");
    println!(
        "| naive get_or_create (SELECT then INSERT) | {:.0} ms | {errors} | {rows} |",
        time.as_secs_f64() * 1e3
    );
}
