//! The statement node behind `on_conflict_do` and the queries the terminals run.

use super::nodes::BulkRows;
use super::update::{NoUpdateCondition, NoUpdateValues, UpdateSet, UpdateWhere};
use crate::error::Error;
use crate::rows::{Records, RowValues};
use crate::schema::Catalog;
use crate::spec::{ConflictAction, DuplicateKeys, Limits};
use crate::target::Target;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::Table;
use std::fmt;

/// An `INSERT … ON CONFLICT …` statement under construction, returned by
/// [`UpsertDsl::on_conflict_do`](crate::UpsertDsl::on_conflict_do).
///
/// Configure it with [`index_predicate`](Self::index_predicate),
/// [`update_only`](Self::update_only), [`update_except`](Self::update_except),
/// [`update_values`](Self::update_values),
/// [`update_condition`](Self::update_condition) and [`skip_unchanged`](Self::skip_unchanged),
/// then run it with a terminal method of [`RunUpsertDsl`](crate::RunUpsertDsl) (`insert`,
/// `insert_and_get`, …; with the `async` feature, the same names in
/// `diesel_upsert::asynchronous::RunUpsertDsl`). It is also a Diesel
/// query: `.execute(conn)` runs it without `RETURNING`, and `diesel::debug_query` shows its SQL.
#[must_use = "an upsert runs only when a terminal method such as `insert` or `execute` is called"]
pub struct OnConflictDo<T: Table, U, Op, V = NoUpdateValues, W = NoUpdateCondition> {
    pub(crate) table: T,
    pub(crate) from: T::FromClause,
    pub(crate) operator: Op,
    pub(crate) records: U,
    pub(crate) target: Target,
    pub(crate) action: ConflictAction,
    pub(crate) names: std::sync::Arc<crate::literal::TableNames>,
    /// The index predicate as SQL text, or why it cannot be written (reported by the terminal).
    pub(crate) predicate: Option<Result<String, String>>,
    pub(crate) update_only: Option<Vec<&'static str>>,
    pub(crate) update_except: Vec<&'static str>,
    /// Columns set to `now()` by `DO UPDATE` (`touch`).
    pub(crate) touch: Vec<&'static str>,
    pub(crate) update_values: V,
    pub(crate) condition: W,
    pub(crate) skip_unchanged: bool,
    pub(crate) duplicate_keys: Option<DuplicateKeys>,
    /// What one bulk statement may carry.
    pub(crate) limits: Limits,
    /// The columns of an `on_constraint` target, from the catalog: set by the terminals (see
    /// [`UpsertStatement::use_catalog`]), never by `execute` or `debug_query`.
    pub(crate) constraint_columns: std::sync::OnceLock<Vec<String>>,
}

impl<T: Table, U, Op, V, W> fmt::Debug for OnConflictDo<T, U, Op, V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnConflictDo")
            .field("target", &self.target)
            .field("action", &self.action)
            .field("predicate", &self.predicate)
            .field("update_only", &self.update_only)
            .field("update_except", &self.update_except)
            .field("touch", &self.touch)
            .field("skip_unchanged", &self.skip_unchanged)
            .field("duplicate_keys", &self.duplicate_keys)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What the terminals and statements need from a builder, independent of its many type
/// parameters.
pub trait UpsertStatement {
    /// The table written to.
    type Table: Table;
    /// The records (one row or a batch).
    type Records: Records<Self::Table, Row = Self::Row>;
    /// One row of the records.
    type Row: RowValues<Self::Table>;

    /// The table written to.
    fn table(&self) -> &Self::Table;

    /// All rows, in input order.
    fn rows(&self) -> &[Self::Row];

    /// Writes `INSERT INTO … VALUES <rows> ON CONFLICT … [RETURNING …]`.
    /// `do_nothing` writes `DO NOTHING` whatever the action.
    fn walk_upsert<'b>(
        &'b self,
        rows: &[&'b Self::Row],
        returning: Option<&'b dyn QueryFragment<Pg>>,
        do_nothing: bool,
        out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Writes the table as in `FROM <table>`: `"products"`, `"myschema"."t"`.
    fn walk_table<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;

    /// `INSERT INTO "t" ("a", "b")`, without a column list when there are no columns.
    fn walk_insert_into<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// ` ON CONFLICT <target> [WHERE <predicate>] DO …` for rows supplying `columns`
    /// (`DO NOTHING` whatever the action with `do_nothing`).
    fn walk_on_conflict<'b>(
        &'b self,
        columns: &[&'static str],
        do_nothing: bool,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Whether the statement for rows supplying `columns` is `DO NOTHING`: the action, or an
    /// empty `SET` list.
    fn does_nothing(&self, columns: &[&'static str]) -> bool;

    /// `(ROW("t"."a", "t"."b", …))::record`: the stored values of `columns`, as a record
    /// compared by its binary image (`*=`).
    fn walk_table_row<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// The columns copied from the new row in `DO UPDATE SET` for rows supplying `supplied`.
    fn set_columns(&self, supplied: &[&'static str]) -> Vec<&'static str>;

    /// Whether `DO UPDATE` skips rows whose `set` columns already hold the new values.
    fn compares(&self, set: &[&'static str]) -> bool;

    /// The columns the rows supply (checked to be the same for every row).
    fn columns_of(
        &self,
        rows: &BulkRows<'_, Self::Table, Self::Row>,
    ) -> QueryResult<Vec<&'static str>>;

    /// The conflict target.
    fn target(&self) -> &Target;

    /// The index predicate as SQL text with literal values, if there is one that could be
    /// written.
    fn predicate(&self) -> Option<&str>;

    /// The action taken on conflict.
    fn action(&self) -> ConflictAction;

    /// The primary-key columns of the table.
    fn primary_key(&self) -> &[String];

    /// The table as written in the statement, such as `"products"`.
    fn table_sql(&self) -> &str;

    /// Checks the target and predicate without writing anything.
    fn check(&self) -> QueryResult<()>;

    /// The policy for rows sharing a conflict key in a bulk call.
    fn duplicate_keys(&self) -> Option<DuplicateKeys>;

    /// What one bulk statement may carry.
    fn limits(&self) -> Limits;

    /// Learns from the catalog what the target alone does not say: the columns of a named
    /// constraint, which `DO UPDATE SET` then leaves out like a column target's. Called by the
    /// terminals before they write anything; `execute` and `debug_query` have no catalog.
    fn use_catalog(&self, catalog: &Catalog);

    /// Whether the update has a condition (`update_condition` or `skip_unchanged`) that can
    /// leave a conflicting row in place, locked.
    fn has_condition(&self) -> bool;
}

impl<T, U, Op, V, W> UpsertStatement for OnConflictDo<T, U, Op, V, W>
where
    T: Table,
    T::FromClause: QueryFragment<Pg>,
    U: Records<T>,
    Op: QueryFragment<Pg>,
    V: UpdateSet,
    W: UpdateWhere,
{
    type Table = T;
    type Records = U;
    type Row = U::Row;

    fn table(&self) -> &T {
        &self.table
    }

    fn rows(&self) -> &[Self::Row] {
        self.records.rows()
    }

    fn walk_upsert<'b>(
        &'b self,
        rows: &[&'b Self::Row],
        returning: Option<&'b dyn QueryFragment<Pg>>,
        do_nothing: bool,
        mut out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.check_target()?;
        if rows.len() > 1 {
            // The text depends on the number of rows: prepare it unnamed, like Diesel's own
            // batch inserts, instead of caching one statement per batch size.
            out.unsafe_to_cache_prepared();
        }
        let columns = consistent_columns(rows.iter().copied())?;
        self.walk_insert_into(&columns, &mut out)?;
        if columns.is_empty() {
            if rows.len() > 1 {
                return Err(no_columns().into());
            }
            out.push_sql(" DEFAULT VALUES");
        } else {
            out.push_sql(" VALUES ");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                out.push_sql("(");
                row.walk_values(&mut out, &mut true)?;
                out.push_sql(")");
            }
        }
        self.walk_on_conflict(&columns, do_nothing, &mut out)?;
        if let Some(returning) = returning {
            out.push_sql(" RETURNING ");
            returning.walk_ast(out.reborrow())?;
        }
        Ok(())
    }

    fn walk_table<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.from.walk_ast(out.reborrow())
    }

    fn walk_insert_into<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.operator.walk_ast(out.reborrow())?;
        out.push_sql(" INTO ");
        self.from.walk_ast(out.reborrow())?;
        if !columns.is_empty() {
            out.push_sql(" (");
            push_identifiers(out, None, columns)?;
            out.push_sql(")");
        }
        Ok(())
    }

    fn walk_on_conflict<'b>(
        &'b self,
        columns: &[&'static str],
        do_nothing: bool,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.check_target()?;
        out.push_sql(" ON CONFLICT ");
        self.target.walk(out)?;
        if let Some(Ok(predicate)) = &self.predicate {
            out.push_sql(" WHERE ");
            out.push_sql(predicate);
        }
        if do_nothing || self.does_nothing(columns) {
            out.push_sql(" DO NOTHING");
            return Ok(());
        }
        self.walk_update(columns, out)
    }

    fn does_nothing(&self, columns: &[&'static str]) -> bool {
        self.action == ConflictAction::Nothing
            || (self.default_set_columns(columns).is_empty()
                && self.update_values.columns().is_empty())
    }

    fn walk_table_row<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.walk_stored_row(columns, out)
    }

    fn set_columns(&self, supplied: &[&'static str]) -> Vec<&'static str> {
        self.default_set_columns(supplied)
    }

    fn compares(&self, set: &[&'static str]) -> bool {
        self.skip_unchanged && self.action == ConflictAction::Update && !set.is_empty()
    }

    fn columns_of(&self, rows: &BulkRows<'_, T, Self::Row>) -> QueryResult<Vec<&'static str>> {
        let columns = match rows {
            BulkRows::Values(rows) => consistent_columns(rows.iter().map(|(_, row)| *row))?,
            BulkRows::Arrays(arrays) => arrays.columns(),
        };
        if columns.is_empty() {
            return Err(no_columns().into());
        }
        Ok(columns)
    }

    fn target(&self) -> &Target {
        &self.target
    }

    fn predicate(&self) -> Option<&str> {
        self.predicate.as_ref().and_then(|p| p.as_deref().ok())
    }

    fn action(&self) -> ConflictAction {
        self.action
    }

    fn primary_key(&self) -> &[String] {
        &self.names.primary_key
    }

    fn check(&self) -> QueryResult<()> {
        self.check_target()
    }

    fn duplicate_keys(&self) -> Option<DuplicateKeys> {
        self.duplicate_keys
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn use_catalog(&self, catalog: &Catalog) {
        if self.target.constraint().is_some() {
            let _ = self
                .constraint_columns
                .set(catalog.constraint_columns.clone());
        }
    }

    fn table_sql(&self) -> &str {
        &self.names.sql
    }

    fn has_condition(&self) -> bool {
        self.action == ConflictAction::Update
            && (self.skip_unchanged || self.condition.is_present())
    }
}

impl<T, U, Op, V, W> OnConflictDo<T, U, Op, V, W>
where
    T: Table,
    T::FromClause: QueryFragment<Pg>,
    V: UpdateSet,
    W: UpdateWhere,
{
    /// The columns copied from the new row in `DO UPDATE SET`: the supplied columns minus the
    /// plain target columns (a named constraint's once the catalog is known) and the primary
    /// key, restricted by `update_only`, minus the
    /// columns of `update_except`, `touch` and those `update_values` assigns.
    pub(crate) fn default_set_columns(&self, supplied: &[&'static str]) -> Vec<&'static str> {
        supplied
            .iter()
            .copied()
            .filter(|c| !self.target.plain_columns().any(|t| t == *c))
            .filter(|c| {
                self.constraint_columns
                    .get()
                    .is_none_or(|key| !key.iter().any(|k| k == c))
            })
            .filter(|c| !self.names.primary_key.iter().any(|pk| pk == c))
            .filter(|c| {
                self.update_only
                    .as_ref()
                    .is_none_or(|only| only.contains(c))
            })
            .filter(|c| !self.update_except.contains(c) && !self.touch.contains(c))
            .filter(|c| !self.update_values.columns().iter().any(|v| v == c))
            .collect()
    }

    /// `(ROW("t"."a", "t"."b", …))::record`.
    fn walk_stored_row<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        out.push_sql("(ROW(");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            self.from.walk_ast(out.reborrow())?;
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        out.push_sql("))::record");
        Ok(())
    }

    /// Rejects what cannot be written as a conflict target, before anything is written.
    fn check_target(&self) -> QueryResult<()> {
        if let Some(Err(e)) = &self.predicate {
            return Err(Error::invalid_target(e.clone()).into());
        }
        if self.predicate.is_some() && self.target.constraint().is_some() {
            return Err(Error::invalid_target(
                "an index predicate cannot be combined with a named constraint: \
                 PostgreSQL only infers partial indexes from column or expression targets",
            )
            .into());
        }
        Ok(self.target.check()?)
    }

    /// ` DO UPDATE SET … [WHERE …]`.
    fn walk_update<'b>(
        &'b self,
        supplied: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        let set = self.default_set_columns(supplied);
        out.push_sql(" DO UPDATE SET ");
        for (i, column) in set.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
            out.push_sql(" = excluded.");
            out.push_identifier(column)?;
        }
        if !set.is_empty() && !self.update_values.columns().is_empty() {
            out.push_sql(", ");
        }
        self.update_values.walk_set(out)?;
        // `touch`: after what the row writes, unless `update_values` assigns the column.
        let assigned = self.update_values.columns();
        let mut first = set.is_empty() && assigned.is_empty();
        for column in self
            .touch
            .iter()
            .filter(|c| !assigned.iter().any(|a| a == **c))
        {
            if !first {
                out.push_sql(", ");
            }
            first = false;
            out.push_identifier(column)?;
            out.push_sql(" = now()");
        }

        let compare = self.skip_unchanged && !set.is_empty();
        if self.condition.is_present() || compare {
            out.push_sql(" WHERE ");
        }
        self.condition.walk_condition(out)?;
        if compare {
            if self.condition.is_present() {
                out.push_sql(" AND ");
            }
            // Record images: a row is left alone only when writing it would store exactly
            // what is stored (citext 'HELLO' over 'Hello' is written), for every column type
            // (json has no `=`).
            self.walk_stored_row(&set, out)?;
            out.push_sql(" *<> (ROW(");
            push_identifiers(out, Some("excluded"), &set)?;
            out.push_sql("))::record");
        }
        Ok(())
    }
}

/// The columns every row supplies; an error naming the first row that differs from row 0.
pub(crate) fn consistent_columns<'r, T: 'r, R: RowValues<T> + 'r>(
    mut rows: impl Iterator<Item = &'r R>,
) -> Result<Vec<&'static str>, Error> {
    let mut columns = Vec::new();
    if let Some(first) = rows.next() {
        first.supplied_columns(&mut columns);
    }
    let mut found = Vec::with_capacity(columns.len());
    for (index, row) in rows.enumerate() {
        found.clear();
        row.supplied_columns(&mut found);
        if found != columns {
            return Err(Error::InconsistentColumns {
                row: index + 1,
                expected: columns.iter().map(|c| c.to_string()).collect(),
                found: found.iter().map(|c| c.to_string()).collect(),
            });
        }
    }
    Ok(columns)
}

/// Several rows cannot all be written as `DEFAULT VALUES`.
fn no_columns() -> Error {
    Error::invalid_target("a bulk insert needs at least one column that every row supplies")
}

/// `q."a", q."b", …`: `names` as identifiers, each after the qualifier `q` (SQL text) if any.
pub(super) fn push_identifiers(
    out: &mut AstPass<'_, '_, Pg>,
    qualifier: Option<&str>,
    names: &[&str],
) -> QueryResult<()> {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_sql(", ");
        }
        if let Some(q) = qualifier {
            out.push_sql(q);
            out.push_sql(".");
        }
        out.push_identifier(name)?;
    }
    Ok(())
}

impl<T: Table, U, Op, V, W> QueryFragment<Pg> for OnConflictDo<T, U, Op, V, W>
where
    Self: UpsertStatement,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let rows: Vec<&<Self as UpsertStatement>::Row> = self.rows().iter().collect();
        self.walk_upsert(&rows, None, false, out)
    }
}

impl<T: Table, U, Op, V, W> QueryId for OnConflictDo<T, U, Op, V, W> {
    type QueryId = ();
    // The SQL text holds run-time parts (target literals, supplied columns), so Diesel caches
    // the prepared statement by its SQL text rather than by type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Table, U, Op, V, W, Conn> RunQueryDsl<Conn> for OnConflictDo<T, U, Op, V, W> {}
