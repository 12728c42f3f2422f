//! Retrying transactions that PostgreSQL aborted for a transient reason.
//!
//! A plain upsert under READ COMMITTED (PostgreSQL's default) never needs this: `INSERT … ON
//! CONFLICT` waits for a concurrent writer of the same key and then inserts, updates or skips,
//! and bulk calls lock their rows in key order, so upserts do not deadlock each other. Callers
//! who run upserts inside REPEATABLE READ or SERIALIZABLE transactions, or mix them with other
//! writes that lock rows in another order, can get a serialization failure (SQLSTATE 40001) or
//! a deadlock (40P01): the whole transaction must then be run again, which [`retry`] does.
//!
//! ```rust
//! # include!("doctest_setup.rs");
//! use diesel_upsert::prelude::*;
//! use diesel_upsert::retry::{retry, RetryPolicy};
//!
//! # fn main() { run().unwrap() }
//! # fn run() -> diesel_upsert::Result<()> {
//! # let conn = &mut harness::connection();
//! # let sku = harness::unique_key("RETRY");
//! let product: Product = retry(RetryPolicy::default(), || {
//!     conn.build_transaction().serializable().run(|conn| {
//!         diesel::insert_into(products::table)
//!             .values(&NewProduct::new(&sku, "Whisk"))
//!             .upsert_and_get(products::sku, conn)
//!     })
//! })?;
//! assert_eq!(product.sku, sku);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::time::Duration;

/// How often and how patiently [`retry`] runs a transaction again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 5).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one (default 10 ms).
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default 1 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl Error {
    /// Whether PostgreSQL aborted the transaction for a reason that running it again can cure:
    /// a serialization failure (40001) or a deadlock (40P01).
    pub fn is_transient(&self) -> bool {
        self.as_query_error().is_some_and(is_transient)
    }
}

/// Whether a Diesel error is a serialization failure or a deadlock.
///
/// Diesel reports 40001 as `SerializationFailure`; a deadlock has no kind of its own and is
/// recognized by PostgreSQL's message text.
pub fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails for a non-transient reason, or `policy` runs out of
/// attempts; waits with exponential backoff and jitter in between. `attempt` must run a whole
/// transaction (a retried statement inside an aborted transaction would fail again).
pub fn retry<T, E>(policy: RetryPolicy, mut attempt: impl FnMut() -> Result<T, E>) -> Result<T>
where
    E: Into<Error>,
{
    let mut backoff = policy.initial_backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().map_err(Into::into) {
            Err(error) if error.is_transient() && tries < policy.max_attempts.max(1) => {
                std::thread::sleep(jitter(backoff));
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            result => return result,
        }
    }
}

/// A wait between half and all of `backoff`, so competing retries spread out.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    backoff.mul_f64(fraction)
}
