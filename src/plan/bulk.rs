//! The plan of a bulk call, as a state machine.
//!
//! 1. **Group** (unless the keys' bytes compare exactly): all rows' keys in one statement, ranked
//!    by PostgreSQL. The driver sends it before the call's transaction, so that rejected input
//!    writes nothing.
//! 2. Per attempt, over the rows of one per key not yet resolved, in key order:
//!    - one statement per chunk: **Upsert**, then **Fetch** the rows a conflict left in place;
//!    - or, where no inserted flag can be returned (a partitioned table before PostgreSQL 18,
//!      outcomes asked for): **Upsert** with `DO NOTHING` (inserts), **Fetch** with a lock (the
//!      rows that exist), **Upsert** of the locked rows (updates).
//!
//!    Rows neither written nor found were deleted in between and go into the next attempt.
//! 3. **Insert** the rows whose key has a NULL (they never conflict), paired by order.

use super::results::{group, rank_bytes, ByteKeys, Groups, Results};
#[cfg(test)]
use super::rows::byte_keys;
use super::rows::{chunk_len, key_source, next_rows, Indexed};
use super::{not_found, Method, Narrowing, ATTEMPTS};
use crate::error::{Error, Result};
use crate::query_builder::arrays::{
    ArraySource, ColumnArrays, ARRAY_BYTES, ARRAY_ROWS, FIRST_ARRAY_ROWS,
};
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::BulkRows;
use crate::rows::RowValues;
use crate::run::returning::Written;
use crate::schema::InsertedFlag;
use crate::spec::{BulkSummary, DuplicateKeys, Limits, Outcome, UpdateOutcome};

/// The next statement of a bulk call: the driver builds the query node for it, loads its rows
/// and hands them back to the plan method named in each variant.
#[derive(Debug)]
pub(crate) enum Step<'q, T, R> {
    /// Upsert these rows (`BulkUpsert`), then [`BulkPlan::written`].
    Upsert {
        rows: BulkRows<'q, T, R>,
        flag: InsertedFlag,
        do_nothing: bool,
    },
    /// Read the stored rows of these rows' keys (`FetchKept`, locked with `lock`), then
    /// [`BulkPlan::fetched`].
    Fetch {
        rows: BulkRows<'q, T, R>,
        lock: bool,
    },
    /// Insert these rows without a key (`UpsertReturning`), then [`BulkPlan::inserted`].
    Insert {
        rows: Vec<&'q R>,
        flag: InsertedFlag,
    },
    /// Without rows back: upsert these rows and count (`BulkCount`), then
    /// [`BulkPlan::counted`].
    Count {
        rows: BulkRows<'q, T, R>,
        flag: InsertedFlag,
    },
    /// `bulk_update`: update these rows, which the call has locked (`BulkUpdate`), then
    /// [`BulkPlan::updated`].
    Update { rows: BulkRows<'q, T, R> },
}

/// The rows of the statement after the one [`BulkPlan::next`] just returned, to encode while
/// that one runs ([`BulkPlan::lookahead`]). Encoded, they go back to [`BulkPlan::ahead`].
#[derive(Debug)]
pub(crate) struct Lookahead<'q, T, R> {
    /// The queue generation and cursor the rows start at.
    at: (u64, usize),
    rows: Vec<(usize, &'q R)>,
    source: ArraySource<'q>,
    max_bytes: usize,
    _table: std::marker::PhantomData<fn() -> T>,
}

/// Rows encoded ahead of their statement (`None`: they are not plain values).
#[derive(Debug)]
pub(crate) struct Ahead<'q, T, R> {
    at: (u64, usize),
    arrays: Option<ColumnArrays<'q, T, R>>,
}

impl<'q, T, R: RowValues<T>> Lookahead<'q, T, R> {
    /// Encodes the rows as the plan would for their statement.
    pub(crate) fn encode(self) -> Ahead<'q, T, R> {
        Ahead {
            at: self.at,
            arrays: ColumnArrays::build(&self.rows, self.source, self.rows.len(), self.max_bytes),
        }
    }
}

/// Where a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the key ranks.
    Group,
    /// Upserting the attempt's rows (with `DO NOTHING` in the first of two phases).
    Upsert,
    /// Reading back the rows a conflict left in place.
    Fetch,
    /// Two phases: reading and locking the rows that exist.
    Lock,
    /// Two phases: upserting the locked rows.
    UpdateLocked,
    /// Inserting the rows without a key.
    Unkeyed,
    Done,
}

/// What a bulk plan needs to know besides its rows and key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) method: Method,
    /// What to do with rows sharing a key (`None`: they are an error).
    pub(crate) policy: Option<DuplicateKeys>,
    /// Whether the caller asked for outcomes.
    pub(crate) outcomes: bool,
    /// The number of columns every row supplies.
    pub(crate) columns: usize,
    /// The binds of an upsert statement besides its rows.
    pub(crate) fixed: usize,
    /// Whether the caller wants rows back; without, the upserts only count what they did, and
    /// rows a conflict left in place are not read.
    pub(crate) rows_back: bool,
    /// `bulk_update`: lock the rows that exist (in key order), then update them; rows without
    /// a stored row (or with a NULL key) are missing, never inserted.
    pub(crate) update: bool,
    /// What one statement may carry.
    pub(crate) limits: Limits,
}

/// A bulk call from its rows to one result per input row; see the module documentation.
#[derive(Debug)]
pub(crate) struct BulkPlan<'q, T, R, Out> {
    rows: &'q [R],
    key_columns: &'q [&'static str],
    method: Method,
    policy: Option<DuplicateKeys>,
    outcomes: bool,
    columns: usize,
    fixed: usize,
    rows_back: bool,
    update: bool,
    limits: Limits,
    /// Rows inserted and updated, without rows back.
    counts: (usize, usize),
    /// The table has `BEFORE` triggers, which may rewrite keys.
    before_triggers: bool,
    phase: Phase,
    groups: Groups,
    /// The rows of one per key not resolved yet, in key order.
    pending: Vec<(usize, &'q R)>,
    /// The rows the current phase sends, from `cursor` on.
    queue: Vec<(usize, &'q R)>,
    cursor: usize,
    /// Counts the queues entered: with `cursor`, where rows encoded ahead start.
    generation: u64,
    /// The last rows sent went as arrays (the next ones likely will).
    arrays: bool,
    /// Where in `queue` the rows of the last upsert or count statement start.
    sent_from: usize,
    /// The next rows, encoded while the last statement ran.
    ahead: Option<Ahead<'q, T, R>>,
    /// The flag of the last upsert sent.
    flag: InsertedFlag,
    /// The input positions of the last insert sent.
    inserting: Vec<usize>,
    /// Two phases: the rows read under lock.
    locked: Vec<(i32, Out)>,
    attempt: usize,
    results: Results<Out>,
    _table: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T, R: RowValues<T>, Out: Clone> BulkPlan<'q, T, R, Out> {
    /// A plan for `rows` with the conflict key `key`, whose columns are `key_columns`.
    #[cfg(test)]
    pub(crate) fn new(
        rows: &'q [R],
        key: &KeyShape<'_>,
        key_columns: &'q [&'static str],
        settings: Settings,
    ) -> Result<Self> {
        Self::with_byte_keys(rows, key, key_columns, settings, byte_keys(rows, key))
    }

    /// [`Self::new`] with the rows' [`byte_keys`], computed by the caller (`None`: PostgreSQL
    /// must rank the keys).
    pub(crate) fn with_byte_keys(
        rows: &'q [R],
        key: &KeyShape<'_>,
        key_columns: &'q [&'static str],
        settings: Settings,
        byte_keys: Option<ByteKeys>,
    ) -> Result<Self> {
        let Settings {
            method,
            policy,
            outcomes,
            columns,
            fixed,
            rows_back,
            update,
            limits,
        } = settings;
        let mut plan = BulkPlan {
            rows,
            key_columns,
            method,
            policy,
            outcomes,
            columns,
            fixed,
            rows_back,
            update,
            limits,
            counts: (0, 0),
            before_triggers: key.catalog.before_triggers,
            phase: Phase::Group,
            groups: Groups::default(),
            pending: Vec::new(),
            queue: Vec::new(),
            cursor: 0,
            generation: 0,
            arrays: false,
            sent_from: 0,
            ahead: None,
            flag: InsertedFlag::Xmax,
            inserting: Vec::new(),
            locked: Vec::new(),
            attempt: 0,
            results: Results::new(rows.len()),
            _table: std::marker::PhantomData,
        };
        if rows.is_empty() {
            plan.phase = Phase::Done;
        } else if let Some(keys) = byte_keys {
            let ranks = rank_bytes(&keys);
            drop(keys);
            plan.ranked_positions(ranks)?;
        }
        Ok(plan)
    }

    fn indexed(&self) -> Vec<(usize, &'q R)> {
        self.rows.iter().enumerate().collect()
    }

    /// The rows whose keys PostgreSQL must rank (`GroupKeys`), then [`Self::ranked`]; `None`
    /// when the plan needs no ranks.
    pub(crate) fn grouping(&self) -> Result<Option<BulkRows<'q, T, R>>> {
        if self.phase != Phase::Group {
            return Ok(None);
        }
        key_source(&self.indexed(), self.key_columns, self.limits).map(Some)
    }

    /// The key ranks PostgreSQL returned: `(input position, dense rank)`.
    pub(crate) fn ranked(&mut self, ranks: Vec<(i32, i64)>) -> Result<()> {
        let ranks = ranks
            .into_iter()
            .map(
                |(ordinal, rank)| match (usize::try_from(ordinal), u64::try_from(rank)) {
                    (Ok(position), Ok(rank)) => Ok((position, rank)),
                    _ => Err(Error::internal(format!("key rank {rank} of row {ordinal}"))),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        self.ranked_positions(ranks)
    }

    fn ranked_positions(&mut self, ranks: Vec<(usize, u64)>) -> Result<()> {
        self.groups = group(self.rows.len(), ranks, self.policy)?;
        self.pending = self
            .groups
            .sent
            .iter()
            .map(|&i| (i, &self.rows[i]))
            .collect();
        self.start_attempt();
        Ok(())
    }

    fn start_attempt(&mut self) {
        let phase = if self.update {
            Phase::Lock
        } else {
            Phase::Upsert
        };
        self.enter(phase, self.pending.clone());
    }

    fn enter(&mut self, phase: Phase, queue: Vec<(usize, &'q R)>) {
        self.phase = phase;
        self.queue = queue;
        self.cursor = 0;
        self.generation += 1;
    }

    /// The rows of the next statement of the current phase, as [`next_rows`] cuts them (or as
    /// they were encoded ahead).
    fn take_rows(&mut self, source: ArraySource<'q>, fixed: usize) -> Result<BulkRows<'q, T, R>> {
        let rows = match self.ahead.take() {
            Some(Ahead {
                at,
                arrays: Some(arrays),
            }) if at == (self.generation, self.cursor) => BulkRows::Arrays(arrays),
            _ => {
                // Keys alone encode quickly: only whole rows make a short first statement.
                let whole_rows = matches!(source, ArraySource::Rows { .. });
                let max_rows = if self.cursor == 0 && whole_rows {
                    FIRST_ARRAY_ROWS
                } else {
                    ARRAY_ROWS
                };
                next_rows(
                    &self.queue[self.cursor..],
                    source,
                    max_rows,
                    fixed,
                    self.limits,
                )?
            }
        };
        self.sent_from = self.cursor;
        self.cursor += rows.len();
        self.arrays = matches!(rows, BulkRows::Arrays(_));
        Ok(rows)
    }

    /// The rows of the upsert or count statement just returned, to find the one PostgreSQL
    /// refused when the statement failed ([`Narrowing`]); `None` after another statement.
    pub(crate) fn narrowing(&self) -> Option<Narrowing<'q, T, R>> {
        let writes = match self.phase {
            Phase::Upsert | Phase::UpdateLocked => true,
            Phase::Unkeyed => !self.rows_back,
            _ => false,
        };
        let rows = self.queue.get(self.sent_from..self.cursor)?;
        let source = ArraySource::Rows {
            columns: self.columns,
        };
        (writes && !rows.is_empty())
            .then(|| Narrowing::new(rows.to_vec(), source, self.fixed, self.limits.values))
    }

    /// The rows of the statement after the one just returned, when they can be encoded before
    /// that one's result is back: the next array rows of the same phase. The driver may encode
    /// them meanwhile ([`Lookahead::encode`]) and hand them to [`Self::ahead`].
    pub(crate) fn lookahead(&self) -> Option<Lookahead<'q, T, R>> {
        let source = match self.phase {
            Phase::Upsert | Phase::UpdateLocked => ArraySource::Rows {
                columns: self.columns,
            },
            Phase::Unkeyed if !self.rows_back => ArraySource::Rows {
                columns: self.columns,
            },
            Phase::Fetch | Phase::Lock => ArraySource::Columns(self.key_columns),
            _ => return None,
        };
        let rest = &self.queue[self.cursor..];
        if !self.arrays || rest.is_empty() {
            return None;
        }
        Some(Lookahead {
            at: (self.generation, self.cursor),
            rows: rest[..rest.len().min(ARRAY_ROWS).min(self.limits.rows)].to_vec(),
            source,
            max_bytes: ARRAY_BYTES.min(self.limits.bytes),
            _table: std::marker::PhantomData,
        })
    }

    /// Rows encoded ahead ([`Self::lookahead`]): the next statement sends them if they are
    /// still its rows.
    pub(crate) fn ahead(&mut self, ahead: Ahead<'q, T, R>) {
        self.ahead = Some(ahead);
    }

    /// On to the rows whose key has a NULL.
    fn enter_unkeyed(&mut self) {
        let unkeyed = self
            .groups
            .unkeyed
            .iter()
            .map(|&i| (i, &self.rows[i]))
            .collect();
        self.enter(Phase::Unkeyed, unkeyed);
    }

    /// The rows of `rows` without a result yet.
    fn unresolved(&self, rows: &Indexed<'q, R>) -> Vec<(usize, &'q R)> {
        rows.iter()
            .copied()
            .filter(|(i, _)| !self.results.has(*i))
            .collect()
    }

    /// The next statement to send, `None` when the call is complete.
    pub(crate) fn next(&mut self) -> Result<Option<Step<'q, T, R>>> {
        loop {
            let rest = &self.queue[self.cursor..];
            match self.phase {
                Phase::Group => return Err(Error::internal("the key ranks were not read")),
                Phase::Done => return Ok(None),
                Phase::Upsert | Phase::Unkeyed if !self.rows_back && !rest.is_empty() => {
                    let source = ArraySource::Rows {
                        columns: self.columns,
                    };
                    let rows = self.take_rows(source, self.fixed)?;
                    let flag = match (self.method, self.phase) {
                        // A row with a NULL key part cannot conflict on the target.
                        (_, Phase::Unkeyed) => InsertedFlag::Always(true),
                        (Method::OneStatement(flag), _) => flag,
                        (Method::TwoPhases, _) => {
                            return Err(Error::internal("counting needs an inserted flag"))
                        }
                    };
                    return Ok(Some(Step::Count { rows, flag }));
                }
                Phase::Upsert if !self.rows_back => {
                    // Rows a conflict left in place are counted as unchanged, not read.
                    self.enter_unkeyed();
                }
                Phase::UpdateLocked if self.update && !rest.is_empty() => {
                    let source = ArraySource::Rows {
                        columns: self.columns,
                    };
                    let rows = self.take_rows(source, self.fixed)?;
                    return Ok(Some(Step::Update { rows }));
                }
                Phase::Upsert | Phase::UpdateLocked if !rest.is_empty() => {
                    let source = ArraySource::Rows {
                        columns: self.columns,
                    };
                    let rows = self.take_rows(source, self.fixed)?;
                    let (flag, do_nothing) = match (self.method, self.phase) {
                        (Method::OneStatement(flag), _) => (flag, false),
                        (Method::TwoPhases, Phase::Upsert) => (InsertedFlag::Always(true), true),
                        (Method::TwoPhases, _) => (InsertedFlag::Always(false), false),
                    };
                    self.flag = flag;
                    return Ok(Some(Step::Upsert {
                        rows,
                        flag,
                        do_nothing,
                    }));
                }
                Phase::Fetch | Phase::Lock if !rest.is_empty() => {
                    let rows = self.take_rows(ArraySource::Columns(self.key_columns), 0)?;
                    let lock = self.phase == Phase::Lock;
                    return Ok(Some(Step::Fetch { rows, lock }));
                }
                Phase::Unkeyed if !rest.is_empty() => {
                    let chunk = rest[..chunk_len(rest, self.fixed, self.limits)?].to_vec();
                    self.cursor += chunk.len();
                    self.arrays = false;
                    self.inserting = chunk.iter().map(|(i, _)| *i).collect();
                    let flag = match self.method {
                        Method::OneStatement(InsertedFlag::Unknown) | Method::TwoPhases => {
                            // A row with a NULL key part cannot conflict on the target.
                            InsertedFlag::Always(true)
                        }
                        Method::OneStatement(flag) => flag,
                    };
                    let rows = chunk.into_iter().map(|(_, row)| row).collect();
                    return Ok(Some(Step::Insert { rows, flag }));
                }
                Phase::Upsert => {
                    // Rows the upsert did not write: a conflict left them in place (or, with
                    // `DO NOTHING` in two phases, they exist).
                    let rest = self.unresolved(&self.pending);
                    let next = match self.method {
                        Method::OneStatement(_) => Phase::Fetch,
                        Method::TwoPhases => Phase::Lock,
                    };
                    self.enter(next, rest);
                }
                Phase::Lock => {
                    // Upsert the rows that were locked: each was updated if it comes back.
                    let locked: Vec<usize> = self.locked.iter().map(|(o, _)| *o as usize).collect();
                    let rows = self
                        .unresolved(&self.pending)
                        .into_iter()
                        .filter(|(i, _)| locked.binary_search(i).is_ok())
                        .collect();
                    self.enter(Phase::UpdateLocked, rows);
                }
                Phase::UpdateLocked => {
                    // A locked row the update did not return is as it was read.
                    for (ordinal, out) in std::mem::take(&mut self.locked) {
                        if !self.results.has(ordinal as usize) {
                            self.results.kept(Some(ordinal), out)?;
                        }
                    }
                    self.end_attempt()?;
                }
                Phase::Fetch => self.end_attempt()?,
                Phase::Unkeyed => self.phase = Phase::Done,
            }
        }
    }

    /// Rows neither written nor found were deleted in between: send them again, a bounded
    /// number of times; then the rows without a key.
    fn end_attempt(&mut self) -> Result<()> {
        if self.update {
            // What was not locked has no stored row: missing, not sent again.
            self.phase = Phase::Done;
            return Ok(());
        }
        self.pending = self.unresolved(&self.pending);
        if let Some(&(position, _)) = self.pending.first() {
            self.attempt += 1;
            if self.attempt >= ATTEMPTS {
                return Err(not_found(self.before_triggers, position));
            }
            self.start_attempt();
        } else {
            self.enter_unkeyed();
        }
        Ok(())
    }

    /// The input positions of the rows an [`Step::Update`] changed; the other locked rows of
    /// the statement held the new values already (`skip_unchanged`).
    pub(crate) fn updated(&mut self, ordinals: Vec<i32>, out: Out) -> Result<()> {
        for ordinal in ordinals {
            self.results
                .written(Some(ordinal), out.clone(), Some(false))?;
        }
        Ok(())
    }

    /// `bulk_update`: per input row, in input order, whether it was updated, left unchanged or
    /// has no stored row.
    pub(crate) fn finish_updates(self) -> Result<Vec<UpdateOutcome>> {
        if self.phase != Phase::Done {
            return Err(Error::internal("a bulk update finished early"));
        }
        Ok((0..self.rows.len())
            .map(
                |position| match self.results.written_at_position(position) {
                    Some(true) => UpdateOutcome::Updated,
                    Some(false) => UpdateOutcome::Unchanged,
                    None => UpdateOutcome::Missing,
                },
            )
            .collect())
    }

    /// The rows an [`Step::Upsert`] returned.
    pub(crate) fn written(&mut self, rows: Vec<Written<Out>>) -> Result<()> {
        for (ordinal, out, inserted) in rows {
            // With a flag that is never NULL, NULL marks an existing row that already held the
            // new values (`skip_unchanged`), returned as it is.
            match (inserted, self.flag) {
                (Some(_), InsertedFlag::Written) => self.results.written(ordinal, out, None)?,
                (None, InsertedFlag::Unknown) | (Some(_), _) => {
                    self.results.written(ordinal, out, inserted)?
                }
                (None, _) => self.results.kept(ordinal, out)?,
            }
        }
        Ok(())
    }

    /// The rows a [`Step::Fetch`] returned: `(input position, row)`.
    pub(crate) fn fetched(&mut self, rows: Vec<(i32, Out)>) -> Result<()> {
        if self.phase == Phase::Lock {
            self.locked.extend(rows);
            self.locked.sort_unstable_by_key(|(ordinal, _)| *ordinal);
            return Ok(());
        }
        for (ordinal, out) in rows {
            self.results.kept(Some(ordinal), out)?;
        }
        Ok(())
    }

    /// The rows a [`Step::Insert`] returned, in the order of its `VALUES` list.
    pub(crate) fn inserted(&mut self, rows: Vec<(Out, Option<bool>)>) -> Result<()> {
        if rows.len() != self.inserting.len() {
            return Err(Error::internal(format!(
                "{} rows without a conflict key were sent and {} came back",
                self.inserting.len(),
                rows.len()
            )));
        }
        for (position, (out, inserted)) in std::mem::take(&mut self.inserting).into_iter().zip(rows)
        {
            self.results.written_at(position, out, inserted)?;
        }
        Ok(())
    }

    /// What a [`Step::Count`] counted.
    pub(crate) fn counted(&mut self, (inserted, updated): (i64, i64)) -> Result<()> {
        let count = |n: i64| {
            usize::try_from(n).map_err(|_| Error::internal(format!("a negative count: {n}")))
        };
        self.counts.0 += count(inserted)?;
        self.counts.1 += count(updated)?;
        Ok(())
    }

    /// Without rows back: how many input rows were inserted, updated, left unchanged.
    pub(crate) fn finish_counts(self) -> Result<BulkSummary> {
        let (inserted, updated) = self.counts;
        let sent = self.groups.sent.len() + self.groups.unkeyed.len();
        if self.phase != Phase::Done || inserted + updated > sent {
            return Err(Error::internal(format!(
                "{inserted} inserted and {updated} updated of {sent} rows sent"
            )));
        }
        Ok(BulkSummary {
            inserted,
            updated,
            unchanged: self.rows.len() - inserted - updated,
        })
    }

    /// One result per input row, in input order (the outcome only when asked for).
    pub(crate) fn finish(self) -> Result<Vec<(Out, Option<Outcome>)>> {
        if self.phase != Phase::Done {
            return Err(Error::internal("the plan is not complete"));
        }
        self.results
            .finish(&self.groups.representative, self.outcomes)
    }
}

#[cfg(test)]
mod tests;
