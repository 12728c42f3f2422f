//! [`UpsertDsl`]: the methods users call on `diesel::insert_into(..).values(..)`.

use crate::bulk::{check_returnable, inserted, not_found, Method};
use crate::catalog;
use crate::catalog::InsertedFlag;
use crate::error::{Error, Result};
use crate::plan::ATTEMPTS;
use crate::query_builder::literal::{self, column_names_of, leading_identifier, split_top_level};
use crate::query_builder::nodes::{
    BulkUpsert, FetchExisting, FetchKept, Inserted, KeyShape, UpsertReturning,
};
use crate::query_builder::statement::{
    NoUpdateCondition, NoUpdateValues, UpdateCondition, UpdateValues, UpsertStatement,
};
use crate::query_builder::target::Target;
use crate::query_builder::{
    BatchRows, ColumnSet, IntoConflictTarget, OnConflictDo, Records, RowValues, SingleRow,
};
use crate::spec::{ConflictAction, DuplicateKeys, Outcome};
use diesel::connection::LoadConnection;
use diesel::deserialize::FromSqlRow;
use diesel::expression::QueryMetadata;
use diesel::expression::{AppearsOnTable, Expression};
use diesel::pg::Pg;
use diesel::query_builder::{AsChangeset, AstPass, InsertStatement, QueryFragment};
use diesel::query_dsl::CompatibleType;
use diesel::query_dsl::RunQueryDsl;
use diesel::result::OptionalExtension;
use diesel::sql_types::{BoolOrNullableBool, Integer, Nullable};
use diesel::{Connection, QueryResult, Table};
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
    T: Table,
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
        let primary_key = literal::render(&self.target.primary_key())
            .map(|(sql, _)| column_names_of(&sql))
            .unwrap_or_default();
        OnConflictDo {
            from: self.target.from_clause(),
            table: self.target,
            operator: self.operator,
            records: self.records,
            target: target.into_target(),
            action,
            primary_key,
            predicate: None,
            update_only: None,
            update_values: NoUpdateValues,
            condition: NoUpdateCondition,
            skip_unchanged: false,
            duplicate_keys: None,
        }
    }
}

/// A selection (`M::as_select()`, the primary key) that the terminals can return as `Out`.
///
/// Implemented for every Diesel expression whose rows load as `Out`; it only spells out, once,
/// the bounds Diesel's `load` needs for the statements the terminals run (each returns the
/// selection beside an input position and an inserted flag).
pub trait Returning<Out>: Expression + QueryFragment<Pg> + Sized {
    #[doc(hidden)]
    fn load_single<S, C>(
        query: UpsertReturning<'_, S, (Self, Inserted)>,
        conn: &mut C,
    ) -> QueryResult<Vec<(Out, Option<bool>)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    #[doc(hidden)]
    fn load_existing<S, C>(
        query: FetchExisting<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Option<Out>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    #[doc(hidden)]
    fn load_bulk<S, C>(
        query: BulkUpsert<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Vec<Written<Out>>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    #[doc(hidden)]
    fn load_kept<S, C>(query: FetchKept<'_, S, Self>, conn: &mut C) -> QueryResult<Vec<(i32, Out)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;
}

/// A row a bulk upsert wrote: its input position (NULL when its stored key matches no input
/// key), the selection, the inserted flag.
type Written<Out> = (Option<i32>, Out, Option<bool>);

/// The SQL type of a row of one of the statements: the selection `ST` between a tag before it
/// (`Before`) and one after it (`After`).
type Tagged<Before, ST, After> = (Before, ST, After);

impl<Sel, Out> Returning<Out> for Sel
where
    Sel: Expression + QueryFragment<Pg>,
    Sel::SqlType: CompatibleType<Out, Pg>,
    Pg: QueryMetadata<Sel::SqlType>,
    Out: FromSqlRow<<Sel::SqlType as CompatibleType<Out, Pg>>::SqlType, Pg> + 'static,
    <Sel::SqlType as CompatibleType<Out, Pg>>::SqlType: 'static,
    (Sel::SqlType, Nullable<diesel::sql_types::Bool>): CompatibleType<(Out, Option<bool>), Pg>,
    Pg: QueryMetadata<(Sel::SqlType, Nullable<diesel::sql_types::Bool>)>,
    (Out, Option<bool>): FromSqlRow<
            <(Sel::SqlType, Nullable<diesel::sql_types::Bool>) as CompatibleType<
                (Out, Option<bool>),
                Pg,
            >>::SqlType,
            Pg,
        > + 'static,
    <(Sel::SqlType, Nullable<diesel::sql_types::Bool>) as CompatibleType<(Out, Option<bool>), Pg>>::SqlType:
        'static,
    Tagged<Nullable<Integer>, Sel::SqlType, Nullable<diesel::sql_types::Bool>>:
        CompatibleType<(Option<i32>, Out, Option<bool>), Pg>,
    Pg: QueryMetadata<Tagged<Nullable<Integer>, Sel::SqlType, Nullable<diesel::sql_types::Bool>>>,
    (Option<i32>, Out, Option<bool>): FromSqlRow<
            <Tagged<Nullable<Integer>, Sel::SqlType, Nullable<diesel::sql_types::Bool>> as CompatibleType<
                (Option<i32>, Out, Option<bool>),
                Pg,
            >>::SqlType,
            Pg,
        > + 'static,
    <Tagged<Nullable<Integer>, Sel::SqlType, Nullable<diesel::sql_types::Bool>> as CompatibleType<
        (Option<i32>, Out, Option<bool>),
        Pg,
    >>::SqlType: 'static,
    (Integer, Sel::SqlType): CompatibleType<(i32, Out), Pg>,
    Pg: QueryMetadata<(Integer, Sel::SqlType)>,
    (i32, Out): FromSqlRow<<(Integer, Sel::SqlType) as CompatibleType<(i32, Out), Pg>>::SqlType, Pg>
        + 'static,
    <(Integer, Sel::SqlType) as CompatibleType<(i32, Out), Pg>>::SqlType: 'static,
{
    fn load_single<S, C>(
        query: UpsertReturning<'_, S, (Self, Inserted)>,
        conn: &mut C,
    ) -> QueryResult<Vec<(Out, Option<bool>)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        query.load(conn)
    }

    fn load_existing<S, C>(
        query: FetchExisting<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Option<Out>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        query.get_result(conn).optional()
    }

    fn load_bulk<S, C>(
        query: BulkUpsert<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Vec<Written<Out>>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        query.load(conn)
    }

    fn load_kept<S, C>(query: FetchKept<'_, S, Self>, conn: &mut C) -> QueryResult<Vec<(i32, Out)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        query.load(conn)
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
    pub fn index_predicate<P>(mut self, predicate: P) -> Self
    where
        P: Expression + AppearsOnTable<T> + QueryFragment<Pg>,
        P::SqlType: BoolOrNullableBool,
    {
        self.predicate = Some(literal::inline_binds(&predicate));
        self
    }

    /// Restricts the columns `ConflictAction::Update` copies from the new row to `columns` (one
    /// column or a tuple). Columns the insert does not supply are never updated.
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
    pub fn skip_unchanged(mut self) -> Self {
        self.skip_unchanged = true;
        self
    }

    /// Chooses what a bulk call does with input rows sharing a conflict key, instead of
    /// [`Error::DuplicateConflictKey`] (the default for `ConflictAction::Update`).
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
        let columns = literal::render(&changeset)
            .map(|(sql, _)| {
                split_top_level(&sql)
                    .iter()
                    .filter_map(|assignment| leading_identifier(assignment).map(|(name, _)| name))
                    .collect()
            })
            .unwrap_or_default();
        OnConflictDo {
            table: self.table,
            from: self.from,
            operator: self.operator,
            records: self.records,
            target: self.target,
            action: self.action,
            primary_key: self.primary_key,
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
            primary_key: self.primary_key,
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
    U: SingleRow<T>,
    Self: UpsertStatement<Table = T>,
{
    /// Runs the upsert and returns the primary key of the inserted, updated or existing row.
    pub fn insert<Pk, C>(self, conn: &mut C) -> Result<Pk>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<T>: Returning<Pk>,
    {
        self.run_single(conn, || self.table.primary_key(), false)
            .map(|(pk, _)| pk)
    }

    /// Runs the upsert and returns the inserted, updated or existing row as `M` (any
    /// `Selectable` + `Queryable` model, also one that loads only some columns).
    ///
    /// With `ConflictAction::Nothing` (or a false `update_condition`, or `skip_unchanged` on an
    /// identical row) the statement writes nothing and returns nothing; the existing row is
    /// then read by its conflict key in a second statement, the key compared as the column's
    /// type compares it.
    pub fn insert_and_get<M, C>(self, conn: &mut C) -> Result<M>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        self.run_single(conn, M::as_select, false)
            .map(|(model, _)| model)
    }

    /// Like [`insert_and_get`](Self::insert_and_get), and tells whether the row was inserted,
    /// updated or left unchanged.
    pub fn insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<(M, Outcome)>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg>,
        ModelSelection<M>: Returning<M>,
    {
        let (model, outcome) = self.run_single(conn, M::as_select, true)?;
        Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
    }

    /// The single-row flow: one statement when it returns the row; otherwise read the row its
    /// conflict key points at, and start over (a bounded number of times) if that row was
    /// deleted in between. With an update condition the two statements share a transaction:
    /// `DO UPDATE … WHERE` locks the conflicting row even when the condition is false, so the
    /// row read back is exactly the one the condition saw.
    fn run_single<Sel, Out, C>(
        &self,
        conn: &mut C,
        selection: impl Fn() -> Sel,
        outcomes: bool,
    ) -> Result<(Out, Option<Outcome>)>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        Sel: Returning<Out>,
    {
        // Reject a target that cannot be written before Diesel starts the query (and reports
        // it to instrumentation).
        self.check()?;
        let catalog = catalog::lookup(&self.table_sql(), self.target(), conn)?;
        check_returnable(self, &catalog)?;
        let row = &self.rows()[0];
        let mut supplied = Vec::new();
        row.supplied_columns(&mut supplied);
        let method = Method::choose(self, &catalog, &supplied, outcomes);
        let upsert = |conn: &mut C, flag, do_nothing| -> Result<Option<(Out, Option<bool>)>> {
            let query = UpsertReturning {
                statement: self,
                rows: vec![row],
                returning: (selection(), inserted(self, flag)),
                do_nothing,
            };
            Ok(Sel::load_single(query, conn)
                .map_err(|e| classify_error(self, e))?
                .pop())
        };
        // The key is needed only to read a row back (a named constraint's columns must then be
        // supplied by the insert).
        let fetch = |conn: &mut C, lock| -> Result<Option<Out>> {
            let key = KeyShape::new(catalog.key(self.target(), &supplied)?, &catalog)?;
            let query = FetchExisting {
                statement: self,
                row,
                key: &key,
                selection: selection(),
                lock,
            };
            Ok(Sel::load_existing(query, conn)?)
        };
        let flow = |conn: &mut C| -> Result<(Out, Option<Outcome>)> {
            for _ in 0..ATTEMPTS {
                match method {
                    Method::OneStatement(flag) => {
                        if let Some((out, inserted)) = upsert(conn, flag, false)? {
                            return Ok((out, inserted.map(Outcome::written)));
                        }
                        if let Some(out) = fetch(conn, false)? {
                            return Ok((out, Some(Outcome::Unchanged)));
                        }
                    }
                    Method::TwoPhases => {
                        // `DO NOTHING` returns the row only when it inserted it.
                        if let Some((out, _)) = upsert(conn, InsertedFlag::Always(true), true)? {
                            return Ok((out, Some(Outcome::Inserted)));
                        }
                        // Locked, the row can neither vanish nor change before the update.
                        if let Some(locked) = fetch(conn, true)? {
                            return Ok(match upsert(conn, InsertedFlag::Always(false), false)? {
                                Some((out, _)) => (out, Some(Outcome::Updated)),
                                None => (locked, Some(Outcome::Unchanged)),
                            });
                        }
                    }
                }
            }
            Err(not_found(&catalog, 0))
        };
        if self.has_condition() || method == Method::TwoPhases {
            conn.transaction(flow)
        } else {
            flow(conn)
        }
    }
}

impl<T, U, Op, V, W> OnConflictDo<T, U, Op, V, W>
where
    T: Table,
    U: BatchRows<T>,
    Self: UpsertStatement<Table = T>,
{
    /// Runs a bulk upsert and returns the primary key of each input row's row, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    pub fn bulk_insert<Pk, C>(self, conn: &mut C) -> Result<Vec<Pk>>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        PrimaryKey<T>: Returning<Pk>,
        Pk: Clone,
    {
        let rows = crate::bulk::run(&self, conn, || self.table.primary_key(), false)?;
        Ok(rows.into_iter().map(|(pk, _)| pk).collect())
    }

    /// Runs a bulk upsert and returns each input row's row as `M`, in input order.
    ///
    /// See [`bulk_insert_and_get_with_outcome`](Self::bulk_insert_and_get_with_outcome).
    pub fn bulk_insert_and_get<M, C>(self, conn: &mut C) -> Result<Vec<M>>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg> + Clone,
        ModelSelection<M>: Returning<M>,
    {
        let rows = crate::bulk::run(&self, conn, M::as_select, false)?;
        Ok(rows.into_iter().map(|(model, _)| model).collect())
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
    pub fn bulk_insert_and_get_with_outcome<M, C>(self, conn: &mut C) -> Result<Vec<(M, Outcome)>>
    where
        C: Connection<Backend = Pg> + LoadConnection,
        M: Selectable<Pg> + Clone,
        ModelSelection<M>: Returning<M>,
    {
        crate::bulk::run(&self, conn, M::as_select, true)?
            .into_iter()
            .map(|(model, outcome)| {
                Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
            })
            .collect()
    }
}

/// Turns PostgreSQL's "no unique or exclusion constraint matching the ON CONFLICT
/// specification" (42P10) into [`Error::NoMatchingUniqueIndex`] with a hint.
///
/// Diesel does not expose the SQLSTATE, so this matches the English message (PostgreSQL's
/// default `lc_messages`); with localized messages the error stays an [`Error::Query`].
pub(crate) fn classify_error<S: UpsertStatement>(
    statement: &S,
    error: diesel::result::Error,
) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    if let DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) = &error {
        if info
            .message()
            .contains("no unique or exclusion constraint matching the ON CONFLICT")
        {
            let table = statement.table_sql();
            let target = render_target(statement.target());
            let mut hint = format!("CREATE UNIQUE INDEX ON {table} {target}");
            if let Some(predicate) = statement.predicate() {
                hint.push_str(" WHERE ");
                hint.push_str(predicate);
            }
            return Error::NoMatchingUniqueIndex {
                table,
                target,
                hint,
            };
        }
    }
    error.into()
}

fn render_target(target: &Target) -> String {
    struct TargetSql<'a>(&'a Target);
    impl QueryFragment<Pg> for TargetSql<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            self.0.walk(&mut out)
        }
    }
    literal::render(&TargetSql(target))
        .map(|(sql, _)| sql)
        .unwrap_or_default()
}
