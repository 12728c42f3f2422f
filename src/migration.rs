//! Migration helpers: the SQL of the unique index a conflict target needs, and the naming every
//! helper shares (the hstore helpers are in [`hstore`](crate::hstore)).

use crate::error::{Error, Result};
use crate::literal::{self, quote_identifier};
use crate::target::IntoConflictTarget;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::Table;

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

/// The unique index PostgreSQL infers from `target` on `table`: for a migration's `up.sql`
/// and `down.sql`.
///
/// `target` is what [`on_conflict_do`](crate::UpsertDsl::on_conflict_do) takes: a column, an
/// hstore key, an [`index_expression`](crate::index_expression), or a tuple of them (put a
/// distributed table's distribution column first). The elements are written exactly as the
/// conflict target writes them, values as escaped literals. The name is
/// `<table>_<elements>_key_<hash>`, as for [`hstore::unique_index`](crate::hstore::unique_index).
/// Errors with [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a named constraint
/// (it already has its index) and for what the target itself cannot write.
///
/// ```rust
/// # include!("doctest_setup.rs");
/// use diesel::connection::SimpleConnection;
/// use diesel_upsert::{index_expression, unique_index};
///
/// diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
///
/// # fn main() { run().unwrap() }
/// # fn run() -> diesel_upsert::Result<()> {
/// let index = unique_index(accounts::table, index_expression(lower(accounts::email)))?;
/// assert_eq!(index.name, "accounts_lower_email_key_9f4c1d4d");
/// assert_eq!(
///     index.up,
///     r#"CREATE UNIQUE INDEX "accounts_lower_email_key_9f4c1d4d" ON "accounts" ((lower("email")));"#
/// );
/// assert_eq!(index.down, r#"DROP INDEX "accounts_lower_email_key_9f4c1d4d";"#);
/// # let conn = &mut establish_connection();
/// # conn.batch_execute(&index.down)?;
/// # conn.batch_execute(&index.up)?;
/// # Ok(())
/// # }
/// ```
pub fn unique_index<T, X, M>(table: T, target: X) -> Result<MigrationSql>
where
    T: Table,
    T::FromClause: QueryFragment<Pg>,
    X: IntoConflictTarget<T, M>,
{
    let target = target.into_target();
    target.check()?;
    let Some(parts) = target.parts() else {
        return Err(Error::invalid_target(
            "a named constraint already has its index; unique_index writes the index of a target \
             of columns, keys and expressions",
        ));
    };
    let (table_sql, _) = literal::render(&table.from_clause())?;
    // `"shop"."accounts"`: the name is the last identifier, the schema what comes before it.
    let table_name = literal::column_names_of(&table_sql)
        .pop()
        .unwrap_or_default();
    let schema = table_sql
        .strip_suffix(&quote_identifier(&table_name)?)
        .unwrap_or_default();
    let elements = parts
        .iter()
        .map(|part| literal::render(&part.unqualified()).map(|(sql, _)| sql))
        .collect::<diesel::QueryResult<Vec<_>>>()?;
    let mut name_parts = vec![table_name.as_str()];
    name_parts.extend(elements.iter().map(String::as_str));
    let name = object_name("key", &name_parts, "index");
    let name_sql = quote_identifier(&name)?;
    Ok(MigrationSql {
        up: format!(
            "CREATE UNIQUE INDEX {name_sql} ON {table_sql} ({});",
            elements.join(", ")
        ),
        down: format!("DROP INDEX {schema}{name_sql};"),
        name,
    })
}

/// PostgreSQL truncates longer names (NAMEDATALEN - 1).
const MAX_NAME_BYTES: usize = 63;

/// `<parts>_<kind>_<hash>`, at most 63 bytes. The readable part is cut on a character
/// boundary; the hash covers the exact (length-prefixed) inputs, so names differ whenever the
/// inputs do, however the readable parts look. `fallback` is the readable part when every part
/// is punctuation.
pub(crate) fn object_name(kind: &str, parts: &[&str], fallback: &str) -> String {
    let mut hash = Fnv1a::new();
    for part in std::iter::once(&kind).chain(parts) {
        hash.write_part(part);
    }
    let suffix = format!("_{kind}_{:08x}", hash.finish32());
    let mut readable = parts
        .iter()
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
        readable.push_str(fallback);
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
