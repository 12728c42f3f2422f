//! The bulk plan without a database: rows from `diesel::insert_into(..).values(..)`, a catalog
//! written by hand, the statements' answers made up.

use super::*;
use crate::plan::rows::MAX_BINDS;
use crate::rows::Records;
use crate::schema::{Catalog, ColumnType};
use crate::spec::BulkSummary;
use crate::target::KeyPart;
use diesel::prelude::*;

diesel::table! {
    t (id) {
        id -> Int8,
        k -> Nullable<Text>,
        v -> Int4,
    }
}

#[derive(Insertable)]
#[diesel(table_name = t, treat_none_as_default_value = false)]
struct New {
    k: Option<&'static str>,
    v: i32,
}

fn catalog() -> Catalog {
    let column = |name: &str, oid| ColumnType {
        name: name.to_owned(),
        sql: "text".to_owned(),
        collation: None,
        deterministic: true,
        oid,
        typmod: -1,
    };
    Catalog {
        server_version: 150_000,
        partitioned: false,
        before_triggers: false,
        columns: vec![column("id", 20), column("k", 25), column("v", 23)],
        constraint_columns: Vec::new(),
        nulls_not_distinct: false,
        exclusion: false,
        arbiter: None,
    }
}

const KEY_COLUMNS: &[&str] = &["k"];

fn settings(method: Method, policy: Option<DuplicateKeys>) -> Settings {
    Settings {
        method,
        policy,
        outcomes: true,
        columns: 2,
        fixed: 0,
        rows_back: true,
        update: false,
        limits: Limits::default(),
    }
}

const XMAX: Method = Method::OneStatement(InsertedFlag::Xmax);

/// The input positions a step sends.
fn positions<T, R: RowValues<T>>(step: &Step<'_, T, R>) -> Vec<i32> {
    match step {
        Step::Upsert {
            rows: BulkRows::Arrays(a),
            ..
        }
        | Step::Fetch {
            rows: BulkRows::Arrays(a),
            ..
        }
        | Step::Count {
            rows: BulkRows::Arrays(a),
            ..
        } => a.positions.clone(),
        Step::Upsert {
            rows: BulkRows::Values(v),
            ..
        }
        | Step::Fetch {
            rows: BulkRows::Values(v),
            ..
        }
        | Step::Count {
            rows: BulkRows::Values(v),
            ..
        } => v.iter().map(|(i, _)| *i as i32).collect(),
        Step::Insert { rows, .. } => vec![-1; rows.len()],
        Step::Update { rows } => probe_positions(rows),
    }
}

fn new(k: Option<&'static str>, v: i32) -> New {
    New { k, v }
}

#[test]
fn empty_input_sends_nothing() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input: Vec<New> = Vec::new();
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let mut plan: BulkPlan<_, _, &str> =
            BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
        assert!(plan.grouping().unwrap().is_none());
        assert!(plan.next().unwrap().is_none());
        assert!(plan.finish().unwrap().is_empty());
    }
}

#[test]
fn byte_keys_are_sent_one_per_key_in_key_order_and_duplicates_get_their_representative_row() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let rows = vec![new(Some("b"), 1), new(Some("a"), 2), new(Some("b"), 3)];
    let input = rows;
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let settings = settings(XMAX, Some(DuplicateKeys::KeepLast));
        let mut plan = BulkPlan::new(rows, &key, KEY_COLUMNS, settings).unwrap();
        assert!(
            plan.grouping().unwrap().is_none(),
            "text keys compare by bytes"
        );
        let step = plan.next().unwrap().unwrap();
        assert_eq!(positions(&step), [1, 2]);
        // Returned in another order than sent: paired by ordinal.
        plan.written(vec![
            (Some(2), "b3", Some(false)),
            (Some(1), "a2", Some(true)),
        ])
        .unwrap();
        assert!(plan.next().unwrap().is_none());
        assert_eq!(
            plan.finish().unwrap(),
            [
                ("b3", Some(Outcome::Unchanged)),
                ("a2", Some(Outcome::Inserted)),
                ("b3", Some(Outcome::Updated)),
            ]
        );
    }
}

#[test]
fn duplicate_byte_keys_without_a_policy_are_an_error_before_any_step() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("x"), 1), new(Some("x"), 2)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let error =
            BulkPlan::<_, _, &str>::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap_err();
        assert!(matches!(
            error,
            Error::DuplicateConflictKey {
                first: 0,
                duplicate: 1
            }
        ));
    }
}

#[test]
fn keys_that_bytes_cannot_compare_are_ranked_by_postgresql_first() {
    let mut catalog = catalog();
    catalog.columns[1].deterministic = false;
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("a"), 1), new(Some("A"), 2)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let mut plan: BulkPlan<_, _, &str> =
            BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
        assert!(plan.grouping().unwrap().is_some());
        assert!(plan.next().is_err(), "no step before the ranks");
        let error = plan.ranked(vec![(0, 1), (1, 1)]).unwrap_err();
        assert!(matches!(
            error,
            Error::DuplicateConflictKey {
                first: 0,
                duplicate: 1
            }
        ));
    }
}

#[test]
fn a_row_that_vanished_before_its_read_back_is_sent_again() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("a"), 1), new(Some("b"), 2)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let settings = settings(Method::OneStatement(InsertedFlag::Xmax), None);
        let mut plan = BulkPlan::new(rows, &key, KEY_COLUMNS, settings).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert_eq!(positions(&step), [0, 1]);
        plan.written(vec![(Some(0), "a", Some(true))]).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert!(matches!(step, Step::Fetch { lock: false, .. }));
        assert_eq!(positions(&step), [1]);
        plan.fetched(Vec::new()).unwrap(); // deleted in between
        let step = plan.next().unwrap().unwrap();
        assert!(matches!(step, Step::Upsert { .. }));
        assert_eq!(positions(&step), [1], "only the vanished row");
        plan.written(vec![(Some(1), "b", Some(true))]).unwrap();
        assert!(plan.next().unwrap().is_none());
        let outcomes: Vec<_> = plan.finish().unwrap().into_iter().map(|(_, o)| o).collect();
        assert_eq!(outcomes, [Some(Outcome::Inserted); 2]);
    }
}

#[test]
fn a_row_vanishing_at_every_attempt_ends_the_call() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("a"), 1)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let mut plan: BulkPlan<_, _, &str> =
            BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
        let mut sent = 0;
        let error = loop {
            match plan.next() {
                Ok(Some(Step::Upsert { .. })) => plan.written(Vec::new()).unwrap(),
                Ok(Some(_)) => plan.fetched(Vec::new()).unwrap(),
                Ok(None) => panic!("completed without the row"),
                Err(e) => break e,
            }
            sent += 1;
        };
        assert_eq!(sent, 2 * ATTEMPTS);
        assert!(matches!(error, Error::Internal { .. }));
    }
}

#[test]
fn rows_with_a_null_key_are_inserted_last_and_paired_by_order() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(None, 1), new(Some("a"), 2), new(None, 3)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let mut plan = BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert_eq!(positions(&step), [1]);
        plan.written(vec![(Some(1), "a", Some(true))]).unwrap();
        let step = plan.next().unwrap().unwrap();
        let Step::Insert { rows, flag } = step else {
            panic!("expected the insert, got {step:?}")
        };
        assert_eq!((rows.len(), flag), (2, InsertedFlag::Xmax));
        assert!(
            plan.inserted(vec![("n1", Some(true))]).is_err(),
            "one row short"
        );
        plan.inserted(vec![("n1", Some(true)), ("n3", Some(true))])
            .unwrap();
        assert!(plan.next().unwrap().is_none());
        let out: Vec<_> = plan.finish().unwrap().into_iter().map(|(o, _)| o).collect();
        assert_eq!(out, ["n1", "a", "n3"]);
    }
}

#[test]
fn two_phases_insert_then_lock_then_update_only_the_locked_rows() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let rows = vec![new(Some("a"), 1), new(Some("b"), 2), new(Some("c"), 3)];
    let input = rows;
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    {
        let mut plan =
            BulkPlan::new(rows, &key, KEY_COLUMNS, settings(Method::TwoPhases, None)).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert!(matches!(
            step,
            Step::Upsert {
                flag: InsertedFlag::Always(true),
                do_nothing: true,
                ..
            }
        ));
        plan.written(vec![(Some(0), "a-new", Some(true))]).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert!(matches!(step, Step::Fetch { lock: true, .. }));
        assert_eq!(positions(&step), [1, 2]);
        // "c" vanished before it could be locked; "b" is locked.
        plan.fetched(vec![(1, "b-old")]).unwrap();
        let step = plan.next().unwrap().unwrap();
        assert!(matches!(
            step,
            Step::Upsert {
                flag: InsertedFlag::Always(false),
                do_nothing: false,
                ..
            }
        ));
        assert_eq!(positions(&step), [1]);
        plan.written(Vec::new()).unwrap(); // a false condition: "b" stays as read
                                           // The next attempt starts over with "c".
        let step = plan.next().unwrap().unwrap();
        assert_eq!(positions(&step), [2]);
        plan.written(vec![(Some(2), "c-new", Some(true))]).unwrap();
        assert!(plan.next().unwrap().is_none());
        assert_eq!(
            plan.finish().unwrap(),
            [
                ("a-new", Some(Outcome::Inserted)),
                ("b-old", Some(Outcome::Unchanged)),
                ("c-new", Some(Outcome::Inserted)),
            ]
        );
    }
}

#[test]
fn values_lists_are_cut_at_the_bind_budget() {
    use diesel::dsl::sql;
    use diesel::sql_types::{Nullable, Text};
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    // SQL expressions: sent as a VALUES list, one bind (`v`) per row.
    let rows: Vec<_> = ["'a'", "'b'", "'c'", "'d'", "'e'"]
        .iter()
        .enumerate()
        .map(|(i, k)| (t::k.eq(sql::<Nullable<Text>>(k)), t::v.eq(i as i32)))
        .collect();
    let statement = diesel::insert_into(t::table).values(&rows);
    let rows = statement.records.rows();
    let settings = Settings {
        fixed: MAX_BINDS - 2,
        ..settings(XMAX, None)
    };
    let mut plan: BulkPlan<_, _, &str> = BulkPlan::new(rows, &key, KEY_COLUMNS, settings).unwrap();
    assert!(
        plan.grouping().unwrap().is_some(),
        "SQL keys are ranked by PostgreSQL"
    );
    plan.ranked((0..5).map(|i| (i, i64::from(i) + 1)).collect())
        .unwrap();
    let mut sizes = Vec::new();
    while let Some(step) = plan.next().unwrap() {
        match step {
            Step::Upsert { rows, .. } => {
                sizes.push(rows.len());
                let sent: Vec<_> = positions(&Step::Upsert {
                    rows,
                    flag: InsertedFlag::Xmax,
                    do_nothing: false,
                });
                plan.written(sent.iter().map(|&o| (Some(o), "x", Some(true))).collect())
                    .unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(plan.finish().unwrap().len(), 5);
}

#[test]
fn without_rows_back_each_chunk_is_counted_and_kept_rows_are_not_read() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![
        new(Some("b"), 1),
        new(None, 2),
        new(Some("a"), 3),
        new(Some("b"), 4),
    ];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    let settings = Settings {
        rows_back: false,
        update: false,
        ..settings(XMAX, Some(DuplicateKeys::KeepFirst))
    };
    let mut plan: BulkPlan<_, _, ()> = BulkPlan::new(rows, &key, KEY_COLUMNS, settings).unwrap();
    let step = plan.next().unwrap().unwrap();
    assert!(matches!(
        step,
        Step::Count {
            flag: InsertedFlag::Xmax,
            ..
        }
    ));
    assert_eq!(positions(&step), [2, 0], "one per key, in key order");
    plan.counted((1, 0)).unwrap(); // "a" inserted, "b" left in place
    let step = plan.next().unwrap().unwrap();
    assert!(matches!(
        step,
        Step::Count {
            flag: InsertedFlag::Always(true),
            ..
        }
    ));
    assert_eq!(positions(&step), [1], "the row without a key");
    plan.counted((1, 0)).unwrap();
    assert!(plan.next().unwrap().is_none(), "no read-back, no retry");
    assert_eq!(
        plan.finish_counts().unwrap(),
        BulkSummary {
            inserted: 2,
            updated: 0,
            unchanged: 2
        }
    );
}

#[test]
fn counts_larger_than_the_rows_sent_are_an_internal_error() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("a"), 1)];
    let statement = diesel::insert_into(t::table).values(&input);
    let settings = Settings {
        rows_back: false,
        update: false,
        ..settings(XMAX, None)
    };
    let mut plan: BulkPlan<_, _, ()> =
        BulkPlan::new(statement.records.rows(), &key, KEY_COLUMNS, settings).unwrap();
    plan.next().unwrap().unwrap();
    plan.counted((1, 1)).unwrap();
    assert!(plan.next().unwrap().is_none());
    assert!(matches!(plan.finish_counts(), Err(Error::Internal { .. })));
}

#[test]
fn the_first_statement_is_short_and_the_next_rows_can_be_encoded_ahead() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let names: Vec<&'static str> = (0..30_000)
        .map(|i| &*Box::leak(format!("k{i:05}").into_boxed_str()))
        .collect();
    let input: Vec<New> = names.iter().map(|k| new(Some(k), 1)).collect();
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    let settings = Settings {
        rows_back: false,
        update: false,
        ..settings(XMAX, None)
    };
    let mut plan = BulkPlan::<_, _, ()>::new(rows, &key, KEY_COLUMNS, settings).unwrap();
    let first = plan.next().unwrap().unwrap();
    assert_eq!(positions(&first), (0..2_000).collect::<Vec<_>>());
    // Encoded ahead, as the driver does while the first statement runs.
    let ahead = plan
        .lookahead()
        .expect("more rows of the same phase")
        .encode();
    let stale = plan.lookahead().unwrap().encode();
    plan.counted((2_000, 0)).unwrap();
    plan.ahead(ahead);
    let second = plan.next().unwrap().unwrap();
    assert_eq!(positions(&second), (2_000..22_000).collect::<Vec<_>>());
    plan.counted((20_000, 0)).unwrap();
    // Rows encoded ahead for another place in the queue are not sent.
    plan.ahead(stale);
    let third = plan.next().unwrap().unwrap();
    assert_eq!(positions(&third), (22_000..30_000).collect::<Vec<_>>());
    plan.counted((8_000, 0)).unwrap();
    assert!(plan.lookahead().is_none(), "no rows left");
    assert!(plan.next().unwrap().is_none());
    assert_eq!(
        plan.finish_counts().unwrap(),
        BulkSummary {
            inserted: 30_000,
            updated: 0,
            unchanged: 0
        }
    );
}

/// The positions a probe sends.
fn probe_positions<T, R: RowValues<T>>(rows: &BulkRows<'_, T, R>) -> Vec<i32> {
    match rows {
        BulkRows::Arrays(a) => a.positions.clone(),
        BulkRows::Values(v) => v.iter().map(|(i, _)| *i as i32).collect(),
    }
}

#[test]
fn a_failed_statement_is_bisected_to_the_first_row_whose_prefix_fails() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let keys: Vec<&'static str> = (0..100)
        .map(|i| &*Box::leak(format!("k{i:03}").into_boxed_str()))
        .collect();
    // Input in reverse key order: the statement sends input row 99 first.
    let input: Vec<New> = keys.iter().rev().map(|k| new(Some(k), 1)).collect();
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    let mut plan: BulkPlan<_, _, &str> =
        BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
    let Some(Step::Upsert { rows: sent, .. }) = plan.next().unwrap() else {
        panic!("an upsert first");
    };
    let order = probe_positions(&sent);
    assert_eq!(order.len(), 100);
    // The row sent 38th (input row 61) is the one PostgreSQL refuses.
    let refused_at = 37;
    let mut narrowing = plan.narrowing().expect("an upsert was sent");
    let mut probes = 0;
    while let Some(probe) = narrowing.probe().unwrap() {
        let sent = probe_positions(&probe);
        assert_eq!(
            sent,
            order[..sent.len()],
            "a probe sends a prefix, in order"
        );
        narrowing.probed(sent.len() > refused_at);
        probes += 1;
    }
    assert!(probes <= 8, "{probes} probes for 100 rows");
    let (position, _) = narrowing.refused().unwrap();
    assert_eq!(position, order[refused_at] as usize);
    assert_eq!(position, 62);
}

#[test]
fn a_failure_no_probe_reproduces_names_no_row() {
    let catalog = catalog();
    let key = KeyShape::new(vec![KeyPart::Column("k")], &catalog).unwrap();
    let input = vec![new(Some("a"), 1), new(Some("b"), 1), new(Some("c"), 1)];
    let statement = diesel::insert_into(t::table).values(&input);
    let rows = statement.records.rows();
    let mut plan: BulkPlan<_, _, &str> =
        BulkPlan::new(rows, &key, KEY_COLUMNS, settings(XMAX, None)).unwrap();
    assert!(matches!(plan.next().unwrap(), Some(Step::Upsert { .. })));
    let mut narrowing = plan.narrowing().unwrap();
    let mut lengths = Vec::new();
    while let Some(probe) = narrowing.probe().unwrap() {
        lengths.push(probe.len());
        narrowing.probed(false);
    }
    // Bisection, then the whole statement again to confirm: it passes now.
    assert_eq!(lengths, [1, 2, 3]);
    assert!(narrowing.refused().is_none());
}
