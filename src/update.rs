//! [`bulk_update`]: updating existing rows from a batch, keyed by the primary key or a unique
//! key, without inserting any.

use crate::error::Result;
use crate::query_builder::statement::{OnConflictDo, UpsertStatement};
use crate::rows::{BatchRows, Records};
use crate::spec::{ConflictAction, UpdateOutcome};
use crate::target::sealed::{Columns, IntoTarget};
use crate::target::{ColumnSet, IntoConflictTarget};
use crate::upsert::UpsertDsl;
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::query_builder::{InsertStatement, QueryFragment};
use diesel::{Connection, Insertable, Table};

/// Starts a bulk update of `table`: `bulk_update(products::table).set(&rows)`, the way
/// `diesel::update(table).set(..)` starts one update.
///
/// Each row is an `Insertable` struct (or tuple) holding the key and the new values: the row
/// with that key is updated, a key no row has is reported as [`UpdateOutcome::Missing`] and
/// never inserted. The columns set are those the rows supply, minus the key and the primary
/// key; a field that is `None` is not supplied, as Diesel's `AsChangeset` leaves `None` columns
/// alone — and, as for bulk upserts, every row must supply the same columns. Rows are keyed by
/// the primary key unless [`by`](BulkUpdate::by) names a unique key.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel_upsert::prelude::*;
/// use diesel_upsert::{bulk_update, UpdateOutcome};
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// # let conn = &mut establish_connection();
/// diesel::insert_into(products::table)
///     .values(&vec![NewProduct::new("BU-1", "Cup").qty(1), NewProduct::new("BU-2", "Pot").qty(2)])
///     .execute(conn)?;
/// let changes = vec![
///     (products::sku.eq("BU-2"), products::qty.eq(20)),
///     (products::sku.eq("BU-9"), products::qty.eq(90)),
///     (products::sku.eq("BU-1"), products::qty.eq(10)),
/// ];
/// let outcomes = bulk_update(products::table)
///     .set(&changes)
///     .by(products::sku)
///     .apply(conn)?;
/// assert_eq!(outcomes, [UpdateOutcome::Updated, UpdateOutcome::Missing, UpdateOutcome::Updated]);
/// let qty: Vec<i32> = products::table.order(products::sku).select(products::qty).load(conn)?;
/// assert_eq!(qty, [10, 20]);
/// # Ok(())
/// # }
/// ```
pub fn bulk_update<T: Table>(table: T) -> BulkUpdateSet<T> {
    BulkUpdateSet { table }
}

/// The insert operator of `diesel::insert_into(table).values(rows)`, which the builder keeps.
type Operator<T, U> = <InsertStatement<T, U> as UpsertDsl>::Operator;

/// The table of a [`bulk_update`], waiting for its rows.
#[derive(Debug, Clone, Copy)]
#[must_use = "a bulk update needs its rows: `.set(&rows)`"]
pub struct BulkUpdateSet<T> {
    table: T,
}

impl<T> BulkUpdateSet<T>
where
    T: Table + 'static,
    T::FromClause: QueryFragment<Pg>,
    T::PrimaryKey: QueryFragment<Pg>,
{
    /// The rows: a `Vec` or slice of `Insertable` values, each holding its key and its new
    /// values. Keyed by the primary key until [`by`](BulkUpdate::by) says otherwise.
    pub fn set<V, M>(self, rows: V) -> BulkUpdate<T, V::Values, Operator<T, V::Values>>
    where
        V: Insertable<T>,
        V::Values: Records<T>,
        T::PrimaryKey: IntoConflictTarget<T, M>,
    {
        let key = IntoTarget::into_target(self.table.primary_key());
        let insert: InsertStatement<T, V::Values> = diesel::insert_into(self.table).values(rows);
        BulkUpdate(OnConflictDo::new(insert, key, ConflictAction::Update))
    }
}

/// A bulk update under construction ([`bulk_update`]); run it with `apply(conn)` of
/// [`RunBulkUpdateDsl`] (in the prelude; on diesel-async, `asynchronous::RunBulkUpdateDsl`).
#[must_use = "a bulk update runs only when `apply` is called"]
pub struct BulkUpdate<T: Table, U, Op>(pub(crate) OnConflictDo<T, U, Op>);

impl<T: Table, U, Op> std::fmt::Debug for BulkUpdate<T, U, Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BulkUpdate").field(&self.0).finish()
    }
}

impl<T: Table, U, Op> BulkUpdate<T, U, Op> {
    /// Keys the rows by `key` (a unique column, a tuple of columns, hstore keys or
    /// [`on_constraint`](crate::on_constraint)) instead of the primary key. A unique index must
    /// back it: otherwise [`Error::NoMatchingUniqueIndex`](crate::Error::NoMatchingUniqueIndex),
    /// before anything is written.
    pub fn by<X, M>(mut self, key: X) -> Self
    where
        X: IntoConflictTarget<T, M>,
    {
        self.0.target = IntoTarget::into_target(key);
        self
    }

    /// Leaves a row alone when it already holds the new values (compared as stored: record
    /// images), reported as [`UpdateOutcome::Unchanged`]: no new row version, no WAL for it.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    /// use diesel_upsert::{bulk_update, UpdateOutcome};
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// diesel::insert_into(products::table)
    ///     .values(&vec![NewProduct::new("BS-1", "Cup").qty(1), NewProduct::new("BS-2", "Pot").qty(2)])
    ///     .execute(conn)?;
    /// let changes = vec![
    ///     (products::sku.eq("BS-1"), products::qty.eq(1)),
    ///     (products::sku.eq("BS-2"), products::qty.eq(3)),
    /// ];
    /// let outcomes = bulk_update(products::table)
    ///     .set(&changes)
    ///     .by(products::sku)
    ///     .skip_unchanged()
    ///     .apply(conn)?;
    /// assert_eq!(outcomes, [UpdateOutcome::Unchanged, UpdateOutcome::Updated]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn skip_unchanged(mut self) -> Self {
        self.0.skip_unchanged = true;
        self
    }

    /// Sets only these of the columns the rows supply (one column or a tuple), as
    /// [`update_only`](crate::OnConflictDo::update_only) does for upserts.
    pub fn update_only<X, M>(mut self, columns: X) -> Self
    where
        X: ColumnSet<T, M>,
    {
        self.0.update_only = Some(Columns::column_names(&columns));
        self
    }

    /// Sets every column the rows supply except these, as
    /// [`update_except`](crate::OnConflictDo::update_except) does for upserts.
    pub fn update_except<X, M>(mut self, columns: X) -> Self
    where
        X: ColumnSet<T, M>,
    {
        self.0.update_except = Columns::column_names(&columns);
        self
    }

    /// Caps the rows of each statement, as
    /// [`max_rows_per_statement`](crate::OnConflictDo::max_rows_per_statement) does for upserts.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    /// use diesel_upsert::{bulk_update, UpdateOutcome};
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// # diesel::insert_into(products::table).values(&vec![NewProduct::new("BU-1", "Cup"), NewProduct::new("BU-2", "Pot")]).execute(conn)?;
    /// let names = vec![
    ///     (products::sku.eq("BU-1"), products::name.eq("Mug")),
    ///     (products::sku.eq("BU-2"), products::name.eq("Jug")),
    /// ];
    /// let outcomes = bulk_update(products::table)
    ///     .set(&names)
    ///     .by(products::sku)
    ///     .max_rows_per_statement(1) // a lock and an update per row
    ///     .apply(conn)?;
    /// assert_eq!(outcomes, [UpdateOutcome::Updated, UpdateOutcome::Updated]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_rows_per_statement(mut self, rows: usize) -> Self {
        self.0 = self.0.max_rows_per_statement(rows);
        self
    }

    /// Caps the bytes of values of each statement, as
    /// [`max_bytes_per_statement`](crate::OnConflictDo::max_bytes_per_statement) does for
    /// upserts.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    /// use diesel_upsert::{bulk_update, UpdateOutcome};
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// # diesel::insert_into(products::table).values(&vec![NewProduct::new("BU-1", "Cup"), NewProduct::new("BU-2", "Pot")]).execute(conn)?;
    /// let names = vec![
    ///     (products::sku.eq("BU-1"), products::name.eq("Mug")),
    ///     (products::sku.eq("BU-2"), products::name.eq("Jug")),
    /// ];
    /// let outcomes = bulk_update(products::table)
    ///     .set(&names)
    ///     .by(products::sku)
    ///     .max_bytes_per_statement(1 << 20) // 1 MiB
    ///     .apply(conn)?;
    /// assert_eq!(outcomes, [UpdateOutcome::Updated, UpdateOutcome::Updated]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_bytes_per_statement(mut self, bytes: usize) -> Self {
        self.0 = self.0.max_bytes_per_statement(bytes);
        self
    }

    /// Sends the rows as a `VALUES` list, as
    /// [`rows_as_values`](crate::OnConflictDo::rows_as_values) does for upserts.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    /// use diesel_upsert::{bulk_update, UpdateOutcome};
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_connection();
    /// # diesel::insert_into(products::table).values(&vec![NewProduct::new("BU-1", "Cup"), NewProduct::new("BU-2", "Pot")]).execute(conn)?;
    /// let names = vec![
    ///     (products::sku.eq("BU-1"), products::name.eq("Mug")),
    ///     (products::sku.eq("BU-2"), products::name.eq("Jug")),
    /// ];
    /// let outcomes = bulk_update(products::table)
    ///     .set(&names)
    ///     .by(products::sku)
    ///     .rows_as_values() // UPDATE … FROM (VALUES …)
    ///     .apply(conn)?;
    /// assert_eq!(outcomes, [UpdateOutcome::Updated, UpdateOutcome::Updated]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rows_as_values(mut self) -> Self {
        self.0 = self.0.rows_as_values();
        self
    }
}

/// The terminal of a [`BulkUpdate`] on a synchronous `diesel::Connection`. In the prelude.
pub trait RunBulkUpdateDsl: Sized {
    /// Runs the bulk update (applies the rows) and returns, for each input row in input order,
    /// whether its row was updated, left unchanged (`skip_unchanged`) or is missing. (Not
    /// `execute`: diesel-async's `RunQueryDsl::execute` applies to every type.)
    ///
    /// - Rows sharing a key (as the unique index compares keys) are
    ///   [`Error::DuplicateConflictKey`](crate::Error::DuplicateConflictKey) before anything
    ///   is written; rows that supply different columns are
    ///   [`Error::InconsistentColumns`](crate::Error::InconsistentColumns); rows that supply
    ///   no column besides the key are [`Error::Unsupported`](crate::Error::Unsupported).
    /// - In one transaction (a savepoint inside the caller's), the existing rows are first
    ///   locked in key order, then updated, in statements of at most 20 000 rows: concurrent
    ///   bulk updates over overlapping keys wait for each other and do not deadlock.
    /// - A row PostgreSQL refuses (a CHECK constraint, say) is
    ///   [`Error::Row`](crate::Error::Row), and nothing is written.
    fn apply<C>(self, conn: &mut C) -> Result<Vec<UpdateOutcome>>
    where
        C: Connection<Backend = Pg> + LoadConnection;
}

impl<T, U, Op> RunBulkUpdateDsl for BulkUpdate<T, U, Op>
where
    T: Table,
    U: BatchRows<T>,
    OnConflictDo<T, U, Op>: UpsertStatement<Table = T>,
    <OnConflictDo<T, U, Op> as UpsertStatement>::Row: Sync,
{
    fn apply<C>(self, conn: &mut C) -> Result<Vec<UpdateOutcome>>
    where
        C: Connection<Backend = Pg> + LoadConnection,
    {
        crate::run::sync::bulk_update(&self.0, conn)
    }
}
