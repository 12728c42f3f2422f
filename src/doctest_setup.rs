// Shared setup for the doctests: not part of the library (no `mod` declares it).
//
// First lines of a doc example, in any file under src/:
//
//     # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/doctest_setup.rs"));
//     # fn main() { run().unwrap() }
//     # fn run() -> Result<(), Box<dyn std::error::Error>> {
//     # let conn = &mut establish_connection();
//     ...
//     # Ok(())
//     # }
//
// (`# include!("doctest_setup.rs");` also works, from doc comments in files directly in src/.)
//
// It mounts the test harness (tests/harness/) as `crate::harness` of the doctest and brings into
// scope: `diesel::prelude::*`, the tables (`products`, `vendor_products`, `countries`, `tasks`,
// `memberships`, `subscriptions`, `articles`, `accounts`, `aliases`), the models (`Product`, `NewProduct`, `TaskStatus`,
// `Article`, `NewArticle`, ...) and `establish_connection()`; with the `async` feature also
// `establish_async_connection()`, run with `fn main() { harness::block_on(run()).unwrap() }`
// and `async fn run()`. Every doctest process gets its own
// migrated database, dropped when it exits.

#[allow(dead_code, unused_imports)]
mod harness {
    #[cfg(feature = "async")]
    pub mod async_db {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/async_db.rs"));
    }
    pub mod db {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/db.rs"));
    }
    pub mod models {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/models.rs"));
    }
    pub mod schema {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/schema.rs"));
    }

    #[cfg(feature = "async")]
    pub use async_db::*;
    pub use db::*;
    pub use models::*;
    pub use schema::{
        accounts, aliases, articles, countries, memberships, products, subscriptions, tasks,
        vendor_products,
    };
}

#[allow(unused_imports)]
use diesel::prelude::*;
#[allow(unused_imports)]
use harness::models::*;
#[allow(unused_imports)]
use harness::schema::{
    accounts, aliases, articles, countries, memberships, products, subscriptions, tasks,
    vendor_products,
};

/// A connection to this doctest's migrated database, inside a transaction that is never
/// committed: the example leaves nothing behind.
#[allow(dead_code)]
fn establish_connection() -> diesel::pg::PgConnection {
    harness::db::test_connection()
}

/// [`establish_connection`] on diesel-async.
#[cfg(feature = "async")]
#[allow(dead_code)]
async fn establish_async_connection() -> diesel_async::AsyncPgConnection {
    harness::async_db::async_test_connection().await
}
