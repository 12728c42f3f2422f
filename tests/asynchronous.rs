//! The async driver under concurrency and faults: tokio tasks on diesel-async's deadpool and bb8
//! pools against the real server, exact final state read back with a synchronous connection.
//! (What both drivers share is tested on both in `drivers.rs`.)

use crate::bulk::{bulk_items, bulk_items_table, count_items, items};
use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{
    async_test_connection, block_on, connection, database_url, test_connection, unique_key,
};
use crate::single::SentSql;
use diesel::upsert::excluded;
use diesel::{ExpressionMethods, QueryDsl, TextExpressionMethods};
use diesel_async::pooled_connection::{bb8, deadpool, AsyncDieselConnectionManager};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_upsert::asynchronous::prelude::*;
use diesel_upsert::asynchronous::retry;
use diesel_upsert::retry::RetryPolicy;
use diesel_upsert::{BulkSummary, Error};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn deadpool_pool(size: usize) -> deadpool::Pool<AsyncPgConnection> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url());
    deadpool::Pool::builder(manager)
        .max_size(size)
        .build()
        .expect("cannot build the deadpool pool")
}

/// A deterministic permutation of `0..n` per seed.
fn shuffled(n: usize, seed: usize) -> Vec<usize> {
    let step = [7919, 104_729, 1_299_709, 15_485_863][seed % 4];
    (0..n).map(|i| (i * step + seed * 31) % n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tokio_tasks_on_a_deadpool_pool_end_with_exact_sums() {
    const TASKS: usize = 8;
    const KEYS: usize = 300;
    const ROUNDS: usize = 3;
    const SINGLE: usize = 50;
    let pool = deadpool_pool(TASKS);
    let prefix = unique_key("async-sums");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{prefix}-{k:03}")).collect();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (pool, keys) = (pool.clone(), keys.clone());
            tokio::spawn(async move {
                let conn = &mut pool.get().await.unwrap();
                for round in 0..ROUNDS {
                    // Every task sends every key, each in its own order: the bulk calls lock
                    // rows in key order, so they wait for each other and never deadlock.
                    let order = shuffled(KEYS, t * ROUNDS + round);
                    let rows: Vec<_> = order
                        .iter()
                        .map(|&k| NewProduct::new(&keys[k], "sum").qty(1))
                        .collect();
                    let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
                        .values(&rows)
                        .on_conflict_do(products::sku, ConflictAction::Update)
                        .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                        .bulk_insert_and_get_with_outcome(conn)
                        .await
                        .unwrap();
                    let skus: Vec<&str> = got.iter().map(|(p, _)| p.sku.as_str()).collect();
                    let sent: Vec<&str> = order.iter().map(|&k| keys[k].as_str()).collect();
                    assert_eq!(skus, sent, "each row pairs with its input");
                }
                for i in 0..SINGLE {
                    let key = &keys[(i * 7 + t) % KEYS];
                    diesel::insert_into(products::table)
                        .values(&NewProduct::new(key, "sum").qty(10))
                        .on_conflict_do(products::sku, ConflictAction::Update)
                        .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                        .insert::<i64, _>(conn)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let conn = &mut connection();
    let stored: Vec<(String, i32)> = diesel::RunQueryDsl::load(
        products::table
            .filter(products::sku.like(format!("{prefix}-%")))
            .order(products::sku)
            .select((products::sku, products::qty)),
        conn,
    )
    .unwrap();
    assert_eq!(stored.len(), KEYS);
    let mut expected = vec![(TASKS * ROUNDS) as i32; KEYS];
    for t in 0..TASKS {
        for i in 0..SINGLE {
            expected[(i * 7 + t) % KEYS] += 10;
        }
    }
    let qtys: Vec<i32> = stored.iter().map(|(_, q)| *q).collect();
    assert_eq!(qtys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_mid_bulk_leaves_nothing_and_the_deadpool_pool_recovers() {
    let pool = deadpool_pool(2);
    bulk_items_table(&mut connection());
    let prefix = unique_key("async-terminate");
    let rows = items(&prefix, 150_000);
    let mut conn = pool.get().await.unwrap();
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let killer = tokio::task::spawn_blocking(move || {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let watcher = &mut connection();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Wait until an upsert statement runs, so that rows have been written in the call's
        // transaction.
        loop {
            let running: Count = diesel::RunQueryDsl::get_result(
                diesel::sql_query(format!(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {pid} AND state = 'active' AND query LIKE 'WITH %INSERT INTO \"bulk_items\"%'"
                )),
                watcher,
            )
            .unwrap();
            if running.n > 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(30));
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_terminate_backend({pid})")),
            watcher,
        )
        .unwrap();
    });
    let result = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(&mut conn)
        .await;
    killer.await.unwrap();
    assert!(
        result.is_err(),
        "the call must fail when its backend is terminated"
    );
    drop(conn);
    assert_eq!(count_items(&mut connection(), &prefix), 0);
    // The broken connection is not handed out again: the next ones work.
    for _ in 0..2 {
        let mut conn = pool.get().await.unwrap();
        let summary = diesel::insert_into(bulk_items::table)
            .values(&items(&unique_key("async-recovered"), 10))
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(summary.inserted, 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_upserts_retried_asynchronously_all_succeed() {
    let pool = deadpool_pool(4);
    let sku = unique_key("async-serializable");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, sku) = (pool.clone(), sku.clone());
            tokio::spawn(async move {
                let conn = &mut pool.get().await.unwrap();
                for _ in 0..25 {
                    let policy = RetryPolicy {
                        max_attempts: 50,
                        ..RetryPolicy::default()
                    };
                    retry(policy, conn, async |conn| {
                        conn.build_transaction()
                            .serializable()
                            .run(async |conn| {
                                diesel::insert_into(products::table)
                                    .values(&NewProduct::new(&sku, "serializable").qty(1))
                                    .on_conflict_do(products::sku, ConflictAction::Update)
                                    .update_values(
                                        products::qty.eq(products::qty + excluded(products::qty)),
                                    )
                                    .insert::<i64, _>(conn)
                                    .await
                            })
                            .await
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let qty: i32 = diesel::RunQueryDsl::get_result(
        products::table
            .filter(products::sku.eq(&sku))
            .select(products::qty),
        &mut connection(),
    )
    .unwrap();
    assert_eq!(qty, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_transient_error_is_not_retried() {
    let conn = &mut crate::harness::async_connection().await;
    let attempts = AtomicUsize::new(0);
    let error = retry(RetryPolicy::default(), conn, async |_| {
        attempts.fetch_add(1, Ordering::Relaxed);
        Err::<(), _>(Error::Query(diesel::result::Error::NotFound))
    })
    .await
    .unwrap_err();
    assert!(matches!(
        error,
        Error::Query(diesel::result::Error::NotFound)
    ));
    assert_eq!(attempts.into_inner(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_a_bb8_pool_run_the_terminals() {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url());
    let pool = bb8::Pool::builder()
        .max_size(2)
        .build(manager)
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let p = unique_key("async-bb8");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let row: Product = diesel::insert_into(products::table)
        .values(&NewProduct::new(&a, "Cup"))
        .upsert_and_get(products::sku, &mut conn)
        .await
        .unwrap();
    let rows = vec![NewProduct::new(&a, "Mug"), NewProduct::new(&b, "Pot")];
    let summary = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 1,
            updated: 1,
            unchanged: 0
        }
    );
    let stored: Vec<(i64, String)> = products::table
        .filter(products::sku.like(format!("{p}-%")))
        .order(products::sku)
        .select((products::id, products::name))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored[0], (row.id, "Mug".to_owned()));
    assert_eq!(stored[1].1, "Pot");
}

/// Compiles only if every terminal's future is `Send` for `Sync` rows: the tasks below run
/// them in `tokio::spawn`, and [`send`] names each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_futures_are_send_and_run_in_spawned_tasks() {
    fn send<F: Future + Send>(future: F) -> F {
        future
    }
    let pool = deadpool_pool(2);
    let p = unique_key("async-send");
    let task = tokio::spawn(async move {
        let conn = &mut pool.get().await.unwrap();
        let one = format!("{p}-one");
        let rows: Vec<String> = (0..3).map(|i| format!("{p}-{i}")).collect();
        let batch: Vec<_> = rows.iter().map(|s| NewProduct::new(s, "batch")).collect();
        let upsert = || diesel::insert_into(products::table).values(NewProduct::new(&one, "one"));
        let bulk = || diesel::insert_into(products::table).values(&batch);
        let target = products::sku;
        let id: i64 = send(
            upsert()
                .on_conflict_do(target, ConflictAction::Update)
                .insert(conn),
        )
        .await
        .unwrap();
        let row: Product = send(
            upsert()
                .on_conflict_do(target, ConflictAction::Nothing)
                .insert_and_get(conn),
        )
        .await
        .unwrap();
        let (_, outcome): (Product, Outcome) = send(
            upsert()
                .on_conflict_do(target, ConflictAction::Update)
                .skip_unchanged()
                .insert_and_get_with_outcome(conn),
        )
        .await
        .unwrap();
        let _: i64 = send(upsert().upsert(target, conn)).await.unwrap();
        let _: Product = send(upsert().upsert_and_get(target, conn)).await.unwrap();
        let ids: Vec<i64> = send(
            bulk()
                .on_conflict_do(target, ConflictAction::Update)
                .bulk_insert(conn),
        )
        .await
        .unwrap();
        let got: Vec<Product> = send(
            bulk()
                .on_conflict_do(target, ConflictAction::Nothing)
                .bulk_insert_and_get(conn),
        )
        .await
        .unwrap();
        let with: Vec<(Product, Outcome)> = send(
            bulk()
                .on_conflict_do(target, ConflictAction::Update)
                .skip_unchanged()
                .bulk_insert_and_get_with_outcome(conn),
        )
        .await
        .unwrap();
        let summary = send(
            bulk()
                .on_conflict_do(target, ConflictAction::Nothing)
                .bulk_execute(conn),
        )
        .await
        .unwrap();
        let _: Vec<Product> = send(bulk().bulk_upsert(target, conn)).await.unwrap();
        let renames: Vec<_> = rows
            .iter()
            .map(|s| (products::sku.eq(s.clone()), products::name.eq("renamed")))
            .collect();
        let updated = send(
            diesel_upsert::bulk_update(products::table)
                .set(&renames)
                .by(target)
                .apply(conn),
        )
        .await
        .unwrap();
        assert_eq!(updated, [diesel_upsert::UpdateOutcome::Updated; 3]);
        assert_eq!((row.id, outcome), (id, Outcome::Unchanged));
        assert_eq!(got.iter().map(|p| p.id).collect::<Vec<_>>(), ids);
        assert!(with.iter().all(|(_, o)| *o == Outcome::Unchanged));
        assert_eq!(summary.unchanged, 3);
    });
    task.await.unwrap();
}

/// The same calls send the same statements on both drivers: the same SQL text, in the same
/// order (binds aside: the keys differ, so that the two test transactions do not wait for each
/// other), including the transaction and savepoint statements around the bulk calls.
#[test]
fn both_drivers_send_the_same_statements() {
    fn statements(sent: &SentSql) -> Vec<String> {
        sent.take()
            .into_iter()
            // The catalog is read once per process, by whichever driver comes first.
            .filter(|sql| !sql.starts_with("SELECT a.attname::text"))
            .map(|sql| {
                sql.split(" -- binds: ")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
    let sync_conn = &mut test_connection();
    let sync_sent = SentSql::attach(sync_conn);
    let async_conn = &mut block_on(async_test_connection());
    let async_sent = SentSql::default();
    diesel_async::AsyncConnection::set_instrumentation(async_conn, async_sent.clone());

    let calls = |p: &str| -> Vec<String> { (0..30).map(|i| format!("{p}-{i:02}")).collect() };
    {
        // The synchronous terminals by their path: this module imports the async prelude.
        use diesel_upsert::RunUpsertDsl as Sync;
        let skus = calls(&unique_key("same-sql-sync"));
        let rows: Vec<_> = skus.iter().map(|s| NewProduct::new(s, "n")).collect();
        let first = NewProduct::new(&skus[0], "first");
        let conn = &mut *sync_conn;
        let one = diesel::insert_into(products::table)
            .values(&first)
            .on_conflict_do(products::sku, ConflictAction::Nothing);
        let _: Product = Sync::insert_and_get(one, conn).unwrap();
        let bulk = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Nothing);
        let _: Vec<(Product, Outcome)> =
            Sync::bulk_insert_and_get_with_outcome(bulk, conn).unwrap();
        let bulk = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .skip_unchanged();
        Sync::bulk_execute(bulk, conn).unwrap();
    }
    block_on(async {
        let skus = calls(&unique_key("same-sql-async"));
        let rows: Vec<_> = skus.iter().map(|s| NewProduct::new(s, "n")).collect();
        let first = NewProduct::new(&skus[0], "first");
        let conn = &mut *async_conn;
        let _: Product = diesel::insert_into(products::table)
            .values(&first)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .insert_and_get(conn)
            .await
            .unwrap();
        let _: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .bulk_insert_and_get_with_outcome(conn)
            .await
            .unwrap();
        diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .skip_unchanged()
            .bulk_execute(conn)
            .await
            .unwrap();
    });
    let (sync_statements, async_statements) = (statements(&sync_sent), statements(&async_sent));
    assert!(sync_statements.len() >= 6, "{sync_statements:#?}");
    assert_eq!(sync_statements, async_statements);
}
