mod bulk;
mod concurrency;
mod harness;
mod hstore;
mod keys;
mod single;
mod smoke;
