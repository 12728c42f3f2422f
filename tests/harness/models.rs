// Rust models of the test schema (`schema.rs`).
//
// Mounted as `crate::harness::models` everywhere (tests, examples, doctests); also pulled in
// with `include!`, so no inner attributes and no `mod foo;` declarations here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_upsert::HstoreMap;

use super::schema::{
    accounts, aliases, articles, countries, memberships, products, subscriptions, tasks,
    vendor_products,
};

/// Rust side of the PostgreSQL enum `task_status`.
#[derive(diesel_derive_enum::DbEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[ExistingTypePath = "crate::harness::schema::sql_types::TaskStatus"]
pub enum TaskStatus {
    Todo,
    Doing,
    Done,
}

/// A full row of `products`.
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub qty: i32,
    pub price_cents: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subset of the columns of `products` (for models that select only some columns).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct ProductSummary {
    pub id: i64,
    pub sku: String,
    pub name: String,
}

/// An insert into `products`. `description: None` leaves the column out (DEFAULT, i.e. NULL);
/// `created_at` / `updated_at` are always left to their defaults.
#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = products)]
pub struct NewProduct<'a> {
    pub sku: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub qty: i32,
    pub price_cents: i64,
}

impl<'a> NewProduct<'a> {
    /// `sku` and `name`, no description, `qty` 0, `price_cents` 0.
    pub fn new(sku: &'a str, name: &'a str) -> Self {
        NewProduct {
            sku,
            name,
            description: None,
            qty: 0,
            price_cents: 0,
        }
    }

    pub fn description(self, description: &'a str) -> Self {
        NewProduct {
            description: Some(description),
            ..self
        }
    }

    pub fn qty(self, qty: i32) -> Self {
        NewProduct { qty, ..self }
    }

    pub fn price_cents(self, price_cents: i64) -> Self {
        NewProduct {
            price_cents,
            ..self
        }
    }
}

/// A full row of `vendor_products` (unique together `(vendor, sku)`).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = vendor_products, check_for_backend(diesel::pg::Pg))]
pub struct VendorProduct {
    pub id: i64,
    pub vendor: String,
    pub sku: String,
    pub name: String,
    pub qty: i32,
}

#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = vendor_products)]
pub struct NewVendorProduct<'a> {
    pub vendor: &'a str,
    pub sku: &'a str,
    pub name: &'a str,
    pub qty: i32,
}

/// A full row of `countries` (text primary key `code`).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = countries, primary_key(code), check_for_backend(diesel::pg::Pg))]
pub struct Country {
    pub code: String,
    pub name: String,
    pub population: Option<i64>,
}

#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = countries)]
pub struct NewCountry<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub population: Option<i64>,
}

/// A full row of `tasks` (PostgreSQL enum column `status`).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
pub struct Task {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub status: TaskStatus,
}

/// `status: None` leaves the column to its default ('todo').
#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = tasks)]
pub struct NewTask<'a> {
    pub slug: &'a str,
    pub title: &'a str,
    pub status: Option<TaskStatus>,
}

/// A full row of `memberships` (partial unique indexes).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = memberships, check_for_backend(diesel::pg::Pg))]
pub struct Membership {
    pub id: i64,
    pub user_id: i64,
    pub org: String,
    pub role: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = memberships)]
pub struct NewMembership<'a> {
    pub user_id: i64,
    pub org: &'a str,
    pub role: &'a str,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A full row of `subscriptions` (named unique constraint `subscriptions_email_unique`).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
pub struct Subscription {
    pub id: i64,
    pub email: String,
    pub plan: String,
    pub seats: i32,
}

/// `seats: None` leaves the column to its default (1).
#[derive(Insertable, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = subscriptions)]
pub struct NewSubscription<'a> {
    pub email: &'a str,
    pub plan: &'a str,
    pub seats: Option<i32>,
}

/// A full row of `articles` (hstore column `title`, unique on the keys `en` and `(en, ar)`).
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = articles, check_for_backend(diesel::pg::Pg))]
pub struct Article {
    pub id: i64,
    pub title: Option<BTreeMap<String, Option<String>>>,
    pub body: String,
}

/// `title: None` leaves the column to its default (NULL).
#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = articles)]
pub struct NewArticle<'a> {
    pub title: Option<HstoreMap>,
    pub body: &'a str,
}

impl<'a> NewArticle<'a> {
    /// A title of the given translations (no NULL values) and a body.
    pub fn new(title: &[(&str, &str)], body: &'a str) -> Self {
        NewArticle {
            title: Some(title.iter().map(|&(k, v)| (k, Some(v))).collect()),
            body,
        }
    }
}

/// A full row of `accounts`.
#[derive(Queryable, Selectable, Identifiable, Debug, Clone, PartialEq)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct Account {
    pub id: i64,
    pub tenant: String,
    pub email: String,
    pub name: String,
    pub profile: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// An insert into `accounts`; `profile: None` leaves it to its default (`{}`).
#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = accounts)]
pub struct NewAccount<'a> {
    pub tenant: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub profile: Option<serde_json::Value>,
}

impl<'a> NewAccount<'a> {
    pub fn new(tenant: &'a str, email: &'a str, name: &'a str) -> Self {
        NewAccount {
            tenant,
            email,
            name,
            profile: None,
        }
    }
}

/// A full row of `aliases`.
#[derive(Queryable, Selectable, Identifiable, Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = aliases, check_for_backend(diesel::pg::Pg))]
pub struct Alias {
    pub id: i64,
    pub owner: String,
    pub alias: Option<String>,
    pub note: String,
}

/// An insert into `aliases`; `alias: None` inserts NULL.
#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = aliases, treat_none_as_default_value = false)]
pub struct NewAlias<'a> {
    pub owner: &'a str,
    pub alias: Option<&'a str>,
    pub note: &'a str,
}
