//! The connection-free planner: what a call sends, in what order, and what the rows that come
//! back mean. A plan ([`BulkPlan`], [`SinglePlan`]) says which statement to send next
//! (`next()`), accepts what came back (`written`, `fetched`, …) and finally hands out one
//! result per input row (`finish()`); a driver (`run::sync`) only sends the statements. Nothing
//! here sees a connection.

mod bulk;
mod narrow;
mod results;
mod rows;
mod single;

pub(crate) use bulk::{BulkPlan, Settings, Step};
pub(crate) use narrow::{names_a_row, Narrowing};
pub(crate) use results::{key_changed, ByteKeys};
pub(crate) use rows::{byte_keys, fixed_binds};
pub(crate) use single::{SinglePlan, SingleStep};

use crate::error::{Error, Result};
use crate::query_builder::single::Inserted;
use crate::query_builder::statement::UpsertStatement;
use crate::schema::{Catalog, InsertedFlag};
use crate::spec::ConflictAction;

/// How many times rows whose existing row vanished before it could be read (deleted by another
/// transaction between the upsert and the read) are sent again.
pub(crate) const ATTEMPTS: usize = 3;

/// How a call learns whether each row it wrote was inserted or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// One upsert statement per chunk, with this flag in `RETURNING`.
    OneStatement(InsertedFlag),
    /// On a partitioned table before PostgreSQL 18, where no flag can be returned: insert the
    /// new rows with `DO NOTHING`, lock the existing ones, then upsert the locked ones.
    TwoPhases,
}

impl Method {
    /// The method for rows supplying `columns`: a call that asks for no outcome needs no
    /// system column ([`InsertedFlag::Written`]); one that does reads `xmax`, `RETURNING old`,
    /// or takes two phases.
    pub(crate) fn choose<S: UpsertStatement>(
        statement: &S,
        catalog: &Catalog,
        columns: &[&'static str],
        outcomes: bool,
    ) -> Self {
        if !outcomes {
            return Method::OneStatement(InsertedFlag::Written);
        }
        match catalog.inserted_flag() {
            // `DO NOTHING` returns only rows it inserted.
            InsertedFlag::Unknown if statement.does_nothing(columns) => {
                Method::OneStatement(InsertedFlag::Always(true))
            }
            InsertedFlag::Unknown => Method::TwoPhases,
            flag => Method::OneStatement(flag),
        }
    }
}

/// Rejects, before anything is sent, what the terminals cannot return exactly.
pub(crate) fn check_returnable<S: UpsertStatement>(statement: &S, catalog: &Catalog) -> Result<()> {
    if catalog.exclusion && statement.action() == ConflictAction::Nothing {
        return Err(Error::unsupported(
            "an exclusion constraint can conflict with several rows, so the row a \
             ConflictAction::Nothing left in place cannot be returned; use .execute(conn)",
        ));
    }
    Ok(())
}

/// The inserted flag of `RETURNING`.
pub(crate) fn inserted<S: UpsertStatement>(statement: &S, flag: InsertedFlag) -> Inserted {
    Inserted {
        flag,
        // Only `RETURNING old` names a column: no allocation otherwise.
        key_column: match flag {
            InsertedFlag::OldRow => statement.primary_key().first().cloned(),
            _ => None,
        },
    }
}

/// A row that was neither written nor found by its key, after every attempt.
pub(crate) fn not_found(before_triggers: bool, position: usize) -> Error {
    if before_triggers {
        key_changed(format!(
            "no row with the key of input row {position} exists after the upsert \
             (a BEFORE trigger on the table may rewrite keys)"
        ))
    } else {
        Error::internal(format!(
            "the row conflicting with input row {position} vanished {ATTEMPTS} times"
        ))
    }
}
