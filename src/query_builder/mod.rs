//! The SQL nodes behind [`UpsertDsl`](crate::UpsertDsl): conflict targets, the statement and
//! the queries its terminals run. Users meet these types only in signatures.

#[doc(hidden)]
pub mod arrays;
pub(crate) mod literal;
pub(crate) mod nodes;
pub mod statement;
pub mod target;
pub mod values;

pub use self::statement::OnConflictDo;
pub use self::target::{ColumnSet, IntoConflictTarget, OnConstraint, TargetElement};
pub use self::values::{BatchRows, Records, RowValues, SingleRow};
