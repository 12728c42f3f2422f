//! [`UpsertDsl`]: the methods users call on `diesel::insert_into(..).values(..)`.

use crate::error::{Error, Result};
use crate::literal;
use crate::query_builder::statement::{OnConflictDo, UpsertStatement};
use crate::query_builder::update::{
    NoUpdateCondition, NoUpdateValues, UpdateCondition, UpdateValues,
};
use crate::rows::{BatchRows, Records, SingleRow};
use crate::run::returning::Returning;
use crate::spec::{BulkSummary, ConflictAction, DuplicateKeys, Outcome};
use crate::target::{ColumnSet, IntoConflictTarget};
use diesel::connection::LoadConnection;
use diesel::expression::{AppearsOnTable, Expression};
use diesel::pg::Pg;
use diesel::query_builder::{AsChangeset, InsertStatement, QueryFragment};
use diesel::sql_types::BoolOrNullableBool;
use diesel::{Connection, Table};
use diesel::{Selectable, SelectableHelper};

/// Conflict handling for Diesel's `InsertStatement`: `diesel::insert_into(t).values(..)` gains
/// `on_conflict_do` and the psqlextra-style shorthands.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel_upsert::prelude::*;
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// # let conn = &mut establish_connection();
/// let id: i64 = diesel::insert_into(products::table)
///     .values(&NewProduct::new("SKU-1", "Teapot"))
///     .upsert(products::sku, conn)?;
///
/// // Same key again: the row is updated in place, not duplicated.
/// let again: Product = diesel::insert_into(products::table)
///     .values(&NewProduct::new("SKU-1", "Teapot, blue"))
///     .upsert_and_get(products::sku, conn)?;
/// assert_eq!((again.id, again.name.as_str()), (id, "Teapot, blue"));
/// # Ok(())
/// # }
/// ```
pub trait UpsertDsl: Sized {
    /// The table inserted into.
    type Table: Table;
    /// The records of the insert (one row or a batch).
    type Records;
    /// Diesel's insert operator.
    type Operator;

    /// Starts an `INSERT … ON CONFLICT <target> DO UPDATE | DO NOTHING`.
    ///
    /// `target` is a column (`products::sku`), a tuple of columns and hstore keys
    /// (`(vendor_products::vendor, vendor_products::sku)`), or
    /// [`on_constraint("name")`](crate::on_constraint). The target is written into the SQL as
    /// text, never as a bind parameter, so PostgreSQL can infer the unique index on every
    /// execution of the prepared statement.
    fn on_conflict_do<X, M>(
        self,
        target: X,
        action: ConflictAction,
    ) -> OnConflictDo<Self::Table, Self::Records, Self::Operator>
    where
        X: IntoConflictTarget<Self::Table, M>;

    /// Inserts one row or updates the row with the same `target` key; returns the primary key
    /// of the inserted or updated row. Shorthand for
    /// `.on_conflict_do(target, ConflictAction::Update).insert(conn)`.
    fn upsert<X, M, Pk, C>(self, target: X, conn: &mut C) -> Result<Pk>
    where
        X: IntoConflictTarget<Self::Table, M>,
        Self::Records: SingleRow<Self::Table>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            UpsertStatement<Table = Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<Self::Table>: Returning<Pk>,
    {
        self.on_conflict_do(target, ConflictAction::Update)
            .insert(conn)
    }

    /// Inserts one row or updates the row with the same `target` key; returns the row as `M`.
    /// Shorthand for `.on_conflict_do(target, ConflictAction::Update).insert_and_get(conn)`.
    fn upsert_and_get<X, MX, M, C>(self, target: X, conn: &mut C) -> Result<M>
    where
        X: IntoConflictTarget<Self::Table, MX>,
        Self::Records: SingleRow<Self::Table>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            UpsertStatement<Table = Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        self.on_conflict_do(target, ConflictAction::Update)
            .insert_and_get(conn)
    }

    /// Inserts a batch of rows or updates the rows with the same `target` keys; returns one row
    /// per input row, in input order. Shorthand for
    /// `.on_conflict_do(target, ConflictAction::Update).bulk_insert_and_get(conn)`.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-U1", "Cup"), NewProduct::new("SKU-U2", "Pot")];
    /// let got: Vec<Product> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .bulk_upsert(products::sku, conn)?;
    /// assert_eq!(got.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_upsert<X, MX, M, C>(self, target: X, conn: &mut C) -> Result<Vec<M>>
    where
        X: IntoConflictTarget<Self::Table, MX>,
        Self::Records: BatchRows<Self::Table>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            UpsertStatement<Table = Self::Table>,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg> + Clone,
        ModelSelection<M>: Returning<M>,
    {
        self.on_conflict_do(target, ConflictAction::Update)
            .bulk_insert_and_get(conn)
    }
}

/// The primary-key expression of table `T`.
pub type PrimaryKey<T> = <T as Table>::PrimaryKey;

impl<T, U, Op> UpsertDsl for InsertStatement<T, U, Op>
where
    T: Table + 'static,
    T::FromClause: QueryFragment<Pg>,
    T::PrimaryKey: QueryFragment<Pg>,
    U: Records<T>,
{
    type Table = T;
    type Records = U;
    type Operator = Op;

    fn on_conflict_do<X, M>(self, target: X, action: ConflictAction) -> OnConflictDo<T, U, Op>
    where
        X: IntoConflictTarget<T, M>,
    {
        let names = literal::table_names_of(&self.target);
        OnConflictDo {
            from: self.target.from_clause(),
            table: self.target,
            operator: self.operator,
            records: self.records,
            target: target.into_target(),
            action,
            names,
            predicate: None,
            update_only: None,
            update_values: NoUpdateValues,
            condition: NoUpdateCondition,
            skip_unchanged: false,
            duplicate_keys: None,
        }
    }
}

/// `M::as_select()`: how models are read back.
pub type ModelSelection<M> = diesel::dsl::AsSelect<M, Pg>;

impl<T, U, Op, V, W> OnConflictDo<T, U, Op, V, W>
where
    T: Table,
{
    /// Targets a partial unique index: `ON CONFLICT (…) WHERE <predicate>`.
    ///
    /// The predicate must match the `WHERE` clause of the partial index for PostgreSQL to infer
    /// it. It is written into the SQL as text — values bound inside it (`role.eq("owner")`)
    /// become escaped literals — because PostgreSQL cannot match a bind parameter against an
    /// index predicate once it plans the prepared statement generically. Combining a predicate
    /// with [`on_constraint`](crate::on_constraint) is an [`Error::InvalidTarget`].
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// // memberships: UNIQUE (org) WHERE role = 'owner' (one owner per organization).
    /// let owner = NewMembership { user_id: 1, org: "acme", role: "owner", deleted_at: None };
    /// let first: Membership = diesel::insert_into(memberships::table)
    ///     .values(&owner)
    ///     .on_conflict_do(memberships::org, ConflictAction::Update)
    ///     .index_predicate(memberships::role.eq("owner"))
    ///     .insert_and_get(conn)?;
    /// let handed_over: Membership = diesel::insert_into(memberships::table)
    ///     .values(&NewMembership { user_id: 2, ..owner })
    ///     .on_conflict_do(memberships::org, ConflictAction::Update)
    ///     .index_predicate(memberships::role.eq("owner"))
    ///     .insert_and_get(conn)?;
    /// assert_eq!((handed_over.id, handed_over.user_id), (first.id, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn index_predicate<P>(mut self, predicate: P) -> Self
    where
        P: Expression + AppearsOnTable<T> + QueryFragment<Pg>,
        P::SqlType: BoolOrNullableBool,
    {
        self.predicate = Some(literal::inline_binds(&predicate).map_err(|e| match e {
            Error::InvalidTarget { reason } => reason,
            other => other.to_string(),
        }));
        self
    }

    /// Restricts the columns `ConflictAction::Update` copies from the new row to `columns` (one
    /// column or a tuple). Columns the insert does not supply are never updated.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-O", "Cup").qty(1))
    ///     .execute(conn)?;
    /// // Only `qty` is copied from the new row; `name` keeps its stored value.
    /// let row: Product = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-O", "Mug").qty(7))
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .update_only(products::qty)
    ///     .insert_and_get(conn)?;
    /// assert_eq!((row.name.as_str(), row.qty), ("Cup", 7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn update_only<X, M>(mut self, columns: X) -> Self
    where
        X: ColumnSet<T, M>,
    {
        self.update_only = Some(columns.column_names());
        self
    }

    /// Leaves a row alone when writing it would store exactly what is stored: adds
    /// `(ROW(t.a, …))::record *<> (ROW(excluded.a, …))::record` to the update condition (a
    /// comparison of binary images, so citext `'HELLO'` over `'Hello'` is written and `json`
    /// columns work), so an identical row costs no new row version (no dead tuple, no WAL for
    /// the row). Columns assigned by `update_values` are not compared. The row is still
    /// returned by the `*_and_get` terminals, with [`Outcome::Unchanged`].
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let upsert = || {
    ///     diesel::insert_into(products::table)
    ///         .values(NewProduct::new("SKU-S", "Cup"))
    ///         .on_conflict_do(products::sku, ConflictAction::Update)
    ///         .skip_unchanged()
    /// };
    /// let (_, first): (Product, Outcome) = upsert().insert_and_get_with_outcome(conn)?;
    /// let (_, again): (Product, Outcome) = upsert().insert_and_get_with_outcome(conn)?;
    /// assert_eq!((first, again), (Outcome::Inserted, Outcome::Unchanged));
    /// # Ok(())
    /// # }
    /// ```
    pub fn skip_unchanged(mut self) -> Self {
        self.skip_unchanged = true;
        self
    }

    /// Chooses what a bulk call does with input rows sharing a conflict key, instead of
    /// [`Error::DuplicateConflictKey`] (the default for `ConflictAction::Update`).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// use diesel_upsert::DuplicateKeys;
    ///
    /// let rows = vec![NewProduct::new("SKU-D", "first"), NewProduct::new("SKU-D", "last")];
    /// let got: Vec<Product> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .on_duplicate_keys(DuplicateKeys::KeepLast)
    ///     .bulk_insert_and_get(conn)?;
    /// // Every input row gets the row its key ended as.
    /// assert_eq!((got[0].name.as_str(), got[1].id), ("last", got[0].id));
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_duplicate_keys(mut self, policy: DuplicateKeys) -> Self {
        self.duplicate_keys = Some(policy);
        self
    }
}

impl<T, U, Op, W> OnConflictDo<T, U, Op, NoUpdateValues, W>
where
    T: Table,
{
    /// Assigns columns with any expression, on top of the default `SET` list: one
    /// `column.eq(expr)` or a tuple of them. A column assigned here replaces its
    /// `column = excluded.column` entry; values bound inside stay bind parameters.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel::upsert::excluded;
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// for _ in 0..3 {
    ///     diesel::insert_into(products::table)
    ///         .values(&NewProduct { qty: 5, ..NewProduct::new("SKU-2", "Cup") })
    ///         .on_conflict_do(products::sku, ConflictAction::Update)
    ///         .update_values(products::qty.eq(products::qty + excluded(products::qty)))
    ///         .insert::<i64, _>(conn)?;
    /// }
    /// let qty: i32 = products::table.filter(products::sku.eq("SKU-2")).select(products::qty).get_result(conn)?;
    /// assert_eq!(qty, 15);
    /// # Ok(())
    /// # }
    /// ```
    pub fn update_values<CS>(
        self,
        changeset: CS,
    ) -> OnConflictDo<T, U, Op, UpdateValues<CS::Changeset>, W>
    where
        CS: AsChangeset<Target = T>,
        CS::Changeset: QueryFragment<Pg>,
    {
        let changeset = changeset.as_changeset();
        let columns = literal::assigned_columns(&changeset);
        OnConflictDo {
            table: self.table,
            from: self.from,
            operator: self.operator,
            records: self.records,
            target: self.target,
            action: self.action,
            names: self.names,
            predicate: self.predicate,
            update_only: self.update_only,
            update_values: UpdateValues { changeset, columns },
            condition: self.condition,
            skip_unchanged: self.skip_unchanged,
            duplicate_keys: self.duplicate_keys,
        }
    }
}

impl<T, U, Op, V> OnConflictDo<T, U, Op, V, NoUpdateCondition>
where
    T: Table,
{
    /// Updates only rows where `condition` holds: `DO UPDATE SET … WHERE condition`.
    ///
    /// The existing row is read through the table's columns, the new one through
    /// `diesel::upsert::excluded(column)`. A row where the condition is false is left alone and
    /// still returned by the `*_and_get` terminals, with [`Outcome::Unchanged`]. Combine several
    /// conditions with `.and(..)`.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// use diesel::upsert::excluded;
    ///
    /// diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-C", "Cup").price_cents(500))
    ///     .execute(conn)?;
    /// // Only ever lower the price: a higher one leaves the row alone.
    /// let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-C", "Cup").price_cents(900))
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .update_condition(excluded(products::price_cents).lt(products::price_cents))
    ///     .insert_and_get_with_outcome(conn)?;
    /// assert_eq!((row.price_cents, outcome), (500, Outcome::Unchanged));
    /// # Ok(())
    /// # }
    /// ```
    pub fn update_condition<E>(self, condition: E) -> OnConflictDo<T, U, Op, V, UpdateCondition<E>>
    where
        E: Expression + AppearsOnTable<T> + QueryFragment<Pg>,
        E::SqlType: BoolOrNullableBool,
    {
        OnConflictDo {
            table: self.table,
            from: self.from,
            operator: self.operator,
            records: self.records,
            target: self.target,
            action: self.action,
            names: self.names,
            predicate: self.predicate,
            update_only: self.update_only,
            update_values: self.update_values,
            condition: UpdateCondition(condition),
            skip_unchanged: self.skip_unchanged,
            duplicate_keys: self.duplicate_keys,
        }
    }
}

impl<T, U, Op, V, W> OnConflictDo<T, U, Op, V, W>
where
    T: Table,
    Self: UpsertStatement<Table = T>,
{
    /// Runs the upsert and returns the primary key of the inserted, updated or existing row.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
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
    pub fn insert<Pk, C>(self, conn: &mut C) -> Result<Pk>
    where
        U: SingleRow<T>,
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<T>: Returning<Pk>,
    {
        crate::run::sync::single(&self, conn, || self.table.primary_key(), false).map(|(pk, _)| pk)
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
    /// # include!("doctest_setup.rs");
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
    pub fn insert_and_get<M, C>(self, conn: &mut C) -> Result<M>
    where
        U: SingleRow<T>,
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
    /// # include!("doctest_setup.rs");
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
    pub fn insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<(M, Outcome)>
    where
        U: SingleRow<T>,
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        let (model, outcome) = crate::run::sync::single(&self, conn, M::as_select, true)?;
        Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
    }
}

impl<T, U, Op, V, W> OnConflictDo<T, U, Op, V, W>
where
    T: Table,
    Self: UpsertStatement<Table = T>,
{
    /// Runs a bulk upsert and returns the primary key of each input row's row, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
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
    pub fn bulk_insert<Pk, C>(self, conn: &mut C) -> Result<Vec<Pk>>
    where
        U: BatchRows<T>,
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<T>: Returning<Pk>,
        Pk: Clone,
    {
        let rows = crate::run::sync::bulk(&self, conn, || self.table.primary_key(), false)?;
        Ok(rows.into_iter().map(|(pk, _)| pk).collect())
    }

    /// Runs a bulk upsert and returns each input row's row as `M`, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
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
    pub fn bulk_insert_and_get<M, C>(self, conn: &mut C) -> Result<Vec<M>>
    where
        U: BatchRows<T>,
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
    /// [`on_duplicate_keys`](Self::on_duplicate_keys) chose a policy); each statement returns
    /// two counts instead of rows, and rows a conflict left in place are not read back. A row
    /// that was not sent (it shares its key with one that was) counts as unchanged.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
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
    pub fn bulk_execute<C>(self, conn: &mut C) -> Result<BulkSummary>
    where
        U: BatchRows<T>,
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
    ///   `ConflictAction::Update` unless [`on_duplicate_keys`](Self::on_duplicate_keys) chose a
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
    /// # include!("doctest_setup.rs");
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
    pub fn bulk_insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<Vec<(M, Outcome)>>
    where
        U: BatchRows<T>,
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
