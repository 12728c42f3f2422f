//! Rows sent as one array parameter per column.
//!
//! A bulk statement whose values are all plain bind parameters sends each column as one binary
//! PostgreSQL array and reads the rows back with `unnest` (`INSERT … SELECT unnest($1),
//! unnest($2) …`) instead of a `VALUES` list with a parameter per value: the SQL text stays
//! the same for any number of rows (PostgreSQL parses and plans it once per connection), and
//! the 65 535-parameter limit no longer applies.
//!
//! The elements are serialized with Diesel's own `ToSql` for each value. The array types are
//! known only at send time, from the connection (hstore and enums have their OIDs looked up by
//! name): each array is first pushed as `bytea`, then re-typed in the query's `collect_binds`
//! (`ColumnArrays::retype`). Values that are SQL expressions, or of types without an array
//! type (arrays themselves, records), are not plain; such rows go as a `VALUES` list.

use crate::literal::NoTypeLookup;
use crate::rows::{Probe, Prober, RowValues, ValueOf, ValuesOf};
use diesel::pg::{Pg, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::AstPass;
use diesel::result::{Error as DieselError, QueryResult};
use diesel::sql_types::{Array, Binary, Integer, TypeMetadata};
use std::marker::PhantomData;

/// The most rows one array statement carries.
pub(crate) const ARRAY_ROWS: usize = 20_000;
/// The most whole rows the first array statement of a phase carries: they cannot be encoded
/// while an earlier statement runs, so the server should get them soon.
pub(crate) const FIRST_ARRAY_ROWS: usize = 2_000;
/// The most bytes of elements (each with its 4-byte length) one array statement carries (a row
/// is never split: a larger row goes alone).
pub(crate) const ARRAY_BYTES: usize = 16 << 20;

/// The OID of PostgreSQL's `record`: `unnest` would expand it into columns.
const RECORD_OID: u32 = 2249;

/// Which values of each row the arrays hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArraySource<'k> {
    /// Every supplied column, in insert order.
    Rows {
        /// The number of supplied columns.
        columns: usize,
    },
    /// The given columns only (a conflict key's).
    Columns(&'k [&'static str]),
}

/// Some rows as one binary array per column, with each row's input position.
pub struct ColumnArrays<'q, T, R> {
    /// The first row, rendered again at send time for the element types.
    first: &'q R,
    source: ArraySource<'q>,
    /// One binary array per column; the element type is written by [`Self::retype`].
    pub(crate) arrays: Vec<Vec<u8>>,
    /// The input position of each row.
    pub(crate) positions: Vec<i32>,
    _table: PhantomData<fn() -> T>,
}

impl<T, R> std::fmt::Debug for ColumnArrays<'_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnArrays")
            .field("source", &self.source)
            .field("rows", &self.positions.len())
            .finish_non_exhaustive()
    }
}

impl<T, R> ColumnArrays<'_, T, R> {
    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.positions.len()
    }

    /// The bytes of the arrays' elements, as sent (each with its 4-byte length).
    pub(crate) fn bytes(&self) -> usize {
        self.arrays.iter().map(|a| a.len() - HEADER_LEN).sum()
    }
}

/// Offsets in the array header (all fields are 4-byte big-endian integers).
const FLAGS_AT: usize = 4;
const ELEMENT_TYPE_AT: usize = 8;
const LENGTH_AT: usize = 12;
const HEADER_LEN: usize = 20;

impl<'q, T, R: RowValues<T>> ColumnArrays<'q, T, R> {
    /// Encodes the leading rows of `rows` whose values are all plain binds, up to `max_rows`
    /// rows (at least one) and until their values reach `max_bytes` (a row is never split).
    /// `None` when the first row is not plain.
    pub(crate) fn build(
        rows: &[(usize, &'q R)],
        source: ArraySource<'q>,
        max_rows: usize,
        max_bytes: usize,
    ) -> Option<Self> {
        let &(_, first) = rows.first()?;
        let max_rows = max_rows.max(1);
        let mut encoder = Encoder::new(source);
        let width = encoder.width();
        let mut arrays = vec![header(rows.len().min(max_rows)); width];
        let mut positions = Vec::new();
        let mut bytes = 0;
        for &(index, row) in rows.iter().take(max_rows) {
            let Ok(position) = i32::try_from(index) else {
                break;
            };
            if !encoder.encode(row) {
                break;
            }
            // Each element as sent: its 4-byte length, then its bytes.
            let row_bytes: usize = encoder
                .binds
                .binds
                .iter()
                .map(|v| 4 + v.as_ref().map_or(0, Vec::len))
                .sum();
            if bytes + row_bytes > max_bytes && !positions.is_empty() {
                break;
            }
            bytes += row_bytes;
            for (array, value) in arrays.iter_mut().zip(encoder.binds.binds.drain(..)) {
                match value {
                    Some(value) => {
                        array.extend_from_slice(&(value.len() as i32).to_be_bytes());
                        array.extend_from_slice(&value);
                    }
                    None => {
                        array[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&1i32.to_be_bytes());
                        array.extend_from_slice(&(-1i32).to_be_bytes());
                    }
                }
            }
            positions.push(position);
        }
        if positions.is_empty() {
            return None;
        }
        let len = (positions.len() as i32).to_be_bytes();
        for array in &mut arrays {
            array[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&len);
        }
        Some(ColumnArrays {
            first,
            source,
            arrays,
            positions,
            _table: PhantomData,
        })
    }

    /// The columns of a row, in insert order.
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        let mut columns = Vec::new();
        self.first.supplied_columns(&mut columns);
        columns
    }

    /// Writes the arrays and then the input positions as parameters: `$1, …, $n, $n+1`.
    pub(crate) fn walk_arrays<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for array in &self.arrays {
            out.push_bind_param::<Binary, Vec<u8>>(array)?;
            out.push_sql(", ");
        }
        out.push_bind_param::<Array<Integer>, Vec<i32>>(&self.positions)
    }

    /// Gives the array binds, pushed as `bytea` starting at bind `first`, their array types:
    /// the first row is rendered again with the connection's type lookup, and each array's
    /// parameter type and element type are set from its values' type.
    pub(crate) fn retype(
        &self,
        out: &mut RawBytesBindCollector<Pg>,
        first: usize,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> QueryResult<()> {
        let types = Encoder::<T, R>::new(self.source).types(self.first, lookup)?;
        for (i, metadata) in types.iter().enumerate() {
            let (oid, array_oid) = oids(metadata)?;
            // OID 0 for both is a placeholder, not a type: diesel-async's first bind pass hands
            // it out for types looked up by name and then patches the OIDs it finds in the
            // metadata and in the bytes, the element type written below included.
            let placeholder = oid == 0 && array_oid == 0;
            if (array_oid == 0 && !placeholder) || oid == RECORD_OID {
                return Err(DieselError::QueryBuilderError(
                    format!("type oid {oid} has no array type to send rows in").into(),
                ));
            }
            let (Some(slot), Some(Some(bytes))) = (
                out.metadata.get_mut(first + i),
                out.binds.get_mut(first + i),
            ) else {
                return Err(DieselError::QueryBuilderError(
                    "an array parameter is missing from the statement".into(),
                ));
            };
            *slot = PgTypeMetadata::new(array_oid, 0);
            bytes[ELEMENT_TYPE_AT..ELEMENT_TYPE_AT + 4].copy_from_slice(&oid.to_be_bytes());
        }
        Ok(())
    }
}

/// An empty one-dimensional array, with room for `rows` small elements.
fn header(rows: usize) -> Vec<u8> {
    let mut array = Vec::with_capacity(HEADER_LEN + 16 * rows);
    for field in [1i32, 0, 0, 0, 1] {
        // dimensions, has-NULL flag, element type, length, lower bound
        array.extend_from_slice(&field.to_be_bytes());
    }
    array
}

fn oids(metadata: &PgTypeMetadata) -> QueryResult<(u32, u32)> {
    let error = |e: &dyn std::fmt::Display| DieselError::QueryBuilderError(e.to_string().into());
    Ok((
        metadata.oid().map_err(|e| error(&e))?,
        metadata.array_oid().map_err(|e| error(&e))?,
    ))
}

/// Renders rows and checks that their values are plain binds of the same types as the first.
struct Encoder<'k, T, R> {
    source: ArraySource<'k>,
    /// `$1, $2, …`: the SQL of a row of plain binds (for `ArraySource::Rows`).
    placeholders: String,
    /// One per fragment rendered per row: the row's values, or each column's value.
    probers: Vec<Prober>,
    /// The value types of the first row (looked-up types as errors, which compare by name).
    types: Option<Vec<PgTypeMetadata>>,
    /// The binds of the last row encoded (reused from row to row).
    binds: RawBytesBindCollector<Pg>,
    _row: PhantomData<fn() -> (T, R)>,
}

impl<'k, T, R: RowValues<T>> Encoder<'k, T, R> {
    fn new(source: ArraySource<'k>) -> Self {
        let (placeholders, fragments) = match source {
            ArraySource::Rows { columns } => (
                (1..=columns)
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                1,
            ),
            ArraySource::Columns(columns) => (String::new(), columns.len()),
        };
        Encoder {
            source,
            placeholders,
            probers: vec![Prober::new::<T, R>(); fragments],
            types: None,
            binds: RawBytesBindCollector::new(),
            _row: PhantomData,
        }
    }

    fn width(&self) -> usize {
        match self.source {
            ArraySource::Rows { columns } => columns,
            ArraySource::Columns(columns) => columns.len(),
        }
    }

    /// The row's values, serialized without a connection into [`Self::binds`]; `false` when
    /// they are not plain.
    fn encode(&mut self, row: &R) -> bool {
        if !matches!(self.render(row, &mut NoTypeLookup), Ok(true)) {
            return false;
        }
        if R::SAME_SHAPE && self.types.is_some() {
            return true;
        }
        match &self.types {
            Some(types) => *types == self.binds.metadata,
            None => {
                let fits = self.binds.metadata.iter().all(|m| match oids(m) {
                    Ok((oid, array_oid)) => array_oid != 0 && oid != RECORD_OID,
                    // Looked up by name at send time (hstore, enums).
                    Err(_) => true,
                });
                if fits {
                    self.types = Some(self.binds.metadata.clone());
                }
                fits
            }
        }
    }

    /// The value types of `row`, looked up on the connection.
    fn types(
        mut self,
        row: &R,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> QueryResult<Vec<PgTypeMetadata>> {
        if self.render(row, lookup)? {
            Ok(self.binds.metadata)
        } else {
            Err(DieselError::QueryBuilderError(
                "a row sent as arrays no longer renders as plain values".into(),
            ))
        }
    }

    /// Collects the binds of the row's values (one per array) into [`Self::binds`]; `false`
    /// when a value is not exactly one bind parameter.
    fn render(
        &mut self,
        row: &R,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> QueryResult<bool> {
        self.binds.binds.clear();
        self.binds.metadata.clear();
        match self.source {
            ArraySource::Rows { .. } => {
                let values = ValuesOf::<R, T>::new(row);
                let probe =
                    self.probers[0].probe(&values, &self.placeholders, &mut self.binds, lookup)?;
                if probe != Probe::Binds {
                    return Ok(false);
                }
            }
            ArraySource::Columns(columns) => {
                for (column, prober) in columns.iter().zip(&mut self.probers) {
                    let value = ValueOf::<R, T>::new(row, column);
                    if prober.probe(&value, "$1", &mut self.binds, lookup)? != Probe::Binds {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(self.binds.binds.len() == self.width())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Records;
    use diesel::pg::PgMetadataLookup;
    use diesel::prelude::*;

    diesel::table! {
        use diesel::sql_types::*;
        use crate::sql_types::Hstore;
        labels (id) {
            id -> Int8,
            name -> Text,
            attrs -> Hstore,
        }
    }

    #[derive(Insertable)]
    #[diesel(table_name = labels)]
    struct NewLabel {
        name: &'static str,
        attrs: crate::HstoreMap,
    }

    /// Hands out `(oid, array_oid)` for every type looked up by name.
    struct Lookup(u32, u32);

    impl PgMetadataLookup for Lookup {
        fn lookup_type(&mut self, _: &str, _: Option<&str>) -> PgTypeMetadata {
            PgTypeMetadata::new(self.0, self.1)
        }
    }

    /// The parameter types and element types `retype` gives the arrays of two rows.
    fn retyped(lookup: &mut Lookup) -> QueryResult<Vec<(u32, u32)>> {
        let input = [("a", "x"), ("b", "y")].map(|(name, value)| NewLabel {
            name,
            attrs: [("k", Some(value))].into_iter().collect(),
        });
        let statement = diesel::insert_into(labels::table).values(&input);
        let rows: Vec<_> = statement.records.rows().iter().enumerate().collect();
        let arrays = ColumnArrays::build(&rows, ArraySource::Rows { columns: 2 }, 10, ARRAY_BYTES)
            .expect("plain rows");
        let mut out = RawBytesBindCollector::<Pg>::new();
        for array in &arrays.arrays {
            out.binds.push(Some(array.clone()));
            out.metadata.push(PgTypeMetadata::new(17, 1001));
        }
        arrays.retype(&mut out, 0, lookup)?;
        Ok(out
            .metadata
            .iter()
            .zip(&out.binds)
            .map(|(metadata, bytes)| {
                let bytes = bytes.as_deref().unwrap();
                let element = u32::from_be_bytes(
                    bytes[ELEMENT_TYPE_AT..ELEMENT_TYPE_AT + 4]
                        .try_into()
                        .unwrap(),
                );
                (metadata.oid().unwrap(), element)
            })
            .collect())
    }

    #[test]
    fn arrays_get_their_types_from_the_lookup() {
        // text[] of text; hstore's array type and hstore, as a connection looks them up.
        assert_eq!(
            retyped(&mut Lookup(16_385, 16_390)).unwrap(),
            [(1009, 25), (16_390, 16_385)]
        );
    }

    #[test]
    fn a_placeholder_oid_is_kept_for_the_connection_to_patch() {
        // diesel-async's first bind pass: OID 0 for types looked up by name.
        assert_eq!(retyped(&mut Lookup(0, 0)).unwrap(), [(1009, 25), (0, 0)]);
    }

    #[test]
    fn a_type_without_an_array_type_is_an_error() {
        assert!(retyped(&mut Lookup(16_385, 0)).is_err());
    }
}
