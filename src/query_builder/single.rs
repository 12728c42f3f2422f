//! The statements of a single-row call, and of the rows of a bulk call without a key.

use super::keys::walk_inserted_flag;
use super::keys::KeyShape;
use super::nodes::walk_and_predicate;
use super::statement::UpsertStatement;
use crate::rows::RowValues;
use crate::schema::InsertedFlag;
use diesel::expression::{is_aggregate, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Bool, Nullable};

/// `SELECT <selection> FROM <table> WHERE <stored key> = <input key> [AND <predicate>]`: reads
/// the row a conflict left in place, the input key cast to the column's type and collation.
pub struct FetchExisting<'q, S: UpsertStatement, Sel> {
    pub(crate) statement: &'q S,
    pub(crate) row: &'q S::Row,
    pub(crate) key: &'q KeyShape<'q>,
    pub(crate) selection: Sel,
    /// Lock the row: `… FOR UPDATE`.
    pub(crate) lock: bool,
}

impl<S: UpsertStatement, Sel: QueryFragment<Pg>> QueryFragment<Pg> for FetchExisting<'_, S, Sel> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let statement = self.statement;
        out.push_sql("SELECT ");
        self.selection.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ");
        statement.walk_table(&mut out)?;
        out.push_sql(" WHERE ");
        for (i, part) in self.key.parts.iter().enumerate() {
            if i > 0 {
                out.push_sql(" AND ");
            }
            part.walk_on(&mut out, |out| statement.walk_table(out).map(|_| true))?;
            out.push_sql(self.key.operator());
            self.key.walk_input_part(i, &mut out, |column, out| {
                if !self.row.walk_value_of(column, out)? {
                    out.push_sql("NULL");
                }
                Ok(())
            })?;
        }
        walk_and_predicate(statement.predicate(), &mut out);
        if self.lock {
            out.push_sql(" FOR UPDATE");
        }
        Ok(())
    }
}

impl<S: UpsertStatement, Sel: Expression> Query for FetchExisting<'_, S, Sel> {
    type SqlType = Sel::SqlType;
}

/// True for a row the statement inserted, false for one it updated; NULL where the table and
/// server offer no exact way to tell (see [`InsertedFlag`]).
#[derive(Debug, Clone)]
pub struct Inserted {
    pub(crate) flag: InsertedFlag,
    /// The first primary-key column, for `RETURNING old` (NOT NULL in every stored row).
    pub(crate) key_column: Option<String>,
}

impl Expression for Inserted {
    type SqlType = Nullable<Bool>;
}

impl ValidGrouping<()> for Inserted {
    type IsAggregate = is_aggregate::Never;
}

impl QueryFragment<Pg> for Inserted {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        walk_inserted_flag(self.flag, self.key_column.as_deref(), &mut out)
    }
}

impl QueryId for Inserted {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// The upsert of some rows with a `RETURNING` clause.
pub struct UpsertReturning<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: Vec<&'q S::Row>,
    pub(crate) returning: R,
    /// `DO NOTHING` whatever the builder's action.
    pub(crate) do_nothing: bool,
}

impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for UpsertReturning<'_, S, R> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement
            .walk_upsert(&self.rows, Some(&self.returning), self.do_nothing, out)
    }
}

impl<S: UpsertStatement, R: Expression> Query for UpsertReturning<'_, S, R> {
    type SqlType = R::SqlType;
}

super::nodes::query_node_impls!(FetchExisting<S, Sel> where S: UpsertStatement);
super::nodes::query_node_impls!(UpsertReturning<S, R> where S: UpsertStatement);
