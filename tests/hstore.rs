//! hstore: the binary codec, `.key()` in queries, hstore-key conflict targets, hostile keys, the
//! migration helpers, and django-postgres-extra's hstore scenarios.
//!
//! Tables other than `articles` are created by the test that uses them, inside its test
//! transaction: they never become visible to other tests and vanish with the rollback.

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, pg_client, record_sql, test_connection, unique_key};
use diesel::connection::{CacheSize, SimpleConnection};
use diesel::debug_query;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_upsert::hstore::{required_keys, unique_index};
use diesel_upsert::prelude::*;
use diesel_upsert::IntoConflictTarget;
use diesel_upsert::{Error, HstoreMap};
use std::collections::{BTreeMap, HashMap};

type Map = BTreeMap<String, Option<String>>;

/// Tables the tests create in their own transactions.
mod scratch {
    diesel::table! {
        use diesel::sql_types::*;
        use diesel_upsert::sql_types::Hstore;

        /// A NOT NULL hstore column.
        hstore_values (id) {
            id -> Int8,
            attrs -> Hstore,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use diesel_upsert::sql_types::Hstore;

        /// One unique index per hostile key.
        hostile_keys (id) {
            id -> Int8,
            attrs -> Nullable<Hstore>,
            note -> Text,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use diesel_upsert::sql_types::Hstore;

        /// Unique on `(category, (attrs -> 'sku'))`: a plain column and a key.
        keyed_items (id) {
            id -> Int8,
            category -> Text,
            attrs -> Hstore,
            qty -> Int4,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use diesel_upsert::sql_types::Hstore;

        /// Unique together on the keys `en` and `ar` (and nothing else).
        unique_pairs (id) {
            id -> Int8,
            label -> Nullable<Hstore>,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use diesel_upsert::sql_types::Hstore;

        /// A CHECK constraint requiring keys.
        required_labels (id) {
            id -> Int8,
            label -> Nullable<Hstore>,
        }
    }
}

use scratch::{hostile_keys, hstore_values, keyed_items, required_labels, unique_pairs};

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = hostile_keys, check_for_backend(Pg))]
struct HostileRow {
    id: i64,
    attrs: Option<HstoreMap>,
    note: String,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = keyed_items, check_for_backend(Pg))]
struct KeyedItem {
    id: i64,
    category: String,
    attrs: HstoreMap,
    qty: i32,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = unique_pairs, check_for_backend(Pg))]
struct UniquePair {
    id: i64,
    label: Option<Map>,
}

fn map(pairs: &[(&str, Option<&str>)]) -> Map {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.map(str::to_owned)))
        .collect()
}

fn hmap(pairs: &[(&str, Option<&str>)]) -> HstoreMap {
    map(pairs).into()
}

fn sql_of<Q: diesel::query_builder::QueryFragment<Pg>>(query: &Q) -> String {
    debug_query::<Pg, _>(query).to_string()
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Pair {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
}

/// The pairs of `articles.title` of row `id`, read by PostgreSQL's `each()` as text: no hstore
/// decoding on the Rust side.
fn stored_title(conn: &mut PgConnection, id: i64) -> Map {
    diesel::sql_query("SELECT e.key, e.value FROM articles a, each(a.title) e WHERE a.id = $1")
        .bind::<BigInt, _>(id)
        .load::<Pair>(conn)
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect()
}

fn count_articles_with_en(conn: &mut PgConnection, en: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM articles WHERE title -> 'en' = $1")
        .bind::<Text, _>(en)
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

// ---------------------------------------------------------------- the codec

#[test]
fn maps_round_trip_with_null_values_empty_maps_unicode_and_ten_thousand_keys() {
    let cases: Vec<Map> = vec![
        map(&[("a", Some("1")), ("b", None), ("c", Some("NULL"))]),
        map(&[]),
        map(&[
            ("ключ 🔑", Some("значение ✓")),
            ("日本語", Some("テキスト")),
            ("", Some("")),
            ("emoji 🦀🐘", None),
            (r#"quote"'\=>,"#, Some(r#"\"=>NULL, x=>y"#)),
        ]),
        (0..10_000)
            .map(|i| {
                (
                    format!("key-{i:05}"),
                    (i % 7 != 0).then(|| format!("value {i} ✓")),
                )
            })
            .collect(),
    ];
    // Committed, so that rust-postgres (an independent hstore codec) sees the rows.
    let conn = &mut connection();
    let mut client = pg_client();
    let tag = unique_key("codec");
    for (i, expected) in cases.iter().enumerate() {
        // Written by this crate, read by PostgreSQL, by this crate and by rust-postgres.
        let body = format!("{tag}-{i}");
        let inserted: Article = diesel::insert_into(articles::table)
            .values(&NewArticle {
                title: Some(expected.clone().into()),
                body: &body,
            })
            .get_result(conn)
            .unwrap();
        assert_eq!(inserted.title.as_ref(), Some(expected), "case {i}");
        assert_eq!(stored_title(conn, inserted.id), *expected, "case {i}");
        let theirs: HashMap<String, Option<String>> = client
            .query_one("SELECT title FROM articles WHERE id = $1", &[&inserted.id])
            .unwrap()
            .get(0);
        assert_eq!(theirs.into_iter().collect::<Map>(), *expected, "case {i}");

        // Written by rust-postgres, read by this crate.
        let theirs: HashMap<String, Option<String>> = expected.clone().into_iter().collect();
        let id: i64 = client
            .query_one(
                "INSERT INTO articles (title, body) VALUES ($1, $2) RETURNING id",
                &[&theirs, &body],
            )
            .unwrap()
            .get(0);
        let loaded: Article = articles::table.find(id).get_result(conn).unwrap();
        assert_eq!(loaded.title.as_ref(), Some(expected), "case {i}");
    }
}

#[test]
fn hash_maps_and_btree_maps_bind_and_load() {
    let conn = &mut test_connection();
    let expected = HashMap::from([
        ("a".to_owned(), Some("1".to_owned())),
        ("b".to_owned(), None),
    ]);
    let id: i64 = diesel::insert_into(articles::table)
        .values(&NewArticle {
            title: Some(HstoreMap::from(expected.clone())),
            body: "hash map",
        })
        .returning(articles::id)
        .get_result(conn)
        .unwrap();
    let as_hash: HashMap<String, Option<String>> = articles::table
        .find(id)
        .select(articles::title.assume_not_null())
        .get_result(conn)
        .unwrap();
    assert_eq!(as_hash, expected);
    let as_btree: Option<Map> = articles::table
        .find(id)
        .select(articles::title)
        .get_result(conn)
        .unwrap();
    assert_eq!(as_btree, Some(expected.clone().into_iter().collect()));
    let as_newtype: Option<HstoreMap> = articles::table
        .find(id)
        .select(articles::title)
        .get_result(conn)
        .unwrap();
    assert_eq!(as_newtype.map(HashMap::from), Some(expected.clone()));

    // The std maps bind directly where Diesel only needs `ToSql`.
    #[derive(QueryableByName)]
    struct Echo {
        #[diesel(sql_type = diesel_upsert::sql_types::Hstore)]
        hash: HashMap<String, Option<String>>,
        #[diesel(sql_type = diesel_upsert::sql_types::Hstore)]
        btree: Map,
        #[diesel(sql_type = Nullable<Text>)]
        b_value: Option<String>,
    }
    let btree = map(&[("x", Some("y"))]);
    let echo: Echo = diesel::sql_query("SELECT $1 AS hash, $2 AS btree, $1 -> 'a' AS b_value")
        .bind::<diesel_upsert::sql_types::Hstore, _>(&expected)
        .bind::<diesel_upsert::sql_types::Hstore, _>(&btree)
        .get_result(conn)
        .unwrap();
    assert_eq!(
        (echo.hash, echo.btree, echo.b_value),
        (expected, btree, Some("1".to_owned()))
    );
}

#[test]
fn values_parsed_by_postgresql_from_text_load_as_maps() {
    let conn = &mut test_connection();
    let loaded: HashMap<String, Option<String>> =
        diesel::select(diesel::dsl::sql::<diesel_upsert::sql_types::Hstore>(
            r#"'a=>1, b=>NULL, "c d"=>"e\"f", "ключ"=>"🔑"'::hstore"#,
        ))
        .get_result(conn)
        .unwrap();
    assert_eq!(
        loaded.into_iter().collect::<Map>(),
        map(&[
            ("a", Some("1")),
            ("b", None),
            ("c d", Some("e\"f")),
            ("ключ", Some("🔑"))
        ])
    );
}

#[test]
fn a_null_hstore_column_round_trips_as_none() {
    let conn = &mut test_connection();
    let untitled: Article = diesel::insert_into(articles::table)
        .values(&NewArticle {
            title: None,
            body: "untitled",
        })
        .get_result(conn)
        .unwrap();
    assert_eq!(untitled.title, None);
    let explicit: Article = diesel::insert_into(articles::table)
        .values((
            articles::title.eq(None::<HstoreMap>),
            articles::body.eq("explicit null"),
        ))
        .get_result(conn)
        .unwrap();
    let rows: Vec<(i64, Option<Map>, Option<String>)> = articles::table
        .filter(articles::id.eq_any([untitled.id, explicit.id]))
        .filter(articles::title.is_null())
        .select((articles::id, articles::title, articles::title.key("en")))
        .order_by(articles::id)
        .load(conn)
        .unwrap();
    assert_eq!(
        rows,
        vec![(untitled.id, None, None), (explicit.id, None, None)]
    );
}

#[test]
fn a_not_null_hstore_column_loads_into_a_plain_map_field() {
    #[derive(Queryable, Selectable, Debug, PartialEq)]
    #[diesel(table_name = hstore_values, check_for_backend(Pg))]
    struct Value {
        id: i64,
        attrs: HashMap<String, Option<String>>,
    }
    let conn = &mut test_connection();
    conn.batch_execute(
        "CREATE TABLE hstore_values (id BIGSERIAL PRIMARY KEY, attrs HSTORE NOT NULL)",
    )
    .unwrap();
    let value: Value = diesel::insert_into(hstore_values::table)
        .values(hstore_values::attrs.eq(hmap(&[("k", Some("v")), ("n", None)])))
        .returning(Value::as_returning())
        .get_result(conn)
        .unwrap();
    let expected = HashMap::from([
        ("k".to_owned(), Some("v".to_owned())),
        ("n".to_owned(), None),
    ]);
    assert_eq!(value.attrs, expected);
    let stored: Value = hstore_values::table
        .find(value.id)
        .select(Value::as_select())
        .get_result(conn)
        .unwrap();
    assert_eq!(stored.attrs, expected);
}

/// An application's own newtype, delegating to the map's `ToSql` / `FromSql`.
#[derive(Debug, Clone, PartialEq, AsExpression, FromSqlRow)]
#[diesel(sql_type = diesel_upsert::sql_types::Hstore)]
struct Labels(HashMap<String, Option<String>>);

impl ToSql<diesel_upsert::sql_types::Hstore, Pg> for Labels {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<diesel_upsert::sql_types::Hstore, Pg>::to_sql(&self.0, out)
    }
}

impl FromSql<diesel_upsert::sql_types::Hstore, Pg> for Labels {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        FromSql::<diesel_upsert::sql_types::Hstore, Pg>::from_sql(value).map(Labels)
    }
}

#[test]
fn an_applications_own_newtype_and_serialize_as_insert_hstore_values() {
    #[derive(Insertable)]
    #[diesel(table_name = articles)]
    struct LabelledArticle<'a> {
        title: Labels,
        body: &'a str,
    }

    #[derive(Insertable)]
    #[diesel(table_name = articles)]
    struct Draft {
        #[diesel(serialize_as = HstoreMap)]
        title: BTreeMap<String, Option<String>>,
        body: String,
    }

    let conn = &mut test_connection();
    let labels = Labels(HashMap::from([
        ("it's".to_owned(), Some("labelled".to_owned())),
        ("none".to_owned(), None),
    ]));
    let (id, loaded): (i64, Option<Labels>) = diesel::insert_into(articles::table)
        .values(&LabelledArticle {
            title: labels.clone(),
            body: "newtype",
        })
        .returning((articles::id, articles::title))
        .get_result(conn)
        .unwrap();
    assert_eq!(loaded, Some(labels.clone()));
    assert_eq!(
        stored_title(conn, id),
        labels.0.clone().into_iter().collect::<Map>()
    );

    let title = map(&[("draft", Some("yes"))]);
    let id: i64 = diesel::insert_into(articles::table)
        .values(Draft {
            title: title.clone(),
            body: "serialize_as".to_owned(),
        })
        .returning(articles::id)
        .get_result(conn)
        .unwrap();
    assert_eq!(stored_title(conn, id), title);

    // The newtype also works through an upsert.
    let en = unique_key("newtype");
    let mut labels = labels;
    labels.0.insert("en".to_owned(), Some(en.clone()));
    let first: Article = diesel::insert_into(articles::table)
        .values(&LabelledArticle {
            title: labels.clone(),
            body: "first",
        })
        .upsert_and_get(articles::title.key("en"), conn)
        .unwrap();
    let second: Article = diesel::insert_into(articles::table)
        .values(&LabelledArticle {
            title: labels,
            body: "second",
        })
        .upsert_and_get(articles::title.key("en"), conn)
        .unwrap();
    assert_eq!((second.id, second.body.as_str()), (first.id, "second"));
}

#[test]
fn hstore_map_converts_from_and_into_the_std_maps() {
    let pairs = [("a", Some("1")), ("b", None)];
    let collected: HstoreMap = pairs.into_iter().collect();
    assert_eq!(*collected, map(&pairs));
    let hash: HashMap<String, Option<String>> = collected.clone().into();
    assert_eq!(HstoreMap::from(hash), collected);
    let mut extended = HstoreMap::new();
    extended.extend([("a".to_owned(), Some("1".to_owned()))]);
    extended.insert("b".to_owned(), None);
    assert_eq!(extended, collected);
    assert_eq!(collected.clone().into_inner(), map(&pairs));
    assert_eq!(
        (&collected).into_iter().count() + collected.into_iter().count(),
        4
    );
}

// ---------------------------------------------------------------- .key() in queries

#[test]
fn key_reads_a_value_in_select_filter_and_order_by() {
    let conn = &mut test_connection();
    let tag = unique_key("select");
    for (en, ar) in [("b", "yes"), ("c", "yes"), ("a", "yes")] {
        let en = format!("{tag}-{en}");
        diesel::insert_into(articles::table)
            .values(&NewArticle::new(&[("en", &en), ("ar", ar)], &tag))
            .execute(conn)
            .unwrap();
    }
    diesel::insert_into(articles::table)
        .values(&NewArticle::new(&[("en", &format!("{tag}-d"))], &tag))
        .execute(conn)
        .unwrap();

    let query = articles::table
        .select((articles::body, articles::title.key("en")))
        .filter(articles::title.key("ar").eq("yes"))
        .filter(articles::body.eq(&tag))
        .order_by(articles::title.key("en").desc());
    assert_eq!(
        sql_of(&query),
        format!(
            r#"SELECT "articles"."body", ("articles"."title" -> 'en') FROM "articles" WHERE ((("articles"."title" -> 'ar') = $1) AND ("articles"."body" = $2)) ORDER BY ("articles"."title" -> 'en') DESC -- binds: ["yes", "{tag}"]"#
        )
    );
    let rows: Vec<(String, Option<String>)> = query.load(conn).unwrap();
    assert_eq!(
        rows,
        ["c", "b", "a"]
            .iter()
            .map(|en| (tag.clone(), Some(format!("{tag}-{en}"))))
            .collect::<Vec<_>>()
    );

    let missing: Vec<Option<String>> = articles::table
        .filter(articles::body.eq(&tag))
        .filter(articles::title.key("ar").is_null())
        .select(articles::title.key("ar"))
        .load(conn)
        .unwrap();
    assert_eq!(missing, vec![None]);
}

#[test]
fn quotes_and_backslashes_in_a_query_key_are_escaped_literals_and_owned_keys_work() {
    let conn = &mut test_connection();
    let tag = unique_key("escaped");
    let title = hmap(&[("it's", Some("quote")), (r"back\slash", Some("backslash"))]);
    diesel::insert_into(articles::table)
        .values(&NewArticle {
            title: Some(title),
            body: &tag,
        })
        .execute(conn)
        .unwrap();
    let query = articles::table.filter(articles::body.eq(&tag)).select((
        articles::title.key("it's"),
        articles::title.key(String::from(r"back\slash")),
    ));
    assert_eq!(
        sql_of(&query),
        format!(
            r#"SELECT ("articles"."title" -> 'it''s'), ("articles"."title" -> E'back\\slash') FROM "articles" WHERE ("articles"."body" = $1) -- binds: ["{tag}"]"#
        )
    );
    let values: (Option<String>, Option<String>) = query.get_result(conn).unwrap();
    assert_eq!(
        values,
        (Some("quote".to_owned()), Some("backslash".to_owned()))
    );
}

#[test]
fn a_nul_byte_in_a_query_key_fails_before_the_query_is_sent() {
    let conn = &mut test_connection();
    let error = articles::table
        .select(articles::title.key("a\0b"))
        .load::<Option<String>>(conn)
        .unwrap_err();
    assert!(
        matches!(error, DieselError::QueryBuilderError(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("NUL byte"), "{error}");
    let rows: i64 = articles::table.count().get_result(conn).unwrap();
    assert!(rows >= 0, "the connection stays usable");
}

// ---------------------------------------------------------------- key conflict targets

#[test]
fn key_targets_are_written_as_expressions_with_literal_keys() {
    let row = NewArticle::new(&[("en", "Tea"), ("ar", "شاي")], "b");
    let binds = r#"-- binds: [HstoreMap({"ar": Some("شاي"), "en": Some("Tea")}), "b"]"#;
    let single = diesel::insert_into(articles::table)
        .values(&row)
        .on_conflict_do(articles::title.key("en"), ConflictAction::Update);
    assert_eq!(
        sql_of(&single),
        format!(
            r#"INSERT INTO "articles" ("title", "body") VALUES ($1, $2) ON CONFLICT (("title" -> 'en')) DO UPDATE SET "title" = excluded."title", "body" = excluded."body" {binds}"#
        )
    );
    let pair = diesel::insert_into(articles::table)
        .values(&row)
        .on_conflict_do(
            (articles::title.key("en"), articles::title.key("ar")),
            ConflictAction::Nothing,
        );
    assert_eq!(
        sql_of(&pair),
        format!(
            r#"INSERT INTO "articles" ("title", "body") VALUES ($1, $2) ON CONFLICT (("title" -> 'en'), ("title" -> 'ar')) DO NOTHING {binds}"#
        )
    );
    let mixed = diesel::insert_into(articles::table)
        .values(&row)
        .on_conflict_do(
            (articles::body, articles::title.key(String::from("it's"))),
            ConflictAction::Update,
        );
    assert_eq!(
        sql_of(&mixed),
        format!(
            r#"INSERT INTO "articles" ("title", "body") VALUES ($1, $2) ON CONFLICT ("body", ("title" -> 'it''s')) DO UPDATE SET "title" = excluded."title" {binds}"#
        )
    );
}

#[test]
fn a_kept_row_is_read_back_by_its_key_value_taken_from_the_new_row() {
    let conn = &mut test_connection();
    let en = unique_key("readback");
    let row = NewArticle::new(&[("en", &en), ("ar", "x")], "kept");
    let first: Article = diesel::insert_into(articles::table)
        .values(&row)
        .get_result(conn)
        .unwrap();
    let kept = || {
        diesel::insert_into(articles::table)
            .values(&row)
            .on_conflict_do(
                (articles::title.key("en"), articles::title.key("ar")),
                ConflictAction::Nothing,
            )
    };
    // The first call on a table reads its key types from the catalog (once per process).
    let _: Article = kept().insert_and_get(conn).unwrap();
    let sent = record_sql(conn);
    let kept: Article = kept().insert_and_get(conn).unwrap();
    assert_eq!(kept, first);
    let binds = format!(r#"HstoreMap({{"ar": Some("x"), "en": Some("{en}")}})"#);
    assert_eq!(
        *sent.lock().unwrap(),
        vec![
            format!(
                r#"INSERT INTO "articles" ("title", "body") VALUES ($1, $2) ON CONFLICT (("title" -> 'en'), ("title" -> 'ar')) DO NOTHING RETURNING "articles"."id", "articles"."title", "articles"."body", true -- binds: [{binds}, "kept"]"#
            ),
            format!(
                r#"SELECT "articles"."id", "articles"."title", "articles"."body" FROM "articles" WHERE ("articles"."title" -> 'en') = (CAST($1 AS hstore) -> 'en') AND ("articles"."title" -> 'ar') = (CAST($2 AS hstore) -> 'ar') -- binds: [{binds}, {binds}]"#
            ),
        ]
    );
}

/// Runs every `ConflictAction::Update` terminal (`upsert`, `upsert_and_get`, `insert`,
/// `insert_and_get`, `insert_and_get_with_outcome`) 10 times on one connection, each time with
/// a new title and body for the same key, and checks the row PostgreSQL holds after each call.
/// Returns the row's id.
fn update_ten_times_through_every_terminal<X, M>(
    conn: &mut PgConnection,
    target: impl Fn() -> X,
    title: impl Fn(usize) -> HstoreMap,
) -> i64
where
    X: IntoConflictTarget<articles::table, M>,
{
    let mut id = None;
    for round in 0..10 {
        for terminal in 0..5 {
            let n = round * 5 + terminal;
            let body = format!("update {n}");
            let row = NewArticle {
                title: Some(title(n)),
                body: &body,
            };
            let insert = diesel::insert_into(articles::table).values(&row);
            let (row_id, outcome) = match terminal {
                0 => (insert.upsert::<_, _, i64, _>(target(), conn).unwrap(), None),
                1 => {
                    let article: Article = insert.upsert_and_get(target(), conn).unwrap();
                    assert_eq!(article.title.as_ref(), Some(&*title(n)));
                    (article.id, None)
                }
                2 => (
                    insert
                        .on_conflict_do(target(), ConflictAction::Update)
                        .insert::<i64, _>(conn)
                        .unwrap(),
                    None,
                ),
                3 => {
                    let article: Article = insert
                        .on_conflict_do(target(), ConflictAction::Update)
                        .insert_and_get(conn)
                        .unwrap();
                    assert_eq!(article.body, body);
                    (article.id, None)
                }
                _ => {
                    let (article, outcome): (Article, Outcome) = insert
                        .on_conflict_do(target(), ConflictAction::Update)
                        .insert_and_get_with_outcome(conn)
                        .unwrap();
                    (article.id, Some(outcome))
                }
            };
            assert_eq!(
                *id.get_or_insert(row_id),
                row_id,
                "call {n} hit another row"
            );
            if let Some(outcome) = outcome {
                assert_eq!(outcome, Outcome::Updated, "call {n}");
            }
            let stored: Article = articles::table.find(row_id).get_result(conn).unwrap();
            assert_eq!(stored.body, body, "call {n}");
            assert_eq!(stored.title.as_ref(), Some(&*title(n)), "call {n}");
            assert_eq!(stored_title(conn, row_id), *title(n), "call {n}");
        }
    }
    id.unwrap()
}

/// Inserts `title` once, then runs every `ConflictAction::Nothing` terminal (`insert`,
/// `insert_and_get`, `insert_and_get_with_outcome`) 10 times on one connection with another
/// body and another value for a key outside the target; checks that each returns the first row
/// and that PostgreSQL still holds it unchanged.
fn nothing_ten_times_through_every_terminal<X, M>(
    conn: &mut PgConnection,
    target: impl Fn() -> X,
    title: impl Fn(usize) -> HstoreMap,
) where
    X: IntoConflictTarget<articles::table, M>,
{
    let first: Article = diesel::insert_into(articles::table)
        .values(&NewArticle {
            title: Some(title(0)),
            body: "first",
        })
        .get_result(conn)
        .unwrap();
    for round in 0..10 {
        for terminal in 0..3 {
            let n = 1 + round * 3 + terminal;
            let body = format!("ignored {n}");
            let row = NewArticle {
                title: Some(title(n)),
                body: &body,
            };
            let statement = diesel::insert_into(articles::table)
                .values(&row)
                .on_conflict_do(target(), ConflictAction::Nothing);
            match terminal {
                0 => assert_eq!(statement.insert::<i64, _>(conn).unwrap(), first.id),
                1 => assert_eq!(statement.insert_and_get::<Article, _>(conn).unwrap(), first),
                _ => assert_eq!(
                    statement
                        .insert_and_get_with_outcome::<Article, _>(conn)
                        .unwrap(),
                    (first.clone(), Outcome::Unchanged)
                ),
            }
            let stored: Article = articles::table.find(first.id).get_result(conn).unwrap();
            assert_eq!(stored, first, "call {n} changed the row");
        }
    }
    assert_eq!(stored_title(conn, first.id), *title(0));
}

#[test]
fn update_on_one_key_rewrites_the_hstore_ten_times_through_every_terminal() {
    let conn = &mut test_connection();
    let en = unique_key("update-en");
    let id = update_ten_times_through_every_terminal(
        conn,
        || articles::title.key("en"),
        |n| hmap(&[("en", Some(&en)), ("ar", Some(&format!("ar {n}")))]),
    );
    assert_eq!(count_articles_with_en(conn, &en), 1);
    assert_eq!(
        stored_title(conn, id),
        map(&[("en", Some(&en)), ("ar", Some("ar 49"))])
    );
}

#[test]
fn update_on_a_pair_of_keys_rewrites_the_hstore_ten_times_through_every_terminal() {
    let conn = &mut test_connection();
    let en = unique_key("update-pair");
    let id = update_ten_times_through_every_terminal(
        conn,
        || (articles::title.key("en"), articles::title.key("ar")),
        // Every call also drops or adds the key `de`: the column is written from the new row.
        |n| {
            let mut title = hmap(&[("en", Some(&en)), ("ar", Some("x"))]);
            if n % 2 == 0 {
                title.insert("de".to_owned(), Some(format!("de {n}")));
            }
            title
        },
    );
    assert_eq!(count_articles_with_en(conn, &en), 1);
    assert_eq!(
        stored_title(conn, id),
        map(&[("en", Some(&en)), ("ar", Some("x"))])
    );
}

#[test]
fn nothing_on_one_key_returns_the_existing_row_ten_times_through_every_terminal() {
    let conn = &mut test_connection();
    let en = unique_key("nothing-en");
    nothing_ten_times_through_every_terminal(
        conn,
        || articles::title.key(String::from("en")),
        |n| hmap(&[("en", Some(&en)), ("ar", Some(&format!("ar {n}")))]),
    );
    assert_eq!(count_articles_with_en(conn, &en), 1);
}

#[test]
fn nothing_on_a_pair_of_keys_returns_the_existing_row_ten_times_through_every_terminal() {
    let conn = &mut test_connection();
    let en = unique_key("nothing-pair");
    nothing_ten_times_through_every_terminal(
        conn,
        || {
            (
                articles::title.key("en"),
                articles::title.key(String::from("ar")),
            )
        },
        |n| {
            hmap(&[
                ("en", Some(&en)),
                ("ar", Some("x")),
                ("de", Some(&format!("de {n}"))),
            ])
        },
    );
    assert_eq!(count_articles_with_en(conn, &en), 1);
}

#[test]
fn update_values_can_merge_the_new_hstore_into_the_stored_one() {
    let conn = &mut test_connection();
    let en = unique_key("merge");
    let first: Article = diesel::insert_into(articles::table)
        .values(&NewArticle::new(&[("en", &en), ("de", "Tee")], "first"))
        .upsert_and_get(articles::title.key("en"), conn)
        .unwrap();
    let merge = articles::title.eq(
        diesel::dsl::sql::<Nullable<diesel_upsert::sql_types::Hstore>>(
            r#""articles"."title" || excluded."title""#,
        ),
    );
    let second = NewArticle::new(&[("en", &en), ("ar", "شاي")], "second");
    let statement = diesel::insert_into(articles::table)
        .values(&second)
        .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
        .update_values(merge);
    assert!(
        sql_of(&statement).contains(
            r#"ON CONFLICT (("title" -> 'en')) DO UPDATE SET "body" = excluded."body", "title" = "articles"."title" || excluded."title" -- binds"#
        ),
        "{}",
        sql_of(&statement)
    );
    let merged: Article = statement.insert_and_get(conn).unwrap();
    assert_eq!((merged.id, merged.body.as_str()), (first.id, "second"));
    assert_eq!(
        stored_title(conn, first.id),
        map(&[("en", Some(&en)), ("de", Some("Tee")), ("ar", Some("شاي"))])
    );
}

#[test]
fn a_tuple_of_a_column_and_a_key_is_a_conflict_target() {
    let conn = &mut test_connection();
    conn.batch_execute(
        "CREATE TABLE keyed_items (id BIGSERIAL PRIMARY KEY, category TEXT NOT NULL, \
         attrs HSTORE NOT NULL, qty INTEGER NOT NULL); \
         CREATE UNIQUE INDEX keyed_items_category_sku ON keyed_items (category, (attrs -> 'sku'))",
    )
    .unwrap();
    let target = || (keyed_items::category, keyed_items::attrs.key("sku"));
    let row = |category: &'static str, qty: i32| {
        (
            keyed_items::category.eq(category),
            keyed_items::attrs.eq(hmap(&[
                ("sku", Some("S-1")),
                ("qty", Some(&qty.to_string())),
            ])),
            keyed_items::qty.eq(qty),
        )
    };
    assert_eq!(
        sql_of(
            &diesel::insert_into(keyed_items::table)
                .values(row("tea", 1))
                .on_conflict_do(target(), ConflictAction::Update)
        ),
        r#"INSERT INTO "keyed_items" ("category", "attrs", "qty") VALUES ($1, $2, $3) ON CONFLICT ("category", ("attrs" -> 'sku')) DO UPDATE SET "attrs" = excluded."attrs", "qty" = excluded."qty" -- binds: ["tea", HstoreMap({"qty": Some("1"), "sku": Some("S-1")}), 1]"#
    );
    let mut ids = Vec::new();
    for qty in 1..=10 {
        ids.push(
            diesel::insert_into(keyed_items::table)
                .values(row("tea", qty))
                .upsert::<_, _, i64, _>(target(), conn)
                .unwrap(),
        );
        let kept: KeyedItem = diesel::insert_into(keyed_items::table)
            .values(row("tea", 100))
            .on_conflict_do(target(), ConflictAction::Nothing)
            .insert_and_get(conn)
            .unwrap();
        assert_eq!((kept.id, kept.qty), (ids[0], qty));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let other_category: i64 = diesel::insert_into(keyed_items::table)
        .values(row("coffee", 1))
        .upsert(target(), conn)
        .unwrap();
    assert_ne!(other_category, ids[0]);
    let rows: Vec<(String, Option<String>, i32)> = keyed_items::table
        .select((
            keyed_items::category,
            keyed_items::attrs.key("qty"),
            keyed_items::qty,
        ))
        .order_by(keyed_items::id)
        .load(conn)
        .unwrap();
    assert_eq!(
        rows,
        vec![
            ("tea".to_owned(), Some("10".to_owned()), 10),
            ("coffee".to_owned(), Some("1".to_owned()), 1)
        ]
    );
}

#[test]
fn a_key_without_a_unique_index_is_a_typed_error_with_the_index_that_would_match() {
    let conn = &mut test_connection();
    let error = diesel::insert_into(articles::table)
        .values(&NewArticle::new(&[("fr", "thé")], "no index"))
        .upsert::<_, _, i64, _>(articles::title.key("fr"), conn)
        .unwrap_err();
    match &error {
        Error::NoMatchingUniqueIndex { hint, .. } => {
            assert_eq!(
                hint,
                r#"CREATE UNIQUE INDEX ON "articles" (("title" -> 'fr'))"#
            )
        }
        other => panic!("expected NoMatchingUniqueIndex, got {other:?}"),
    }
}

// ---------------------------------------------------------------- hostile keys

/// Keys that break out of a badly quoted literal, each with the clause it would smuggle in.
const HOSTILE_KEYS: &[&str] = &[
    "'",
    "''",
    "\\",
    "\\'",
    "\\\\'",
    "--",
    "-- comment",
    ";",
    "\"",
    "\"\"",
    "$$",
    "$tag$",
    "$1",
    "E'",
    "e'\\x41'",
    "line\nbreak",
    "tab\tcarriage\r\nreturn",
    "/* comment",
    "ключ",
    "鍵",
    "🔑🦀",
    "",
    " ",
    "=>",
    "en') ; DROP TABLE products; --",
    "en')) DO NOTHING; DROP TABLE products; --",
    "x' OR '1'='1",
    "\\'); DROP TABLE articles; --",
    "'); DELETE FROM products; SELECT ('",
    "$$; DROP TABLE products; $$",
    "'::hstore) IS NULL OR (TRUE",
];

fn current_setting(conn: &mut PgConnection, name: &str) -> String {
    diesel::select(
        diesel::dsl::sql::<Text>("current_setting(")
            .bind::<Text, _>(name)
            .sql(")"),
    )
    .get_result(conn)
    .unwrap()
}

fn tables_exist(conn: &mut PgConnection) -> bool {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "to_regclass('products') IS NOT NULL AND to_regclass('articles') IS NOT NULL \
         AND to_regclass('hostile_keys') IS NOT NULL",
    ))
    .get_result(conn)
    .unwrap()
}

/// One run over every hostile key: a unique index per key (made by the helper), then for each
/// key an insert, an update of the same row and a kept row, all read back from PostgreSQL.
fn run_hostile_keys(conn: &mut PgConnection, setting: &str) {
    conn.batch_execute(
        "CREATE TABLE hostile_keys (id BIGSERIAL PRIMARY KEY, attrs HSTORE, note TEXT NOT NULL)",
    )
    .unwrap();
    let mut names = Vec::new();
    for key in HOSTILE_KEYS {
        let index = unique_index("hostile_keys", "attrs", &[key]).unwrap();
        assert!(index.name.len() <= 63, "{}", index.name);
        conn.batch_execute(&index.up)
            .unwrap_or_else(|e| panic!("{setting}: {:?}: {e}", index.up));
        names.push(index.name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), HOSTILE_KEYS.len(), "index names collide");

    for (i, key) in HOSTILE_KEYS.iter().enumerate() {
        let context = format!("standard_conforming_strings = {setting}, key {key:?}");
        // The key keeps its value (the conflict); the rest of the row changes.
        let attrs = |other: &str| hmap(&[(key, Some("same")), ("other", Some(other))]);
        let (first, outcome): (HostileRow, Outcome) = diesel::insert_into(hostile_keys::table)
            .values((
                hostile_keys::attrs.eq(attrs("first")),
                hostile_keys::note.eq("first"),
            ))
            .on_conflict_do(hostile_keys::attrs.key(*key), ConflictAction::Update)
            .insert_and_get_with_outcome(conn)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(outcome, Outcome::Inserted, "{context}");
        assert_eq!(first.attrs, Some(attrs("first")), "{context}");

        // The same key again: the unique index on exactly this key makes it the same row.
        let second = HostileRow {
            id: first.id,
            attrs: Some(hmap(&[(key, Some("same"))])),
            note: "second".to_owned(),
        };
        let updated: (HostileRow, Outcome) = diesel::insert_into(hostile_keys::table)
            .values((
                hostile_keys::attrs.eq(&second.attrs),
                hostile_keys::note.eq("second"),
            ))
            .on_conflict_do(
                hostile_keys::attrs.key(key.to_string()),
                ConflictAction::Update,
            )
            .insert_and_get_with_outcome(conn)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(updated, (second.clone(), Outcome::Updated), "{context}");

        let kept: HostileRow = diesel::insert_into(hostile_keys::table)
            .values((
                hostile_keys::attrs.eq(attrs("third")),
                hostile_keys::note.eq("third"),
            ))
            .on_conflict_do(hostile_keys::attrs.key(*key), ConflictAction::Nothing)
            .insert_and_get(conn)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(kept, second, "{context}");
        let first = first.id;

        // Read back through `.key()` and, independently, with the key as a bind parameter.
        let found: Vec<i64> = hostile_keys::table
            .filter(hostile_keys::attrs.key(*key).eq("same"))
            .select(hostile_keys::id)
            .load(conn)
            .unwrap();
        assert_eq!(found, vec![first], "{context}");
        let by_bind: i64 = diesel::sql_query(
            "SELECT count(*) AS n FROM hostile_keys WHERE attrs -> $1 = 'same' AND id = $2",
        )
        .bind::<Text, _>(*key)
        .bind::<BigInt, _>(first)
        .get_result::<Count>(conn)
        .unwrap()
        .n;
        assert_eq!(by_bind, 1, "{context}");
        let rows: i64 = hostile_keys::table.count().get_result(conn).unwrap();
        assert_eq!(rows, i as i64 + 1, "{context}");
    }

    // A NUL byte: a typed error, nothing sent, nothing written.
    let error = diesel::insert_into(hostile_keys::table)
        .values((
            hostile_keys::attrs.eq(hmap(&[("ok", Some("1"))])),
            hostile_keys::note.eq("nul"),
        ))
        .upsert::<_, _, i64, _>(hostile_keys::attrs.key("nul\0key"), conn)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidTarget { .. }), "{error:?}");
    assert!(matches!(
        unique_index("hostile_keys", "attrs", &["nul\0key"]),
        Err(Error::InvalidTarget { .. })
    ));
    let rows: i64 = hostile_keys::table.count().get_result(conn).unwrap();
    assert_eq!(rows, HOSTILE_KEYS.len() as i64);
    let notes: Vec<String> = hostile_keys::table
        .select(hostile_keys::note)
        .distinct()
        .load(conn)
        .unwrap();
    assert_eq!(notes, vec!["second".to_owned()]);
    assert!(tables_exist(conn), "a table was dropped");
    assert_eq!(
        current_setting(conn, "standard_conforming_strings"),
        setting
    );
}

#[test]
fn hostile_keys_match_their_own_unique_index_under_both_string_settings() {
    let conn = &mut test_connection();
    conn.batch_execute("SET LOCAL standard_conforming_strings = on")
        .unwrap();
    run_hostile_keys(conn, "on");

    // Statements prepared above were parsed with standard strings: without the statement
    // cache, every statement below is parsed again under the other setting.
    conn.batch_execute(
        "DROP TABLE hostile_keys; SET LOCAL standard_conforming_strings = off; \
         SET LOCAL escape_string_warning = off",
    )
    .unwrap();
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    run_hostile_keys(conn, "off");
}

// ---------------------------------------------------------------- migration helpers

/// The typed helper writes hstore-key indexes with leading columns (a distributed table's
/// distribution column first), exactly as the conflict target writes them, and PostgreSQL
/// infers the index from that target.
#[test]
fn the_typed_index_helper_writes_hstore_keys_after_leading_columns() {
    let index =
        diesel_upsert::unique_index(articles::table, (articles::body, articles::title.key("en")))
            .unwrap();
    assert_eq!(
        index.up,
        r#"CREATE UNIQUE INDEX "articles_body_title_en_key_24eba4fa" ON "articles" ("body", ("title" -> 'en'));"#
    );
    let conn = &mut test_connection();
    conn.batch_execute(&index.up).unwrap();
    let en = unique_key("lead");
    let row = NewArticle::new(&[("en", &en)], "shared body");
    let upsert = |conn: &mut PgConnection| {
        diesel::insert_into(articles::table)
            .values(&row)
            .on_conflict_do(
                (articles::body, articles::title.key("en")),
                ConflictAction::Update,
            )
            .insert::<i64, _>(conn)
    };
    let first = upsert(conn).unwrap();
    assert_eq!(upsert(conn).unwrap(), first);
}

#[test]
fn the_articles_migration_holds_exactly_what_the_helpers_write() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/2026-11-21-000002_articles"
    );
    let up = std::fs::read_to_string(format!("{dir}/up.sql")).unwrap();
    let down = std::fs::read_to_string(format!("{dir}/down.sql")).unwrap();
    let mut client = pg_client();
    for keys in [&["en"][..], &["en", "ar"][..]] {
        let index = unique_index("articles", "title", keys).unwrap();
        assert!(
            up.lines().any(|l| l == index.up),
            "{} not in up.sql:\n{up}",
            index.up
        );
        assert!(
            down.lines().any(|l| l == index.down),
            "{} not in down.sql:\n{down}",
            index.down
        );
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_indexes WHERE tablename = 'articles' AND indexname = $1",
                &[&index.name],
            )
            .unwrap();
        assert!(exists.is_some(), "index {} missing", index.name);
    }
}

// ---------------------------------------------------------------- django-postgres-extra scenarios

#[test]
fn a_unique_key_rejects_a_second_row_with_the_same_value_and_accepts_another() {
    let conn = &mut test_connection();
    let (en, other_en) = (unique_key("unique-a"), unique_key("unique-b"));
    let insert = |conn: &mut PgConnection, en: &str| {
        conn.transaction(|conn| {
            diesel::insert_into(articles::table)
                .values(&NewArticle::new(&[("en", en), ("ar", "x")], "unique"))
                .execute(conn)
        })
    };
    insert(conn, &en).unwrap();
    let error = insert(conn, &en).unwrap_err();
    assert!(
        matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
        ),
        "{error:?}"
    );
    insert(conn, &other_en).unwrap();
    assert_eq!(count_articles_with_en(conn, &en), 1);
    assert_eq!(count_articles_with_en(conn, &other_en), 1);
}

#[test]
fn unique_together_keys_reject_the_same_pair_only() {
    let conn = &mut test_connection();
    conn.batch_execute("CREATE TABLE unique_pairs (id BIGSERIAL PRIMARY KEY, label HSTORE)")
        .unwrap();
    let index = unique_index("unique_pairs", "label", &["en", "ar"]).unwrap();
    conn.batch_execute(&index.up).unwrap();
    let insert = |conn: &mut PgConnection, en: &str, ar: &str| {
        conn.transaction(|conn| {
            diesel::insert_into(unique_pairs::table)
                .values(unique_pairs::label.eq(hmap(&[("en", Some(en)), ("ar", Some(ar))])))
                .returning(unique_pairs::id)
                .get_result::<i64>(conn)
        })
    };
    let first = insert(conn, "a", "x").unwrap();
    let error = insert(conn, "a", "x").unwrap_err();
    assert!(
        matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
        ),
        "{error:?}"
    );
    insert(conn, "a", "y").unwrap();
    insert(conn, "b", "x").unwrap();

    let label = map(&[("en", Some("a")), ("ar", Some("x")), ("de", Some("neu"))]);
    let (updated, outcome): (UniquePair, Outcome) = diesel::insert_into(unique_pairs::table)
        .values(unique_pairs::label.eq(HstoreMap::from(label.clone())))
        .on_conflict_do(
            (unique_pairs::label.key("en"), unique_pairs::label.key("ar")),
            ConflictAction::Update,
        )
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Updated);
    assert_eq!(
        updated,
        UniquePair {
            id: first,
            label: Some(label)
        }
    );
    let rows: i64 = unique_pairs::table.count().get_result(conn).unwrap();
    assert_eq!(rows, 3);

    // down.sql drops the index: the same pair is accepted again.
    conn.batch_execute(&index.down).unwrap();
    insert(conn, "a", "x").unwrap();
}

#[test]
fn required_keys_are_enforced_by_the_check_constraint() {
    let conn = &mut test_connection();
    conn.batch_execute("CREATE TABLE required_labels (id BIGSERIAL PRIMARY KEY, label HSTORE)")
        .unwrap();
    let check = required_keys("required_labels", "label", &["en", "it's"]).unwrap();
    assert!(
        check.up.ends_with(
            r#"CHECK (("label" -> 'en') IS NOT NULL AND ("label" -> 'it''s') IS NOT NULL);"#
        ),
        "{}",
        check.up
    );
    conn.batch_execute(&check.up).unwrap();
    let insert = |conn: &mut PgConnection, label: Option<HstoreMap>| {
        conn.transaction(|conn| {
            diesel::insert_into(required_labels::table)
                .values(required_labels::label.eq(label))
                .execute(conn)
        })
    };
    for rejected in [
        Some(hmap(&[("en", Some("a"))])),
        Some(hmap(&[("it's", Some("b"))])),
        Some(hmap(&[("en", Some("a")), ("it's", None)])),
        Some(hmap(&[])),
        None,
    ] {
        let error = insert(conn, rejected.clone()).unwrap_err();
        assert!(
            matches!(
                error,
                DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, _)
            ),
            "{rejected:?}: {error:?}"
        );
    }
    insert(conn, Some(hmap(&[("en", Some("a")), ("it's", Some("b"))]))).unwrap();
    let rows: i64 = required_labels::table.count().get_result(conn).unwrap();
    assert_eq!(rows, 1);

    conn.batch_execute(&check.down).unwrap();
    insert(conn, None).unwrap();
    let rows: i64 = required_labels::table.count().get_result(conn).unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn two_upserts_on_the_same_key_leave_one_row_with_the_second_values() {
    let conn = &mut test_connection();
    let en = unique_key("twice-update");
    let first: Article = diesel::insert_into(articles::table)
        .values(&NewArticle::new(&[("en", &en), ("ar", "1")], "first"))
        .upsert_and_get(articles::title.key("en"), conn)
        .unwrap();
    let second: Article = diesel::insert_into(articles::table)
        .values(&NewArticle::new(
            &[("en", &en), ("ar", "2"), ("de", "zwei")],
            "second",
        ))
        .upsert_and_get(articles::title.key("en"), conn)
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(count_articles_with_en(conn, &en), 1);
    let stored: Article = articles::table.find(first.id).get_result(conn).unwrap();
    assert_eq!(stored.body, "second");
    assert_eq!(
        stored_title(conn, first.id),
        map(&[("en", Some(&en)), ("ar", Some("2")), ("de", Some("zwei"))])
    );
}

#[test]
fn two_inserts_on_the_same_key_with_nothing_leave_one_row_with_the_first_values() {
    let conn = &mut test_connection();
    let en = unique_key("twice-nothing");
    let mut ids = Vec::new();
    for (ar, body) in [("1", "first"), ("2", "second")] {
        let (article, outcome): (Article, Outcome) = diesel::insert_into(articles::table)
            .values(&NewArticle::new(&[("en", &en), ("ar", ar)], body))
            .on_conflict_do(articles::title.key("en"), ConflictAction::Nothing)
            .insert_and_get_with_outcome(conn)
            .unwrap();
        ids.push((article.id, outcome));
    }
    assert_eq!(ids[1], (ids[0].0, Outcome::Unchanged));
    assert_eq!(ids[0].1, Outcome::Inserted);
    assert_eq!(count_articles_with_en(conn, &en), 1);
    let stored: Article = articles::table.find(ids[0].0).get_result(conn).unwrap();
    assert_eq!(stored.body, "first");
    assert_eq!(
        stored_title(conn, ids[0].0),
        map(&[("en", Some(&en)), ("ar", Some("1"))])
    );
}

#[test]
fn rows_missing_the_key_never_conflict() {
    let conn = &mut test_connection();
    let tag = unique_key("missing");
    let titles = [
        Some(hmap(&[("ar", Some("x"))])),
        Some(hmap(&[("en", None), ("ar", Some("x"))])),
        None,
    ];
    for title in &titles {
        for action in [ConflictAction::Update, ConflictAction::Nothing] {
            for _ in 0..2 {
                let (article, outcome): (Article, Outcome) = diesel::insert_into(articles::table)
                    .values(&NewArticle {
                        title: title.clone(),
                        body: &tag,
                    })
                    .on_conflict_do(articles::title.key("en"), action)
                    .insert_and_get_with_outcome(conn)
                    .unwrap();
                assert_eq!(outcome, Outcome::Inserted, "{title:?} {action:?}");
                assert_eq!(article.title, title.clone().map(HstoreMap::into_inner));
            }
        }
    }
    let rows: i64 = articles::table
        .filter(articles::body.eq(&tag))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(rows, 12);
}
