//! The crate-private SQL nodes: the statement the builder writes (`statement`), the statements
//! the terminals run (`nodes`), rows as column arrays (`arrays`), and the one place where text
//! becomes SQL (`literal`).

pub(crate) mod arrays;
pub(crate) mod literal;
pub(crate) mod nodes;
pub(crate) mod statement;
