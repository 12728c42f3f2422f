//! An r2d2 connection pool for PostgreSQL with defaults suited to upsert workloads.
//!
//! The terminals accept any `Connection<Backend = Pg>`, so a pooled connection works directly:
//! `.insert_and_get(&mut pool.get()?)`; a failed checkout converts into
//! [`Error::Pool`](crate::Error::Pool) with `?`.
//!
//! ```rust
//! # include!("doctest_setup.rs");
//! use diesel_upsert::pool::PoolBuilder;
//! use diesel_upsert::prelude::*;
//!
//! # fn main() { run().unwrap() }
//! # fn run() -> diesel_upsert::Result<()> {
//! # let database_url = harness::database_url();
//! let pool = PoolBuilder::new().max_size(4).build(database_url)?;
//! let conn = &mut pool.get()?;
//! # conn.begin_test_transaction()?;
//! let product: Product = diesel::insert_into(products::table)
//!     .values(&NewProduct::new("POOL-1", "Kettle"))
//!     .upsert_and_get(products::sku, conn)?;
//! assert_eq!(product.name, "Kettle");
//! # Ok(())
//! # }
//! ```

use crate::error::Result;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use std::time::Duration;

/// A pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A connection checked out of a [`PgPool`]; `&mut` of it is accepted by every terminal.
pub type PgPooledConnection = PooledConnection<ConnectionManager<PgConnection>>;

/// Builds a [`PgPool`] with defaults for upsert workloads.
///
/// Defaults: 10 connections at most, a 5 second checkout timeout (fail fast instead of r2d2's
/// 30 seconds), and a health check on every checkout (`SELECT 1`), so a connection whose backend
/// was terminated is replaced instead of handed out.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    max_size: u32,
    min_idle: Option<u32>,
    connection_timeout: Duration,
    test_on_check_out: bool,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            max_size: 10,
            min_idle: None,
            connection_timeout: Duration::from_secs(5),
            test_on_check_out: true,
        }
    }
}

impl PoolBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections the pool opens (default 10).
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// The idle connections the pool keeps open (default: `max_size`).
    pub fn min_idle(mut self, min_idle: u32) -> Self {
        self.min_idle = Some(min_idle);
        self
    }

    /// How long `get()` waits for a connection before failing (default 5 seconds).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Whether each checkout first checks the connection is alive (default `true`).
    pub fn test_on_check_out(mut self, test: bool) -> Self {
        self.test_on_check_out = test;
        self
    }

    /// Builds the pool for `database_url`, opening its first connections.
    pub fn build(self, database_url: &str) -> Result<PgPool> {
        Ok(Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.connection_timeout)
            .test_on_check_out(self.test_on_check_out)
            .build(ConnectionManager::new(database_url))?)
    }
}
