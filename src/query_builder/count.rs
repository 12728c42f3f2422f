//! The statement of a bulk call without rows back: an upsert that returns two counts.

use super::keys::{walk_inserted_column, INSERTED, UPSERTED};
use super::nodes::{walk_upserted_from, walk_upserted_values, BulkRows};
use super::statement::UpsertStatement;
use crate::schema::{Catalog, InsertedFlag};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment};
use diesel::result::QueryResult;
use diesel::sql_types::BigInt;

/// An upsert of some rows that returns only how many it inserted and updated: `(inserted,
/// updated)`. Rows a conflict left in place are neither.
///
/// ```sql
/// WITH "__upserted" AS (INSERT INTO "t" ("a", …) SELECT "a", … FROM unnest($1, …)
///     AS "__upsert_row"("a", …, "__upsert_ord") ON CONFLICT … RETURNING (xmax = 0) AS "__upsert_inserted")
/// SELECT count(*) FILTER (WHERE "__upsert_inserted"), count(*) FILTER (WHERE NOT "__upsert_inserted")
/// FROM "__upserted"
/// ```
pub(crate) struct BulkCount<'q, S: UpsertStatement> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) catalog: &'q Catalog,
    pub(crate) flag: InsertedFlag,
    pub(crate) do_nothing: bool,
}

impl<S: UpsertStatement> QueryFragment<Pg> for BulkCount<'_, S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let statement = self.statement;
        let columns = statement.columns_of(&self.rows)?;
        out.push_sql("WITH ");
        if !walk_upserted_values(statement, &self.rows, &columns, &mut out)? {
            walk_upserted_from(statement, &columns, &mut out)?;
            self.rows.walk_source(&columns, self.catalog, &mut out)?;
        }
        statement.walk_on_conflict(&columns, self.do_nothing, &mut out)?;
        out.push_sql(" RETURNING ");
        walk_inserted_column(self.flag, statement, &mut out)?;
        out.push_sql(") SELECT count(*) FILTER (WHERE ");
        out.push_identifier(INSERTED)?;
        out.push_sql("), count(*) FILTER (WHERE NOT ");
        out.push_identifier(INSERTED)?;
        out.push_sql(") FROM ");
        out.push_identifier(UPSERTED)
    }

    super::nodes::collect_retyped_binds!();
}

impl<S: UpsertStatement> Query for BulkCount<'_, S> {
    type SqlType = (BigInt, BigInt);
}

super::nodes::query_node_impls!(BulkCount<S> where S: UpsertStatement);
