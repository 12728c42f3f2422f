//! Finding the input row a failed bulk statement was refused for: the shortest prefix of the
//! statement's rows (in the order they were sent) that PostgreSQL refuses, found by bisection.
//! The driver sends each probe under a savepoint it rolls back, in the state the failed
//! statement met (the call's earlier statements applied), so nothing is written.

use super::rows::next_rows;
use crate::error::Result;
use crate::query_builder::arrays::ArraySource;
use crate::query_builder::nodes::BulkRows;
use crate::rows::RowValues;
use crate::spec::Limits;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Whether a failed statement's error names a constraint one of its rows broke: NOT NULL,
/// CHECK, foreign key, a unique or exclusion constraint (SQLSTATE class 23). Errors of other
/// kinds (data exceptions such as a value too long, timeouts, lost connections) are returned
/// as they are: a probe could pass or fail for reasons that are not the row's.
pub(crate) fn names_a_row(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(
            DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ExclusionViolation
                | DatabaseErrorKind::RestrictViolation,
            _
        )
    )
}

/// The bisection over the rows of one failed statement.
#[derive(Debug)]
pub(crate) struct Narrowing<'q, T, R> {
    rows: Vec<(usize, &'q R)>,
    source: ArraySource<'q>,
    fixed: usize,
    /// The rows went as a `VALUES` list by choice ([`Limits::values`]); the caps on a
    /// statement's size hold for every part of a statement that kept to them.
    values: bool,
    /// The longest prefix known to pass (0: none sent), and the shortest known to fail.
    passes: usize,
    fails: usize,
    /// Whether a probe failed (the whole statement's failure is the only one seen otherwise).
    confirmed: bool,
    _table: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T, R: RowValues<T>> Narrowing<'q, T, R> {
    pub(crate) fn new(
        rows: Vec<(usize, &'q R)>,
        source: ArraySource<'q>,
        fixed: usize,
        values: bool,
    ) -> Self {
        let fails = rows.len();
        Narrowing {
            rows,
            source,
            fixed,
            values,
            passes: 0,
            fails,
            confirmed: false,
            _table: std::marker::PhantomData,
        }
    }

    /// The rows of the next probe, `None` when the row is found. When no probe has failed, the
    /// last probe is the whole statement again: a failure that does not come back (a
    /// concurrent transaction's row, since rolled back) names no row.
    pub(crate) fn probe(&self) -> Result<Option<BulkRows<'q, T, R>>> {
        let len = self.next_len();
        if len == 0 {
            return Ok(None);
        }
        let limits = Limits {
            values: self.values,
            ..Limits::default()
        };
        next_rows(&self.rows[..len], self.source, len, self.fixed, limits).map(Some)
    }

    fn next_len(&self) -> usize {
        if self.fails - self.passes > 1 {
            self.passes + (self.fails - self.passes) / 2
        } else if !self.confirmed {
            self.fails
        } else {
            0
        }
    }

    /// What the probe [`probe`](Self::probe) returned did.
    pub(crate) fn probed(&mut self, failed: bool) {
        let len = self.next_len();
        if failed {
            self.fails = len;
            self.confirmed = true;
        } else if len == self.fails {
            // The whole statement passes now: no row can be named.
            (self.passes, self.fails) = (0, 0);
            self.confirmed = true;
        } else {
            self.passes = len;
        }
    }

    /// The input position and row of the first row whose prefix fails, or `None` when the
    /// failure did not come back.
    pub(crate) fn refused(&self) -> Option<(usize, &'q R)> {
        let (position, row) = *self.rows.get(self.fails.checked_sub(1)?)?;
        Some((position, row))
    }
}
