//! The harness itself: the migrated schema, the models, the connections it hands out.

use std::collections::BTreeSet;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::harness::*;

fn strings(client: &mut postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn migrations_create_every_table_and_index() {
    let mut client = pg_client();

    let tables: BTreeSet<String> = strings(
        &mut client,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .into_iter()
    .collect();
    for table in ALL_TABLES {
        assert!(tables.contains(*table), "table {table} missing: {tables:?}");
    }

    let extensions = strings(&mut client, "SELECT extname::text FROM pg_extension");
    assert!(extensions.contains(&"hstore".to_owned()), "{extensions:?}");

    let labels = strings(
        &mut client,
        "SELECT enumlabel::text FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid \
         WHERE t.typname = 'task_status' ORDER BY e.enumsortorder",
    );
    assert_eq!(labels, ["todo", "doing", "done"]);

    let index_definition = |client: &mut postgres::Client, name: &str| -> String {
        client
            .query_opt(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = $1",
                &[&name],
            )
            .unwrap()
            .unwrap_or_else(|| panic!("index {name} missing"))
            .get(0)
    };
    let live = index_definition(&mut client, "memberships_live_user_org_key");
    assert!(
        live.contains("UNIQUE") && live.contains("(user_id, org) WHERE (deleted_at IS NULL)"),
        "{live}"
    );
    let owner = index_definition(&mut client, "memberships_one_owner_per_org_key");
    assert!(
        owner.contains("UNIQUE") && owner.contains("(org) WHERE (role = 'owner'::text)"),
        "{owner}"
    );
    let title_en = index_definition(&mut client, "articles_title_en_key_365c86db");
    assert!(
        title_en.contains("UNIQUE") && title_en.contains("((title -> 'en'::text))"),
        "{title_en}"
    );
    let title_en_ar = index_definition(&mut client, "articles_title_en_ar_key_e0ea6e5b");
    assert!(
        title_en_ar.contains("((title -> 'en'::text)), ((title -> 'ar'::text))"),
        "{title_en_ar}"
    );

    let lower_email = index_definition(&mut client, "accounts_lower_email_key_9f4c1d4d");
    assert!(
        lower_email.contains("UNIQUE") && lower_email.contains("(lower(email))"),
        "{lower_email}"
    );
    let alias = index_definition(
        &mut client,
        "aliases_owner_coalesce_alias_text_key_4bc3ece7",
    );
    assert!(
        alias.contains("(owner, COALESCE(alias, ''::text))"),
        "{alias}"
    );

    let unique_constraints = strings(
        &mut client,
        "SELECT conrelid::regclass::text || ':' || conname::text || ':' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE contype IN ('u', 'p') AND connamespace = 'public'::regnamespace",
    );
    for expected in [
        "products:products_pkey:PRIMARY KEY (id)",
        "products:products_sku_key:UNIQUE (sku)",
        "vendor_products:vendor_products_vendor_sku_key:UNIQUE (vendor, sku)",
        "countries:countries_pkey:PRIMARY KEY (code)",
        "tasks:tasks_slug_key:UNIQUE (slug)",
        "subscriptions:subscriptions_email_unique:UNIQUE (email)",
    ] {
        assert!(
            unique_constraints.iter().any(|c| c == expected),
            "{expected} missing: {unique_constraints:?}"
        );
    }

    let versions = strings(
        &mut client,
        "SELECT version::text FROM __diesel_schema_migrations ORDER BY version",
    );
    assert_eq!(
        versions,
        ["20261121000001", "20261121000002", "20261201000001"]
    );
}

#[test]
fn each_process_gets_its_own_database_named_after_its_pid() {
    let name: String = pg_client()
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    let expected_prefix = format!("{TEST_DATABASE_PREFIX}{}_", std::process::id());
    assert!(name.starts_with(&expected_prefix), "{name}");
    assert!(database_url().contains(&name), "{}", database_url());
    assert_eq!(database_url(), database_url(), "one database per process");
}

#[test]
fn task_status_enum_round_trips_through_diesel() {
    let conn = &mut test_connection();
    // Other tests may commit tasks meanwhile: this test looks at its own slugs only.
    let (tests_slug, code_slug) = (unique_key("write-tests"), unique_key("write-code"));
    let mine = tasks::slug.eq_any([&tests_slug, &code_slug]);

    let defaulted: Task = diesel::insert_into(tasks::table)
        .values(NewTask {
            slug: &tests_slug,
            title: "Write the tests",
            status: None,
        })
        .returning(Task::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(defaulted.status, TaskStatus::Todo);

    let doing: Task = diesel::insert_into(tasks::table)
        .values(NewTask {
            slug: &code_slug,
            title: "Write the code",
            status: Some(TaskStatus::Doing),
        })
        .returning(Task::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(doing.status, TaskStatus::Doing);

    diesel::update(tasks::table.find(defaulted.id))
        .set(tasks::status.eq(TaskStatus::Done))
        .execute(conn)
        .unwrap();
    let done: Vec<Task> = tasks::table
        .filter(mine.clone().and(tasks::status.eq(TaskStatus::Done)))
        .select(Task::as_select())
        .load(conn)
        .unwrap();
    assert_eq!(
        done,
        [Task {
            status: TaskStatus::Done,
            ..defaulted
        }]
    );
    let statuses: Vec<TaskStatus> = tasks::table
        .filter(mine)
        .order(tasks::slug)
        .select(tasks::status)
        .load(conn)
        .unwrap();
    assert_eq!(statuses, [TaskStatus::Doing, TaskStatus::Done]);
}

#[test]
fn every_model_loads_what_its_insertable_wrote() {
    let conn = &mut test_connection();
    // Keys of their own, so that concurrent tests never wait on this test's uncommitted rows.
    let (sku_1, sku_2) = (unique_key("sku"), unique_key("sku"));
    let (vendor, code, org, email) = (
        unique_key("acme"),
        unique_key("NL"),
        unique_key("org"),
        unique_key("a@example.com"),
    );

    let product: Product = diesel::insert_into(products::table)
        .values(NewProduct::new(&sku_1, "Widget"))
        .returning(Product::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(
        (
            product.description.as_deref(),
            product.qty,
            product.price_cents
        ),
        (None, 0, 0)
    );
    assert_eq!(product.created_at, product.updated_at);
    let detailed: Product = diesel::insert_into(products::table)
        .values(
            NewProduct::new(&sku_2, "Gadget")
                .description("shiny")
                .qty(3)
                .price_cents(1999),
        )
        .returning(Product::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(
        (
            detailed.description.as_deref(),
            detailed.qty,
            detailed.price_cents
        ),
        (Some("shiny"), 3, 1999)
    );
    // Other tests commit rows to `products` meanwhile: look at this test's rows only.
    let summaries: Vec<ProductSummary> = products::table
        .filter(products::sku.eq_any([&sku_1, &sku_2]))
        .order(products::sku)
        .select(ProductSummary::as_select())
        .load(conn)
        .unwrap();
    assert_eq!(
        summaries,
        [
            ProductSummary {
                id: product.id,
                sku: sku_1.clone(),
                name: "Widget".into()
            },
            ProductSummary {
                id: detailed.id,
                sku: sku_2.clone(),
                name: "Gadget".into()
            },
        ]
    );

    let vendor_product: VendorProduct = diesel::insert_into(vendor_products::table)
        .values(NewVendorProduct {
            vendor: &vendor,
            sku: &sku_1,
            name: "Widget",
            qty: 5,
        })
        .returning(VendorProduct::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!((&vendor_product.vendor, vendor_product.qty), (&vendor, 5));

    let country: Country = diesel::insert_into(countries::table)
        .values(NewCountry {
            code: &code,
            name: "Netherlands",
            population: Some(17_900_000),
        })
        .returning(Country::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(
        countries::table.find(&code).first::<Country>(conn),
        Ok(country)
    );

    let deleted_at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let membership: Membership = diesel::insert_into(memberships::table)
        .values(NewMembership {
            user_id: unique_i64(),
            org: &org,
            role: "owner",
            deleted_at: Some(deleted_at),
        })
        .returning(Membership::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(membership.deleted_at, Some(deleted_at));

    let subscription: Subscription = diesel::insert_into(subscriptions::table)
        .values(NewSubscription {
            email: &email,
            plan: "pro",
            seats: None,
        })
        .returning(Subscription::as_returning())
        .get_result(conn)
        .unwrap();
    assert_eq!(subscription.seats, 1, "seats defaults to 1");
}

#[test]
fn partial_unique_indexes_only_cover_their_rows() {
    let conn = &mut test_connection();
    let (user_id, org) = (unique_i64(), unique_key("org"));
    let member = |role, deleted: bool| NewMembership {
        user_id,
        org: &org,
        role,
        deleted_at: deleted.then(chrono::Utc::now),
    };
    let rows = [
        member("admin", true),
        member("admin", true),
        member("admin", false),
    ];
    diesel::insert_into(memberships::table)
        .values(&rows[..])
        .execute(conn)
        .unwrap();
    let duplicate_live = conn.transaction(|conn| {
        diesel::insert_into(memberships::table)
            .values(member("viewer", false))
            .execute(conn)
    });
    assert!(
        matches!(
            duplicate_live,
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, ref info))
                if info.constraint_name() == Some("memberships_live_user_org_key")
        ),
        "{duplicate_live:?}"
    );
}

#[test]
fn test_connection_leaves_nothing_behind() {
    let sku = unique_key("rolled-back");
    let mut conn = test_connection();
    diesel::insert_into(products::table)
        .values(NewProduct::new(&sku, "Never committed"))
        .execute(&mut conn)
        .unwrap();
    let visible_inside = products::table
        .filter(products::sku.eq(&sku))
        .count()
        .get_result::<i64>(&mut conn);
    assert_eq!(visible_inside, Ok(1));

    let count_outside = |client: &mut postgres::Client| -> i64 {
        client
            .query_one("SELECT count(*) FROM products WHERE sku = $1", &[&sku])
            .unwrap()
            .get(0)
    };
    let mut client = pg_client();
    assert_eq!(count_outside(&mut client), 0);
    drop(conn);
    assert_eq!(count_outside(&mut client), 0);
}

#[test]
fn committed_rows_are_seen_by_the_pool_and_the_independent_client() {
    let sku = unique_key("committed");
    let conn = &mut connection();
    let inserted: Product = diesel::insert_into(products::table)
        .values(NewProduct::new(&sku, "Committed").qty(2))
        .returning(Product::as_returning())
        .get_result(conn)
        .unwrap();

    let row = pg_client()
        .query_one("SELECT id, name, qty FROM products WHERE sku = $1", &[&sku])
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2)
        ),
        (inserted.id, "Committed".to_owned(), 2)
    );

    let pool = pool(2);
    let from_pool: Product = products::table
        .filter(products::sku.eq(&sku))
        .select(Product::as_select())
        .first(&mut pool.get().unwrap())
        .unwrap();
    assert_eq!(from_pool, inserted);

    diesel::delete(products::table.find(inserted.id))
        .execute(conn)
        .unwrap();
}

#[test]
fn database_errors_are_reported_in_english_on_every_connection() {
    let sku = unique_key("same");
    let rows = [NewProduct::new(&sku, "a"), NewProduct::new(&sku, "b")];
    let expect_english = |conn: &mut PgConnection| {
        let error = conn
            .transaction(|conn| {
                diesel::insert_into(products::table)
                    .values(&rows[..])
                    .execute(conn)
            })
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("duplicate key value violates unique constraint \"products_sku_key\""),
            "{error}"
        );
    };
    expect_english(&mut test_connection());
    let pool = pool(1);
    let mut pooled = pool.get().unwrap();
    pooled.begin_test_transaction().unwrap();
    expect_english(&mut pooled);
}

#[test]
fn unique_keys_never_repeat_across_threads() {
    let keys: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..250).map(|_| unique_key("k")).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), 1000);
    assert!(keys[0].starts_with("k-"));
    assert_ne!(unique_i64(), unique_i64());
}
