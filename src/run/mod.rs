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
use crate::plan::{check_returnable, fixed_binds, inserted, Method, Settings, Step};
use crate::query_builder::count::BulkCount;
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::{BulkUpsert, FetchKept};
use crate::query_builder::single::{Inserted, UpsertReturning};
use crate::query_builder::statement::{consistent_columns, UpsertStatement};
use crate::rows::RowValues;
use crate::schema::{Catalog, InsertedFlag};
use crate::spec::{ConflictAction, DuplicateKeys};
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
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
        }
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
            Step::Count { .. } => return Err(Error::internal("a count in a call with rows")),
        })
    }
}
