//! Shared harness for the integration tests, the examples and the doctests.
//!
//! - tests: `tests/lib.rs` declares `mod harness;`
//! - examples: `#[path = "../tests/harness/mod.rs"] mod harness;` at the crate root
//! - doctests: `src/doctest_setup.rs` mounts the same files with `include!`
//!
//! It is always mounted as `crate::harness` (the enum mapping in `models.rs` names
//! `crate::harness::schema::sql_types::TaskStatus`). Keep `schema.rs`, `models.rs` and `db.rs`
//! free of inner attributes and `mod foo;` declarations: the doctests `include!` them, and mount
//! them the way this file does — keep `src/doctest_setup.rs` in step when adding a file here.
//!
//! Tests run in parallel threads of one process, on one database (see `db.rs`):
//! - a test that commits rows (`connection()`, `pool()`) uses keys of its own (`unique_key`,
//!   `unique_i64`) and only looks at its own rows;
//! - a test inside `test_connection()` should use its own keys too: an uncommitted row holds its
//!   unique key, and another test inserting the same key waits until the first one ends.
//!
//! Diesel gives `.values(&[row_a, row_b])` (a reference to an array) a static query id, which
//! requires `'static` rows: with `New*<'a>` structs borrowing local `String`s, pass a slice
//! (`.values(&rows[..])`) or a `Vec` instead.
#![allow(dead_code)]

#[cfg(feature = "async")]
pub mod async_db;
pub mod db;
pub mod models;
pub mod schema;

#[cfg(feature = "async")]
#[allow(unused_imports)]
pub use async_db::*;
#[allow(unused_imports)]
pub use db::*;
#[allow(unused_imports)]
pub use models::*;
#[allow(unused_imports)]
pub use schema::{
    accounts, aliases, articles, countries, memberships, products, subscriptions, tasks,
    vendor_products,
};
