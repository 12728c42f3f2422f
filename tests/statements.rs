//! What one bulk statement carries: `max_rows_per_statement`, `max_bytes_per_statement` and
//! `rows_as_values` (for distributed engines and proxies, docs/distributed.md). Every statement
//! of a call stays within the caps, the call stays one transaction, and the results are those
//! of the default statements.

use crate::bulk::{bulk_items, bulk_items_table, items, Item, NewItem};
use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, record_sql, test_connection, unique_key};
use diesel::prelude::*;
use diesel_upsert::prelude::*;
use diesel_upsert::{index_expression, BulkSummary, DuplicateKeys, Error};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The `v` of the items keyed `<p>-…`, in key order.
fn stored_values(conn: &mut PgConnection, p: &str) -> Vec<i32> {
    bulk_items::table
        .filter(bulk_items::k.like(format!("{p}-%")))
        .order(bulk_items::k)
        .select(bulk_items::v)
        .load(conn)
        .unwrap()
}

/// How many statements of `sent` contain `needle`.
fn count(sent: &[String], needle: &str) -> usize {
    sent.iter().filter(|s| s.contains(needle)).count()
}

/// Upserts `rows` (the first `existing` of them stored beforehand) with `shape` applied to
/// the builder, and returns each row's stored id and outcome, and the statements sent.
macro_rules! upsert_with {
    ($conn:expr, $rows:expr, $action:expr, |$b:ident| $shape:expr) => {{
        let sent = record_sql($conn);
        let $b = diesel::insert_into(bulk_items::table)
            .values($rows)
            .on_conflict_do(bulk_items::k, $action);
        let got: Vec<(Item, Outcome)> = $shape
            .bulk_insert_and_get_with_outcome::<Item, _>($conn)
            .unwrap();
        let sent = sent.lock().unwrap().clone();
        (got, sent)
    }};
}

/// The rows of two identical calls, one per shape, on two keyspaces: (outcome, v) per row.
fn shape_of(got: &[(Item, Outcome)]) -> Vec<(Outcome, i32)> {
    got.iter().map(|(item, o)| (*o, item.v)).collect()
}

#[test]
fn a_row_cap_cuts_every_statement_of_the_call() {
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    let p = unique_key("st-rows");
    let rows = items(&p, 7);
    diesel::insert_into(bulk_items::table)
        .values(&rows[..2])
        .execute(conn)
        .unwrap();
    let mut again = rows.clone();
    again[0].v = 100;
    let (got, sent) = upsert_with!(conn, &again, ConflictAction::Update, |b| b
        .max_rows_per_statement(3));
    assert_eq!(count(&sent, r#"INSERT INTO "bulk_items""#), 3, "{sent:#?}");
    assert_eq!(got[0].1, Outcome::Updated);
    assert_eq!(got[1].1, Outcome::Updated);
    assert!(got[2..].iter().all(|(_, o)| *o == Outcome::Inserted));
    // DO NOTHING: five kept rows read back, two per statement.
    let (kept, sent) = upsert_with!(conn, &rows, ConflictAction::Nothing, |b| b
        .max_rows_per_statement(2));
    assert_eq!(count(&sent, r#"INSERT INTO "bulk_items""#), 4, "{sent:#?}");
    assert_eq!(count(&sent, r#"JOIN "bulk_items""#), 4, "{sent:#?}");
    assert_eq!(
        kept.iter()
            .map(|(i, o)| (i.id, i.v, *o))
            .collect::<Vec<_>>(),
        got.iter()
            .map(|(i, _)| (i.id, i.v, Outcome::Unchanged))
            .collect::<Vec<_>>()
    );
    assert_eq!(stored_values(conn, &p), vec![100, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_byte_cap_counts_each_value_with_its_length() {
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    let p = unique_key("st-bytes");
    let rows = items(&p, 5);
    // Each row: the key with its 4-byte length, the 4-byte integer with its length.
    let row_bytes = 4 + rows[0].k.as_ref().unwrap().len() + 4 + 4;
    let summary = {
        let sent = record_sql(conn);
        let summary = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .max_bytes_per_statement(2 * row_bytes + 1)
            .bulk_execute(conn)
            .unwrap();
        let sent = sent.lock().unwrap().clone();
        assert_eq!(count(&sent, r#"INSERT INTO "bulk_items""#), 3, "{sent:#?}");
        summary
    };
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 5,
            updated: 0,
            unchanged: 0
        }
    );
    // A cap below one row: each row goes alone, never split.
    let sent = record_sql(conn);
    let summary = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .max_bytes_per_statement(1)
        .rows_as_values()
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        count(&sent.lock().unwrap(), r#"INSERT INTO "bulk_items""#),
        5
    );
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 0,
            updated: 5,
            unchanged: 0
        }
    );
}

#[test]
fn rows_as_values_send_a_values_list_with_the_same_results() {
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    for action in [ConflictAction::Update, ConflictAction::Nothing] {
        let results: Vec<Vec<(Outcome, i32)>> = [false, true]
            .into_iter()
            .map(|values| {
                let p = unique_key("st-values");
                let mut rows = items(&p, 6);
                diesel::insert_into(bulk_items::table)
                    .values(&rows[..3])
                    .execute(conn)
                    .unwrap();
                rows[1].v = 50;
                // A duplicate key: the last row wins.
                rows.push(NewItem {
                    k: rows[4].k.clone(),
                    v: 70,
                });
                rows.push(NewItem { k: None, v: 9 });
                let (got, sent) = upsert_with!(conn, &rows, action, |b| {
                    let b = b.on_duplicate_keys(DuplicateKeys::KeepLast);
                    if values {
                        b.rows_as_values()
                    } else {
                        b
                    }
                });
                assert_eq!(count(&sent, "unnest(") == 0, values, "{sent:#?}");
                assert_eq!(got[4].0.id, got[6].0.id);
                shape_of(&got)
            })
            .collect();
        assert_eq!(results[0], results[1], "{action:?}");
    }
}

#[test]
fn rows_as_values_chunk_under_the_bind_limit() {
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    let p = unique_key("st-binds");
    let rows = items(&p, 40_000);
    let sent = record_sql(conn);
    let ids: Vec<i64> = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .rows_as_values()
        .bulk_insert(conn)
        .unwrap();
    let sent = sent.lock().unwrap().clone();
    // 80 000 values, and the keys once more for pairing: counted as 160 000 parameters (each
    // row's binds twice, an upper bound), three statements under 65 535.
    assert_eq!(count(&sent, r#"INSERT INTO "bulk_items""#), 3);
    // Each a plain multi-row insert, paired through an input of keys only.
    assert!(
        sent.iter().filter(|s| s.contains("INSERT")).all(|s| s
            .contains(r#"INSERT INTO "bulk_items" ("k", "v") VALUES ("#)
            && s.contains(r#"AS "__upsert_row"("k", "__upsert_ord")"#)),
        "{}",
        sent[0]
    );
    assert_eq!(ids.len(), 40_000);
    let stored: i64 = bulk_items::table
        .filter(bulk_items::k.like(format!("{p}-%")))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(stored, 40_000);
}

/// Keys PostgreSQL must rank itself go in one statement: over the cap, the call refuses
/// before sending anything.
#[test]
fn keys_ranked_by_postgresql_must_fit_in_one_statement() {
    let conn = &mut test_connection();
    let tenant = unique_key("st-rank");
    let emails: Vec<String> = (0..3).map(|i| format!("{i}.{tenant}@x")).collect();
    let rows: Vec<NewAccount<'_>> = emails
        .iter()
        .map(|e| NewAccount::new(&tenant, e, "a"))
        .collect();
    let sent = record_sql(conn);
    let error = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(
            index_expression(lower(accounts::email)),
            ConflictAction::Update,
        )
        .max_rows_per_statement(2)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    assert!(matches!(&error, Error::Unsupported { .. }), "{error}");
    // The catalog may have been read; no statement of the call's own.
    assert_eq!(count(&sent.lock().unwrap(), "__upsert"), 0);
    let ids: Vec<i64> = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(
            index_expression(lower(accounts::email)),
            ConflictAction::Update,
        )
        .max_rows_per_statement(3)
        .rows_as_values()
        .bulk_insert(conn)
        .unwrap();
    assert_eq!(ids.len(), 3);
}

#[test]
fn bulk_update_keeps_to_the_caps_and_takes_values_lists() {
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    let p = unique_key("st-update");
    let rows = items(&p, 5);
    diesel::insert_into(bulk_items::table)
        .values(&rows[..4])
        .execute(conn)
        .unwrap();
    let changes: Vec<_> = rows
        .iter()
        .map(|r| (bulk_items::k.eq(r.k.clone()), bulk_items::v.eq(r.v + 10)))
        .collect();
    let sent = record_sql(conn);
    let outcomes = diesel_upsert::bulk_update(bulk_items::table)
        .set(&changes)
        .by(bulk_items::k)
        .max_rows_per_statement(2)
        .rows_as_values()
        .apply(conn)
        .unwrap();
    let sent = sent.lock().unwrap().clone();
    use diesel_upsert::UpdateOutcome::{Missing, Updated};
    assert_eq!(outcomes, [Updated, Updated, Updated, Updated, Missing]);
    // Three lock statements of at most two keys, two updates of the four rows that exist.
    assert_eq!(count(&sent, "FOR UPDATE"), 3, "{sent:#?}");
    assert_eq!(count(&sent, r#"UPDATE "bulk_items" SET"#), 2, "{sent:#?}");
    assert_eq!(count(&sent, "unnest("), 0, "{sent:#?}");
    assert_eq!(stored_values(conn, &p), vec![10, 11, 12, 13]);
}

/// The plain multi-row insert of `rows_as_values` (shown in docs/bulk.md, checked here).
#[test]
fn rows_as_values_send_a_plain_multi_row_insert_and_docs_show_it() {
    let conn = &mut test_connection();
    let p = unique_key("st-doc");
    let (b, a) = (format!("{p}-b"), format!("{p}-a"));
    let rows = vec![NewProduct::new(&b, "Pot"), NewProduct::new(&a, "Cup")];
    let call = |conn: &mut PgConnection| -> Vec<i64> {
        diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .rows_as_values()
            .bulk_insert(conn)
            .unwrap()
    };
    let first = call(conn);
    let sent = record_sql(conn);
    assert_eq!(call(conn), first);
    let statements: Vec<String> = sent
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.starts_with("WITH"))
        .map(|s| s.split(" -- binds: ").next().unwrap().to_owned())
        .collect();
    let upsert = r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM (VALUES (CAST($1 AS text), 1), (CAST($2 AS text), 0)) AS "__upsert_row"("sku", "__upsert_ord")), "__upserted" AS (INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($3, $4, $5, $6), ($7, $8, $9, $10) ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" RETURNING "products"."id", true AS "__upsert_inserted", "products"."sku" AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#;
    assert_eq!(statements, [upsert]);
    assert!(include_str!("../docs/bulk.md").contains(upsert));
}
