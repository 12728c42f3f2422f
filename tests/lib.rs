mod bulk;
mod concurrency;
mod harness;
mod single;
mod smoke;
