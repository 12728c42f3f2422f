//! The single-row flow on a synchronous connection.

use crate::error::Result;
use crate::plan::ATTEMPTS;
use crate::query_builder::keys::KeyShape;
use crate::query_builder::single::{FetchExisting, UpsertReturning};
use crate::query_builder::statement::UpsertStatement;
use crate::rows::RowValues;
use crate::run::bulk::{check_returnable, inserted, not_found, Method};
use crate::run::catalog::{self, classify_error};
use crate::run::returning::Returning;
use crate::schema::InsertedFlag;
use crate::spec::Outcome;
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::Connection;

/// The single-row flow: one statement when it returns the row; otherwise read the row its
/// conflict key points at, and start over (a bounded number of times) if that row was deleted
/// in between. With an update condition the two statements share a transaction: `DO UPDATE …
/// WHERE` locks the conflicting row even when the condition is false, so the row read back is
/// exactly the one the condition saw.
pub(crate) fn run<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel,
    outcomes: bool,
) -> Result<(Out, Option<Outcome>)>
where
    S: UpsertStatement,
    C: Connection<Backend = Pg> + LoadConnection,
    Sel: Returning<Out>,
{
    // Reject a target that cannot be written before Diesel starts the query (and reports
    // it to instrumentation).
    statement.check()?;
    let catalog = catalog::lookup(&statement.table_sql(), statement.target(), conn)?;
    check_returnable(statement, &catalog)?;
    let row = &statement.rows()[0];
    let mut supplied = Vec::new();
    row.supplied_columns(&mut supplied);
    let method = Method::choose(statement, &catalog, &supplied, outcomes);
    let upsert = |conn: &mut C, flag, do_nothing| -> Result<Option<(Out, Option<bool>)>> {
        let query = UpsertReturning {
            statement,
            rows: vec![row],
            returning: (selection(), inserted(statement, flag)),
            do_nothing,
        };
        Ok(Sel::load_single(query, conn)
            .map_err(|e| classify_error(statement, e))?
            .pop())
    };
    // The key is needed only to read a row back (a named constraint's columns must then be
    // supplied by the insert).
    let fetch = |conn: &mut C, lock| -> Result<Option<Out>> {
        let key = KeyShape::new(catalog.key(statement.target(), &supplied)?, &catalog)?;
        let query = FetchExisting {
            statement,
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
    if statement.has_condition() || method == Method::TwoPhases {
        conn.transaction(flow)
    } else {
        flow(conn)
    }
}
