//! The parts of the builder that `update_values` and `update_condition` replace: each is a type
//! parameter of [`OnConflictDo`](super::statement::OnConflictDo), so a changeset or condition
//! keeps its own type (and its binds) without boxing.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::result::QueryResult;

/// No `update_values` given.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdateValues;

/// The changeset given to `update_values`, with the columns it assigns.
#[derive(Debug, Clone)]
pub struct UpdateValues<CS> {
    pub(crate) changeset: CS,
    pub(crate) columns: Vec<String>,
}

/// No `update_condition` given.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdateCondition;

/// The expression given to `update_condition`.
#[derive(Debug, Clone)]
pub struct UpdateCondition<E>(pub(crate) E);

/// The `update_values` part of the builder.
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
