//! The statements of a bulk call, and of a single-row read-back. Every comparison of an input
//! key with a stored one is made by PostgreSQL, with the key cast to the column's own type and
//! collation (`CAST("sku" AS citext)`, `CAST("price" AS numeric(10,2))`), so it agrees with the
//! unique index: rows are paired with their input by an ordinal the statement carries, never by
//! comparing key bytes in Rust.
//!
//! - [`GroupKeys`]: which input rows share a key, and the key order (`dense_rank()`).
//! - [`BulkUpsert`]: `INSERT … ON CONFLICT … RETURNING`, each written row joined back to its
//!   input row's ordinal.
//! - [`FetchKept`]: the rows a conflict left in place, by the keys of their input rows.
//! - [`UpsertReturning`]: one row (or rows without a key) `INSERT … VALUES … RETURNING`.
//! - [`FetchExisting`]: the row a conflict left in place, by the key of one input row.
//!
//! The types are `pub` only to appear in the bounds of [`Returning`](crate::Returning); this
//! module is private, so no user can name them.

use super::arrays::ColumnArrays;
use super::literal::quote_literal;
use super::statement::UpsertStatement;
use crate::rows::RowValues;
use crate::run::catalog::{Catalog, ColumnType, InsertedFlag};
use crate::target::KeyPart;
use diesel::backend::Backend;
use diesel::expression::{is_aggregate, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, TypeMetadata};
use std::fmt;

/// The input rows of a statement, each with its input position.
const INPUT: &str = "__upsert_input";
/// The source the input rows are read from (arrays or a `VALUES` list).
const ROW: &str = "__upsert_row";
/// Existing rows that already hold the new values (`skip_unchanged`).
const SAME: &str = "__upsert_same";
/// The rows an `INSERT … ON CONFLICT` wrote.
const UPSERTED: &str = "__upserted";
/// The rows a statement locked.
const LOCKED: &str = "__upsert_locked";
/// The column holding each input row's position in the caller's input.
const ORDINAL: &str = "__upsert_ord";
/// The column telling an inserted row from an updated one.
const INSERTED: &str = "__upsert_inserted";

/// The name of the `i`-th key column of a statement's input or output.
fn key_name(i: usize) -> String {
    format!("__upsert_k{i}")
}

/// What every statement of a call needs to know about its conflict key.
#[derive(Debug)]
pub(crate) struct KeyShape<'c> {
    pub(crate) parts: Vec<KeyPart>,
    /// The stored type of each part's column.
    types: Vec<&'c ColumnType>,
    pub(crate) catalog: &'c Catalog,
}

impl<'c> KeyShape<'c> {
    pub(crate) fn new(parts: Vec<KeyPart>, catalog: &'c Catalog) -> crate::Result<Self> {
        let types = parts
            .iter()
            .map(|p| catalog.column(p.column()))
            .collect::<crate::Result<_>>()?;
        Ok(KeyShape {
            parts,
            types,
            catalog,
        })
    }

    /// The distinct columns of the key, in key order.
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        let mut columns: Vec<&'static str> = Vec::new();
        for part in &self.parts {
            if !columns.contains(&part.column()) {
                columns.push(part.column());
            }
        }
        columns
    }

    /// Whether comparing the bytes the client sends is the same as PostgreSQL's comparison
    /// for this key: plain types stored as sent, byte-wise collations, no trigger that could
    /// rewrite the key, NULLs distinct.
    pub(crate) fn byte_exact(&self) -> bool {
        !self.catalog.before_triggers
            && !self.catalog.nulls_not_distinct
            && self.types.iter().all(|t| t.byte_exact())
    }

    fn operator(&self) -> &'static str {
        if self.catalog.nulls_not_distinct {
            " IS NOT DISTINCT FROM "
        } else {
            " = "
        }
    }

    /// `CAST("c" AS <type>) COLLATE <collation>`, or `(CAST("c" AS hstore) -> 'k')`: part
    /// `i` of an input row's key, as the column stores and compares it.
    /// `value` writes the part's column of the input row.
    fn walk_input_part<'b>(
        &self,
        i: usize,
        out: &mut AstPass<'_, 'b, Pg>,
        value: impl FnOnce(&mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
    ) -> QueryResult<()> {
        let ty = self.types[i];
        let part = &self.parts[i];
        if let KeyPart::HstoreKey { .. } = part {
            out.push_sql("(");
        }
        walk_cast(out, ty, value)?;
        match part {
            KeyPart::Column(_) => {
                if let Some(collation) = &ty.collation {
                    out.push_sql(" COLLATE ");
                    out.push_sql(collation);
                }
            }
            KeyPart::HstoreKey { key, .. } => {
                out.push_sql(" -> ");
                out.push_sql(&quote_literal(key)?);
                out.push_sql(")");
            }
        }
        Ok(())
    }

    /// `, <part 0> AS "__upsert_k0", …` of the input rows.
    fn walk_input_keys(&self, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        for i in 0..self.parts.len() {
            out.push_sql(", ");
            let column = self.parts[i].column();
            self.walk_input_part(i, out, |out| out.push_identifier(column))?;
            out.push_sql(" AS ");
            out.push_identifier(&key_name(i))?;
        }
        Ok(())
    }

    /// `"__upsert_input"."__upsert_k0" = <part 0 of the other side> AND …`.
    fn walk_match<'b>(
        &self,
        out: &mut AstPass<'_, 'b, Pg>,
        mut other: impl FnMut(usize, &KeyPart, &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
    ) -> QueryResult<()> {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push_sql(" AND ");
            }
            out.push_identifier(INPUT)?;
            out.push_sql(".");
            out.push_identifier(&key_name(i))?;
            out.push_sql(self.operator());
            other(i, part, out)?;
        }
        Ok(())
    }

    /// The input key against the key of a table row.
    fn walk_match_table<'b, S: UpsertStatement>(
        &self,
        statement: &'b S,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.walk_match(out, |_, part, out| {
            part.walk_on(out, |out| statement.walk_table(out).map(|_| true))
        })
    }

    /// The input key against the key columns `"__upsert_k0", …` of `relation`.
    fn walk_match_named(&self, relation: &str, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        self.walk_match(out, |i, _, out| {
            out.push_identifier(relation)?;
            out.push_sql(".");
            out.push_identifier(&key_name(i))
        })
    }

    /// `, <stored part 0> AS "__upsert_k0", …` of a table row.
    fn walk_stored_keys<'b, S: UpsertStatement>(
        &self,
        statement: &'b S,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        for (i, part) in self.parts.iter().enumerate() {
            out.push_sql(", ");
            part.walk_on(out, |out| statement.walk_table(out).map(|_| true))?;
            out.push_sql(" AS ");
            out.push_identifier(&key_name(i))?;
        }
        Ok(())
    }
}

/// `CAST(<value> AS <type>)`.
fn walk_cast<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    ty: &ColumnType,
    value: impl FnOnce(&mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
) -> QueryResult<()> {
    out.push_sql("CAST(");
    value(out)?;
    out.push_sql(" AS ");
    out.push_sql(&ty.sql);
    out.push_sql(")");
    Ok(())
}

/// The expression telling an inserted row from an updated one in `RETURNING`.
pub(crate) fn walk_inserted_flag(
    flag: InsertedFlag,
    primary_key: &[String],
    out: &mut AstPass<'_, '_, Pg>,
) -> QueryResult<()> {
    match (flag, primary_key.first()) {
        (InsertedFlag::Xmax, _) => out.push_sql("(xmax = 0)"),
        (InsertedFlag::OldRow, Some(column)) => {
            out.push_sql("(old.");
            out.push_identifier(column)?;
            out.push_sql(" IS NULL)");
        }
        (InsertedFlag::Always(true), _) => out.push_sql("true"),
        (InsertedFlag::Always(false), _) => out.push_sql("false"),
        (InsertedFlag::OldRow | InsertedFlag::Unknown, _) => out.push_sql("NULL::boolean"),
    }
    Ok(())
}

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
    fn walk_source<'b>(
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

    fn collect_binds<'b>(
        &'b self,
        out: &mut <Pg as Backend>::BindCollector<'b>,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
        backend: &'b Pg,
    ) -> QueryResult<()> {
        collect_retyped(self, &self.rows, out, lookup, backend)
    }
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
///     ON CONFLICT … RETURNING <selection>, (xmax = 0) AS "__upsert_inserted",
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
        out.push_sql("WITH ");
        self.rows.walk_input_cte(&columns, key, &mut out)?;
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
        out.push_identifier(UPSERTED)?;
        out.push_sql(" AS (");
        statement.walk_insert_into(&columns, &mut out)?;
        out.push_sql(" SELECT ");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(" FROM ");
        out.push_identifier(INPUT)?;
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
        walk_inserted_flag(self.flag, statement.primary_key(), &mut out)?;
        out.push_sql(" AS ");
        out.push_identifier(INSERTED)?;
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

    fn collect_binds<'b>(
        &'b self,
        out: &mut <Pg as Backend>::BindCollector<'b>,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
        backend: &'b Pg,
    ) -> QueryResult<()> {
        collect_retyped(self, &self.rows, out, lookup, backend)
    }
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

    fn collect_binds<'b>(
        &'b self,
        out: &mut <Pg as Backend>::BindCollector<'b>,
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
        backend: &'b Pg,
    ) -> QueryResult<()> {
        collect_retyped(self, &self.rows, out, lookup, backend)
    }
}

impl<S: UpsertStatement, Sel: Expression> Query for FetchKept<'_, S, Sel> {
    type SqlType = (Integer, Sel::SqlType);
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
fn collect_retyped<'b, Q: QueryFragment<Pg>, T, R: RowValues<T>>(
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

macro_rules! query_node {
    ($name:ident<$($p:ident),*> $(where $($bound:tt)*)?) => {
        impl<$($p),*> fmt::Debug for $name<'_, $($p),*> $(where $($bound)*)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<$($p),*> QueryId for $name<'_, $($p),*> $(where $($bound)*)? {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<$($p,)* Conn> RunQueryDsl<Conn> for $name<'_, $($p),*> $(where $($bound)*)? {}
    };
}

query_node!(GroupKeys<T, R>);
query_node!(BulkUpsert<S, Sel> where S: UpsertStatement);
query_node!(FetchKept<S, Sel> where S: UpsertStatement);
query_node!(FetchExisting<S, Sel> where S: UpsertStatement);
query_node!(UpsertReturning<S, R> where S: UpsertStatement);

/// `SELECT <selection> FROM <table> WHERE <stored key> = <input key> [AND <predicate>]`: reads
/// the row a conflict left in place, the input key cast to the column's type and collation.
pub struct FetchExisting<'q, S: UpsertStatement, Sel> {
    pub(crate) statement: &'q S,
    pub(crate) row: &'q S::Row,
    pub(crate) key: &'q KeyShape<'q>,
    pub(crate) selection: Sel,
    /// Lock the row: `… FOR UPDATE`.
    pub(crate) lock: bool,
}

impl<S: UpsertStatement, Sel: QueryFragment<Pg>> QueryFragment<Pg> for FetchExisting<'_, S, Sel> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let statement = self.statement;
        out.push_sql("SELECT ");
        self.selection.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ");
        statement.walk_table(&mut out)?;
        out.push_sql(" WHERE ");
        for (i, part) in self.key.parts.iter().enumerate() {
            if i > 0 {
                out.push_sql(" AND ");
            }
            part.walk_on(&mut out, |out| statement.walk_table(out).map(|_| true))?;
            out.push_sql(self.key.operator());
            self.key.walk_input_part(i, &mut out, |out| {
                if !self.row.walk_value_of(part.column(), out)? {
                    out.push_sql("NULL");
                }
                Ok(())
            })?;
        }
        walk_and_predicate(statement.predicate(), &mut out);
        if self.lock {
            out.push_sql(" FOR UPDATE");
        }
        Ok(())
    }
}

impl<S: UpsertStatement, Sel: Expression> Query for FetchExisting<'_, S, Sel> {
    type SqlType = Sel::SqlType;
}

/// True for a row the statement inserted, false for one it updated; NULL where the table and
/// server offer no exact way to tell (see [`InsertedFlag`]).
#[derive(Debug, Clone)]
pub struct Inserted {
    pub(crate) flag: InsertedFlag,
    pub(crate) primary_key: Vec<String>,
}

impl Expression for Inserted {
    type SqlType = Nullable<Bool>;
}

impl ValidGrouping<()> for Inserted {
    type IsAggregate = is_aggregate::Never;
}

impl QueryFragment<Pg> for Inserted {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        walk_inserted_flag(self.flag, &self.primary_key, &mut out)
    }
}

impl QueryId for Inserted {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// The upsert of some rows with a `RETURNING` clause.
pub struct UpsertReturning<'q, S: UpsertStatement, R> {
    pub(crate) statement: &'q S,
    pub(crate) rows: Vec<&'q S::Row>,
    pub(crate) returning: R,
    /// `DO NOTHING` whatever the builder's action.
    pub(crate) do_nothing: bool,
}

impl<S: UpsertStatement, R: QueryFragment<Pg>> QueryFragment<Pg> for UpsertReturning<'_, S, R> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement
            .walk_upsert(&self.rows, Some(&self.returning), self.do_nothing, out)
    }
}

impl<S: UpsertStatement, R: Expression> Query for UpsertReturning<'_, S, R> {
    type SqlType = R::SqlType;
}
