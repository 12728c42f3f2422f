//! [`Returning`]: what the terminals can return, and the loaders of the statements they run.

use crate::query_builder::nodes::{BulkUpsert, FetchKept};
use crate::query_builder::single::{FetchExisting, Inserted, UpsertReturning};
use crate::query_builder::statement::UpsertStatement;
use diesel::connection::LoadConnection;
use diesel::deserialize::FromSqlRow;
use diesel::expression::{Expression, QueryMetadata};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::query_dsl::{CompatibleType, RunQueryDsl};
use diesel::result::OptionalExtension;
use diesel::sql_types::{Integer, Nullable};
use diesel::{Connection, QueryResult};
#[cfg(feature = "async")]
use diesel_async::AsyncConnection;
#[cfg(feature = "async")]
use std::future::Future;

/// A selection (`M::as_select()`, the primary key) that the terminals can return as `Out`.
///
/// Implemented for every Diesel expression whose rows load as `Out`; it only spells out, once,
/// the bounds Diesel's `load` needs for the statements the terminals run (each returns the
/// selection beside an input position and an inserted flag).
pub trait Returning<Out>: Load<Out> {}

impl<Sel: Load<Out>, Out> Returning<Out> for Sel {}

/// The loaders behind [`Returning`], one per kind of statement: sealed, so that the statement
/// types stay private.
pub trait Load<Out>: Expression + QueryFragment<Pg> + Sized {
    /// `INSERT … RETURNING <selection>, <inserted flag>`.
    fn load_single<S, C>(
        query: UpsertReturning<'_, S, (Self, Inserted)>,
        conn: &mut C,
    ) -> QueryResult<Vec<(Out, Option<bool>)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    /// The row one input row's key names.
    fn load_existing<S, C>(
        query: FetchExisting<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Option<Out>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    /// The rows a bulk upsert wrote, each with its input position.
    fn load_bulk<S, C>(
        query: BulkUpsert<'_, S, Self>,
        conn: &mut C,
    ) -> QueryResult<Vec<Written<Out>>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    /// The rows the keys of some input rows name, each with its input position.
    fn load_kept<S, C>(query: FetchKept<'_, S, Self>, conn: &mut C) -> QueryResult<Vec<(i32, Out)>>
    where
        S: UpsertStatement,
        C: Connection<Backend = Pg> + LoadConnection;

    /// [`load_single`](Self::load_single) on diesel-async.
    #[cfg(feature = "async")]
    fn load_single_async<'c, S, C>(
        query: UpsertReturning<'c, S, (Self, Inserted)>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<(Out, Option<bool>)>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>;

    /// [`load_existing`](Self::load_existing) on diesel-async.
    #[cfg(feature = "async")]
    fn load_existing_async<'c, S, C>(
        query: FetchExisting<'c, S, Self>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Option<Out>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>;

    /// [`load_bulk`](Self::load_bulk) on diesel-async.
    #[cfg(feature = "async")]
    fn load_bulk_async<'c, S, C>(
        query: BulkUpsert<'c, S, Self>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<Written<Out>>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>;

    /// [`load_kept`](Self::load_kept) on diesel-async.
    #[cfg(feature = "async")]
    fn load_kept_async<'c, S, C>(
        query: FetchKept<'c, S, Self>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<(i32, Out)>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>;
}

/// A row a bulk upsert wrote: its input position (NULL when its stored key matches no input
/// key), the selection, the inserted flag.
pub(crate) type Written<Out> = (Option<i32>, Out, Option<bool>);

/// The SQL type of a row of one of the statements: the selection `ST` between a tag before it
/// (`Before`) and one after it (`After`).
type Tagged<Before, ST, After> = (Before, ST, After);

impl<Sel, Out> Load<Out> for Sel
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

    #[cfg(feature = "async")]
    fn load_single_async<'c, S, C>(
        query: UpsertReturning<'c, S, (Self, Inserted)>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<(Out, Option<bool>)>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>,
    {
        diesel_async::RunQueryDsl::load(query, conn)
    }

    #[cfg(feature = "async")]
    async fn load_existing_async<'c, S, C>(
        query: FetchExisting<'c, S, Self>,
        conn: &'c mut C,
    ) -> QueryResult<Option<Out>>
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>,
    {
        diesel_async::RunQueryDsl::get_result(query, conn)
            .await
            .optional()
    }

    #[cfg(feature = "async")]
    fn load_bulk_async<'c, S, C>(
        query: BulkUpsert<'c, S, Self>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<Written<Out>>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>,
    {
        diesel_async::RunQueryDsl::load(query, conn)
    }

    #[cfg(feature = "async")]
    fn load_kept_async<'c, S, C>(
        query: FetchKept<'c, S, Self>,
        conn: &'c mut C,
    ) -> impl Future<Output = QueryResult<Vec<(i32, Out)>>> + Send + 'c
    where
        S: UpsertStatement + Sync,
        S::Row: Sync,
        Self: Send + 'c,
        Out: Send,
        C: AsyncConnection<Backend = Pg>,
    {
        diesel_async::RunQueryDsl::load(query, conn)
    }
}
