//! Rows cut into statements: as column arrays when their values are plain binds, otherwise as
//! `VALUES` lists under PostgreSQL's bind-parameter limit; and conflict keys as bytes where
//! bytes compare exactly as PostgreSQL does.

use super::results::ByteKeys;
use crate::error::{Error, Result};
use crate::literal::{count_binds, render, NoTypeLookup};
use crate::query_builder::arrays::{ArraySource, ColumnArrays, ARRAY_BYTES};
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::BulkRows;
use crate::rows::{Probe, Prober, RowValues, ValueOf, ValuesOf};
use crate::spec::Limits;
use crate::target::KeyPart;
use diesel::pg::Pg;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::QueryFragment;

/// PostgreSQL's limit on bind parameters in one statement.
pub(crate) const MAX_BINDS: usize = 65_535;

/// Rows of one call, each with its input position.
pub(crate) type Indexed<'r, R> = [(usize, &'r R)];

/// All `rows`' key columns in one statement (the ranks of one statement compare): as arrays, or
/// as a `VALUES` list when a key holds an SQL expression (or with `limits.values`). The keys must
/// fit in one statement of `limits`.
pub(crate) fn key_source<'r, T, R: RowValues<T>>(
    rows: &Indexed<'r, R>,
    key_columns: &'r [&'static str],
    limits: Limits,
) -> Result<BulkRows<'r, T, R>> {
    let too_large = |what: String| {
        Error::unsupported(format!(
            "the conflict keys of the call's {} rows take {what}, more than the statement limit \
             allows: PostgreSQL must rank keys of this type itself (their bytes do not compare \
             as the column does), in one statement; raise the limit or split the call",
            rows.len()
        ))
    };
    if rows.len() > limits.rows {
        return Err(too_large(format!("{} rows", rows.len())));
    }
    let source = ArraySource::Columns(key_columns);
    if !limits.values {
        if let Some(arrays) = ColumnArrays::build(rows, source, usize::MAX, usize::MAX) {
            if arrays.len() == rows.len() {
                let bytes = arrays.bytes();
                if bytes > limits.bytes {
                    return Err(too_large(format!("{bytes} bytes")));
                }
                return Ok(BulkRows::Arrays(arrays));
            }
        }
    }
    let mut binds = 0;
    let mut bytes = 0;
    for (_, row) in rows {
        for column in key_columns {
            let value = ValueOf::<R, T>::new(*row, column);
            binds += count_binds(&value)?;
            if limits.bytes != usize::MAX {
                bytes += bind_bytes(&value)?;
            }
        }
    }
    if binds > MAX_BINDS {
        return Err(Error::unsupported(format!(
            "the conflict keys hold {binds} bind parameters in all; \
             PostgreSQL compares keys in one statement of at most {MAX_BINDS}"
        )));
    }
    if bytes > limits.bytes {
        return Err(too_large(format!("{bytes} bytes")));
    }
    Ok(BulkRows::Values(rows.to_vec()))
}

/// The bytes of the values a fragment binds, serialized without a connection, each with its
/// 4-byte length as sent (as array elements are counted).
fn bind_bytes<F: QueryFragment<Pg>>(fragment: &F) -> Result<usize> {
    Ok(render(fragment)?
        .1
        .binds
        .iter()
        .map(|b| 4 + b.as_ref().map_or(0, Vec::len))
        .sum())
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

/// How many leading rows of `rows` fit in one `VALUES` statement with `fixed` other binds,
/// under PostgreSQL's bind limit and `limits`.
pub(crate) fn chunk_len<T, R: RowValues<T>>(
    rows: &Indexed<'_, R>,
    fixed: usize,
    limits: Limits,
) -> Result<usize> {
    let budget = MAX_BINDS.saturating_sub(fixed);
    let mut used = 0;
    let mut bytes = 0;
    for (len, &(index, row)) in rows.iter().enumerate() {
        if len == limits.rows {
            return Ok(len);
        }
        // Rows sent as a plain `VALUES` insert bind their keys once more, for pairing.
        let binds = binds_of(row)? * if limits.values { 2 } else { 1 };
        if binds > budget {
            return Err(Error::unsupported(format!(
                "row {index} alone needs {binds} bind parameters, more than PostgreSQL allows in one statement"
            )));
        }
        if used + binds > budget {
            return Ok(len);
        }
        used += binds;
        if limits.bytes != usize::MAX {
            bytes += bind_bytes(&ValuesOf::<R, T>::new(row))?;
            if bytes > limits.bytes && len > 0 {
                return Ok(len);
            }
        }
    }
    Ok(rows.len())
}

/// The next rows of one statement: as arrays (at most `max_rows`, and within `limits`) when the
/// leading rows are plain values, otherwise (or with `limits.values`) as a `VALUES` list under
/// the bind limit and `limits`.
pub(crate) fn next_rows<'r, T, R: RowValues<T>>(
    rows: &Indexed<'r, R>,
    source: ArraySource<'r>,
    max_rows: usize,
    fixed: usize,
    limits: Limits,
) -> Result<BulkRows<'r, T, R>> {
    if !limits.values {
        let max_bytes = ARRAY_BYTES.min(limits.bytes);
        if let Some(arrays) =
            ColumnArrays::build(rows, source, max_rows.min(limits.rows), max_bytes)
        {
            return Ok(BulkRows::Arrays(arrays));
        }
    }
    let len = chunk_len(rows, fixed, limits)?;
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
