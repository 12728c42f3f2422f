//! The drivers: what runs the statements of a call on a connection. `sync` takes a
//! `diesel::Connection`, `r#async` (feature `async`) a diesel-async `AsyncConnection`; both walk
//! the same plans with the same query nodes. What a call sends and what the rows mean is
//! decided in `plan`, the SQL is written in `query_builder`, and neither knows a connection.
//! What both drivers decide before and around their plans, without a connection, is here.

#[cfg(feature = "async")]
pub(crate) mod r#async;
pub(crate) mod catalog;
pub(crate) mod returning;
pub(crate) mod sync;

use crate::error::{Error, Result};
use crate::literal;
use crate::plan::{
    byte_keys, check_returnable, fixed_binds, inserted, names_a_row, BulkPlan, ByteKeys, Method,
    Narrowing, Settings, Step,
};
use crate::query_builder::count::BulkCount;
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::{BulkUpdate, BulkUpsert, FetchKept};
use crate::query_builder::single::{Inserted, UpsertReturning};
use crate::query_builder::statement::{consistent_columns, UpsertStatement};
use crate::rows::{RowValues, ValueOf};
use crate::schema::{Catalog, InsertedFlag};
use crate::spec::{ConflictAction, DuplicateKeys};
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::result::Error as DieselError;
use diesel::QueryResult;
use std::sync::Arc;

/// The columns every row of a bulk call supplies, checked with the target before anything is
/// read or sent; `None` for empty input (nothing is sent).
pub(crate) fn bulk_columns<S: UpsertStatement>(statement: &S) -> Result<Option<Vec<&'static str>>> {
    let rows = statement.rows();
    let columns = consistent_columns::<S::Table, S::Row>(rows.iter())?;
    if rows.is_empty() {
        return Ok(None);
    }
    statement.check()?;
    Ok(Some(columns))
}

/// What a bulk call decides from the catalog before its plan: the catalog facts, the columns
/// every row supplies, what to do with rows sharing a key.
pub(crate) struct Prepared {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) columns: Vec<&'static str>,
    pub(crate) policy: Option<DuplicateKeys>,
}

impl Prepared {
    pub(crate) fn new<S: UpsertStatement>(
        statement: &S,
        catalog: Arc<Catalog>,
        columns: Vec<&'static str>,
    ) -> Result<Self> {
        check_returnable(statement, &catalog)?;
        statement.use_catalog(&catalog);
        let policy = statement.duplicate_keys().or(match statement.action() {
            ConflictAction::Nothing => Some(DuplicateKeys::KeepFirst),
            ConflictAction::Update => None,
        });
        Ok(Prepared {
            catalog,
            columns,
            policy,
        })
    }

    /// The conflict key of the call's rows.
    pub(crate) fn key<S: UpsertStatement>(&self, statement: &S) -> Result<KeyShape<'_>> {
        KeyShape::new(
            self.catalog.key(statement.target(), &self.columns)?,
            &self.catalog,
        )
    }

    /// The settings of a bulk call that returns `selection` per row.
    pub(crate) fn rows_settings<S, Sel>(
        &self,
        statement: &S,
        key: &KeyShape<'_>,
        selection: Sel,
        outcomes: bool,
    ) -> Result<Settings>
    where
        S: UpsertStatement,
        Sel: Expression + QueryFragment<Pg>,
    {
        let fixed = fixed_binds(statement.rows(), |rows| BulkUpsert {
            statement,
            rows,
            key,
            selection,
            flag: InsertedFlag::Xmax,
            do_nothing: false,
        })?;
        Ok(self.settings(statement, outcomes, fixed, true))
    }

    /// The settings of a bulk call that only counts (`bulk_execute`).
    pub(crate) fn count_settings<S: UpsertStatement>(&self, statement: &S) -> Result<Settings> {
        let settings = self.settings(statement, true, 0, false);
        if settings.method == Method::TwoPhases {
            return Err(Error::unsupported(format!(
                "on a partitioned table, PostgreSQL {} cannot count updated rows apart from \
                 inserted ones in one statement (PostgreSQL 18 can); use bulk_insert, which \
                 tells them apart row by row",
                self.catalog.server_version / 10_000
            )));
        }
        let fixed = fixed_binds(statement.rows(), |rows| BulkCount {
            statement,
            rows,
            catalog: &self.catalog,
            flag: InsertedFlag::Xmax,
            do_nothing: false,
        })?;
        Ok(Settings { fixed, ..settings })
    }

    fn settings<S: UpsertStatement>(
        &self,
        statement: &S,
        outcomes: bool,
        fixed: usize,
        rows_back: bool,
    ) -> Settings {
        Settings {
            method: Method::choose(statement, &self.catalog, &self.columns, outcomes),
            policy: self.policy,
            outcomes,
            columns: self.columns.len(),
            fixed,
            rows_back,
            update: false,
            limits: statement.limits(),
        }
    }

    /// The settings of `bulk_update`, after checking that a unique index backs the key (the
    /// statement has no `ON CONFLICT` for PostgreSQL to check it).
    pub(crate) fn update_settings<S: UpsertStatement>(
        &self,
        statement: &S,
        key: &KeyShape<'_>,
    ) -> Result<Settings> {
        if self.catalog.arbiter.is_some_and(|arbiter| !arbiter.full) {
            return Err(catalog::no_matching_unique_index(statement));
        }
        if statement.set_columns(&self.columns).is_empty() {
            return Err(Error::unsupported(
                "bulk_update: the rows supply no column to set besides the key",
            ));
        }
        let fixed = fixed_binds(statement.rows(), |rows| BulkUpdate {
            statement,
            rows,
            key,
        })?;
        Ok(Settings {
            update: true,
            ..self.settings(statement, false, fixed, true)
        })
    }
}

/// The columns the one row of a single-row call supplies, and how the call learns its
/// outcome. With an update condition, or the two-phase method, the call's statements share a
/// transaction (`in_transaction`): `DO UPDATE … WHERE` locks the conflicting row even when the
/// condition is false, so the row read back is exactly the one the condition saw.
pub(crate) struct SingleCall {
    pub(crate) supplied: Vec<&'static str>,
    pub(crate) method: Method,
    pub(crate) in_transaction: bool,
}

impl SingleCall {
    pub(crate) fn new<S: UpsertStatement>(
        statement: &S,
        catalog: &Catalog,
        outcomes: bool,
    ) -> Result<Self> {
        check_returnable(statement, catalog)?;
        statement.use_catalog(catalog);
        let mut supplied = Vec::new();
        statement.rows()[0].supplied_columns(&mut supplied);
        let method = Method::choose(statement, catalog, &supplied, outcomes);
        Ok(SingleCall {
            supplied,
            method,
            in_transaction: statement.has_condition() || method == Method::TwoPhases,
        })
    }
}

/// The query node of one step of a bulk call with rows, as both drivers send it; each variant
/// says where its rows go.
pub(crate) enum BulkQuery<'q, S: UpsertStatement, Sel> {
    /// To [`BulkPlan::written`](crate::plan::BulkPlan::written).
    Upsert(BulkUpsert<'q, S, Sel>),
    /// To [`BulkPlan::fetched`](crate::plan::BulkPlan::fetched).
    Fetch(FetchKept<'q, S, Sel>),
    /// To [`BulkPlan::inserted`](crate::plan::BulkPlan::inserted).
    Insert(UpsertReturning<'q, S, (Sel, Inserted)>),
}

impl<'q, S: UpsertStatement, Sel> BulkQuery<'q, S, Sel> {
    pub(crate) fn new(
        step: Step<'q, S::Table, S::Row>,
        statement: &'q S,
        key: &'q KeyShape<'q>,
        selection: Sel,
    ) -> Result<Self> {
        Ok(match step {
            Step::Upsert {
                rows,
                flag,
                do_nothing,
            } => BulkQuery::Upsert(BulkUpsert {
                statement,
                rows,
                key,
                selection,
                flag,
                do_nothing,
            }),
            Step::Fetch { rows, lock } => BulkQuery::Fetch(FetchKept {
                statement,
                rows,
                key,
                selection,
                lock,
            }),
            Step::Insert { rows, flag } => BulkQuery::Insert(UpsertReturning {
                statement,
                rows,
                returning: (selection, inserted(statement, flag)),
                do_nothing: false,
            }),
            Step::Count { .. } | Step::Update { .. } => {
                return Err(Error::internal("a count or an update in a call with rows"))
            }
        })
    }
}

/// [`Error::Row`] for the row a [`Narrowing`] found, or the statement's own error when the
/// failure did not come back (no row can be named).
pub(crate) fn refused<T, R: RowValues<T>>(
    narrowing: &Narrowing<'_, T, R>,
    key_columns: &[&'static str],
    source: DieselError,
) -> Error {
    let Some((index, row)) = narrowing.refused() else {
        return Error::Query(source);
    };
    let key = key_columns
        .iter()
        .map(|column| {
            let value = literal::inline_binds(&ValueOf::<R, T>::new(row, column), "the key")
                .unwrap_or_else(|_| "?".to_owned());
            let name = literal::quote_identifier(column).unwrap_or_else(|_| column.to_string());
            format!("{name} = {value}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    Error::Row { index, key, source }
}

/// How a bulk call's transaction ended before its plan finished.
pub(crate) enum Stop<'q, T, R> {
    /// An error, returned as it is.
    Error(Error),
    /// The call's first write failed for one of its rows: the row is found once the call's
    /// transaction is rolled back (nothing of the call is applied then, as when the statement
    /// ran), with statements like the failed one (`flag`, `do_nothing`).
    Refused {
        narrowing: Narrowing<'q, T, R>,
        error: DieselError,
        flag: InsertedFlag,
        do_nothing: bool,
    },
}

impl<'q, T, R: RowValues<T>> Stop<'q, T, R> {
    /// What follows when a write statement of `plan` failed with `error`: `Ok` to find the
    /// refused row now (the statement ran under a savepoint: `wrote`), or the stop to end the
    /// transaction with — `Refused` when the call's first write failed, or the error
    /// (`classify`d) when it names no row.
    pub(crate) fn after<Out: Clone>(
        plan: &BulkPlan<'q, T, R, Out>,
        error: DieselError,
        wrote: bool,
        (flag, do_nothing): (InsertedFlag, bool),
        classify: impl FnOnce(DieselError) -> Error,
    ) -> std::result::Result<(Narrowing<'q, T, R>, DieselError), Self> {
        match plan.narrowing().filter(|_| names_a_row(&error)) {
            Some(narrowing) if wrote => Ok((narrowing, error)),
            Some(narrowing) => Err(Stop::Refused {
                narrowing,
                error,
                flag,
                do_nothing,
            }),
            None => Err(Stop::Error(classify(error))),
        }
    }
}

impl<T, R> From<Error> for Stop<'_, T, R> {
    fn from(error: Error) -> Self {
        Stop::Error(error)
    }
}

impl<T, R> From<DieselError> for Stop<'_, T, R> {
    fn from(error: DieselError) -> Self {
        Stop::Error(error.into())
    }
}

/// What one probe of a [`Narrowing`] did, as the error of the savepoint it ran under (a probe's
/// savepoint is always rolled back).
pub(crate) enum Probe {
    Passed,
    Refused(DieselError),
    Failed(DieselError),
}

impl Probe {
    /// The probe that sent a statement with this result.
    pub(crate) fn of(sent: QueryResult<()>) -> Self {
        match sent {
            Ok(()) => Probe::Passed,
            Err(e) if names_a_row(&e) => Probe::Refused(e),
            Err(e) => Probe::Failed(e),
        }
    }
}

impl From<DieselError> for Probe {
    fn from(error: DieselError) -> Self {
        Probe::Failed(error)
    }
}

/// Takes what a probe's savepoint returned into `narrowing`, keeping the latest refusal in
/// `error`; `Some` ends the search with an error that names no row (a probe failed otherwise).
pub(crate) fn probed<T, R: RowValues<T>>(
    narrowing: &mut Narrowing<'_, T, R>,
    savepoint: std::result::Result<(), Probe>,
    error: &mut DieselError,
) -> Option<Error> {
    match savepoint {
        Err(Probe::Passed) => narrowing.probed(false),
        Err(Probe::Refused(e)) => {
            *error = e;
            narrowing.probed(true);
        }
        Err(Probe::Failed(e)) => return Some(e.into()),
        Ok(()) => return Some(Error::internal("a probe was committed")),
    }
    None
}

/// Runs `other` on a scoped second thread while `here` runs on this one: `here`'s result and
/// `other`'s, `None` when no thread could be started (then `other` has not run). A panic on the
/// second thread goes on here.
pub(crate) fn alongside<A: Send, B>(
    other: impl FnOnce() -> A + Send,
    here: impl FnOnce() -> B,
) -> (B, Option<A>) {
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new()
            .name("diesel-upsert".into())
            .spawn_scoped(scope, other);
        let here = here();
        let other = other.ok().map(|other| {
            other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (here, other)
    })
}

/// The rows' byte keys ([`byte_keys`]; `None`: PostgreSQL ranks the keys), a large input's two
/// halves read on two threads: nothing else runs yet, the server waits for the first statement.
/// (On the async driver the task's thread waits for both halves, as it would for one.)
pub(crate) fn parallel_byte_keys<T, R>(rows: &[R], key: &KeyShape<'_>) -> Option<ByteKeys>
where
    R: RowValues<T> + Sync,
{
    const TWO_THREADS_FROM: usize = 10_000;
    if rows.len() < TWO_THREADS_FROM {
        return byte_keys(rows, key);
    }
    let (first, second) = rows.split_at(rows.len() / 2);
    let (mut keys, rest) = alongside(|| byte_keys(second, key), || byte_keys(first, key));
    let rest = rest.unwrap_or_else(|| byte_keys(second, key));
    keys.as_mut()?.append(rest?);
    keys
}

/// The selection `bulk_update` locks its rows with: `true` for each row found.
pub(crate) fn found() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql("true")
}
