mod harness;
mod single;
mod smoke;
