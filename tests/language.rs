//! Error classification does not depend on the server's message language: the same errors on
//! sessions whose `lc_messages` is German and French.
//!
//! The locales must exist on the server's machine (`.ci/run` generates them with `localedef` and
//! sets `DIESEL_UPSERT_REQUIRE_LOCALES=1`, which turns a missing locale into a failure); without
//! them, or on a server built without translations, the tests say so and skip.

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, unique_key};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_upsert::prelude::*;
use diesel_upsert::retry::{is_transient, retry, RetryPolicy};
use diesel_upsert::{index_expression, Error, HstoreExpressionMethods};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Each locale with a word its "division by zero" message holds.
const LANGUAGES: [(&str, &str); 2] = [("de_DE.UTF-8", "Division"), ("fr_FR.UTF-8", "zéro")];

/// A connection whose messages are in `locale`, or `None` (after saying why) when the server
/// cannot speak it.
fn speaking(locale: &str, word: &str) -> Option<PgConnection> {
    let mut conn = connection();
    if let Err(e) = conn.batch_execute(&format!("SET lc_messages TO '{locale}'")) {
        assert!(
            std::env::var_os("DIESEL_UPSERT_REQUIRE_LOCALES").is_none(),
            "the server cannot use the locale {locale}: {e}"
        );
        eprintln!("skipped: the server cannot use the locale {locale} ({e})");
        return None;
    }
    let message = diesel::sql_query("SELECT 1 / 0")
        .execute(&mut conn)
        .unwrap_err()
        .to_string();
    if message == "division by zero" || !message.contains(word) {
        eprintln!("skipped: the server has no {locale} messages (it said {message:?})");
        return None;
    }
    Some(conn)
}

#[test]
fn a_target_without_a_unique_index_is_recognized_in_every_language() {
    for (locale, word) in LANGUAGES {
        let Some(mut conn) = speaking(locale, word) else {
            continue;
        };
        // No transaction around the calls: each fails on its own (and writes nothing).
        let conn = &mut conn;
        let p = unique_key("lang-index");
        let single = diesel::insert_into(products::table)
            .values(&NewProduct::new(&p, "no index on name"))
            .on_conflict_do(products::name, ConflictAction::Update)
            .insert::<i64, _>(conn);
        match single {
            Err(Error::NoMatchingUniqueIndex { hint, .. }) => {
                assert_eq!(hint, r#"CREATE UNIQUE INDEX ON "products" ("name")"#)
            }
            other => panic!("{locale}: expected NoMatchingUniqueIndex, got {other:?}"),
        }
        let (a, b) = (format!("{p}-a"), format!("{p}-b"));
        let rows = vec![NewProduct::new(&a, "a"), NewProduct::new(&b, "b")];
        let bulk = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::name, ConflictAction::Nothing)
            .bulk_insert::<i64, _>(conn);
        assert!(
            matches!(bulk, Err(Error::NoMatchingUniqueIndex { .. })),
            "{locale}: {bulk:?}"
        );
    }
}

#[test]
fn an_hstore_key_target_without_a_unique_index_is_recognized_in_every_language() {
    for (locale, word) in LANGUAGES {
        let Some(mut conn) = speaking(locale, word) else {
            continue;
        };
        let conn = &mut conn;
        let p = unique_key("lang-hstore");
        // No unique index on the key `fr`.
        let single = diesel::insert_into(articles::table)
            .values(&NewArticle::new(&[("fr", &p)], "no index on fr"))
            .on_conflict_do(articles::title.key("fr"), ConflictAction::Update)
            .insert::<i64, _>(conn);
        match single {
            Err(Error::NoMatchingUniqueIndex { hint, .. }) => {
                assert_eq!(
                    hint,
                    r#"CREATE UNIQUE INDEX ON "articles" (("title" -> 'fr'))"#
                )
            }
            other => panic!("{locale}: expected NoMatchingUniqueIndex, got {other:?}"),
        }
        let rows = vec![
            NewArticle::new(&[("fr", &format!("{p}-a"))], "a"),
            NewArticle::new(&[("fr", &format!("{p}-b"))], "b"),
        ];
        let bulk = diesel::insert_into(articles::table)
            .values(&rows)
            .on_conflict_do(articles::title.key("fr"), ConflictAction::Nothing)
            .bulk_insert::<i64, _>(conn);
        assert!(
            matches!(bulk, Err(Error::NoMatchingUniqueIndex { .. })),
            "{locale}: {bulk:?}"
        );
        // The keys `en` and `(en, ar)` have their indexes: another error of the statement (a
        // division by zero in the update) stays what it is.
        let new = NewArticle::new(&[("en", &p), ("ar", &p)], "first");
        diesel::insert_into(articles::table)
            .values(&new)
            .on_conflict_do(articles::title.key("en"), ConflictAction::Nothing)
            .insert::<i64, _>(conn)
            .unwrap();
        macro_rules! division_by_zero_on_conflict {
            ($target:expr) => {
                match diesel::insert_into(articles::table)
                    .values(&new)
                    .on_conflict_do($target, ConflictAction::Update)
                    .update_values(
                        articles::body
                            .eq(diesel::dsl::sql::<diesel::sql_types::Text>("(1 / 0)::text")),
                    )
                    .insert::<i64, _>(conn)
                {
                    Err(Error::Query(e)) => {
                        assert!(e.to_string().contains(word), "{locale}: {e}")
                    }
                    other => panic!("{locale}: expected the division by zero, got {other:?}"),
                }
            };
        }
        division_by_zero_on_conflict!(articles::title.key("en"));
        division_by_zero_on_conflict!((articles::title.key("en"), articles::title.key("ar")));
    }
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[test]
fn an_index_expression_target_without_a_unique_index_is_recognized_in_every_language() {
    for (locale, word) in LANGUAGES {
        let Some(mut conn) = speaking(locale, word) else {
            continue;
        };
        let conn = &mut conn;
        let p = unique_key("lang-expr");
        // `products` has no expression index at all: no index can match.
        let single = diesel::insert_into(products::table)
            .values(&NewProduct::new(&p, "no index on lower(sku)"))
            .on_conflict_do(
                index_expression(lower(products::sku)),
                ConflictAction::Update,
            )
            .insert::<i64, _>(conn);
        match single {
            Err(Error::NoMatchingUniqueIndex { hint, .. }) => {
                assert_eq!(
                    hint,
                    r#"CREATE UNIQUE INDEX ON "products" ((lower("sku")))"#
                )
            }
            other => panic!("{locale}: expected NoMatchingUniqueIndex, got {other:?}"),
        }
        // `accounts` has unique indexes of one expression: the crate cannot tell from the
        // catalog whether `lower(name)` is one of them (PostgreSQL prints expressions its own
        // way), so the server's own error is returned, in its language (docs/guide.md says so).
        let email = format!("{p}@x");
        let rows = vec![NewAccount::new(&p, &email, "a")];
        let bulk = diesel::insert_into(accounts::table)
            .values(&rows)
            .on_conflict_do(
                index_expression(lower(accounts::name)),
                ConflictAction::Nothing,
            )
            .bulk_insert::<i64, _>(conn);
        assert!(matches!(bulk, Err(Error::Query(_))), "{locale}: {bulk:?}");
        let stored: i64 = accounts::table
            .filter(accounts::tenant.eq(&p))
            .count()
            .get_result(conn)
            .unwrap();
        assert_eq!(stored, 0);
    }
}

/// Two transactions locking two rows in opposite orders: one of them is chosen as the deadlock
/// victim. Returns the victim's error.
fn deadlock(locale: &str, word: &str) -> Option<DieselError> {
    let setup = &mut connection();
    let p = unique_key("lang-deadlock");
    let keys = [format!("{p}-1"), format!("{p}-2")];
    for key in &keys {
        diesel::insert_into(products::table)
            .values(&NewProduct::new(key, "x"))
            .execute(setup)
            .unwrap();
    }
    let mut first = speaking(locale, word)?;
    let mut second = speaking(locale, word)?;
    let barrier = Arc::new(Barrier::new(2));
    let run = |conn: &mut PgConnection, mine: String, theirs: String, barrier: Arc<Barrier>| {
        conn.batch_execute("SET deadlock_timeout = '20ms'").unwrap();
        conn.transaction(|conn| {
            diesel::update(products::table.filter(products::sku.eq(&mine)))
                .set(products::qty.eq(products::qty + 1))
                .execute(conn)?;
            barrier.wait();
            diesel::update(products::table.filter(products::sku.eq(&theirs)))
                .set(products::qty.eq(products::qty + 1))
                .execute(conn)
        })
    };
    let (k1, k2) = (keys[0].clone(), keys[1].clone());
    let b = barrier.clone();
    let other = thread::spawn(move || run(&mut second, k2, k1, b));
    let mine = run(&mut first, keys[0].clone(), keys[1].clone(), barrier);
    let theirs = other.join().unwrap();
    match (mine, theirs) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Some(e),
        other => panic!("{locale}: expected one deadlock victim, got {other:?}"),
    }
}

#[test]
fn a_deadlock_is_transient_in_every_language() {
    for (locale, word) in LANGUAGES {
        let Some(error) = deadlock(locale, word) else {
            continue;
        };
        let DieselError::DatabaseError(_, info) = &error else {
            panic!("{locale}: {error:?}");
        };
        assert!(
            !info.message().starts_with("deadlock detected"),
            "{locale}: the message is not English: {}",
            info.message()
        );
        assert!(
            is_transient(&error),
            "{locale}: {error:?} / {:?}",
            info.details()
        );
        assert!(Error::Query(error).is_transient());
    }
}

#[test]
fn retry_runs_a_transaction_again_after_a_localized_serialization_failure() {
    for (locale, word) in LANGUAGES {
        let Some(mut conn) = speaking(locale, word) else {
            continue;
        };
        let Some(mut other) = speaking(locale, word) else {
            continue;
        };
        let sku = unique_key("lang-serial");
        diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "x"))
            .execute(&mut conn)
            .unwrap();
        let mut tries = 0;
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let result = retry(policy, || {
            tries += 1;
            conn.build_transaction().repeatable_read().run(|conn| {
                let _: i32 = products::table
                    .filter(products::sku.eq(&sku))
                    .select(products::qty)
                    .get_result(conn)?;
                if tries == 1 {
                    // Another session updates the row after this transaction's snapshot.
                    diesel::update(products::table.filter(products::sku.eq(&sku)))
                        .set(products::qty.eq(products::qty + 10))
                        .execute(&mut other)?;
                }
                diesel::update(products::table.filter(products::sku.eq(&sku)))
                    .set(products::qty.eq(products::qty + 1))
                    .execute(conn)
            })
        });
        assert_eq!(result.unwrap(), 1, "{locale}");
        assert_eq!(
            tries, 2,
            "{locale}: one serialization failure, then success"
        );
        let qty: i32 = products::table
            .filter(products::sku.eq(&sku))
            .select(products::qty)
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(qty, 11, "{locale}");
    }
}
