mod harness;
mod hstore;
mod single;
mod smoke;
