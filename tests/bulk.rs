//! Bulk conflict handling: one result per input row, column consistency, duplicate keys,
//! chunking, key order.

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, test_connection, unique_key};
use crate::single::SentSql;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use diesel_upsert::{on_constraint, DuplicateKeys, Error};

diesel::table! {
    /// Created by the tests that need it: a nullable unique key and a CHECK constraint.
    bulk_items (id) {
        id -> BigInt,
        k -> Nullable<Text>,
        v -> Integer,
    }
}

/// `None` is written as NULL, not left to the column default, so rows stay consistent.
#[derive(Insertable, Clone)]
#[diesel(table_name = bulk_items, treat_none_as_default_value = false)]
pub(crate) struct NewItem {
    pub(crate) k: Option<String>,
    pub(crate) v: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = bulk_items, check_for_backend(diesel::pg::Pg))]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) k: Option<String>,
    pub(crate) v: i32,
}

pub(crate) fn bulk_items_table(conn: &mut PgConnection) {
    static CREATED: std::sync::Once = std::sync::Once::new();
    CREATED.call_once(|| {
        diesel::sql_query(
            "CREATE TABLE bulk_items (id BIGSERIAL PRIMARY KEY, k TEXT UNIQUE, v INTEGER NOT NULL CHECK (v >= 0))",
        )
        .execute(conn)
        .unwrap();
    });
}

/// `n` items keyed `<prefix>-000000`, `<prefix>-000001`, … with `v` = their index.
pub(crate) fn items(prefix: &str, n: i32) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            k: Some(format!("{prefix}-{i:06}")),
            v: i,
        })
        .collect()
}

/// How many `bulk_items` rows have keys starting with `<prefix>-`.
pub(crate) fn count_items(conn: &mut PgConnection, prefix: &str) -> i64 {
    bulk_items::table
        .filter(bulk_items::k.like(format!("{prefix}-%")))
        .count()
        .get_result(conn)
        .unwrap()
}

fn products_with_prefix(conn: &mut PgConnection, prefix: &str) -> Vec<Product> {
    products::table
        .filter(products::sku.like(format!("{prefix}%")))
        .order(products::sku)
        .load(conn)
        .unwrap()
}

#[test]
fn bulk_upsert_returns_one_row_per_input_in_input_order() {
    let conn = &mut test_connection();
    let p = unique_key("b1");
    let (a, b, c) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-c"));
    diesel::insert_into(products::table)
        .values(&NewProduct::new(&b, "old b"))
        .execute(conn)
        .unwrap();
    let rows = vec![
        NewProduct::new(&c, "new c").qty(3),
        NewProduct::new(&a, "new a").qty(1),
        NewProduct::new(&b, "new b").qty(2),
    ];
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let summary: Vec<_> = result
        .iter()
        .map(|(p, o)| (p.sku.as_str(), p.name.as_str(), p.qty, *o))
        .collect();
    assert_eq!(
        summary,
        vec![
            (c.as_str(), "new c", 3, Outcome::Inserted),
            (a.as_str(), "new a", 1, Outcome::Inserted),
            (b.as_str(), "new b", 2, Outcome::Updated),
        ]
    );
    let stored = products_with_prefix(conn, &p);
    assert_eq!(stored.len(), 3);
    for (returned, _) in &result {
        assert!(
            stored.contains(returned),
            "{returned:?} not stored as returned"
        );
    }
}

#[test]
fn nothing_returns_the_existing_rows_for_skipped_inputs_matched_by_key() {
    let conn = &mut test_connection();
    let p = unique_key("b2");
    let keys: Vec<String> = (0..6).map(|i| format!("{p}-{i}")).collect();
    // Every other key already exists: psqlextra pairs results by position and gets these wrong.
    let existing: Vec<Product> = diesel::insert_into(products::table)
        .values(
            &keys
                .iter()
                .step_by(2)
                .map(|k| NewProduct::new(k, "existing"))
                .collect::<Vec<_>>(),
        )
        .get_results(conn)
        .unwrap();
    let rows: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "new")).collect();
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(result.len(), 6);
    for (i, (product, outcome)) in result.iter().enumerate() {
        assert_eq!(product.sku, keys[i]);
        if i % 2 == 0 {
            assert_eq!((product, *outcome), (&existing[i / 2], Outcome::Unchanged));
        } else {
            assert_eq!(
                (product.name.as_str(), *outcome),
                ("new", Outcome::Inserted)
            );
        }
        let stored: Product = products::table.find(product.id).get_result(conn).unwrap();
        assert_eq!(&stored, product);
    }
}

#[test]
fn bulk_insert_returns_primary_keys_in_input_order() {
    let conn = &mut test_connection();
    let p = unique_key("b3");
    let keys: Vec<String> = (0..5).rev().map(|i| format!("{p}-{i}")).collect();
    let rows: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "x")).collect();
    let ids: Vec<i64> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    for (key, id) in keys.iter().zip(&ids) {
        let sku: String = products::table
            .find(id)
            .select(products::sku)
            .get_result(conn)
            .unwrap();
        assert_eq!(&sku, key);
    }
}

/// The statements a closure sent that start with `prefix`, without their binds.
fn statements_sent(sent: &SentSql, prefix: &str) -> Vec<String> {
    sent.take()
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .map(|s| s.split(" -- binds:").next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn rows_are_sent_sorted_by_conflict_key_as_one_array_per_column() {
    let conn = &mut test_connection();
    let p = unique_key("b4");
    let keys = [format!("{p}-c"), format!("{p}-a"), format!("{p}-b")];
    let rows: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "x")).collect();
    let sent = SentSql::attach(conn);
    let result: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    assert_eq!(
        result.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
        keys.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        statements_sent(&sent, "WITH"),
        [
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2, $3, $4, $5) AS "__upsert_row"("sku", "name", "qty", "price_cents", "__upsert_ord")), "__upserted" AS (INSERT INTO "products" ("sku", "name", "qty", "price_cents") SELECT "sku", "name", "qty", "price_cents" FROM "__upsert_input" ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" RETURNING "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", true AS "__upsert_inserted", "products"."sku" AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#
        ]
    );
    // The ids PostgreSQL assigned follow the order the rows were inserted in: key order.
    let stored = products_with_prefix(conn, &p);
    assert_eq!(
        stored.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
        [&keys[1], &keys[2], &keys[0]]
    );
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "{stored:?}");
}

#[test]
fn rows_holding_sql_expressions_are_sent_as_a_values_list() {
    use diesel::dsl::sql;
    use diesel::sql_types::Text;
    let conn = &mut test_connection();
    let p = unique_key("b-vals");
    let keys = [format!("{p}-b"), format!("{p}-a")];
    let rows: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                products::sku.eq(k.as_str()),
                products::name.eq(sql::<Text>("upper('x')")),
            )
        })
        .collect();
    let sent = SentSql::attach(conn);
    let result: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    assert_eq!(
        result.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
        keys.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        statements_sent(&sent, "WITH"),
        [
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM (VALUES (CAST($1 AS text), CAST(upper('x') AS text), 1), (CAST($2 AS text), CAST(upper('x') AS text), 0)) AS "__upsert_row"("sku", "name", "__upsert_ord")), "__upserted" AS (INSERT INTO "products" ("sku", "name") SELECT "sku", "name" FROM "__upsert_input" ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name" RETURNING "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", true AS "__upsert_inserted", "products"."sku" AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#
        ]
    );
    let stored = products_with_prefix(conn, &p);
    assert_eq!(
        stored
            .iter()
            .map(|p| (p.sku.as_str(), p.name.as_str()))
            .collect::<Vec<_>>(),
        [(keys[1].as_str(), "X"), (keys[0].as_str(), "X")]
    );
}

#[test]
fn kept_rows_are_read_back_through_an_array_of_their_keys() {
    let conn = &mut test_connection();
    let p = unique_key("b-kept");
    let keys = [format!("{p}-a"), format!("{p}-b")];
    let old: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "old")).collect();
    diesel::insert_into(products::table)
        .values(&old)
        .execute(conn)
        .unwrap();
    let new: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "new")).collect();
    let sent = SentSql::attach(conn);
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&new)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert!(result
        .iter()
        .all(|(p, o)| p.name == "old" && *o == Outcome::Unchanged));
    assert_eq!(
        statements_sent(&sent, "WITH"),
        [
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2, $3, $4, $5) AS "__upsert_row"("sku", "name", "qty", "price_cents", "__upsert_ord")), "__upserted" AS (INSERT INTO "products" ("sku", "name", "qty", "price_cents") SELECT "sku", "name", "qty", "price_cents" FROM "__upsert_input" ON CONFLICT ("sku") DO NOTHING RETURNING "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", (xmax = 0) AS "__upsert_inserted", "products"."sku" AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#,
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2) AS "__upsert_row"("sku", "__upsert_ord")) SELECT "__upsert_input"."__upsert_ord", "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at" FROM "__upsert_input" JOIN "products" ON "__upsert_input"."__upsert_k0" = "products"."sku""#
        ]
    );
    assert!(products_with_prefix(conn, &p)
        .iter()
        .all(|p| p.name == "old"));
}

#[test]
fn a_row_committed_while_do_nothing_waited_for_it_is_the_row_returned() {
    // Another transaction inserts the key and commits while the crate's `DO NOTHING` waits for
    // it: the conflict is with a row the upsert's snapshot does not see; the read-back, a
    // statement of its own, returns it.
    let p = unique_key("b-late");
    let (late, fresh) = (format!("{p}-late"), format!("{p}-fresh"));
    let mut other = connection();
    other.batch_execute("BEGIN").unwrap();
    diesel::insert_into(products::table)
        .values(&NewProduct::new(&late, "committed late"))
        .execute(&mut other)
        .unwrap();
    let rows = vec![
        NewProduct::new(&late, "mine"),
        NewProduct::new(&fresh, "mine"),
    ];
    let pid = std::sync::atomic::AtomicI32::new(0);
    let (result, statements) = std::thread::scope(|scope| {
        let caller = scope.spawn(|| {
            let conn = &mut connection();
            let own: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(conn)
            .unwrap();
            pid.store(own, std::sync::atomic::Ordering::SeqCst);
            let sent = SentSql::attach(conn);
            let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
                .values(&rows)
                .on_conflict_do(products::sku, ConflictAction::Nothing)
                .bulk_insert_and_get_with_outcome(conn)
                .unwrap();
            (result, statements_sent(&sent, "WITH"))
        });
        // Wait until the call is blocked on the other transaction's row.
        let mut watcher = connection();
        let mut blocked = false;
        for _ in 0..1000 {
            let waiting = pid.load(std::sync::atomic::Ordering::SeqCst);
            blocked = waiting != 0
                && diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                    "EXISTS (SELECT 1 FROM pg_stat_activity \
                     WHERE pid = {waiting} AND wait_event_type = 'Lock')"
                )))
                .get_result(&mut watcher)
                .unwrap();
            if blocked {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        other.batch_execute("COMMIT").unwrap();
        assert!(blocked, "the call never waited for the other transaction");
        caller.join().unwrap()
    });
    assert_eq!(result[0].0.name, "committed late");
    assert_eq!(result[0].1, Outcome::Unchanged);
    assert_eq!(
        (result[1].0.sku.as_str(), result[1].1),
        (fresh.as_str(), Outcome::Inserted)
    );
    assert_eq!(
        statements.len(),
        2,
        "the upsert, then the read-back of the late row"
    );
    assert!(statements[1].contains(r#"SELECT "__upsert_input"."__upsert_ord", "products"."id""#));
    let conn = &mut connection();
    let stored = products_with_prefix(conn, &p);
    assert_eq!(stored.len(), 2);
    diesel::delete(products::table.filter(products::sku.like(format!("{p}-%"))))
        .execute(conn)
        .unwrap();
}

#[test]
fn null_values_and_enum_values_travel_in_arrays() {
    let conn = &mut test_connection();
    let p = unique_key("b-null");
    let descriptions = [Some("first"), None, Some("it's \\ third"), None];
    let rows: Vec<_> = descriptions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                products::sku.eq(format!("{p}-{i}")),
                products::name.eq("n"),
                products::description.eq(*d),
            )
        })
        .collect();
    let sent = SentSql::attach(conn);
    let result: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    assert_eq!(
        result
            .iter()
            .map(|p| p.description.as_deref())
            .collect::<Vec<_>>(),
        descriptions
    );
    let stored: Vec<Option<String>> = products_with_prefix(conn, &p)
        .into_iter()
        .map(|p| p.description)
        .collect();
    assert_eq!(
        stored.iter().map(Option::as_deref).collect::<Vec<_>>(),
        descriptions
    );

    // A PostgreSQL enum: its array type is looked up by name on the connection.
    let slugs: Vec<String> = (0..3).map(|i| format!("{p}-task-{i}")).collect();
    let statuses = [TaskStatus::Done, TaskStatus::Todo, TaskStatus::Doing];
    let tasks_in: Vec<_> = slugs
        .iter()
        .zip(statuses)
        .map(|(slug, status)| NewTask {
            slug,
            title: "t",
            status: Some(status),
        })
        .collect();
    for _ in 0..2 {
        let written: Vec<Task> = diesel::insert_into(tasks::table)
            .values(&tasks_in)
            .bulk_upsert(tasks::slug, conn)
            .unwrap();
        assert_eq!(
            written.iter().map(|t| t.status).collect::<Vec<_>>(),
            statuses
        );
    }
    let stored: Vec<TaskStatus> = tasks::table
        .filter(tasks::slug.like(format!("{p}-task-%")))
        .order(tasks::slug)
        .select(tasks::status)
        .load(conn)
        .unwrap();
    assert_eq!(stored, statuses);
    assert!(statements_sent(&sent, "INSERT")
        .iter()
        .all(|s| s.contains(" SELECT unnest($1)")));
}

#[test]
fn keys_written_as_sql_expressions_are_matched_by_postgresql_in_the_statement() {
    use diesel::dsl::sql;
    use diesel::sql_types::Text;
    let conn = &mut test_connection();
    let p = unique_key("b-expr");
    diesel::insert_into(products::table)
        .values(&NewProduct::new(&format!("{p}-b"), "old b"))
        .execute(conn)
        .unwrap();
    // The keys are SQL, not bound values: the crate cannot compare them itself.
    let rows = vec![
        (
            products::sku.eq(sql::<Text>(&format!("'{p}-' || 'c'"))),
            products::name.eq("new c"),
        ),
        (
            products::sku.eq(sql::<Text>(&format!("'{p}-' || 'b'"))),
            products::name.eq("new b"),
        ),
    ];
    let sent = SentSql::attach(conn);
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(rows)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let summary: Vec<_> = result
        .iter()
        .map(|(p, o)| (p.sku.clone(), p.name.as_str(), *o))
        .collect();
    assert_eq!(
        summary,
        [
            (format!("{p}-c"), "new c", Outcome::Inserted),
            (format!("{p}-b"), "old b", Outcome::Unchanged),
        ]
    );
    let statements = sent.take();
    let upsert = statements.iter().find(|s| s.starts_with("WITH")).unwrap();
    assert!(
        upsert.starts_with(
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM (VALUES ("#
        ),
        "{upsert}"
    );
    assert!(
        upsert.contains(
            r#"LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#
        ),
        "{upsert}"
    );
}

#[test]
fn rows_supplying_different_columns_are_rejected_before_anything_is_sent() {
    let conn = &mut test_connection();
    let p = unique_key("b5");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let rows = vec![
        NewProduct::new(&a, "x"),
        NewProduct::new(&b, "y").description("has one"),
    ];
    let sent = SentSql::attach(conn);
    let error = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    match &error {
        Error::InconsistentColumns {
            row,
            expected,
            found,
        } => {
            assert_eq!(*row, 1);
            assert_eq!(expected, &["sku", "name", "qty", "price_cents"]);
            assert_eq!(found, &["sku", "name", "description", "qty", "price_cents"]);
        }
        other => panic!("expected InconsistentColumns, got {other:?}"),
    }
    assert!(sent.take().is_empty());
    assert!(products_with_prefix(conn, &p).is_empty());
}

#[test]
fn duplicate_keys_are_an_error_for_update_by_default() {
    let conn = &mut test_connection();
    let p = unique_key("b6");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let rows = vec![
        NewProduct::new(&a, "1"),
        NewProduct::new(&b, "2"),
        NewProduct::new(&a, "3"),
    ];
    let sent = SentSql::attach(conn);
    let error = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert::<_, _, Product, _>(products::sku, conn)
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::DuplicateConflictKey {
                first: 0,
                duplicate: 2
            }
        ),
        "{error:?}"
    );
    // Text keys compare by their bytes: the duplicate is found without a statement (the first
    // call on a table reads its key types from the catalog, once per process).
    let sent = sent.take();
    assert!(
        sent.iter().all(|s| s.contains(" FROM pg_class c ")),
        "{sent:?}"
    );
    assert!(products_with_prefix(conn, &p).is_empty());
}

#[test]
fn keep_first_and_keep_last_give_every_input_the_row_its_key_ended_as() {
    let conn = &mut test_connection();
    for (policy, winner) in [
        (DuplicateKeys::KeepFirst, "1"),
        (DuplicateKeys::KeepLast, "3"),
    ] {
        let p = unique_key("b7");
        let (a, b) = (format!("{p}-a"), format!("{p}-b"));
        let rows = vec![
            NewProduct::new(&a, "1"),
            NewProduct::new(&b, "2"),
            NewProduct::new(&a, "3"),
        ];
        let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .on_duplicate_keys(policy)
            .bulk_insert_and_get_with_outcome(conn)
            .unwrap();
        assert_eq!(result.len(), 3);
        assert_eq!(result[0].0, result[2].0);
        assert_eq!(result[0].0.name, winner);
        assert_eq!(result[1].0.name, "2");
        let stored = products_with_prefix(conn, &p);
        assert_eq!(
            stored.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec![winner, "2"]
        );
        let outcomes: Vec<Outcome> = result.iter().map(|(_, o)| *o).collect();
        match policy {
            DuplicateKeys::KeepFirst => assert_eq!(
                outcomes,
                [Outcome::Inserted, Outcome::Inserted, Outcome::Unchanged]
            ),
            DuplicateKeys::KeepLast => assert_eq!(
                outcomes,
                [Outcome::Unchanged, Outcome::Inserted, Outcome::Inserted]
            ),
        }
    }
}

#[test]
fn nothing_keeps_the_first_of_duplicate_keys_without_an_error() {
    let conn = &mut test_connection();
    let p = unique_key("b8");
    let a = format!("{p}-a");
    let rows = vec![NewProduct::new(&a, "first"), NewProduct::new(&a, "second")];
    let result: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_insert_and_get(conn)
        .unwrap();
    assert_eq!(result[0], result[1]);
    assert_eq!(result[0].name, "first");
    assert_eq!(products_with_prefix(conn, &p).len(), 1);
}

#[test]
fn conditions_and_skip_unchanged_return_left_alone_rows_as_unchanged() {
    let conn = &mut test_connection();
    let p = unique_key("b9");
    let keys: Vec<String> = (0..4).map(|i| format!("{p}-{i}")).collect();
    let rows: Vec<_> = keys
        .iter()
        .map(|k| NewProduct::new(k, "same").price_cents(100))
        .collect();
    let first: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    // Rows 0 and 1 change, 2 and 3 are identical: skip_unchanged leaves those alone.
    let mut again = rows.clone();
    again[0].name = "changed";
    again[1].price_cents = 50;
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&again)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let outcomes: Vec<Outcome> = result.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Updated,
            Outcome::Updated,
            Outcome::Unchanged,
            Outcome::Unchanged
        ]
    );
    assert_eq!(result[2].0, first[2]);
    // update_condition: only lower prices are written.
    let cheaper: Vec<_> = keys
        .iter()
        .map(|k| NewProduct::new(k, "cheaper?").price_cents(75))
        .collect();
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&cheaper)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(excluded(products::price_cents).lt(products::price_cents))
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let summary: Vec<_> = result.iter().map(|(p, o)| (p.price_cents, *o)).collect();
    assert_eq!(
        summary,
        [
            (75, Outcome::Updated),
            (50, Outcome::Unchanged),
            (75, Outcome::Updated),
            (75, Outcome::Updated)
        ]
    );
    let stored: Vec<i64> = products_with_prefix(conn, &p)
        .iter()
        .map(|p| p.price_cents)
        .collect();
    assert_eq!(stored, [75, 50, 75, 75]);
}

#[test]
fn tuple_constraint_and_partial_index_targets_work_in_bulk() {
    let conn = &mut test_connection();
    let vendor = unique_key("vendor");
    let rows: Vec<_> = ["s1", "s2"]
        .iter()
        .map(|s| NewVendorProduct {
            vendor: &vendor,
            sku: s,
            name: "v",
            qty: 1,
        })
        .collect();
    for _ in 0..2 {
        let got: Vec<VendorProduct> = diesel::insert_into(vendor_products::table)
            .values(&rows)
            .on_conflict_do(
                (vendor_products::vendor, vendor_products::sku),
                ConflictAction::Update,
            )
            .update_values(
                vendor_products::qty.eq(vendor_products::qty + excluded(vendor_products::qty)),
            )
            .bulk_insert_and_get(conn)
            .unwrap();
        assert_eq!(
            got.iter().map(|r| r.sku.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
    }
    let qty: Vec<i32> = vendor_products::table
        .filter(vendor_products::vendor.eq(&vendor))
        .order(vendor_products::sku)
        .select(vendor_products::qty)
        .load(conn)
        .unwrap();
    assert_eq!(qty, [2, 2]);

    let emails: Vec<String> = (0..3)
        .map(|i| format!("{}@example.com", unique_key(&format!("m{i}"))))
        .collect();
    let subs: Vec<_> = emails
        .iter()
        .map(|e| NewSubscription {
            email: e,
            plan: "free",
            seats: Some(1),
        })
        .collect();
    let first: Vec<Subscription> = diesel::insert_into(subscriptions::table)
        .values(&subs[..2])
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Nothing,
        )
        .bulk_insert_and_get(conn)
        .unwrap();
    let second: Vec<(Subscription, Outcome)> = diesel::insert_into(subscriptions::table)
        .values(&subs)
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Nothing,
        )
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(second[0], (first[0].clone(), Outcome::Unchanged));
    assert_eq!(second[1], (first[1].clone(), Outcome::Unchanged));
    assert_eq!(
        (second[2].0.email.as_str(), second[2].1),
        (emails[2].as_str(), Outcome::Inserted)
    );

    let org = unique_key("org");
    let members: Vec<_> = [1_i64, 2]
        .iter()
        .map(|u| NewMembership {
            user_id: *u,
            org: &org,
            role: "member",
            deleted_at: None,
        })
        .collect();
    for role in ["member", "admin"] {
        let rows: Vec<_> = members
            .iter()
            .map(|m| NewMembership { role, ..*m })
            .collect();
        let got: Vec<Membership> = diesel::insert_into(memberships::table)
            .values(&rows)
            .on_conflict_do(
                (memberships::user_id, memberships::org),
                ConflictAction::Update,
            )
            .index_predicate(memberships::deleted_at.is_null())
            .bulk_insert_and_get(conn)
            .unwrap();
        assert!(got.iter().all(|m| m.role == role));
    }
    let count: i64 = memberships::table
        .filter(memberships::org.eq(&org))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(count, 2);
}

#[test]
fn rows_with_a_null_key_never_conflict_and_keep_their_order() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let k = unique_key("nullkey");
    let rows = vec![
        NewItem { k: None, v: 1 },
        NewItem {
            k: Some(k.clone()),
            v: 2,
        },
        NewItem { k: None, v: 3 },
        NewItem {
            k: Some(k.clone()),
            v: 4,
        },
    ];
    let result: Vec<(Item, Outcome)> = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .on_duplicate_keys(DuplicateKeys::KeepLast)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let values: Vec<(Option<&str>, i32)> =
        result.iter().map(|(i, _)| (i.k.as_deref(), i.v)).collect();
    assert_eq!(
        values,
        [
            (None, 1),
            (Some(k.as_str()), 4),
            (None, 3),
            (Some(k.as_str()), 4)
        ]
    );
    assert_ne!(result[0].0.id, result[2].0.id);
    for (item, _) in &result {
        let stored: Item = bulk_items::table.find(item.id).get_result(conn).unwrap();
        assert_eq!(&stored, item);
    }
}

#[test]
fn more_than_200_000_values_are_chunked_in_one_transaction() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("chunk");
    let rows = items(&p, 110_000);
    let sent = SentSql::attach(conn);
    let ids: Vec<i64> = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    let statements = sent.take();
    let upserts = statements.iter().filter(|s| s.starts_with("WITH")).count();
    // Sent as arrays: 2 000 rows in the first statement (sent while nothing else runs), then
    // 20 000 per statement.
    assert_eq!(
        upserts, 7,
        "110 000 rows in statements of 2 000, then 20 000"
    );
    assert!(
        statements.iter().any(|s| s == "BEGIN") && statements.iter().any(|s| s == "COMMIT"),
        "one transaction"
    );
    assert_eq!(ids.len(), rows.len());
    let stored = count_items(conn, &p);
    assert_eq!(stored, 110_000);
    let last: (i64, i32) = bulk_items::table
        .filter(bulk_items::k.eq(format!("{p}-109999")))
        .select((bulk_items::id, bulk_items::v))
        .get_result(conn)
        .unwrap();
    assert_eq!(last, (ids[109_999], 109_999));
}

#[test]
fn rows_sent_as_a_values_list_are_chunked_under_the_bind_parameter_limit() {
    use diesel::dsl::sql;
    use diesel::sql_types::Integer;
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("chunk-values");
    let keys: Vec<String> = (0..70_000).map(|i| format!("{p}-{i:06}")).collect();
    // `abs($n)` is an expression: such rows go as a VALUES list, two binds per row.
    let rows: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                bulk_items::k.eq(Some(k.as_str())),
                bulk_items::v.eq(sql::<Integer>("abs(")
                    .bind::<Integer, _>(-(i as i32))
                    .sql(")")),
            )
        })
        .collect();
    let sent = SentSql::attach(conn);
    let ids: Vec<i64> = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    let upserts: Vec<String> = statements_sent(&sent, "WITH");
    assert_eq!(upserts.len(), 3, "140 000 binds under 65 535 per statement");
    assert!(upserts
        .iter()
        .all(|s| s.contains(" (VALUES (CAST($1 AS text), CAST(abs($2) AS integer), ")));
    assert_eq!(ids.len(), keys.len());
    let last: (i64, i32) = bulk_items::table
        .filter(bulk_items::k.eq(&keys[69_999]))
        .select((bulk_items::id, bulk_items::v))
        .get_result(conn)
        .unwrap();
    assert_eq!(last, (ids[69_999], 69_999));
    assert_eq!(count_items(conn, &p), 70_000);
}

#[test]
fn a_failure_in_the_last_chunk_leaves_none_of_the_rows() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("fail");
    let mut rows = items(&p, 100_000);
    rows.last_mut().unwrap().v = -1; // violates the CHECK constraint; sorted last by key
    let error = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    assert!(error.to_string().contains("bulk_items_v_check"), "{error}");
    assert!(
        matches!(error, Error::Row { index: 99_999, .. }),
        "{error:?}"
    );
    // None of the rows is stored, and the connection is usable afterwards.
    let stored = count_items(conn, &p);
    assert_eq!(stored, 0);
}

#[test]
fn a_refused_row_sent_in_a_values_list_is_found_too() {
    use diesel::dsl::sql;
    use diesel::sql_types::Integer;
    let conn = &mut test_connection();
    bulk_items_table(&mut connection());
    let p = unique_key("fail-values");
    let keys: Vec<String> = (0..40_000).map(|i| format!("{p}-{i:06}")).collect();
    // `abs($n) - $m` is an expression: these rows go as VALUES lists, two statements here.
    let rows: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let minus = if i == 33_333 { 5 } else { 0 };
            (
                bulk_items::k.eq(Some(k.as_str())),
                bulk_items::v.eq(sql::<Integer>("abs(")
                    .bind::<Integer, _>(i as i32 % 3)
                    .sql(") - ")
                    .bind::<Integer, _>(minus)),
            )
        })
        .collect();
    let error = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    match &error {
        Error::Row { index, key, .. } => {
            assert_eq!(*index, 33_333);
            assert_eq!(key, &format!("\"k\" = '{}'::text", keys[33_333]));
        }
        other => panic!("expected Error::Row, got {other:?}"),
    }
    assert_eq!(count_items(conn, &p), 0);
}

#[test]
fn a_row_refused_by_the_first_statement_outside_a_transaction_is_found_after_the_rollback() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("fail-first");
    let mut rows = items(&p, 5_000);
    rows[1_234].v = -1; // in the first statement (2 000 rows)
    let sent = SentSql::attach(conn);
    let error = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap_err();
    assert!(
        matches!(error, Error::Row { index: 1_234, .. }),
        "{error:?}"
    );
    let statements = sent.take();
    // The call's transaction, rolled back; then the probes, each in a transaction of its own,
    // also rolled back: about log2(2 000) of them, and one more to confirm the row.
    let probes = statements.iter().filter(|s| s.starts_with("WITH")).count() - 1;
    assert!(
        (11..=13).contains(&probes),
        "{probes} probes: {statements:#?}"
    );
    assert_eq!(
        statements.iter().filter(|s| *s == "BEGIN").count(),
        probes + 1
    );
    assert!(
        !statements.iter().any(|s| s == "COMMIT"),
        "nothing committed"
    );
    assert_eq!(count_items(conn, &p), 0);
}

#[test]
fn a_failed_bulk_call_inside_a_caller_transaction_rolls_back_to_its_savepoint() {
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("savepoint");
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        diesel::insert_into(bulk_items::table)
            .values(&NewItem {
                k: Some(format!("{p}-before")),
                v: 1,
            })
            .execute(conn)?;
        let bad = vec![
            NewItem {
                k: Some(format!("{p}-x")),
                v: 1,
            },
            NewItem {
                k: Some(format!("{p}-y")),
                v: -1,
            },
        ];
        let result = diesel::insert_into(bulk_items::table)
            .values(&bad)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_insert::<i64, _>(conn);
        assert!(result.is_err());
        diesel::insert_into(bulk_items::table)
            .values(&NewItem {
                k: Some(format!("{p}-after")),
                v: 1,
            })
            .execute(conn)?;
        Ok(())
    })
    .unwrap();
    let mut keys: Vec<Option<String>> = bulk_items::table
        .filter(bulk_items::k.like(format!("{p}-%")))
        .select(bulk_items::k)
        .load(conn)
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [Some(format!("{p}-after")), Some(format!("{p}-before"))]
    );
}

#[test]
fn empty_input_returns_nothing_and_sends_nothing() {
    let conn = &mut test_connection();
    let rows: Vec<NewProduct> = Vec::new();
    let sent = SentSql::attach(conn);
    let result: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    assert!(result.is_empty());
    assert!(sent.take().is_empty());
}

#[test]
fn hstore_key_targets_work_in_bulk_and_duplicates_are_found_by_the_key_value() {
    let conn = &mut test_connection();
    let en = |s: &str| format!("{}-{s}", unique_key("bulk-hstore"));
    let (a, b, c) = (en("a"), en("b"), en("c"));
    let existing: Article = diesel::insert_into(articles::table)
        .values(&NewArticle::new(&[("en", &b), ("ar", "old")], "old body"))
        .get_result(conn)
        .unwrap();
    // Different maps, same value under "en": a duplicate conflict key.
    let duplicates = vec![
        NewArticle::new(&[("en", &a), ("ar", "1")], "x"),
        NewArticle::new(&[("en", &a), ("fr", "2")], "y"),
    ];
    let error = diesel::insert_into(articles::table)
        .values(&duplicates)
        .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
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

    let rows = vec![
        NewArticle::new(&[("en", &c)], "c body"),
        NewArticle::new(&[("ar", "no en key")], "never conflicts"),
        NewArticle::new(&[("en", &b), ("ar", "new")], "new body"),
        NewArticle::new(&[("en", &a)], "a body"),
    ];
    let result: Vec<(Article, Outcome)> = diesel::insert_into(articles::table)
        .values(&rows)
        .on_conflict_do(articles::title.key("en"), ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let bodies: Vec<(&str, Outcome)> = result.iter().map(|(a, o)| (a.body.as_str(), *o)).collect();
    assert_eq!(
        bodies,
        [
            ("c body", Outcome::Inserted),
            ("never conflicts", Outcome::Inserted),
            ("old body", Outcome::Unchanged),
            ("a body", Outcome::Inserted),
        ]
    );
    assert_eq!(result[2].0, existing);
    let updated: Vec<Article> = diesel::insert_into(articles::table)
        .values(&rows[2..])
        .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
        .bulk_insert_and_get(conn)
        .unwrap();
    assert_eq!(
        (updated[0].id, updated[0].body.as_str()),
        (existing.id, "new body")
    );
    let stored: Article = articles::table.find(existing.id).get_result(conn).unwrap();
    assert_eq!(stored, updated[0]);
}

#[test]
fn bulk_statements_are_prepared_once_per_shape_not_once_per_call() {
    // Rows sent as arrays give the same SQL text for any number of rows: one prepared
    // statement per shape of call. Statements whose text depends on the rows (VALUES lists)
    // are sent unnamed and must not pile up on the connection.
    let conn = &mut test_connection();
    let p = unique_key("b-prep");
    let prepared = |conn: &mut PgConnection| -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_prepared_statements)",
        ))
        .get_result(conn)
        .unwrap()
    };
    let before = prepared(conn);
    let mut after_first_round = None;
    for round in 0..4 {
        let keys: Vec<String> = (0..round + 2).map(|i| format!("{p}-{round}-{i}")).collect();
        let rows: Vec<_> = keys.iter().map(|k| NewProduct::new(k, "x")).collect();
        for action in [ConflictAction::Update, ConflictAction::Nothing] {
            let result: Vec<Product> = diesel::insert_into(products::table)
                .values(&rows)
                .on_conflict_do(products::sku, action)
                .bulk_insert_and_get(conn)
                .unwrap();
            assert_eq!(result.len(), keys.len());
        }
        let expressions: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    products::sku.eq(k.as_str()),
                    products::name.eq(diesel::dsl::sql::<diesel::sql_types::Text>("'y'")),
                )
            })
            .collect();
        let result: Vec<Product> = diesel::insert_into(products::table)
            .values(&expressions)
            .bulk_upsert(products::sku, conn)
            .unwrap();
        assert_eq!(result.len(), keys.len());
        let now = prepared(conn);
        match after_first_round {
            None => after_first_round = Some(now),
            Some(first) => assert_eq!(now, first, "round {round}"),
        }
    }
    // Update, Nothing and the read-back of the rows Nothing kept.
    assert_eq!(after_first_round, Some(before + 3));
}

diesel::table! {
    /// Created by the test that needs it: a column that is itself an array.
    bulk_tags (id) {
        id -> BigInt,
        k -> Text,
        tags -> Array<Text>,
    }
}

#[test]
fn array_columns_are_sent_as_a_values_list_and_round_trip() {
    // `unnest` would flatten an array of arrays: such rows go as a VALUES list.
    let conn = &mut test_connection();
    static CREATED: std::sync::Once = std::sync::Once::new();
    CREATED.call_once(|| {
        diesel::sql_query(
            "CREATE TABLE bulk_tags (id BIGSERIAL PRIMARY KEY, k TEXT UNIQUE NOT NULL, tags TEXT[] NOT NULL)",
        )
        .execute(&mut connection())
        .unwrap();
    });
    let p = unique_key("b-tags");
    let tags = [
        vec!["a".to_owned(), "b".to_owned()],
        vec![],
        vec!["c".to_owned()],
    ];
    let rows: Vec<_> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| (bulk_tags::k.eq(format!("{p}-{i}")), bulk_tags::tags.eq(t)))
        .collect();
    let sent = SentSql::attach(conn);
    let ids: Vec<i64> = diesel::insert_into(bulk_tags::table)
        .values(&rows)
        .on_conflict_do(bulk_tags::k, ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    assert_eq!(ids.len(), 3);
    let statements = statements_sent(&sent, "WITH");
    assert_eq!(statements.len(), 1);
    assert!(
        statements[0].contains(
            " (VALUES (CAST($1 AS text), CAST($2 AS text[]), 0), (CAST($3 AS text), CAST($4 AS text[]), 1), (CAST($5 AS text), CAST($6 AS text[]), 2)) "
        ),
        "{statements:?}"
    );
    let stored: Vec<Vec<String>> = bulk_tags::table
        .filter(bulk_tags::k.like(format!("{p}-%")))
        .order(bulk_tags::k)
        .select(bulk_tags::tags)
        .load(conn)
        .unwrap();
    assert_eq!(stored, tags);
}

#[test]
fn skip_unchanged_returns_identical_rows_in_the_same_statement_without_writing_or_locking_them() {
    let conn = &mut test_connection();
    let p = unique_key("b-same");
    let keys: Vec<String> = (0..3).map(|i| format!("{p}-{i}")).collect();
    let rows: Vec<_> = keys
        .iter()
        .take(2)
        .map(|k| NewProduct::new(k, "same").qty(1))
        .collect();
    let first: Vec<Product> = diesel::insert_into(products::table)
        .values(&rows)
        .bulk_upsert(products::sku, conn)
        .unwrap();
    let versions = |conn: &mut PgConnection| -> Vec<(String, String, String)> {
        diesel::sql_query(format!(
            "SELECT sku, xmin::text AS xmin, xmax::text AS xmax FROM products WHERE sku LIKE '{p}-%' ORDER BY sku"
        ))
        .load::<Version>(conn)
        .unwrap()
        .into_iter()
        .map(|v| (v.sku, v.xmin, v.xmax))
        .collect()
    };
    // The test transaction wrote both rows: their xmin is this transaction and xmax 0.
    let before = versions(conn);
    // Row 0 is identical, row 1 changes, row 2 is new; inputs in another order.
    let again = vec![
        NewProduct::new(&keys[2], "new").qty(3),
        NewProduct::new(&keys[1], "changed").qty(2),
        NewProduct::new(&keys[0], "same").qty(1),
    ];
    let sent = SentSql::attach(conn);
    let result: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&again)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        result
            .iter()
            .map(|(p, o)| (p.name.as_str(), *o))
            .collect::<Vec<_>>(),
        [
            ("new", Outcome::Inserted),
            ("changed", Outcome::Updated),
            ("same", Outcome::Unchanged)
        ]
    );
    assert_eq!(result[2].0, first[0]);
    let statements: Vec<String> = sent
        .take()
        .into_iter()
        .filter(|s| !s.starts_with("SAVEPOINT") && !s.starts_with("RELEASE"))
        // The first call on a table reads its key types from the catalog (once per process).
        .filter(|s| !s.contains(" FROM pg_class c "))
        .map(|s| s.split(" -- binds:").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        statements,
        [
            r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2, $3, $4, $5) AS "__upsert_row"("sku", "name", "qty", "price_cents", "__upsert_ord")), "__upsert_same" AS (SELECT "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", NULL::boolean AS "__upsert_inserted", "products"."sku" AS "__upsert_k0" FROM "__upsert_input" JOIN "products" ON "__upsert_input"."__upsert_k0" = "products"."sku" WHERE (ROW("products"."name", "products"."qty", "products"."price_cents"))::record *= (ROW(CAST("__upsert_input"."name" AS text), CAST("__upsert_input"."qty" AS integer), CAST("__upsert_input"."price_cents" AS bigint)))::record), "__upserted" AS (INSERT INTO "products" ("sku", "name", "qty", "price_cents") SELECT "sku", "name", "qty", "price_cents" FROM "__upsert_input" WHERE NOT EXISTS (SELECT 1 FROM "__upsert_same" WHERE "__upsert_input"."__upsert_k0" = "__upsert_same"."__upsert_k0") ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" WHERE (ROW("products"."name", "products"."qty", "products"."price_cents"))::record *<> (ROW(excluded."name", excluded."qty", excluded."price_cents"))::record RETURNING "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", (xmax = 0) AS "__upsert_inserted", "products"."sku" AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM (SELECT * FROM "__upserted" UNION ALL SELECT * FROM "__upsert_same") AS "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#
        ]
    );
    let after = versions(conn);
    // The identical row is the same tuple, not locked; the changed row is a new version.
    assert_eq!(after[0], before[0]);
    assert_eq!(after[0].2, "0");
    assert_ne!(after[1].1, before[1].1, "written by the call's savepoint");
    let stored: Vec<(String, i32)> = products_with_prefix(conn, &p)
        .into_iter()
        .map(|p| (p.name, p.qty))
        .collect();
    assert_eq!(
        stored,
        [
            ("same".to_owned(), 1),
            ("changed".to_owned(), 2),
            ("new".to_owned(), 3)
        ]
    );
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    sku: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    xmin: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    xmax: String,
}

diesel::table! {
    /// Created by the test that needs it, outside the search path's first schema.
    upsert_q.items (id) {
        id -> BigInt,
        k -> Text,
        v -> Integer,
    }
}

#[test]
fn skip_unchanged_on_a_schema_qualified_table_reads_identical_rows_back() {
    // The single-statement form names CTEs like the table, which `"upsert_q"."items"` cannot
    // be: such tables get the upsert and then the read-back by key.
    static CREATED: std::sync::Once = std::sync::Once::new();
    CREATED.call_once(|| {
        diesel::connection::SimpleConnection::batch_execute(
            &mut connection(),
                "CREATE SCHEMA upsert_q; CREATE TABLE upsert_q.items (id BIGSERIAL PRIMARY KEY, k TEXT UNIQUE NOT NULL, v INTEGER NOT NULL)",
            )
            .unwrap();
    });
    let conn = &mut test_connection();
    let p = unique_key("b-schema");
    let rows: Vec<_> = (0..3)
        .map(|i| NewQualifiedItem {
            k: format!("{p}-{i}"),
            v: i,
        })
        .collect();
    let upsert = |rows: &[NewQualifiedItem], conn: &mut PgConnection| -> Vec<(i64, Outcome)> {
        diesel::insert_into(items::table)
            .values(rows)
            .on_conflict_do(items::k, ConflictAction::Update)
            .skip_unchanged()
            .bulk_insert_and_get_with_outcome::<QualifiedItem, _>(conn)
            .unwrap()
            .into_iter()
            .map(|(item, outcome)| (item.id, outcome))
            .collect()
    };
    let first = upsert(&rows, conn);
    assert!(first.iter().all(|(_, o)| *o == Outcome::Inserted));
    let mut again = rows.clone();
    again[1].v = 10;
    let second = upsert(&again, conn);
    assert_eq!(
        second,
        [
            (first[0].0, Outcome::Unchanged),
            (first[1].0, Outcome::Updated),
            (first[2].0, Outcome::Unchanged)
        ]
    );
    let stored: Vec<(String, i32)> = items::table
        .filter(items::k.like(format!("{p}-%")))
        .order(items::k)
        .select((items::k, items::v))
        .load(conn)
        .unwrap();
    assert_eq!(
        stored.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        [0, 10, 2]
    );
}

#[derive(Insertable, Clone)]
#[diesel(table_name = items)]
struct NewQualifiedItem {
    k: String,
    v: i32,
}

#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = items, check_for_backend(diesel::pg::Pg))]
struct QualifiedItem {
    id: i64,
}

// ---------------------------------------------------------------- bulk_execute

#[test]
fn bulk_execute_counts_inserted_updated_and_unchanged_rows_without_returning_them() {
    use diesel_upsert::BulkSummary;
    let conn = &mut test_connection();
    let p = unique_key("b-exec");
    let keys: Vec<String> = (0..4).map(|i| format!("{p}-{i}")).collect();
    let first: Vec<_> = keys[..2]
        .iter()
        .map(|k| NewProduct::new(k, "old"))
        .collect();
    let summary = diesel::insert_into(products::table)
        .values(&first)
        .on_conflict_do(products::sku, ConflictAction::Update)
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
    // Two existing keys (one of them twice: KeepLast), two new ones.
    let rows = vec![
        NewProduct::new(&keys[0], "dup"),
        NewProduct::new(&keys[2], "new"),
        NewProduct::new(&keys[0], "updated"),
        NewProduct::new(&keys[1], "updated"),
        NewProduct::new(&keys[3], "new"),
    ];
    let sent = SentSql::attach(conn);
    let summary = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .on_duplicate_keys(DuplicateKeys::KeepLast)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 2,
            updated: 2,
            unchanged: 1
        }
    );
    let statements = statements_sent(&sent, "WITH");
    assert_eq!(
        statements,
        [
            r#"WITH "__upserted" AS (INSERT INTO "products" ("sku", "name", "qty", "price_cents") SELECT "sku", "name", "qty", "price_cents" FROM unnest($1, $2, $3, $4, $5) AS "__upsert_row"("sku", "name", "qty", "price_cents", "__upsert_ord") ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" RETURNING (xmax = 0) AS "__upsert_inserted") SELECT count(*) FILTER (WHERE "__upsert_inserted"), count(*) FILTER (WHERE NOT "__upsert_inserted") FROM "__upserted""#
        ],
        "one statement, no read-back"
    );
    let stored: Vec<(String, String)> = products_with_prefix(conn, &p)
        .into_iter()
        .map(|p| (p.sku, p.name))
        .collect();
    let mut expected: Vec<(String, String)> = vec![
        (keys[0].clone(), "updated".into()),
        (keys[1].clone(), "updated".into()),
        (keys[2].clone(), "new".into()),
        (keys[3].clone(), "new".into()),
    ];
    expected.sort();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(stored_sorted, expected);
}

#[test]
fn bulk_execute_with_nothing_conditions_and_skip_unchanged_counts_rows_left_alone() {
    use diesel_upsert::BulkSummary;
    let conn = &mut test_connection();
    let p = unique_key("b-exec2");
    let keys: Vec<String> = (0..3).map(|i| format!("{p}-{i}")).collect();
    let rows: Vec<_> = keys
        .iter()
        .map(|k| NewProduct::new(k, "same").qty(1))
        .collect();
    diesel::insert_into(products::table)
        .values(&rows[..2])
        .execute(conn)
        .unwrap();
    let sent = SentSql::attach(conn);
    let nothing = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        nothing,
        BulkSummary {
            inserted: 1,
            updated: 0,
            unchanged: 2
        }
    );
    assert!(
        sent.take().iter().all(|s| !s.contains("JOIN")),
        "kept rows are not read back"
    );
    let mut changed: Vec<_> = rows.clone();
    changed[0] = NewProduct::new(&keys[0], "changed").qty(1);
    let skip = diesel::insert_into(products::table)
        .values(&changed)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        skip,
        BulkSummary {
            inserted: 0,
            updated: 1,
            unchanged: 2
        }
    );
    let condition = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(products::qty.gt(5))
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        condition,
        BulkSummary {
            inserted: 0,
            updated: 0,
            unchanged: 3
        }
    );
    let names: Vec<String> = products_with_prefix(conn, &p)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["changed", "same", "same"]);
}

#[test]
fn bulk_execute_rejects_duplicates_and_empty_input_sends_nothing() {
    use diesel_upsert::BulkSummary;
    let conn = &mut test_connection();
    let p = unique_key("b-exec3");
    let k = format!("{p}-a");
    let rows = vec![NewProduct::new(&k, "1"), NewProduct::new(&k, "2")];
    let error = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Update)
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
    assert!(products_with_prefix(conn, &p).is_empty());
    let none: Vec<NewProduct> = Vec::new();
    let sent = SentSql::attach(conn);
    let summary = diesel::insert_into(products::table)
        .values(&none)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(summary, BulkSummary::default());
    assert!(sent.take().is_empty());
}

#[test]
fn bulk_execute_chunks_large_calls_and_counts_rows_without_a_key() {
    use diesel_upsert::BulkSummary;
    let conn = &mut connection();
    bulk_items_table(conn);
    let p = unique_key("exec-chunk");
    let mut rows = items(&p, 45_000);
    rows.push(NewItem { k: None, v: 1 });
    rows.push(NewItem { k: None, v: 2 });
    let sent = SentSql::attach(conn);
    let summary = diesel::insert_into(bulk_items::table)
        .values(&rows)
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 45_002,
            updated: 0,
            unchanged: 0
        }
    );
    let counts = sent
        .take()
        .iter()
        .filter(|s| s.starts_with("WITH \"__upserted\""))
        .count();
    assert_eq!(
        counts, 5,
        "four chunks of keyed rows (2 000, 20 000, 20 000, 3 000) and one of rows without a key"
    );
    assert_eq!(count_items(conn, &p), 45_000);
    for row in rows.iter_mut().take(10) {
        row.v += 1;
    }
    let summary = diesel::insert_into(bulk_items::table)
        .values(&rows[..10])
        .on_conflict_do(bulk_items::k, ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        summary,
        BulkSummary {
            inserted: 0,
            updated: 10,
            unchanged: 0
        }
    );
    let v: i32 = bulk_items::table
        .filter(bulk_items::k.eq(format!("{p}-000003")))
        .select(bulk_items::v)
        .get_result(conn)
        .unwrap();
    assert_eq!(v, 4);
}

/// The statements of `bulk_update` (shown in docs/bulk.md, checked here): the rows that exist
/// locked in key order, then updated from the input, all in one transaction.
#[test]
fn bulk_update_locks_in_key_order_then_updates_and_docs_show_it() {
    use diesel_upsert::bulk_update;
    let conn = &mut test_connection();
    diesel::insert_into(products::table)
        .values(&NewProduct::new("DOC-BU-1", "Cup"))
        .execute(conn)
        .unwrap();
    let changes = vec![(products::sku.eq("DOC-BU-1"), products::name.eq("Mug"))];
    // Warm the catalog cache: the page shows the call's own statements.
    let _ = bulk_update(products::table)
        .set(&changes)
        .by(products::sku)
        .skip_unchanged()
        .apply(conn)
        .unwrap();
    let sent = SentSql::attach(conn);
    bulk_update(products::table)
        .set(&changes)
        .by(products::sku)
        .skip_unchanged()
        .apply(conn)
        .unwrap();
    let statements: Vec<String> = sent
        .take()
        .into_iter()
        .map(|s| s.split(" -- binds: ").next().unwrap().to_owned())
        .collect();
    let lock = r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2) AS "__upsert_row"("sku", "__upsert_ord")) SELECT "__upsert_input"."__upsert_ord", "__upsert_locked".* FROM "__upsert_input" CROSS JOIN LATERAL (SELECT true FROM "products" WHERE "__upsert_input"."__upsert_k0" = "products"."sku" FOR UPDATE) AS "__upsert_locked""#;
    let update = r#"WITH "__upsert_input" AS (SELECT *, CAST("sku" AS text) AS "__upsert_k0" FROM unnest($1, $2, $3) AS "__upsert_row"("sku", "name", "__upsert_ord")) UPDATE "products" SET "name" = "__upsert_input"."name" FROM "__upsert_input" WHERE "__upsert_input"."__upsert_k0" = "products"."sku" AND (ROW("products"."name"))::record *<> (ROW("__upsert_input"."name"))::record RETURNING "__upsert_input"."__upsert_ord""#;
    assert_eq!(
        statements,
        [
            "SAVEPOINT diesel_savepoint_1",
            lock,
            update,
            "RELEASE SAVEPOINT diesel_savepoint_1"
        ]
    );
    let page = include_str!("../docs/bulk.md");
    for statement in [lock, update] {
        assert!(page.contains(statement), "docs/bulk.md shows: {statement}");
    }
}
