//! The leaf types every other part of the crate names: what to do on a conflict, what happened
//! to a row, and what a bulk call does with rows sharing a key.

/// What to do when the row conflicts with an existing one on the conflict target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictAction {
    /// `DO UPDATE SET …`: overwrite the existing row with the columns the insert supplied (minus
    /// the conflict-target and primary-key columns), refined by `update_only`, `update_values`,
    /// `update_condition` and `skip_unchanged`.
    Update,
    /// `DO NOTHING`: keep the existing row as it is. The `*_and_get` terminals still return it.
    Nothing,
}

/// What an upsert did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// No row had the conflict key: the row was inserted.
    Inserted,
    /// A row had the conflict key and was updated.
    Updated,
    /// A row had the conflict key and was left as it was: `ConflictAction::Nothing`, a false
    /// `update_condition`, `skip_unchanged` on identical values, or nothing to update.
    Unchanged,
}

impl Outcome {
    /// `Inserted` for a row the statement inserted, `Updated` for one it updated.
    pub(crate) fn written(inserted: bool) -> Self {
        if inserted {
            Outcome::Inserted
        } else {
            Outcome::Updated
        }
    }
}

/// What a bulk call does with input rows that share a conflict key — as PostgreSQL's unique
/// index sees it (citext `'a'` and `'A'`, numeric `1.0` and `1.00`, float `0.0` and `-0.0` are
/// one key).
///
/// Without a policy, `ConflictAction::Update` rejects such input with
/// [`Error::DuplicateConflictKey`](crate::Error::DuplicateConflictKey) (PostgreSQL itself would
/// fail with "ON CONFLICT DO UPDATE command cannot affect row a second time"), and
/// `ConflictAction::Nothing` keeps the first row, as PostgreSQL would. Every input row still
/// gets a result: the row its key ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DuplicateKeys {
    /// Send the first row of each key; later rows with the key get its result.
    KeepFirst,
    /// Send the last row of each key; earlier rows with the key get its result.
    KeepLast,
}

/// What a [`bulk_execute`](crate::RunUpsertDsl::bulk_execute) call did, counted per input row:
/// `inserted + updated + unchanged` is the number of input rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BulkSummary {
    /// Rows inserted.
    pub inserted: usize,
    /// Existing rows updated.
    pub updated: usize,
    /// Input rows that changed nothing: a conflict left the row in place (`Nothing`, a false
    /// `update_condition`, `skip_unchanged` on identical values), or the row shared its key
    /// with another input row that was sent instead.
    pub unchanged: usize,
}

/// What `bulk_update` did to one input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateOutcome {
    /// The stored row with the input row's key was updated.
    Updated,
    /// The stored row already held the new values and was not written (`skip_unchanged`).
    Unchanged,
    /// No stored row has the input row's key (or the key has a NULL): nothing was written,
    /// nothing inserted.
    Missing,
}

/// What one bulk statement may carry, as the caller set it on the builder
/// (`max_rows_per_statement`, `max_bytes_per_statement`, `rows_as_values`). The default is the
/// crate's own sizes: arrays of at most 20 000 rows and about 16 MiB of values, `VALUES` lists
/// under PostgreSQL's bind limit. A row is never split: a row larger than `bytes` goes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The most rows in one statement (at least 1).
    pub(crate) rows: usize,
    /// The most bytes of serialized values in one statement.
    pub(crate) bytes: usize,
    /// Rows go as a `VALUES` list even when they could go as arrays.
    pub(crate) values: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rows: usize::MAX,
            bytes: usize::MAX,
            values: false,
        }
    }
}
