mod bulk;
mod concurrency;
mod docs_sql;
mod harness;
mod hstore;
mod keys;
mod single;
mod smoke;
