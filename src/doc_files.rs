//! The markdown documentation, compiled as doctests: every ```rust block of README.md and
//! docs/*.md is built and run by `cargo test --doc` against the test database. Declared by
//! `#[cfg(doctest)] mod doc_files;` in `lib.rs`, so it is no part of the library.
//!
//! A block starts with hidden setup lines (`# ` lines, hidden by rustdoc, visible on GitHub):
//!
//! ```text
//! # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/doctest_setup.rs"));
//! # fn main() -> diesel_upsert::Result<()> {
//! # let conn = &mut establish_connection();
//! ...
//! # Ok(())
//! # }
//! ```

#[doc = include_str!("../README.md")]
pub struct ReadmeMd;

#[doc = include_str!("../docs/bulk.md")]
pub struct BulkMd;

#[doc = include_str!("../docs/concurrency.md")]
pub struct ConcurrencyMd;

#[doc = include_str!("../docs/distributed.md")]
pub struct DistributedMd;

#[doc = include_str!("../docs/guide.md")]
pub struct GuideMd;

#[doc = include_str!("../docs/hstore.md")]
pub struct HstoreMd;

#[doc = include_str!("../docs/migrating-from-diesel.md")]
pub struct MigratingFromDieselMd;

#[doc = include_str!("../docs/migrating-from-django.md")]
pub struct MigratingFromDjangoMd;

#[doc = include_str!("../docs/performance.md")]
pub struct PerformanceMd;

#[doc = include_str!("../docs/sql.md")]
pub struct SqlMd;

#[cfg(feature = "async")]
#[doc = include_str!("../docs/async.md")]
pub struct AsyncMd;
