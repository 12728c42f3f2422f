//! The asynchronous driver (feature `async`): walks the same plans as `run::sync`, sending the
//! same query nodes through diesel-async's `AsyncConnection` (`AsyncPgConnection` and the
//! connections of its deadpool and bb8 pools). It differs from the synchronous driver only in
//! waiting for the server with `.await`, and in encoding each statement's rows when the
//! statement is sent: the rows of the next statement are not encoded on a second thread
//! meanwhile, since a scoped thread cannot outlive an `.await` (the keys of a large input are
//! still read on two threads, before the first statement).

use crate::error::{Error, Result};
use crate::plan::{inserted, BulkPlan, Narrowing, SinglePlan, SingleStep, Step};
use crate::query_builder::count::BulkCount;
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::{BulkRows, BulkUpdate, BulkUpsert, FetchKept, GroupKeys};
use crate::query_builder::single::{FetchExisting, UpsertReturning};
use crate::query_builder::statement::UpsertStatement;
use crate::rows::RowValues;
use crate::run::catalog::{self, classify_error};
use crate::run::returning::Returning;
use crate::run::{
    bulk_columns, found, parallel_byte_keys, probed, refused, BulkQuery, Prepared, Probe,
    SingleCall, Stop,
};
use crate::schema::Catalog;
use crate::schema::InsertedFlag;
use crate::spec::{BulkSummary, Outcome, UpdateOutcome};
use crate::target::Target;
use diesel::pg::Pg;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::sync::Arc;

/// [`catalog::lookup`] on diesel-async: the same query, the same cache.
async fn lookup<C>(table: &str, target: &Target, conn: &mut C) -> Result<Arc<Catalog>>
where
    C: AsyncConnection<Backend = Pg>,
{
    if let Some(found) = catalog::cached(table, target) {
        return Ok(found);
    }
    let read = catalog::Read::new(table, target);
    let rows = read.query().load(conn).await?;
    read.store(rows)
}

/// The bulk call's facts from the catalog, `None` for empty input (nothing is sent).
async fn prepare<S, C>(statement: &S, conn: &mut C) -> Result<Option<Prepared>>
where
    S: UpsertStatement,
    C: AsyncConnection<Backend = Pg>,
{
    let Some(columns) = bulk_columns(statement)? else {
        return Ok(None);
    };
    let catalog = lookup(statement.table_sql(), statement.target(), conn).await?;
    Prepared::new(statement, catalog, columns).map(Some)
}

/// [`sync::narrow`](crate::run::sync) on diesel-async: the input row PostgreSQL refused, each
/// probe under a savepoint that is rolled back.
async fn narrow<'q, T, R, Q, C>(
    conn: &mut C,
    mut narrowing: Narrowing<'q, T, R>,
    key_columns: &[&'static str],
    mut error: DieselError,
    make: impl Fn(BulkRows<'q, T, R>) -> Q,
) -> Error
where
    R: RowValues<T>,
    Q: QueryFragment<Pg> + QueryId + Send + 'q,
    C: AsyncConnection<Backend = Pg>,
{
    loop {
        let rows = match narrowing.probe() {
            Ok(Some(rows)) => rows,
            Ok(None) => return refused(&narrowing, key_columns, error),
            Err(e) => return e,
        };
        let query = make(rows);
        let savepoint = conn
            .transaction(async move |conn| Err(Probe::of(query.execute(conn).await.map(drop))))
            .await;
        if let Some(error) = probed(&mut narrowing, savepoint, &mut error) {
            return error;
        }
    }
}

/// A bulk call: one result per input row, in input order (the outcome only with `outcomes`).
pub(crate) async fn bulk<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel + Send + Sync,
    outcomes: bool,
) -> Result<Vec<(Out, Option<Outcome>)>>
where
    S: UpsertStatement + Sync,
    S::Row: Sync,
    Sel: Returning<Out> + Send,
    Out: Clone + Send,
    C: AsyncConnection<Backend = Pg>,
{
    let Some(prepared) = prepare(statement, conn).await? else {
        return Ok(Vec::new());
    };
    let catalog = &*prepared.catalog;
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let settings = prepared.rows_settings(statement, &key, selection(), outcomes)?;
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    if let Some(rows) = plan.grouping()? {
        let ranks = GroupKeys { rows, key: &key }.load(conn).await?;
        plan.ranked(ranks)?;
    }
    let (key, selection, key_columns) = (&key, &selection, &key_columns);
    let upsert = move |rows, flag, do_nothing| BulkUpsert {
        statement,
        rows,
        key,
        selection: selection(),
        flag,
        do_nothing,
    };
    let ended = conn
        .transaction(
            async move |conn| -> std::result::Result<_, Stop<'_, _, _>> {
                let mut wrote = false;
                while let Some(step) = plan.next()? {
                    let classify = |e| classify_error(statement, catalog, e);
                    match BulkQuery::new(step, statement, key, selection())? {
                        BulkQuery::Upsert(query) => {
                            let (flag, do_nothing) = (query.flag, query.do_nothing);
                            let written = if wrote {
                                conn.transaction(async |conn| {
                                    Sel::load_bulk_async(query, conn).await
                                })
                                .await
                            } else {
                                Sel::load_bulk_async(query, conn).await
                            };
                            match written {
                                Ok(written) => plan.written(written)?,
                                Err(error) => {
                                    let resend = (flag, do_nothing);
                                    return Err(
                                        match Stop::after(&plan, error, wrote, resend, classify) {
                                            Ok((narrowing, error)) => Stop::Error(
                                                narrow(
                                                    conn,
                                                    narrowing,
                                                    key_columns,
                                                    error,
                                                    |rows| upsert(rows, flag, do_nothing),
                                                )
                                                .await,
                                            ),
                                            Err(stop) => stop,
                                        },
                                    );
                                }
                            }
                            wrote = true;
                        }
                        BulkQuery::Fetch(query) => {
                            plan.fetched(Sel::load_kept_async(query, conn).await?)?
                        }
                        BulkQuery::Insert(query) => {
                            let inserted = Sel::load_single_async(query, conn).await;
                            plan.inserted(inserted.map_err(classify)?)?;
                            wrote = true;
                        }
                    }
                }
                Ok(plan.finish()?)
            },
        )
        .await;
    match ended {
        Ok(results) => Ok(results),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing,
            error,
            flag,
            do_nothing,
        }) => Err(narrow(conn, narrowing, key_columns, error, |rows| {
            upsert(rows, flag, do_nothing)
        })
        .await),
    }
}

/// A bulk call that returns no rows, only how many input rows it inserted, updated and left
/// unchanged.
pub(crate) async fn bulk_execute<S, C>(statement: &S, conn: &mut C) -> Result<BulkSummary>
where
    S: UpsertStatement + Sync,
    S::Row: Sync,
    C: AsyncConnection<Backend = Pg>,
{
    let Some(prepared) = prepare(statement, conn).await? else {
        return Ok(BulkSummary::default());
    };
    let catalog = &*prepared.catalog;
    let settings = prepared.count_settings(statement)?;
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::<_, _, ()>::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    if let Some(rows) = plan.grouping()? {
        let ranks = GroupKeys { rows, key: &key }.load(conn).await?;
        plan.ranked(ranks)?;
    }
    let key_columns = &key_columns;
    let count = move |rows, flag| BulkCount {
        statement,
        rows,
        catalog,
        flag,
        do_nothing: false,
    };
    let ended = conn
        .transaction(
            async move |conn| -> std::result::Result<_, Stop<'_, _, _>> {
                let mut wrote = false;
                while let Some(step) = plan.next()? {
                    let Step::Count { rows, flag } = step else {
                        return Err(Error::internal("rows asked for in a call without rows").into());
                    };
                    let query = count(rows, flag);
                    let counted = if wrote {
                        conn.transaction(async |conn| query.get_result(conn).await)
                            .await
                    } else {
                        query.get_result(conn).await
                    };
                    match counted {
                        Ok(counted) => plan.counted(counted)?,
                        Err(error) => {
                            let resend = (flag, false);
                            return Err(
                                match Stop::after(&plan, error, wrote, resend, |e| {
                                    classify_error(statement, catalog, e)
                                }) {
                                    Ok((narrowing, error)) => Stop::Error(
                                        narrow(conn, narrowing, key_columns, error, |rows| {
                                            count(rows, flag)
                                        })
                                        .await,
                                    ),
                                    Err(stop) => stop,
                                },
                            );
                        }
                    }
                    wrote = true;
                }
                Ok(plan.finish_counts()?)
            },
        )
        .await;
    match ended {
        Ok(summary) => Ok(summary),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing,
            error,
            flag,
            ..
        }) => Err(narrow(conn, narrowing, key_columns, error, |rows| {
            count(rows, flag)
        })
        .await),
    }
}

/// [`sync::bulk_update`](crate::run::sync) on diesel-async.
pub(crate) async fn bulk_update<S, C>(statement: &S, conn: &mut C) -> Result<Vec<UpdateOutcome>>
where
    S: UpsertStatement + Sync,
    S::Row: Sync,
    C: AsyncConnection<Backend = Pg>,
{
    let Some(prepared) = prepare(statement, conn).await? else {
        return Ok(Vec::new());
    };
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let settings = prepared.update_settings(statement, &key)?;
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    if let Some(rows) = plan.grouping()? {
        let ranks = GroupKeys { rows, key: &key }.load(conn).await?;
        plan.ranked(ranks)?;
    }
    let (key, key_columns) = (&key, &key_columns);
    let ended = conn
        .transaction(
            async move |conn| -> std::result::Result<_, Stop<'_, _, _>> {
                let mut wrote = false;
                while let Some(step) = plan.next()? {
                    match step {
                        Step::Fetch { rows, lock } => {
                            let query = FetchKept {
                                statement,
                                rows,
                                key,
                                selection: found(),
                                lock,
                            };
                            let locked = query.load::<(i32, bool)>(conn).await?;
                            plan.fetched(locked)?
                        }
                        Step::Update { rows } => {
                            let query = BulkUpdate {
                                statement,
                                rows,
                                key,
                            };
                            let written = if wrote {
                                conn.transaction(async |conn| query.load::<i32>(conn).await)
                                    .await
                            } else {
                                query.load::<i32>(conn).await
                            };
                            match written {
                                Ok(written) => plan.updated(written, true)?,
                                Err(error) => {
                                    let resend = (InsertedFlag::Always(false), false);
                                    return Err(
                                        match Stop::after(&plan, error, wrote, resend, Error::from)
                                        {
                                            Ok((narrowing, error)) => Stop::Error(
                                                narrow(
                                                    conn,
                                                    narrowing,
                                                    key_columns,
                                                    error,
                                                    |rows| BulkUpdate {
                                                        statement,
                                                        rows,
                                                        key,
                                                    },
                                                )
                                                .await,
                                            ),
                                            Err(stop) => stop,
                                        },
                                    );
                                }
                            }
                            wrote = true;
                        }
                        _ => return Err(Error::internal("an upsert step in a bulk update").into()),
                    }
                }
                Ok(plan.finish_updates()?)
            },
        )
        .await;
    match ended {
        Ok(outcomes) => Ok(outcomes),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing, error, ..
        }) => Err(
            narrow(conn, narrowing, key_columns, error, |rows| BulkUpdate {
                statement,
                rows,
                key,
            })
            .await,
        ),
    }
}

/// A single-row call: the row and, when asked for (`outcomes`), its outcome (in a transaction
/// when [`SingleCall`] says so).
pub(crate) async fn single<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel + Send + Sync,
    outcomes: bool,
) -> Result<(Out, Option<Outcome>)>
where
    S: UpsertStatement + Sync,
    S::Row: Sync,
    Sel: Returning<Out> + Send,
    Out: Send,
    C: AsyncConnection<Backend = Pg>,
{
    statement.check()?;
    let catalog = lookup(statement.table_sql(), statement.target(), conn).await?;
    let call = SingleCall::new(statement, &catalog, outcomes)?;
    let flow = async |conn: &mut C| {
        let row = &statement.rows()[0];
        let mut plan = SinglePlan::new(call.method, catalog.before_triggers);
        while let Some(step) = plan.next() {
            match step {
                SingleStep::Upsert { flag, do_nothing } => {
                    let query = UpsertReturning {
                        statement,
                        rows: vec![row],
                        returning: (selection(), inserted(statement, flag)),
                        do_nothing,
                    };
                    let mut rows = Sel::load_single_async(query, conn)
                        .await
                        .map_err(|e| classify_error(statement, &catalog, e))?;
                    plan.upserted(rows.pop());
                }
                SingleStep::Fetch { lock } => {
                    let key =
                        KeyShape::new(catalog.key(statement.target(), &call.supplied)?, &catalog)?;
                    let query = FetchExisting {
                        statement,
                        row,
                        key: &key,
                        selection: selection(),
                        lock,
                    };
                    plan.fetched(Sel::load_existing_async(query, conn).await?)?;
                }
            }
        }
        plan.finish()
    };
    if call.in_transaction {
        conn.transaction(flow).await
    } else {
        flow(conn).await
    }
}
