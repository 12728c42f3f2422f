mod bulk;
mod concurrency;
mod harness;
mod hstore;
mod single;
mod smoke;
