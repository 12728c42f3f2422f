//! Race-free, single-statement upserts for [Diesel](https://diesel.rs) on PostgreSQL.
//!
//! `diesel-upsert` adds django-postgres-extra's conflict handling to the `InsertStatement` that
//! `diesel::insert_into(..).values(..)` already gives you: one `INSERT … ON CONFLICT …` round
//! trip that inserts the row, updates the existing one, or keeps it — and always hands the row
//! back.
//!
//! ```rust
//! # include!("doctest_setup.rs");
//! use diesel_upsert::prelude::*;
//!
//! # fn main() { run().unwrap() }
//! # fn run() -> diesel_upsert::Result<()> {
//! # let conn = &mut establish_connection();
//! # /*
//! let conn = &mut PgConnection::establish(&database_url)?;
//! # */
//! let (first, outcome): (Product, Outcome) = diesel::insert_into(products::table)
//!     .values(&NewProduct::new("TEA-1", "Green tea"))
//!     .on_conflict_do(products::sku, ConflictAction::Update)
//!     .insert_and_get_with_outcome(conn)?;
//! assert_eq!(outcome, Outcome::Inserted);
//!
//! // The same key with ConflictAction::Nothing keeps the row and still returns it.
//! let (kept, outcome): (Product, Outcome) = diesel::insert_into(products::table)
//!     .values(&NewProduct::new("TEA-1", "Black tea"))
//!     .on_conflict_do(products::sku, ConflictAction::Nothing)
//!     .insert_and_get_with_outcome(conn)?;
//! assert_eq!((kept.id, kept.name.as_str(), outcome), (first.id, "Green tea", Outcome::Unchanged));
//! # Ok(())
//! # }
//! ```
//!
//! ## What it adds to Diesel
//!
//! - [`ConflictAction::Update`] updates every column the insert supplied (minus the conflict
//!   target and the primary key); `None` fields keep their existing value.
//! - [`UpsertDsl::on_conflict_do`] starts the builder ([`OnConflictDo`]);
//!   [`upsert`](UpsertDsl::upsert), [`upsert_and_get`](UpsertDsl::upsert_and_get) and
//!   [`bulk_upsert`](UpsertDsl::bulk_upsert) are the psqlextra-style shorthands.
//! - [`insert`](RunUpsertDsl::insert) returns the primary key and
//!   [`insert_and_get`](RunUpsertDsl::insert_and_get) the row for every action, including `DO
//!   NOTHING` on an existing row; [`insert_and_get_with_outcome`](RunUpsertDsl::insert_and_get_with_outcome)
//!   also says whether it was [`Outcome::Inserted`], [`Outcome::Updated`] or
//!   [`Outcome::Unchanged`].
//! - Conflict targets: columns, tuples, [`on_constraint`], expression indexes through
//!   [`index_expression`], partial indexes through
//!   [`index_predicate`](OnConflictDo::index_predicate); all written as literal SQL so
//!   PostgreSQL can infer the arbiter index on every execution of the cached prepared statement.
//!   [`unique_index`] writes the index a target needs, for migrations.
//! - [`update_only`](OnConflictDo::update_only), [`update_except`](OnConflictDo::update_except),
//!   [`update_values`](OnConflictDo::update_values),
//!   [`update_condition`](OnConflictDo::update_condition),
//!   [`skip_unchanged`](OnConflictDo::skip_unchanged) and [`touch`](OnConflictDo::touch) refine
//!   the update.
//! - Bulk terminals ([`bulk_insert`](RunUpsertDsl::bulk_insert),
//!   [`bulk_insert_and_get`](RunUpsertDsl::bulk_insert_and_get),
//!   [`bulk_insert_and_get_with_outcome`](RunUpsertDsl::bulk_insert_and_get_with_outcome), and
//!   [`bulk_execute`](RunUpsertDsl::bulk_execute), which returns only a [`BulkSummary`]): one
//!   result per input row in input order, paired by an ordinal PostgreSQL carries; column
//!   consistency and duplicate keys (as the unique index compares them) checked before writing
//!   ([`on_duplicate_keys`](OnConflictDo::on_duplicate_keys), [`DuplicateKeys`]); key-ordered,
//!   chunked ([`max_rows_per_statement`](OnConflictDo::max_rows_per_statement),
//!   [`max_bytes_per_statement`](OnConflictDo::max_bytes_per_statement),
//!   [`rows_as_values`](OnConflictDo::rows_as_values)), all in one transaction.
//! - [`bulk_update`]: existing rows updated from a batch keyed by the primary key or a unique
//!   key, with an [`UpdateOutcome`] per input row (updated, unchanged or missing, never
//!   inserted).
//! - [`sql_types::Hstore`], [`HstoreMap`] and [`HstoreExpressionMethods::key`]: hstore columns,
//!   hstore-key conflict targets and [`hstore`] migration helpers.
//! - `pool` (feature `r2d2`) and [`retry`]: an r2d2 pool with upsert-friendly defaults, and retries for
//!   serialization failures and deadlocks.
//! - Typed [`Error`]s: no matching unique index (with the `CREATE UNIQUE INDEX` that would
//!   match), invalid targets, and the input row PostgreSQL refused in a bulk call
//!   ([`Error::Row`]).
//!
//! ## Crate features
//!
//! - `r2d2` (default): the `pool` module (a `PgPool` builder with defaults for upsert
//!   workloads) and `Error::Pool` for r2d2's checkout errors. The terminals themselves accept
//!   any `Connection<Backend = Pg>`, so pooled connections work whenever Diesel's own `r2d2`
//!   feature is on.
//! - `async`: the `asynchronous` module, every terminal on diesel-async 0.9's
//!   `AsyncPgConnection` with the same names behind `diesel_upsert::asynchronous::prelude::*`
//!   (docs/async.md). `deadpool` and `bb8` also turn on diesel-async's pools of those names.
//! - `serde`: `Serialize` and `Deserialize` for [`HstoreMap`].

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unsafe_code)]

#[cfg(feature = "async")]
pub mod asynchronous;
mod error;
pub mod hstore;
mod literal;
mod migration;
mod plan;
#[cfg(feature = "r2d2")]
pub mod pool;
mod query_builder;
pub mod retry;
mod rows;
mod run;
mod schema;
mod spec;
mod target;
mod update;
mod upsert;

pub use crate::error::{Error, Result};
pub use crate::hstore::{HstoreExpressionMethods, HstoreMap};
pub use crate::migration::{unique_index, MigrationSql};
pub use crate::query_builder::statement::OnConflictDo;
pub use crate::rows::{BatchRows, Records, RowValues, SingleRow};
pub use crate::run::returning::Returning;
pub use crate::spec::{BulkSummary, ConflictAction, DuplicateKeys, Outcome, UpdateOutcome};
pub use crate::target::{
    ColumnSet, IndexExpression, IntoConflictTarget, OnConstraint, TargetElement,
};
pub use crate::update::{bulk_update, BulkUpdate, BulkUpdateSet, RunBulkUpdateDsl};
pub use crate::upsert::{ModelSelection, PrimaryKey, RunUpsertDsl, TimestampType, UpsertDsl};

/// A named unique or exclusion constraint as conflict target:
/// `ON CONFLICT ON CONSTRAINT "name"`.
///
/// `ConflictAction::Nothing` and the `*_and_get` terminals read the constraint's columns from
/// `pg_constraint` when they need to find the existing row. A constraint target cannot be
/// combined with `index_predicate`.
pub fn on_constraint(name: impl Into<String>) -> OnConstraint {
    OnConstraint(name.into())
}

/// The expression of a unique expression index as conflict target: `lower(email)`,
/// `coalesce(nickname, '')`, a jsonb key `profile ->> 'handle'`, alone or in a tuple with columns
/// and hstore keys.
///
/// `expression` is any Diesel expression on the table: functions declared with
/// `define_sql_function!`, operators, `diesel::dsl::sql` fragments. It is written into every
/// statement as text (`ON CONFLICT ((lower("email")))`) with its values as escaped literals,
/// never as bind parameters, so that PostgreSQL matches it with the index on every execution of
/// a prepared statement; a value of a type that cannot be written as a literal is an
/// [`Error::InvalidTarget`]. The expression must read the table's columns through Diesel's
/// column types, and the insert must supply every column it reads: the crate evaluates it on
/// each input row, its columns cast to their stored types and collations, to pair input rows
/// with the rows they conflict with. [`unique_index`] writes the matching index for a
/// migration.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel_upsert::index_expression;
/// use diesel_upsert::prelude::*;
///
/// diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// # let conn = &mut establish_connection();
/// let first: Account = diesel::insert_into(accounts::table)
///     .values((accounts::email.eq("Ada@Example.com"), accounts::name.eq("Ada")))
///     .upsert_and_get(index_expression(lower(accounts::email)), conn)?;
/// let again: Account = diesel::insert_into(accounts::table)
///     .values((accounts::email.eq("ada@example.com"), accounts::name.eq("Ada L.")))
///     .upsert_and_get(index_expression(lower(accounts::email)), conn)?;
/// assert_eq!((again.id, again.email.as_str()), (first.id, "ada@example.com"));
/// # Ok(())
/// # }
/// ```
pub fn index_expression<E>(expression: E) -> IndexExpression<E> {
    IndexExpression(expression)
}

/// SQL types this crate adds to Diesel's, for `table!` definitions.
pub mod sql_types {
    pub use crate::hstore::Hstore;
}

/// Everything needed to write upserts: `use diesel_upsert::prelude::*;`.
pub mod prelude {
    pub use crate::hstore::HstoreExpressionMethods;
    pub use crate::spec::{ConflictAction, Outcome};
    pub use crate::sql_types::Hstore;
    pub use crate::update::RunBulkUpdateDsl;
    pub use crate::upsert::{RunUpsertDsl, UpsertDsl};
}
#[cfg(doctest)]
mod doc_files;
