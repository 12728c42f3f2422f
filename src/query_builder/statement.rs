//! The statement node behind `on_conflict_do` and the queries the terminals run.

use super::arrays::ColumnArrays;
use super::target::{KeyPart, Target};
use super::values::{Records, RowValues};
use crate::error::BuildError;
use crate::upsert::ConflictAction;
use diesel::backend::Backend;
use diesel::expression::{is_aggregate, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::sql_types::{Binary, Bool, Integer, Nullable, TypeMetadata};
use diesel::Table;
use std::fmt;

/// An `INSERT … ON CONFLICT …` statement under construction, returned by
/// [`UpsertDsl::on_conflict_do`](crate::UpsertDsl::on_conflict_do).
///
/// Configure it with [`index_predicate`](Self::index_predicate),
/// [`update_only`](Self::update_only), [`update_values`](Self::update_values),
/// [`update_condition`](Self::update_condition) and [`skip_unchanged`](Self::skip_unchanged),
/// then run it with a terminal method (`insert`, `insert_and_get`, …). It is also a Diesel
/// query: `.execute(conn)` runs it without `RETURNING`, and `diesel::debug_query` shows its SQL.
#[must_use = "an upsert runs only when a terminal method such as `insert` or `execute` is called"]
pub struct OnConflictDo<T: Table, U, Op, V = NoUpdateValues, W = NoUpdateCondition> {
    pub(crate) table: T,
    pub(crate) from: T::FromClause,
    pub(crate) operator: Op,
    pub(crate) records: U,
    pub(crate) target: Target,
    pub(crate) action: ConflictAction,
    pub(crate) primary_key: Vec<String>,
    pub(crate) predicate: Option<Result<String, BuildError>>,
    pub(crate) update_only: Option<Vec<&'static str>>,
    pub(crate) update_values: V,
    pub(crate) condition: W,
    pub(crate) skip_unchanged: bool,
    pub(crate) duplicate_keys: Option<crate::bulk::DuplicateKeys>,
}

impl<T: Table, U, Op, V, W> fmt::Debug for OnConflictDo<T, U, Op, V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnConflictDo")
            .field("target", &self.target)
            .field("action", &self.action)
            .field("predicate", &self.predicate)
            .field("update_only", &self.update_only)
            .field("skip_unchanged", &self.skip_unchanged)
            .field("duplicate_keys", &self.duplicate_keys)
            .finish_non_exhaustive()
    }
}

/// No `update_values` given.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdateValues;

/// The changeset given to `update_values`, with the columns it assigns.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct UpdateValues<CS> {
    pub(crate) changeset: CS,
    pub(crate) columns: Vec<String>,
}

/// No `update_condition` given.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdateCondition;

/// The expression given to `update_condition`.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct UpdateCondition<E>(pub(crate) E);

/// The `update_values` part of the builder.
#[doc(hidden)]
pub trait UpdateSet {
    /// The columns the changeset assigns.
    fn columns(&self) -> &[String];
    /// Writes `"col" = expr, …`; returns `false` when there is nothing to write.
    fn walk_set<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<bool>;
}

impl UpdateSet for NoUpdateValues {
    fn columns(&self) -> &[String] {
        &[]
    }
    fn walk_set<'b>(&'b self, _: &mut AstPass<'_, 'b, Pg>) -> QueryResult<bool> {
        Ok(false)
    }
}

impl<CS: QueryFragment<Pg>> UpdateSet for UpdateValues<CS> {
    fn columns(&self) -> &[String] {
        &self.columns
    }
    fn walk_set<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<bool> {
        if self.columns.is_empty() {
            return Ok(false);
        }
        self.changeset.walk_ast(out.reborrow())?;
        Ok(true)
    }
}

/// The `update_condition` part of the builder.
#[doc(hidden)]
pub trait UpdateWhere {
    /// Whether there is a condition.
    fn is_present(&self) -> bool;
    /// Writes the condition.
    fn walk_condition<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl UpdateWhere for NoUpdateCondition {
    fn is_present(&self) -> bool {
        false
    }
    fn walk_condition<'b>(&'b self, _: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

impl<E: QueryFragment<Pg>> UpdateWhere for UpdateCondition<E> {
    fn is_present(&self) -> bool {
        true
    }
    fn walk_condition<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

/// What the terminals need from a builder, independent of its many type parameters.
#[doc(hidden)]
pub trait UpsertStatement {
    /// The table written to.
    type Table: Table;
    /// One row of the records.
    type Row: RowValues<Self::Table>;

    /// All rows, in input order.
    fn rows(&self) -> &[Self::Row];

    /// Writes `INSERT INTO … VALUES <rows> ON CONFLICT … [RETURNING …]`.
    fn walk_upsert<'b>(
        &'b self,
        rows: &[&'b Self::Row],
        returning: Option<&'b dyn QueryFragment<Pg>>,
        out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Writes the bulk statement: the rows (each with its input position) as a `VALUES` list in
    /// a CTE, `INSERT … SELECT` from it with the conflict clause, and a `SELECT` of
    /// `(position, selection, inserted)` joining the input to the written rows by `key`.
    fn walk_bulk_upsert<'b>(
        &'b self,
        rows: &[(usize, &'b Self::Row)],
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Writes the bulk statement for keys made of bound values: `INSERT … VALUES <rows>` (or
    /// `INSERT … SELECT unnest($1), …` for rows sent as arrays) `ON CONFLICT … RETURNING
    /// selection, inserted, <key parts>`, padded to [`RETURNED_KEY_PARTS`] key columns with
    /// NULLs. The caller matches the returned keys to the input rows by their bytes.
    fn walk_bulk_upsert_returning_keys<'b>(
        &'b self,
        rows: &'b BulkRows<'b, Self::Table, Self::Row>,
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Writes `SELECT (position, selection)` of the existing rows with the keys of `rows`.
    fn walk_fetch_existing<'b>(
        &'b self,
        rows: &'b BulkRows<'b, Self::Table, Self::Row>,
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;

    /// Writes `FROM <table>` for a follow-up `SELECT`.
    fn walk_from<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;

    /// The conflict target.
    fn target(&self) -> &Target;

    /// The index predicate as SQL text with literal values, if there is one that could be
    /// written.
    fn predicate(&self) -> Option<&str>;

    /// The action taken on conflict.
    fn action(&self) -> ConflictAction;

    /// The table as written in the statement, such as `"products"`.
    fn table_sql(&self) -> String;

    /// Checks the target and predicate without writing anything.
    fn check(&self) -> QueryResult<()>;

    /// The policy for rows sharing a conflict key in a bulk call.
    fn duplicate_keys(&self) -> Option<crate::bulk::DuplicateKeys>;
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
    type Row = U::Row;

    fn rows(&self) -> &[Self::Row] {
        self.records.rows()
    }

    fn walk_upsert<'b>(
        &'b self,
        rows: &[&'b Self::Row],
        returning: Option<&'b dyn QueryFragment<Pg>>,
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
        self.walk_on_conflict(&columns, &mut out)?;
        if let Some(returning) = returning {
            out.push_sql(" RETURNING ");
            returning.walk_ast(out.reborrow())?;
        }
        Ok(())
    }

    fn walk_bulk_upsert<'b>(
        &'b self,
        rows: &[(usize, &'b Self::Row)],
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        mut out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.check_target()?;
        // The text holds the rows' input positions (in key order), which change from call to
        // call: cached, the chunks would pile up as prepared statements on the client and the
        // server for the connection's lifetime.
        out.unsafe_to_cache_prepared();
        let columns = consistent_columns(rows.iter().map(|(_, row)| *row))?;
        if columns.is_empty() {
            return Err(no_columns().into());
        }
        walk_input_cte(&columns, rows, &mut out, |row, out, first| {
            row.walk_values(out, first)
        })?;
        out.push_sql(", ");
        out.push_identifier(UPSERTED)?;
        out.push_sql(" AS (");
        self.walk_insert_into(&columns, &mut out)?;
        out.push_sql(" SELECT ");
        push_identifiers(&mut out, None, &columns)?;
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        self.walk_on_conflict(&columns, &mut out)?;
        out.push_sql(" RETURNING ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(".*, (xmax = 0) AS ");
        out.push_identifier(INSERTED)?;
        out.push_sql(") SELECT ");
        out.push_identifier(INPUT)?;
        out.push_sql(".");
        out.push_identifier(ORDINAL)?;
        out.push_sql(", ");
        selection.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(".");
        out.push_identifier(INSERTED)?;
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" JOIN ");
        out.push_identifier(UPSERTED)?;
        out.push_sql(" AS ");
        self.from.walk_ast(out.reborrow())?;
        self.walk_key_join(key, &mut out)
    }

    fn walk_bulk_upsert_returning_keys<'b>(
        &'b self,
        rows: &'b BulkRows<'b, T, Self::Row>,
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        mut out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        if key.len() > RETURNED_KEY_PARTS {
            return Err(BuildError::invalid_target(format!(
                "a conflict key of {} parts cannot be returned; at most {RETURNED_KEY_PARTS}",
                key.len()
            ))
            .into());
        }
        match rows {
            BulkRows::Values(rows) => {
                // The text depends on the number of rows: prepared unnamed, like Diesel's batch
                // inserts.
                out.unsafe_to_cache_prepared();
                let row_refs: Vec<&'b Self::Row> = rows.iter().map(|(_, row)| *row).collect();
                self.walk_upsert(&row_refs, Some(selection), out.reborrow())?;
            }
            BulkRows::Arrays(arrays) => {
                // The same text for any number of rows: prepared once per connection.
                self.check_target()?;
                let columns = arrays.columns();
                let set = self.default_set_columns(&columns);
                // The statement names its CTEs like the table, which a schema-qualified name
                // cannot be.
                if self.compares(&set) && self.table_is_unqualified() {
                    return self
                        .walk_unchanged_first(arrays, &columns, &set, key, selection, &mut out);
                }
                self.walk_insert_into(&columns, &mut out)?;
                out.push_sql(" SELECT ");
                arrays.walk_unnest(None, &mut out)?;
                self.walk_on_conflict(&columns, &mut out)?;
                out.push_sql(" RETURNING ");
                selection.walk_ast(out.reborrow())?;
            }
        }
        out.push_sql(", (xmax = 0)");
        self.walk_returned_key(key, &mut out)
    }

    fn walk_fetch_existing<'b>(
        &'b self,
        rows: &'b BulkRows<'b, T, Self::Row>,
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        mut out: AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        let columns = key_columns(key);
        match rows {
            BulkRows::Values(rows) => {
                // Holds input positions too, like `walk_bulk_upsert`.
                out.unsafe_to_cache_prepared();
                walk_input_cte(&columns, rows, &mut out, |row, out, first| {
                    for column in &columns {
                        if !std::mem::take(first) {
                            out.push_sql(", ");
                        }
                        if !row.walk_value_of(column, out)? {
                            out.push_sql("NULL");
                        }
                    }
                    Ok(())
                })?;
            }
            BulkRows::Arrays(arrays) => {
                out.push_sql("WITH ");
                out.push_identifier(INPUT)?;
                out.push_sql(" AS (SELECT ");
                arrays.walk_unnest(Some(&columns), &mut out)?;
                out.push_sql(", ");
                arrays.walk_positions(&mut out)?;
                out.push_sql(" AS ");
                out.push_identifier(ORDINAL)?;
                out.push_sql(")");
            }
        }
        out.push_sql(" SELECT ");
        out.push_identifier(INPUT)?;
        out.push_sql(".");
        out.push_identifier(ORDINAL)?;
        out.push_sql(", ");
        selection.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" JOIN ");
        self.from.walk_ast(out.reborrow())?;
        self.walk_key_join(key, &mut out)?;
        walk_and_predicate(self.predicate_sql(), &mut out);
        Ok(())
    }

    fn walk_from<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(" FROM ");
        self.from.walk_ast(out.reborrow())
    }

    fn target(&self) -> &Target {
        &self.target
    }

    fn predicate(&self) -> Option<&str> {
        self.predicate_sql()
    }

    fn action(&self) -> ConflictAction {
        self.action
    }

    fn check(&self) -> QueryResult<()> {
        self.check_target()
    }

    fn duplicate_keys(&self) -> Option<crate::bulk::DuplicateKeys> {
        self.duplicate_keys
    }

    fn table_sql(&self) -> String {
        self.written_table()
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
    /// plain target columns and the primary key, restricted by `update_only`, minus the
    /// columns `update_values` assigns.
    pub(crate) fn default_set_columns(&self, supplied: &[&'static str]) -> Vec<&'static str> {
        supplied
            .iter()
            .copied()
            .filter(|c| !self.target.plain_columns().any(|t| t == *c))
            .filter(|c| !self.primary_key.iter().any(|pk| pk == c))
            .filter(|c| {
                self.update_only
                    .as_ref()
                    .is_none_or(|only| only.contains(c))
            })
            .filter(|c| !self.update_values.columns().iter().any(|v| v == c))
            .collect()
    }

    /// Rejects what cannot be written as a conflict target, before anything is written.
    fn check_target(&self) -> QueryResult<()> {
        if let Some(Err(e)) = &self.predicate {
            return Err(e.clone().into());
        }
        if self.predicate.is_some() && self.target.constraint().is_some() {
            return Err(BuildError::invalid_target(
                "an index predicate cannot be combined with a named constraint: \
                 PostgreSQL only infers partial indexes from column or expression targets",
            )
            .into());
        }
        Ok(self.target.check()?)
    }

    /// `INSERT INTO "t" ("a", "b")`, without a column list when there are no columns.
    fn walk_insert_into<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>
    where
        Op: QueryFragment<Pg>,
    {
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

    /// ` ON CONFLICT <target> [WHERE <predicate>] DO …`.
    fn walk_on_conflict<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        out.push_sql(" ON CONFLICT ");
        self.target.walk(out)?;
        if let Some(Ok(predicate)) = &self.predicate {
            out.push_sql(" WHERE ");
            out.push_sql(predicate);
        }
        self.walk_action(columns, out)
    }

    /// ` ON <input key> = <key on the table> AND …`: joins the input rows to the table, or to
    /// the upserted rows named like the table.
    fn walk_key_join<'b>(
        &'b self,
        key: &[KeyPart],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        out.push_sql(" ON ");
        self.walk_key_match(key, out)
    }

    /// `<input key> = <key on the table> AND …`.
    fn walk_key_match<'b>(
        &'b self,
        key: &[KeyPart],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        for (i, part) in key.iter().enumerate() {
            if i > 0 {
                out.push_sql(" AND ");
            }
            part.walk_on(out, |out| out.push_identifier(INPUT).map(|_| true))?;
            out.push_sql(" = ");
            part.walk_on(out, |out| self.from.walk_ast(out.reborrow()).map(|_| true))?;
        }
        Ok(())
    }

    /// Whether the table is written as a single identifier, so that a CTE can be named like it.
    fn table_is_unqualified(&self) -> bool {
        super::literal::leading_identifier(&self.written_table())
            .is_some_and(|(_, rest)| rest.is_empty())
    }

    /// The table as written in the statement, such as `"products"`.
    fn written_table(&self) -> String {
        super::literal::render(&self.from)
            .map(|(sql, _)| sql)
            .unwrap_or_default()
    }

    /// The index predicate as SQL text with literal values, if there is one that could be
    /// written.
    fn predicate_sql(&self) -> Option<&str> {
        self.predicate.as_ref().and_then(|p| p.as_deref().ok())
    }

    /// `ROW("t"."a", "t"."b", …)`: the stored values of `columns`.
    fn walk_table_row<'b>(
        &'b self,
        columns: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        out.push_sql("ROW(");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            self.from.walk_ast(out.reborrow())?;
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        out.push_sql(")");
        Ok(())
    }

    /// Whether `DO UPDATE` skips rows whose `set` columns already hold the new values.
    fn compares(&self, set: &[&'static str]) -> bool {
        self.skip_unchanged && self.action == ConflictAction::Update && !set.is_empty()
    }

    /// For rows sent as arrays with `skip_unchanged`: writes the statement that returns rows
    /// already holding the new values as they are (`inserted` NULL), without locking or
    /// writing them, and upserts the others.
    ///
    /// ```sql
    /// WITH "__upsert_input" AS (SELECT unnest($1) AS "a", …),
    /// "__upsert_same" AS (SELECT "t".* FROM "__upsert_input" JOIN "t" ON <key>
    ///     WHERE ROW("t"."b", …) IS NOT DISTINCT FROM ROW("__upsert_input"."b", …)),
    /// "__upserted" AS (INSERT INTO "t" ("a", …) SELECT "a", … FROM "__upsert_input"
    ///     WHERE NOT EXISTS (SELECT 1 FROM "__upsert_same" AS "t" WHERE <key>)
    ///     ON CONFLICT … RETURNING "t".*, (xmax = 0) AS "__upsert_inserted")
    /// SELECT <selection>, "t"."__upsert_inserted", <key> FROM "__upserted" AS "t"
    /// UNION ALL SELECT <selection>, NULL, <key> FROM "__upsert_same" AS "t"
    /// ```
    fn walk_unchanged_first<'b>(
        &'b self,
        arrays: &'b ColumnArrays<'b, T, U::Row>,
        columns: &[&'static str],
        set: &[&'static str],
        key: &[KeyPart],
        selection: &'b dyn QueryFragment<Pg>,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>
    where
        U: Records<T>,
        Op: QueryFragment<Pg>,
    {
        out.push_sql("WITH ");
        out.push_identifier(INPUT)?;
        out.push_sql(" AS (SELECT ");
        arrays.walk_unnest(Some(columns), out)?;
        out.push_sql("), ");
        out.push_identifier(SAME)?;
        out.push_sql(" AS (SELECT ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(".* FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" JOIN ");
        self.from.walk_ast(out.reborrow())?;
        self.walk_key_join(key, out)?;
        walk_and_predicate(self.predicate_sql(), out);
        out.push_sql(" WHERE ");
        self.walk_table_row(set, out)?;
        out.push_sql(" IS NOT DISTINCT FROM ROW(");
        for (i, column) in set.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(INPUT)?;
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        out.push_sql(")), ");
        out.push_identifier(UPSERTED)?;
        out.push_sql(" AS (");
        self.walk_insert_into(columns, out)?;
        out.push_sql(" SELECT ");
        push_identifiers(out, None, columns)?;
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" WHERE NOT EXISTS (SELECT 1 FROM ");
        out.push_identifier(SAME)?;
        out.push_sql(" AS ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.walk_key_match(key, out)?;
        out.push_sql(")");
        self.walk_on_conflict(columns, out)?;
        out.push_sql(" RETURNING ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(".*, (xmax = 0) AS ");
        out.push_identifier(INSERTED)?;
        out.push_sql(")");
        for (i, (source, flag)) in [(UPSERTED, Some(INSERTED)), (SAME, None)]
            .iter()
            .enumerate()
        {
            out.push_sql(if i == 0 {
                " SELECT "
            } else {
                " UNION ALL SELECT "
            });
            selection.walk_ast(out.reborrow())?;
            out.push_sql(", ");
            match flag {
                Some(flag) => {
                    self.from.walk_ast(out.reborrow())?;
                    out.push_sql(".");
                    out.push_identifier(flag)?;
                }
                None => out.push_sql("NULL"),
            }
            self.walk_returned_key(key, out)?;
            out.push_sql(" FROM ");
            out.push_identifier(source)?;
            out.push_sql(" AS ");
            self.from.walk_ast(out.reborrow())?;
        }
        Ok(())
    }

    /// `, <key part>, …`, padded with NULLs to [`RETURNED_KEY_PARTS`].
    fn walk_returned_key<'b>(
        &'b self,
        key: &[KeyPart],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        for i in 0..RETURNED_KEY_PARTS {
            out.push_sql(", ");
            match key.get(i) {
                Some(part) => {
                    part.walk_on(out, |out| self.from.walk_ast(out.reborrow()).map(|_| true))?
                }
                None => out.push_sql("NULL"),
            }
        }
        Ok(())
    }

    fn walk_action<'b>(
        &'b self,
        supplied: &[&'static str],
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        if self.action == ConflictAction::Nothing {
            out.push_sql(" DO NOTHING");
            return Ok(());
        }
        let set = self.default_set_columns(supplied);
        if set.is_empty() && self.update_values.columns().is_empty() {
            out.push_sql(" DO NOTHING");
            return Ok(());
        }
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

        let compare = self.compares(&set);
        if self.condition.is_present() || compare {
            out.push_sql(" WHERE ");
        }
        self.condition.walk_condition(out)?;
        if compare {
            if self.condition.is_present() {
                out.push_sql(" AND ");
            }
            self.walk_table_row(&set, out)?;
            out.push_sql(" IS DISTINCT FROM ROW(");
            push_identifiers(out, Some("excluded"), &set)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

/// How many key parts the bulk statement for bound keys returns (the columns are padded with
/// NULLs, as the loaded row type is fixed).
pub(crate) const RETURNED_KEY_PARTS: usize = 8;

/// The SQL types of the returned key parts: their raw binary values.
#[doc(hidden)]
pub type ReturnedKeyTypes = (
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
    Nullable<Binary>,
);

/// The returned key parts, as loaded.
#[doc(hidden)]
pub type ReturnedKeys = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// The name of the input rows of a bulk statement.
const INPUT: &str = "__upsert_input";
/// The name of the existing rows that already hold the new values (`skip_unchanged`).
const SAME: &str = "__upsert_same";
/// The name of the rows a bulk statement wrote.
const UPSERTED: &str = "__upserted";
/// The column holding each input row's position in the caller's input.
const ORDINAL: &str = "__upsert_ord";
/// The column telling an inserted row from an updated one.
const INSERTED: &str = "__upsert_inserted";

/// The columns every row supplies; an error naming the first row that differs from row 0.
pub(crate) fn consistent_columns<'r, T: 'r, R: RowValues<T> + 'r>(
    mut rows: impl Iterator<Item = &'r R>,
) -> Result<Vec<&'static str>, BuildError> {
    let mut columns = Vec::new();
    if let Some(first) = rows.next() {
        first.supplied_columns(&mut columns);
    }
    let mut found = Vec::with_capacity(columns.len());
    for (index, row) in rows.enumerate() {
        found.clear();
        row.supplied_columns(&mut found);
        if found != columns {
            return Err(BuildError::InconsistentColumns {
                row: index + 1,
                expected: columns.iter().map(|c| c.to_string()).collect(),
                found: found.iter().map(|c| c.to_string()).collect(),
            });
        }
    }
    Ok(columns)
}

/// ` AND (<predicate>)` when there is an index predicate: rows outside a partial index never
/// conflict on it.
fn walk_and_predicate(predicate: Option<&str>, out: &mut AstPass<'_, '_, Pg>) {
    if let Some(predicate) = predicate {
        out.push_sql(" AND (");
        out.push_sql(predicate);
        out.push_sql(")");
    }
}

/// The distinct columns of a conflict key, in key order.
pub(crate) fn key_columns(key: &[KeyPart]) -> Vec<&'static str> {
    let mut columns: Vec<&'static str> = Vec::new();
    for part in key {
        if !columns.contains(&part.column()) {
            columns.push(part.column());
        }
    }
    columns
}

/// Several rows cannot all be written as `DEFAULT VALUES`.
fn no_columns() -> BuildError {
    BuildError::invalid_target("a bulk insert needs at least one column that every row supplies")
}

/// `WITH "__upsert_input" ("a", "b", "__upsert_ord") AS (VALUES (…, 0), (…, 1))`, each row's
/// values written by `walk_row`.
fn walk_input_cte<'b, T, R: RowValues<T> + 'b>(
    columns: &[&'static str],
    rows: &[(usize, &'b R)],
    out: &mut AstPass<'_, 'b, Pg>,
    walk_row: impl Fn(&'b R, &mut AstPass<'_, 'b, Pg>, &mut bool) -> QueryResult<()>,
) -> QueryResult<()> {
    out.push_sql("WITH ");
    out.push_identifier(INPUT)?;
    out.push_sql(" (");
    push_identifiers(out, None, columns)?;
    out.push_sql(", ");
    out.push_identifier(ORDINAL)?;
    out.push_sql(") AS (VALUES ");
    for (i, (ordinal, row)) in rows.iter().enumerate() {
        if i > 0 {
            out.push_sql(", ");
        }
        out.push_sql("(");
        walk_row(row, out, &mut true)?;
        out.push_sql(", ");
        out.push_sql(&ordinal.to_string());
        out.push_sql(")");
    }
    out.push_sql(")");
    Ok(())
}

fn push_identifiers(
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
        self.walk_upsert(&rows, None, out)
    }
}

impl<T: Table, U, Op, V, W> QueryId for OnConflictDo<T, U, Op, V, W> {
    type QueryId = ();
    // The SQL text holds run-time parts (target literals, supplied columns), so Diesel caches
    // the prepared statement by its SQL text rather than by type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Table, U, Op, V, W, Conn> RunQueryDsl<Conn> for OnConflictDo<T, U, Op, V, W> {}

/// `(xmax = 0)`: true for a row this statement inserted, false for one it updated.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, QueryId)]
pub struct InsertedFlag;

impl Expression for InsertedFlag {
    type SqlType = Bool;
}

impl ValidGrouping<()> for InsertedFlag {
    type IsAggregate = is_aggregate::Never;
}

impl QueryFragment<Pg> for InsertedFlag {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(xmax = 0)");
        Ok(())
    }
}

/// The upsert of some rows with a `RETURNING` clause.
#[doc(hidden)]
pub struct UpsertReturning<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: Vec<&'q S::Row>,
    pub(crate) returning: R,
}

impl<S: UpsertStatement, R> fmt::Debug for UpsertReturning<'_, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpsertReturning")
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for UpsertReturning<'_, S, R> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement
            .walk_upsert(&self.rows, Some(&self.returning), out)
    }
}

impl<S: UpsertStatement, R> QueryId for UpsertReturning<'_, S, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S: UpsertStatement, R: Expression> Query for UpsertReturning<'_, S, R> {
    type SqlType = R::SqlType;
}

impl<S: UpsertStatement, R, Conn> RunQueryDsl<Conn> for UpsertReturning<'_, S, R> {}

/// `SELECT <selection> FROM <table> WHERE <conflict key> = <key of the row> [AND <predicate>]`:
/// reads the row a conflict left in place.
#[doc(hidden)]
pub struct FetchExisting<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) row: &'q S::Row,
    pub(crate) key: Vec<KeyPart>,
    pub(crate) selection: R,
}

impl<S: UpsertStatement, R> fmt::Debug for FetchExisting<'_, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchExisting")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for FetchExisting<'_, S, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        self.selection.walk_ast(out.reborrow())?;
        self.statement.walk_from(&mut out)?;
        out.push_sql(" WHERE ");
        for (i, part) in self.key.iter().enumerate() {
            if i > 0 {
                out.push_sql(" AND ");
            }
            part.walk_on(&mut out, super::target::unqualified)?;
            out.push_sql(" = ");
            walk_key_value(part, self.row, &mut out)?;
        }
        walk_and_predicate(self.statement.predicate(), &mut out);
        Ok(())
    }
}

/// Writes the value a row gives to one key element: `$1`, or `($1 -> 'en')` for an hstore key.
/// A column the row leaves to its default is written as `NULL`, which matches nothing.
pub(crate) fn walk_key_value<'b, T, R: RowValues<T>>(
    part: &KeyPart,
    row: &'b R,
    out: &mut AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    match part {
        KeyPart::Column(column) => {
            if !row.walk_value_of(column, out)? {
                out.push_sql("NULL");
            }
        }
        KeyPart::HstoreKey { column, key } => {
            out.push_sql("(");
            if !row.walk_value_of(column, out)? {
                out.push_sql("NULL");
            }
            out.push_sql(" -> ");
            out.push_sql(&super::literal::quote_literal(key)?);
            out.push_sql(")");
        }
    }
    Ok(())
}

impl<S: UpsertStatement, R> QueryId for FetchExisting<'_, S, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S: UpsertStatement, R: Expression> Query for FetchExisting<'_, S, R> {
    type SqlType = R::SqlType;
}

impl<S: UpsertStatement, R, Conn> RunQueryDsl<Conn> for FetchExisting<'_, S, R> {}

/// A bulk upsert of some rows, loading `(input position, selection, inserted)` per written row.
#[doc(hidden)]
pub struct BulkUpsert<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: Vec<(usize, &'q S::Row)>,
    pub(crate) key: &'q [KeyPart],
    pub(crate) selection: R,
}

/// A bulk upsert of rows whose keys are bound values, loading `(selection, inserted, key parts)`
/// per written row.
#[doc(hidden)]
pub struct BulkUpsertReturningKeys<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) key: &'q [KeyPart],
    pub(crate) selection: R,
}

/// The existing rows with the keys of some input rows, loading `(input position, selection)`.
#[doc(hidden)]
pub struct BulkFetchExisting<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) key: &'q [KeyPart],
    pub(crate) selection: R,
}

/// The input rows of a bulk statement.
#[doc(hidden)]
pub enum BulkRows<'q, T, R> {
    /// Written as a `VALUES` list: `(input position, row)`.
    Values(Vec<(usize, &'q R)>),
    /// Sent as one array parameter per column.
    Arrays(ColumnArrays<'q, T, R>),
}

impl<T, R> fmt::Debug for BulkRows<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkRows::Values(rows) => write!(f, "Values({} rows)", rows.len()),
            BulkRows::Arrays(arrays) => arrays.fmt(f),
        }
    }
}

impl<T, R> BulkRows<'_, T, R> {
    pub(crate) fn len(&self) -> usize {
        match self {
            BulkRows::Values(rows) => rows.len(),
            BulkRows::Arrays(arrays) => arrays.len(),
        }
    }
}

/// Walks a query as its own `walk_ast` does: lets a `collect_binds` override run the default
/// bind collection before adjusting the binds.
struct Walk<'a, Q>(&'a Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Walk<'_, Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

macro_rules! bulk_query {
    ($name:ident, $walk:ident, ($($sql_type:tt)*), arrays) => {
        bulk_query!(@common $name, ($($sql_type)*));

        impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for $name<'_, S, R> {
            fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                self.statement.$walk(&self.rows, self.key, &self.selection, out)
            }

            // Rows sent as arrays are pushed as `bytea` (the first binds of the statement) and
            // given their array types here, from the connection's type lookup.
            fn collect_binds<'b>(
                &'b self,
                out: &mut <Pg as Backend>::BindCollector<'b>,
                lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
                backend: &'b Pg,
            ) -> QueryResult<()> {
                let first = out.binds.len();
                Walk(self).collect_binds(out, lookup, backend)?;
                if let BulkRows::Arrays(arrays) = &self.rows {
                    arrays.retype(out, first, lookup)?;
                }
                Ok(())
            }
        }
    };
    ($name:ident, $walk:ident, ($($sql_type:tt)*)) => {
        bulk_query!(@common $name, ($($sql_type)*));

        impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for $name<'_, S, R> {
            fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                self.statement.$walk(&self.rows, self.key, &self.selection, out)
            }
        }
    };
    (@common $name:ident, ($($sql_type:tt)*)) => {
        impl<S: UpsertStatement, R> fmt::Debug for $name<'_, S, R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("rows", &self.rows.len())
                    .field("key", &self.key)
                    .finish_non_exhaustive()
            }
        }

        impl<S: UpsertStatement, R> QueryId for $name<'_, S, R> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<S: UpsertStatement, R: Expression> Query for $name<'_, S, R> {
            type SqlType = ($($sql_type)*);
        }

        impl<S: UpsertStatement, R, Conn> RunQueryDsl<Conn> for $name<'_, S, R> {}
    };
}

bulk_query!(BulkUpsert, walk_bulk_upsert, (Integer, R::SqlType, Bool));
bulk_query!(
    BulkUpsertReturningKeys,
    walk_bulk_upsert_returning_keys,
    (R::SqlType, Nullable<Bool>, ReturnedKeyTypes),
    arrays
);
bulk_query!(
    BulkFetchExisting,
    walk_fetch_existing,
    (Integer, R::SqlType),
    arrays
);
