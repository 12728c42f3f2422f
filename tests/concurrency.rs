//! Concurrency and faults: threads on one r2d2 pool against the real server, exact final state.

use crate::bulk::{bulk_items, bulk_items_table, count_items, items, Item, NewItem};
use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, database_url, unique_key};
use crate::single::SentSql;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_upsert::pool::{PgPool, PoolBuilder};
use diesel_upsert::prelude::*;
use diesel_upsert::retry::{retry, RetryPolicy};
use diesel_upsert::Error;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn pool(size: u32) -> PgPool {
    PoolBuilder::new()
        .max_size(size)
        .build(database_url())
        .unwrap()
}

/// A deterministic permutation of `0..n` per seed (no random crate needed).
fn shuffled(n: usize, seed: usize) -> Vec<usize> {
    let step = [7919, 104_729, 1_299_709, 15_485_863][seed % 4];
    let offset = seed * 31;
    (0..n).map(|i| (i * step + offset) % n).collect()
}

#[test]
fn counters_incremented_by_eight_threads_end_exactly_right() {
    let pool = pool(8);
    let prefix = unique_key("counter");
    let keys: Vec<String> = (0..20).map(|k| format!("{prefix}-{k:02}")).collect();
    let barrier = Arc::new(Barrier::new(8));
    let started = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (pool, keys, barrier) = (pool.clone(), keys.clone(), barrier.clone());
            thread::spawn(move || {
                let conn = &mut pool.get().unwrap();
                barrier.wait();
                for i in 0..200 {
                    let key = &keys[(i * 7 + t) % keys.len()];
                    diesel::insert_into(products::table)
                        .values(&NewProduct::new(key, "counter").qty(1))
                        .on_conflict_do(products::sku, ConflictAction::Update)
                        .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                        .insert::<i64, _>(conn)
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let conn = &mut connection();
    let counts: Vec<i32> = products::table
        .filter(products::sku.like(format!("{prefix}-%")))
        .select(products::qty)
        .load(conn)
        .unwrap();
    assert_eq!(counts.len(), 20);
    assert_eq!(counts.iter().sum::<i32>(), 8 * 200);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn racing_insert_and_get_with_nothing_all_return_the_one_row() {
    let pool = pool(8);
    let sku = unique_key("race");
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (pool, sku, barrier) = (pool.clone(), sku.clone(), barrier.clone());
            thread::spawn(move || {
                let conn = &mut pool.get().unwrap();
                barrier.wait();
                diesel::insert_into(products::table)
                    .values(&NewProduct::new(&sku, &format!("thread {t}")))
                    .on_conflict_do(products::sku, ConflictAction::Nothing)
                    .insert_and_get_with_outcome::<Product, _>(conn)
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<(Product, Outcome)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = &results[0].0;
    assert!(results.iter().all(|(p, _)| p == first), "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|(_, o)| *o == Outcome::Inserted)
            .count(),
        1
    );
    let stored: Vec<Product> = products::table
        .filter(products::sku.eq(&sku))
        .load(&mut connection())
        .unwrap();
    assert_eq!(stored, vec![first.clone()]);
}

#[test]
fn overlapping_bulk_upserts_in_different_orders_do_not_deadlock() {
    // 24 000 keys: three statements per call (2 000, 20 000, 2 000 rows), the later two encoded
    // on the call's second thread while the earlier ones run.
    const KEYS: usize = 24_000;
    const ROUNDS: usize = 3;
    let pool = pool(4);
    let prefix = unique_key("overlap");
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|k| format!("{prefix}-{k:05}")).collect());
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (pool, keys, barrier) = (pool.clone(), keys.clone(), barrier.clone());
                thread::spawn(move || {
                    let names: Vec<String> = (0..keys.len())
                        .map(|_| format!("writer {t} round {round}"))
                        .collect();
                    let rows: Vec<NewProduct> = shuffled(keys.len(), t + round)
                        .into_iter()
                        .map(|k| NewProduct::new(&keys[k], &names[k]).qty(t as i32))
                        .collect();
                    let conn = &mut pool.get().unwrap();
                    barrier.wait();
                    diesel::insert_into(products::table)
                        .values(&rows)
                        .on_conflict_do(products::sku, ConflictAction::Update)
                        .bulk_insert::<i64, _>(conn)
                        .map(|ids| ids.len())
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().unwrap(), KEYS, "round {round}");
        }
    }
    let rows: Vec<Product> = products::table
        .filter(products::sku.like(format!("{prefix}-%")))
        .load(&mut connection())
        .unwrap();
    assert_eq!(rows.len(), KEYS);
    for row in &rows {
        let writer = row.qty;
        assert!((0..4).contains(&writer));
        assert_eq!(
            row.name,
            format!("writer {writer} round {}", ROUNDS - 1),
            "{row:?}"
        );
    }
}

#[test]
fn a_terminated_backend_mid_bulk_leaves_nothing_and_the_pool_recovers() {
    let pool = pool(2);
    bulk_items_table(&mut connection());
    let prefix = unique_key("terminate");
    let rows = items(&prefix, 150_000);
    let mut conn = pool.get().unwrap();
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut *conn)
    .unwrap();
    let killer = thread::spawn(move || {
        let watcher = &mut connection();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Wait until the second chunk runs, so the first one has been written in the transaction.
        loop {
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let running: Count = diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {pid} AND state = 'active' AND query LIKE 'WITH %INSERT INTO \"bulk_items\"%'"
            ))
            .get_result(watcher)
            .unwrap();
            if running.n > 0 || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        thread::sleep(Duration::from_millis(30));
        diesel::sql_query(format!("SELECT pg_terminate_backend({pid})"))
            .execute(watcher)
            .unwrap();
    });
    let result = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(&mut *conn);
    killer.join().unwrap();
    assert!(
        result.is_err(),
        "the call must fail when its backend is terminated"
    );
    drop(conn);
    let stored = count_items(&mut connection(), &prefix);
    assert_eq!(stored, 0);
    // The broken connection is not handed out again.
    let conn = &mut pool.get().unwrap();
    let one: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .get_result(conn)
        .unwrap();
    assert_eq!(one, 1);
}

#[test]
fn a_statement_timeout_during_a_bulk_upsert_leaves_nothing() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let prefix = unique_key("timeout");
    let rows = items(&prefix, 100_000);
    diesel::sql_query("SET statement_timeout = '20ms'")
        .execute(conn)
        .unwrap();
    let error = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    diesel::sql_query("RESET statement_timeout")
        .execute(conn)
        .unwrap();
    match &error {
        Error::Query(DieselError::DatabaseError(_, info)) => {
            assert!(
                info.message().contains("statement timeout"),
                "{}",
                info.message()
            )
        }
        other => panic!("expected a query error, got {other:?}"),
    }
    let stored = count_items(conn, &prefix);
    assert_eq!(stored, 0);
}

#[test]
fn a_not_null_violation_in_row_30_000_of_40_000_names_the_row_and_column_and_leaves_nothing() {
    diesel::table! {
        /// `bulk_items` as an application with a stale schema sees it: `v` nullable.
        #[sql_name = "bulk_items"]
        loose_items (id) {
            id -> BigInt,
            k -> Nullable<Text>,
            v -> Nullable<Integer>,
        }
    }
    #[derive(Insertable)]
    #[diesel(table_name = loose_items, treat_none_as_default_value = false)]
    struct MaybeItem {
        k: Option<String>,
        v: Option<i32>,
    }
    let conn = &mut connection();
    bulk_items_table(conn);
    let prefix = unique_key("notnull");
    let rows: Vec<MaybeItem> = (0..40_000)
        .map(|i| MaybeItem {
            k: Some(format!("{prefix}-{i:06}")),
            v: if i == 30_000 { None } else { Some(1) },
        })
        .collect();
    let error = diesel::insert_into(loose_items::table)
        .values(&rows)
        .on_conflict_do(loose_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    match &error {
        Error::Row {
            index: 30_000,
            key,
            source: DieselError::DatabaseError(DatabaseErrorKind::NotNullViolation, info),
        } => {
            assert_eq!(key, &format!("\"k\" = '{prefix}-030000'::text"));
            assert_eq!(info.column_name(), Some("v"));
            assert_eq!(info.table_name(), Some("bulk_items"));
        }
        other => panic!("expected a NOT NULL violation of row 30 000, got {other:?}"),
    }
    let stored = count_items(conn, &prefix);
    assert_eq!(stored, 0);
}

#[test]
fn a_rolled_back_caller_transaction_keeps_nothing_and_the_crate_used_a_savepoint() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let prefix = unique_key("rollback");
    let rows: Vec<NewItem> = (0..3)
        .map(|i| NewItem {
            k: Some(format!("{prefix}-{i}")),
            v: 1,
        })
        .collect();
    let sent = SentSql::attach(conn);
    let outcome = conn.transaction::<(), Error, _>(|conn| {
        let written: Vec<(Item, Outcome)> = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_insert_and_get_with_outcome(conn)?;
        assert_eq!(written.len(), 3);
        diesel::insert_into(bulk_items::table)
            .values(&NewItem {
                k: Some(format!("{prefix}-single")),
                v: 1,
            })
            .upsert::<_, _, i64, _>(bulk_items::k, conn)?;
        Err(Error::Query(DieselError::RollbackTransaction))
    });
    assert!(outcome.is_err());
    let statements = sent.take();
    assert!(
        statements.iter().any(|s| s.starts_with("SAVEPOINT")),
        "{statements:?}"
    );
    let stored = count_items(conn, &prefix);
    assert_eq!(stored, 0);
}

#[test]
fn serializable_upserts_retried_on_serialization_failures_all_succeed() {
    let pool = pool(4);
    let sku = unique_key("serializable");
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (pool, sku, barrier) = (pool.clone(), sku.clone(), barrier.clone());
            thread::spawn(move || {
                let conn = &mut pool.get().unwrap();
                barrier.wait();
                for _ in 0..25 {
                    retry(
                        RetryPolicy {
                            max_attempts: 50,
                            ..RetryPolicy::default()
                        },
                        || {
                            conn.build_transaction().serializable().run(|conn| {
                                diesel::insert_into(products::table)
                                    .values(&NewProduct::new(&sku, "serializable").qty(1))
                                    .on_conflict_do(products::sku, ConflictAction::Update)
                                    .update_values(
                                        products::qty.eq(products::qty + excluded(products::qty)),
                                    )
                                    .insert::<i64, _>(conn)
                            })
                        },
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let qty: i32 = products::table
        .filter(products::sku.eq(&sku))
        .select(products::qty)
        .get_result(&mut connection())
        .unwrap();
    assert_eq!(qty, 100);
}

#[test]
fn a_checkout_timeout_is_a_pool_error() {
    let pool = PoolBuilder::new()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .build(database_url())
        .unwrap();
    let _held = pool.get().unwrap();
    let result: diesel_upsert::Result<i64> = (|| {
        let conn = &mut pool.get()?;
        diesel::insert_into(products::table)
            .values(&NewProduct::new("never", "x"))
            .upsert(products::sku, conn)
    })();
    assert!(matches!(result, Err(Error::Pool(_))), "{result:?}");
}

diesel::table! {
    /// A partitioned table: no `xmax` in `RETURNING` before PostgreSQL 18.
    conc_parts (region, k) {
        region -> Text,
        k -> Text,
        v -> Integer,
    }
}

#[derive(Insertable, Clone)]
#[diesel(table_name = conc_parts)]
struct NewConcPart {
    region: String,
    k: String,
    v: i32,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = conc_parts, check_for_backend(diesel::pg::Pg))]
struct ConcPart {
    k: String,
    v: i32,
}

/// Outcomes on a partitioned table stay exact under contention: whatever method the server
/// allows (`RETURNING old` on 18, insert-then-lock-then-update before), each key is reported
/// `Inserted` exactly once across all threads, every other write `Updated`, and the counters end
/// exactly right.
#[test]
fn outcomes_on_a_partitioned_table_are_exact_under_eight_threads() {
    static CREATED: std::sync::Once = std::sync::Once::new();
    CREATED.call_once(|| {
        use diesel::connection::SimpleConnection;
        connection()
            .batch_execute(
                "CREATE TABLE conc_parts (region TEXT NOT NULL, k TEXT NOT NULL, v INTEGER NOT NULL, \
                 PRIMARY KEY (region, k)) PARTITION BY LIST (region); \
                 CREATE TABLE conc_parts_a PARTITION OF conc_parts FOR VALUES IN ('a'); \
                 CREATE TABLE conc_parts_b PARTITION OF conc_parts FOR VALUES IN ('b')",
            )
            .unwrap();
    });
    let pool = pool(8);
    let prefix = unique_key("cparts");
    let keys: Vec<(String, String)> = (0..30)
        .map(|i| (["a", "b"][i % 2].to_owned(), format!("{prefix}-{i:02}")))
        .collect();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (pool, keys, barrier) = (pool.clone(), keys.clone(), barrier.clone());
            thread::spawn(move || {
                let conn = &mut pool.get().unwrap();
                barrier.wait();
                let mut outcomes = Vec::new();
                for round in 0..10 {
                    let picked: Vec<NewConcPart> = shuffled(keys.len(), t + round)
                        .into_iter()
                        .take(10)
                        .map(|i| NewConcPart {
                            region: keys[i].0.clone(),
                            k: keys[i].1.clone(),
                            v: 1,
                        })
                        .collect();
                    if round % 2 == 0 {
                        let rows: Vec<(ConcPart, Outcome)> = diesel::insert_into(conc_parts::table)
                            .values(&picked)
                            .on_conflict_do(
                                (conc_parts::region, conc_parts::k),
                                ConflictAction::Update,
                            )
                            .update_values(
                                conc_parts::v.eq(conc_parts::v + excluded(conc_parts::v)),
                            )
                            .bulk_insert_and_get_with_outcome(conn)
                            .unwrap();
                        outcomes.extend(rows.into_iter().map(|(r, o)| (r.k, o)));
                    } else {
                        for row in &picked {
                            let (r, o): (ConcPart, Outcome) =
                                diesel::insert_into(conc_parts::table)
                                    .values(row)
                                    .on_conflict_do(
                                        (conc_parts::region, conc_parts::k),
                                        ConflictAction::Update,
                                    )
                                    .update_values(
                                        conc_parts::v.eq(conc_parts::v + excluded(conc_parts::v)),
                                    )
                                    .insert_and_get_with_outcome(conn)
                                    .unwrap();
                            outcomes.push((r.k, o));
                        }
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.extend(handle.join().unwrap());
    }
    assert_eq!(outcomes.len(), 8 * 10 * 10);
    let conn = &mut connection();
    let stored: Vec<ConcPart> = conc_parts::table
        .filter(conc_parts::k.like(format!("{prefix}-%")))
        .select(ConcPart::as_select())
        .load(conn)
        .unwrap();
    for part in &stored {
        let writes: Vec<Outcome> = outcomes
            .iter()
            .filter(|(k, _)| *k == part.k)
            .map(|(_, o)| *o)
            .collect();
        let inserted = writes.iter().filter(|o| **o == Outcome::Inserted).count();
        assert_eq!(inserted, 1, "{}: {writes:?}", part.k);
        assert!(writes.iter().all(|o| *o != Outcome::Unchanged));
        assert_eq!(part.v as usize, writes.len(), "{}", part.k);
    }
    assert_eq!(
        stored.iter().map(|p| p.v as usize).sum::<usize>(),
        outcomes.len()
    );
}

#[test]
fn eight_threads_of_bulk_update_over_overlapping_keys_end_consistent_without_deadlock() {
    use diesel_upsert::{bulk_update, UpdateOutcome};
    const THREADS: usize = 8;
    const ROUNDS: usize = 3;
    const KEYS: usize = 400;
    let pool = pool(THREADS as u32);
    let prefix = unique_key("bulk-update-race");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{prefix}-{k:03}")).collect();
    let seed: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "seed")).collect();
    diesel::insert_into(products::table)
        .values(&seed)
        .execute(&mut connection())
        .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, keys, barrier) = (pool.clone(), keys.clone(), barrier.clone());
            thread::spawn(move || {
                let conn = &mut pool.get().unwrap();
                barrier.wait();
                for round in 0..ROUNDS {
                    // Each thread its own order; the call locks in key order regardless.
                    let name = format!("t{t} r{round}");
                    let changes: Vec<_> = shuffled(KEYS, t * ROUNDS + round)
                        .into_iter()
                        .map(|k| {
                            (
                                products::sku.eq(keys[k].clone()),
                                products::name.eq(name.clone()),
                                products::qty.eq(t as i32),
                            )
                        })
                        .collect();
                    let outcomes = bulk_update(products::table)
                        .set(&changes)
                        .by(products::sku)
                        .apply(conn)
                        .unwrap();
                    assert!(outcomes.iter().all(|o| *o == UpdateOutcome::Updated));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let rows: Vec<(String, i32)> = products::table
        .filter(products::sku.like(format!("{prefix}-%")))
        .select((products::name, products::qty))
        .load(&mut connection())
        .unwrap();
    assert_eq!(rows.len(), KEYS, "no row inserted, none lost");
    for (name, qty) in rows {
        // A row is wholly one writer's last round: never the name of one, the qty of another.
        assert_eq!(name, format!("t{qty} r{}", ROUNDS - 1));
    }
}
