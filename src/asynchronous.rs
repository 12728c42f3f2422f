//! Every upsert on [diesel-async](https://docs.rs/diesel-async) (feature `async`):
//! `AsyncPgConnection` and the connections of its deadpool and bb8 pools (features `deadpool`,
//! `bb8`).
//!
//! The same builder and the same method names as the synchronous API, behind a different
//! import — the way `diesel_async::RunQueryDsl` mirrors `diesel::RunQueryDsl`: import
//! `diesel_upsert::asynchronous::prelude::*` instead of `diesel_upsert::prelude::*`, and each
//! terminal returns a future. The calls keep every semantic of the synchronous driver: the same
//! SQL (prepared and cached the same way), one transaction per bulk call (a savepoint inside
//! the caller's), key order, chunks, pairing by input position, typed errors. The futures are
//! `Send` when the rows are `Sync`, so calls can run in `tokio::spawn`.
//!
//! ```rust
//! # include!("doctest_setup.rs");
//! use diesel_upsert::asynchronous::prelude::*;
//!
//! # fn main() { harness::block_on(run()).unwrap() }
//! # async fn run() -> diesel_upsert::Result<()> {
//! # let conn = &mut establish_async_connection().await;
//! # /*
//! let conn = &mut AsyncPgConnection::establish(&database_url).await?;
//! # */
//! let (first, outcome): (Product, Outcome) = diesel::insert_into(products::table)
//!     .values(&NewProduct::new("ASYNC-1", "Green tea"))
//!     .on_conflict_do(products::sku, ConflictAction::Update)
//!     .insert_and_get_with_outcome(conn)
//!     .await?;
//! assert_eq!(outcome, Outcome::Inserted);
//!
//! // The same key with ConflictAction::Nothing keeps the row and still returns it.
//! let kept: Product = diesel::insert_into(products::table)
//!     .values(&NewProduct::new("ASYNC-1", "Black tea"))
//!     .on_conflict_do(products::sku, ConflictAction::Nothing)
//!     .insert_and_get(conn)
//!     .await?;
//! assert_eq!((kept.id, kept.name.as_str()), (first.id, "Green tea"));
//! # Ok(())
//! # }
//! ```
//!
//! Unlike the synchronous driver, a bulk call does not encode the rows of its next statement on
//! a second thread while the server runs the current one: the encoding runs on the task, between
//! the statements (see docs/async.md).

use crate::error::{Error, Result};
use crate::query_builder::statement::{OnConflictDo, UpsertStatement};
use crate::retry::{Attempts, RetryPolicy};
use crate::rows::{BatchRows, Records, SingleRow};
use crate::run::r#async as driver;
use crate::run::returning::Returning;
use crate::spec::{BulkSummary, ConflictAction, Outcome, UpdateOutcome};
use crate::target::IntoConflictTarget;
use crate::upsert::{ModelSelection, PrimaryKey};
use diesel::pg::Pg;
use diesel::query_builder::{InsertStatement, QueryFragment};
use diesel::{Selectable, SelectableHelper, Table};
use diesel_async::AsyncConnection;
use std::future::Future;

/// Everything needed to write upserts on diesel-async:
/// `use diesel_upsert::asynchronous::prelude::*;` (instead of `diesel_upsert::prelude::*`).
pub mod prelude {
    pub use super::{RunBulkUpdateDsl, RunUpsertDsl, UpsertDsl};
    pub use crate::hstore::HstoreExpressionMethods;
    pub use crate::spec::{ConflictAction, Outcome};
    pub use crate::sql_types::Hstore;
}

/// [`crate::UpsertDsl`] for diesel-async: `on_conflict_do` starts the same builder, and the
/// shorthands return futures.
pub trait UpsertDsl: Sized {
    /// The table inserted into.
    type Table: Table;
    /// The records of the insert (one row or a batch).
    type Records;
    /// Diesel's insert operator.
    type Operator;

    /// Starts an `INSERT … ON CONFLICT <target> DO UPDATE | DO NOTHING`: the same as
    /// [`crate::UpsertDsl::on_conflict_do`].
    fn on_conflict_do<X, M>(
        self,
        target: X,
        action: ConflictAction,
    ) -> OnConflictDo<Self::Table, Self::Records, Self::Operator>
    where
        X: IntoConflictTarget<Self::Table, M>;

    /// Inserts one row or updates the row with the same `target` key; returns the primary key.
    /// Shorthand for `.on_conflict_do(target, ConflictAction::Update).insert(conn)`.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let id: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-U", "Cup"))
    ///     .upsert(products::sku, conn)
    ///     .await?;
    /// let again: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-U", "Mug"))
    ///     .upsert(products::sku, conn)
    ///     .await?;
    /// assert_eq!(again, id);
    /// # Ok(())
    /// # }
    /// ```
    fn upsert<X, M, Pk, C>(self, target: X, conn: &mut C) -> impl Future<Output = Result<Pk>> + Send
    where
        X: IntoConflictTarget<Self::Table, M>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            RunUpsertDsl + UpsertStatement<Table = Self::Table, Records = Self::Records>,
        Self::Records: SingleRow<Self::Table>,
        <OnConflictDo<Self::Table, Self::Records, Self::Operator> as UpsertStatement>::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        PrimaryKey<Self::Table>: Returning<Pk> + Send,
        Pk: Send,
    {
        self.on_conflict_do(target, ConflictAction::Update)
            .insert(conn)
    }

    /// Inserts one row or updates the row with the same `target` key; returns the row as `M`.
    /// Shorthand for `.on_conflict_do(target, ConflictAction::Update).insert_and_get(conn)`.
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let row: Product = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-UG", "Cup"))
    ///     .upsert_and_get(products::sku, conn)
    ///     .await?;
    /// assert_eq!(row.name, "Cup");
    /// # Ok(())
    /// # }
    /// ```
    fn upsert_and_get<X, MX, M, C>(
        self,
        target: X,
        conn: &mut C,
    ) -> impl Future<Output = Result<M>> + Send
    where
        X: IntoConflictTarget<Self::Table, MX>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            RunUpsertDsl + UpsertStatement<Table = Self::Table, Records = Self::Records>,
        Self::Records: SingleRow<Self::Table>,
        <OnConflictDo<Self::Table, Self::Records, Self::Operator> as UpsertStatement>::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Send,
        ModelSelection<M>: Returning<M> + Send,
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
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let rows = vec![NewProduct::new("ASYNC-BU1", "Cup"), NewProduct::new("ASYNC-BU2", "Pot")];
    /// let got: Vec<Product> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .bulk_upsert(products::sku, conn)
    ///     .await?;
    /// assert_eq!(got.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["ASYNC-BU1", "ASYNC-BU2"]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_upsert<X, MX, M, C>(
        self,
        target: X,
        conn: &mut C,
    ) -> impl Future<Output = Result<Vec<M>>> + Send
    where
        X: IntoConflictTarget<Self::Table, MX>,
        OnConflictDo<Self::Table, Self::Records, Self::Operator>:
            RunUpsertDsl + UpsertStatement<Table = Self::Table, Records = Self::Records>,
        Self::Records: BatchRows<Self::Table>,
        <OnConflictDo<Self::Table, Self::Records, Self::Operator> as UpsertStatement>::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Clone + Send,
        ModelSelection<M>: Returning<M> + Send,
    {
        self.on_conflict_do(target, ConflictAction::Update)
            .bulk_insert_and_get(conn)
    }
}

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

/// The terminals of [`OnConflictDo`] on diesel-async's connections: the methods of
/// [`crate::RunUpsertDsl`], with the same semantics, returning futures. `C` is any
/// `AsyncConnection<Backend = Pg>`: `AsyncPgConnection`, or a connection checked out of
/// diesel-async's deadpool or bb8 pool.
pub trait RunUpsertDsl: UpsertStatement + Sized + Send + Sync {
    /// Runs the upsert and returns the primary key of the inserted, updated or existing row
    /// ([`crate::RunUpsertDsl::insert`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let id: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-I", "Cup"))
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .insert(conn)
    ///     .await?;
    /// // The key exists: `DO NOTHING` keeps the row, and its id is still returned.
    /// let again: i64 = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-I", "Mug"))
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .insert(conn)
    ///     .await?;
    /// assert_eq!(again, id);
    /// # Ok(())
    /// # }
    /// ```
    fn insert<Pk, C>(self, conn: &mut C) -> impl Future<Output = Result<Pk>> + Send
    where
        Self::Records: SingleRow<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        PrimaryKey<Self::Table>: Returning<Pk> + Send,
        Pk: Send,
    {
        async move {
            let (pk, _) = driver::single(&self, conn, || self.table().primary_key(), false).await?;
            Ok(pk)
        }
    }

    /// Runs the upsert and returns the inserted, updated or existing row as `M`
    /// ([`crate::RunUpsertDsl::insert_and_get`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let row: Product = diesel::insert_into(products::table)
    ///     .values(&NewProduct::new("ASYNC-G", "Cup"))
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .insert_and_get(conn)
    ///     .await?;
    /// assert_eq!(row.name, "Cup");
    /// # Ok(())
    /// # }
    /// ```
    fn insert_and_get<M, C>(self, conn: &mut C) -> impl Future<Output = Result<M>> + Send
    where
        Self::Records: SingleRow<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Send,
        ModelSelection<M>: Returning<M> + Send,
    {
        async move {
            let (model, _) = driver::single(&self, conn, M::as_select, false).await?;
            Ok(model)
        }
    }

    /// Like [`insert_and_get`](Self::insert_and_get), and tells whether the row was inserted,
    /// updated or left unchanged ([`crate::RunUpsertDsl::insert_and_get_with_outcome`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let upsert = |name| {
    ///     diesel::insert_into(products::table)
    ///         .values(NewProduct::new("ASYNC-W", name))
    ///         .on_conflict_do(products::sku, ConflictAction::Update)
    /// };
    /// let (_, first): (Product, Outcome) = upsert("Cup").insert_and_get_with_outcome(conn).await?;
    /// let (row, second): (Product, Outcome) = upsert("Mug").insert_and_get_with_outcome(conn).await?;
    /// assert_eq!((first, second, row.name.as_str()), (Outcome::Inserted, Outcome::Updated, "Mug"));
    /// # Ok(())
    /// # }
    /// ```
    fn insert_and_get_with_outcome<M, C>(
        self,
        conn: &mut C,
    ) -> impl Future<Output = Result<(M, Outcome)>> + Send
    where
        Self::Records: SingleRow<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Send,
        ModelSelection<M>: Returning<M> + Send,
    {
        async move {
            let (model, outcome) = driver::single(&self, conn, M::as_select, true).await?;
            Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
        }
    }

    /// Runs a bulk upsert and returns the primary key of each input row's row, in input order
    /// ([`crate::RunUpsertDsl::bulk_insert`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let rows = vec![NewProduct::new("ASYNC-B2", "Pot"), NewProduct::new("ASYNC-B1", "Cup")];
    /// let ids: Vec<i64> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_insert(conn)
    ///     .await?;
    /// assert_eq!(ids.len(), 2);
    /// assert_ne!(ids[0], ids[1]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert<Pk, C>(self, conn: &mut C) -> impl Future<Output = Result<Vec<Pk>>> + Send
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        PrimaryKey<Self::Table>: Returning<Pk> + Send,
        Pk: Clone + Send,
    {
        async move {
            let rows = driver::bulk(&self, conn, || self.table().primary_key(), false).await?;
            Ok(rows.into_iter().map(|(pk, _)| pk).collect())
        }
    }

    /// Runs a bulk upsert and returns each input row's row as `M`, in input order
    /// ([`crate::RunUpsertDsl::bulk_insert_and_get`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let rows = vec![NewProduct::new("ASYNC-L1", "Cup"), NewProduct::new("ASYNC-L2", "Pot")];
    /// let got: Vec<Product> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Nothing)
    ///     .bulk_insert_and_get(conn)
    ///     .await?;
    /// assert_eq!(got.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["ASYNC-L1", "ASYNC-L2"]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert_and_get<M, C>(self, conn: &mut C) -> impl Future<Output = Result<Vec<M>>> + Send
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Clone + Send,
        ModelSelection<M>: Returning<M> + Send,
    {
        async move {
            let rows = driver::bulk(&self, conn, M::as_select, false).await?;
            Ok(rows.into_iter().map(|(model, _)| model).collect())
        }
    }

    /// Runs a bulk upsert and returns only how many input rows were inserted, updated and left
    /// unchanged ([`crate::RunUpsertDsl::bulk_execute`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    /// use diesel_upsert::BulkSummary;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let rows = vec![NewProduct::new("ASYNC-A", "Cup"), NewProduct::new("ASYNC-B", "Pot")];
    /// let summary = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_execute(conn)
    ///     .await?;
    /// assert_eq!(summary, BulkSummary { inserted: 2, updated: 0, unchanged: 0 });
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_execute<C>(self, conn: &mut C) -> impl Future<Output = Result<BulkSummary>> + Send
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
    {
        async move { driver::bulk_execute(&self, conn).await }
    }

    /// Runs a bulk upsert and returns, for each input row in input order, its row as `M` and
    /// what happened to it ([`crate::RunUpsertDsl::bulk_insert_and_get_with_outcome`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let first = vec![NewProduct::new("ASYNC-E1", "Cup")];
    /// diesel::insert_into(products::table)
    ///     .values(&first)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_execute(conn)
    ///     .await?;
    /// let rows = vec![NewProduct::new("ASYNC-E1", "Mug"), NewProduct::new("ASYNC-E2", "Pot")];
    /// let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_insert_and_get_with_outcome(conn)
    ///     .await?;
    /// let outcomes: Vec<Outcome> = got.iter().map(|(_, o)| *o).collect();
    /// assert_eq!(outcomes, [Outcome::Updated, Outcome::Inserted]);
    /// # Ok(())
    /// # }
    /// ```
    fn bulk_insert_and_get_with_outcome<M, C>(
        self,
        conn: &mut C,
    ) -> impl Future<Output = Result<Vec<(M, Outcome)>>> + Send
    where
        Self::Records: BatchRows<Self::Table>,
        Self::Row: Sync,
        C: AsyncConnection<Backend = Pg>,
        M: Selectable<Pg> + Clone + Send,
        ModelSelection<M>: Returning<M> + Send,
    {
        async move {
            driver::bulk(&self, conn, M::as_select, true)
                .await?
                .into_iter()
                .map(|(model, outcome)| {
                    Ok((model, outcome.ok_or_else(|| Error::internal("no outcome"))?))
                })
                .collect()
        }
    }
}

impl<S: UpsertStatement + Send + Sync> RunUpsertDsl for S {}

/// The terminal of a [`BulkUpdate`](crate::BulkUpdate) on diesel-async's connections: the
/// same as [`crate::RunBulkUpdateDsl::apply`], returning a future.
pub trait RunBulkUpdateDsl: Sized {
    /// Runs the bulk update; see [`crate::RunBulkUpdateDsl::apply`].
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::asynchronous::prelude::*;
    /// use diesel_upsert::{bulk_update, UpdateOutcome};
    ///
    /// # fn main() { harness::block_on(run()).unwrap() }
    /// # async fn run() -> diesel_upsert::Result<()> {
    /// # let conn = &mut establish_async_connection().await;
    /// let rows = vec![NewProduct::new("ASYNC-BUP", "Cup")];
    /// diesel::insert_into(products::table)
    ///     .values(&rows)
    ///     .on_conflict_do(products::sku, ConflictAction::Update)
    ///     .bulk_execute(conn)
    ///     .await?;
    /// let changes = vec![(products::sku.eq("ASYNC-BUP"), products::name.eq("Mug"))];
    /// let outcomes = bulk_update(products::table)
    ///     .set(&changes)
    ///     .by(products::sku)
    ///     .apply(conn)
    ///     .await?;
    /// assert_eq!(outcomes, [UpdateOutcome::Updated]);
    /// # Ok(())
    /// # }
    /// ```
    fn apply<C>(self, conn: &mut C) -> impl Future<Output = Result<Vec<UpdateOutcome>>> + Send
    where
        C: AsyncConnection<Backend = Pg>;
}

impl<T, U, Op> RunBulkUpdateDsl for crate::BulkUpdate<T, U, Op>
where
    T: Table,
    U: BatchRows<T>,
    OnConflictDo<T, U, Op>: UpsertStatement<Table = T> + Send + Sync,
    <OnConflictDo<T, U, Op> as UpsertStatement>::Row: Sync,
{
    // Not `async fn`: the `Send` of the future is proven here, from the bounds, rather than at
    // each call site (where higher-ranked lifetimes defeat it).
    #[allow(clippy::manual_async_fn)]
    fn apply<C>(self, conn: &mut C) -> impl Future<Output = Result<Vec<UpdateOutcome>>> + Send
    where
        C: AsyncConnection<Backend = Pg>,
    {
        async move { driver::bulk_update(&self.0, conn).await }
    }
}

/// [`crate::retry::retry`] for async code: runs `attempt` on `conn` until it succeeds, fails for
/// a non-transient reason (not a serialization failure or deadlock), or `policy` runs out of
/// attempts, waiting with `tokio::time::sleep` (exponential backoff and jitter) in between.
/// `attempt` must run a whole transaction. Like diesel-async's `transaction`, it takes the
/// connection as its argument, so that its futures are `Send` (usable in `tokio::spawn`).
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel_async::AsyncConnection;
/// use diesel_upsert::asynchronous::prelude::*;
/// use diesel_upsert::asynchronous::retry;
/// use diesel_upsert::retry::RetryPolicy;
///
/// # fn main() { harness::block_on(run()).unwrap() }
/// # async fn run() -> diesel_upsert::Result<()> {
/// # let conn = &mut harness::async_connection().await;
/// # let sku = harness::unique_key("ASYNC-R");
/// let product: Product = retry(RetryPolicy::default(), conn, async |conn| {
///     conn.build_transaction()
///         .serializable()
///         .run(async |conn| {
///             diesel::insert_into(products::table)
///                 .values(&NewProduct::new(&sku, "Whisk"))
///                 .upsert_and_get(products::sku, conn)
///                 .await
///         })
///         .await
/// })
/// .await?;
/// assert_eq!(product.sku, sku);
/// # Ok(())
/// # }
/// ```
pub async fn retry<C, T, E, F>(policy: RetryPolicy, conn: &mut C, mut attempt: F) -> Result<T>
where
    for<'r> F: AsyncFnMut(&'r mut C) -> Result<T, E> + Attempt<&'r mut C, Result<T, E>, Fut: Send>,
    E: Into<Error>,
{
    let mut attempts = Attempts::new(policy);
    loop {
        match attempt(&mut *conn).await.map_err(Into::into) {
            Err(error) => match attempts.wait_after(&error) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            },
            done => return done,
        }
    }
}

/// The attempt [`retry`] calls: an async closure (`async |conn| …`), seen as a plain closure
/// returning a future, so that the bound can say the future is `Send` (the way diesel-async's
/// `AsyncFunc` does for `transaction`). Implemented for every such closure.
pub trait Attempt<Arg, R>:
    AsyncFnMut(Arg) -> R + FnMut(Arg) -> <Self as Attempt<Arg, R>>::Fut
{
    /// The future of one attempt.
    type Fut: Future<Output = R>;
}

impl<F, Arg, Fut, R> Attempt<Arg, R> for F
where
    F: AsyncFnMut(Arg) -> R + FnMut(Arg) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}
