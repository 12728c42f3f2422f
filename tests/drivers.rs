//! The tests that run on both drivers: each body below is compiled twice, into `sync_driver`
//! (Diesel's `PgConnection` and `diesel_upsert::prelude`) and `async_driver` (diesel-async's
//! `AsyncPgConnection` and `diesel_upsert::asynchronous::prelude`, with the `async` feature).
//! A body waits for each call with `.wait()`: on the synchronous driver that is the call's
//! result itself, on the asynchronous one the future run to completion on the harness's
//! runtime. Each test runs inside a test transaction and reads the state back through the same
//! connection.

use crate::bulk::{bulk_items, bulk_items_table, items, Item};
use crate::harness::*;
use diesel::upsert::excluded;
use diesel::{BoolExpressionMethods, ExpressionMethods, IntoSql, QueryDsl, TextExpressionMethods};
use diesel_upsert::{index_expression, on_constraint, BulkSummary, DuplicateKeys, Error};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

macro_rules! on_both_drivers {
    ($($(#[$meta:meta])* fn $name:ident($conn:ident) $body:block)*) => {
        mod sync_driver {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use diesel::connection::SimpleConnection;
            #[allow(unused_imports)]
            use diesel::RunQueryDsl;
            #[allow(unused_imports)]
            use diesel_upsert::prelude::*;

            /// On this driver a call's result is there when it returns.
            trait Wait: Sized {
                fn wait(self) -> Self {
                    self
                }
            }
            impl<T, E> Wait for Result<T, E> {}

            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $conn = &mut test_connection();
                    let mut body = || -> diesel_upsert::Result<()> { $body };
                    body().unwrap();
                }
            )*
        }

        #[cfg(feature = "async")]
        mod async_driver {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
            #[allow(unused_imports)]
            use diesel_upsert::asynchronous::prelude::*;

            /// On this driver a call is a future, run to completion here.
            trait Wait: std::future::Future + Sized {
                fn wait(self) -> Self::Output {
                    block_on(self)
                }
            }
            impl<F: std::future::Future> Wait for F {}

            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $conn = &mut block_on(async_test_connection());
                    let mut body = || -> diesel_upsert::Result<()> { $body };
                    body().unwrap();
                }
            )*
        }
    };
}

on_both_drivers! {
    /// `insert` returns the key for every action, `insert_and_get` the row, and the outcomes
    /// tell inserted, updated and unchanged rows apart.
    fn single_row_terminals_return_the_row_for_every_action(conn) {
        let sku = unique_key("drv-single");
        let id: i64 = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup"))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .insert(conn)
            .wait()?;
        let kept: i64 = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Mug"))
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .insert(conn)
            .wait()?;
        assert_eq!(kept, id);
        let row: Product = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Teapot").qty(3))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .insert_and_get(conn)
            .wait()?;
        assert_eq!((row.id, row.name.as_str(), row.qty), (id, "Teapot", 3));
        let upsert = |name| {
            diesel::insert_into(products::table)
                .values(NewProduct::new(&sku, name))
                .on_conflict_do(products::sku, ConflictAction::Update)
                .skip_unchanged()
        };
        let (_, updated): (Product, Outcome) = upsert("Tray").insert_and_get_with_outcome(conn).wait()?;
        let (again, unchanged): (Product, Outcome) = upsert("Tray").insert_and_get_with_outcome(conn).wait()?;
        let other = unique_key("drv-single");
        let (_, inserted): (Product, Outcome) = diesel::insert_into(products::table)
            .values(NewProduct::new(&other, "Jug"))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!(
            (updated, unchanged, inserted, again.id),
            (Outcome::Updated, Outcome::Unchanged, Outcome::Inserted, id)
        );
        let stored: Vec<(String, String)> = products::table
            .filter(products::sku.eq(&sku).or(products::sku.eq(&other)))
            .order(products::id)
            .select((products::sku, products::name))
            .load(conn)
            .wait()?;
        assert_eq!(stored, [(sku.clone(), "Tray".to_owned()), (other, "Jug".to_owned())]);
        Ok(())
    }

    /// `upsert`, `upsert_and_get` and `bulk_upsert`, the shorthands.
    fn the_shorthands_update_by_target(conn) {
        let sku = unique_key("drv-short");
        let id: i64 = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup"))
            .upsert(products::sku, conn)
            .wait()?;
        let row: Product = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Mug"))
            .upsert_and_get(products::sku, conn)
            .wait()?;
        let rows = vec![NewProduct::new(&sku, "Pot")];
        let bulk: Vec<Product> = diesel::insert_into(products::table)
            .values(&rows)
            .bulk_upsert(products::sku, conn)
            .wait()?;
        assert_eq!((row.id, row.name.as_str()), (id, "Mug"));
        assert_eq!((bulk[0].id, bulk[0].name.as_str()), (id, "Pot"));
        Ok(())
    }

    /// A false `update_condition` leaves the row alone and returns it as unchanged;
    /// `update_only` and `update_values` shape the `SET` list.
    fn update_options_shape_what_is_written(conn) {
        let sku = unique_key("drv-options");
        diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup").price_cents(500).qty(1))
            .execute(conn)
            .wait()?;
        let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup").price_cents(900))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_condition(excluded(products::price_cents).lt(products::price_cents))
            .insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!((row.price_cents, outcome), (500, Outcome::Unchanged));
        let row: Product = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Mug").qty(7))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_only(products::qty)
            .insert_and_get(conn)
            .wait()?;
        assert_eq!((row.name.as_str(), row.qty), ("Cup", 7));
        let row: Product = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Mug").qty(5))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_values(products::qty.eq(products::qty + excluded(products::qty)))
            .insert_and_get(conn)
            .wait()?;
        assert_eq!((row.name.as_str(), row.qty), ("Mug", 12));
        Ok(())
    }

    /// `update_except` leaves its columns as they were stored, alone and with the other
    /// options, single-row and bulk.
    fn update_except_keeps_its_columns(conn) {
        let p = unique_key("drv-except");
        let (a, b) = (format!("{p}-a"), format!("{p}-b"));
        let first = vec![
            NewProduct::new(&a, "Cup").description("first").price_cents(100),
            NewProduct::new(&b, "Pot").description("first").price_cents(200),
        ];
        diesel::insert_into(products::table).values(&first).execute(conn).wait()?;
        let row: Product = diesel::insert_into(products::table)
            .values(&NewProduct::new(&a, "Mug").description("second").qty(2).price_cents(150))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_except((products::description, products::price_cents))
            .insert_and_get(conn)
            .wait()?;
        assert_eq!(
            (row.name.as_str(), row.qty, row.description.as_deref(), row.price_cents),
            ("Mug", 2, Some("first"), 100)
        );
        // With update_only (what is left of its list) and update_values (which still assigns
        // an excepted column with an expression).
        let again = vec![
            NewProduct::new(&a, "Jug").description("third").qty(5).price_cents(7),
            NewProduct::new(&b, "Pan").description("third").qty(5).price_cents(7),
        ];
        let got: Vec<Product> = diesel::insert_into(products::table)
            .values(&again)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_only((products::name, products::qty, products::description))
            .update_except((products::name, products::price_cents))
            .update_values(products::price_cents.eq(products::price_cents + excluded(products::price_cents)))
            .bulk_insert_and_get(conn)
            .wait()?;
        let seen: Vec<(&str, i32, Option<&str>, i64)> = got
            .iter()
            .map(|r| (r.name.as_str(), r.qty, r.description.as_deref(), r.price_cents))
            .collect();
        assert_eq!(seen, [("Mug", 5, Some("third"), 107), ("Pot", 5, Some("third"), 207)]);
        // With skip_unchanged: only the columns still written are compared.
        let outcomes: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
            .values(&vec![NewProduct::new(&a, "Mug").description("other").qty(5)])
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_except((products::description, products::price_cents))
            .skip_unchanged()
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!(outcomes[0].1, Outcome::Unchanged);
        assert_eq!(outcomes[0].0.description.as_deref(), Some("third"));
        Ok(())
    }

    /// `touch` sets the timestamp on rows the statement writes, and only on those: a row
    /// `skip_unchanged` or a false condition leaves alone keeps its timestamp and its row
    /// version.
    fn touch_sets_the_timestamp_only_on_rows_really_written(conn) {
        use chrono::{DateTime, Utc};
        let long_ago: DateTime<Utc> = "2001-01-01T00:00:00Z".parse().unwrap();
        let p = unique_key("drv-touch");
        let (a, b, c) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-c"));
        for sku in [&a, &b] {
            diesel::insert_into(products::table)
                .values((products::sku.eq(sku), products::name.eq("same"), products::updated_at.eq(long_ago)))
                .execute(conn)
                .wait()?;
        }
        let version = |conn: &mut _, sku: &str| {
            products::table
                .filter(products::sku.eq(sku.to_owned()))
                .select(diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"))
                .get_result::<String>(conn)
                .wait()
        };
        let b_version = version(conn, &b)?;
        let rows = vec![
            NewProduct::new(&a, "changed"),
            NewProduct::new(&b, "same"),
            NewProduct::new(&c, "new"),
        ];
        let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .skip_unchanged()
            .touch(products::updated_at)
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        let now: DateTime<Utc> = diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
            .get_result(conn)
            .wait()?;
        let seen: Vec<(Outcome, bool)> = got.iter().map(|(r, o)| (*o, r.updated_at == long_ago)).collect();
        assert_eq!(seen, [(Outcome::Updated, false), (Outcome::Unchanged, true), (Outcome::Inserted, false)]);
        assert_eq!(got[0].0.updated_at, now, "touched in this transaction");
        assert_eq!(version(conn, &b)?, b_version, "no new row version");
        // A false condition: not written, not touched; the default SET list keeps its columns.
        let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
            .values(&NewProduct::new(&b, "other").qty(9))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_condition(products::qty.gt(100))
            .touch(products::updated_at)
            .insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!((row.name.as_str(), row.updated_at, outcome), ("same", long_ago, Outcome::Unchanged));
        Ok(())
    }

    /// Tuple targets, named constraints and partial unique indexes, single-row and bulk.
    fn every_target_kind_finds_its_row(conn) {
        let vendor = unique_key("drv-vendor");
        let row = NewVendorProduct { vendor: &vendor, sku: "s1", name: "v", qty: 1 };
        let first: VendorProduct = diesel::insert_into(vendor_products::table)
            .values(&row)
            .on_conflict_do((vendor_products::vendor, vendor_products::sku), ConflictAction::Nothing)
            .insert_and_get(conn)
            .wait()?;
        let rows = vec![row, NewVendorProduct { sku: "s2", ..row }];
        let bulk: Vec<VendorProduct> = diesel::insert_into(vendor_products::table)
            .values(&rows)
            .on_conflict_do((vendor_products::vendor, vendor_products::sku), ConflictAction::Update)
            .update_values(vendor_products::qty.eq(vendor_products::qty + excluded(vendor_products::qty)))
            .bulk_insert_and_get(conn)
            .wait()?;
        assert_eq!((bulk[0].id, bulk[0].qty, bulk[1].qty), (first.id, 2, 1));

        let email = unique_key("drv-email");
        let sub = NewSubscription { email: &email, plan: "free", seats: Some(1) };
        let (a, _): (Subscription, Outcome) = diesel::insert_into(subscriptions::table)
            .values(&sub)
            .on_conflict_do(on_constraint("subscriptions_email_unique"), ConflictAction::Update)
            .insert_and_get_with_outcome(conn)
            .wait()?;
        let kept: Vec<(Subscription, Outcome)> = diesel::insert_into(subscriptions::table)
            .values(&vec![NewSubscription { plan: "pro", ..sub }])
            .on_conflict_do(on_constraint("subscriptions_email_unique"), ConflictAction::Nothing)
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!(kept, [(a, Outcome::Unchanged)]);

        let org = unique_key("drv-org");
        let owner = NewMembership { user_id: 1, org: &org, role: "owner", deleted_at: None };
        let first: Membership = diesel::insert_into(memberships::table)
            .values(&owner)
            .on_conflict_do(memberships::org, ConflictAction::Update)
            .index_predicate(memberships::role.eq("owner"))
            .insert_and_get(conn)
            .wait()?;
        let handed: Vec<Membership> = diesel::insert_into(memberships::table)
            .values(&vec![NewMembership { user_id: 2, ..owner }])
            .on_conflict_do(memberships::org, ConflictAction::Update)
            .index_predicate(memberships::role.eq("owner"))
            .bulk_insert_and_get(conn)
            .wait()?;
        assert_eq!((handed[0].id, handed[0].user_id), (first.id, 2));
        Ok(())
    }

    /// hstore-key targets and hstore values (a type found by name, whose OID diesel-async
    /// looks up on the first use), single-row and bulk.
    fn hstore_key_targets_single_and_bulk(conn) {
        let en = unique_key("drv-en");
        let one = NewArticle::new(&[("en", &en), ("fr", "un")], "body 1");
        let first: Article = diesel::insert_into(articles::table)
            .values(&one)
            .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
            .insert_and_get(conn)
            .wait()?;
        let other = unique_key("drv-en");
        let rows = vec![
            NewArticle::new(&[("en", &en)], "body 2"),
            NewArticle::new(&[("en", &other)], "body 3"),
        ];
        let got: Vec<(Article, Outcome)> = diesel::insert_into(articles::table)
            .values(&rows)
            .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!((got[0].0.id, got[0].0.body.as_str(), got[0].1), (first.id, "body 2", Outcome::Updated));
        assert_eq!((got[1].0.body.as_str(), got[1].1), ("body 3", Outcome::Inserted));
        let title_en = |a: &Article| a.title.as_ref().and_then(|t| t.get("en").cloned().flatten());
        assert_eq!((title_en(&got[0].0), title_en(&got[1].0)), (Some(en), Some(other)));
        Ok(())
    }

    /// An index expression finds its row in every terminal: single-row, bulk with pairing,
    /// the kept rows of `DO NOTHING` and the counts of `bulk_execute`.
    fn index_expression_targets_on_every_terminal(conn) {
        let tenant = unique_key("drv-expr");
        let email = format!("{tenant}@Example.com");
        let first: Account = diesel::insert_into(accounts::table)
            .values(&NewAccount::new(&tenant, &email, "first"))
            .on_conflict_do(index_expression(lower(accounts::email)), ConflictAction::Update)
            .insert_and_get(conn)
            .wait()?;
        let (upper, other) = (email.to_uppercase(), format!("other.{tenant}@x"));
        let kept: i64 = diesel::insert_into(accounts::table)
            .values(&NewAccount::new(&tenant, &upper, "ignored"))
            .on_conflict_do(index_expression(lower(accounts::email)), ConflictAction::Nothing)
            .insert(conn)
            .wait()?;
        assert_eq!(kept, first.id);
        let rows = vec![
            NewAccount::new(&tenant, &other, "other"),
            NewAccount::new(&tenant, &upper, "second"),
        ];
        let got: Vec<(Account, Outcome)> = diesel::insert_into(accounts::table)
            .values(&rows)
            .on_conflict_do(index_expression(lower(accounts::email)), ConflictAction::Update)
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        assert_eq!((got[1].0.id, got[1].0.name.as_str(), got[1].1), (first.id, "second", Outcome::Updated));
        assert_eq!((got[0].0.name.as_str(), got[0].1), ("other", Outcome::Inserted));
        let kept: Vec<Account> = diesel::insert_into(accounts::table)
            .values(&rows)
            .on_conflict_do(index_expression(lower(accounts::email)), ConflictAction::Nothing)
            .bulk_insert_and_get(conn)
            .wait()?;
        assert_eq!(kept.iter().map(|a| a.id).collect::<Vec<_>>(), vec![got[0].0.id, first.id]);
        let summary = diesel::insert_into(accounts::table)
            .values(&rows)
            .on_conflict_do(index_expression(lower(accounts::email)), ConflictAction::Update)
            .skip_unchanged()
            .bulk_execute(conn)
            .wait()?;
        assert_eq!(summary, BulkSummary { inserted: 0, updated: 0, unchanged: 2 });
        let stored: Vec<(String, String)> = accounts::table
            .filter(accounts::tenant.eq(&tenant))
            .order(accounts::id)
            .select((accounts::email, accounts::name))
            .load(conn)
            .wait()?;
        assert_eq!(stored, vec![(upper, "second".to_owned()), (other, "other".to_owned())]);
        Ok(())
    }

    /// Enum values (a type found by name) travel in the bulk statement's arrays.
    fn enum_values_travel_in_bulk_arrays(conn) {
        let slug = unique_key("drv-task");
        let rows = vec![
            NewTask { slug: &slug, title: "a", status: Some(TaskStatus::Doing) },
            NewTask { slug: "drv-other-task", title: "b", status: Some(TaskStatus::Done) },
        ];
        let got: Vec<Task> = diesel::insert_into(tasks::table)
            .values(&rows)
            .on_conflict_do(tasks::slug, ConflictAction::Update)
            .bulk_insert_and_get(conn)
            .wait()?;
        let stored: Vec<TaskStatus> = tasks::table
            .filter(tasks::id.eq_any(got.iter().map(|t| t.id).collect::<Vec<_>>()))
            .order(tasks::slug)
            .select(tasks::status)
            .load(conn)
            .wait()?;
        assert_eq!(got.iter().map(|t| t.status).collect::<Vec<_>>(), [TaskStatus::Doing, TaskStatus::Done]);
        assert_eq!(stored, [TaskStatus::Done, TaskStatus::Doing]);
        Ok(())
    }

    /// Each input row gets its own row back, in input order, whatever order the statement
    /// wrote them in; `DO NOTHING` returns the rows it left in place.
    fn bulk_results_pair_with_their_inputs(conn) {
        let p = unique_key("drv-pair");
        let skus: Vec<String> = (0..6).map(|i| format!("{p}-{i}")).collect();
        let existing: Vec<_> = skus.iter().step_by(2).map(|s| NewProduct::new(s, "old")).collect();
        diesel::insert_into(products::table).values(&existing).execute(conn).wait()?;
        let rows: Vec<_> = skus.iter().rev().map(|s| NewProduct::new(s, "new")).collect();
        let got: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        let seen: Vec<(&str, Outcome)> = got.iter().map(|(r, o)| (r.sku.as_str(), *o)).collect();
        let expected: Vec<(&str, Outcome)> = skus
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| (s.as_str(), if i % 2 == 0 { Outcome::Updated } else { Outcome::Inserted }))
            .collect();
        assert_eq!(seen, expected);
        assert!(got.iter().all(|(r, _)| r.name == "new"));

        let again: Vec<_> = skus.iter().map(|s| NewProduct::new(s, "ignored")).collect();
        let kept: Vec<Product> = diesel::insert_into(products::table)
            .values(&again)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .bulk_insert_and_get(conn)
            .wait()?;
        let ids: Vec<i64> = diesel::insert_into(products::table)
            .values(&again)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .bulk_insert(conn)
            .wait()?;
        let by_sku = |sku: &str| got.iter().find(|(r, _)| r.sku == sku).unwrap().0.id;
        assert_eq!(kept.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        assert_eq!(ids, skus.iter().map(|s| by_sku(s)).collect::<Vec<_>>());
        assert!(kept.iter().all(|r| r.name == "new"));
        Ok(())
    }

    /// `bulk_execute` counts inserted, updated and unchanged rows and returns nothing else.
    fn bulk_execute_counts_what_it_did(conn) {
        let p = unique_key("drv-count");
        let a = format!("{p}-a");
        let b = format!("{p}-b");
        let first = vec![NewProduct::new(&a, "Cup")];
        diesel::insert_into(products::table).values(&first).execute(conn).wait()?;
        let rows = vec![NewProduct::new(&a, "Cup"), NewProduct::new(&b, "Pot")];
        let nothing = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
            .bulk_execute(conn)
            .wait()?;
        assert_eq!(nothing, BulkSummary { inserted: 1, updated: 0, unchanged: 1 });
        let update = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .skip_unchanged()
            .bulk_execute(conn)
            .wait()?;
        assert_eq!(update, BulkSummary { inserted: 0, updated: 0, unchanged: 2 });
        Ok(())
    }

    /// Rows sharing a key are an error for `Update` (nothing is written); `KeepLast` gives
    /// every input the row its key ended as.
    fn duplicate_keys_are_refused_or_resolved_by_policy(conn) {
        let sku = unique_key("drv-dup");
        let rows = vec![NewProduct::new(&sku, "first"), NewProduct::new(&sku, "last")];
        let error = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .bulk_insert::<i64, _>(conn)
            .wait()
            .unwrap_err();
        assert!(matches!(error, Error::DuplicateConflictKey { .. }), "{error}");
        let stored: i64 = products::table.filter(products::sku.eq(&sku)).count().get_result(conn).wait()?;
        assert_eq!(stored, 0);
        let got: Vec<Product> = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .on_duplicate_keys(DuplicateKeys::KeepLast)
            .bulk_insert_and_get(conn)
            .wait()?;
        assert_eq!((got[0].name.as_str(), got[1].id), ("last", got[0].id));
        Ok(())
    }

    /// A call the crate rejects is a typed error before anything is sent: it writes nothing
    /// and leaves the connection usable.
    fn bad_input_is_a_typed_error_and_leaves_the_connection_usable(conn) {
        let sku = unique_key("drv-bad");
        let error = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup"))
            .on_conflict_do(on_constraint("no_such_constraint"), ConflictAction::Update)
            .insert::<i64, _>(conn)
            .wait()
            .unwrap_err();
        assert!(matches!(error, Error::InvalidTarget { .. }), "{error}");
        let rows = vec![NewProduct::new(&sku, "Cup"), NewProduct::new(&sku, "Pot").description("x")];
        let error = diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict_do(products::sku, ConflictAction::Update)
            .bulk_execute(conn)
            .wait()
            .unwrap_err();
        assert!(matches!(error, Error::InconsistentColumns { .. }), "{error}");
        let stored: i64 = products::table.filter(products::sku.eq(&sku)).count().get_result(conn).wait()?;
        assert_eq!(stored, 0);
        // PostgreSQL itself rejects a target no unique index matches (42P10): last, since the
        // test transaction is aborted afterwards, as after any failed statement.
        let error = diesel::insert_into(products::table)
            .values(&NewProduct::new(&sku, "Cup"))
            .on_conflict_do(products::name, ConflictAction::Update)
            .insert::<i64, _>(conn)
            .wait()
            .unwrap_err();
        assert!(
            matches!(&error, Error::NoMatchingUniqueIndex { hint, .. } if hint == "CREATE UNIQUE INDEX ON \"products\" (\"name\")"),
            "{error}"
        );
        Ok(())
    }

    /// A row PostgreSQL refuses (a CHECK constraint) is named by its input index and key,
    /// whichever statement of the call sent it, and nothing of the call is written; the
    /// connection stays usable, also inside the caller's transaction (the test transaction).
    fn a_refused_row_is_named_by_its_input_index_and_key(conn) {
        bulk_items_table(&mut connection());
        // 45 000 rows sent in reverse key order: statements of 2 000, 20 000, 20 000 and 3 000
        // rows in key order. Input row 40 000 is in the first statement, 3 000 in the third.
        for bad in [40_000_usize, 3_000] {
            let p = unique_key("drv-refused");
            let mut rows = items(&p, 45_000);
            rows.reverse();
            rows[bad].v = -1;
            let key = rows[bad].k.clone().unwrap();
            let error = diesel::insert_into(bulk_items::table)
                .values(&rows)
                .on_conflict_do(bulk_items::k, ConflictAction::Update)
                .bulk_insert::<i64, _>(conn)
                .wait()
                .unwrap_err();
            match &error {
                Error::Row { index, key: shown, source } => {
                    assert_eq!((*index, shown.as_str()), (bad, format!("\"k\" = '{key}'::text").as_str()));
                    assert!(matches!(
                        source,
                        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::CheckViolation, _)
                    ), "{source:?}");
                }
                other => panic!("expected Error::Row, got {other:?}"),
            }
            assert!(error.to_string().contains("bulk_items_v_check"), "{error}");
            let stored: i64 = bulk_items::table
                .filter(bulk_items::k.like(format!("{p}-%")))
                .count()
                .get_result(conn)
                .wait()?;
            assert_eq!(stored, 0);
        }
        // bulk_execute narrows the same way.
        let p = unique_key("drv-refused-count");
        let mut rows = items(&p, 30);
        rows[17].v = -5;
        let error = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_execute(conn)
            .wait()
            .unwrap_err();
        assert!(matches!(error, Error::Row { index: 17, .. }), "{error:?}");
        Ok(())
    }

    /// `bulk_update`: per input row, in input order, updated, unchanged (`skip_unchanged`) or
    /// missing (never inserted); keyed by a unique column or by the primary key.
    fn bulk_update_reports_each_row_and_inserts_nothing(conn) {
        use diesel_upsert::{bulk_update, UpdateOutcome};
        let p = unique_key("drv-bu");
        let skus: Vec<String> = (0..6).map(|i| format!("{p}-{i}")).collect();
        let stored: Vec<_> = skus[..4].iter().map(|s| NewProduct::new(s, "old").qty(1)).collect();
        diesel::insert_into(products::table).values(&stored).execute(conn).wait()?;
        // Input in another order than the keys; -1 and -3 are unchanged, -4 and -5 missing.
        let order = [5, 1, 2, 4, 0, 3];
        let changes: Vec<_> = order
            .iter()
            .map(|&i| {
                let qty = if i % 2 == 1 { 1 } else { 10 + i as i32 };
                (products::sku.eq(skus[i].clone()), products::qty.eq(qty))
            })
            .collect();
        let outcomes = bulk_update(products::table)
            .set(&changes)
            .by(products::sku)
            .skip_unchanged()
            .apply(conn)
            .wait()?;
        use UpdateOutcome::*;
        assert_eq!(outcomes, [Missing, Unchanged, Updated, Missing, Updated, Unchanged]);
        let now: Vec<(String, i32)> = products::table
            .filter(products::sku.like(format!("{p}-%")))
            .order(products::sku)
            .select((products::sku, products::qty))
            .load(conn)
            .wait()?;
        let expected: Vec<(String, i32)> =
            [(0, 10), (1, 1), (2, 12), (3, 1)].iter().map(|&(i, q)| (skus[i].clone(), q)).collect();
        assert_eq!(now, expected, "missing keys are not inserted");
        // By the primary key (the default), without skip_unchanged: identical rows are written.
        let ids: Vec<i64> = products::table
            .filter(products::sku.like(format!("{p}-%")))
            .order(products::sku)
            .select(products::id)
            .load(conn)
            .wait()?;
        let by_id = vec![
            (products::id.eq(ids[1]), products::name.eq("renamed")),
            (products::id.eq(-1), products::name.eq("nobody")),
        ];
        let outcomes = bulk_update(products::table).set(&by_id).apply(conn).wait()?;
        assert_eq!(outcomes, [Updated, Missing]);
        let name: String = products::table.find(ids[1]).select(products::name).get_result(conn).wait()?;
        assert_eq!(name, "renamed");
        Ok(())
    }

    /// `bulk_update` rejects, before writing, rows sharing a key, rows with nothing to set and
    /// a key no unique index backs; a refused row is named; large batches are chunked.
    fn bulk_update_checks_its_input_and_chunks(conn) {
        use diesel_upsert::{bulk_update, UpdateOutcome};
        bulk_items_table(&mut connection());
        let p = unique_key("drv-bu-chunk");
        let rows = items(&p, 45_000);
        diesel::insert_into(bulk_items::table)
            .values(&rows[..44_000])
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_execute(conn)
            .wait()?;
        let changes: Vec<_> = rows
            .iter()
            .rev()
            .map(|r| (bulk_items::k.eq(r.k.clone()), bulk_items::v.eq(r.v + 1)))
            .collect();
        let outcomes = bulk_update(bulk_items::table)
            .set(&changes)
            .by(bulk_items::k)
            .apply(conn)
            .wait()?;
        let updated = outcomes.iter().filter(|o| **o == UpdateOutcome::Updated).count();
        assert_eq!((updated, outcomes.len()), (44_000, 45_000));
        assert!(outcomes[..1_000].iter().all(|o| *o == UpdateOutcome::Missing));
        let sum: Option<i64> = bulk_items::table
            .filter(bulk_items::k.like(format!("{p}-%")))
            .select(diesel::dsl::sum(bulk_items::v))
            .get_result(conn)
            .wait()?;
        assert_eq!(sum, Some((1..=44_000_i64).sum()));

        let dup = vec![
            (bulk_items::k.eq(rows[0].k.clone()), bulk_items::v.eq(7)),
            (bulk_items::k.eq(rows[0].k.clone()), bulk_items::v.eq(8)),
        ];
        let error = bulk_update(bulk_items::table).set(&dup).by(bulk_items::k).apply(conn).wait().unwrap_err();
        assert!(matches!(error, Error::DuplicateConflictKey { .. }), "{error:?}");
        let keys_only = vec![(bulk_items::k.eq(rows[0].k.clone()),)];
        let error = bulk_update(bulk_items::table).set(&keys_only).by(bulk_items::k).apply(conn).wait().unwrap_err();
        assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
        let by_value = vec![(bulk_items::v.eq(1), bulk_items::k.eq(Some("x")))];
        let error = bulk_update(bulk_items::table).set(&by_value).by(bulk_items::v).apply(conn).wait().unwrap_err();
        assert!(matches!(error, Error::NoMatchingUniqueIndex { .. }), "{error:?}");

        let mut bad = changes.clone();
        bad[40_000] = (bulk_items::k.eq(rows[4_999].k.clone()), bulk_items::v.eq(-1));
        let error = bulk_update(bulk_items::table).set(&bad).by(bulk_items::k).apply(conn).wait().unwrap_err();
        assert!(matches!(error, Error::Row { index: 40_000, .. }), "{error:?}");
        let after: Option<i64> = bulk_items::table
            .filter(bulk_items::k.like(format!("{p}-%")))
            .select(diesel::dsl::sum(bulk_items::v))
            .get_result(conn)
            .wait()?;
        assert_eq!(after, sum, "nothing of the refused call is written");
        Ok(())
    }

    /// The statement caps and `VALUES` rows give the results of the default statements.
    fn statement_caps_and_values_rows_give_the_same_results(conn) {
        bulk_items_table(&mut connection());
        let p = unique_key("drv-caps");
        let rows = items(&p, 5);
        diesel::insert_into(bulk_items::table).values(&rows[..2]).execute(conn).wait()?;
        let got: Vec<(Item, Outcome)> = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Nothing)
            .max_rows_per_statement(2)
            .max_bytes_per_statement(1 << 10)
            .rows_as_values()
            .bulk_insert_and_get_with_outcome(conn)
            .wait()?;
        let outcomes: Vec<(i32, Outcome)> = got.iter().map(|(i, o)| (i.v, *o)).collect();
        assert_eq!(
            outcomes,
            vec![
                (0, Outcome::Unchanged),
                (1, Outcome::Unchanged),
                (2, Outcome::Inserted),
                (3, Outcome::Inserted),
                (4, Outcome::Inserted)
            ]
        );
        let stored: i64 = bulk_items::table
            .filter(bulk_items::k.like(format!("{p}-%")))
            .count()
            .get_result(conn)
            .wait()?;
        assert_eq!(stored, 5);
        Ok(())
    }

    /// 45 000 rows go in three statements (2 000, then up to 20 000 each) of one transaction;
    /// a failing row in the last one leaves none of them.
    fn large_batches_are_chunked_all_or_nothing(conn) {
        bulk_items_table(&mut connection());
        let p = unique_key("drv-chunk");
        let rows = items(&p, 45_000);
        let summary = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_execute(conn)
            .wait()?;
        assert_eq!(summary, BulkSummary { inserted: 45_000, updated: 0, unchanged: 0 });
        let count = |conn: &mut _, prefix: &str| {
            bulk_items::table
                .filter(bulk_items::k.like(format!("{prefix}-%")))
                .count()
                .get_result::<i64>(conn)
                .wait()
        };
        assert_eq!(count(conn, &p)?, 45_000);
        let ids: Vec<i64> = diesel::insert_into(bulk_items::table)
            .values(&rows)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_insert(conn)
            .wait()?;
        let last: i64 = bulk_items::table
            .filter(bulk_items::k.eq(format!("{p}-044999")))
            .select(bulk_items::id)
            .get_result(conn)
            .wait()?;
        assert_eq!(ids[44_999], last);

        let q = unique_key("drv-fail");
        let mut bad = items(&q, 45_000);
        bad.last_mut().unwrap().v = -1; // violates the CHECK constraint; sorted last by key
        let error = diesel::insert_into(bulk_items::table)
            .values(&bad)
            .on_conflict_do(bulk_items::k, ConflictAction::Update)
            .bulk_insert::<i64, _>(conn)
            .wait()
            .unwrap_err();
        assert!(error.to_string().contains("bulk_items_v_check"), "{error}");
        assert_eq!(count(conn, &q)?, 0);
        Ok(())
    }
}
