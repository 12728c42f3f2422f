//! The conflict key in SQL: each input key cast to its column's stored type and collation, so
//! that every comparison PostgreSQL makes between an input key and a stored one agrees with the
//! unique index; and the names the statements give their relations and columns.

use crate::literal::quote_literal;
use crate::query_builder::statement::UpsertStatement;
use crate::schema::{Catalog, ColumnType, InsertedFlag};
use crate::target::KeyPart;
use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::result::QueryResult;

/// The input rows of a statement, each with its input position.
pub(super) const INPUT: &str = "__upsert_input";
/// The source the input rows are read from (arrays or a `VALUES` list).
pub(super) const ROW: &str = "__upsert_row";
/// Existing rows that already hold the new values (`skip_unchanged`).
pub(super) const SAME: &str = "__upsert_same";
/// The rows an `INSERT … ON CONFLICT` wrote.
pub(super) const UPSERTED: &str = "__upserted";
/// The rows a statement locked.
pub(super) const LOCKED: &str = "__upsert_locked";
/// The column holding each input row's position in the caller's input.
pub(super) const ORDINAL: &str = "__upsert_ord";
/// The column telling an inserted row from an updated one.
pub(super) const INSERTED: &str = "__upsert_inserted";

/// The name of the `i`-th key column of a statement's input or output.
pub(super) fn key_name(i: usize) -> String {
    format!("__upsert_k{i}")
}

/// What every statement of a call needs to know about its conflict key.
#[derive(Debug)]
pub(crate) struct KeyShape<'c> {
    pub(crate) parts: Vec<KeyPart>,
    /// The columns each part reads, with their stored types.
    types: Vec<Vec<(&'static str, &'c ColumnType)>>,
    pub(crate) catalog: &'c Catalog,
}

impl<'c> KeyShape<'c> {
    pub(crate) fn new(parts: Vec<KeyPart>, catalog: &'c Catalog) -> crate::Result<Self> {
        let types = parts
            .iter()
            .map(|p| {
                p.columns()
                    .into_iter()
                    .map(|c| Ok((c, catalog.column(c)?)))
                    .collect::<crate::Result<_>>()
            })
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
        for (column, _) in self.types.iter().flatten() {
            if !columns.contains(column) {
                columns.push(column);
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
            && self.types.iter().flatten().all(|(_, t)| t.byte_exact())
    }

    pub(super) fn operator(&self) -> &'static str {
        if self.catalog.nulls_not_distinct {
            " IS NOT DISTINCT FROM "
        } else {
            " = "
        }
    }

    /// `CAST("c" AS <type>) COLLATE <collation>`, `(CAST("c" AS hstore) -> 'k')`, or the
    /// expression `(lower(CAST("c" AS text)))`: part `i` of an input row's key, as the table
    /// stores and compares it. `value` writes a column of the input row.
    pub(super) fn walk_input_part<'b>(
        &self,
        i: usize,
        out: &mut AstPass<'_, 'b, Pg>,
        mut value: impl FnMut(&'static str, &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
    ) -> QueryResult<()> {
        let types = &self.types[i];
        let mut stored = |column: &'static str, out: &mut AstPass<'_, 'b, Pg>| {
            let ty = types
                .iter()
                .find(|(c, _)| *c == column)
                .map(|(_, ty)| *ty)
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("column {column:?} is not in the key").into(),
                    )
                })?;
            walk_cast(out, ty, |out| value(column, out))?;
            if let Some(collation) = &ty.collation {
                out.push_sql(" COLLATE ");
                out.push_sql(collation);
            }
            Ok(())
        };
        match &self.parts[i] {
            KeyPart::Column(column) => stored(column, out),
            KeyPart::HstoreKey { column, key } => {
                out.push_sql("(");
                stored(column, out)?;
                out.push_sql(" -> ");
                out.push_sql(&quote_literal(key)?);
                out.push_sql(")");
                Ok(())
            }
            KeyPart::Expression(expression) => expression.walk(out, stored),
        }
    }

    /// `, <part 0> AS "__upsert_k0", …` of the input rows.
    pub(super) fn walk_input_keys(&self, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        for i in 0..self.parts.len() {
            out.push_sql(", ");
            self.walk_input_part(i, out, |column, out| out.push_identifier(column))?;
            out.push_sql(" AS ");
            out.push_identifier(&key_name(i))?;
        }
        Ok(())
    }

    /// `"__upsert_input"."__upsert_k0" = <part 0 of the other side> AND …`.
    pub(super) fn walk_match<'b>(
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
    pub(super) fn walk_match_table<'b, S: UpsertStatement>(
        &self,
        statement: &'b S,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.walk_match(out, |_, part, out| {
            part.walk_on(out, |out| statement.walk_table(out).map(|_| true))
        })
    }

    /// The input key against the key columns `"__upsert_k0", …` of `relation`.
    pub(super) fn walk_match_named(
        &self,
        relation: &str,
        out: &mut AstPass<'_, '_, Pg>,
    ) -> QueryResult<()> {
        self.walk_match(out, |i, _, out| {
            out.push_identifier(relation)?;
            out.push_sql(".");
            out.push_identifier(&key_name(i))
        })
    }

    /// `, <stored part 0> AS "__upsert_k0", …` of a table row.
    pub(super) fn walk_stored_keys<'b, S: UpsertStatement>(
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
pub(super) fn walk_cast<'b>(
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

/// `<inserted flag> AS "__upsert_inserted"` in the `RETURNING` list of `statement`.
pub(super) fn walk_inserted_column<S: UpsertStatement>(
    flag: InsertedFlag,
    statement: &S,
    out: &mut AstPass<'_, '_, Pg>,
) -> QueryResult<()> {
    let key_column = statement.primary_key().first().map(String::as_str);
    walk_inserted_flag(flag, key_column, out)?;
    out.push_sql(" AS ");
    out.push_identifier(INSERTED)
}

/// The expression telling an inserted row from an updated one in `RETURNING`.
pub(crate) fn walk_inserted_flag(
    flag: InsertedFlag,
    key_column: Option<&str>,
    out: &mut AstPass<'_, '_, Pg>,
) -> QueryResult<()> {
    match (flag, key_column) {
        (InsertedFlag::Xmax, _) => out.push_sql("(xmax = 0)"),
        (InsertedFlag::OldRow, Some(column)) => {
            out.push_sql("(old.");
            out.push_identifier(column)?;
            out.push_sql(" IS NULL)");
        }
        (InsertedFlag::Always(true) | InsertedFlag::Written, _) => out.push_sql("true"),
        (InsertedFlag::Always(false), _) => out.push_sql("false"),
        (InsertedFlag::OldRow | InsertedFlag::Unknown, _) => out.push_sql("NULL::boolean"),
    }
    Ok(())
}
