//! Migration helpers: the SQL of unique indexes on keys and of required-key constraints.

use crate::error::{Error, Result};
use crate::literal::{quote_identifier, quote_literal};

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
/// # include!("../doctest_setup.rs");
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
/// # include!("../doctest_setup.rs");
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
) -> std::result::Result<(String, Vec<String>), Error> {
    if keys.is_empty() {
        return Err(Error::invalid_target(
            "an hstore index or constraint needs at least one key",
        ));
    }
    let column_sql = quote_identifier(column)?;
    let key_sql = keys
        .iter()
        .map(|key| Ok(format!("({column_sql} -> {})", quote_literal(key)?)))
        .collect::<std::result::Result<_, Error>>()?;
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
