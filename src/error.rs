//! The error type of every fallible call in this crate.

/// Result type of this crate: `Result<T, diesel_upsert::Error>` unless given another error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running an upsert.
///
/// Every variant is returned *before* a row is written or after the whole call was rolled back:
/// a failed call leaves no partial rows behind and the connection usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Rows of one bulk call do not supply the same columns (an `Option` field that is `None` in
    /// one row and `Some` in another, or different `Insertable` shapes). Detected before any SQL
    /// is sent.
    #[error("row {row} supplies columns ({}) but row 0 supplies ({})", found.join(", "), expected.join(", "))]
    InconsistentColumns {
        /// 0-based index of the first row whose columns differ from row 0.
        row: usize,
        /// The columns row 0 supplies, in insert order.
        expected: Vec<String>,
        /// The columns row `row` supplies, in insert order.
        found: Vec<String>,
    },

    /// Two rows of one bulk `ConflictAction::Update` call have the same conflict key, which
    /// PostgreSQL would reject with "ON CONFLICT DO UPDATE command cannot affect row a second
    /// time". Detected before any SQL is sent; choose a policy with `on_duplicate_keys` instead.
    #[error("rows {first} and {duplicate} have the same conflict key")]
    DuplicateConflictKey {
        /// 0-based index of the first row with the key.
        first: usize,
        /// 0-based index of the later row with the same key.
        duplicate: usize,
    },

    /// PostgreSQL found no unique index or constraint matching the conflict target (SQLSTATE
    /// 42P10).
    #[error("no unique index or constraint on {table} matches the conflict target {target}; one that would: {hint}")]
    NoMatchingUniqueIndex {
        /// The table, as written in the statement.
        table: String,
        /// The conflict target, as written in the statement.
        target: String,
        /// A `CREATE UNIQUE INDEX` statement that PostgreSQL would infer from the target.
        hint: String,
    },

    /// The conflict target or the index predicate cannot be written into the statement, such as
    /// a NUL byte in an hstore key or an `index_predicate` on a named constraint.
    #[error("invalid conflict target: {reason}")]
    InvalidTarget {
        /// What is wrong with the target.
        reason: String,
    },

    /// The conflict key of a row was changed on its way into the table (a `BEFORE` trigger
    /// rewrote it, for example), so the row PostgreSQL stored or kept cannot be paired with the
    /// input row exactly. Nothing of the call was written: its transaction was rolled back.
    #[error("the conflict key of a row was changed on its way in: {reason}")]
    KeyChanged {
        /// What was seen.
        reason: String,
    },

    /// The call combines things this crate cannot do exactly on this schema or server, such as
    /// reading back the row an exclusion constraint conflicted with. Returned before anything
    /// is sent.
    #[error("unsupported: {reason}")]
    Unsupported {
        /// What is not supported, and why.
        reason: String,
    },

    /// An internal invariant of the crate did not hold (a bug: please report it). The call's
    /// transaction was rolled back.
    #[error("internal error in diesel-upsert: {reason}")]
    Internal {
        /// The invariant that failed.
        reason: String,
    },

    /// PostgreSQL refused one input row of a bulk call: it broke a NOT NULL, CHECK, foreign-key,
    /// exclusion or unique constraint (a unique index other than the conflict target). The row
    /// was found by sending shorter and shorter prefixes of the failed statement's rows, each
    /// under a savepoint that was rolled back; nothing of the call was written.
    #[error("input row {index} ({key}) was refused: {source}")]
    Row {
        /// 0-based index of the input row.
        index: usize,
        /// Its conflict key, as SQL literals (`"sku" = 'A-1'::text`; values of types that have
        /// no literal form here are shown as `?`).
        key: String,
        /// PostgreSQL's error for a statement with that row.
        source: diesel::result::Error,
    },

    /// The database or Diesel reported an error.
    #[error(transparent)]
    Query(diesel::result::Error),

    /// No connection could be checked out of the r2d2 pool.
    #[cfg(feature = "r2d2")]
    #[error("could not get a connection from the pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

impl Error {
    pub(crate) fn invalid_target(reason: impl Into<String>) -> Self {
        Error::InvalidTarget {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Error::Internal {
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(reason: impl Into<String>) -> Self {
        Error::Unsupported {
            reason: reason.into(),
        }
    }

    /// The `diesel::result::Error` behind a `Query` or `Row` error, if this is one.
    pub fn as_query_error(&self) -> Option<&diesel::result::Error> {
        match self {
            Error::Query(e) | Error::Row { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Lets `?` turn this crate's errors into Diesel's, in code built on Diesel (a
/// `conn.transaction(|conn| -> QueryResult<_> { … })` closure): the database error itself where
/// there is one (`Error::Query`), otherwise the typed error boxed in
/// `diesel::result::Error::QueryBuilderError`, from which `Error::from` takes it back out.
/// Errors raised while the SQL is written (inside `walk_ast`) travel through Diesel this way too.
impl From<Error> for diesel::result::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(e) => e,
            other => diesel::result::Error::QueryBuilderError(Box::new(other)),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::QueryBuilderError(inner) => match inner.downcast::<Error>() {
                Ok(error) => *error,
                Err(inner) => Error::Query(diesel::result::Error::QueryBuilderError(inner)),
            },
            e => Error::Query(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_of_this_crate_starts_lowercase_and_names_its_reason() {
        let errors = [
            Error::InconsistentColumns {
                row: 1,
                expected: vec!["a".into()],
                found: vec!["b".into()],
            },
            Error::DuplicateConflictKey {
                first: 0,
                duplicate: 1,
            },
            Error::NoMatchingUniqueIndex {
                table: "t".into(),
                target: "(k)".into(),
                hint: "CREATE UNIQUE INDEX ON t (k)".into(),
            },
            Error::invalid_target("why"),
            Error::KeyChanged {
                reason: "why".into(),
            },
            Error::unsupported("why"),
            Error::internal("why"),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                message.starts_with(|c: char| c.is_lowercase()),
                "{message:?}"
            );
            if !matches!(error, Error::Query(_)) {
                assert!(
                    message.contains('1') || message.contains("why") || message.contains("(k)")
                );
            }
        }
    }

    #[test]
    fn an_error_raised_while_writing_sql_comes_back_through_diesel_unchanged() {
        let through: diesel::result::Error = Error::unsupported("why").into();
        assert!(matches!(Error::from(through), Error::Unsupported { reason } if reason == "why"));
        let query: diesel::result::Error = Error::Query(diesel::result::Error::NotFound).into();
        assert!(matches!(query, diesel::result::Error::NotFound));
    }
}
