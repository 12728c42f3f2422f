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

/// Whether a Diesel error is a serialization failure or a deadlock, whatever the server's
/// message language.
///
/// Diesel reports 40001 as `SerializationFailure`. A deadlock (40P01) has no kind of its own and
/// Diesel does not expose the SQLSTATE, so it is recognized by the shape of PostgreSQL's detail,
/// which no other error has and which keeps its untranslated parts in every language: one line
/// per process of the cycle, each naming a lock mode (`ShareLock`, `ExclusiveLock`, …, never
/// translated) and the process ids, each waiting process also blocking another.
pub fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
                || info.details().is_some_and(is_deadlock_detail)
        }
        _ => false,
    }
}

/// PostgreSQL's lock mode names (`GetLockmodeName`), which its messages never translate.
const LOCK_MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// Whether `detail` is the detail of a deadlock report: at least two lines ("Process 1 waits for
/// ShareLock on transaction 7; blocked by process 2."), each with a lock mode and at least two
/// numbers, whose first numbers (the waiting processes) are the same set as their last numbers
/// (the blocking ones): a cycle.
fn is_deadlock_detail(detail: &str) -> bool {
    let lines: Vec<&str> = detail.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < 2 {
        return false;
    }
    let mut waiting = Vec::new();
    let mut blocking = Vec::new();
    for line in &lines {
        if !LOCK_MODES.iter().any(|mode| line.contains(mode)) {
            return false;
        }
        let numbers: Vec<&str> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .collect();
        let (Some(first), Some(last)) = (numbers.first(), numbers.last()) else {
            return false;
        };
        if numbers.len() < 2 {
            return false;
        }
        waiting.push(*first);
        blocking.push(*last);
    }
    waiting.sort_unstable();
    blocking.sort_unstable();
    waiting == blocking
}

/// Runs `attempt` until it succeeds, fails for a non-transient reason, or `policy` runs out of
/// attempts; waits with exponential backoff and jitter in between. `attempt` must run a whole
/// transaction (a retried statement inside an aborted transaction would fail again).
pub fn retry<T, E>(policy: RetryPolicy, mut attempt: impl FnMut() -> Result<T, E>) -> Result<T>
where
    E: Into<Error>,
{
    let mut attempts = Attempts::new(policy);
    loop {
        match attempt().map_err(Into::into) {
            Err(error) => match attempts.wait_after(&error) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(error),
            },
            done => return done,
        }
    }
}

/// The attempts of one retry loop (of [`retry`] or its async twin): after each failed attempt,
/// whether to run it again and how long to wait first.
#[derive(Debug)]
pub(crate) struct Attempts {
    policy: RetryPolicy,
    tries: u32,
    backoff: Duration,
}

impl Attempts {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Attempts {
            policy,
            tries: 1,
            backoff: policy.initial_backoff,
        }
    }

    /// The wait before the next attempt after an attempt failed with `error`; `None`: stop
    /// (the error is not transient, or no attempt is left).
    pub(crate) fn wait_after(&mut self, error: &Error) -> Option<Duration> {
        if !error.is_transient() || self.tries >= self.policy.max_attempts.max(1) {
            return None;
        }
        self.tries += 1;
        let wait = jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
        Some(wait)
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

#[cfg(test)]
mod deadlock_tests {
    use super::is_deadlock_detail;

    #[test]
    fn a_deadlock_detail_is_recognized_in_english_german_and_french() {
        let english = "Process 101 waits for ShareLock on transaction 7; blocked by process 202.\nProcess 202 waits for ShareLock on transaction 8; blocked by process 101.";
        let german = "Prozess 101 wartet auf ShareLock-Sperre auf Transaktion 7; blockiert von Prozess 202.\nProzess 202 wartet auf ShareLock-Sperre auf Transaktion 8; blockiert von Prozess 101.";
        let french = "Le processus 101 attend ShareLock sur transaction 7 ; bloqué par le processus 202.\nLe processus 202 attend ShareLock sur transaction 8 ; bloqué par le processus 101.";
        for detail in [english, german, french] {
            assert!(is_deadlock_detail(detail), "{detail}");
        }
    }

    #[test]
    fn other_details_are_not_deadlocks() {
        for detail in [
            "Key (sku)=(A-1) already exists.",
            "Process 101 waits for ShareLock on transaction 7; blocked by process 202.",
            "Process 101 waits for ShareLock on transaction 7; blocked by process 202.\nProcess 303 waits for ShareLock on transaction 8; blocked by process 404.",
            "Failing row contains (1, 2).\nAnother line 3 4.",
        ] {
            assert!(!is_deadlock_detail(detail), "{detail}");
        }
    }
}
