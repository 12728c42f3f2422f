//! What the crate reads from PostgreSQL's catalog: the types, collations and NULL semantics of
//! the conflict key, the columns of a named constraint, and the table facts that decide which
//! statements are exact (partitioned tables, `BEFORE` triggers, the server version). Also the
//! classification of the server's errors that depends on the call.
//!
//! A table's facts are read once per process and table (one query) and kept: like Diesel's
//! statement cache, the cache assumes the schema of a table does not change under a running
//! program. Restart after changing a conflict key's type, collation or triggers.

use crate::error::{BuildError, Error, Result};
use crate::query_builder::literal;
use crate::query_builder::statement::UpsertStatement;
use crate::target::{KeyPart, Target};
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::QueryResult;
use diesel::{Connection, RunQueryDsl};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A column's type as PostgreSQL stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnType {
    pub(crate) name: String,
    /// `format_type(atttypid, atttypmod)`: `numeric(10,2)`, `citext`, `"MyType"`.
    pub(crate) sql: String,
    /// The column's collation as a qualified identifier, unless it is the database default.
    pub(crate) collation: Option<String>,
    /// Whether the collation compares strings by their bytes (every collation but ICU ones
    /// created with `deterministic = false`).
    pub(crate) deterministic: bool,
    pub(crate) oid: u32,
    pub(crate) typmod: i32,
}

impl ColumnType {
    /// Whether two values of this type are equal exactly when their binary encodings are, and
    /// a value is stored with the bytes it was sent with (no typmod rounding or padding).
    pub(crate) fn byte_exact(&self) -> bool {
        // bool, bytea, "char", int8, int2, int4, text, oid, varchar, date, uuid
        const BYTE_EXACT: &[u32] = &[16, 17, 18, 20, 21, 23, 25, 26, 1043, 1082, 2950];
        BYTE_EXACT.contains(&self.oid) && self.typmod == -1 && self.deterministic
    }
}

/// The facts about one table and conflict target that the statements depend on.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) server_version: i32,
    pub(crate) partitioned: bool,
    /// The table has row-level `BEFORE INSERT` or `BEFORE UPDATE` triggers, which may rewrite
    /// a key on its way in.
    pub(crate) before_triggers: bool,
    /// Every column of the table, in table order.
    pub(crate) columns: Vec<ColumnType>,
    /// The columns of a named constraint target, in constraint order (empty for other targets).
    pub(crate) constraint_columns: Vec<String>,
    /// The arbiter index treats NULLs as equal (`UNIQUE NULLS NOT DISTINCT`).
    pub(crate) nulls_not_distinct: bool,
    /// The target is an exclusion constraint.
    pub(crate) exclusion: bool,
}

impl Catalog {
    /// The type of a column of the table.
    pub(crate) fn column(&self, name: &str) -> Result<&ColumnType> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::internal(format!("column {name:?} is not in the catalog")))
    }

    /// The elements of the conflict key: the target's own, or the columns of the named
    /// constraint, which the insert must supply (`supplied`).
    pub(crate) fn key(&self, target: &Target, supplied: &[&'static str]) -> Result<Vec<KeyPart>> {
        if let Some(parts) = target.parts() {
            return Ok(parts.to_vec());
        }
        let constraint = target.constraint().unwrap_or_default();
        self.constraint_columns
            .iter()
            .map(|name| {
                supplied
                    .iter()
                    .find(|c| **c == name)
                    .map(|c| KeyPart::Column(c))
                    .ok_or_else(|| {
                        BuildError::invalid_target(format!(
                            "constraint {constraint:?} covers column {name:?}, which the insert does not supply"
                        ))
                        .into()
                    })
            })
            .collect()
    }

    /// Whether the inserted flag can be read from the system column `xmax` (not on partitioned
    /// tables) or from PostgreSQL 18's `RETURNING old`.
    pub(crate) fn inserted_flag(&self) -> InsertedFlag {
        if !self.partitioned {
            InsertedFlag::Xmax
        } else if self.server_version >= 180_000 {
            InsertedFlag::OldRow
        } else {
            InsertedFlag::Unknown
        }
    }
}

/// How a statement tells an inserted row from an updated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertedFlag {
    /// `(xmax = 0)`: a row inserted by this transaction has no deleting transaction.
    Xmax,
    /// PostgreSQL 18: `(old.<primary key> IS NULL)`.
    OldRow,
    /// No exact method in one statement on this table and server (a partitioned table before
    /// PostgreSQL 18): `NULL`.
    Unknown,
    /// The statement's rows are known to be all inserted (`DO NOTHING` returns only rows it
    /// inserted) or all updated (rows locked beforehand): `true` or `false`.
    Always(bool),
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    type_sql: String,
    #[diesel(sql_type = Nullable<Text>)]
    collation_sql: Option<String>,
    #[diesel(sql_type = Bool)]
    deterministic: bool,
    #[diesel(sql_type = BigInt)]
    type_oid: i64,
    #[diesel(sql_type = Integer)]
    typmod: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    constraint_position: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    constraint_type: Option<String>,
    #[diesel(sql_type = Bool)]
    partitioned: bool,
    #[diesel(sql_type = Integer)]
    server_version: i32,
    #[diesel(sql_type = Bool)]
    before_triggers: bool,
    #[diesel(sql_type = Bool)]
    nulls_not_distinct: bool,
}

/// One query for all of it. Columns that only newer servers have (`collisdeterministic`,
/// `indnullsnotdistinct`) are read through `to_jsonb(row)`, so the query runs on every
/// supported version.
const CATALOG_SQL: &str = "\
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type_sql, \
CASE WHEN a.attcollation IN (0, 100) THEN NULL \
ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation_sql, \
coalesce((to_jsonb(co) ->> 'collisdeterministic')::bool, true) AS deterministic, \
a.atttypid::int8 AS type_oid, a.atttypmod AS typmod, \
array_position(con.conkey, a.attnum) AS constraint_position, \
con.contype::text AS constraint_type, \
c.relkind = 'p' AS partitioned, \
current_setting('server_version_num')::int AS server_version, \
EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal \
AND tg.tgtype & 3 = 3 AND tg.tgtype & 20 <> 0) AS before_triggers, \
coalesce((SELECT bool_or(coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false)) \
FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND CASE WHEN con.oid IS NOT NULL \
THEN i.indexrelid = con.conindid ELSE i.indexprs IS NULL AND \
(SELECT array_agg(x.attname::text ORDER BY x.attname::text) FROM pg_attribute x \
WHERE x.attrelid = c.oid AND x.attnum = ANY (i.indkey)) = \
(SELECT array_agg(n ORDER BY n) FROM unnest($3::text[]) AS n) END), false) AS nulls_not_distinct \
FROM pg_class c \
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
LEFT JOIN pg_collation co ON co.oid = a.attcollation \
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
LEFT JOIN pg_constraint con ON con.conrelid = c.oid AND con.conname = $2 \
WHERE c.oid = $1::regclass \
ORDER BY a.attnum";

type CacheKey = (String, Target);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<Catalog>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<Catalog>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The catalog facts for `table` (as written in SQL, such as `"s"."t"`) and `target`, read on
/// the first call and cached for the process.
pub(crate) fn lookup<C>(table: &str, target: &Target, conn: &mut C) -> Result<Arc<Catalog>>
where
    C: Connection<Backend = Pg> + LoadConnection,
{
    let key = (table.to_owned(), target.clone());
    if let Some(found) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(found);
    }
    let catalog = Arc::new(read(table, target, conn)?);
    if let Ok(mut cache) = cache().lock() {
        cache.insert(key, catalog.clone());
    }
    Ok(catalog)
}

fn read<C>(table: &str, target: &Target, conn: &mut C) -> Result<Catalog>
where
    C: Connection<Backend = Pg> + LoadConnection,
{
    let plain: Vec<&str> = target.plain_columns().collect();
    let rows: Vec<Row> = diesel::sql_query(CATALOG_SQL)
        .bind::<Text, _>(table)
        .bind::<Nullable<Text>, _>(target.constraint())
        .bind::<diesel::sql_types::Array<Text>, _>(&plain)
        .load(conn)?;
    let Some(first) = rows.first() else {
        return Err(Error::internal(format!("{table} has no columns")));
    };
    let (server_version, partitioned, before_triggers, nulls_not_distinct) = (
        first.server_version,
        first.partitioned,
        first.before_triggers,
        first.nulls_not_distinct,
    );
    let exclusion = first.constraint_type.as_deref() == Some("x");
    if let (Some(constraint), None) = (target.constraint(), &first.constraint_type) {
        return Err(BuildError::invalid_target(format!(
            "constraint {constraint:?} does not exist on {table}"
        ))
        .into());
    }
    let mut constraint_columns: Vec<(i32, String)> = rows
        .iter()
        .filter_map(|r| Some((r.constraint_position?, r.name.clone())))
        .collect();
    constraint_columns.sort_unstable();
    let columns = rows
        .into_iter()
        .map(|r| ColumnType {
            name: r.name,
            sql: r.type_sql,
            collation: r.collation_sql,
            deterministic: r.deterministic,
            oid: u32::try_from(r.type_oid).unwrap_or_default(),
            typmod: r.typmod,
        })
        .collect();
    Ok(Catalog {
        server_version,
        partitioned,
        before_triggers,
        columns,
        constraint_columns: constraint_columns.into_iter().map(|(_, n)| n).collect(),
        nulls_not_distinct,
        exclusion,
    })
}

/// Turns PostgreSQL's "no unique or exclusion constraint matching the ON CONFLICT
/// specification" (42P10) into [`Error::NoMatchingUniqueIndex`] with a hint.
///
/// Diesel does not expose the SQLSTATE, so this matches the English message (PostgreSQL's
/// default `lc_messages`); with localized messages the error stays an [`Error::Query`].
pub(crate) fn classify_error<S: UpsertStatement>(
    statement: &S,
    error: diesel::result::Error,
) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    if let DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) = &error {
        if info
            .message()
            .contains("no unique or exclusion constraint matching the ON CONFLICT")
        {
            let table = statement.table_sql();
            let target = render_target(statement.target());
            let mut hint = format!("CREATE UNIQUE INDEX ON {table} {target}");
            if let Some(predicate) = statement.predicate() {
                hint.push_str(" WHERE ");
                hint.push_str(predicate);
            }
            return Error::NoMatchingUniqueIndex {
                table,
                target,
                hint,
            };
        }
    }
    error.into()
}

fn render_target(target: &Target) -> String {
    struct TargetSql<'a>(&'a Target);
    impl QueryFragment<Pg> for TargetSql<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            self.0.walk(&mut out)
        }
    }
    literal::render(&TargetSql(target))
        .map(|(sql, _)| sql)
        .unwrap_or_default()
}
