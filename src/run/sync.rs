//! The synchronous driver: walks a plan on a `diesel::Connection`, sending each step's query
//! node and handing back what it returned. Everything a call decides is in `plan`.

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
    alongside, bulk_columns, found, parallel_byte_keys, probed, refused, BulkQuery, Prepared,
    Probe, SingleCall, Stop,
};
use crate::schema::InsertedFlag;
use crate::spec::{BulkSummary, Outcome, UpdateOutcome};
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::result::Error as DieselError;
use diesel::{Connection, QueryResult, RunQueryDsl};

/// The bulk call's facts from the catalog, `None` for empty input (nothing is sent).
fn prepare<S, C>(statement: &S, conn: &mut C) -> Result<Option<Prepared>>
where
    S: UpsertStatement,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let Some(columns) = bulk_columns(statement)? else {
        return Ok(None);
    };
    let catalog = catalog::lookup(statement.table_sql(), statement.target(), conn)?;
    Prepared::new(statement, catalog, columns).map(Some)
}

/// Ranks the keys on the server when the plan needs it, before the call's transaction starts:
/// input the call rejects writes nothing.
fn group<T, R, Out, C>(
    plan: &mut BulkPlan<'_, T, R, Out>,
    key: &KeyShape<'_>,
    conn: &mut C,
) -> Result<()>
where
    R: RowValues<T>,
    Out: Clone,
    C: Connection<Backend = Pg> + LoadConnection,
{
    if let Some(rows) = plan.grouping()? {
        plan.ranked(GroupKeys { rows, key }.load(conn)?)?;
    }
    Ok(())
}

/// Sends a statement that writes rows: under a savepoint once the call has written (`wrote`), so
/// that a failure leaves the earlier statements applied and the transaction usable, to find
/// the refused row in ([`narrow`]). The first write needs none: the row is found after the
/// call's transaction is rolled back.
fn write<C, X>(
    conn: &mut C,
    wrote: bool,
    send: impl FnOnce(&mut C) -> QueryResult<X>,
) -> QueryResult<X>
where
    C: Connection<Backend = Pg>,
{
    if wrote {
        conn.transaction(send)
    } else {
        send(conn)
    }
}

/// The input row PostgreSQL refused when a statement failed with `error` ([`Narrowing`]): each
/// probe, the failed statement for some of its rows (`send`), runs under a savepoint that is
/// rolled back. An error of a probe that names no row ends the search with that error.
///
/// `send` loads the statement's rows rather than executing it: Diesel's `execute` walks the
/// query through a reference, whose `collect_binds` is the default one, and the arrays would
/// go without their element types.
fn narrow<'q, T, R, C>(
    conn: &mut C,
    mut narrowing: Narrowing<'q, T, R>,
    key_columns: &[&'static str],
    mut error: DieselError,
    send: impl Fn(BulkRows<'q, T, R>, &mut C) -> QueryResult<()>,
) -> Error
where
    R: RowValues<T>,
    C: Connection<Backend = Pg> + LoadConnection,
{
    loop {
        let rows = match narrowing.probe() {
            Ok(Some(rows)) => rows,
            Ok(None) => return refused(&narrowing, key_columns, error),
            Err(e) => return e,
        };
        let savepoint = conn.transaction(|conn| Err(Probe::of(send(rows, conn))));
        if let Some(error) = probed(&mut narrowing, savepoint, &mut error) {
            return error;
        }
    }
}

/// Runs `send` (the statement [`BulkPlan::next`] just returned, on the connection) while the
/// rows of the next statement are encoded on a second thread, so that the client's encoding
/// hides behind the server's execution. Without a second thread (none could be started, or
/// no rows are known ahead) the rows are encoded when their statement is built, as before.
fn overlapped<'q, T, R, Out, X>(plan: &mut BulkPlan<'q, T, R, Out>, send: impl FnOnce() -> X) -> X
where
    R: RowValues<T> + Sync,
    Out: Clone,
{
    let Some(lookahead) = plan.lookahead() else {
        return send();
    };
    let (sent, ahead) = alongside(move || lookahead.encode(), send);
    if let Some(ahead) = ahead {
        plan.ahead(ahead);
    }
    sent
}

/// A bulk call: one result per input row, in input order (the outcome only with `outcomes`).
pub(crate) fn bulk<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel,
    outcomes: bool,
) -> Result<Vec<(Out, Option<Outcome>)>>
where
    S: UpsertStatement,
    S::Row: Sync,
    Sel: Returning<Out>,
    Out: Clone,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let Some(prepared) = prepare(statement, conn)? else {
        return Ok(Vec::new());
    };
    let catalog = &prepared.catalog;
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let settings = prepared.rows_settings(statement, &key, selection(), outcomes)?;
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    group(&mut plan, &key, conn)?;
    let mut wrote = false;
    let upsert = |rows, flag, do_nothing| BulkUpsert {
        statement,
        rows,
        key: &key,
        selection: selection(),
        flag,
        do_nothing,
    };
    let ended = conn.transaction(|conn| -> std::result::Result<_, Stop<'_, _, _>> {
        while let Some(step) = plan.next()? {
            let classify = |e| classify_error(statement, catalog, e);
            match BulkQuery::new(step, statement, &key, selection())? {
                BulkQuery::Upsert(query) => {
                    let (flag, do_nothing) = (query.flag, query.do_nothing);
                    let written = write(conn, wrote, |conn| {
                        overlapped(&mut plan, || Sel::load_bulk(query, conn))
                    });
                    match written {
                        Ok(written) => plan.written(written)?,
                        Err(error) => {
                            let resend = (flag, do_nothing);
                            return Err(match Stop::after(&plan, error, wrote, resend, classify) {
                                Ok((narrowing, error)) => Stop::Error(narrow(
                                    conn,
                                    narrowing,
                                    &key_columns,
                                    error,
                                    |rows, conn| {
                                        Sel::load_bulk(upsert(rows, flag, do_nothing), conn)
                                            .map(drop)
                                    },
                                )),
                                Err(stop) => stop,
                            });
                        }
                    }
                    wrote = true;
                }
                BulkQuery::Fetch(query) => {
                    let kept = overlapped(&mut plan, || Sel::load_kept(query, conn));
                    plan.fetched(kept?)?
                }
                BulkQuery::Insert(query) => {
                    plan.inserted(Sel::load_single(query, conn).map_err(classify)?)?;
                    wrote = true;
                }
            }
        }
        Ok(plan.finish()?)
    });
    match ended {
        Ok(results) => Ok(results),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing,
            error,
            flag,
            do_nothing,
        }) => Err(narrow(
            conn,
            narrowing,
            &key_columns,
            error,
            |rows, conn| Sel::load_bulk(upsert(rows, flag, do_nothing), conn).map(drop),
        )),
    }
}

/// A bulk call that returns no rows, only how many input rows it inserted, updated and left
/// unchanged: the same checks, order, chunks and transaction, no read-back of kept rows.
pub(crate) fn bulk_execute<S, C>(statement: &S, conn: &mut C) -> Result<BulkSummary>
where
    S: UpsertStatement,
    S::Row: Sync,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let Some(prepared) = prepare(statement, conn)? else {
        return Ok(BulkSummary::default());
    };
    let catalog = &prepared.catalog;
    let settings = prepared.count_settings(statement)?;
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::<_, _, ()>::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    group(&mut plan, &key, conn)?;
    let mut wrote = false;
    let count = |rows, flag| BulkCount {
        statement,
        rows,
        catalog,
        flag,
        do_nothing: false,
    };
    let ended = conn.transaction(|conn| -> std::result::Result<_, Stop<'_, _, _>> {
        while let Some(step) = plan.next()? {
            let Step::Count { rows, flag } = step else {
                return Err(Error::internal("rows asked for in a call without rows").into());
            };
            let query = count(rows, flag);
            let counted = write(conn, wrote, |conn| {
                overlapped(&mut plan, || query.get_result(conn))
            });
            match counted {
                Ok(counted) => plan.counted(counted)?,
                Err(error) => {
                    let classify = |e| classify_error(statement, catalog, e);
                    return Err(
                        match Stop::after(&plan, error, wrote, (flag, false), classify) {
                            Ok((narrowing, error)) => Stop::Error(narrow(
                                conn,
                                narrowing,
                                &key_columns,
                                error,
                                |rows, conn| {
                                    count(rows, flag).get_result::<(i64, i64)>(conn).map(drop)
                                },
                            )),
                            Err(stop) => stop,
                        },
                    );
                }
            }
            wrote = true;
        }
        Ok(plan.finish_counts()?)
    });
    match ended {
        Ok(summary) => Ok(summary),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing,
            error,
            flag,
            ..
        }) => Err(narrow(
            conn,
            narrowing,
            &key_columns,
            error,
            |rows, conn| count(rows, flag).get_result::<(i64, i64)>(conn).map(drop),
        )),
    }
}

/// `bulk_update`: the rows that exist are locked in key order, then updated from their input
/// rows; one outcome per input row, in input order. The same checks, order, chunks,
/// transaction and refused-row search as the upserts.
pub(crate) fn bulk_update<S, C>(statement: &S, conn: &mut C) -> Result<Vec<UpdateOutcome>>
where
    S: UpsertStatement,
    S::Row: Sync,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let Some(prepared) = prepare(statement, conn)? else {
        return Ok(Vec::new());
    };
    let rows = statement.rows();
    let key = prepared.key(statement)?;
    let key_columns = key.columns();
    let settings = prepared.update_settings(statement, &key)?;
    let keys = parallel_byte_keys(rows, &key);
    let mut plan = BulkPlan::with_byte_keys(rows, &key, &key_columns, settings, keys)?;
    group(&mut plan, &key, conn)?;
    let mut wrote = false;
    let update = |rows| BulkUpdate {
        statement,
        rows,
        key: &key,
    };
    let ended = conn.transaction(|conn| -> std::result::Result<_, Stop<'_, _, _>> {
        while let Some(step) = plan.next()? {
            match step {
                Step::Fetch { rows, lock } => {
                    let query = FetchKept {
                        statement,
                        rows,
                        key: &key,
                        selection: found(),
                        lock,
                    };
                    let locked = overlapped(&mut plan, || query.load::<(i32, bool)>(conn));
                    plan.fetched(locked?)?
                }
                Step::Update { rows } => {
                    let query = update(rows);
                    let written = write(conn, wrote, |conn| {
                        overlapped(&mut plan, || query.load::<i32>(conn))
                    });
                    match written {
                        Ok(written) => plan.updated(written, true)?,
                        Err(error) => {
                            let resend = (InsertedFlag::Always(false), false);
                            return Err(
                                match Stop::after(&plan, error, wrote, resend, Error::from) {
                                    Ok((narrowing, error)) => Stop::Error(narrow(
                                        conn,
                                        narrowing,
                                        &key_columns,
                                        error,
                                        |rows, conn| update(rows).load::<i32>(conn).map(drop),
                                    )),
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
    });
    match ended {
        Ok(outcomes) => Ok(outcomes),
        Err(Stop::Error(error)) => Err(error),
        Err(Stop::Refused {
            narrowing, error, ..
        }) => Err(narrow(
            conn,
            narrowing,
            &key_columns,
            error,
            |rows, conn| update(rows).load::<i32>(conn).map(drop),
        )),
    }
}

/// A single-row call: the row and, when asked for (`outcomes`), its outcome (in a transaction
/// when [`SingleCall`] says so).
pub(crate) fn single<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel,
    outcomes: bool,
) -> Result<(Out, Option<Outcome>)>
where
    S: UpsertStatement,
    Sel: Returning<Out>,
    C: Connection<Backend = Pg> + LoadConnection,
{
    // Reject a target that cannot be written before Diesel starts the query (and reports it to
    // instrumentation).
    statement.check()?;
    let catalog = &*catalog::lookup(statement.table_sql(), statement.target(), conn)?;
    let call = SingleCall::new(statement, catalog, outcomes)?;
    let row = &statement.rows()[0];
    let flow = |conn: &mut C| {
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
                    let mut rows = Sel::load_single(query, conn)
                        .map_err(|e| classify_error(statement, catalog, e))?;
                    plan.upserted(rows.pop());
                }
                SingleStep::Fetch { lock } => {
                    // Needed only to read a row back: a named constraint's columns must then
                    // be supplied by the insert.
                    let key =
                        KeyShape::new(catalog.key(statement.target(), &call.supplied)?, catalog)?;
                    let query = FetchExisting {
                        statement,
                        row,
                        key: &key,
                        selection: selection(),
                        lock,
                    };
                    plan.fetched(Sel::load_existing(query, conn)?)?;
                }
            }
        }
        plan.finish()
    };
    if call.in_transaction {
        conn.transaction(flow)
    } else {
        flow(conn)
    }
}
