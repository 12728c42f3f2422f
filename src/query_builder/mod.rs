//! The crate-private SQL nodes: the statement the builder writes (`statement`), the statements
//! the terminals run (`nodes` for bulk calls, `count` for bulk calls without rows back, `single` for one row, `keys` for the cast keys
//! they compare), rows as column arrays (`arrays`), and the one place where text
//! becomes SQL (`literal`).

pub(crate) mod arrays;
pub(crate) mod count;
pub(crate) mod keys;
pub(crate) mod nodes;
pub(crate) mod single;
pub(crate) mod statement;
pub(crate) mod update;
