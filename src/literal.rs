//! The one place where text becomes SQL without a bind parameter.
//!
//! PostgreSQL infers the arbiter index of `ON CONFLICT` from the target expressions and the
//! index predicate. A bind parameter there works for the custom plans of the first five
//! executions of a prepared statement and fails once PostgreSQL switches to a generic plan, so
//! hstore keys and predicate values are written as literals — always through [`quote_literal`].

use crate::error::Error;
use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata};
use diesel::query_builder::{QueryBuilder, QueryFragment};
use diesel::result::QueryResult;

/// Quotes `value` as a PostgreSQL string literal that means the same under
/// `standard_conforming_strings` on and off.
///
/// Quotes are doubled. A value holding a backslash is written as an escape string (`E'…'`) with
/// backslashes doubled, the only form PostgreSQL reads the same way under both settings (this
/// is what PostgreSQL's own `quote_literal` does). A NUL byte cannot be part of a PostgreSQL
/// string and is an error.
pub(crate) fn quote_literal(value: &str) -> Result<String, Error> {
    if value.contains('\0') {
        return Err(Error::invalid_target(format!(
            "the literal {value:?} contains a NUL byte, which PostgreSQL text cannot hold"
        )));
    }
    let mut quoted = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        quoted.push('E');
    }
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    Ok(quoted)
}

/// Quotes `name` as a PostgreSQL identifier: in double quotes, double quotes doubled. Used
/// where SQL text is produced without Diesel's query builder (migration helpers). An empty name
/// or a NUL byte is an error.
pub(crate) fn quote_identifier(name: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid_target(
            "an identifier cannot be empty in PostgreSQL",
        ));
    }
    if name.contains('\0') {
        return Err(Error::invalid_target(format!(
            "the identifier {name:?} contains a NUL byte, which PostgreSQL text cannot hold"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// What a scanned piece of SQL text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'s> {
    /// Anything outside quotes and bind parameters, one character at a time.
    Char(char),
    /// A quoted string, dollar-quoted string or quoted identifier, verbatim.
    Quoted(&'s str),
    /// A bind parameter `$n` (1-based).
    Bind(usize),
}

/// Splits SQL text written by Diesel into characters, quoted parts and bind parameters.
pub(crate) fn scan_sql<'s>(sql: &'s str, mut on_token: impl FnMut(Token<'s>)) {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let escape_string = (c == b'E' || c == b'e')
            && bytes.get(i + 1) == Some(&b'\'')
            && !ident_char_before(bytes, i);
        if c == b'\'' || c == b'"' || escape_string {
            let start = i;
            let quote = if escape_string { b'\'' } else { c };
            i += if escape_string { 2 } else { 1 };
            while i < bytes.len() {
                if escape_string && bytes[i] == b'\\' {
                    i += 2;
                } else if bytes[i] == quote {
                    if bytes.get(i + 1) == Some(&quote) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            let end = i.min(bytes.len());
            on_token(Token::Quoted(&sql[start..end]));
        } else if c == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let start = i + 1;
            i = start;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = sql[start..i].parse().unwrap_or(usize::MAX);
            on_token(Token::Bind(n));
        } else if c == b'$' && !ident_char_before(bytes, i) {
            // A dollar-quoted string `$tag$ … $tag$` (only in hand-written `sql()` fragments).
            let tag_end = sql[i + 1..].find('$').map(|p| i + 1 + p).filter(|&p| {
                sql[i + 1..p]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            match tag_end {
                Some(tag_end) => {
                    let tag = &sql[i..=tag_end];
                    let close = sql[tag_end + 1..]
                        .find(tag)
                        .map_or(sql.len(), |p| tag_end + 1 + p + tag.len());
                    on_token(Token::Quoted(&sql[i..close]));
                    i = close;
                }
                None => {
                    on_token(Token::Char('$'));
                    i += 1;
                }
            }
        } else {
            let ch = sql[i..].chars().next().unwrap_or('\u{fffd}');
            on_token(Token::Char(ch));
            i += ch.len_utf8();
        }
    }
}

fn ident_char_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// Splits a comma-separated list written by Diesel at its top level (outside parentheses and
/// quotes) and returns the pieces, trimmed.
pub(crate) fn split_top_level(sql: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut depth = 0usize;
    scan_sql(sql, |token| {
        let current = pieces.last_mut().expect("never empty");
        match token {
            Token::Char(',') if depth == 0 => pieces.push(String::new()),
            Token::Char(c) => {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                current.push(c);
            }
            Token::Quoted(q) => current.push_str(q),
            Token::Bind(n) => current.push_str(&format!("${n}")),
        }
    });
    pieces
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Reads a quoted identifier (`"na""me"`) at the start of `sql`; returns the name and the rest.
pub(crate) fn leading_identifier(sql: &str) -> Option<(String, &str)> {
    let rest = sql.strip_prefix('"')?;
    let mut name = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().map(|&(_, c)| c) == Some('"') {
                chars.next();
                name.push('"');
            } else {
                return Some((name, &rest[i + 1..]));
            }
        } else {
            name.push(c);
        }
    }
    None
}

/// What the statements need to write about table `T`, read once per process and table type.
#[derive(Debug)]
pub(crate) struct TableNames {
    /// The table as written in SQL: `"products"`, `"shop"."products"`.
    pub(crate) sql: String,
    /// The primary-key columns.
    pub(crate) primary_key: Vec<String>,
}

/// The names of table `T`, read once per process and table type.
///
/// They are read from the SQL Diesel writes for the table and for `T::PrimaryKey` because
/// Diesel offers no public typed route from a key (a column, or a tuple of columns) to its
/// names: its own `ColumnList` is crate-private, and a trait of this crate cannot be
/// implemented for both `C: Column` and tuples of columns without a marker type parameter that
/// `Table::PrimaryKey` does not carry. (The table's own name and schema are likewise only
/// reachable through its `QueryFragment`.)
pub(crate) fn table_names_of<T>(table: &T) -> std::sync::Arc<TableNames>
where
    T: diesel::Table + 'static,
    T::FromClause: QueryFragment<Pg>,
    T::PrimaryKey: QueryFragment<Pg>,
{
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashMap<TypeId, Arc<TableNames>>>> = OnceLock::new();
    let cache = NAMES.get_or_init(Default::default);
    if let Some(found) = cache
        .lock()
        .ok()
        .and_then(|c| c.get(&TypeId::of::<T>()).cloned())
    {
        return found;
    }
    let names = Arc::new(TableNames {
        sql: render(&table.from_clause())
            .map(|(sql, _)| sql)
            .unwrap_or_default(),
        primary_key: render(&table.primary_key())
            .map(|(sql, _)| column_names_of(&sql))
            .unwrap_or_default(),
    });
    if let Ok(mut cache) = cache.lock() {
        cache.insert(TypeId::of::<T>(), names.clone());
    }
    names
}

/// The columns an `AsChangeset` assigns (`"qty" = …, "name" = …`): read from its SQL, as
/// Diesel offers no typed route from a changeset to the columns it assigns.
pub(crate) fn assigned_columns<CS: QueryFragment<Pg>>(changeset: &CS) -> Vec<String> {
    render(changeset)
        .map(|(sql, _)| {
            split_top_level(&sql)
                .iter()
                .filter_map(|assignment| leading_identifier(assignment).map(|(name, _)| name))
                .collect()
        })
        .unwrap_or_default()
}

/// The column names of a list of (possibly table-qualified) columns written by Diesel, such as
/// `"products"."id"` or `"t"."a", "t"."b"`: the last identifier of each element.
pub(crate) fn column_names_of(sql: &str) -> Vec<String> {
    split_top_level(sql)
        .iter()
        .filter_map(|element| {
            let mut rest = element.as_str();
            let mut last = None;
            while let Some((name, tail)) = leading_identifier(rest) {
                last = Some(name);
                rest = tail.strip_prefix('.').unwrap_or(tail);
                if tail.is_empty() || !tail.starts_with('.') {
                    break;
                }
            }
            last
        })
        .collect()
}

/// The number of bind parameters a fragment writes, from its SQL text alone: its values are
/// not serialized.
pub(crate) fn count_binds<F: QueryFragment<Pg> + ?Sized>(fragment: &F) -> QueryResult<usize> {
    let mut builder = <Pg as diesel::backend::Backend>::QueryBuilder::default();
    fragment.to_sql(&mut builder, &Pg)?;
    let mut count = 0;
    scan_sql(&builder.finish(), |token| {
        if let Token::Bind(_) = token {
            count += 1;
        }
    });
    Ok(count)
}

/// The SQL text of a fragment together with its binds, as Diesel would send them.
pub(crate) fn render<F: QueryFragment<Pg> + ?Sized>(
    fragment: &F,
) -> QueryResult<(
    String,
    diesel::query_builder::bind_collector::RawBytesBindCollector<Pg>,
)> {
    let mut builder = <Pg as diesel::backend::Backend>::QueryBuilder::default();
    fragment.to_sql(&mut builder, &Pg)?;
    let mut binds = diesel::query_builder::bind_collector::RawBytesBindCollector::<Pg>::new();
    fragment.collect_binds(&mut binds, &mut NoTypeLookup, &Pg)?;
    Ok((builder.finish(), binds))
}

/// A metadata lookup for rendering without a connection: types looked up by name (enums,
/// extension types) cannot be written as literals.
pub(crate) struct NoTypeLookup;

impl PgMetadataLookup for NoTypeLookup {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let key = diesel::pg::PgMetadataCacheKey::new(
            schema.map(|s| s.to_owned().into()),
            type_name.to_owned().into(),
        );
        PgTypeMetadata::from_result(Err(diesel::pg::FailedToLookupTypeError::new(key)))
    }
}

/// Writes a fragment as SQL text with every bind parameter replaced by an escaped literal.
///
/// Used for `index_predicate` and index expressions, which PostgreSQL must match against the
/// predicate or the expressions of a unique index while planning: a bind parameter there
/// breaks generic plans. `what` names the fragment in errors ("the index predicate").
/// Supported bind types: bool, the integer types, float4/float8, text/varchar/bpchar/name,
/// uuid, and NULL.
pub(crate) fn inline_binds<F: QueryFragment<Pg> + ?Sized>(
    fragment: &F,
    what: &str,
) -> Result<String, Error> {
    let (sql, binds) = render(fragment)
        .map_err(|e| Error::invalid_target(format!("cannot write {what} as SQL: {e}")))?;
    let literals = binds
        .binds
        .iter()
        .zip(&binds.metadata)
        .map(|(value, metadata)| bind_literal(value.as_deref(), metadata, what))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::with_capacity(sql.len());
    let mut missing = None;
    scan_sql(&sql, |token| match token {
        Token::Char(c) => out.push(c),
        Token::Quoted(q) => out.push_str(q),
        Token::Bind(n) => match literals.get(n.wrapping_sub(1)) {
            Some(literal) => out.push_str(literal),
            None => missing = Some(n),
        },
    });
    match missing {
        Some(n) => Err(Error::invalid_target(format!(
            "{what} refers to bind parameter ${n}, which it does not bind"
        ))),
        None => Ok(out),
    }
}

fn bind_literal(
    value: Option<&[u8]>,
    metadata: &PgTypeMetadata,
    what: &str,
) -> Result<String, Error> {
    let oid = metadata.oid().map_err(|e| {
        Error::invalid_target(format!(
            "a value in {what} is of a type looked up by name and cannot be written as a literal ({e}); \
             write the value with `diesel::dsl::sql` instead"
        ))
    })?;
    let Some(bytes) = value else {
        return Ok("NULL".to_owned());
    };
    let unsupported = || {
        Error::invalid_target(format!(
            "a value in {what} is of type oid {oid}, which cannot be written as a literal; \
             supported: bool, int2/int4/int8, float4/float8, text/varchar/bpchar/name, uuid"
        ))
    };
    let fixed = |n: usize| -> Result<&[u8], Error> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(unsupported())
        }
    };
    Ok(match oid {
        16 => if fixed(1)?[0] != 0 { "true" } else { "false" }.to_owned(),
        21 => format!(
            "'{}'::int2",
            i16::from_be_bytes(fixed(2)?.try_into().map_err(|_| unsupported())?)
        ),
        23 => format!(
            "'{}'::int4",
            i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| unsupported())?)
        ),
        20 => format!(
            "'{}'::int8",
            i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| unsupported())?)
        ),
        700 => float_literal(
            f32::from_be_bytes(fixed(4)?.try_into().map_err(|_| unsupported())?).into(),
            "float4",
        ),
        701 => float_literal(
            f64::from_be_bytes(fixed(8)?.try_into().map_err(|_| unsupported())?),
            "float8",
        ),
        25 | 1043 | 1042 | 19 => {
            let text = std::str::from_utf8(bytes).map_err(|_| unsupported())?;
            let type_name = match oid {
                25 => "text",
                1043 => "varchar",
                1042 => "bpchar",
                _ => "name",
            };
            format!("{}::{type_name}", quote_literal(text)?)
        }
        2950 => {
            let b = fixed(16)?;
            let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "'{}-{}-{}-{}-{}'::uuid",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        }
        _ => return Err(unsupported()),
    })
}

/// A piece of SQL text written by Diesel for an expression on one table: text, or a reference
/// to a column of the table (written by Diesel as `<table>.<"column">`), as `C`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Piece<C> {
    Sql(String),
    Column(C),
}

/// Splits `sql`, written by Diesel for an expression on the table Diesel writes as `table_sql`
/// (`"accounts"`, `"shop"."accounts"`), into text and the references to the table's columns,
/// so that a statement can read those columns from a row of its own choosing. Quoted strings
/// are never taken apart: a literal holding `"accounts"."email"` stays text. Read from the SQL
/// because Diesel offers no typed route from an expression to the columns it reads.
pub(crate) fn column_references<C>(
    sql: &str,
    table_sql: &str,
    mut column: impl FnMut(String) -> C,
) -> Vec<Piece<C>> {
    fn tokens(sql: &str) -> Vec<Token<'_>> {
        let mut tokens = Vec::new();
        scan_sql(sql, |t| tokens.push(t));
        tokens
    }
    let table = tokens(table_sql);
    let tokens = tokens(sql);
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < tokens.len() {
        let name = tokens[i..]
            .strip_prefix(table.as_slice())
            .and_then(|rest| match rest {
                [Token::Char('.'), Token::Quoted(quoted), ..] => leading_identifier(quoted)
                    .filter(|(_, tail)| tail.is_empty())
                    .map(|(name, _)| name),
                _ => None,
            });
        if let Some(name) = name {
            if !text.is_empty() {
                pieces.push(Piece::Sql(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Column(column(name)));
            i += table.len() + 2;
            continue;
        }
        match tokens[i] {
            Token::Char(c) => text.push(c),
            Token::Quoted(q) => text.push_str(q),
            Token::Bind(n) => text.push_str(&format!("${n}")),
        }
        i += 1;
    }
    if !text.is_empty() {
        pieces.push(Piece::Sql(text));
    }
    pieces
}

fn float_literal(value: f64, type_name: &str) -> String {
    if value.is_nan() {
        format!("'NaN'::{type_name}")
    } else if value.is_infinite() {
        let sign = if value < 0.0 { "-" } else { "" };
        format!("'{sign}Infinity'::{type_name}")
    } else {
        format!("'{value:?}'::{type_name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_single_quoted_with_quotes_doubled() {
        assert_eq!(quote_literal("en").unwrap(), "'en'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(
            quote_literal("'; DROP TABLE x; --").unwrap(),
            "'''; DROP TABLE x; --'"
        );
        assert_eq!(quote_literal("ключ 🔑").unwrap(), "'ключ 🔑'");
    }

    #[test]
    fn backslashes_make_an_escape_string() {
        assert_eq!(quote_literal(r"a\b").unwrap(), r"E'a\\b'");
        assert_eq!(quote_literal(r"\'").unwrap(), r"E'\\'''");
    }

    #[test]
    fn a_nul_byte_is_rejected() {
        assert!(matches!(
            quote_literal("a\0b"),
            Err(Error::InvalidTarget { .. })
        ));
    }

    #[test]
    fn identifiers_are_double_quoted_with_quotes_doubled() {
        assert_eq!(quote_identifier("articles").unwrap(), r#""articles""#);
        assert_eq!(quote_identifier(r#"a"b"#).unwrap(), r#""a""b""#);
        assert!(quote_identifier("").is_err());
        assert!(quote_identifier("a\0b").is_err());
    }

    #[test]
    fn scanner_sees_binds_only_outside_quotes() {
        let mut binds = Vec::new();
        scan_sql(r#"$1 = '$2' AND "$3" = E'\'$4' AND $$ $5 $$ AND $6"#, |t| {
            if let Token::Bind(n) = t {
                binds.push(n)
            }
        });
        assert_eq!(binds, vec![1, 6]);
    }

    #[test]
    fn column_names_are_read_from_qualified_lists() {
        assert_eq!(column_names_of(r#""products"."id""#), vec!["id"]);
        assert_eq!(
            column_names_of(r#""s"."t"."a", "t"."b""c""#),
            vec!["a", "b\"c"]
        );
    }

    #[test]
    fn column_references_are_found_outside_quotes_only() {
        use Piece::{Column, Sql};
        assert_eq!(
            column_references(
                r#"coalesce("accounts"."nick", '"accounts"."x"') || "accounts"."na""me""#,
                r#""accounts""#,
                |name| name
            ),
            vec![
                Sql("coalesce(".into()),
                Column("nick".into()),
                Sql(r#", '"accounts"."x"') || "#.into()),
                Column("na\"me".into()),
            ]
        );
        assert_eq!(
            column_references(
                r#"lower("s"."t"."email") = "t"."email""#,
                r#""s"."t""#,
                |n| n
            ),
            vec![
                Sql("lower(".into()),
                Column("email".into()),
                Sql(r#") = "t"."email""#.into()),
            ]
        );
    }

    #[test]
    fn top_level_split_ignores_commas_in_parentheses_and_quotes() {
        assert_eq!(
            split_top_level(r#""a" = f(1, 2), "b" = ',', "c" = $1"#),
            vec![r#""a" = f(1, 2)"#, r#""b" = ','"#, r#""c" = $1"#]
        );
    }
}
