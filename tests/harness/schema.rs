// Diesel schema of the test database (`migrations/`).
//
// This file is mounted three ways (see `mod.rs` and `src/doctest_setup.rs`), always as
// `crate::harness::schema`; it is also pulled in with `include!`, so it must not contain
// inner attributes (`#![...]`) or `mod foo;` declarations.

/// SQL types of the test schema that Diesel does not know.
pub mod sql_types {
    /// The PostgreSQL enum `task_status` ('todo', 'doing', 'done').
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "task_status"))]
    pub struct TaskStatus;
}

diesel::table! {
    /// Serial primary key, one unique text column (`sku`), NOT NULL, nullable and defaulted columns.
    products (id) {
        id -> Int8,
        sku -> Text,
        name -> Text,
        description -> Nullable<Text>,
        qty -> Int4,
        price_cents -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Unique together: `(vendor, sku)`.
    vendor_products (id) {
        id -> Int8,
        vendor -> Text,
        sku -> Text,
        name -> Text,
        qty -> Int4,
    }
}

diesel::table! {
    /// Explicit text primary key.
    countries (code) {
        code -> Text,
        name -> Text,
        population -> Nullable<Int8>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::TaskStatus;

    /// A PostgreSQL enum column (`status`, default 'todo'); `slug` is unique.
    tasks (id) {
        id -> Int8,
        slug -> Text,
        title -> Text,
        status -> TaskStatus,
    }
}

diesel::table! {
    /// Partial unique indexes: `memberships_live_user_org_key` on `(user_id, org) WHERE deleted_at IS NULL`,
    /// `memberships_one_owner_per_org_key` on `(org) WHERE role = 'owner'`.
    memberships (id) {
        id -> Int8,
        user_id -> Int8,
        org -> Text,
        role -> Text,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Named unique constraint `subscriptions_email_unique` on `(email)`; `seats` defaults to 1.
    subscriptions (id) {
        id -> Int8,
        email -> Text,
        plan -> Text,
        seats -> Int4,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use diesel_upsert::sql_types::Hstore;

    /// An hstore column `title` with the unique expression indexes of
    /// `diesel_upsert::hstore::unique_index("articles", "title", &["en"])` and `&["en", "ar"]`.
    articles (id) {
        id -> Int8,
        title -> Nullable<Hstore>,
        body -> Text,
    }
}

diesel::table! {
    /// Unique expression indexes (`diesel_upsert::unique_index` with `index_expression`):
    /// `(lower(email))` and `(tenant, (profile ->> 'handle'))`.
    accounts (id) {
        id -> Int8,
        tenant -> Text,
        email -> Text,
        name -> Text,
        profile -> Jsonb,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// A unique expression index that makes a missing alias a value: `(owner, coalesce(alias, ''))`.
    aliases (id) {
        id -> Int8,
        owner -> Text,
        alias -> Nullable<Text>,
        note -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    products,
    vendor_products,
    countries,
    tasks,
    memberships,
    subscriptions,
    articles,
    accounts,
    aliases,
);
