//! The drivers: what runs the statements of a call on a connection. Everything here takes a
//! `diesel::Connection`; what a call sends and what the rows mean is decided in `plan`, the SQL
//! is written in `query_builder`, and neither knows a connection.

pub(crate) mod catalog;
pub(crate) mod returning;
pub(crate) mod sync;
