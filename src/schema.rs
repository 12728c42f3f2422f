//! What the crate knows about a table from PostgreSQL's catalog (read by `run::catalog`): plain
//! data, used by the SQL nodes and the drivers alike.

use crate::error::{Error, Result};
use crate::target::{KeyPart, Target};

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
pub struct Catalog {
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
    /// For a target of plain columns: which unique indexes have exactly its columns.
    pub(crate) arbiter: Option<Arbiter>,
}

/// The unique indexes on exactly the columns of a plain-column target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arbiter {
    /// Some unique index, partial or not.
    pub(crate) partial_or_full: bool,
    /// Some unique index without a predicate.
    pub(crate) full: bool,
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
            for part in parts {
                if let KeyPart::Expression(_) = part {
                    if let Some(column) = part.columns().into_iter().find(|c| !supplied.contains(c))
                    {
                        return Err(Error::invalid_target(format!(
                            "the index expression {} reads column {column:?}, which the insert \
                             does not supply: its key would be computed from the column's default",
                            target.sql().unwrap_or_default()
                        )));
                    }
                }
            }
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
                        Error::invalid_target(format!(
                            "constraint {constraint:?} covers column {name:?}, which the insert does not supply"
                        ))
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
    /// The caller asked for no outcome: `true` for every row the statement wrote, inserted or
    /// updated, read by no system column (YugabyteDB and CockroachDB have no `xmax`); it only
    /// tells them from the rows `skip_unchanged` returns as they are (`NULL`). Never read as
    /// an outcome.
    Written,
}
