mod bulk;
mod harness;
mod single;
mod smoke;
