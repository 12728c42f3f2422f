//! Key equality (issue 9): PostgreSQL's unique index decides which keys are equal, not the bytes
//! the client sent. Duplicates inside one batch, pairing stored rows with input rows, reading a
//! kept row back and `skip_unchanged` must all agree with the index: float `-0.0`, citext,
//! nondeterministic ICU collations, numeric scale and typmod rounding, `char(n)` padding,
//! `timestamptz(0)`, BEFORE triggers, `NULLS NOT DISTINCT`, exclusion constraints, partitioned
//! and schema-qualified tables, SQL-expression values, json columns.
//!
//! Every table here is created once per process (`setup`), committed, and named `keys_*` (or
//! lives in the schema `keysch`). Tests inside `test_connection()` never commit; tests that need
//! real transaction boundaries (rollback after an error, caller transactions) commit rows under
//! keys of their own (`unique_key`).

use std::str::FromStr;
use std::sync::OnceLock;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_upsert::prelude::*;
use diesel_upsert::{on_constraint, DuplicateKeys, Error};

use crate::harness::{connection, pg_client, test_connection, unique_i64, unique_key};

// ---------------------------------------------------------------------------------------------
// Tables

diesel::table! {
    /// `k float8 UNIQUE`: `0.0` and `-0.0` are equal in the index.
    keys_f8 (id) {
        id -> Int8,
        k -> Float8,
        v -> Int4,
        grp -> Text,
    }
}

diesel::table! {
    /// `k citext UNIQUE` (Diesel has no citext type: declared `Text`).
    keys_ci (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
        grp -> Text,
    }
}

diesel::table! {
    /// `k text COLLATE ci_icu UNIQUE` (nondeterministic, case-insensitive ICU collation).
    keys_icu (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
        grp -> Text,
    }
}

diesel::table! {
    /// `k numeric UNIQUE`: `1.0` and `1.00` are equal in the index.
    keys_num (id) {
        id -> Int8,
        k -> Numeric,
        v -> Int4,
        grp -> Text,
    }
}

diesel::table! {
    /// `k numeric(10,2) UNIQUE`: `2.005` is stored as `2.01`, `1.5` as `1.50`.
    keys_round (id) {
        id -> Int8,
        k -> Numeric,
        v -> Int4,
    }
}

diesel::table! {
    /// `k char(10) UNIQUE`: stored blank-padded.
    keys_char (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
    }
}

diesel::table! {
    /// `k timestamptz(0) UNIQUE`: fractions of a second are rounded away.
    keys_ts0 (id) {
        id -> Int8,
        k -> Timestamptz,
        v -> Int4,
    }
}

diesel::table! {
    /// `k text UNIQUE` with a BEFORE INSERT trigger that lower()s `k`.
    keys_trig (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
        grp -> Text,
    }
}

diesel::table! {
    /// `UNIQUE NULLS NOT DISTINCT (k)`: only one row may have a NULL key.
    keys_nnd (id) {
        id -> Int8,
        k -> Nullable<Text>,
        v -> Int4,
    }
}

diesel::table! {
    /// `CONSTRAINT keys_excl_k_excl EXCLUDE (k WITH =)`: an exclusion constraint, no unique index.
    keys_excl (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
    }
}

diesel::table! {
    /// Partitioned by LIST (region), `PRIMARY KEY (region, k)`; `id` is supplied by the tests
    /// (declared the Diesel primary key so `insert` returns it).
    keys_parts (id) {
        id -> Int8,
        region -> Text,
        k -> Text,
        v -> Int4,
    }
}

diesel::table! {
    /// A table in another schema.
    keysch.keys_t (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
    }
}

diesel::table! {
    /// `k timestamptz UNIQUE`.
    keys_tsk (id) {
        id -> Int8,
        k -> Timestamptz,
        v -> Int4,
    }
}

diesel::table! {
    /// A citext non-key column `c` (declared `Text`).
    keys_skip_ci (id) {
        id -> Int8,
        k -> Text,
        c -> Text,
        v -> Int4,
    }
}

diesel::table! {
    /// A `json` column `j` (declared `Text`; `json` has no equality operator), default `'{}'`.
    keys_json (id) {
        id -> Int8,
        k -> Text,
        j -> Text,
        v -> Int4,
    }
}

diesel::table! {
    keys_plain (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
    }
}

const SETUP_SQL: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE keys_f8 (id BIGSERIAL PRIMARY KEY, k FLOAT8 NOT NULL UNIQUE, v INTEGER NOT NULL, grp TEXT NOT NULL);
CREATE TABLE keys_ci (id BIGSERIAL PRIMARY KEY, k CITEXT NOT NULL UNIQUE, v INTEGER NOT NULL, grp TEXT NOT NULL);
CREATE TABLE keys_num (id BIGSERIAL PRIMARY KEY, k NUMERIC NOT NULL UNIQUE, v INTEGER NOT NULL, grp TEXT NOT NULL);
CREATE TABLE keys_round (id BIGSERIAL PRIMARY KEY, k NUMERIC(10, 2) NOT NULL UNIQUE, v INTEGER NOT NULL);
CREATE TABLE keys_char (id BIGSERIAL PRIMARY KEY, k CHAR(10) NOT NULL UNIQUE, v INTEGER NOT NULL);
CREATE TABLE keys_ts0 (id BIGSERIAL PRIMARY KEY, k TIMESTAMPTZ(0) NOT NULL UNIQUE, v INTEGER NOT NULL);
CREATE TABLE keys_trig (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL, grp TEXT NOT NULL);
CREATE FUNCTION keys_trig_lower_k() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.k := lower(NEW.k);
    RETURN NEW;
END
$$;
CREATE TRIGGER keys_trig_lower_k BEFORE INSERT ON keys_trig
    FOR EACH ROW EXECUTE FUNCTION keys_trig_lower_k();
CREATE TABLE keys_nnd (id BIGSERIAL PRIMARY KEY, k TEXT, v INTEGER NOT NULL, UNIQUE NULLS NOT DISTINCT (k));
CREATE TABLE keys_excl (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL,
    CONSTRAINT keys_excl_k_excl EXCLUDE (k WITH =));
CREATE TABLE keys_parts (id BIGINT NOT NULL, region TEXT NOT NULL, k TEXT NOT NULL, v INTEGER NOT NULL,
    PRIMARY KEY (region, k)) PARTITION BY LIST (region);
CREATE TABLE keys_parts_eu PARTITION OF keys_parts FOR VALUES IN ('eu');
CREATE TABLE keys_parts_us PARTITION OF keys_parts FOR VALUES IN ('us');
CREATE SCHEMA keysch;
CREATE TABLE keysch.keys_t (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL);
CREATE TABLE keys_tsk (id BIGSERIAL PRIMARY KEY, k TIMESTAMPTZ NOT NULL UNIQUE, v INTEGER NOT NULL);
CREATE TABLE keys_skip_ci (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, c CITEXT NOT NULL, v INTEGER NOT NULL);
CREATE TABLE keys_json (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, j JSON NOT NULL DEFAULT '{}', v INTEGER NOT NULL);
CREATE TABLE keys_plain (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL);
"#;

/// Creates (once per process, committed) every table of this module except `keys_icu`.
fn setup() {
    static CREATED: OnceLock<Result<(), String>> = OnceLock::new();
    let created = CREATED.get_or_init(|| {
        connection()
            .batch_execute(SETUP_SQL)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = created {
        panic!("cannot create the tables of tests/keys.rs: {e}");
    }
}

/// `setup`, for the macros (which skip a test on `Err`).
fn setup_ok() -> Result<(), String> {
    setup();
    Ok(())
}

/// Creates the ICU collation `ci_icu` and `keys_icu`; `Err(why)` when the server cannot (no ICU).
fn icu_setup() -> Result<(), String> {
    static CREATED: OnceLock<Result<(), String>> = OnceLock::new();
    CREATED
        .get_or_init(|| {
            let conn = &mut connection();
            conn.batch_execute(
                "CREATE COLLATION IF NOT EXISTS ci_icu \
                 (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
            )
            .map_err(|e| format!("the ICU collation cannot be created: {e}"))?;
            conn.batch_execute(
                "CREATE TABLE keys_icu (id BIGSERIAL PRIMARY KEY, k TEXT COLLATE ci_icu NOT NULL UNIQUE, \
                 v INTEGER NOT NULL, grp TEXT NOT NULL)",
            )
            .map_err(|e| format!("keys_icu cannot be created: {e}"))
        })
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Models

macro_rules! grp_models {
    ($table:ident, $New:ident, $Row:ident, $key:ty) => {
        #[derive(Insertable, Clone, Debug)]
        #[diesel(table_name = $table)]
        struct $New {
            k: $key,
            v: i32,
            grp: String,
        }

        #[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
        #[diesel(table_name = $table, check_for_backend(Pg))]
        struct $Row {
            id: i64,
            k: $key,
            v: i32,
            grp: String,
        }
    };
}

grp_models!(keys_f8, NewF8, F8Row, f64);
grp_models!(keys_ci, NewCi, CiRow, String);
grp_models!(keys_icu, NewIcu, IcuRow, String);
grp_models!(keys_num, NewNum, NumRow, BigDecimal);
grp_models!(keys_trig, NewTrig, TrigRow, String);

macro_rules! plain_models {
    ($table:ident, $New:ident, $Row:ident, $key:ty) => {
        #[derive(Insertable, Clone, Debug)]
        #[diesel(table_name = $table)]
        struct $New {
            k: $key,
            v: i32,
        }

        #[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
        #[diesel(table_name = $table, check_for_backend(Pg))]
        struct $Row {
            id: i64,
            k: $key,
            v: i32,
        }
    };
}

plain_models!(keys_round, NewRound, RoundRow, BigDecimal);
plain_models!(keys_char, NewChar, CharRow, String);
plain_models!(keys_ts0, NewTs0, Ts0Row, DateTime<Utc>);
plain_models!(keys_excl, NewExcl, ExclRow, String);
plain_models!(keys_t, NewT, TRow, String);
plain_models!(keys_tsk, NewTsk, TskRow, DateTime<Utc>);
plain_models!(keys_plain, NewPlain, PlainRow, String);

/// `k: None` is written as NULL (not left to the default), so batches stay consistent.
#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = keys_nnd, treat_none_as_default_value = false)]
struct NewNnd {
    k: Option<String>,
    v: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = keys_nnd, check_for_backend(Pg))]
struct NndRow {
    id: i64,
    k: Option<String>,
    v: i32,
}

#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = keys_parts)]
struct NewPart {
    id: i64,
    region: String,
    k: String,
    v: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = keys_parts, check_for_backend(Pg))]
struct Part {
    id: i64,
    region: String,
    k: String,
    v: i32,
}

#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = keys_skip_ci)]
struct NewSkipCi {
    k: String,
    c: String,
    v: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = keys_skip_ci, check_for_backend(Pg))]
struct SkipCiRow {
    id: i64,
    k: String,
    c: String,
    v: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = keys_json, check_for_backend(Pg))]
struct JsonRow {
    id: i64,
    k: String,
    j: String,
    v: i32,
}

/// Rows between two index-equal keys in the "far apart" tests: more than one statement's worth
/// (statements carry at most 20 000 rows).
const FILLERS: i32 = 25_000;

fn decimal(text: &str) -> BigDecimal {
    BigDecimal::from_str(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Index-equal keys with different bytes in one bulk call are duplicates

/// Tests for a table with `k` unique, `v`, `grp` (the test's own tag), given a function
/// `(n, prefix) -> (first, second)` returning two index-equal keys with different bytes, and
/// `(n, prefix, i) -> key` returning distinct filler keys equal to neither.
macro_rules! index_equal_key_tests {
    ($module:ident, $table:ident, $New:ident, $Row:ident, $setup:path, $prefix:literal,
     $keys:expr, $filler:expr) => {
        mod $module {
            use super::*;

            /// `(n, grp)` of a new test, or `None` (printed) when the table cannot exist here.
            fn prepare() -> Option<(i64, String)> {
                if let Err(why) = $setup() {
                    eprintln!("skipped: {why}");
                    return None;
                }
                let n = unique_i64();
                Some((n, format!("{}-{n}", $prefix)))
            }

            fn stored(conn: &mut PgConnection, grp: &str) -> Vec<$Row> {
                $table::table
                    .filter($table::grp.eq(grp))
                    .order($table::id)
                    .select($Row::as_select())
                    .load(conn)
                    .unwrap()
            }

            fn count(conn: &mut PgConnection, grp: &str) -> i64 {
                $table::table
                    .filter($table::grp.eq(grp))
                    .count()
                    .get_result(conn)
                    .unwrap()
            }

            /// The two index-equal keys, `v` 1 and 2.
            fn pair(n: i64, grp: &str) -> Vec<$New> {
                let (a, b) = ($keys)(n, grp);
                vec![
                    $New { k: a, v: 1, grp: grp.to_owned() },
                    $New { k: b, v: 2, grp: grp.to_owned() },
                ]
            }

            /// The same two keys in the other order (the second spelling first, `v` 1): the
            /// winner must not depend on which spelling sorts first.
            fn swapped(n: i64, grp: &str) -> Vec<$New> {
                let (a, b) = ($keys)(n, grp);
                vec![
                    $New { k: b, v: 1, grp: grp.to_owned() },
                    $New { k: a, v: 2, grp: grp.to_owned() },
                ]
            }

            /// The first key (`v` 1), FILLERS distinct keys (`v` 10…), the second key (`v` 2).
            fn far_apart(n: i64, grp: &str) -> Vec<$New> {
                let (a, b) = ($keys)(n, grp);
                let mut rows = vec![$New { k: a, v: 1, grp: grp.to_owned() }];
                rows.extend((0..FILLERS).map(|i| $New {
                    k: ($filler)(n, grp, i),
                    v: 10 + i,
                    grp: grp.to_owned(),
                }));
                rows.push($New { k: b, v: 2, grp: grp.to_owned() });
                rows
            }

            fn run(
                conn: &mut PgConnection,
                rows: &[$New],
                action: ConflictAction,
                policy: Option<DuplicateKeys>,
            ) -> diesel_upsert::Result<Vec<$Row>> {
                let mut query = diesel::insert_into($table::table)
                    .values(rows)
                    .on_conflict_do($table::k, action);
                if let Some(policy) = policy {
                    query = query.on_duplicate_keys(policy);
                }
                query.bulk_insert_and_get(conn)
            }

            /// Exactly one row stored for the two inputs, with `v` = `winner`, returned to both.
            fn assert_one_row_won(conn: &mut PgConnection, grp: &str, got: &[$Row], winner: i32) {
                let stored = stored(conn, grp);
                assert_eq!(stored.len(), 1, "one stored row for two index-equal keys: {stored:?}");
                assert_eq!(stored[0].v, winner, "{stored:?}");
                assert_eq!(got, &[stored[0].clone(), stored[0].clone()][..]);
            }

            #[test]
            fn update_without_a_policy_is_a_duplicate_key_error_and_writes_nothing() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let result = run(conn, &pair(n, &grp), ConflictAction::Update, None);
                assert!(
                    matches!(result, Err(Error::DuplicateConflictKey { first: 0, duplicate: 1 })),
                    "expected DuplicateConflictKey {{ first: 0, duplicate: 1 }}, got {result:?}"
                );
                assert_eq!(count(conn, &grp), 0);
            }

            #[test]
            fn keep_first_stores_the_first_row_and_returns_it_to_both_inputs() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(
                    conn,
                    &pair(n, &grp),
                    ConflictAction::Update,
                    Some(DuplicateKeys::KeepFirst),
                )
                .unwrap();
                assert_one_row_won(conn, &grp, &got, 1);
            }

            #[test]
            fn keep_last_stores_the_last_row_and_returns_it_to_both_inputs() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(
                    conn,
                    &pair(n, &grp),
                    ConflictAction::Update,
                    Some(DuplicateKeys::KeepLast),
                )
                .unwrap();
                assert_one_row_won(conn, &grp, &got, 2);
            }

            #[test]
            fn nothing_keeps_the_first_row_and_returns_it_to_both_inputs() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(conn, &pair(n, &grp), ConflictAction::Nothing, None).unwrap();
                assert_one_row_won(conn, &grp, &got, 1);
            }

            #[test]
            fn nothing_keeps_the_first_row_when_the_spellings_are_swapped() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(conn, &swapped(n, &grp), ConflictAction::Nothing, None).unwrap();
                assert_one_row_won(conn, &grp, &got, 1);
            }

            #[test]
            fn keep_first_stores_the_first_row_when_the_spellings_are_swapped() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(
                    conn,
                    &swapped(n, &grp),
                    ConflictAction::Update,
                    Some(DuplicateKeys::KeepFirst),
                )
                .unwrap();
                assert_one_row_won(conn, &grp, &got, 1);
            }

            #[test]
            fn keep_last_stores_the_last_row_when_the_spellings_are_swapped() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(
                    conn,
                    &swapped(n, &grp),
                    ConflictAction::Update,
                    Some(DuplicateKeys::KeepLast),
                )
                .unwrap();
                assert_one_row_won(conn, &grp, &got, 2);
            }

            #[test]
            fn far_apart_keys_across_statements_are_still_a_duplicate_key_error() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let result = run(conn, &far_apart(n, &grp), ConflictAction::Update, None);
                let last = FILLERS as usize + 1;
                assert!(
                    matches!(
                        result,
                        Err(Error::DuplicateConflictKey { first: 0, duplicate }) if duplicate == last
                    ),
                    "expected DuplicateConflictKey {{ first: 0, duplicate: {last} }}, got {:?}",
                    result.map(|rows| rows.len())
                );
                assert_eq!(count(conn, &grp), 0, "nothing of the call is written");
            }

            #[test]
            fn far_apart_keys_across_statements_keep_the_first_row() {
                let Some((n, grp)) = prepare() else { return };
                let conn = &mut test_connection();
                let got = run(
                    conn,
                    &far_apart(n, &grp),
                    ConflictAction::Update,
                    Some(DuplicateKeys::KeepFirst),
                )
                .unwrap();
                let last = FILLERS as usize + 1;
                assert_eq!(got.len(), last + 1);
                assert_eq!(got[0], got[last], "both inputs get the same row");
                assert_eq!(got[0].v, 1);
                assert_eq!(count(conn, &grp), i64::from(FILLERS) + 1);
                let key_rows: Vec<$Row> = $table::table
                    .filter($table::grp.eq(&grp))
                    .filter($table::v.eq_any([1, 2]))
                    .select($Row::as_select())
                    .load(conn)
                    .unwrap();
                assert_eq!(key_rows, vec![got[0].clone()], "exactly one stored row for the key");
            }
        }
    };
}

index_equal_key_tests!(
    float8_zero_and_minus_zero,
    keys_f8,
    NewF8,
    F8Row,
    setup_ok,
    "kf8",
    |_n: i64, _grp: &str| (0.0_f64, -0.0_f64),
    |n: i64, _grp: &str, i: i32| (n * 100_000 + i64::from(i) + 1) as f64
);

// Fillers start with '_', which sorts between the upper-case and the lower-case spelling.
index_equal_key_tests!(
    citext_lower_and_upper_case,
    keys_ci,
    NewCi,
    CiRow,
    setup_ok,
    "kci",
    |_n: i64, grp: &str| (format!("{grp}-a"), format!("{}-A", grp.to_uppercase())),
    |_n: i64, grp: &str, i: i32| format!("_{grp}-{i:06}")
);

index_equal_key_tests!(
    icu_nondeterministic_collation_lower_and_upper_case,
    keys_icu,
    NewIcu,
    IcuRow,
    icu_setup,
    "kicu",
    |_n: i64, grp: &str| (format!("{grp}-a"), format!("{}-A", grp.to_uppercase())),
    |_n: i64, grp: &str, i: i32| format!("_{grp}-{i:06}")
);

index_equal_key_tests!(
    numeric_scale_one_and_two,
    keys_num,
    NewNum,
    NumRow,
    setup_ok,
    "knum",
    |n: i64, _grp: &str| (decimal(&format!("{n}.0")), decimal(&format!("{n}.00"))),
    |n: i64, _grp: &str, i: i32| BigDecimal::from(n * 100_000 + i64::from(i) + 1_000_000_000)
);

// ---------------------------------------------------------------------------------------------
// 2. Nothing keeps the first input row's spelling

fn nothing_on_citext_spellings(first: &str, second: &str) {
    setup();
    let conn = &mut test_connection();
    let grp = unique_key("kspell");
    let rows = vec![
        NewCi {
            k: format!("{grp}-{first}"),
            v: 1,
            grp: grp.clone(),
        },
        NewCi {
            k: format!("{grp}-{second}"),
            v: 2,
            grp: grp.clone(),
        },
    ];
    let got: Vec<CiRow> = diesel::insert_into(keys_ci::table)
        .values(&rows)
        .on_conflict_do(keys_ci::k, ConflictAction::Nothing)
        .bulk_insert_and_get(conn)
        .unwrap();
    let stored: Vec<(String, i32)> = keys_ci::table
        .filter(keys_ci::grp.eq(&grp))
        .select((keys_ci::k, keys_ci::v))
        .load(conn)
        .unwrap();
    assert_eq!(stored, vec![(format!("{grp}-{first}"), 1)]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1]);
    assert_eq!((got[0].k.as_str(), got[0].v), (rows[0].k.as_str(), 1));
}

#[test]
fn nothing_keeps_the_first_input_spelling_of_index_equal_keys_upper_first() {
    nothing_on_citext_spellings("b-KEY", "b-key");
}

#[test]
fn nothing_keeps_the_first_input_spelling_of_index_equal_keys_lower_first() {
    nothing_on_citext_spellings("b-key", "b-KEY");
}

// ---------------------------------------------------------------------------------------------
// 3. Keys the column stores differently from what was sent

/// Single-row and bulk, Update and Nothing, fresh then again, for a table whose `k` column
/// changes the value sent (typmod rounding, padding). `$keys(n)` gives two distinct keys.
macro_rules! stored_differently_tests {
    ($module:ident, $table:ident, $New:ident, $Row:ident, $keys:expr) => {
        mod $module {
            use super::*;

            fn single(
                conn: &mut PgConnection,
                row: &$New,
                action: ConflictAction,
            ) -> diesel_upsert::Result<($Row, Outcome)> {
                diesel::insert_into($table::table)
                    .values(row)
                    .on_conflict_do($table::k, action)
                    .insert_and_get_with_outcome(conn)
            }

            fn bulk(
                conn: &mut PgConnection,
                rows: &[$New],
                action: ConflictAction,
            ) -> diesel_upsert::Result<Vec<($Row, Outcome)>> {
                diesel::insert_into($table::table)
                    .values(rows)
                    .on_conflict_do($table::k, action)
                    .bulk_insert_and_get_with_outcome(conn)
            }

            fn by_id(conn: &mut PgConnection, id: i64) -> $Row {
                $table::table
                    .find(id)
                    .select($Row::as_select())
                    .get_result(conn)
                    .unwrap()
            }

            fn check_single(action: ConflictAction, again: Outcome) {
                setup();
                let conn = &mut test_connection();
                let (a, _) = ($keys)(unique_i64());
                let row = $New { k: a, v: 1 };
                let (first, outcome) = single(conn, &row, action).unwrap();
                assert_eq!(outcome, Outcome::Inserted);
                assert_eq!(by_id(conn, first.id), first, "the stored row is returned");
                let (second, outcome) =
                    single(conn, &row, action).expect("the second call returns the existing row");
                assert_eq!((second, outcome), (first.clone(), again));
                assert_eq!(by_id(conn, first.id), first);
            }

            fn check_bulk(action: ConflictAction, again: Outcome) {
                setup();
                let conn = &mut test_connection();
                let (a, b) = ($keys)(unique_i64());
                let rows = vec![$New { k: a, v: 1 }, $New { k: b, v: 2 }];
                let first = bulk(conn, &rows, action).unwrap();
                assert_eq!(first.len(), 2);
                for (i, (row, outcome)) in first.iter().enumerate() {
                    assert_eq!(*outcome, Outcome::Inserted);
                    assert_eq!(row.v, rows[i].v, "row {i} paired with its input");
                    assert_eq!(&by_id(conn, row.id), row, "the stored row is returned");
                }
                let second =
                    bulk(conn, &rows, action).expect("the second call returns the existing rows");
                let expected: Vec<($Row, Outcome)> =
                    first.iter().map(|(row, _)| (row.clone(), again)).collect();
                assert_eq!(second, expected);
            }

            #[test]
            fn single_row_update_inserts_then_updates_the_same_row() {
                check_single(ConflictAction::Update, Outcome::Updated);
            }

            #[test]
            fn single_row_nothing_inserts_then_returns_the_existing_row() {
                check_single(ConflictAction::Nothing, Outcome::Unchanged);
            }

            #[test]
            fn bulk_update_inserts_then_updates_the_same_rows() {
                check_bulk(ConflictAction::Update, Outcome::Updated);
            }

            #[test]
            fn bulk_nothing_inserts_then_returns_the_existing_rows() {
                check_bulk(ConflictAction::Nothing, Outcome::Unchanged);
            }
        }
    };
}

stored_differently_tests!(
    numeric_10_2_rounds_the_key,
    keys_round,
    NewRound,
    RoundRow,
    // 2.005 is stored as 2.01, 2.015 as 2.02.
    |n: i64| (decimal(&format!("{n}.005")), decimal(&format!("{n}.015")))
);

stored_differently_tests!(
    numeric_10_2_pads_the_key_scale,
    keys_round,
    NewRound,
    RoundRow,
    // 1.5 is stored as 1.50. (`n` is never the integer part of the other test's keys: both
    // take it from the same counter.)
    |n: i64| (decimal(&format!("{n}.5")), decimal(&format!("{n}.7")))
);

stored_differently_tests!(
    char_n_pads_the_key,
    keys_char,
    NewChar,
    CharRow,
    |n: i64| (format!("c{n}"), format!("d{n}"))
);

stored_differently_tests!(
    timestamptz_0_rounds_the_key,
    keys_ts0,
    NewTs0,
    Ts0Row,
    |n: i64| {
        let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(n * 10);
        (
            base + Duration::milliseconds(678),   // stored rounded up
            base + Duration::milliseconds(5_123), // stored rounded down
        )
    }
);

#[test]
fn numeric_10_2_key_is_stored_rounded_and_returned_as_stored() {
    setup();
    let conn = &mut test_connection();
    let n = unique_i64();
    let (row, outcome): (RoundRow, Outcome) = diesel::insert_into(keys_round::table)
        .values(&NewRound {
            k: decimal(&format!("{n}.005")),
            v: 1,
        })
        .on_conflict_do(keys_round::k, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Inserted);
    let stored: String = diesel::sql_query("SELECT k::text AS k FROM keys_round WHERE id = $1")
        .bind::<diesel::sql_types::Int8, _>(row.id)
        .get_result::<TextRow>(conn)
        .unwrap()
        .k;
    assert_eq!(stored, format!("{n}.01"));
    assert_eq!(row.k, decimal(&format!("{n}.01")));
}

#[derive(QueryableByName, Debug)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    k: String,
}

// ---------------------------------------------------------------------------------------------
// 4. A citext key declared `Text`

/// Stores `<grp>-Hello` (v 1); returns (grp, the stored row).
fn stored_hello(conn: &mut PgConnection) -> (String, CiRow) {
    setup();
    let grp = unique_key("khello");
    let row = diesel::insert_into(keys_ci::table)
        .values(&NewCi {
            k: format!("{grp}-Hello"),
            v: 1,
            grp: grp.clone(),
        })
        .returning(CiRow::as_returning())
        .get_result(conn)
        .unwrap();
    (grp, row)
}

fn shouted(grp: &str, v: i32) -> NewCi {
    NewCi {
        k: format!("{}-HELLO", grp.to_uppercase()),
        v,
        grp: grp.to_owned(),
    }
}

fn ci_rows(conn: &mut PgConnection, grp: &str) -> Vec<CiRow> {
    keys_ci::table
        .filter(keys_ci::grp.eq(grp))
        .order(keys_ci::id)
        .select(CiRow::as_select())
        .load(conn)
        .unwrap()
}

#[test]
fn citext_key_single_row_nothing_returns_the_stored_row_unchanged() {
    let conn = &mut test_connection();
    let (grp, existing) = stored_hello(conn);
    let got: (CiRow, Outcome) = diesel::insert_into(keys_ci::table)
        .values(&shouted(&grp, 2))
        .on_conflict_do(keys_ci::k, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(got, (existing.clone(), Outcome::Unchanged));
    assert_eq!(ci_rows(conn, &grp), vec![existing]);
}

#[test]
fn citext_key_bulk_nothing_returns_the_stored_row_unchanged() {
    let conn = &mut test_connection();
    let (grp, existing) = stored_hello(conn);
    let rows = vec![
        shouted(&grp, 2),
        NewCi {
            k: format!("{grp}-other"),
            v: 3,
            grp: grp.clone(),
        },
    ];
    let got: Vec<(CiRow, Outcome)> = diesel::insert_into(keys_ci::table)
        .values(&rows)
        .on_conflict_do(keys_ci::k, ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (existing.clone(), Outcome::Unchanged));
    assert_eq!(
        (got[1].0.k.as_str(), got[1].0.v, got[1].1),
        (rows[1].k.as_str(), 3, Outcome::Inserted)
    );
    assert_eq!(ci_rows(conn, &grp), vec![existing, got[1].0.clone()]);
}

#[test]
fn citext_key_single_row_update_updates_the_stored_row_and_keeps_its_spelling() {
    let conn = &mut test_connection();
    let (grp, existing) = stored_hello(conn);
    let (row, outcome): (CiRow, Outcome) = diesel::insert_into(keys_ci::table)
        .values(&shouted(&grp, 2))
        .on_conflict_do(keys_ci::k, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    let expected = CiRow { v: 2, ..existing };
    assert_eq!((row, outcome), (expected.clone(), Outcome::Updated));
    assert_eq!(ci_rows(conn, &grp), vec![expected]);
}

#[test]
fn citext_key_bulk_update_updates_the_stored_row_and_keeps_its_spelling() {
    let conn = &mut test_connection();
    let (grp, existing) = stored_hello(conn);
    let rows = vec![
        NewCi {
            k: format!("{grp}-other"),
            v: 3,
            grp: grp.clone(),
        },
        shouted(&grp, 2),
    ];
    let got: Vec<(CiRow, Outcome)> = diesel::insert_into(keys_ci::table)
        .values(&rows)
        .on_conflict_do(keys_ci::k, ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let expected = CiRow { v: 2, ..existing };
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].0.k.as_str(), got[0].0.v, got[0].1),
        (rows[0].k.as_str(), 3, Outcome::Inserted)
    );
    assert_eq!(got[1], (expected.clone(), Outcome::Updated));
    assert_eq!(ci_rows(conn, &grp), vec![expected, got[0].0.clone()]);
}

// ---------------------------------------------------------------------------------------------
// 5. A BEFORE INSERT trigger rewrites the key

fn trig_rows(conn: &mut PgConnection, grp: &str) -> Vec<TrigRow> {
    keys_trig::table
        .filter(keys_trig::grp.eq(grp))
        .order(keys_trig::id)
        .select(TrigRow::as_select())
        .load(conn)
        .unwrap()
}

#[test]
fn trigger_lowered_key_single_row_update_returns_the_stored_row_inserted() {
    setup();
    let conn = &mut test_connection();
    let grp = unique_key("ktrig");
    let input = format!("{}-MiXed", grp.to_uppercase());
    let (row, outcome): (TrigRow, Outcome) = diesel::insert_into(keys_trig::table)
        .values(&NewTrig {
            k: input.clone(),
            v: 1,
            grp: grp.clone(),
        })
        .on_conflict_do(keys_trig::k, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Inserted);
    assert_eq!((row.k.as_str(), row.v), (input.to_lowercase().as_str(), 1));
    assert_eq!(trig_rows(conn, &grp), vec![row]);
}

#[test]
fn trigger_rewritten_keys_in_bulk_are_paired_correctly_or_rejected_with_key_changed() {
    setup();
    // Committed: a KeyChanged error must have rolled its own transaction back.
    let conn = &mut connection();
    let grp = unique_key("ktrigbulk");
    let rows = vec![
        NewTrig {
            k: format!("{}-AB-1", grp.to_uppercase()),
            v: 1,
            grp: grp.clone(),
        },
        NewTrig {
            k: format!("{grp}-ab-2"),
            v: 2,
            grp: grp.clone(),
        },
    ];
    let result: diesel_upsert::Result<Vec<(TrigRow, Outcome)>> =
        diesel::insert_into(keys_trig::table)
            .values(&rows)
            .on_conflict_do(keys_trig::k, ConflictAction::Update)
            .bulk_insert_and_get_with_outcome(conn);
    match result {
        Ok(got) => {
            let summary: Vec<_> = got.iter().map(|(r, o)| (r.k.clone(), r.v, *o)).collect();
            assert_eq!(
                summary,
                vec![
                    (format!("{grp}-ab-1"), 1, Outcome::Inserted),
                    (format!("{grp}-ab-2"), 2, Outcome::Inserted),
                ]
            );
            let got_rows: Vec<TrigRow> = got.into_iter().map(|(r, _)| r).collect();
            assert_eq!(trig_rows(conn, &grp), got_rows);
        }
        Err(Error::KeyChanged { reason }) => {
            eprintln!("KeyChanged: {reason}");
            assert_eq!(
                trig_rows(conn, &grp),
                vec![],
                "the call's transaction was rolled back"
            );
        }
        Err(other) => panic!("expected the rows or KeyChanged, got {other:?}"),
    }
}

/// Stores `<grp>-dup` through the trigger and upserts `<GRP>-DUP` (which it lowers to it).
fn trigger_nothing_on_an_existing_lowered_key(bulk: bool) {
    setup();
    let conn = &mut connection();
    let grp = unique_key("ktrigdup");
    let existing: TrigRow = diesel::insert_into(keys_trig::table)
        .values(&NewTrig {
            k: format!("{grp}-dup"),
            v: 1,
            grp: grp.clone(),
        })
        .returning(TrigRow::as_returning())
        .get_result(conn)
        .unwrap();
    let input = NewTrig {
        k: format!("{}-DUP", grp.to_uppercase()),
        v: 2,
        grp: grp.clone(),
    };
    let result: diesel_upsert::Result<(TrigRow, Outcome)> = if bulk {
        diesel::insert_into(keys_trig::table)
            .values(&vec![input])
            .on_conflict_do(keys_trig::k, ConflictAction::Nothing)
            .bulk_insert_and_get_with_outcome(conn)
            .map(|mut rows| {
                assert_eq!(rows.len(), 1);
                rows.remove(0)
            })
    } else {
        diesel::insert_into(keys_trig::table)
            .values(&input)
            .on_conflict_do(keys_trig::k, ConflictAction::Nothing)
            .insert_and_get_with_outcome(conn)
    };
    match result {
        Ok(got) => assert_eq!(got, (existing.clone(), Outcome::Unchanged)),
        Err(Error::KeyChanged { reason }) => eprintln!("KeyChanged: {reason}"),
        Err(other) => panic!("expected the stored row or KeyChanged, got {other:?}"),
    }
    assert_eq!(trig_rows(conn, &grp), vec![existing], "nothing new written");
}

#[test]
fn trigger_lowered_key_single_row_nothing_on_an_existing_key_returns_it_or_key_changed() {
    trigger_nothing_on_an_existing_lowered_key(false);
}

#[test]
fn trigger_lowered_key_bulk_nothing_on_an_existing_key_returns_it_or_key_changed() {
    trigger_nothing_on_an_existing_lowered_key(true);
}

// ---------------------------------------------------------------------------------------------
// 6. UNIQUE NULLS NOT DISTINCT
//
// Only one row of `keys_nnd` may have a NULL key: these tests run in uncommitted transactions,
// so they wait for each other on that key (each holds no other contested key: no deadlock).

fn nnd_null_rows(conn: &mut PgConnection) -> Vec<NndRow> {
    keys_nnd::table
        .filter(keys_nnd::k.is_null())
        .select(NndRow::as_select())
        .load(conn)
        .unwrap()
}

fn nnd_null_row(conn: &mut PgConnection, v: i32) -> NndRow {
    diesel::insert_into(keys_nnd::table)
        .values(&NewNnd { k: None, v })
        .returning(NndRow::as_returning())
        .get_result(conn)
        .unwrap()
}

#[test]
fn nulls_not_distinct_single_row_nothing_returns_the_existing_null_key_row() {
    setup();
    let conn = &mut test_connection();
    let existing = nnd_null_row(conn, 1);
    let got: (NndRow, Outcome) = diesel::insert_into(keys_nnd::table)
        .values(&NewNnd { k: None, v: 2 })
        .on_conflict_do(keys_nnd::k, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(got, (existing.clone(), Outcome::Unchanged));
    assert_eq!(nnd_null_rows(conn), vec![existing]);
}

#[test]
fn nulls_not_distinct_null_keys_in_one_update_batch_are_duplicates() {
    setup();
    let conn = &mut test_connection();
    let rows = vec![NewNnd { k: None, v: 1 }, NewNnd { k: None, v: 2 }];
    let result = diesel::insert_into(keys_nnd::table)
        .values(&rows)
        .on_conflict_do(keys_nnd::k, ConflictAction::Update)
        .bulk_insert_and_get::<NndRow, _>(conn);
    assert!(
        matches!(
            result,
            Err(Error::DuplicateConflictKey {
                first: 0,
                duplicate: 1
            })
        ),
        "expected DuplicateConflictKey {{ first: 0, duplicate: 1 }}, got {result:?}"
    );
    assert_eq!(nnd_null_rows(conn), vec![]);
}

#[test]
fn nulls_not_distinct_keep_last_stores_one_null_key_row_with_the_last_value() {
    setup();
    let conn = &mut test_connection();
    let rows = vec![NewNnd { k: None, v: 1 }, NewNnd { k: None, v: 2 }];
    let got: Vec<NndRow> = diesel::insert_into(keys_nnd::table)
        .values(&rows)
        .on_conflict_do(keys_nnd::k, ConflictAction::Update)
        .on_duplicate_keys(DuplicateKeys::KeepLast)
        .bulk_insert_and_get(conn)
        .unwrap();
    let stored = nnd_null_rows(conn);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].v, 2);
    assert_eq!(got, vec![stored[0].clone(), stored[0].clone()]);
}

#[test]
fn nulls_not_distinct_bulk_update_over_an_existing_null_key_row_updates_it() {
    setup();
    let conn = &mut test_connection();
    let existing = nnd_null_row(conn, 1);
    let fresh = unique_key("knnd");
    let rows = vec![
        NewNnd { k: None, v: 5 },
        NewNnd {
            k: Some(fresh.clone()),
            v: 6,
        },
    ];
    let got: Vec<(NndRow, Outcome)> = diesel::insert_into(keys_nnd::table)
        .values(&rows)
        .on_conflict_do(keys_nnd::k, ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(got.len(), 2);
    let updated = NndRow { v: 5, ..existing };
    assert_eq!(got[0], (updated.clone(), Outcome::Updated));
    assert_eq!(
        (got[1].0.k.as_deref(), got[1].0.v, got[1].1),
        (Some(fresh.as_str()), 6, Outcome::Inserted)
    );
    assert_eq!(nnd_null_rows(conn), vec![updated]);
}

// ---------------------------------------------------------------------------------------------
// 7. An exclusion constraint as the target of Nothing

fn excl_rows(conn: &mut PgConnection, prefix: &str) -> Vec<ExclRow> {
    keys_excl::table
        .filter(keys_excl::k.like(format!("{prefix}%")))
        .order(keys_excl::id)
        .select(ExclRow::as_select())
        .load(conn)
        .unwrap()
}

fn stored_excl(conn: &mut PgConnection, k: &str) -> ExclRow {
    diesel::insert_into(keys_excl::table)
        .values(&NewExcl {
            k: k.to_owned(),
            v: 1,
        })
        .returning(ExclRow::as_returning())
        .get_result(conn)
        .unwrap()
}

#[test]
fn exclusion_constraint_nothing_single_row_returns_the_conflicting_row_or_unsupported() {
    setup();
    let conn = &mut connection();
    let k = unique_key("kexcl");
    let existing = stored_excl(conn, &k);
    let result: diesel_upsert::Result<ExclRow> = diesel::insert_into(keys_excl::table)
        .values(&NewExcl { k: k.clone(), v: 2 })
        .on_conflict_do(on_constraint("keys_excl_k_excl"), ConflictAction::Nothing)
        .insert_and_get(conn);
    match result {
        Ok(row) => assert_eq!(row, existing),
        Err(Error::Unsupported { reason }) => eprintln!("Unsupported: {reason}"),
        Err(other) => panic!("expected the conflicting row or Unsupported, got {other:?}"),
    }
    assert_eq!(excl_rows(conn, &k), vec![existing], "nothing written");
}

#[test]
fn exclusion_constraint_nothing_bulk_returns_the_conflicting_row_or_unsupported() {
    setup();
    let conn = &mut connection();
    let p = unique_key("kexclbulk");
    let existing = stored_excl(conn, &format!("{p}-a"));
    let rows = vec![
        NewExcl {
            k: format!("{p}-a"),
            v: 2,
        },
        NewExcl {
            k: format!("{p}-b"),
            v: 3,
        },
    ];
    let result: diesel_upsert::Result<Vec<ExclRow>> = diesel::insert_into(keys_excl::table)
        .values(&rows)
        .on_conflict_do(on_constraint("keys_excl_k_excl"), ConflictAction::Nothing)
        .bulk_insert_and_get(conn);
    match result {
        Ok(got) => {
            assert_eq!(got.len(), 2);
            assert_eq!(got[0], existing);
            assert_eq!((got[1].k.as_str(), got[1].v), (rows[1].k.as_str(), 3));
            assert_eq!(excl_rows(conn, &p), vec![existing, got[1].clone()]);
        }
        Err(Error::Unsupported { reason }) => {
            eprintln!("Unsupported: {reason}");
            assert_eq!(excl_rows(conn, &p), vec![existing], "nothing written");
        }
        Err(other) => panic!("expected the rows or Unsupported, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 8. A partitioned table, every terminal

const PARTS_TARGET: (keys_parts::region, keys_parts::k) = (keys_parts::region, keys_parts::k);

fn new_part(region: &str, k: &str, v: i32) -> NewPart {
    NewPart {
        id: unique_i64(),
        region: region.to_owned(),
        k: k.to_owned(),
        v,
    }
}

fn parts_of(conn: &mut PgConnection, prefix: &str) -> Vec<Part> {
    keys_parts::table
        .filter(keys_parts::k.like(format!("{prefix}-%")))
        .order((keys_parts::region, keys_parts::k))
        .select(Part::as_select())
        .load(conn)
        .unwrap()
}

fn stored_part(conn: &mut PgConnection, region: &str, k: &str) -> Part {
    keys_parts::table
        .filter(keys_parts::region.eq(region))
        .filter(keys_parts::k.eq(k))
        .select(Part::as_select())
        .get_result(conn)
        .unwrap()
}

/// The v a second call with `v` leaves stored over a row holding `old`.
fn v_after(action: ConflictAction, old: i32, new: i32) -> i32 {
    match action {
        ConflictAction::Update => new,
        ConflictAction::Nothing => old,
    }
}

fn again_outcome(action: ConflictAction) -> Outcome {
    match action {
        ConflictAction::Update => Outcome::Updated,
        ConflictAction::Nothing => Outcome::Unchanged,
    }
}

/// `Ok(x)` → `Some(x)`; any error panics. (The `_with_outcome` terminals work on partitioned
/// tables on every server: `RETURNING old` on PostgreSQL 18, the two-phase method before.)
fn exact_outcome<T>(
    result: diesel_upsert::Result<T>,
    _conn: &mut PgConnection,
    _prefix: &str,
    _before: &[Part],
) -> Option<T> {
    match result {
        Ok(x) => Some(x),
        Err(other) => panic!("expected Ok, got {other:?}"),
    }
}

const ACTIONS: [(ConflictAction, &str); 2] = [
    (ConflictAction::Update, "eu"),
    (ConflictAction::Nothing, "us"),
];

#[test]
fn partitioned_table_insert_returns_the_primary_key_of_fresh_and_existing_rows() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-insert");
    for (action, region) in ACTIONS {
        let k = format!("{p}-{action:?}");
        let fresh = new_part(region, &k, 1);
        let id: i64 = diesel::insert_into(keys_parts::table)
            .values(&fresh)
            .on_conflict_do(PARTS_TARGET, action)
            .insert(conn)
            .unwrap();
        assert_eq!(id, fresh.id);
        let again = new_part(region, &k, 2);
        let id: i64 = diesel::insert_into(keys_parts::table)
            .values(&again)
            .on_conflict_do(PARTS_TARGET, action)
            .insert(conn)
            .unwrap();
        assert_eq!(id, fresh.id, "the existing row's id ({action:?})");
        let stored = stored_part(conn, region, &k);
        assert_eq!((stored.id, stored.v), (fresh.id, v_after(action, 1, 2)));
    }
    assert_eq!(parts_of(conn, &p).len(), 2);
}

#[test]
fn partitioned_table_insert_and_get_returns_fresh_and_existing_rows() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-get");
    for (action, region) in ACTIONS {
        let k = format!("{p}-{action:?}");
        let fresh = new_part(region, &k, 1);
        let first: Part = diesel::insert_into(keys_parts::table)
            .values(&fresh)
            .on_conflict_do(PARTS_TARGET, action)
            .insert_and_get(conn)
            .unwrap();
        assert_eq!(first, stored_part(conn, region, &k));
        assert_eq!((first.id, first.v), (fresh.id, 1));
        let second: Part = diesel::insert_into(keys_parts::table)
            .values(&new_part(region, &k, 2))
            .on_conflict_do(PARTS_TARGET, action)
            .insert_and_get(conn)
            .unwrap();
        assert_eq!(second, stored_part(conn, region, &k));
        assert_eq!((second.id, second.v), (fresh.id, v_after(action, 1, 2)));
    }
}

#[test]
fn partitioned_table_insert_and_get_with_outcome_reports_exact_outcomes() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-outcome");
    for (action, region) in ACTIONS {
        let k = format!("{p}-{action:?}");
        let fresh = new_part(region, &k, 1);
        let before = parts_of(conn, &p);
        let result = diesel::insert_into(keys_parts::table)
            .values(&fresh)
            .on_conflict_do(PARTS_TARGET, action)
            .insert_and_get_with_outcome::<Part, _>(conn);
        match exact_outcome(result, conn, &p, &before) {
            Some((row, outcome)) => {
                assert_eq!(outcome, Outcome::Inserted);
                assert_eq!(row, stored_part(conn, region, &k));
                assert_eq!((row.id, row.v), (fresh.id, 1));
            }
            None => {
                diesel::insert_into(keys_parts::table)
                    .values(&fresh)
                    .execute(conn)
                    .unwrap();
            }
        }
        let before = parts_of(conn, &p);
        let result = diesel::insert_into(keys_parts::table)
            .values(&new_part(region, &k, 2))
            .on_conflict_do(PARTS_TARGET, action)
            .insert_and_get_with_outcome::<Part, _>(conn);
        if let Some((row, outcome)) = exact_outcome(result, conn, &p, &before) {
            assert_eq!(outcome, again_outcome(action));
            assert_eq!(row, stored_part(conn, region, &k));
            assert_eq!((row.id, row.v), (fresh.id, v_after(action, 1, 2)));
        }
    }
}

/// A fresh batch over both partitions, then a batch of the same keys (new `v`, new ids) plus a
/// fresh key. Returns, per call, the inputs.
fn parts_batches(p: &str, action: ConflictAction) -> (Vec<NewPart>, Vec<NewPart>) {
    let (a, b, c) = (
        format!("{p}-{action:?}-a"),
        format!("{p}-{action:?}-b"),
        format!("{p}-{action:?}-c"),
    );
    let first = vec![new_part("us", &a, 1), new_part("eu", &b, 1)];
    let second = vec![
        new_part("eu", &c, 3),
        new_part("us", &a, 2),
        new_part("eu", &b, 2),
    ];
    (first, second)
}

#[test]
fn partitioned_table_bulk_insert_returns_primary_keys_of_fresh_and_existing_rows() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-bulk");
    for (action, _) in ACTIONS {
        let (first, second) = parts_batches(&p, action);
        let ids: Vec<i64> = diesel::insert_into(keys_parts::table)
            .values(&first)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert(conn)
            .unwrap();
        assert_eq!(ids, vec![first[0].id, first[1].id]);
        let ids: Vec<i64> = diesel::insert_into(keys_parts::table)
            .values(&second)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert(conn)
            .unwrap();
        assert_eq!(ids, vec![second[0].id, first[0].id, first[1].id]);
        let a = stored_part(conn, "us", &first[0].k);
        assert_eq!(a.v, v_after(action, 1, 2));
    }
}

#[test]
fn partitioned_table_bulk_insert_and_get_returns_fresh_and_existing_rows() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-bulkget");
    for (action, _) in ACTIONS {
        let (first, second) = parts_batches(&p, action);
        let got: Vec<Part> = diesel::insert_into(keys_parts::table)
            .values(&first)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert_and_get(conn)
            .unwrap();
        let summary: Vec<_> = got.iter().map(|r| (r.id, r.region.as_str(), r.v)).collect();
        assert_eq!(
            summary,
            vec![(first[0].id, "us", 1), (first[1].id, "eu", 1)]
        );
        let got: Vec<Part> = diesel::insert_into(keys_parts::table)
            .values(&second)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert_and_get(conn)
            .unwrap();
        let v = v_after(action, 1, 2);
        let summary: Vec<_> = got.iter().map(|r| (r.id, r.k.as_str(), r.v)).collect();
        assert_eq!(
            summary,
            vec![
                (second[0].id, second[0].k.as_str(), 3),
                (first[0].id, first[0].k.as_str(), v),
                (first[1].id, first[1].k.as_str(), v),
            ]
        );
        for row in &got {
            assert_eq!(row, &stored_part(conn, &row.region, &row.k));
        }
    }
}

#[test]
fn partitioned_table_bulk_insert_and_get_with_outcome_reports_exact_outcomes() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-bulkoutcome");
    for (action, _) in ACTIONS {
        let (first, second) = parts_batches(&p, action);
        let before = parts_of(conn, &p);
        let result = diesel::insert_into(keys_parts::table)
            .values(&first)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert_and_get_with_outcome::<Part, _>(conn);
        match exact_outcome(result, conn, &p, &before) {
            Some(got) => {
                let summary: Vec<_> = got.iter().map(|(r, o)| (r.id, r.v, *o)).collect();
                assert_eq!(
                    summary,
                    vec![
                        (first[0].id, 1, Outcome::Inserted),
                        (first[1].id, 1, Outcome::Inserted)
                    ]
                );
            }
            None => {
                diesel::insert_into(keys_parts::table)
                    .values(&first)
                    .execute(conn)
                    .unwrap();
            }
        }
        let before = parts_of(conn, &p);
        let result = diesel::insert_into(keys_parts::table)
            .values(&second)
            .on_conflict_do(PARTS_TARGET, action)
            .bulk_insert_and_get_with_outcome::<Part, _>(conn);
        if let Some(got) = exact_outcome(result, conn, &p, &before) {
            let v = v_after(action, 1, 2);
            let again = again_outcome(action);
            let summary: Vec<_> = got.iter().map(|(r, o)| (r.id, r.v, *o)).collect();
            assert_eq!(
                summary,
                vec![
                    (second[0].id, 3, Outcome::Inserted),
                    (first[0].id, v, again),
                    (first[1].id, v, again),
                ]
            );
            for (row, _) in &got {
                assert_eq!(row, &stored_part(conn, &row.region, &row.k));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. A schema-qualified table with SQL-expression keys in bulk

/// One row whose key is an SQL expression.
type LoweredRow = (
    diesel::dsl::Eq<keys_t::k, diesel::expression::SqlLiteral<diesel::sql_types::Text>>,
    diesel::dsl::Eq<keys_t::v, i32>,
);

/// Rows `(k = lower('<P>-A'), v)` and `(k = lower('<P>-B'), v)`, where `<P>` is the upper-case
/// prefix.
fn lowered_rows(p: &str, vs: [i32; 2]) -> Vec<LoweredRow> {
    ["A", "B"]
        .iter()
        .zip(vs)
        .map(|(suffix, v)| {
            (
                keys_t::k.eq(sql::<diesel::sql_types::Text>(&format!(
                    "lower('{}-{suffix}')",
                    p.to_uppercase()
                ))),
                keys_t::v.eq(v),
            )
        })
        .collect()
}

fn t_rows(conn: &mut PgConnection, p: &str) -> Vec<TRow> {
    keys_t::table
        .filter(keys_t::k.like(format!("{p}-%")))
        .order(keys_t::k)
        .select(TRow::as_select())
        .load(conn)
        .unwrap()
}

fn schema_qualified_round(
    conn: &mut PgConnection,
    p: &str,
    vs: [i32; 2],
    action: ConflictAction,
    skip_unchanged: bool,
) -> Vec<(TRow, Outcome)> {
    let mut query = diesel::insert_into(keys_t::table)
        .values(lowered_rows(p, vs))
        .on_conflict_do(keys_t::k, action);
    if skip_unchanged {
        query = query.skip_unchanged();
    }
    query.bulk_insert_and_get_with_outcome(conn).unwrap()
}

fn check_schema_qualified(action: ConflictAction, skip_unchanged: bool) {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("ksch");
    let first = schema_qualified_round(conn, &p, [1, 2], action, skip_unchanged);
    let summary: Vec<_> = first.iter().map(|(r, o)| (r.k.clone(), r.v, *o)).collect();
    assert_eq!(
        summary,
        vec![
            (format!("{p}-a"), 1, Outcome::Inserted),
            (format!("{p}-b"), 2, Outcome::Inserted),
        ]
    );
    let rows: Vec<TRow> = first.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(t_rows(conn, &p), rows);

    // The same keys again: row a with a new value, row b with the same one.
    let second = schema_qualified_round(conn, &p, [5, 2], action, skip_unchanged);
    let (v_a, outcome_a, outcome_b) = match (action, skip_unchanged) {
        (ConflictAction::Nothing, _) => (1, Outcome::Unchanged, Outcome::Unchanged),
        (ConflictAction::Update, false) => (5, Outcome::Updated, Outcome::Updated),
        (ConflictAction::Update, true) => (5, Outcome::Updated, Outcome::Unchanged),
    };
    let expected = vec![
        (
            TRow {
                v: v_a,
                ..rows[0].clone()
            },
            outcome_a,
        ),
        (rows[1].clone(), outcome_b),
    ];
    assert_eq!(second, expected);
    assert_eq!(
        t_rows(conn, &p),
        expected.into_iter().map(|(r, _)| r).collect::<Vec<_>>()
    );
}

#[test]
fn schema_qualified_table_with_sql_expression_keys_bulk_update() {
    check_schema_qualified(ConflictAction::Update, false);
}

#[test]
fn schema_qualified_table_with_sql_expression_keys_bulk_nothing() {
    check_schema_qualified(ConflictAction::Nothing, false);
}

#[test]
fn schema_qualified_table_with_sql_expression_keys_bulk_skip_unchanged() {
    check_schema_qualified(ConflictAction::Update, true);
}

// ---------------------------------------------------------------------------------------------
// 10. Rows on the VALUES path keep their column types

/// Two distinct timestamps for this test and their untyped SQL literals with a +02 offset.
fn timestamps_and_literals() -> Vec<(DateTime<Utc>, String)> {
    let n = unique_i64();
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap() + Duration::hours(n);
    [base, base + Duration::minutes(30)]
        .into_iter()
        .map(|t| {
            let local = t + Duration::hours(2);
            (t, format!("'{}+02'", local.format("%Y-%m-%d %H:%M:%S")))
        })
        .collect()
}

fn check_sql_timestamptz_keys(action: ConflictAction) {
    setup();
    let conn = &mut test_connection();
    let values = timestamps_and_literals();
    let rows: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, (_, literal))| {
            (
                keys_tsk::k.eq(sql::<diesel::sql_types::Timestamptz>(literal)),
                keys_tsk::v.eq(i as i32 + 1),
            )
        })
        .collect();
    let keys: Vec<DateTime<Utc>> = values.iter().map(|(t, _)| *t).collect();
    for (round, again) in [(0, Outcome::Inserted), (1, again_outcome(action))] {
        let got: Vec<(TskRow, Outcome)> = diesel::insert_into(keys_tsk::table)
            .values(&rows)
            .on_conflict_do(keys_tsk::k, action)
            .bulk_insert_and_get_with_outcome(conn)
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        let summary: Vec<_> = got.iter().map(|(r, o)| (r.k, r.v, *o)).collect();
        assert_eq!(summary, vec![(keys[0], 1, again), (keys[1], 2, again)]);
    }
    let stored: Vec<(DateTime<Utc>, i32)> = keys_tsk::table
        .filter(keys_tsk::k.eq_any(&keys))
        .order(keys_tsk::k)
        .select((keys_tsk::k, keys_tsk::v))
        .load(conn)
        .unwrap();
    assert_eq!(stored, vec![(keys[0], 1), (keys[1], 2)]);
}

#[test]
fn sql_timestamptz_keys_on_the_values_path_keep_their_type_update() {
    check_sql_timestamptz_keys(ConflictAction::Update);
}

#[test]
fn sql_timestamptz_keys_on_the_values_path_keep_their_type_nothing() {
    check_sql_timestamptz_keys(ConflictAction::Nothing);
}

// ---------------------------------------------------------------------------------------------
// 11. skip_unchanged compares stored representations

fn skip_ci_rows(conn: &mut PgConnection, p: &str) -> Vec<SkipCiRow> {
    keys_skip_ci::table
        .filter(keys_skip_ci::k.like(format!("{p}-%")))
        .order(keys_skip_ci::k)
        .select(SkipCiRow::as_select())
        .load(conn)
        .unwrap()
}

fn stored_skip_ci(conn: &mut PgConnection, k: &str, c: &str) -> SkipCiRow {
    diesel::insert_into(keys_skip_ci::table)
        .values(&NewSkipCi {
            k: k.to_owned(),
            c: c.to_owned(),
            v: 1,
        })
        .returning(SkipCiRow::as_returning())
        .get_result(conn)
        .unwrap()
}

#[test]
fn skip_unchanged_writes_a_citext_value_differing_only_in_case_single_row() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kskipci");
    let k = format!("{p}-a");
    let existing = stored_skip_ci(conn, &k, "Hello");
    let got: (SkipCiRow, Outcome) = diesel::insert_into(keys_skip_ci::table)
        .values(&NewSkipCi {
            k: k.clone(),
            c: "HELLO".to_owned(),
            v: 1,
        })
        .on_conflict_do(keys_skip_ci::k, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)
        .unwrap();
    let expected = SkipCiRow {
        c: "HELLO".to_owned(),
        ..existing
    };
    assert_eq!(got, (expected.clone(), Outcome::Updated));
    assert_eq!(skip_ci_rows(conn, &p), vec![expected]);
}

#[test]
fn skip_unchanged_writes_a_citext_value_differing_only_in_case_bulk() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kskipcib");
    let (ka, kb) = (format!("{p}-a"), format!("{p}-b"));
    let a = stored_skip_ci(conn, &ka, "Hello");
    let b = stored_skip_ci(conn, &kb, "Same");
    let rows = vec![
        NewSkipCi {
            k: ka,
            c: "HELLO".to_owned(),
            v: 1,
        },
        NewSkipCi {
            k: kb,
            c: "Same".to_owned(),
            v: 1,
        },
    ];
    let got: Vec<(SkipCiRow, Outcome)> = diesel::insert_into(keys_skip_ci::table)
        .values(&rows)
        .on_conflict_do(keys_skip_ci::k, ConflictAction::Update)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let a = SkipCiRow {
        c: "HELLO".to_owned(),
        ..a
    };
    assert_eq!(
        got,
        vec![
            (a.clone(), Outcome::Updated),
            (b.clone(), Outcome::Unchanged)
        ]
    );
    assert_eq!(skip_ci_rows(conn, &p), vec![a, b]);
}

fn json_rows(conn: &mut PgConnection, p: &str) -> Vec<JsonRow> {
    keys_json::table
        .filter(keys_json::k.like(format!("{p}-%")))
        .order(keys_json::k)
        .select(JsonRow::as_select())
        .load(conn)
        .unwrap()
}

/// One upsert of `(k, v)` rows (the json column left to its default), single-row when there
/// is one row.
fn json_left_out(
    conn: &mut PgConnection,
    rows: &[(String, i32)],
) -> diesel_upsert::Result<Vec<(JsonRow, Outcome)>> {
    let values: Vec<_> = rows
        .iter()
        .map(|(k, v)| (keys_json::k.eq(k.clone()), keys_json::v.eq(*v)))
        .collect();
    if let [single] = &values[..] {
        diesel::insert_into(keys_json::table)
            .values(single.clone())
            .on_conflict_do(keys_json::k, ConflictAction::Update)
            .skip_unchanged()
            .insert_and_get_with_outcome(conn)
            .map(|r| vec![r])
    } else {
        diesel::insert_into(keys_json::table)
            .values(&values)
            .on_conflict_do(keys_json::k, ConflictAction::Update)
            .skip_unchanged()
            .bulk_insert_and_get_with_outcome(conn)
    }
}

/// One upsert of `(k, json, v)` rows with `j = '<json>'::json` in the SET list, single-row when
/// there is one row.
fn json_in_set_list(
    conn: &mut PgConnection,
    rows: &[(String, &str, i32)],
) -> diesel_upsert::Result<Vec<(JsonRow, Outcome)>> {
    let values: Vec<_> = rows
        .iter()
        .map(|(k, json, v)| {
            (
                keys_json::k.eq(k.clone()),
                keys_json::j.eq(sql::<diesel::sql_types::Text>(&format!("'{json}'::json"))),
                keys_json::v.eq(*v),
            )
        })
        .collect();
    if let [single] = &values[..] {
        diesel::insert_into(keys_json::table)
            .values(single.clone())
            .on_conflict_do(keys_json::k, ConflictAction::Update)
            .skip_unchanged()
            .insert_and_get_with_outcome(conn)
            .map(|r| vec![r])
    } else {
        diesel::insert_into(keys_json::table)
            .values(&values)
            .on_conflict_do(keys_json::k, ConflictAction::Update)
            .skip_unchanged()
            .bulk_insert_and_get_with_outcome(conn)
    }
}

fn outcomes_and_values(got: &[(JsonRow, Outcome)]) -> Vec<(String, String, i32, Outcome)> {
    got.iter()
        .map(|(r, o)| (r.k.clone(), r.j.clone(), r.v, *o))
        .collect()
}

fn check_json_left_out(keys: usize) {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kjson");
    let ks: Vec<String> = (0..keys).map(|i| format!("{p}-{i}")).collect();
    let rows =
        |vs: &[i32]| -> Vec<(String, i32)> { ks.iter().cloned().zip(vs.iter().copied()).collect() };
    let ones = vec![1; keys];
    let expect = |vs: &[i32], outcomes: &[Outcome]| -> Vec<(String, String, i32, Outcome)> {
        ks.iter()
            .zip(vs)
            .zip(outcomes)
            .map(|((k, v), o)| (k.clone(), "{}".to_owned(), *v, *o))
            .collect()
    };
    let got = json_left_out(conn, &rows(&ones)).unwrap();
    assert_eq!(
        outcomes_and_values(&got),
        expect(&ones, &vec![Outcome::Inserted; keys])
    );
    let got = json_left_out(conn, &rows(&ones)).expect("an identical row is skipped");
    assert_eq!(
        outcomes_and_values(&got),
        expect(&ones, &vec![Outcome::Unchanged; keys])
    );
    let mut changed = ones.clone();
    changed[0] = 2;
    let got = json_left_out(conn, &rows(&changed)).unwrap();
    let mut outcomes = vec![Outcome::Unchanged; keys];
    outcomes[0] = Outcome::Updated;
    assert_eq!(outcomes_and_values(&got), expect(&changed, &outcomes));
    let stored: Vec<i32> = json_rows(conn, &p).iter().map(|r| r.v).collect();
    assert_eq!(stored, changed);
}

#[test]
fn skip_unchanged_on_a_table_with_a_json_column_left_out_of_the_insert_single_row() {
    check_json_left_out(1);
}

#[test]
fn skip_unchanged_on_a_table_with_a_json_column_left_out_of_the_insert_bulk() {
    check_json_left_out(2);
}

fn check_json_in_set_list(keys: usize) {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kjsonset");
    let ks: Vec<String> = (0..keys).map(|i| format!("{p}-{i}")).collect();
    let rows = |jsons: &[&'static str]| -> Vec<(String, &'static str, i32)> {
        ks.iter()
            .cloned()
            .zip(jsons.iter().copied())
            .map(|(k, j)| (k, j, 1))
            .collect()
    };
    let expect = |jsons: &[&str], outcomes: &[Outcome]| -> Vec<(String, String, i32, Outcome)> {
        ks.iter()
            .zip(jsons)
            .zip(outcomes)
            .map(|((k, j), o)| (k.clone(), (*j).to_owned(), 1, *o))
            .collect()
    };
    let same = vec![r#"{"a":1}"#; keys];
    let got = json_in_set_list(conn, &rows(&same)).unwrap();
    assert_eq!(
        outcomes_and_values(&got),
        expect(&same, &vec![Outcome::Inserted; keys])
    );
    let got = json_in_set_list(conn, &rows(&same)).expect("json values are compared");
    assert_eq!(
        outcomes_and_values(&got),
        expect(&same, &vec![Outcome::Unchanged; keys])
    );
    let mut changed = same.clone();
    changed[0] = r#"{"a":2}"#;
    let got = json_in_set_list(conn, &rows(&changed)).unwrap();
    let mut outcomes = vec![Outcome::Unchanged; keys];
    outcomes[0] = Outcome::Updated;
    assert_eq!(outcomes_and_values(&got), expect(&changed, &outcomes));
    let stored: Vec<String> = json_rows(conn, &p).into_iter().map(|r| r.j).collect();
    assert_eq!(stored, changed);
}

#[test]
fn skip_unchanged_compares_json_values_in_the_set_list_single_row() {
    check_json_in_set_list(1);
}

#[test]
fn skip_unchanged_compares_json_values_in_the_set_list_bulk() {
    check_json_in_set_list(2);
}

// ---------------------------------------------------------------------------------------------
// 12. A false update condition returns the committed row

fn committed_plain(conn: &mut PgConnection) -> PlainRow {
    setup();
    diesel::insert_into(keys_plain::table)
        .values(&NewPlain {
            k: unique_key("kcond"),
            v: 1,
        })
        .returning(PlainRow::as_returning())
        .get_result(conn)
        .unwrap()
}

fn false_condition_upsert(
    conn: &mut PgConnection,
    k: &str,
) -> diesel_upsert::Result<(PlainRow, Outcome)> {
    diesel::insert_into(keys_plain::table)
        .values(&NewPlain {
            k: k.to_owned(),
            v: 2,
        })
        .on_conflict_do(keys_plain::k, ConflictAction::Update)
        .update_condition(keys_plain::v.lt(0))
        .insert_and_get_with_outcome(conn)
}

/// The row as another client sees it.
fn committed_state(k: &str) -> Vec<(i64, i32)> {
    pg_client()
        .query("SELECT id, v FROM keys_plain WHERE k = $1", &[&k])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_false_update_condition_returns_the_committed_row_unchanged_outside_a_transaction() {
    let conn = &mut connection();
    let existing = committed_plain(conn);
    let got = false_condition_upsert(conn, &existing.k).unwrap();
    assert_eq!(got, (existing.clone(), Outcome::Unchanged));
    assert_eq!(committed_state(&existing.k), vec![(existing.id, 1)]);
}

#[test]
fn a_false_update_condition_returns_the_committed_row_unchanged_inside_a_caller_transaction() {
    let conn = &mut connection();
    let existing = committed_plain(conn);
    let got = conn
        .transaction::<_, Error, _>(|conn| false_condition_upsert(conn, &existing.k))
        .unwrap();
    assert_eq!(got, (existing.clone(), Outcome::Unchanged));
    assert_eq!(committed_state(&existing.k), vec![(existing.id, 1)]);
}

#[test]
fn partitioned_table_conditions_and_skip_unchanged_report_unchanged_rows_exactly() {
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-cond");
    let k = format!("{p}-a");
    let fresh = new_part("eu", &k, 1);
    diesel::insert_into(keys_parts::table)
        .values(&fresh)
        .execute(conn)
        .unwrap();
    // A false condition: the row is left alone and returned as stored.
    let (row, outcome): (Part, Outcome) = diesel::insert_into(keys_parts::table)
        .values(&new_part("eu", &k, 5))
        .on_conflict_do(PARTS_TARGET, ConflictAction::Update)
        .update_condition(keys_parts::v.gt(100))
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!((row.id, row.v, outcome), (fresh.id, 1, Outcome::Unchanged));
    // skip_unchanged on an identical row, then on a changed one.
    let (row, outcome): (Part, Outcome) = diesel::insert_into(keys_parts::table)
        .values(&new_part("eu", &k, 1))
        .on_conflict_do(PARTS_TARGET, ConflictAction::Update)
        .update_only(keys_parts::v)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!((row.id, row.v, outcome), (fresh.id, 1, Outcome::Unchanged));
    let k2 = format!("{p}-b");
    let rows = vec![
        new_part("us", &k2, 7),
        new_part("eu", &k, 1),
        new_part("eu", &format!("{p}-c"), 3),
    ];
    let result: Vec<(Part, Outcome)> = diesel::insert_into(keys_parts::table)
        .values(&rows)
        .on_conflict_do(PARTS_TARGET, ConflictAction::Update)
        .update_only(keys_parts::v)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let outcomes: Vec<_> = result.iter().map(|(r, o)| (r.k.clone(), r.v, *o)).collect();
    assert_eq!(
        outcomes,
        [
            (k2.clone(), 7, Outcome::Inserted),
            (k.clone(), 1, Outcome::Unchanged),
            (format!("{p}-c"), 3, Outcome::Inserted),
        ]
    );
    let rows = vec![new_part("us", &k2, 8), new_part("eu", &k, 1)];
    let result: Vec<(Part, Outcome)> = diesel::insert_into(keys_parts::table)
        .values(&rows)
        .on_conflict_do(PARTS_TARGET, ConflictAction::Update)
        .update_only(keys_parts::v)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let outcomes: Vec<_> = result.iter().map(|(r, o)| (r.v, *o)).collect();
    assert_eq!(outcomes, [(8, Outcome::Updated), (1, Outcome::Unchanged)]);
    assert_eq!(stored_part(conn, "us", &k2).v, 8);
    assert_eq!(parts_of(conn, &p).len(), 3);
}

#[test]
fn bulk_execute_finds_index_equal_duplicates_and_counts_per_input_row() {
    use diesel_upsert::BulkSummary;
    setup();
    let conn = &mut test_connection();
    let grp = unique_key("kexec");
    let new = |k: &str, v| NewCi {
        k: format!("{grp}-{k}"),
        v,
        grp: grp.clone(),
    };
    let rows = vec![new("a", 1), new("A", 2), new("b", 3)];
    let error = diesel::insert_into(keys_ci::table)
        .values(&rows)
        .on_conflict_do(keys_ci::k, ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::DuplicateConflictKey {
                first: 0,
                duplicate: 1
            }
        ),
        "{error:?}"
    );
    let summary = diesel::insert_into(keys_ci::table)
        .values(&rows)
        .on_conflict_do(keys_ci::k, ConflictAction::Update)
        .on_duplicate_keys(DuplicateKeys::KeepLast)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 2,
            updated: 0,
            unchanged: 1
        }
    );
    let stored: Vec<(String, i32)> = keys_ci::table
        .filter(keys_ci::grp.eq(&grp))
        .order(keys_ci::v)
        .select((keys_ci::k, keys_ci::v))
        .load(conn)
        .unwrap();
    assert_eq!(stored, [(format!("{grp}-A"), 2), (format!("{grp}-b"), 3)]);
}

#[test]
fn bulk_execute_on_a_partitioned_table_counts_exactly_or_says_it_cannot() {
    use diesel_upsert::BulkSummary;
    setup();
    let conn = &mut test_connection();
    let p = unique_key("kparts-exec");
    let rows = vec![
        new_part("eu", &format!("{p}-a"), 1),
        new_part("us", &format!("{p}-b"), 1),
    ];
    // `Nothing` returns only inserted rows: exact on every server.
    let summary = diesel::insert_into(keys_parts::table)
        .values(&rows)
        .on_conflict_do(PARTS_TARGET, ConflictAction::Nothing)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );
    let version: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "current_setting('server_version_num')::int",
    ))
    .get_result(conn)
    .unwrap();
    let again = vec![
        new_part("eu", &format!("{p}-a"), 5),
        new_part("us", &format!("{p}-c"), 1),
    ];
    let result = diesel::insert_into(keys_parts::table)
        .values(&again)
        .on_conflict_do(PARTS_TARGET, ConflictAction::Update)
        .bulk_execute(conn);
    if version >= 180_000 {
        assert_eq!(
            result.unwrap(),
            BulkSummary {
                inserted: 1,
                updated: 1,
                unchanged: 0
            }
        );
        assert_eq!(stored_part(conn, "eu", &format!("{p}-a")).v, 5);
    } else {
        assert!(
            matches!(result, Err(Error::Unsupported { .. })),
            "{result:?}"
        );
        assert_eq!(parts_of(conn, &p).len(), 2, "nothing written");
    }
}
