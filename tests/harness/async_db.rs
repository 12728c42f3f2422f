// Async connections to the test database (feature `async`): the same database as `db.rs`, on
// diesel-async, and the tokio runtime the tests and doctests that are not tokio tests run them
// on.
//
// Mounted as `crate::harness::async_db` everywhere (tests, examples, doctests); also pulled in
// with `include!`, so no inner attributes and no `mod foo;` declarations here.

use std::future::Future;
use std::sync::OnceLock;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The process's tokio runtime for [`block_on`]: two worker threads, so that a connection's
/// background task keeps running between calls.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// Runs `future` to completion on [`runtime`] (not from inside a tokio runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// A new diesel-async connection to the test database. Error messages are in English
/// (`lc_messages = 'C'`).
pub async fn async_connection() -> AsyncPgConnection {
    let url = super::db::database_url();
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database {url}: {e}"));
    let _ = conn.batch_execute("SET lc_messages TO 'C'").await;
    conn
}

/// [`async_connection`] inside a transaction that is never committed.
pub async fn async_test_connection() -> AsyncPgConnection {
    let mut conn = async_connection().await;
    conn.begin_test_transaction()
        .await
        .expect("cannot begin the test transaction");
    conn
}
