//! The drivers: what runs the statements of a call on a connection. Everything here takes a
//! `diesel::Connection`; the SQL nodes and the pairing of rows live below (`query_builder`,
//! `plan`) and know no connection.

pub(crate) mod bulk;
pub(crate) mod catalog;
pub(crate) mod returning;
pub(crate) mod single;
