//! Bulk upserts: column consistency, duplicate conflict keys, key order, chunking.
//!
//! The rows of one call are checked before anything is sent: every row must supply the same
//! columns, and rows sharing a conflict key are an error (`ConflictAction::Update`) or resolved
//! by a [`DuplicateKeys`] policy. The remaining rows are sorted by their conflict key — so two
//! calls over overlapping keys lock rows in the same order and cannot deadlock each other — and
//! cut into statements under PostgreSQL's 65 535 bind parameters, all in one transaction (a
//! savepoint inside the caller's). Results come back matched to the input rows by conflict key,
//! in input order.

use crate::error::{BuildError, Error, Result};
use crate::query_builder::arrays::{ArraySource, ColumnArrays};
use crate::query_builder::literal::{count_binds, render};
use crate::query_builder::statement::{
    consistent_columns, key_columns, BulkFetchExisting, BulkRows, BulkUpsert,
    BulkUpsertReturningKeys, InsertedFlag, ReturnedKeys, UpsertReturning, UpsertStatement,
    RETURNED_KEY_PARTS,
};
use crate::query_builder::target::KeyPart;
use crate::query_builder::values::{RowValues, ValueOf, ValuesOf};
use crate::upsert::{classify_error, conflict_key, ConflictAction, Outcome, Returning};
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::Connection;
use std::collections::hash_map::Entry;

/// Maps keyed by conflict keys: hashed with foldhash (fast, seeded per process).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// PostgreSQL's limit on bind parameters in one statement.
pub(crate) const MAX_BINDS: usize = 65_535;

/// What a bulk call does with input rows that share a conflict key.
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

/// The rows of one bulk call, arranged for sending.
#[derive(Debug)]
pub(crate) struct Plan<'r, R> {
    /// Rows with a conflict key, one per key, sorted by key: `(input position, row)`.
    pub(crate) keyed: Vec<(usize, &'r R)>,
    /// Rows whose key has a NULL part: they never conflict, in input order.
    pub(crate) unkeyed: Vec<(usize, &'r R)>,
    /// For each input position, the position of the row whose result it gets.
    pub(crate) representative: Vec<usize>,
    /// The input position of the row sent for each conflict key, by the key's bytes.
    pub(crate) by_key: HashMap<Vec<u8>, usize>,
    /// Whether every key is made of bound values only, so that the key PostgreSQL returns for
    /// a written row has the same bytes as the key computed here.
    pub(crate) plain_keys: bool,
}

/// Checks the key of every row and arranges the rows for sending.
pub(crate) fn plan<'r, T, R: RowValues<T>>(
    rows: &'r [R],
    key: &[KeyPart],
    on_duplicates: Option<DuplicateKeys>,
) -> Result<Plan<'r, R>> {
    let mut plain_keys = true;
    let mut keys = rows
        .iter()
        .map(|row| key_of(row, key, &mut plain_keys))
        .collect::<Result<Vec<_>>>()?;
    let mut chosen: HashMap<&[u8], usize> =
        HashMap::with_capacity_and_hasher(rows.len(), Default::default());
    for (index, row_key) in keys.iter().enumerate() {
        let Some(row_key) = row_key else { continue };
        match chosen.entry(row_key.as_slice()) {
            Entry::Vacant(entry) => {
                entry.insert(index);
            }
            Entry::Occupied(mut entry) => match on_duplicates {
                None => {
                    return Err(Error::DuplicateConflictKey {
                        first: *entry.get(),
                        duplicate: index,
                    })
                }
                Some(DuplicateKeys::KeepFirst) => {}
                Some(DuplicateKeys::KeepLast) => {
                    entry.insert(index);
                }
            },
        }
    }
    let representative: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(index, row_key)| row_key.as_ref().map_or(index, |k| chosen[k.as_slice()]))
        .collect();
    let mut keyed: Vec<(&[u8], usize)> = chosen.into_iter().collect();
    keyed.sort_unstable();
    let keyed: Vec<usize> = keyed.into_iter().map(|(_, index)| index).collect();
    let unkeyed = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.is_none())
        .map(|(index, _)| (index, &rows[index]))
        .collect();
    let by_key = keyed
        .iter()
        .filter_map(|&index| Some((keys[index].take()?, index)))
        .collect();
    Ok(Plan {
        keyed: keyed
            .into_iter()
            .map(|index| (index, &rows[index]))
            .collect(),
        unkeyed,
        representative,
        by_key,
        plain_keys,
    })
}

/// The conflict key of a row as comparable bytes, or `None` when a part of it is NULL (such a
/// row never conflicts). Equal keys give equal bytes for the binary encodings of text, integer,
/// uuid and similar key types; the byte order is only used to sort rows deterministically.
/// `plain` is cleared when a key part is an SQL expression rather than a bound value.
fn key_of<T, R: RowValues<T>>(
    row: &R,
    key: &[KeyPart],
    plain: &mut bool,
) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for part in key {
        let (sql, mut binds) = render(&ValueOf::<R, T>::new(row, part.column()))?;
        let value: Option<Vec<u8>> = match (sql.as_str(), binds.binds.as_mut_slice()) {
            ("", _) => return Ok(None),
            ("$1", [bind]) => match part {
                KeyPart::Column(_) => bind.take(),
                KeyPart::HstoreKey { key, .. } => bind
                    .as_deref()
                    .and_then(|map| crate::hstore::value_of(map, key))
                    .map(String::into_bytes),
            },
            _ => {
                // An expression rather than a plain value: compare its SQL and its binds.
                *plain = false;
                let mut bytes = sql.into_bytes();
                if let KeyPart::HstoreKey { key, .. } = part {
                    bytes.extend_from_slice(key.as_bytes());
                }
                for bind in &binds.binds {
                    push_length_prefixed(&mut bytes, bind.as_deref());
                }
                Some(bytes)
            }
        };
        match value {
            None => return Ok(None),
            Some(value) => push_length_prefixed(&mut out, Some(&value)),
        }
    }
    Ok(Some(out))
}

fn push_length_prefixed(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The number of bind parameters a row renders (counted in its SQL text, without serializing
/// its values).
pub(crate) fn binds_of<T, R: RowValues<T>>(row: &R) -> Result<usize> {
    Ok(count_binds(&ValuesOf::<R, T>::new(row))?)
}

/// Cuts `rows` into chunks whose binds, plus `fixed` binds of the statement around them, stay
/// within PostgreSQL's limit.
pub(crate) fn chunks<'r, T, R: RowValues<T>>(
    mut rows: &[(usize, &'r R)],
    fixed: usize,
) -> Result<Vec<Vec<(usize, &'r R)>>> {
    let mut chunks = Vec::new();
    while !rows.is_empty() {
        let len = chunk_len(rows, fixed)?;
        chunks.push(rows[..len].to_vec());
        rows = &rows[len..];
    }
    Ok(chunks)
}

/// How many leading rows of `rows` fit in one `VALUES` statement with `fixed` other binds.
fn chunk_len<T, R: RowValues<T>>(rows: &[(usize, &R)], fixed: usize) -> Result<usize> {
    let budget = MAX_BINDS.saturating_sub(fixed);
    let mut used = 0;
    for (len, &(index, row)) in rows.iter().enumerate() {
        let binds = binds_of(row)?;
        if binds > budget {
            return Err(BuildError::invalid_target(format!(
                "row {index} alone needs {binds} bind parameters, more than PostgreSQL allows in one statement"
            ))
            .into());
        }
        if used + binds > budget {
            return Ok(len);
        }
        used += binds;
    }
    Ok(rows.len())
}

/// The next rows of one statement: as arrays when the leading rows are plain values, otherwise
/// as a `VALUES` list under the bind limit.
fn next_rows<'r, T, R: RowValues<T>>(
    rows: &[(usize, &'r R)],
    source: ArraySource<'r>,
    fixed: usize,
) -> Result<BulkRows<'r, T, R>> {
    if let Some(arrays) = ColumnArrays::build(rows, source) {
        return Ok(BulkRows::Arrays(arrays));
    }
    let len = chunk_len(rows, fixed)?;
    Ok(BulkRows::Values(rows[..len].to_vec()))
}

/// How many times rows whose existing row vanished before it could be read are sent again.
const ATTEMPTS: usize = 3;

/// The bulk flow: check, plan, then in one transaction send the keyed rows in key order (chunked),
/// read the rows a conflict left in place, send the rows without a key; results in input order.
pub(crate) fn run<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel,
) -> Result<Vec<(Out, Outcome)>>
where
    S: UpsertStatement,
    Sel: Returning<Out>,
    Out: Clone,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let rows = statement.rows();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let columns = consistent_columns::<S::Table, S::Row>(rows.iter())?;
    statement.check()?;
    let key = conflict_key(statement, &rows[0], conn)?;
    let on_duplicates = statement.duplicate_keys().or(match statement.action() {
        ConflictAction::Nothing => Some(DuplicateKeys::KeepFirst),
        ConflictAction::Update => None,
    });
    let plan = plan(rows, &key, on_duplicates)?;
    let fixed = fixed_binds(statement, &plan, &key, &selection)?;

    // Keys made of bound values come back from PostgreSQL with the bytes they were sent with:
    // the written rows are matched to the input in Rust, and the statement stays a plain
    // `INSERT … VALUES … RETURNING`. Keys holding SQL expressions are matched by PostgreSQL
    // itself, joining the written rows to the input rows in the statement.
    let keys_returned = plan.plain_keys && key.len() <= RETURNED_KEY_PARTS;
    let key_columns = key_columns(&key);
    let mut results: Vec<Option<(Out, Outcome)>> = vec![None; rows.len()];
    let mut key_buffer = Vec::new();
    conn.transaction(|conn| -> Result<()> {
        let mut pending = plan.keyed.clone();
        for _ in 0..ATTEMPTS {
            if keys_returned {
                let mut rest = &pending[..];
                while !rest.is_empty() {
                    let rows = next_rows(
                        rest,
                        ArraySource::Rows {
                            columns: columns.len(),
                        },
                        fixed,
                    )?;
                    rest = &rest[rows.len()..];
                    let query = BulkUpsertReturningKeys {
                        statement,
                        rows,
                        key: &key,
                        selection: selection(),
                    };
                    for (out, inserted, returned) in Sel::load_bulk_returning_keys(query, conn)
                        .map_err(|e| classify_error(statement, e))?
                    {
                        // A key that does not match (another encoding of an equal value) leaves
                        // its input to the read below.
                        let returned = returned_key(&returned, key.len(), &mut key_buffer);
                        if let Some(&index) = plan.by_key.get(returned) {
                            let outcome = inserted.map_or(Outcome::Unchanged, outcome);
                            results[index] = Some((out, outcome));
                        }
                    }
                }
            } else {
                for chunk in chunks(&pending, fixed)? {
                    let query = BulkUpsert {
                        statement,
                        rows: chunk,
                        key: &key,
                        selection: selection(),
                    };
                    for (index, out, inserted) in
                        Sel::load_bulk(query, conn).map_err(|e| classify_error(statement, e))?
                    {
                        results[position(index)?] = Some((out, outcome(inserted)));
                    }
                }
            }
            // Rows the statement did not write: read the rows their keys point at.
            let kept: Vec<_> = pending
                .iter()
                .copied()
                .filter(|(i, _)| results[*i].is_none())
                .collect();
            let mut rest = &kept[..];
            while !rest.is_empty() {
                let rows = next_rows(rest, ArraySource::Columns(&key_columns), 0)?;
                rest = &rest[rows.len()..];
                let query = BulkFetchExisting {
                    statement,
                    rows,
                    key: &key,
                    selection: selection(),
                };
                for (index, out) in Sel::load_bulk_existing(query, conn)? {
                    results[position(index)?] = Some((out, Outcome::Unchanged));
                }
            }
            pending.retain(|(i, _)| results[*i].is_none());
            if pending.is_empty() {
                break;
            }
        }
        if !pending.is_empty() {
            return Err(Error::Query(diesel::result::Error::NotFound));
        }
        // Rows with a NULL in their key never conflict on the target: plain inserts, returned
        // in the order of the VALUES list.
        for chunk in chunks(&plan.unkeyed, fixed)? {
            let query = UpsertReturning {
                statement,
                rows: chunk.iter().map(|(_, row)| *row).collect(),
                returning: (selection(), InsertedFlag),
            };
            let written =
                Sel::load_rows_with_flag(query, conn).map_err(|e| classify_error(statement, e))?;
            if written.len() != chunk.len() {
                return Err(Error::Query(diesel::result::Error::NotFound));
            }
            for ((index, _), (out, inserted)) in chunk.iter().zip(written) {
                results[*index] = Some((out, outcome(inserted)));
            }
        }
        Ok(())
    })?;

    // Rows that were not sent (they share a key with a sent row) get a copy of its result;
    // every other row's result is moved, not copied.
    for (index, &sent) in plan.representative.iter().enumerate() {
        if sent != index {
            let (out, _) = results[sent]
                .clone()
                .ok_or(Error::Query(diesel::result::Error::NotFound))?;
            results[index] = Some((out, Outcome::Unchanged));
        }
    }
    results
        .into_iter()
        .map(|result| result.ok_or(Error::Query(diesel::result::Error::NotFound)))
        .collect()
}

fn outcome(inserted: bool) -> Outcome {
    if inserted {
        Outcome::Inserted
    } else {
        Outcome::Updated
    }
}

/// The bytes of a key returned by PostgreSQL, encoded into `out` as [`key_of`] encodes the
/// input's.
fn returned_key<'o>(returned: &ReturnedKeys, parts: usize, out: &'o mut Vec<u8>) -> &'o [u8] {
    let (a, b, c, d, e, f, g, h) = returned;
    out.clear();
    for value in [a, b, c, d, e, f, g, h].into_iter().take(parts) {
        push_length_prefixed(out, value.as_deref());
    }
    out
}

fn position(ordinal: i32) -> Result<usize> {
    usize::try_from(ordinal).map_err(|_| Error::Query(diesel::result::Error::NotFound))
}

/// The binds a bulk statement has besides its rows (those of `update_values` and
/// `update_condition`): the statement for one row minus that row's own binds.
fn fixed_binds<S, Sel>(
    statement: &S,
    plan: &Plan<'_, S::Row>,
    key: &[KeyPart],
    selection: impl Fn() -> Sel,
) -> Result<usize>
where
    S: UpsertStatement,
    Sel: QueryFragment<Pg> + diesel::Expression,
{
    let Some(&first) = plan.keyed.first().or(plan.unkeyed.first()) else {
        return Ok(0);
    };
    let query = BulkUpsert {
        statement,
        rows: vec![first],
        key,
        selection: selection(),
    };
    let total = render(&query)?.1.binds.len();
    Ok(total.saturating_sub(binds_of(first.1)?))
}
