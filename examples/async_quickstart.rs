//! `diesel-upsert` on diesel-async: the same builder and terminals on `AsyncPgConnection` and a
//! deadpool pool, in tokio tasks.
//!
//! ```text
//! cargo run --example async_quickstart --features async
//! ```
//!
//! The database comes from the same harness as the tests (`tests/harness/`, see the quickstart
//! example): a fresh database with the schema of `migrations/`, dropped when the program exits.

#[path = "../tests/harness/mod.rs"]
mod harness;

use diesel::upsert::excluded;
use diesel::{ExpressionMethods, QueryDsl, TextExpressionMethods};
use diesel_async::pooled_connection::{deadpool, AsyncDieselConnectionManager};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_upsert::asynchronous::prelude::*;
use diesel_upsert::asynchronous::retry;
use diesel_upsert::retry::RetryPolicy;

use harness::models::{NewProduct, Product};
use harness::schema::products;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let url = harness::database_url();
    let conn = &mut AsyncPgConnection::establish(url).await?;
    println!("Connected to a fresh database with the schema of migrations/ (dropped at exit).");

    // One row: inserted, then updated, each call one statement.
    for name in ["Green tea", "Green tea, loose"] {
        let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
            .values(&NewProduct::new("TEA-1", name))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .insert_and_get_with_outcome(conn)
            .await?;
        println!(
            "insert_and_get_with_outcome: {outcome:?} id={} name={:?}",
            row.id, row.name
        );
    }

    // `DO NOTHING` keeps the stored row and still returns it.
    let kept: Product = diesel::insert_into(products::table)
        .values(&NewProduct::new("TEA-1", "Black tea"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert_and_get(conn)
        .await?;
    println!("Nothing: kept {:?}", kept.name);

    // A batch: one result per input row, in input order, in one transaction.
    let rows = vec![
        NewProduct::new("TEA-2", "Oolong"),
        NewProduct::new("TEA-1", "Green tea, bagged"),
    ];
    let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .await?;
    for (row, outcome) in &got {
        println!("bulk: {} {outcome:?} {:?}", row.sku, row.name);
    }

    // Eight tasks on a deadpool pool add to the same counters: every increment lands.
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    let pool = deadpool::Pool::builder(manager).max_size(8).build()?;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = &mut pool.get().await?;
                let rows: Vec<_> = ["C-1", "C-2", "C-3"]
                    .iter()
                    .map(|sku| NewProduct::new(sku, "counter").qty(task + 1))
                    .collect();
                let summary = diesel::insert_into(products::table)
                    .values(&rows)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                    .bulk_execute(conn)
                    .await?;
                Ok::<_, AnyError>(summary)
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let counters: Vec<(String, i32)> = products::table
        .filter(products::sku.like("C-%"))
        .order(products::sku)
        .select((products::sku, products::qty))
        .load(conn)
        .await?;
    println!("counters after 8 tasks (1 + 2 + … + 8 = 36 each): {counters:?}");

    // SERIALIZABLE transactions, retried on serialization failures without blocking a thread.
    let conn = &mut pool.get().await?;
    let row: Product = retry(RetryPolicy::default(), conn, async |conn| {
        conn.build_transaction()
            .serializable()
            .run(async |conn| {
                diesel::insert_into(products::table)
                    .values(&NewProduct::new("TEA-3", "Sencha"))
                    .upsert_and_get(products::sku, conn)
                    .await
            })
            .await
    })
    .await?;
    println!("retry: {} {:?}", row.sku, row.name);

    println!();
    println!("Done. The database is dropped as the program exits.");
    Ok(())
}
