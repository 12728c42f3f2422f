//! Migration helpers: the SQL of unique indexes on keys and of required-key constraints.

use crate::error::{Error, Result};
use crate::literal::{quote_identifier, quote_literal};
use crate::migration::{object_name, MigrationSql};

/// A unique index on one key or a set of keys of an hstore column: the index PostgreSQL infers
/// from the conflict target `column.key(k)` or `(column.key(k1), column.key(k2), …)`.
///
/// Like django-postgres-extra's `HStoreField(uniqueness=[…])`. For an index that also holds
/// plain columns (a distributed table's distribution column first, say), use the typed
/// [`diesel_upsert::unique_index`](crate::unique_index) with the same target the upserts name:
/// `unique_index(articles::table, (articles::tenant, articles::title.key("en")))`. Rows where one of the keys is
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
    let name = object_name("key", &[&[table, column], keys].concat(), "hstore");
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
    let name = object_name("required", &[&[table, column], keys].concat(), "hstore");
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
