//! hstore: the SQL type, its binary codec, key expressions and migration helpers.
//!
//! - [`Hstore`] (also [`diesel_upsert::sql_types::Hstore`](crate::sql_types::Hstore)) is the
//!   PostgreSQL `hstore` type for `table!`, looked up by name because the extension's OID
//!   differs per database. `HashMap<String, Option<String>>` and
//!   `BTreeMap<String, Option<String>>` load from it and bind to it; `None` values are SQL
//!   `NULL` values.
//! - [`HstoreMap`] is the insertable newtype: Rust's coherence rules keep any crate but Diesel
//!   from making the std maps insertable, so `Insertable` structs use `HstoreMap` as field type
//!   (or `#[diesel(serialize_as = HstoreMap)]` on a map field).
//! - [`HstoreExpressionMethods::key`] reads one key, `("title" -> 'en')`, in queries and as a
//!   conflict target: `on_conflict_do(articles::title.key("en"), …)`, alone or in tuples.
//! - [`unique_index`] and [`required_keys`] write the `CREATE UNIQUE INDEX` and `CHECK`
//!   statements for migrations that make such targets possible.
//!
//! ```rust
//! # include!("../doctest_setup.rs");
//! use diesel_upsert::prelude::*;
//! use diesel_upsert::HstoreMap;
//!
//! # fn main() { run().unwrap() }
//! # fn run() -> diesel_upsert::Result<()> {
//! # let conn = &mut establish_connection();
//! // migrations: CREATE UNIQUE INDEX … ON "articles" (("title" -> 'en'));
//! let title: HstoreMap = [("en", Some("Tea")), ("de", None)].into_iter().collect();
//! let first: Article = diesel::insert_into(articles::table)
//!     .values(&NewArticle { title: Some(title), body: "green" })
//!     .upsert_and_get(articles::title.key("en"), conn)?;
//!
//! // The same English title again: the row is updated, not duplicated.
//! let title: HstoreMap = [("en", Some("Tea")), ("de", Some("Tee"))].into_iter().collect();
//! let second: Article = diesel::insert_into(articles::table)
//!     .values(&NewArticle { title: Some(title), body: "black" })
//!     .upsert_and_get(articles::title.key("en"), conn)?;
//! assert_eq!((second.id, second.body.as_str()), (first.id, "black"));
//!
//! let german: Option<String> = articles::table
//!     .find(first.id)
//!     .select(articles::title.key("de"))
//!     .get_result(conn)?;
//! assert_eq!(german.as_deref(), Some("Tee"));
//! # Ok(())
//! # }
//! ```

use diesel::deserialize::{self, FromSql, Queryable};
use diesel::pg::{Pg, PgValue};
use diesel::query_builder::QueryId;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::SqlType;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;

mod key;
mod map;
mod migrations;

pub use crate::migration::MigrationSql;
pub use key::{HstoreExpressionMethods, HstoreKey, HstoreOrNullableHstore};
pub use map::HstoreMap;
pub use migrations::{required_keys, unique_index};

/// The PostgreSQL `hstore` type (extension `hstore`): a map of text keys to text values or
/// `NULL`.
///
/// Looked up by name (`hstore`) on first use per connection: the extension's OID differs per
/// database. Use it in `table!` as `Hstore` or `Nullable<Hstore>`:
///
/// ```rust
/// diesel::table! {
///     use diesel::sql_types::*;
///     use diesel_upsert::sql_types::Hstore;
///
///     articles (id) {
///         id -> Int8,
///         title -> Nullable<Hstore>,
///         body -> Text,
///     }
/// }
/// # fn main() {}
/// ```
///
/// Rust values: `HashMap<String, Option<String>>`, `BTreeMap<String, Option<String>>` and
/// [`HstoreMap`] load from and bind to it (binary protocol); `None` values are `NULL` values.
#[derive(Debug, Clone, Copy, Default, SqlType, QueryId)]
#[diesel(postgres_type(name = "hstore"))]
pub struct Hstore;

// ---------------------------------------------------------------------------------------------
// Binary codec
//
// hstore's binary format (PostgreSQL's `hstore_send` / `hstore_recv`), all integers big-endian
// i32: the number of pairs, then per pair the key length and key bytes, and the value length
// and value bytes, or -1 for a NULL value. Text is in the client encoding, UTF-8 for Diesel.

/// Writes `pairs` in hstore's binary format.
fn encode<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, Option<&'a str>)>,
    out: &mut impl Write,
) -> serialize::Result {
    let len = pairs.len();
    let count = i32::try_from(len)
        .map_err(|_| format!("an hstore cannot hold {len} pairs (at most {})", i32::MAX))?;
    out.write_all(&count.to_be_bytes())?;
    for (key, value) in pairs {
        write_text(out, key, "key")?;
        match value {
            Some(value) => write_text(out, value, "value")?,
            None => out.write_all(&(-1_i32).to_be_bytes())?,
        }
    }
    Ok(IsNull::No)
}

fn write_text(
    out: &mut impl Write,
    text: &str,
    what: &str,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if text.contains('\0') {
        return Err(format!(
            "the hstore {what} {text:?} contains a NUL byte, which PostgreSQL text cannot hold"
        )
        .into());
    }
    let len = i32::try_from(text.len())
        .map_err(|_| format!("an hstore {what} of {} bytes is too long", text.len()))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Bytes that are not a valid hstore in binary format.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MalformedHstore(String);

impl fmt::Display for MalformedHstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed hstore value: {}", self.0)
    }
}

impl std::error::Error for MalformedHstore {}

/// Reads an hstore in binary format, handing each pair to `insert`, which returns whether the
/// key is new. Rejects negative counts and lengths (but -1 for a NULL value), truncated input,
/// trailing bytes, text that is not UTF-8 and repeated keys (PostgreSQL never sends one).
fn decode(
    bytes: &[u8],
    mut insert: impl FnMut(String, Option<String>) -> bool,
) -> std::result::Result<(), MalformedHstore> {
    let mut input = Reader(bytes);
    let count = input.i32("the number of pairs")?;
    if count < 0 {
        return Err(MalformedHstore(format!("negative number of pairs {count}")));
    }
    for pair in 0..count {
        let len = input.i32("a key length")?;
        let key = input.text(len, "key", pair)?;
        let value = match input.i32("a value length")? {
            -1 => None,
            len => Some(input.text(len, "value", pair)?),
        };
        if !insert(key, value) {
            return Err(MalformedHstore(format!("pair {pair} repeats a key")));
        }
    }
    if !input.0.is_empty() {
        return Err(MalformedHstore(format!(
            "{} bytes after the last pair",
            input.0.len()
        )));
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], MalformedHstore> {
        if self.0.len() < n {
            return Err(MalformedHstore(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i32(&mut self, what: &str) -> std::result::Result<i32, MalformedHstore> {
        let bytes = self.take(4, what)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The `len` bytes of the key or value of pair `pair`, as UTF-8 text.
    fn text(
        &mut self,
        len: i32,
        what: &str,
        pair: i32,
    ) -> std::result::Result<String, MalformedHstore> {
        let len = usize::try_from(len).map_err(|_| {
            MalformedHstore(format!(
                "the {what} of pair {pair} has negative length {len}"
            ))
        })?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| MalformedHstore(format!("the {what} of pair {pair} is not UTF-8: {e}")))
    }
}

impl ToSql<Hstore, Pg> for HashMap<String, Option<String>> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        encode(self.iter().map(|(k, v)| (k.as_str(), v.as_deref())), out)
    }
}

impl ToSql<Hstore, Pg> for BTreeMap<String, Option<String>> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        encode(self.iter().map(|(k, v)| (k.as_str(), v.as_deref())), out)
    }
}

impl FromSql<Hstore, Pg> for HashMap<String, Option<String>> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let mut map = HashMap::new();
        decode(value.as_bytes(), |k, v| map.insert(k, v).is_none())?;
        Ok(map)
    }
}

impl FromSql<Hstore, Pg> for BTreeMap<String, Option<String>> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let mut map = BTreeMap::new();
        decode(value.as_bytes(), |k, v| map.insert(k, v).is_none())?;
        Ok(map)
    }
}

// Lets models load `Hstore` columns straight into the std maps (`Option<map>` for
// `Nullable<Hstore>` comes from Diesel's impl for `Option`).
impl Queryable<Hstore, Pg> for HashMap<String, Option<String>> {
    type Row = Self;

    fn build(row: Self) -> deserialize::Result<Self> {
        Ok(row)
    }
}

impl Queryable<Hstore, Pg> for BTreeMap<String, Option<String>> {
    type Row = Self;

    fn build(row: Self) -> deserialize::Result<Self> {
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(pairs: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(pairs.iter().copied(), &mut out).unwrap();
        out
    }

    /// Decodes into a list, keeping repeated keys.
    fn decoded(bytes: &[u8]) -> Result<Vec<(String, Option<String>)>, MalformedHstore> {
        let mut pairs = Vec::new();
        decode(bytes, |k, v| {
            pairs.push((k, v));
            true
        })?;
        Ok(pairs)
    }

    fn be(n: i32) -> [u8; 4] {
        n.to_be_bytes()
    }

    #[test]
    fn the_binary_format_is_count_then_length_prefixed_pairs_with_minus_one_for_null() {
        let bytes = encoded(&[("a", Some("xy")), ("é", None)]);
        let mut expected = Vec::new();
        expected.extend(be(2));
        expected.extend(be(1));
        expected.extend(b"a");
        expected.extend(be(2));
        expected.extend(b"xy");
        expected.extend(be(2));
        expected.extend("é".as_bytes());
        expected.extend(be(-1));
        assert_eq!(bytes, expected);
        assert_eq!(
            decoded(&bytes).unwrap(),
            vec![
                ("a".to_owned(), Some("xy".to_owned())),
                ("é".to_owned(), None)
            ]
        );
    }

    #[test]
    fn an_empty_map_is_a_zero_count() {
        assert_eq!(encoded(&[]), be(0));
        assert_eq!(decoded(&be(0)).unwrap(), vec![]);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let valid = encoded(&[("k", Some("v"))]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty input", vec![]),
            ("short count", vec![0, 0, 1]),
            ("negative count", be(-1).to_vec()),
            (
                "count larger than the pairs",
                [be(2).as_slice(), &valid[4..]].concat(),
            ),
            ("huge count", be(i32::MAX).to_vec()),
            ("negative key length", [be(1), be(-1)].concat()),
            ("null-length key", [be(1), be(-1), be(-1)].concat()),
            (
                "value length below -1",
                [be(1).as_slice(), &be(1), b"k", &be(-2)].concat(),
            ),
            ("truncated key", [be(1).as_slice(), &be(5), b"ab"].concat()),
            ("truncated value", valid[..valid.len() - 1].to_vec()),
            ("missing value length", valid[..9].to_vec()),
            ("trailing bytes", [valid.as_slice(), &[0]].concat()),
            (
                "invalid UTF-8 key",
                [be(1).as_slice(), &be(1), &[0xff], &be(-1)].concat(),
            ),
            (
                "invalid UTF-8 value",
                [be(1).as_slice(), &be(1), b"k", &be(2), &[0xc3, 0x28]].concat(),
            ),
        ];
        for (what, bytes) in cases {
            assert!(decoded(&bytes).is_err(), "{what} was accepted: {bytes:?}");
        }
    }

    #[test]
    fn a_repeated_key_is_rejected() {
        let bytes = [
            be(2).as_slice(),
            &be(1),
            b"k",
            &be(-1),
            &be(1),
            b"k",
            &be(-1),
        ]
        .concat();
        assert!(decoded(&bytes).is_ok());
        let mut map = HashMap::new();
        assert!(decode(&bytes, |k, v| map.insert(k, v).is_none()).is_err());
    }

    #[test]
    fn a_nul_byte_cannot_be_encoded() {
        for pair in [("a\0", None), ("a", Some("b\0"))] {
            let mut out = Vec::new();
            assert!(encode([pair].into_iter(), &mut out).is_err());
        }
    }

    #[test]
    fn names_are_readable_with_a_stable_hash() {
        let index = unique_index("articles", "title", &["en"]).unwrap();
        assert_eq!(index.name, "articles_title_en_key_365c86db");
        assert_eq!(
            index.up,
            r#"CREATE UNIQUE INDEX "articles_title_en_key_365c86db" ON "articles" (("title" -> 'en'));"#
        );
        assert_eq!(
            index.down,
            r#"DROP INDEX "articles_title_en_key_365c86db";"#
        );
    }

    #[test]
    fn names_differ_however_the_parts_are_split() {
        let name = |t, c, k: &[&str]| unique_index(t, c, k).unwrap().name;
        assert_ne!(name("t", "c", &["a_b"]), name("t", "c", &["a", "b"]));
        assert_ne!(name("a_b", "c", &["k"]), name("a", "b_c", &["k"]));
        assert_ne!(name("t", "c", &["a", "b"]), name("t", "c", &["b", "a"]));
        assert_ne!(name("t", "c", &["'"]), name("t", "c", &["''"]));
        assert_ne!(
            unique_index("t", "c", &["k"]).unwrap().name,
            required_keys("t", "c", &["k"]).unwrap().name
        );
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_to_63_bytes() {
        let long = "ключ".repeat(20);
        for table in ["t", "a_very_long_table_name_that_goes_on_and_on_and_on"] {
            for name in [
                unique_index(table, "attrs", &[&long, "x"]).unwrap().name,
                required_keys(table, &long, &[&long]).unwrap().name,
            ] {
                assert!(name.len() <= 63, "{name} has {} bytes", name.len());
                assert!(name.starts_with(&table[..1]), "{name}");
            }
        }
        let a = unique_index("t", "attrs", &[&long, "x"]).unwrap().name;
        let b = unique_index("t", "attrs", &[&long, "y"]).unwrap().name;
        assert_ne!(a, b, "cut names still differ by their hash");
    }

    #[test]
    fn punctuation_becomes_single_underscores_in_names_and_stays_exact_in_the_sql() {
        let index = unique_index("my table", "attrs", &["it's a key!", "'"]).unwrap();
        assert!(
            index.name.starts_with("my_table_attrs_it_s_a_key_key_"),
            "{}",
            index.name
        );
        assert!(
            index
                .up
                .ends_with(r#"ON "my table" (("attrs" -> 'it''s a key!'), ("attrs" -> ''''));"#),
            "{}",
            index.up
        );
        let quoted = unique_index(r#"we"ird"#, r#"co"l"#, &[r"back\slash"]).unwrap();
        assert!(
            quoted
                .up
                .ends_with(r#"ON "we""ird" (("co""l" -> E'back\\slash'));"#),
            "{}",
            quoted.up
        );
    }

    #[test]
    fn helpers_reject_nul_bytes_empty_names_and_empty_key_lists() {
        for (table, column, keys) in [
            ("t", "c", &["a\0"][..]),
            ("t\0", "c", &["a"][..]),
            ("t", "c\0", &["a"][..]),
            ("", "c", &["a"][..]),
            ("t", "", &["a"][..]),
            ("t", "c", &[][..]),
        ] {
            assert!(
                matches!(
                    unique_index(table, column, keys),
                    Err(crate::Error::InvalidTarget { .. })
                ),
                "{table:?} {column:?} {keys:?}"
            );
            assert!(matches!(
                required_keys(table, column, keys),
                Err(crate::Error::InvalidTarget { .. })
            ));
        }
    }
}
