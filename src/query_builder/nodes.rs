//! The statements of a bulk call. Every comparison of an input key with a stored one is made by
//! PostgreSQL, with the key cast to the column's own type and collation (`super::keys`), so it
//! agrees with the unique index: rows are paired with their input by an ordinal the statement
//! carries, never by comparing key bytes in Rust.
//!
//! - [`GroupKeys`]: which input rows share a key, and the key order (`dense_rank()`).
//! - [`BulkUpsert`]: `INSERT … ON CONFLICT … RETURNING`, each written row joined back to its
//!   input row's ordinal.
//! - [`FetchKept`]: the rows a conflict left in place, by the keys of their input rows.
//!
//! The types are `pub` only to appear in the bounds of [`Returning`](crate::Returning); this
//! module is private, so no user can name them.

use super::arrays::ColumnArrays;
use super::keys::{
    key_name, walk_cast, walk_inserted_column, KeyShape, INPUT, INSERTED, LOCKED, ORDINAL, ROW,
    SAME, UPSERTED,
};
use super::statement::{push_identifiers, UpsertStatement};
use crate::rows::RowValues;
use crate::schema::{Catalog, InsertedFlag};
use diesel::backend::Backend;
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, TypeMetadata};
use std::fmt;

/// The `collect_binds` of a node whose `rows` may be sent as arrays: Diesel's own collection,
/// then the arrays' types ([`collect_retyped`]).
macro_rules! collect_retyped_binds {
    () => {
        fn collect_binds<'b>(
            &'b self,
            out: &mut <diesel::pg::Pg as diesel::backend::Backend>::BindCollector<'b>,
            lookup: &mut <diesel::pg::Pg as diesel::sql_types::TypeMetadata>::MetadataLookup,
            backend: &'b diesel::pg::Pg,
        ) -> diesel::result::QueryResult<()> {
            $crate::query_builder::nodes::collect_retyped(self, &self.rows, out, lookup, backend)
        }
    };
}

pub(crate) use collect_retyped_binds;

/// The input rows of a bulk statement.
pub enum BulkRows<'q, T, R> {
    /// Written as a `VALUES` list: `(input position, row)`.
    Values(Vec<(usize, &'q R)>),
    /// Sent as one array parameter per column.
    Arrays(ColumnArrays<'q, T, R>),
}

impl<T, R> fmt::Debug for BulkRows<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkRows::Values(rows) => write!(f, "Values({} rows)", rows.len()),
            BulkRows::Arrays(arrays) => arrays.fmt(f),
        }
    }
}

impl<'q, T, R: RowValues<T>> BulkRows<'q, T, R> {
    pub(crate) fn len(&self) -> usize {
        match self {
            BulkRows::Values(rows) => rows.len(),
            BulkRows::Arrays(arrays) => arrays.len(),
        }
    }

    /// `unnest($1, …, $n, $ord) AS "__upsert_row"("a", …, "__upsert_ord")`, or
    /// `(VALUES (CAST(… AS <type>), …, 0), …) AS "__upsert_row"(…)`: the rows' values of
    /// `columns`, each value of a `VALUES` list cast to its column's type (a `VALUES` list
    /// would otherwise type an untyped SQL expression as text).
    pub(super) fn walk_source<'b>(
        &'b self,
        columns: &[&'static str],
        catalog: &Catalog,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        match self {
            BulkRows::Arrays(arrays) => {
                out.push_sql("unnest(");
                arrays.walk_arrays(out)?;
                out.push_sql(")");
            }
            BulkRows::Values(rows) => {
                // The text holds the rows' input positions: prepared unnamed.
                out.unsafe_to_cache_prepared();
                let types = columns
                    .iter()
                    .map(|c| catalog.column(c))
                    .collect::<crate::Result<Vec<_>>>()
                    .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))?;
                out.push_sql("(VALUES ");
                for (i, (ordinal, row)) in rows.iter().enumerate() {
                    out.push_sql(if i == 0 { "(" } else { ", (" });
                    for (column, ty) in columns.iter().zip(&types) {
                        walk_cast(out, ty, |out| {
                            if !row.walk_value_of(column, out)? {
                                out.push_sql("NULL");
                            }
                            Ok(())
                        })?;
                        out.push_sql(", ");
                    }
                    out.push_sql(&ordinal.to_string());
                    out.push_sql(")");
                }
                out.push_sql(")");
            }
        }
        out.push_sql(" AS ");
        out.push_identifier(ROW)?;
        out.push_sql("(");
        for column in columns {
            out.push_identifier(column)?;
            out.push_sql(", ");
        }
        out.push_identifier(ORDINAL)?;
        out.push_sql(")");
        Ok(())
    }

    /// `"__upsert_input" AS (SELECT *, <key parts> FROM <source>)`.
    fn walk_input_cte<'b>(
        &'b self,
        columns: &[&'static str],
        key: &KeyShape<'_>,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        out.push_identifier(INPUT)?;
        out.push_sql(" AS (SELECT *");
        key.walk_input_keys(out)?;
        out.push_sql(" FROM ");
        self.walk_source(columns, key.catalog, out)?;
        out.push_sql(")");
        Ok(())
    }

    /// Gives rows sent as arrays their array types (see [`ColumnArrays::retype`]).
    fn retype(
        &self,
        out: &mut <Pg as Backend>::BindCollector<'_>,
        first: usize,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> QueryResult<()> {
        match self {
            BulkRows::Arrays(arrays) => arrays.retype(out, first, lookup),
            BulkRows::Values(_) => Ok(()),
        }
    }
}

/// Which input rows share a key, in the key order of the column's type and collation:
/// `(input position, dense rank of the key)`. Rows with a NULL key part are left out unless
/// the index treats NULLs as equal.
///
/// ```sql
/// SELECT "__upsert_ord", dense_rank() OVER (ORDER BY "__upsert_k0", …)
/// FROM (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2)
///       AS "__upsert_row"("sku", "__upsert_ord")) AS "__upsert_input"
/// WHERE "__upsert_k0" IS NOT NULL
/// ```
pub(crate) struct GroupKeys<'q, T, R> {
    pub(crate) rows: BulkRows<'q, T, R>,
    pub(crate) key: &'q KeyShape<'q>,
}

impl<T, R: RowValues<T>> QueryFragment<Pg> for GroupKeys<'_, T, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        out.push_identifier(ORDINAL)?;
        out.push_sql(", dense_rank() OVER (ORDER BY ");
        for i in 0..self.key.parts.len() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(&key_name(i))?;
        }
        out.push_sql(") FROM (SELECT *");
        self.key.walk_input_keys(&mut out)?;
        out.push_sql(" FROM ");
        self.rows
            .walk_source(&self.key.columns(), self.key.catalog, &mut out)?;
        out.push_sql(") AS ");
        out.push_identifier(INPUT)?;
        if !self.key.catalog.nulls_not_distinct {
            for i in 0..self.key.parts.len() {
                out.push_sql(if i == 0 { " WHERE " } else { " AND " });
                out.push_identifier(&key_name(i))?;
                out.push_sql(" IS NOT NULL");
            }
        }
        Ok(())
    }

    collect_retyped_binds!();
}

impl<T, R> Query for GroupKeys<'_, T, R> {
    type SqlType = (Integer, BigInt);
}

/// An upsert of some rows (one per key, in key order), each written row joined back to its
/// input row: `(input position, selection, inserted)`, the position NULL for a written row
/// whose stored key matches no input key (a trigger rewrote it).
///
/// ```sql
/// WITH "__upsert_input" AS (SELECT *, <input key> FROM unnest($1, …) AS "__upsert_row"(…)),
/// "__upserted" AS (INSERT INTO "t" ("a", …) SELECT "a", … FROM "__upsert_input"
///     ON CONFLICT … RETURNING <selection>, <inserted flag> AS "__upsert_inserted",
///     <stored key> AS "__upsert_k0", …)
/// SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted"
/// LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0"
/// ```
///
/// With `skip_unchanged` and rows sent as arrays, existing rows that already hold the new
/// values are found first (`"__upsert_same"`, compared as record images: exactly what is
/// stored) and returned as they are, without being written or locked.
pub struct BulkUpsert<'q, S: UpsertStatement, Sel> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) key: &'q KeyShape<'q>,
    pub(crate) selection: Sel,
    /// The inserted flag of `RETURNING`.
    pub(crate) flag: InsertedFlag,
    /// `DO NOTHING` whatever the builder's action (the first phase of the exact method for
    /// partitioned tables before PostgreSQL 18).
    pub(crate) do_nothing: bool,
}

impl<S: UpsertStatement, Sel: QueryFragment<Pg>> QueryFragment<Pg> for BulkUpsert<'_, S, Sel> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let statement = self.statement;
        let key = self.key;
        let columns = statement.columns_of(&self.rows)?;
        let set = statement.set_columns(&columns);
        let same_first = statement.compares(&set)
            && !self.do_nothing
            && matches!(self.rows, BulkRows::Arrays(_))
            && !key.catalog.before_triggers
            && self.flag != InsertedFlag::Unknown;
        // A plain multi-row insert pairs its rows through the keys of an input of keys only.
        let plain = plain_rows(statement, &self.rows).is_some();
        out.push_sql("WITH ");
        if plain {
            self.rows.walk_input_cte(&key.columns(), key, &mut out)?;
        } else {
            self.rows.walk_input_cte(&columns, key, &mut out)?;
        }
        if same_first {
            out.push_sql(", ");
            out.push_identifier(SAME)?;
            out.push_sql(" AS (SELECT ");
            self.selection.walk_ast(out.reborrow())?;
            out.push_sql(", NULL::boolean AS ");
            out.push_identifier(INSERTED)?;
            key.walk_stored_keys(statement, &mut out)?;
            out.push_sql(" FROM ");
            out.push_identifier(INPUT)?;
            out.push_sql(" JOIN ");
            statement.walk_table(&mut out)?;
            out.push_sql(" ON ");
            key.walk_match_table(statement, &mut out)?;
            walk_and_predicate(statement.predicate(), &mut out);
            out.push_sql(" WHERE ");
            statement.walk_table_row(&set, &mut out)?;
            out.push_sql(" *= (ROW(");
            for (i, column) in set.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                let ty = key
                    .catalog
                    .column(column)
                    .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))?;
                walk_cast(&mut out, ty, |out| {
                    out.push_identifier(INPUT)?;
                    out.push_sql(".");
                    out.push_identifier(column)
                })?;
            }
            out.push_sql("))::record)");
        }
        out.push_sql(", ");
        if !walk_upserted_values(statement, &self.rows, &columns, &mut out)? {
            walk_upserted_from(statement, &columns, &mut out)?;
            out.push_identifier(INPUT)?;
        }
        if same_first {
            out.push_sql(" WHERE NOT EXISTS (SELECT 1 FROM ");
            out.push_identifier(SAME)?;
            out.push_sql(" WHERE ");
            key.walk_match_named(SAME, &mut out)?;
            out.push_sql(")");
        }
        statement.walk_on_conflict(&columns, self.do_nothing, &mut out)?;
        out.push_sql(" RETURNING ");
        self.selection.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        walk_inserted_column(self.flag, statement, &mut out)?;
        key.walk_stored_keys(statement, &mut out)?;
        out.push_sql(") SELECT ");
        out.push_identifier(INPUT)?;
        out.push_sql(".");
        out.push_identifier(ORDINAL)?;
        out.push_sql(", ");
        out.push_identifier(UPSERTED)?;
        out.push_sql(".* FROM ");
        if same_first {
            out.push_sql("(SELECT * FROM ");
            out.push_identifier(UPSERTED)?;
            out.push_sql(" UNION ALL SELECT * FROM ");
            out.push_identifier(SAME)?;
            out.push_sql(") AS ");
        }
        out.push_identifier(UPSERTED)?;
        out.push_sql(" LEFT JOIN ");
        out.push_identifier(INPUT)?;
        out.push_sql(" ON ");
        key.walk_match_named(UPSERTED, &mut out)
    }

    collect_retyped_binds!();
}

impl<S: UpsertStatement, Sel: Expression> Query for BulkUpsert<'_, S, Sel> {
    type SqlType = (Nullable<Integer>, Sel::SqlType, Nullable<Bool>);
}

/// The existing rows with the keys of some input rows: `(input position, selection)`.
///
/// ```sql
/// WITH "__upsert_input" AS (SELECT *, <input key> FROM unnest($1, $2) AS "__upsert_row"(…))
/// SELECT "__upsert_input"."__upsert_ord", <selection> FROM "__upsert_input"
/// JOIN "t" ON "__upsert_input"."__upsert_k0" = "t"."sku" [AND <index predicate>]
/// ```
///
/// With `lock`, each row is read and locked (`FOR UPDATE`) in input order, which is key order:
///
/// ```sql
/// WITH "__upsert_input" AS (…)
/// SELECT "__upsert_input"."__upsert_ord", "__upsert_locked".* FROM "__upsert_input"
/// CROSS JOIN LATERAL (SELECT <selection> FROM "t"
///     WHERE "t"."sku" = "__upsert_input"."__upsert_k0" FOR UPDATE) AS "__upsert_locked"
/// ```
pub struct FetchKept<'q, S: UpsertStatement, Sel> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) key: &'q KeyShape<'q>,
    pub(crate) selection: Sel,
    pub(crate) lock: bool,
}

impl<S: UpsertStatement, Sel: QueryFragment<Pg>> QueryFragment<Pg> for FetchKept<'_, S, Sel> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH ");
        self.rows
            .walk_input_cte(&self.key.columns(), self.key, &mut out)?;
        if self.lock {
            out.push_sql(" SELECT ");
            out.push_identifier(INPUT)?;
            out.push_sql(".");
            out.push_identifier(ORDINAL)?;
            out.push_sql(", ");
            out.push_identifier(LOCKED)?;
            out.push_sql(".* FROM ");
            out.push_identifier(INPUT)?;
            out.push_sql(" CROSS JOIN LATERAL (SELECT ");
            self.selection.walk_ast(out.reborrow())?;
            out.push_sql(" FROM ");
            self.statement.walk_table(&mut out)?;
            out.push_sql(" WHERE ");
            self.key.walk_match_table(self.statement, &mut out)?;
            walk_and_predicate(self.statement.predicate(), &mut out);
            out.push_sql(" FOR UPDATE) AS ");
            return out.push_identifier(LOCKED);
        }
        out.push_sql(" SELECT ");
        out.push_identifier(INPUT)?;
        out.push_sql(".");
        out.push_identifier(ORDINAL)?;
        out.push_sql(", ");
        self.selection.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" JOIN ");
        self.statement.walk_table(&mut out)?;
        out.push_sql(" ON ");
        self.key.walk_match_table(self.statement, &mut out)?;
        walk_and_predicate(self.statement.predicate(), &mut out);
        Ok(())
    }

    collect_retyped_binds!();
}

impl<S: UpsertStatement, Sel: Expression> Query for FetchKept<'_, S, Sel> {
    type SqlType = (Integer, Sel::SqlType);
}

/// `bulk_update`'s statement: the stored rows with the keys of some input rows (locked by the
/// call before, in key order) set from them; returns the input position of each row written.
///
/// ```sql
/// WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0"
///     FROM unnest($1, $2, $3) AS "__upsert_row"("sku", "name", "__upsert_ord"))
/// UPDATE "t" SET "name" = "__upsert_input"."name" FROM "__upsert_input"
/// WHERE "__upsert_input"."__upsert_k0" = "t"."sku"
///   [AND (ROW("t"."name"))::record *<> (ROW("__upsert_input"."name"))::record]
/// RETURNING "__upsert_input"."__upsert_ord"
/// ```
pub(crate) struct BulkUpdate<'q, S: UpsertStatement> {
    pub(crate) statement: &'q S,
    pub(crate) rows: BulkRows<'q, S::Table, S::Row>,
    pub(crate) key: &'q KeyShape<'q>,
}

impl<S: UpsertStatement> QueryFragment<Pg> for BulkUpdate<'_, S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let statement = self.statement;
        let columns = statement.columns_of(&self.rows)?;
        let set = statement.set_columns(&columns);
        if set.is_empty() {
            return Err(diesel::result::Error::QueryBuilderError(
                "bulk_update: the rows supply no column to set besides the key".into(),
            ));
        }
        out.push_sql("WITH ");
        self.rows.walk_input_cte(&columns, self.key, &mut out)?;
        out.push_sql(" UPDATE ");
        statement.walk_table(&mut out)?;
        out.push_sql(" SET ");
        for (i, column) in set.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
            out.push_sql(" = ");
            out.push_identifier(INPUT)?;
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
        out.push_sql(" WHERE ");
        self.key.walk_match_table(statement, &mut out)?;
        if statement.compares(&set) {
            out.push_sql(" AND ");
            statement.walk_table_row(&set, &mut out)?;
            out.push_sql(" *<> (ROW(");
            push_identifiers(&mut out, Some(&format!("\"{INPUT}\"")), &set)?;
            out.push_sql("))::record");
        }
        out.push_sql(" RETURNING ");
        out.push_identifier(INPUT)?;
        out.push_sql(".");
        out.push_identifier(ORDINAL)
    }

    collect_retyped_binds!();
}

impl<S: UpsertStatement> Query for BulkUpdate<'_, S> {
    type SqlType = Integer;
}

/// `"__upserted" AS (INSERT INTO "t" ("a", …) SELECT "a", … FROM `: the start of the CTE that
/// writes the rows, up to the relation they are read from.
pub(super) fn walk_upserted_from<'b, S: UpsertStatement>(
    statement: &'b S,
    columns: &[&'static str],
    out: &mut AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    out.push_identifier(UPSERTED)?;
    out.push_sql(" AS (");
    statement.walk_insert_into(columns, out)?;
    out.push_sql(" SELECT ");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push_sql(", ");
        }
        out.push_identifier(column)?;
    }
    out.push_sql(" FROM ");
    Ok(())
}

/// The rows the caller asked to send as a plain multi-row insert (`rows_as_values`).
fn plain_rows<'r, S: UpsertStatement>(
    statement: &S,
    rows: &'r BulkRows<'_, S::Table, S::Row>,
) -> Option<&'r [(usize, &'r S::Row)]> {
    match rows {
        BulkRows::Values(rows) if statement.limits().values => Some(rows),
        _ => None,
    }
}

/// `"__upserted" AS (INSERT INTO "t" ("a", …) VALUES (…), (…)`: the rows as a plain multi-row
/// insert (`rows_as_values`), which engines such as Citus route to their shards, rather than
/// an `INSERT … SELECT`; `false` (nothing written) for rows the caller did not ask to send so.
pub(super) fn walk_upserted_values<'b, S: UpsertStatement>(
    statement: &'b S,
    rows: &'b BulkRows<'_, S::Table, S::Row>,
    columns: &[&'static str],
    out: &mut AstPass<'_, 'b, Pg>,
) -> QueryResult<bool> {
    let Some(rows) = plain_rows(statement, rows) else {
        return Ok(false);
    };
    out.unsafe_to_cache_prepared();
    out.push_identifier(UPSERTED)?;
    out.push_sql(" AS (");
    statement.walk_insert_into(columns, out)?;
    out.push_sql(" VALUES ");
    for (i, (_, row)) in rows.iter().enumerate() {
        out.push_sql(if i == 0 { "(" } else { ", (" });
        row.walk_values(out, &mut true)?;
        out.push_sql(")");
    }
    Ok(true)
}

/// ` AND (<predicate>)` when there is an index predicate: rows outside a partial index never
/// conflict on it.
pub(crate) fn walk_and_predicate(predicate: Option<&str>, out: &mut AstPass<'_, '_, Pg>) {
    if let Some(predicate) = predicate {
        out.push_sql(" AND (");
        out.push_sql(predicate);
        out.push_sql(")");
    }
}

/// Collects the binds of `query` as Diesel would, then gives its `rows` sent as arrays their
/// array types.
pub(crate) fn collect_retyped<'b, Q: QueryFragment<Pg>, T, R: RowValues<T>>(
    query: &'b Q,
    rows: &BulkRows<'_, T, R>,
    out: &mut <Pg as Backend>::BindCollector<'b>,
    lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    backend: &'b Pg,
) -> QueryResult<()> {
    let first = out.binds.len();
    Walk(query).collect_binds(out, lookup, backend)?;
    rows.retype(out, first, lookup)
}

/// Walks a query as its own `walk_ast` does: lets a `collect_binds` override run the default
/// bind collection before adjusting the binds.
struct Walk<'a, Q>(&'a Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Walk<'_, Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

/// The `Debug`, `QueryId` (not static: the text holds run-time parts) and `RunQueryDsl` impls
/// of a statement node.
macro_rules! query_node_impls {
    ($name:ident<$($p:ident),*> $(where $($bound:tt)*)?) => {
        impl<$($p),*> std::fmt::Debug for $name<'_, $($p),*> $(where $($bound)*)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<$($p),*> diesel::query_builder::QueryId for $name<'_, $($p),*> $(where $($bound)*)? {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<$($p,)* Conn> diesel::query_dsl::RunQueryDsl<Conn> for $name<'_, $($p),*> $(where $($bound)*)? {}
    };
}

query_node_impls!(GroupKeys<T, R>);
query_node_impls!(BulkUpsert<S, Sel> where S: UpsertStatement);
query_node_impls!(FetchKept<S, Sel> where S: UpsertStatement);
query_node_impls!(BulkUpdate<S> where S: UpsertStatement);

pub(crate) use query_node_impls;
