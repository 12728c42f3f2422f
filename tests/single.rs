//! Single-row conflict handling: generated SQL, UPDATE/NOTHING semantics, targets, errors.

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, pool, test_connection, unique_key};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::debug_query;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use diesel_upsert::{on_constraint, Error};
use std::sync::{Arc, Mutex};

fn sql_of<Q: diesel::query_builder::QueryFragment<Pg>>(query: &Q) -> String {
    debug_query::<Pg, _>(query).to_string()
}

/// Records the SQL of every statement a connection sends.
#[derive(Clone, Default)]
pub(crate) struct SentSql(Arc<Mutex<Vec<String>>>);

impl Instrumentation for SentSql {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

impl SentSql {
    pub(crate) fn attach(conn: &mut PgConnection) -> Self {
        let sent = SentSql::default();
        conn.set_instrumentation(sent.clone());
        sent
    }
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

// ---------------------------------------------------------------- generated SQL

#[test]
fn update_sets_supplied_columns_except_the_key_and_leaves_out_none_fields() {
    let row = NewProduct {
        qty: 3,
        ..NewProduct::new("A-1", "Anvil")
    };
    let query = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Update);
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($1, $2, $3, $4) ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" -- binds: ["A-1", "Anvil", 3, 0]"#
    );
}

#[test]
fn nothing_writes_do_nothing() {
    let row = NewProduct::new("A-1", "Anvil");
    let query = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Nothing);
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($1, $2, $3, $4) ON CONFLICT ("sku") DO NOTHING -- binds: ["A-1", "Anvil", 0, 0]"#
    );
}

#[test]
fn a_tuple_target_lists_every_column_and_none_of_them_is_updated() {
    let query = diesel::insert_into(vendor_products::table)
        .values(&NewVendorProduct {
            vendor: "acme",
            sku: "X",
            name: "Rope",
            qty: 1,
        })
        .on_conflict_do(
            (vendor_products::vendor, vendor_products::sku),
            ConflictAction::Update,
        );
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "vendor_products" ("vendor", "sku", "name", "qty") VALUES ($1, $2, $3, $4) ON CONFLICT ("vendor", "sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty" -- binds: ["acme", "X", "Rope", 1]"#
    );
}

#[test]
fn a_named_constraint_is_written_as_on_constraint() {
    let query = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "a@example.com",
            plan: "pro",
            seats: Some(3),
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        );
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "subscriptions" ("email", "plan", "seats") VALUES ($1, $2, $3) ON CONFLICT ON CONSTRAINT "subscriptions_email_unique" DO UPDATE SET "email" = excluded."email", "plan" = excluded."plan", "seats" = excluded."seats" -- binds: ["a@example.com", "pro", 3]"#
    );
}

/// The terminals know a named constraint's columns from the catalog and leave them out of
/// `SET`, in single-row and bulk statements alike (Citus forbids assigning a distribution
/// column, which every constraint there includes); with nothing else to set, `DO NOTHING`.
#[test]
fn the_terminals_leave_a_named_constraints_columns_out_of_the_set_list() {
    let conn = &mut test_connection();
    let email = format!(
        "{}@example.com",
        crate::harness::unique_key("constraint-set")
    );
    let sub = |plan| NewSubscription {
        email: &email,
        plan,
        seats: Some(3),
    };
    let sent = SentSql::attach(conn);
    let first: Subscription = diesel::insert_into(subscriptions::table)
        .values(&sub("pro"))
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .insert_and_get(conn)
        .unwrap();
    let rows = vec![sub("team")];
    let bulk: Vec<(Subscription, Outcome)> = diesel::insert_into(subscriptions::table)
        .values(&rows)
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (bulk[0].0.id, bulk[0].0.plan.as_str(), bulk[0].1),
        (first.id, "team", Outcome::Updated)
    );
    // Only the constraint's column to set: nothing to set.
    let (kept, outcome): (Subscription, Outcome) = diesel::insert_into(subscriptions::table)
        .values(&sub("ignored"))
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .update_only(subscriptions::email)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (kept.id, kept.plan.as_str(), outcome),
        (first.id, "team", Outcome::Unchanged)
    );
    let upserts: Vec<String> = sent
        .take()
        .into_iter()
        .filter(|s| s.contains("ON CONFLICT"))
        .collect();
    assert_eq!(upserts.len(), 3, "{upserts:#?}");
    assert!(
        upserts[0].contains(
            r#"DO UPDATE SET "plan" = excluded."plan", "seats" = excluded."seats" RETURNING"#
        ),
        "{}",
        upserts[0]
    );
    assert!(
        upserts[1].contains(
            r#"DO UPDATE SET "plan" = excluded."plan", "seats" = excluded."seats" RETURNING"#
        ),
        "{}",
        upserts[1]
    );
    assert!(upserts[2].contains("DO NOTHING"), "{}", upserts[2]);
}

#[test]
fn the_primary_key_is_never_in_the_set_list() {
    let query = diesel::insert_into(countries::table)
        .values(&NewCountry {
            code: "NO",
            name: "Norway",
            population: Some(5_500_000),
        })
        .on_conflict_do(countries::name, ConflictAction::Update);
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "countries" ("code", "name", "population") VALUES ($1, $2, $3) ON CONFLICT ("name") DO UPDATE SET "population" = excluded."population" -- binds: ["NO", "Norway", 5500000]"#
    );
}

#[test]
fn an_index_predicate_is_written_with_literal_values() {
    let query = diesel::insert_into(memberships::table)
        .values(&NewMembership {
            user_id: 7,
            org: "it's",
            role: "owner",
            deleted_at: None,
        })
        .on_conflict_do(memberships::org, ConflictAction::Update)
        .index_predicate(memberships::role.eq("owner"));
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "memberships" ("user_id", "org", "role") VALUES ($1, $2, $3) ON CONFLICT ("org") WHERE ("memberships"."role" = 'owner'::text) DO UPDATE SET "user_id" = excluded."user_id", "role" = excluded."role" -- binds: [7, "it's", "owner"]"#
    );
}

#[test]
fn update_only_update_values_condition_and_skip_unchanged_compose() {
    let row = NewProduct {
        qty: 2,
        ..NewProduct::new("A-1", "Anvil")
    };
    let query = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_only((products::name, products::qty))
        .update_values(products::qty.eq(products::qty + excluded(products::qty)))
        .update_condition(products::price_cents.ge(0_i64))
        .skip_unchanged();
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($1, $2, $3, $4) ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = ("products"."qty" + excluded."qty") WHERE (("products"."price_cents" >= $5)) AND (ROW("products"."name"))::record *<> (ROW(excluded."name"))::record -- binds: ["A-1", "Anvil", 2, 0, 0]"#
    );
}

#[test]
fn an_empty_set_list_becomes_do_nothing() {
    let query = diesel::insert_into(products::table)
        .values((products::sku.eq("A-1"), products::name.eq("Anvil")))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_only(products::sku);
    assert_eq!(
        sql_of(&query),
        r#"INSERT INTO "products" ("sku", "name") VALUES ($1, $2) ON CONFLICT ("sku") DO NOTHING -- binds: ["A-1", "Anvil"]"#
    );
}

/// One statement returns the row; the inserted flag `(xmax = 0)` only when the call asks for
/// the outcome (YugabyteDB and CockroachDB have no `xmax`): otherwise a plain `true`.
#[test]
fn insert_and_get_returns_the_model_in_one_statement_and_reads_xmax_only_for_outcomes() {
    let conn = &mut test_connection();
    let upsert = || {
        diesel::insert_into(products::table)
            .values(NewProduct::new("SQL-1", "Saw"))
            .on_conflict_do(products::sku, ConflictAction::Update)
    };
    let sent = SentSql::attach(conn);
    let _: Product = upsert().insert_and_get(conn).unwrap();
    let _: (Product, Outcome) = upsert().insert_and_get_with_outcome(conn).unwrap();
    let sent = sent.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let statement = |flag: &str| {
        format!(
            r#"INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($1, $2, $3, $4) ON CONFLICT ("sku") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price_cents" = excluded."price_cents" RETURNING "products"."id", "products"."sku", "products"."name", "products"."description", "products"."qty", "products"."price_cents", "products"."created_at", "products"."updated_at", {flag} -- binds: ["SQL-1", "Saw", 0, 0]"#
        )
    };
    assert_eq!(sent, [statement("true"), statement("(xmax = 0)")]);
}

#[test]
fn a_kept_row_is_read_back_by_its_key_in_a_second_statement() {
    let conn = &mut test_connection();
    diesel::insert_into(products::table)
        .values(&NewProduct::new("SQL-2", "Saw"))
        .execute(conn)
        .unwrap();
    let row = NewProduct::new("SQL-2", "Saw");
    let kept = || {
        diesel::insert_into(products::table)
            .values(&row)
            .on_conflict_do(products::sku, ConflictAction::Nothing)
    };
    // The first call on a table reads its key types from the catalog (once per process).
    let _: i64 = kept().insert(conn).unwrap();
    let sent = SentSql::attach(conn);
    let _: i64 = kept().insert(conn).unwrap();
    let sent = sent.take();
    assert_eq!(
        sent,
        vec![
            r#"INSERT INTO "products" ("sku", "name", "qty", "price_cents") VALUES ($1, $2, $3, $4) ON CONFLICT ("sku") DO NOTHING RETURNING "products"."id", true -- binds: ["SQL-2", "Saw", 0, 0]"#.to_string(),
            r#"SELECT "products"."id" FROM "products" WHERE "products"."sku" = CAST($1 AS text) -- binds: ["SQL-2"]"#.to_string(),
        ]
    );
}

// ---------------------------------------------------------------- UPDATE semantics

#[test]
fn upsert_inserts_then_updates_the_same_row() {
    let conn = &mut test_connection();
    let (first, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 1,
            ..NewProduct::new("U-1", "Hammer")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Inserted);
    let (second, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 9,
            ..NewProduct::new("U-1", "Sledgehammer")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Updated);
    assert_eq!(second.id, first.id);
    let stored: Product = products::table.find(first.id).get_result(conn).unwrap();
    assert_eq!((stored.name.as_str(), stored.qty), ("Sledgehammer", 9));
    let rows: i64 = products::table
        .filter(products::sku.eq("U-1"))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn update_keeps_columns_the_insert_left_out() {
    let conn = &mut test_connection();
    diesel::insert_into(products::table)
        .values(&NewProduct {
            description: Some("forged steel"),
            price_cents: 1999,
            ..NewProduct::new("U-2", "Anvil")
        })
        .execute(conn)
        .unwrap();
    let updated: Product = diesel::insert_into(products::table)
        .values((products::sku.eq("U-2"), products::name.eq("Big anvil")))
        .upsert_and_get(products::sku, conn)
        .unwrap();
    assert_eq!(updated.name, "Big anvil");
    assert_eq!(updated.description.as_deref(), Some("forged steel"));
    assert_eq!(updated.price_cents, 1999);
    // A `None` field of an Insertable struct is left out too.
    let updated: Product = diesel::insert_into(products::table)
        .values(&NewProduct {
            description: None,
            ..NewProduct::new("U-2", "Anvil")
        })
        .upsert_and_get(products::sku, conn)
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("forged steel"));
    let stored: Option<String> = products::table
        .filter(products::sku.eq("U-2"))
        .select(products::description)
        .get_result(conn)
        .unwrap();
    assert_eq!(stored.as_deref(), Some("forged steel"));
}

#[test]
fn upsert_returns_the_primary_key_of_the_inserted_and_of_the_updated_row() {
    let conn = &mut test_connection();
    let first: i64 = diesel::insert_into(products::table)
        .values(&NewProduct::new("U-3", "Tongs"))
        .upsert(products::sku, conn)
        .unwrap();
    let second: i64 = diesel::insert_into(products::table)
        .values(&NewProduct::new("U-3", "Long tongs"))
        .upsert(products::sku, conn)
        .unwrap();
    assert_eq!(first, second);
    let name: String = products::table
        .find(first)
        .select(products::name)
        .get_result(conn)
        .unwrap();
    assert_eq!(name, "Long tongs");
}

#[test]
fn update_values_increments_a_counter() {
    let conn = &mut test_connection();
    for qty in [5, 7, 11] {
        diesel::insert_into(products::table)
            .values(&NewProduct {
                qty,
                ..NewProduct::new("U-4", "Nail")
            })
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_values(products::qty.eq(products::qty + excluded(products::qty)))
            .insert::<i64, _>(conn)
            .unwrap();
    }
    let qty: i32 = products::table
        .filter(products::sku.eq("U-4"))
        .select(products::qty)
        .get_result(conn)
        .unwrap();
    assert_eq!(qty, 23);
}

#[test]
fn update_values_with_a_bound_value_stays_a_bind_parameter() {
    let conn = &mut test_connection();
    for _ in 0..2 {
        diesel::insert_into(products::table)
            .values(&NewProduct::new("U-5", "Screw"))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_values((
                products::description.eq("restocked"),
                products::qty.eq(products::qty + 1),
            ))
            .execute(conn)
            .unwrap();
    }
    let (description, qty): (Option<String>, i32) = products::table
        .filter(products::sku.eq("U-5"))
        .select((products::description, products::qty))
        .get_result(conn)
        .unwrap();
    assert_eq!((description.as_deref(), qty), (Some("restocked"), 1));
}

#[test]
fn update_only_leaves_other_supplied_columns_alone() {
    let conn = &mut test_connection();
    diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 1,
            ..NewProduct::new("U-6", "Bolt")
        })
        .execute(conn)
        .unwrap();
    let row: Product = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 50,
            ..NewProduct::new("U-6", "Hex bolt")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_only(products::qty)
        .insert_and_get(conn)
        .unwrap();
    assert_eq!((row.name.as_str(), row.qty), ("Bolt", 50));
}

#[test]
fn a_false_update_condition_leaves_the_row_alone_and_returns_it_unchanged() {
    let conn = &mut test_connection();
    let original: Product = diesel::insert_into(products::table)
        .values(&NewProduct {
            price_cents: 500,
            ..NewProduct::new("U-7", "Drill")
        })
        .get_result(conn)
        .unwrap();
    let (returned, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            price_cents: 900,
            ..NewProduct::new("U-7", "Cheap drill")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(excluded(products::price_cents).lt(products::price_cents))
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(returned, original);
    let stored: Product = products::table.find(original.id).get_result(conn).unwrap();
    assert_eq!(stored, original);
    // The condition holds for a lower price: updated.
    let (returned, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            price_cents: 300,
            ..NewProduct::new("U-7", "Cheap drill")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(excluded(products::price_cents).lt(products::price_cents))
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (outcome, returned.price_cents, returned.name.as_str()),
        (Outcome::Updated, 300, "Cheap drill")
    );
}

#[test]
fn skip_unchanged_writes_no_new_row_version_for_an_identical_row() {
    let conn = &mut connection();
    let sku = crate::harness::unique_key("skip");
    let row = NewProduct {
        qty: 4,
        ..NewProduct::new(&sku, "Level")
    };
    let inserted: i64 = diesel::insert_into(products::table)
        .values(&row)
        .upsert(products::sku, conn)
        .unwrap();
    let xmin = || -> String {
        diesel::sql_query(format!(
            "SELECT xmin::text AS xmin FROM products WHERE id = {inserted}"
        ))
        .get_result::<Xmin>(&mut connection())
        .unwrap()
        .xmin
    };
    let before = xmin();
    let (_, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(
        xmin(),
        before,
        "an identical row must not get a new version"
    );
    // Without the guard the same statement writes a new version.
    let (_, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&row)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Updated);
    assert_ne!(xmin(), before);
    // A changed row passes the guard.
    let (changed, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 5,
            ..NewProduct::new(&sku, "Level")
        })
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!((outcome, changed.qty), (Outcome::Updated, 5));
}

#[derive(QueryableByName)]
struct Xmin {
    #[diesel(sql_type = diesel::sql_types::Text)]
    xmin: String,
}

#[test]
fn a_postgres_enum_column_round_trips() {
    let conn = &mut test_connection();
    let task: Task = diesel::insert_into(tasks::table)
        .values(&NewTask {
            slug: "write-docs",
            title: "Write docs",
            status: Some(TaskStatus::Doing),
        })
        .upsert_and_get(tasks::slug, conn)
        .unwrap();
    assert_eq!(task.status, TaskStatus::Doing);
    let task: Task = diesel::insert_into(tasks::table)
        .values(&NewTask {
            slug: "write-docs",
            title: "Write docs",
            status: Some(TaskStatus::Done),
        })
        .upsert_and_get(tasks::slug, conn)
        .unwrap();
    assert_eq!(task.status, TaskStatus::Done);
    // `None` keeps the stored status.
    let task: Task = diesel::insert_into(tasks::table)
        .values(&NewTask {
            slug: "write-docs",
            title: "Write the docs",
            status: None,
        })
        .upsert_and_get(tasks::slug, conn)
        .unwrap();
    assert_eq!(
        (task.status, task.title.as_str()),
        (TaskStatus::Done, "Write the docs")
    );
    let stored: TaskStatus = tasks::table
        .filter(tasks::slug.eq("write-docs"))
        .select(tasks::status)
        .get_result(conn)
        .unwrap();
    assert_eq!(stored, TaskStatus::Done);
}

#[test]
fn a_model_with_a_subset_of_the_columns_is_returned() {
    let conn = &mut test_connection();
    let summary: ProductSummary = diesel::insert_into(products::table)
        .values(&NewProduct::new("S-1", "Chisel"))
        .upsert_and_get(products::sku, conn)
        .unwrap();
    assert_eq!(
        (summary.sku.as_str(), summary.name.as_str()),
        ("S-1", "Chisel")
    );
    let id: i64 = products::table
        .filter(products::sku.eq("S-1"))
        .select(products::id)
        .get_result(conn)
        .unwrap();
    assert_eq!(summary.id, id);
}

#[test]
fn an_explicit_text_primary_key_is_returned_and_never_updated() {
    let conn = &mut test_connection();
    let code: String = diesel::insert_into(countries::table)
        .values(&NewCountry {
            code: "IS",
            name: "Iceland",
            population: Some(380_000),
        })
        .upsert(countries::code, conn)
        .unwrap();
    assert_eq!(code, "IS");
    let country: Country = diesel::insert_into(countries::table)
        .values(&NewCountry {
            code: "IS",
            name: "Ísland",
            population: None,
        })
        .upsert_and_get(countries::code, conn)
        .unwrap();
    assert_eq!(
        country,
        Country {
            code: "IS".into(),
            name: "Ísland".into(),
            population: Some(380_000)
        }
    );
}

// ---------------------------------------------------------------- NOTHING

#[test]
fn nothing_keeps_the_existing_row_and_still_returns_it() {
    let conn = &mut test_connection();
    let original: Product = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 3,
            ..NewProduct::new("N-1", "Rake")
        })
        .get_result(conn)
        .unwrap();
    let (returned, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct {
            qty: 99,
            ..NewProduct::new("N-1", "Garden rake")
        })
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (returned.clone(), outcome),
        (original.clone(), Outcome::Unchanged)
    );
    let id: i64 = diesel::insert_into(products::table)
        .values(&NewProduct::new("N-1", "Rake"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert(conn)
        .unwrap();
    assert_eq!(id, original.id);
    let stored: Product = products::table.find(original.id).get_result(conn).unwrap();
    assert_eq!(stored, original);
}

#[test]
fn nothing_inserts_a_new_row_and_reports_it_inserted() {
    let conn = &mut test_connection();
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct::new("N-2", "Hoe"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Inserted);
    let stored: Product = products::table
        .filter(products::sku.eq("N-2"))
        .get_result(conn)
        .unwrap();
    assert_eq!(stored, row);
}

#[test]
fn nothing_on_a_named_constraint_reads_the_existing_row_by_the_constraint_columns() {
    let conn = &mut test_connection();
    let original: Subscription = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "c@example.com",
            plan: "free",
            seats: None,
        })
        .get_result(conn)
        .unwrap();
    let returned: Subscription = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "c@example.com",
            plan: "pro",
            seats: Some(9),
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Nothing,
        )
        .insert_and_get(conn)
        .unwrap();
    assert_eq!(returned, original);
    let updated: Subscription = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "c@example.com",
            plan: "pro",
            seats: Some(9),
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .insert_and_get(conn)
        .unwrap();
    assert_eq!(
        (updated.id, updated.plan.as_str(), updated.seats),
        (original.id, "pro", 9)
    );
}

#[test]
fn a_partial_index_target_updates_only_live_rows() {
    let conn = &mut test_connection();
    let deleted: Membership = diesel::insert_into(memberships::table)
        .values(&NewMembership {
            user_id: 1,
            org: "acme",
            role: "admin",
            deleted_at: Some(chrono::Utc::now()),
        })
        .get_result(conn)
        .unwrap();
    // The deleted membership does not conflict: a new live row is inserted.
    let (live, outcome): (Membership, Outcome) = diesel::insert_into(memberships::table)
        .values(&NewMembership {
            user_id: 1,
            org: "acme",
            role: "member",
            deleted_at: None,
        })
        .on_conflict_do(
            (memberships::user_id, memberships::org),
            ConflictAction::Update,
        )
        .index_predicate(memberships::deleted_at.is_null())
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Inserted);
    assert_ne!(live.id, deleted.id);
    let (again, outcome): (Membership, Outcome) = diesel::insert_into(memberships::table)
        .values(&NewMembership {
            user_id: 1,
            org: "acme",
            role: "admin",
            deleted_at: None,
        })
        .on_conflict_do(
            (memberships::user_id, memberships::org),
            ConflictAction::Nothing,
        )
        .index_predicate(memberships::deleted_at.is_null())
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (again.id, again.role.as_str(), outcome),
        (live.id, "member", Outcome::Unchanged)
    );
    let rows: i64 = memberships::table
        .filter(memberships::org.eq("acme"))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(rows, 2);
}

// ---------------------------------------------------------------- targets keep working

/// PostgreSQL plans a prepared statement generically from its 6th execution; a bind parameter
/// inside the conflict target or its predicate would then fail to infer the arbiter index.
#[test]
fn every_target_kind_works_ten_times_on_one_connection() {
    let conn = &mut test_connection();
    for i in 0..10 {
        let qty = i + 1;
        diesel::insert_into(products::table)
            .values(&NewProduct {
                qty,
                ..NewProduct::new("T-1", "Pliers")
            })
            .upsert::<_, _, i64, _>(products::sku, conn)
            .unwrap();
        diesel::insert_into(vendor_products::table)
            .values(&NewVendorProduct {
                vendor: "acme",
                sku: "T-1",
                name: "Pliers",
                qty,
            })
            .upsert::<_, _, i64, _>((vendor_products::vendor, vendor_products::sku), conn)
            .unwrap();
        diesel::insert_into(subscriptions::table)
            .values(&NewSubscription {
                email: "t@example.com",
                plan: "pro",
                seats: Some(qty),
            })
            .upsert::<_, _, i64, _>(on_constraint("subscriptions_email_unique"), conn)
            .unwrap();
        diesel::insert_into(memberships::table)
            .values(&NewMembership {
                user_id: i64::from(qty),
                org: "owners-inc",
                role: "owner",
                deleted_at: None,
            })
            .on_conflict_do(memberships::org, ConflictAction::Update)
            .index_predicate(memberships::role.eq("owner"))
            .insert::<i64, _>(conn)
            .unwrap();
        diesel::insert_into(memberships::table)
            .values(&NewMembership {
                user_id: 5,
                org: "live-inc",
                role: "member",
                deleted_at: None,
            })
            .on_conflict_do(
                (memberships::user_id, memberships::org),
                ConflictAction::Nothing,
            )
            .index_predicate(memberships::deleted_at.is_null())
            .insert::<i64, _>(conn)
            .unwrap();
    }
    let qty: i32 = products::table
        .filter(products::sku.eq("T-1"))
        .select(products::qty)
        .get_result(conn)
        .unwrap();
    assert_eq!(qty, 10);
    let qty: i32 = vendor_products::table
        .filter(vendor_products::sku.eq("T-1"))
        .select(vendor_products::qty)
        .get_result(conn)
        .unwrap();
    assert_eq!(qty, 10);
    let seats: i32 = subscriptions::table
        .filter(subscriptions::email.eq("t@example.com"))
        .select(subscriptions::seats)
        .get_result(conn)
        .unwrap();
    assert_eq!(seats, 10);
    let owner: i64 = memberships::table
        .filter(memberships::org.eq("owners-inc"))
        .select(memberships::user_id)
        .get_result(conn)
        .unwrap();
    assert_eq!(owner, 10);
    let rows: i64 = memberships::table
        .filter(memberships::org.eq_any(["owners-inc", "live-inc"]))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(rows, 2);
}

// ---------------------------------------------------------------- errors

diesel::table! {
    /// Created by the test that needs it: unique on `k`, with `v` as an INCLUDE column.
    covering_items (id) {
        id -> Int8,
        k -> Text,
        v -> Int4,
    }
}

#[test]
fn include_columns_of_a_unique_index_are_not_part_of_its_key() {
    let conn = &mut test_connection();
    conn.batch_execute(
        "CREATE TABLE covering_items (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, v INT4 NOT NULL); \
         CREATE UNIQUE INDEX ON covering_items (k) INCLUDE (v); \
         INSERT INTO covering_items (k, v) VALUES ('a', 1)",
    )
    .unwrap();
    // `k` is the index's whole key: the statement runs, and an error of its own (a division
    // by zero in the update) is reported as what it is.
    conn.batch_execute("SAVEPOINT before_division").unwrap();
    let division = diesel::insert_into(covering_items::table)
        .values((covering_items::k.eq("a"), covering_items::v.eq(2)))
        .on_conflict_do(covering_items::k, ConflictAction::Update)
        .update_values(
            covering_items::v.eq(diesel::dsl::sql::<diesel::sql_types::Integer>("1 / 0")),
        )
        .insert::<i64, _>(conn);
    assert!(
        matches!(&division, Err(Error::Query(e)) if e.to_string().contains("division by zero")),
        "{division:?}"
    );
    conn.batch_execute("ROLLBACK TO SAVEPOINT before_division")
        .unwrap();
    // `(k, v)` is not a key of any unique index.
    let missing = diesel::insert_into(covering_items::table)
        .values((covering_items::k.eq("a"), covering_items::v.eq(2)))
        .on_conflict_do(
            (covering_items::k, covering_items::v),
            ConflictAction::Update,
        )
        .insert::<i64, _>(conn);
    assert!(
        matches!(missing, Err(Error::NoMatchingUniqueIndex { .. })),
        "{missing:?}"
    );
}

#[test]
fn a_target_without_a_unique_index_is_a_typed_error_and_the_connection_stays_usable() {
    let conn = &mut connection();
    let error = diesel::insert_into(products::table)
        .values(&NewProduct::new(&crate::harness::unique_key("E"), "Wrench"))
        .on_conflict_do(products::name, ConflictAction::Update)
        .insert::<i64, _>(conn)
        .unwrap_err();
    match &error {
        Error::NoMatchingUniqueIndex {
            table,
            target,
            hint,
        } => {
            assert_eq!(table, r#""products""#);
            assert_eq!(target, r#"("name")"#);
            assert_eq!(hint, r#"CREATE UNIQUE INDEX ON "products" ("name")"#);
        }
        other => panic!("expected NoMatchingUniqueIndex, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains(r#"CREATE UNIQUE INDEX ON "products" ("name")"#),
        "{error}"
    );
    let one: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .get_result(conn)
        .unwrap();
    assert_eq!(one, 1);
}

#[test]
fn a_predicate_on_a_named_constraint_is_rejected_before_anything_is_sent() {
    let conn = &mut test_connection();
    let sent = SentSql::attach(conn);
    let error = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "p@example.com",
            plan: "pro",
            seats: None,
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .index_predicate(subscriptions::plan.eq("pro"))
        .insert::<i64, _>(conn)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidTarget { .. }), "{error:?}");
    assert!(sent.take().is_empty(), "nothing may reach Diesel");
    let rows: i64 = subscriptions::table
        .filter(subscriptions::email.eq("p@example.com"))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(rows, 0);
}

// ---------------------------------------------------------------- connections

#[test]
fn execute_runs_the_statement_without_returning() {
    let conn = &mut test_connection();
    let affected = diesel::insert_into(products::table)
        .values(&NewProduct::new("X-1", "File"))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .execute(conn)
        .unwrap();
    assert_eq!(affected, 1);
    let affected = diesel::insert_into(products::table)
        .values(&NewProduct::new("X-1", "File"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .execute(conn)
        .unwrap();
    assert_eq!(affected, 0);
}

#[test]
fn pooled_connections_are_accepted() {
    let pool = pool(2);
    let sku = crate::harness::unique_key("pool");
    let conn = &mut pool.get().unwrap();
    let first: Product = diesel::insert_into(products::table)
        .values(&NewProduct::new(&sku, "Clamp"))
        .upsert_and_get(products::sku, conn)
        .unwrap();
    let id: i64 = diesel::insert_into(products::table)
        .values(&NewProduct::new(&sku, "Clamp"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert(&mut pool.get().unwrap())
        .unwrap();
    assert_eq!(id, first.id);
}

#[test]
fn question_mark_works_in_closures_returning_diesels_query_result() {
    use diesel::result::QueryResult;
    let conn = &mut test_connection();
    let sku = unique_key("qm");
    let id = conn
        .transaction(|conn| -> QueryResult<i64> {
            let id: i64 = diesel::insert_into(products::table)
                .values(&NewProduct::new(&sku, "Kettle"))
                .upsert(products::sku, conn)?;
            diesel::update(products::table.find(id))
                .set(products::qty.eq(3))
                .execute(conn)?;
            Ok(id)
        })
        .unwrap();
    let qty: i32 = products::table
        .find(id)
        .select(products::qty)
        .get_result(conn)
        .unwrap();
    assert_eq!(qty, 3);
    // A typed error travels boxed inside Diesel's error and comes back out unchanged.
    let rows = vec![NewProduct::new(&sku, "a"), NewProduct::new(&sku, "b")];
    let error = conn
        .transaction(|conn| -> QueryResult<Vec<i64>> {
            Ok(diesel::insert_into(products::table)
                .values(&rows)
                .on_conflict_do(products::sku, ConflictAction::Update)
                .bulk_insert(conn)?)
        })
        .unwrap_err();
    assert!(
        matches!(error, diesel::result::Error::QueryBuilderError(_)),
        "{error:?}"
    );
    assert!(matches!(
        diesel_upsert::Error::from(error),
        diesel_upsert::Error::DuplicateConflictKey {
            first: 0,
            duplicate: 1
        }
    ));
}
