//! Reading PostgreSQL's catalog ([`Catalog`]: the types, collations and NULL semantics of the
//! conflict key, the columns of a named constraint, the table facts that decide which
//! statements are exact), and the classification of the server's errors that depends on the
//! call.
//!
//! A table's facts are read once per process and table (one query) and kept: like Diesel's
//! statement cache, the cache assumes the schema of a table does not change under a running
//! program. Restart after changing a conflict key's type, collation or triggers.

use crate::error::{Error, Result};
use crate::query_builder::statement::UpsertStatement;
use crate::schema::{Arbiter, Catalog, ColumnType};
use crate::target::KeyPart;
use crate::target::Target;
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::{Connection, RunQueryDsl};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One row of the catalog query: a column of the table, with the facts of the table repeated.
#[derive(diesel::QueryableByName)]
pub(crate) struct Row {
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
    #[diesel(sql_type = Bool)]
    arbiter_any: bool,
    #[diesel(sql_type = Bool)]
    arbiter_full: bool,
}

/// One query for all of it. Columns that only newer servers have (`collisdeterministic`,
/// `indnullsnotdistinct`, `indnkeyatts`) are read through `to_jsonb(row)`, so the query runs on
/// every supported version. `ix` sums up the table's unique indexes: those whose key elements
/// are exactly the target's (`$3`: the parts' columns, `$4`: their hstore keys, NULL for a
/// plain column), or the named constraint's. Elements are compared as PostgreSQL prints them
/// (`pg_get_indexdef` of one index column against `quote_ident(column)` or
/// `(column -> 'key'::text)`), without whitespace, parentheses or a schema on `->` (no
/// backslashes in the patterns: they hold whatever `standard_conforming_strings` is). An index
/// expression of the target (NULL in `$3`) is not compared: PostgreSQL prints expressions in
/// its own way (`lower((email)::text)`), so an index counts as matching when it has as many
/// elements, the target's columns and keys among them, and enough expressions. The answer
/// is exact when no index can match, which is what [`classify_error`] needs.
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
ix.nulls_not_distinct, ix.arbiter_any, ix.arbiter_full \
FROM pg_class c \
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
LEFT JOIN pg_collation co ON co.oid = a.attcollation \
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
LEFT JOIN pg_constraint con ON con.conrelid = c.oid AND con.conname = $2 \
CROSS JOIN LATERAL (SELECT coalesce(array_agg(e ORDER BY e) FILTER (WHERE e IS NOT NULL), '{}') \
AS elements, count(*) FILTER (WHERE e IS NULL) AS expressions, count(*) AS n FROM (SELECT \
regexp_replace(CASE WHEN t.key IS NULL THEN quote_ident(t.col) \
ELSE quote_ident(t.col) || ' -> ' || quote_literal(t.key) || '::text' END, \
'[[:space:]()]', '', 'g') AS e \
FROM unnest($3::text[], $4::text[]) AS t(col, key)) AS te) AS tg \
CROSS JOIN LATERAL (SELECT \
coalesce(bool_or(u.nulls_not_distinct) FILTER (WHERE CASE WHEN con.oid IS NOT NULL \
THEN u.indexrelid = con.conindid ELSE u.on_target END), false) AS nulls_not_distinct, \
coalesce(bool_or(u.on_target), false) AS arbiter_any, \
coalesce(bool_or(u.on_target AND u.full_index), false) AS arbiter_full \
FROM (SELECT i.indexrelid, i.indpred IS NULL AS full_index, \
coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false) AS nulls_not_distinct, \
(SELECT CASE WHEN tg.expressions = 0 THEN array_agg(e ORDER BY e) = tg.elements \
ELSE count(*) = tg.n AND array_agg(e) @> tg.elements \
AND count(*) FILTER (WHERE expression) >= tg.expressions END \
FROM (SELECT regexp_replace(regexp_replace( \
pg_get_indexdef(i.indexrelid, k, false), 'OPERATOR[(][^)]*[.]->[)]', '->', 'g'), \
'[[:space:]()]', '', 'g') AS e, i.indkey[k - 1] = 0 AS expression \
FROM generate_series(1, coalesce((to_jsonb(i) ->> 'indnkeyatts')::int, i.indnatts)) AS k) \
AS ie) AS on_target \
FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique) AS u) AS ix \
WHERE c.oid = $1::regclass \
ORDER BY a.attnum";

/// The cached facts: per table (as written in SQL), per target.
type Cache = HashMap<String, Vec<(Target, Arc<Catalog>)>>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The catalog facts for `table` (as written in SQL, such as `"s"."t"`) and `target`, read on
/// the first call and cached for the process (a hit allocates nothing).
pub(crate) fn lookup<C>(table: &str, target: &Target, conn: &mut C) -> Result<Arc<Catalog>>
where
    C: Connection<Backend = Pg> + LoadConnection,
{
    if let Some(found) = cached(table, target) {
        return Ok(found);
    }
    let read = Read::new(table, target);
    let rows = read.query().load(conn)?;
    read.store(rows)
}

/// The cached facts for `table` and `target`, if they were read before.
pub(crate) fn cached(table: &str, target: &Target) -> Option<Arc<Catalog>> {
    let cache = cache().lock().ok()?;
    let targets = cache.get(table)?;
    let (_, found) = targets.iter().find(|(t, _)| t == target)?;
    Some(found.clone())
}

/// A read of the catalog for a table and target that are not cached: the query to load (on
/// either driver), then [`store`](Self::store) with its rows.
pub(crate) struct Read<'a> {
    table: &'a str,
    target: &'a Target,
    columns: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> Read<'a> {
    pub(crate) fn new(table: &'a str, target: &'a Target) -> Self {
        let parts = target.parts().unwrap_or_default();
        Read {
            table,
            target,
            columns: parts
                .iter()
                .map(|part| match part {
                    KeyPart::Column(column) | KeyPart::HstoreKey { column, .. } => Some(*column),
                    KeyPart::Expression(_) => None,
                })
                .collect(),
            keys: parts
                .iter()
                .map(|part| match part {
                    KeyPart::Column(_) | KeyPart::Expression(_) => None,
                    KeyPart::HstoreKey { key, .. } => Some(&**key),
                })
                .collect(),
        }
    }

    /// The catalog query, its rows loaded as [`Row`].
    pub(crate) fn query(&self) -> BoxedSqlQuery<'_, Pg, SqlQuery> {
        diesel::sql_query(CATALOG_SQL)
            .into_boxed()
            .bind::<Text, _>(self.table)
            .bind::<Nullable<Text>, _>(self.target.constraint())
            .bind::<Array<Nullable<Text>>, _>(&self.columns)
            .bind::<Array<Nullable<Text>>, _>(&self.keys)
    }

    /// The facts the query's rows describe, cached for the process.
    pub(crate) fn store(self, rows: Vec<Row>) -> Result<Arc<Catalog>> {
        let catalog = Arc::new(facts(self.table, self.target, rows)?);
        if let Ok(mut cache) = cache().lock() {
            cache
                .entry(self.table.to_owned())
                .or_default()
                .push((self.target.clone(), catalog.clone()));
        }
        Ok(catalog)
    }
}

fn facts(table: &str, target: &Target, rows: Vec<Row>) -> Result<Catalog> {
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
    // A named constraint is matched by name; a misspelt one is an error below.
    let arbiter = target.parts().is_some().then_some(Arbiter {
        partial_or_full: first.arbiter_any,
        full: first.arbiter_full,
    });
    if let (Some(constraint), None) = (target.constraint(), &first.constraint_type) {
        return Err(Error::invalid_target(format!(
            "constraint {constraint:?} does not exist on {table}"
        )));
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
        arbiter,
    })
}

/// Turns PostgreSQL's "no unique or exclusion constraint matching the ON CONFLICT
/// specification" (42P10) into [`Error::NoMatchingUniqueIndex`] with a hint.
///
/// Diesel does not expose the SQLSTATE. Whatever the server's language, a target of columns and
/// hstore keys is recognized by the catalog read before the statement: PostgreSQL rejects every
/// statement whose target no unique index matches, so a database error on such a target means
/// 42P10 (an index predicate is taken to match any partial index on the columns). PostgreSQL's
/// English message is recognized too, for whatever the catalog cannot tell.
pub(crate) fn classify_error<S: UpsertStatement>(
    statement: &S,
    catalog: &Catalog,
    error: diesel::result::Error,
) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    if let DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) = &error {
        let unmatched = catalog
            .arbiter
            .is_some_and(|arbiter| match statement.predicate() {
                Some(_) => !arbiter.partial_or_full,
                None => !arbiter.full,
            });
        if unmatched
            || info
                .message()
                .contains("no unique or exclusion constraint matching the ON CONFLICT")
        {
            return no_matching_unique_index(statement);
        }
    }
    error.into()
}

/// [`Error::NoMatchingUniqueIndex`] for the statement's target, with the index that would match.
pub(crate) fn no_matching_unique_index<S: UpsertStatement>(statement: &S) -> Error {
    let table = statement.table_sql();
    let target = statement.target().sql().unwrap_or_default();
    let mut hint = format!("CREATE UNIQUE INDEX ON {table} {target}");
    if let Some(predicate) = statement.predicate() {
        hint.push_str(" WHERE ");
        hint.push_str(predicate);
    }
    Error::NoMatchingUniqueIndex {
        table: table.to_owned(),
        target,
        hint,
    }
}
