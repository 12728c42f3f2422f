#[cfg(feature = "async")]
mod asynchronous;
mod bulk;
mod concurrency;
mod docs_sql;
mod drivers;
mod expressions;
mod harness;
mod hstore;
mod keys;
mod language;
mod single;
mod smoke;
mod statements;
mod ui;
