//! The synchronous driver of a bulk call: reads the catalog, asks PostgreSQL which rows share a
//! key (unless the key's bytes already say it exactly), then in one transaction sends one row
//! per key in key order, reads back the rows a conflict left in place, sends the rows without a
//! key, and hands every returned row to the planner ([`crate::plan`]), which pairs it with its
//! input row by the ordinal the statement carried.

use crate::error::{Error, Result};
use crate::literal::{count_binds, render};
use crate::plan::{self, Results, ATTEMPTS};
use crate::query_builder::arrays::{ArraySource, ColumnArrays};
use crate::query_builder::keys::KeyShape;
use crate::query_builder::nodes::{BulkRows, BulkUpsert, FetchKept, GroupKeys};
use crate::query_builder::single::{Inserted, UpsertReturning};
use crate::query_builder::statement::{consistent_columns, UpsertStatement};
use crate::rows::{RowValues, ValueOf, ValuesOf};
use crate::run::catalog;
use crate::run::catalog::classify_error;
use crate::run::returning::Returning;
use crate::schema::{Catalog, InsertedFlag};
use crate::spec::{ConflictAction, DuplicateKeys, Outcome};
use crate::target::KeyPart;
use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::{Connection, RunQueryDsl};

/// PostgreSQL's limit on bind parameters in one statement.
pub(crate) const MAX_BINDS: usize = 65_535;

/// Rows of one call, each with its input position.
type Indexed<'r, R> = [(usize, &'r R)];

/// The bulk flow; one result per input row, in input order (the outcome only with `outcomes`).
pub(crate) fn run<S, Sel, Out, C>(
    statement: &S,
    conn: &mut C,
    selection: impl Fn() -> Sel,
    outcomes: bool,
) -> Result<Vec<(Out, Option<Outcome>)>>
where
    S: UpsertStatement,
    Sel: Returning<Out>,
    Out: Clone,
    C: Connection<Backend = Pg> + LoadConnection,
{
    let rows = statement.rows();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let columns = consistent_columns::<S::Table, S::Row>(rows.iter())?;
    statement.check()?;
    let catalog = catalog::lookup(&statement.table_sql(), statement.target(), conn)?;
    check_returnable(statement, &catalog)?;
    let key = KeyShape::new(catalog.key(statement.target(), &columns)?, &catalog)?;
    let policy = statement.duplicate_keys().or(match statement.action() {
        ConflictAction::Nothing => Some(DuplicateKeys::KeepFirst),
        ConflictAction::Update => None,
    });
    let indexed: Vec<(usize, &S::Row)> = rows.iter().enumerate().collect();
    let method = Method::choose(statement, &catalog, &columns, outcomes);
    // Duplicates are found before the transaction starts: a rejected call writes nothing.
    let ranks = match byte_keys(&indexed, &key) {
        Some(keys) => plan::rank_bytes(&keys),
        None => group_on_server(&indexed, &key, &key.columns(), conn)?,
    };
    let groups = plan::group(rows.len(), ranks, policy)?;
    conn.transaction(|conn| {
        let call = Call {
            statement,
            key: &key,
            key_columns: key.columns(),
            columns: columns.len(),
            fixed: fixed_binds(statement, &indexed, &key, &selection)?,
            selection: &selection,
        };
        let mut results = Results::new(rows.len());
        let mut pending: Vec<(usize, &S::Row)> =
            groups.sent.iter().map(|&i| (i, &rows[i])).collect();
        for _ in 0..ATTEMPTS {
            match method {
                Method::OneStatement(flag) => {
                    call.upsert(conn, &pending, flag, false, &mut results)?;
                    // Rows the statement did not write: read the rows their keys point at.
                    let kept = unresolved(&pending, &results);
                    for (ordinal, out) in call.fetch(conn, &kept, false)? {
                        results.kept(Some(ordinal), out)?;
                    }
                }
                Method::TwoPhases => {
                    // `DO NOTHING` returns only the rows it inserted.
                    call.upsert(
                        conn,
                        &pending,
                        InsertedFlag::Always(true),
                        true,
                        &mut results,
                    )?;
                    // Lock the rows that exist, in key order: they can neither vanish nor
                    // change before they are updated, so every row the update returns was
                    // updated, and every locked row it does not return is as it was read.
                    let existing = unresolved(&pending, &results);
                    let locked = call.fetch(conn, &existing, true)?;
                    let lockable: Vec<_> = locked.iter().map(|(o, _)| *o).collect();
                    let to_update: Vec<_> = existing
                        .iter()
                        .copied()
                        .filter(|(i, _)| lockable.binary_search(&(*i as i32)).is_ok())
                        .collect();
                    call.upsert(
                        conn,
                        &to_update,
                        InsertedFlag::Always(false),
                        false,
                        &mut results,
                    )?;
                    for (ordinal, out) in locked {
                        if !results.has(ordinal as usize) {
                            results.kept(Some(ordinal), out)?;
                        }
                    }
                }
            }
            // A row neither written nor found was deleted in between: send it again.
            pending.retain(|(i, _)| !results.has(*i));
            if pending.is_empty() {
                break;
            }
        }
        if let Some(&(position, _)) = pending.first() {
            return Err(not_found(&catalog, position));
        }
        // Rows with a NULL in their key never conflict on the target: plain inserts, returned
        // in the order of the VALUES list.
        let unkeyed: Vec<_> = groups.unkeyed.iter().map(|&i| (i, &rows[i])).collect();
        let flag = match catalog.inserted_flag() {
            InsertedFlag::Unknown => InsertedFlag::Always(true),
            flag => flag,
        };
        for chunk in chunks(&unkeyed, call.fixed)? {
            let query = UpsertReturning {
                statement,
                rows: chunk.iter().map(|(_, row)| *row).collect(),
                returning: (selection(), inserted(statement, flag)),
                do_nothing: false,
            };
            let written =
                Sel::load_single(query, conn).map_err(|e| classify_error(statement, e))?;
            if written.len() != chunk.len() {
                return Err(Error::internal(format!(
                    "{} rows without a conflict key were sent and {} came back",
                    chunk.len(),
                    written.len()
                )));
            }
            for ((position, _), (out, inserted)) in chunk.iter().zip(written) {
                results.written_at(*position, out, inserted)?;
            }
        }
        results.finish(&groups.representative, outcomes)
    })
}

/// How a call learns whether each row it wrote was inserted or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// One upsert statement per chunk, with this flag in `RETURNING`.
    OneStatement(InsertedFlag),
    /// On a partitioned table before PostgreSQL 18, where no flag can be returned: insert the
    /// new rows with `DO NOTHING`, lock the existing ones, then upsert the locked ones.
    TwoPhases,
}

impl Method {
    pub(crate) fn choose<S: UpsertStatement>(
        statement: &S,
        catalog: &Catalog,
        columns: &[&'static str],
        outcomes: bool,
    ) -> Self {
        match catalog.inserted_flag() {
            // `DO NOTHING` returns only rows it inserted.
            InsertedFlag::Unknown if statement.does_nothing(columns) => {
                Method::OneStatement(InsertedFlag::Always(true))
            }
            InsertedFlag::Unknown if outcomes => Method::TwoPhases,
            flag => Method::OneStatement(flag),
        }
    }
}

/// The rows of `rows` without a result yet.
fn unresolved<'r, R, Out: Clone>(
    rows: &Indexed<'r, R>,
    results: &Results<Out>,
) -> Vec<(usize, &'r R)> {
    rows.iter()
        .copied()
        .filter(|(i, _)| !results.has(*i))
        .collect()
}

/// What every statement of one bulk call shares.
struct Call<'a, S: UpsertStatement, F> {
    statement: &'a S,
    key: &'a KeyShape<'a>,
    key_columns: Vec<&'static str>,
    /// The number of columns every row supplies.
    columns: usize,
    /// The binds of a statement besides its rows.
    fixed: usize,
    selection: &'a F,
}

impl<S: UpsertStatement, F> Call<'_, S, F> {
    /// Upserts `rows` in chunks and hands what comes back to `results`.
    fn upsert<Sel, Out, C>(
        &self,
        conn: &mut C,
        rows: &Indexed<'_, S::Row>,
        flag: InsertedFlag,
        do_nothing: bool,
        results: &mut Results<Out>,
    ) -> Result<()>
    where
        F: Fn() -> Sel,
        Sel: Returning<Out>,
        Out: Clone,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        let mut rest = rows;
        while !rest.is_empty() {
            let source = ArraySource::Rows {
                columns: self.columns,
            };
            let chunk = next_rows(rest, source, self.fixed)?;
            rest = &rest[chunk.len()..];
            let query = BulkUpsert {
                statement: self.statement,
                rows: chunk,
                key: self.key,
                selection: (self.selection)(),
                flag,
                do_nothing,
            };
            for (ordinal, out, inserted) in
                Sel::load_bulk(query, conn).map_err(|e| classify_error(self.statement, e))?
            {
                // With a flag that is never NULL, NULL marks an existing row that already held
                // the new values (`skip_unchanged`), returned as it is.
                match (inserted, flag) {
                    (None, InsertedFlag::Unknown) | (Some(_), _) => {
                        results.written(ordinal, out, inserted)?
                    }
                    (None, _) => results.kept(ordinal, out)?,
                }
            }
        }
        Ok(())
    }

    /// The stored rows with the keys of `rows`: `(input position, row)`, locked with `lock`.
    fn fetch<Sel, Out, C>(
        &self,
        conn: &mut C,
        rows: &Indexed<'_, S::Row>,
        lock: bool,
    ) -> Result<Vec<(i32, Out)>>
    where
        F: Fn() -> Sel,
        Sel: Returning<Out>,
        C: Connection<Backend = Pg> + LoadConnection,
    {
        let mut fetched = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let chunk = next_rows(rest, ArraySource::Columns(&self.key_columns), 0)?;
            rest = &rest[chunk.len()..];
            let query = FetchKept {
                statement: self.statement,
                rows: chunk,
                key: self.key,
                selection: (self.selection)(),
                lock,
            };
            fetched.extend(Sel::load_kept(query, conn)?);
        }
        fetched.sort_unstable_by_key(|(ordinal, _)| *ordinal);
        Ok(fetched)
    }
}

/// Rejects, before anything is sent, what the terminals cannot return exactly.
pub(crate) fn check_returnable<S: UpsertStatement>(statement: &S, catalog: &Catalog) -> Result<()> {
    if catalog.exclusion && statement.action() == ConflictAction::Nothing {
        return Err(Error::unsupported(
            "an exclusion constraint can conflict with several rows, so the row a \
             ConflictAction::Nothing left in place cannot be returned; use .execute(conn)",
        ));
    }
    Ok(())
}

/// The inserted flag of `RETURNING`.
pub(crate) fn inserted<S: UpsertStatement>(statement: &S, flag: InsertedFlag) -> Inserted {
    Inserted {
        flag,
        primary_key: statement.primary_key().to_vec(),
    }
}

/// A row that was neither written nor found by its key, after every attempt.
pub(crate) fn not_found(catalog: &Catalog, position: usize) -> Error {
    if catalog.before_triggers {
        plan::key_changed(format!(
            "no row with the key of input row {position} exists after the upsert \
             (a BEFORE trigger on the table may rewrite keys)"
        ))
    } else {
        Error::internal(format!(
            "the row conflicting with input row {position} vanished {ATTEMPTS} times"
        ))
    }
}

/// The conflict keys of the rows as bytes, when comparing those bytes is exactly PostgreSQL's
/// comparison: every key part a plain bound value of the column's own type, of a type whose
/// equality is byte equality ([`KeyShape::byte_exact`]). `None` otherwise: PostgreSQL groups
/// the keys.
fn byte_keys<T, R: RowValues<T>>(
    rows: &Indexed<'_, R>,
    key: &KeyShape<'_>,
) -> Option<Vec<Option<Vec<u8>>>> {
    if !key.byte_exact() {
        return None;
    }
    let oids: Vec<u32> = key
        .parts
        .iter()
        .map(|p| key.catalog.column(p.column()).map(|c| c.oid))
        .collect::<Result<_>>()
        .ok()?;
    rows.iter()
        .map(|(_, row)| {
            let mut bytes = Vec::new();
            for (part, oid) in key.parts.iter().zip(&oids) {
                let KeyPart::Column(column) = part else {
                    return None;
                };
                let (sql, binds) = render(&ValueOf::<R, T>::new(*row, column)).ok()?;
                match (sql.as_str(), binds.binds.as_slice(), binds.metadata.first()) {
                    ("", _, _) => return Some(None),
                    ("$1", [None], _) => return Some(None),
                    ("$1", [Some(value)], Some(metadata)) if metadata.oid().ok()? == *oid => {
                        bytes.extend_from_slice(&(value.len() as u32).to_be_bytes());
                        bytes.extend_from_slice(value);
                    }
                    _ => return None,
                }
            }
            Some(Some(bytes))
        })
        .collect()
}

/// Asks PostgreSQL for the key rank of every row ([`GroupKeys`]), in one statement so that the
/// ranks of all rows compare.
fn group_on_server<T, R: RowValues<T>, C>(
    rows: &Indexed<'_, R>,
    key: &KeyShape<'_>,
    key_columns: &[&'static str],
    conn: &mut C,
) -> Result<Vec<(usize, u64)>>
where
    C: Connection<Backend = Pg> + LoadConnection,
{
    let source = match ColumnArrays::build(rows, ArraySource::Columns(key_columns), false) {
        Some(arrays) if arrays.len() == rows.len() => BulkRows::Arrays(arrays),
        _ => {
            let mut binds = 0;
            for (_, row) in rows {
                for column in key_columns {
                    binds += count_binds(&ValueOf::<R, T>::new(*row, column))?;
                }
            }
            if binds > MAX_BINDS {
                return Err(Error::unsupported(format!(
                    "the conflict keys hold SQL expressions with {binds} bind parameters in all; \
                     PostgreSQL compares keys in one statement of at most {MAX_BINDS}"
                )));
            }
            BulkRows::Values(rows.to_vec())
        }
    };
    let ranks: Vec<(i32, i64)> = GroupKeys { rows: source, key }.load(conn)?;
    ranks
        .into_iter()
        .map(
            |(ordinal, rank)| match (usize::try_from(ordinal), u64::try_from(rank)) {
                (Ok(position), Ok(rank)) => Ok((position, rank)),
                _ => Err(Error::internal(format!("key rank {rank} of row {ordinal}"))),
            },
        )
        .collect()
}

/// The number of bind parameters a row renders (counted in its SQL text, without serializing
/// its values).
fn binds_of<T, R: RowValues<T>>(row: &R) -> Result<usize> {
    Ok(count_binds(&ValuesOf::<R, T>::new(row))?)
}

/// Cuts `rows` into chunks whose binds, plus `fixed` binds of the statement around them, stay
/// within PostgreSQL's limit.
fn chunks<'r, T, R: RowValues<T>>(
    mut rows: &Indexed<'r, R>,
    fixed: usize,
) -> Result<Vec<Vec<(usize, &'r R)>>> {
    let mut chunks = Vec::new();
    while !rows.is_empty() {
        let len = chunk_len(rows, fixed)?;
        chunks.push(rows[..len].to_vec());
        rows = &rows[len..];
    }
    Ok(chunks)
}

/// How many leading rows of `rows` fit in one `VALUES` statement with `fixed` other binds.
fn chunk_len<T, R: RowValues<T>>(rows: &Indexed<'_, R>, fixed: usize) -> Result<usize> {
    let budget = MAX_BINDS.saturating_sub(fixed);
    let mut used = 0;
    for (len, &(index, row)) in rows.iter().enumerate() {
        let binds = binds_of(row)?;
        if binds > budget {
            return Err(Error::unsupported(format!(
                "row {index} alone needs {binds} bind parameters, more than PostgreSQL allows in one statement"
            )));
        }
        if used + binds > budget {
            return Ok(len);
        }
        used += binds;
    }
    Ok(rows.len())
}

/// The next rows of one statement: as arrays when the leading rows are plain values, otherwise
/// as a `VALUES` list under the bind limit.
fn next_rows<'r, T, R: RowValues<T>>(
    rows: &Indexed<'r, R>,
    source: ArraySource<'r>,
    fixed: usize,
) -> Result<BulkRows<'r, T, R>> {
    if let Some(arrays) = ColumnArrays::build(rows, source, true) {
        return Ok(BulkRows::Arrays(arrays));
    }
    let len = chunk_len(rows, fixed)?;
    Ok(BulkRows::Values(rows[..len].to_vec()))
}

/// The binds a bulk statement has besides its rows (those of `update_values` and
/// `update_condition`): the statement for one row minus that row's own binds.
fn fixed_binds<S, Sel>(
    statement: &S,
    rows: &Indexed<'_, S::Row>,
    key: &KeyShape<'_>,
    selection: &impl Fn() -> Sel,
) -> Result<usize>
where
    S: UpsertStatement,
    Sel: QueryFragment<Pg> + diesel::Expression,
{
    let Some(&first) = rows.first() else {
        return Ok(0);
    };
    let query = BulkUpsert {
        statement,
        rows: BulkRows::Values(vec![first]),
        key,
        selection: selection(),
        flag: InsertedFlag::Xmax,
        do_nothing: false,
    };
    let total = render(&query)?.1.binds.len();
    Ok(total.saturating_sub(binds_of(first.1)?))
}
