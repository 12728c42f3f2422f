//! Rows cut into statements: as column arrays when their values are plain binds, otherwise as
//! `VALUES` lists under PostgreSQL's bind-parameter limit; and conflict keys as bytes where
//! bytes compare exactly as PostgreSQL does.

use super::results::ByteKeys;
use crate::error::{Error, Result};
use crate::literal::{count_binds, render, NoTypeLookup};
use crate::query_builder::arrays::{ArraySource, ColumnArrays};
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::BulkRows;
use crate::rows::{Probe, Prober, RowValues, ValueOf, ValuesOf};
use crate::target::KeyPart;
use diesel::pg::Pg;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::QueryFragment;

/// PostgreSQL's limit on bind parameters in one statement.
pub(crate) const MAX_BINDS: usize = 65_535;

/// Rows of one call, each with its input position.
pub(crate) type Indexed<'r, R> = [(usize, &'r R)];

/// All `rows`' key columns in one statement (the ranks of one statement compare): as arrays, or
/// as a `VALUES` list when a key holds an SQL expression.
pub(crate) fn key_source<'r, T, R: RowValues<T>>(
    rows: &Indexed<'r, R>,
    key_columns: &'r [&'static str],
) -> Result<BulkRows<'r, T, R>> {
    if let Some(arrays) = ColumnArrays::build(rows, ArraySource::Columns(key_columns), None) {
        if arrays.len() == rows.len() {
            return Ok(BulkRows::Arrays(arrays));
        }
    }
    let mut binds = 0;
    for (_, row) in rows {
        for column in key_columns {
            binds += count_binds(&ValueOf::<R, T>::new(*row, column))?;
        }
    }
    if binds > MAX_BINDS {
        return Err(Error::unsupported(format!(
            "the conflict keys hold SQL expressions with {binds} bind parameters in all; \
             PostgreSQL compares keys in one statement of at most {MAX_BINDS}"
        )));
    }
    Ok(BulkRows::Values(rows.to_vec()))
}

/// The conflict keys of the rows as bytes, when comparing those bytes is exactly PostgreSQL's
/// comparison: every key part a plain bound value of the column's own type, of a type whose
/// equality is byte equality ([`KeyShape::byte_exact`]). `None` otherwise: PostgreSQL groups
/// the keys.
pub(crate) fn byte_keys<T, R: RowValues<T>>(rows: &[R], key: &KeyShape<'_>) -> Option<ByteKeys> {
    if !key.byte_exact() {
        return None;
    }
    let parts = key
        .parts
        .iter()
        .map(|part| match part {
            KeyPart::Column(column) => Some((*column, key.catalog.column(column).ok()?.oid)),
            KeyPart::HstoreKey { .. } | KeyPart::Expression(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let mut probers = vec![Prober::new::<T, R>(); parts.len()];
    let mut binds = RawBytesBindCollector::<Pg>::new();
    let mut keys = ByteKeys::default();
    keys.spans.reserve_exact(rows.len());
    for row in rows {
        keys.start();
        let mut null = false;
        for ((column, oid), prober) in parts.iter().zip(&mut probers) {
            binds.binds.clear();
            binds.metadata.clear();
            let value = ValueOf::<R, T>::new(row, column);
            match prober
                .probe(&value, "$1", &mut binds, &mut NoTypeLookup)
                .ok()?
            {
                Probe::Absent => null = true,
                Probe::Expression => return None,
                Probe::Binds => match (binds.binds.as_slice(), binds.metadata.first()) {
                    ([None], _) => null = true,
                    ([Some(value)], Some(metadata)) if metadata.oid().ok()? == *oid => {
                        if parts.len() > 1 {
                            keys.bytes
                                .extend_from_slice(&(value.len() as u32).to_be_bytes());
                        }
                        keys.bytes.extend_from_slice(value);
                    }
                    _ => return None,
                },
            }
        }
        keys.end(null);
    }
    Some(keys)
}

/// The number of bind parameters a row renders (counted in its SQL text, without serializing
/// its values).
pub(crate) fn binds_of<T, R: RowValues<T>>(row: &R) -> Result<usize> {
    Ok(count_binds(&ValuesOf::<R, T>::new(row))?)
}

/// Cuts `rows` into chunks whose binds, plus `fixed` binds of the statement around them, stay
/// within PostgreSQL's limit.
pub(crate) fn chunks<'r, T, R: RowValues<T>>(
    mut rows: &Indexed<'r, R>,
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
fn chunk_len<T, R: RowValues<T>>(rows: &Indexed<'_, R>, fixed: usize) -> Result<usize> {
    let budget = MAX_BINDS.saturating_sub(fixed);
    let mut used = 0;
    for (len, &(index, row)) in rows.iter().enumerate() {
        let binds = binds_of(row)?;
        if binds > budget {
            return Err(Error::unsupported(format!(
                "row {index} alone needs {binds} bind parameters, more than PostgreSQL allows in one statement"
            )));
        }
        if used + binds > budget {
            return Ok(len);
        }
        used += binds;
    }
    Ok(rows.len())
}

/// The next rows of one statement: as arrays (at most `max_rows`) when the leading rows are
/// plain values, otherwise as a `VALUES` list under the bind limit.
pub(crate) fn next_rows<'r, T, R: RowValues<T>>(
    rows: &Indexed<'r, R>,
    source: ArraySource<'r>,
    max_rows: usize,
    fixed: usize,
) -> Result<BulkRows<'r, T, R>> {
    if let Some(arrays) = ColumnArrays::build(rows, source, Some(max_rows)) {
        return Ok(BulkRows::Arrays(arrays));
    }
    let len = chunk_len(rows, fixed)?;
    Ok(BulkRows::Values(rows[..len].to_vec()))
}

/// The binds a bulk statement has besides its rows (those of `update_values` and
/// `update_condition`, and of the selection): the statement `one_row` builds for the first row
/// minus that row's own binds.
pub(crate) fn fixed_binds<'r, T, R, Q>(
    rows: &'r [R],
    one_row: impl FnOnce(BulkRows<'r, T, R>) -> Q,
) -> Result<usize>
where
    R: RowValues<T>,
    Q: QueryFragment<Pg>,
{
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let first = (0, first);
    let total = render(&one_row(BulkRows::Values(vec![first])))?
        .1
        .binds
        .len();
    Ok(total.saturating_sub(binds_of(first.1)?))
}
