//! [`UpsertDsl`]: the methods users call on `diesel::insert_into(..).values(..)`, and the
//! options of the builder it returns. The builder's terminals are in `terminals.rs`: one room,
//! two files, because every method carries a runnable example.

use crate::error::{Error, Result};
use crate::literal;
use crate::query_builder::statement::{OnConflictDo, UpsertStatement};
use crate::query_builder::update::{
    NoUpdateCondition, NoUpdateValues, UpdateCondition, UpdateValues,
};
use crate::rows::{BatchRows, Records, SingleRow};
use crate::run::returning::Returning;
use crate::spec::{ConflictAction, DuplicateKeys, Limits};
use crate::target::{ColumnSet, IntoConflictTarget, Target};
use diesel::connection::LoadConnection;
use diesel::expression::{AppearsOnTable, Expression};
use diesel::pg::Pg;
use diesel::query_builder::{AsChangeset, InsertStatement, QueryFragment};
use diesel::sql_types::{BoolOrNullableBool, Date, Nullable, Timestamp, Timestamptz};
use diesel::Selectable;
use diesel::{Column, Connection, Table};

/// Conflict handling for Diesel's `InsertStatement`: `diesel::insert_into(t).values(..)` gains
/// `on_conflict_do` and the psqlextra-style shorthands.
///
/// ```rust
/// # include!("../doctest_setup.rs");
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
            UpsertStatement<Table = Self::Table, Records = Self::Records>,
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
            UpsertStatement<Table = Self::Table, Records = Self::Records>,
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
    /// # include!("../doctest_setup.rs");
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
            UpsertStatement<Table = Self::Table, Records = Self::Records>,
        <OnConflictDo<Self::Table, Self::Records, Self::Operator> as UpsertStatement>::Row: Sync,
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
        OnConflictDo::new(self, target.into_target(), action)
    }
}

impl<T, U, Op> OnConflictDo<T, U, Op>
where
    T: Table + 'static,
    T::FromClause: QueryFragment<Pg>,
    T::PrimaryKey: QueryFragment<Pg>,
{
    /// The builder `on_conflict_do` starts, of either driver's `UpsertDsl`.
    pub(crate) fn new(
        insert: InsertStatement<T, U, Op>,
        target: Target,
        action: ConflictAction,
    ) -> Self {
        let names = literal::table_names_of(&insert.target);
        OnConflictDo {
            from: insert.target.from_clause(),
            table: insert.target,
            operator: insert.operator,
            records: insert.records,
            target,
            action,
            names,
            predicate: None,
            update_only: None,
            update_except: Vec::new(),
            touch: Vec::new(),
            update_values: NoUpdateValues,
            condition: NoUpdateCondition,
            skip_unchanged: false,
            duplicate_keys: None,
            limits: Limits::default(),
            constraint_columns: std::sync::OnceLock::new(),
        }
    }
}

/// The SQL types [`touch`](OnConflictDo::touch) can set to `now()`: `timestamptz`, `timestamp`
/// and `date`, nullable or not. Sealed.
pub trait TimestampType: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! timestamp_types {
    ($($ty:ty),+) => {$(
        impl sealed::Sealed for $ty {}
        impl TimestampType for $ty {}
        impl sealed::Sealed for Nullable<$ty> {}
        impl TimestampType for Nullable<$ty> {}
    )+};
}

timestamp_types!(Timestamptz, Timestamp, Date);

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
    /// # include!("../doctest_setup.rs");
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
        self.predicate = Some(
            literal::inline_binds(&predicate, "the index predicate").map_err(|e| match e {
                Error::InvalidTarget { reason } => reason,
                other => other.to_string(),
            }),
        );
        self
    }

    /// Restricts the columns `ConflictAction::Update` copies from the new row to `columns` (one
    /// column or a tuple). Columns the insert does not supply are never updated.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
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

    /// Leaves `columns` (one column or a tuple) out of the `SET` list of `ConflictAction::Update`:
    /// the complement of [`update_only`](Self::update_only). Columns written when a row is
    /// inserted and never overwritten (`created_at`, `created_by`) need no second list. Combines
    /// with `update_only` (what is left of its list), `update_values` (which may still assign
    /// such a column with an expression), `update_condition` and `skip_unchanged` (which
    /// compares only the columns still written).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-X", "Cup").description("first import"))
    ///     .execute(conn)?;
    /// // Everything the new row supplies is copied, except `description`.
    /// let row: Product = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("SKU-X", "Mug").description("second import").qty(4))
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .update_except(products::description)
    ///     .insert_and_get(conn)?;
    /// assert_eq!((row.name.as_str(), row.qty), ("Mug", 4));
    /// assert_eq!(row.description.as_deref(), Some("first import"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn update_except<X, M>(mut self, columns: X) -> Self
    where
        X: ColumnSet<T, M>,
    {
        self.update_except = columns.column_names();
        self
    }

    /// Sets `column` to `now()` when `ConflictAction::Update` writes a conflicting row, and only
    /// then: a row a false `update_condition` or [`skip_unchanged`](Self::skip_unchanged)
    /// leaves alone keeps its timestamp (and gets no new row version), unlike timestamps
    /// written by the application, which change on every save. The column is left out of the
    /// default `SET` list and of `skip_unchanged`'s comparison; `update_values` assigning the
    /// same column wins. On insert the column gets what the row supplies, or its default.
    /// `touch` alone does not make an update: with nothing else to set, the statement is
    /// `DO NOTHING`. Call it again to touch several columns.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// use chrono::{DateTime, Utc};
    ///
    /// let long_ago: DateTime<Utc> = "2001-01-01T00:00:00Z".parse().unwrap();
    /// diesel::insert_into(products::table)
    ///     .values((products::sku.eq("SKU-T"), products::name.eq("Cup"), products::updated_at.eq(long_ago)))
    ///     .execute(conn)?;
    /// let upsert = |name| {
    ///     diesel::insert_into(products::table)
    ///         .values(NewProduct::new("SKU-T", name))
    ///         .on_conflict_do(products::sku, ConflictAction::Update)
    ///         .skip_unchanged()
    ///         .touch(products::updated_at)
    /// };
    /// // The same name: nothing is written, the timestamp stays.
    /// let (same, outcome): (Product, Outcome) = upsert("Cup").insert_and_get_with_outcome(conn)?;
    /// assert_eq!((same.updated_at, outcome), (long_ago, Outcome::Unchanged));
    /// // A new name: the row is written, and touched.
    /// let (changed, outcome): (Product, Outcome) = upsert("Mug").insert_and_get_with_outcome(conn)?;
    /// assert!(changed.updated_at > long_ago);
    /// assert_eq!(outcome, Outcome::Updated);
    /// # Ok(())
    /// # }
    /// ```
    pub fn touch<C>(mut self, _column: C) -> Self
    where
        C: Column<Table = T>,
        C::SqlType: TimestampType,
    {
        if !self.touch.contains(&C::NAME) {
            self.touch.push(C::NAME);
        }
        self
    }

    /// Leaves a row alone when writing it would store exactly what is stored: adds
    /// `(ROW(t.a, …))::record *<> (ROW(excluded.a, …))::record` to the update condition (a
    /// comparison of binary images, so citext `'HELLO'` over `'Hello'` is written and `json`
    /// columns work), so an identical row costs no new row version (no dead tuple, no WAL for
    /// the row). Columns assigned by `update_values` are not compared. The row is still
    /// returned by the `*_and_get` terminals, with [`Outcome::Unchanged`](crate::Outcome::Unchanged).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
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
    /// # include!("../doctest_setup.rs");
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

    /// Caps the rows one bulk statement carries (at least 1): every statement of a bulk call —
    /// the upserts, the read-back of kept rows, the locks, and the statement that ranks the
    /// keys PostgreSQL compares itself — stays within it, and the call's statements stay in one
    /// transaction. Without it the crate's own sizes apply (up to 20 000 rows per statement).
    /// For engines and proxies with a statement size limit; a call whose keys PostgreSQL must
    /// rank (a type whose bytes do not compare as the column does) and that exceed the limit
    /// together is an [`Error::Unsupported`] before anything is sent.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows: Vec<NewProduct> = ["SKU-L1", "SKU-L2", "SKU-L3"]
    ///     .iter()
    ///     .map(|sku| NewProduct::new(sku, "Cup"))
    ///     .collect();
    /// let ids: Vec<i64> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .max_rows_per_statement(2) // two upsert statements: 2 rows, then 1
    ///     .bulk_insert(conn)?;
    /// assert_eq!(ids.len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_rows_per_statement(mut self, rows: usize) -> Self {
        self.limits.rows = rows.max(1);
        self
    }

    /// Caps the bytes of values one bulk statement carries: the serialized values of its rows,
    /// each counted with its 4-byte length as sent (the SQL text and the protocol's framing come
    /// on top). Applies to every statement of a bulk call, like
    /// [`max_rows_per_statement`](Self::max_rows_per_statement); a row is never split, so a row
    /// larger than the cap goes in a statement of its own. Without it the crate's own size
    /// applies (about 16 MiB per statement, PostgreSQL's own limit is 1 GiB).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-B1", "Cup"), NewProduct::new("SKU-B2", "Pot")];
    /// let summary = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .max_bytes_per_statement(8 << 20) // below CockroachDB's 16 MiB message limit
    ///     .bulk_execute(conn)?;
    /// assert_eq!(summary.inserted, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_bytes_per_statement(mut self, bytes: usize) -> Self {
        self.limits.bytes = bytes;
        self
    }

    /// Sends the rows of bulk upserts as plain multi-row inserts, `INSERT … VALUES (…), (…)`
    /// with one bind parameter per value, instead of `INSERT … SELECT` from one array per
    /// column: for engines that route multi-row `VALUES` inserts to their shards but run
    /// `INSERT … SELECT` through a coordinator (Citus). Each row's key is sent once more, with
    /// its input position, to pair the returned rows; the other statements of a call read
    /// `VALUES` lists instead of arrays. The checks, key order, chunking (under PostgreSQL's
    /// 65 535 bind parameters and the caps above), pairing and outcomes are those of the array
    /// form, and so are the results; on PostgreSQL itself arrays are the faster form
    /// ([bulk.md](https://docs.rs/crate/diesel-upsert/latest/source/docs/bulk.md#statement-size-and-shape)).
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// let rows = vec![NewProduct::new("SKU-V1", "Cup"), NewProduct::new("SKU-V2", "Pot")];
    /// let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .rows_as_values()
    ///     .bulk_insert_and_get_with_outcome(conn)?;
    /// assert!(got.iter().all(|(_, outcome)| *outcome == Outcome::Inserted));
    /// # Ok(())
    /// # }
    /// ```
    pub fn rows_as_values(mut self) -> Self {
        self.limits.values = true;
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
    /// # include!("../doctest_setup.rs");
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
            update_except: self.update_except,
            touch: self.touch,
            update_values: UpdateValues { changeset, columns },
            condition: self.condition,
            skip_unchanged: self.skip_unchanged,
            duplicate_keys: self.duplicate_keys,
            limits: self.limits,
            constraint_columns: self.constraint_columns,
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
    /// still returned by the `*_and_get` terminals, with [`Outcome::Unchanged`](crate::Outcome::Unchanged). Combine several
    /// conditions with `.and(..)`.
    ///
    /// ```rust
    /// # include!("../doctest_setup.rs");
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
            update_except: self.update_except,
            touch: self.touch,
            update_values: self.update_values,
            condition: UpdateCondition(condition),
            skip_unchanged: self.skip_unchanged,
            duplicate_keys: self.duplicate_keys,
            limits: self.limits,
            constraint_columns: self.constraint_columns,
        }
    }
}

mod terminals;

pub use terminals::RunUpsertDsl;
