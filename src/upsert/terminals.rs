//! [`RunUpsertDsl`]: the terminals of the builder on a synchronous connection; each hands the
//! call to the synchronous driver.

use super::{ModelSelection, PrimaryKey};
use crate::error::{Error, Result};
use crate::query_builder::statement::UpsertStatement;
use crate::rows::{BatchRows, SingleRow};
use crate::run::returning::Returning;
use crate::spec::{BulkSummary, Outcome};
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::{Connection, Table};
use diesel::{Selectable, SelectableHelper};

/// The terminals of [`OnConflictDo`](crate::OnConflictDo) on a synchronous
/// `diesel::Connection` (`PgConnection`, r2d2's pooled connections): each runs the upsert and
/// returns what it names. In the prelude.
///
/// With the `async` feature, `diesel_upsert::asynchronous::RunUpsertDsl` has the same methods
/// on diesel-async's connections, returning futures: import one or the other, the way
/// `diesel::RunQueryDsl` and `diesel_async::RunQueryDsl` are imported.
pub trait RunUpsertDsl: UpsertStatement + Sized {
    /// Runs the upsert and returns the primary key of the inserted, updated or existing row.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let id: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-I", "Cup"))
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .insert(conn)?;
    /// // The key exists: `DO NOTHING` keeps the row, and its id is still returned.
    /// let again: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-I", "Mug"))
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .insert(conn)?;
    /// assert_eq!(again, id);
    /// # Ok(())
    /// # }
    /// ```
    fn insert<Pk, C>(self, conn: &mut C) -> Result<Pk>
    where
        Self::Records: SingleRow<Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<Self::Table>: Returning<Pk>,
    {
        crate::run::sync::single(&self, conn, || self.table().primary_key(), false)
            .map(|(pk, _)| pk)
    }

    /// Runs the upsert and returns the inserted, updated or existing row as `M` (any
    /// `Selectable` + `Queryable` model, also one that loads only some columns).
    ///
    /// With `ConflictAction::Nothing` (or a false `update_condition`, or `skip_unchanged` on an
    /// identical row) the statement writes nothing and returns nothing; the existing row is
    /// then read by its conflict key in a second statement, the key compared as the column's
    /// type compares it.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let row: Product = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-G", "Cup"))
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .insert_and_get(conn)?;
    /// assert_eq!(row.name, "Cup");
    /// # Ok(())
    /// # }
    /// ```
    fn insert_and_get<M, C>(self, conn: &mut C) -> Result<M>
    where
        Self::Records: SingleRow<Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        crate::run::sync::single(&self, conn, M::as_select, false).map(|(model, _)| model)
    }

    /// Like [`insert_and_get`](Self::insert_and_get), and tells whether the row was inserted,
    /// updated or left unchanged.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let upsert = |name| {
    ///     diesel::insert_into(products::table)
    ///         .values(NewProduct::new("SKU-W", name))
    ///         .on_conflict_do(products::sku, ConflictAction::Update)
    /// };
    /// let (_, first): (Product, Outcome) = upsert("Cup").insert_and_get_with_outcome(conn)?;
    /// let (row, second): (Product, Outcome) = upsert("Mug").insert_and_get_with_outcome(conn)?;
    /// assert_eq!((first, second, row.name.as_str()), (Outcome::Inserted, Outcome::Updated, "Mug"));
    /// # Ok(())
    /// # }
    /// ```
    fn insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<(M, Outcome)>
    where
        Self::Records: SingleRow<Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        let (model, outcome) = crate::run::sync::single(&self, conn, M::as_select, true)?;
        Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
    }

    /// Runs a bulk upsert and returns the primary key of each input row's row, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-B2", "Pot"), NewProduct::new("SKU-B1", "Cup")];
    /// let ids: Vec<i64> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_insert(conn)?;
    /// // One id per input row, in input order.
    /// let skus: Vec<String> = ids
    ///     .iter()
    ///     .map(|id| products::table.find(id).select(products::sku).get_result(conn))
    ///     .collect::<QueryResult<_>>()?;
    /// assert_eq!(skus, ["SKU-B2", "SKU-B1"]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert<Pk, C>(self, conn: &mut C) -> Result<Vec<Pk>>
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<Self::Table>: Returning<Pk>,
        Pk: Clone,
    {
        let rows = crate::run::sync::bulk(&self, conn, || self.table().primary_key(), false)?;
        Ok(rows.into_iter().map(|(pk, _)| pk).collect())
    }

    /// Runs a bulk upsert and returns each input row's row as `M`, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-L1", "Cup"), NewProduct::new("SKU-L2", "Pot")];
    /// let got: Vec<Product> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .bulk_insert_and_get(conn)?;
    /// assert_eq!(got.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["SKU-L1", "SKU-L2"]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert_and_get<M, C>(self, conn: &mut C) -> Result<Vec<M>>
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg> + Clone,
        ModelSelection<M>: Returning<M>,
    {
        let rows = crate::run::sync::bulk(&self, conn, M::as_select, false)?;
        Ok(rows.into_iter().map(|(model, _)| model).collect())
    }

    /// Runs a bulk upsert and returns no rows, only how many input rows were inserted, updated
    /// and left unchanged ([`BulkSummary`]).
    ///
    /// The same checks, key order, chunks and single transaction as the other bulk terminals
    /// (duplicates are [`Error::DuplicateConflictKey`] for `ConflictAction::Update` unless
    /// [`on_duplicate_keys`](crate::OnConflictDo::on_duplicate_keys) chose a policy); each statement returns
    /// two counts instead of rows, and rows a conflict left in place are not read back. A row
    /// that was not sent (it shares its key with one that was) counts as unchanged.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    /// use diesel_upsert::BulkSummary;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-A", "Cup"), NewProduct::new("SKU-B", "Pot")];
    /// let summary = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_execute(conn)?;
    /// assert_eq!(summary, BulkSummary { inserted: 2, updated: 0, unchanged: 0 });
    ///
    /// // `Nothing` with one new row: the two existing rows stay as they are.
    /// let rows = vec![
    ///     NewProduct::new("SKU-A", "Cup"),
    ///     NewProduct::new("SKU-B", "Teapot"),
    ///     NewProduct::new("SKU-C", "Tray"),
    /// ];
    /// let summary = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .bulk_execute(conn)?;
    /// assert_eq!(summary, BulkSummary { inserted: 1, updated: 0, unchanged: 2 });
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_execute<C>(self, conn: &mut C) -> Result<BulkSummary>
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        crate::run::sync::bulk_execute(&self, conn)
    }

    /// Runs a bulk upsert and returns, for each input row in input order, its row as `M` and
    /// what happened to it.
    ///
    /// - Every row must supply the same columns: otherwise [`Error::InconsistentColumns`].
    /// - Rows sharing a conflict key — as the unique index compares keys: citext `'a'` and
    ///   `'A'`, numeric `1.0` and `1.00` are one key — are [`Error::DuplicateConflictKey`] for
    ///   `ConflictAction::Update` unless [`on_duplicate_keys`](crate::OnConflictDo::on_duplicate_keys) chose a
    ///   policy; the first row wins for `ConflictAction::Nothing`. A row that was not sent gets
    ///   the row its key ended as, with [`Outcome::Unchanged`].
    /// - Rows are sent sorted by conflict key (concurrent calls lock rows in the same order),
    ///   in statements of at most 20 000 rows (or under PostgreSQL's 65 535 bind parameters),
    ///   all in one transaction (a savepoint inside the caller's): all rows or none.
    /// - Each returned row is paired with its input row by an input position the statement
    ///   carries, never by position in the output: rows a conflict left in place are read back
    ///   by key, with [`Outcome::Unchanged`].
    /// - Empty input returns an empty `Vec` without sending anything.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-E1", "Cup"))
    ///     .execute(conn)?;
    /// let rows = vec![NewProduct::new("SKU-E1", "Mug"), NewProduct::new("SKU-E2", "Pot")];
    /// let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_insert_and_get_with_outcome(conn)?;
    /// let outcomes: Vec<Outcome> = got.iter().map(|(_, o)| *o).collect();
    /// assert_eq!(outcomes, [Outcome::Updated, Outcome::Inserted]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<Vec<(M, Outcome)>>
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg> + Clone,
        ModelSelection<M>: Returning<M>,
    {
        crate::run::sync::bulk(&self, conn, M::as_select, true)?
            .into_iter()
            .map(|(model, outcome)| {
                Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
            })
            .collect()
    }
}

impl<S: UpsertStatement> RunUpsertDsl for S {}
