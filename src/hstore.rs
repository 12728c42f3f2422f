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
//! # include!("doctest_setup.rs");
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

use crate::error::{BuildError, Result};
use crate::query_builder::literal::{quote_identifier, quote_literal};
use crate::target::sealed::Element;
use crate::target::{HstoreKeyElement, KeyPart};
use diesel::deserialize::{self, FromSql, Queryable};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::{Pg, PgValue};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Nullable, SqlType, Text};
use diesel::{AsExpression, Column, FromSqlRow};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::ops::{Deref, DerefMut};

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

// ---------------------------------------------------------------------------------------------
// The insertable newtype

/// An hstore value that `Insertable` structs can hold: a `BTreeMap<String, Option<String>>`
/// that binds to `Hstore` and `Nullable<Hstore>` columns.
///
/// Diesel makes a value insertable through `AsExpression`, and Rust's coherence rules keep any
/// crate but Diesel from implementing it for the std maps. Use `HstoreMap` as field type, or
/// keep a map field and convert it with `#[diesel(serialize_as = HstoreMap)]` (HashMap and
/// BTreeMap convert with `From`). It dereferences to the map and loads from the column too.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel_upsert::HstoreMap;
/// use std::collections::HashMap;
///
/// #[derive(Insertable)]
/// #[diesel(table_name = articles)]
/// struct Draft {
///     #[diesel(serialize_as = HstoreMap)]
///     title: HashMap<String, Option<String>>,
///     body: String,
/// }
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel::QueryResult<()> {
/// # let conn = &mut establish_connection();
/// let title = HashMap::from([("en".to_owned(), Some("Tea".to_owned()))]);
/// let id: i64 = diesel::insert_into(articles::table)
///     .values(Draft { title, body: "green".into() })
///     .returning(articles::id)
///     .get_result(conn)?;
///
/// let loaded: HstoreMap = articles::table
///     .find(id)
///     .select(articles::title.assume_not_null())
///     .get_result(conn)?;
/// assert_eq!(loaded.get("en"), Some(&Some("Tea".to_owned())));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Hstore)]
pub struct HstoreMap(pub BTreeMap<String, Option<String>>);

impl HstoreMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map inside.
    pub fn into_inner(self) -> BTreeMap<String, Option<String>> {
        self.0
    }
}

impl ToSql<Hstore, Pg> for HstoreMap {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<Hstore, Pg>::to_sql(&self.0, out)
    }
}

impl FromSql<Hstore, Pg> for HstoreMap {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        FromSql::<Hstore, Pg>::from_sql(value).map(HstoreMap)
    }
}

impl Deref for HstoreMap {
    type Target = BTreeMap<String, Option<String>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for HstoreMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, Option<String>>> for HstoreMap {
    fn from(map: BTreeMap<String, Option<String>>) -> Self {
        HstoreMap(map)
    }
}

impl From<HashMap<String, Option<String>>> for HstoreMap {
    fn from(map: HashMap<String, Option<String>>) -> Self {
        HstoreMap(map.into_iter().collect())
    }
}

impl From<HstoreMap> for BTreeMap<String, Option<String>> {
    fn from(map: HstoreMap) -> Self {
        map.0
    }
}

impl From<HstoreMap> for HashMap<String, Option<String>> {
    fn from(map: HstoreMap) -> Self {
        map.0.into_iter().collect()
    }
}

/// `[("en", Some("Tea")), ("de", None)].into_iter().collect::<HstoreMap>()`; keys and values may
/// be `&str`, `String` or anything else that converts into `String`.
impl<K, V> FromIterator<(K, Option<V>)> for HstoreMap
where
    K: Into<String>,
    V: Into<String>,
{
    fn from_iter<I: IntoIterator<Item = (K, Option<V>)>>(pairs: I) -> Self {
        HstoreMap(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(Into::into)))
                .collect(),
        )
    }
}

impl<K, V> Extend<(K, Option<V>)> for HstoreMap
where
    K: Into<String>,
    V: Into<String>,
{
    fn extend<I: IntoIterator<Item = (K, Option<V>)>>(&mut self, pairs: I) {
        self.0.extend(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(Into::into))),
        );
    }
}

impl IntoIterator for HstoreMap {
    type Item = (String, Option<String>);
    type IntoIter = std::collections::btree_map::IntoIter<String, Option<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a HstoreMap {
    type Item = (&'a String, &'a Option<String>);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Option<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

// ---------------------------------------------------------------------------------------------
// Key expressions

/// The SQL types [`HstoreExpressionMethods`] applies to: [`Hstore`] and `Nullable<Hstore>`.
pub trait HstoreOrNullableHstore: SqlType {}

impl HstoreOrNullableHstore for Hstore {}
impl HstoreOrNullableHstore for Nullable<Hstore> {}

/// Methods on hstore expressions (columns of type `Hstore` or `Nullable<Hstore>`).
pub trait HstoreExpressionMethods: Expression + Sized {
    /// The value of `key`: `("title" -> 'en')`, of SQL type `Nullable<Text>` (`NULL` when the
    /// key is missing, its value is `NULL`, or the hstore is `NULL`).
    ///
    /// Takes a `&'static str` or a `String`. The key is written into the SQL as an escaped
    /// literal, never as a bind parameter: a conflict target must be, so that PostgreSQL can
    /// match it against the unique index on every execution of the prepared statement. A key
    /// holding `'`, `\`, `--`, `;` or any other text is safe; a key holding a NUL byte fails the
    /// statement before it is sent ([`Error::InvalidTarget`](crate::Error::InvalidTarget) from
    /// this crate's terminals, a `QueryBuilderError` from Diesel's).
    ///
    /// As conflict target, alone or in a tuple with other keys and columns, it needs a unique
    /// index on the same expression (see [`unique_index`]).
    ///
    /// ```rust
    /// # include!("doctest_setup.rs");
    /// use diesel_upsert::prelude::*;
    ///
    /// # fn main() { run().unwrap() }
    /// # fn run() -> diesel::QueryResult<()> {
    /// # let conn = &mut establish_connection();
    /// let query = articles::table
    ///     .select(articles::title.key("en"))
    ///     .filter(articles::title.key("ar").eq("شاي"))
    ///     .order_by(articles::title.key(String::from("en")));
    /// assert_eq!(
    ///     diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string(),
    ///     r#"SELECT ("articles"."title" -> 'en') FROM "articles" WHERE (("articles"."title" -> 'ar') = $1) ORDER BY ("articles"."title" -> 'en') -- binds: ["شاي"]"#
    /// );
    /// let titles: Vec<Option<String>> = query.load(conn)?;
    /// # assert!(titles.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn key(self, key: impl Into<Cow<'static, str>>) -> HstoreKey<Self> {
        HstoreKey {
            expr: self,
            key: key.into(),
        }
    }
}

impl<T> HstoreExpressionMethods for T
where
    T: Expression,
    T::SqlType: HstoreOrNullableHstore,
{
}

/// `(<hstore expression> -> 'key')`, made by [`HstoreExpressionMethods::key`]: an expression
/// of SQL type `Nullable<Text>`, and a conflict-target element when the expression is a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HstoreKey<E> {
    expr: E,
    key: Cow<'static, str>,
}

impl<E> Expression for HstoreKey<E>
where
    E: Expression,
    E::SqlType: HstoreOrNullableHstore,
{
    type SqlType = Nullable<Text>;
}

impl<E, GB> ValidGrouping<GB> for HstoreKey<E>
where
    E: ValidGrouping<GB>,
{
    type IsAggregate = E::IsAggregate;
}

impl<E, QS> AppearsOnTable<QS> for HstoreKey<E>
where
    E: AppearsOnTable<QS>,
    Self: Expression,
{
}

impl<E, QS> SelectableExpression<QS> for HstoreKey<E>
where
    E: SelectableExpression<QS>,
    Self: AppearsOnTable<QS>,
{
}

impl<E: QueryFragment<Pg>> QueryFragment<Pg> for HstoreKey<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(");
        self.expr.walk_ast(out.reborrow())?;
        out.push_sql(" -> ");
        out.push_sql(&quote_literal(&self.key)?);
        out.push_sql(")");
        Ok(())
    }
}

impl<E> QueryId for HstoreKey<E> {
    type QueryId = ();
    // The key is part of the SQL text: Diesel caches the prepared statement by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> Element<C::Table, HstoreKeyElement> for HstoreKey<C>
where
    C: Column,
    C::SqlType: HstoreOrNullableHstore,
{
    fn key_part(self) -> KeyPart {
        KeyPart::HstoreKey {
            column: C::NAME,
            key: self.key,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Migration helpers

/// SQL text for a migration: the object's name, the statement that creates it (for `up.sql`)
/// and the one that drops it (for `down.sql`). Each statement ends with `;`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigrationSql {
    /// The name of the index or constraint, at most 63 bytes (PostgreSQL's limit).
    pub name: String,
    /// The statement that creates it.
    pub up: String,
    /// The statement that drops it.
    pub down: String,
}

/// A unique index on one key or a set of keys of an hstore column: the index PostgreSQL infers
/// from the conflict target `column.key(k)` or `(column.key(k1), column.key(k2), …)`.
///
/// Like django-postgres-extra's `HStoreField(uniqueness=[…])`. Rows where one of the keys is
/// missing (or `NULL`) never conflict. `table` and `column` are quoted as single identifiers (a
/// schema-qualified table is not supported); keys are written as escaped literals, exactly as
/// the conflict target writes them. Errors with [`Error::InvalidTarget`](crate::Error::InvalidTarget)
/// for an empty name or key list and for a NUL byte.
///
/// The name is `<table>_<column>_<keys>_key_<hash>`: the readable part keeps letters, digits and
/// single underscores and is cut to fit 63 bytes; the hash (8 hex digits, FNV-1a of the exact
/// names and keys) keeps `["a_b"]` and `["a", "b"]`, or tables `a_b`.`c` and `a`.`b_c`, apart.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel::connection::SimpleConnection;
/// use diesel_upsert::hstore::unique_index;
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// let index = unique_index("articles", "title", &["en", "ar"])?;
/// assert_eq!(index.name, "articles_title_en_ar_key_e0ea6e5b");
/// assert_eq!(
///     index.up,
///     r#"CREATE UNIQUE INDEX "articles_title_en_ar_key_e0ea6e5b" ON "articles" (("title" -> 'en'), ("title" -> 'ar'));"#
/// );
/// assert_eq!(index.down, r#"DROP INDEX "articles_title_en_ar_key_e0ea6e5b";"#);
///
/// // Keys are literals, not SQL.
/// let index = unique_index("articles", "title", &["it's"])?;
/// assert!(index.up.ends_with(r#"(("title" -> 'it''s'));"#));
/// # let conn = &mut establish_connection();
/// # conn.batch_execute(&index.up)?;
/// # conn.batch_execute(&index.down)?;
/// # Ok(())
/// # }
/// ```
pub fn unique_index(table: &str, column: &str, keys: &[&str]) -> Result<MigrationSql> {
    let name = object_name("key", table, column, keys);
    let (table_sql, key_sql) = key_expressions(table, column, keys)?;
    let name_sql = quote_identifier(&name)?;
    Ok(MigrationSql {
        up: format!(
            "CREATE UNIQUE INDEX {name_sql} ON {table_sql} ({});",
            key_sql.join(", ")
        ),
        down: format!("DROP INDEX {name_sql};"),
        name,
    })
}

/// A `CHECK` constraint that requires keys of an hstore column to be present with a non-`NULL`
/// value: `CHECK (("col" -> 'k1') IS NOT NULL AND …)`.
///
/// Like django-postgres-extra's `HStoreField(required=[…])`. A `NULL` hstore fails the check
/// too. Quoting, errors and naming (`<table>_<column>_<keys>_required_<hash>`) as in
/// [`unique_index`].
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel::connection::SimpleConnection;
/// use diesel_upsert::hstore::required_keys;
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// # let conn = &mut establish_connection();
/// let check = required_keys("articles", "title", &["en"])?;
/// assert_eq!(
///     check.up,
///     r#"ALTER TABLE "articles" ADD CONSTRAINT "articles_title_en_required_009616ff" CHECK (("title" -> 'en') IS NOT NULL);"#
/// );
/// assert_eq!(
///     check.down,
///     r#"ALTER TABLE "articles" DROP CONSTRAINT "articles_title_en_required_009616ff";"#
/// );
/// conn.batch_execute(&check.up)?;
/// let missing = diesel::insert_into(articles::table)
///     .values(articles::body.eq("no title"))
///     .execute(conn);
/// assert!(missing.is_err());
/// # Ok(())
/// # }
/// ```
pub fn required_keys(table: &str, column: &str, keys: &[&str]) -> Result<MigrationSql> {
    let name = object_name("required", table, column, keys);
    let (table_sql, key_sql) = key_expressions(table, column, keys)?;
    let name_sql = quote_identifier(&name)?;
    let conditions: Vec<String> = key_sql.iter().map(|k| format!("{k} IS NOT NULL")).collect();
    Ok(MigrationSql {
        up: format!(
            "ALTER TABLE {table_sql} ADD CONSTRAINT {name_sql} CHECK ({});",
            conditions.join(" AND ")
        ),
        down: format!("ALTER TABLE {table_sql} DROP CONSTRAINT {name_sql};"),
        name,
    })
}

/// `"table"` and `("column" -> 'key')` for every key.
fn key_expressions(
    table: &str,
    column: &str,
    keys: &[&str],
) -> std::result::Result<(String, Vec<String>), BuildError> {
    if keys.is_empty() {
        return Err(BuildError::invalid_target(
            "an hstore index or constraint needs at least one key",
        ));
    }
    let column_sql = quote_identifier(column)?;
    let key_sql = keys
        .iter()
        .map(|key| Ok(format!("({column_sql} -> {})", quote_literal(key)?)))
        .collect::<std::result::Result<_, BuildError>>()?;
    Ok((quote_identifier(table)?, key_sql))
}

/// PostgreSQL truncates longer names (NAMEDATALEN - 1).
const MAX_NAME_BYTES: usize = 63;

/// `<table>_<column>_<keys>_<kind>_<hash>`, at most 63 bytes. The readable part is cut on a
/// character boundary; the hash covers the exact (length-prefixed) inputs, so names differ
/// whenever the inputs do, however the readable parts look.
fn object_name(kind: &str, table: &str, column: &str, keys: &[&str]) -> String {
    let mut hash = Fnv1a::new();
    for part in [kind, table, column].iter().chain(keys) {
        hash.write_part(part);
    }
    let suffix = format!("_{kind}_{:08x}", hash.finish32());
    let mut readable = [table, column]
        .iter()
        .chain(keys)
        .map(|part| readable_part(part))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    let budget = MAX_NAME_BYTES - suffix.len();
    if readable.len() > budget {
        let mut cut = budget;
        while !readable.is_char_boundary(cut) {
            cut -= 1;
        }
        readable.truncate(cut);
        readable.truncate(readable.trim_end_matches('_').len());
    }
    if readable.is_empty() {
        // Only when every name is made of punctuation: the suffix alone starts with `_`.
        readable.push_str("hstore");
    }
    readable.push_str(&suffix);
    readable
}

/// Letters and digits kept, every run of other characters turned into one `_`.
fn readable_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.truncate(out.trim_end_matches('_').len());
    out
}

/// 64-bit FNV-1a: a small hash whose value never changes between Rust versions or runs (std's
/// `DefaultHasher` makes no such promise), folded to 32 bits for names.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Writes the length, then the bytes: `["a_b"]` and `["a", "b"]` hash differently.
    fn write_part(&mut self, part: &str) {
        self.write(&(part.len() as u64).to_le_bytes());
        self.write(part.as_bytes());
    }

    fn finish32(&self) -> u32 {
        ((self.0 >> 32) ^ self.0) as u32
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
