//! Expression conflict targets (`index_expression`): the SQL they write, every terminal on
//! tables with unique expression indexes, the errors for what cannot be a target, and the
//! migration helper that writes the matching index.

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::{connection, pool, record_sql, test_connection, unique_key};
use diesel::connection::SimpleConnection;
use diesel::debug_query;
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use diesel_upsert::prelude::*;
use diesel_upsert::{index_expression, unique_index, DuplicateKeys, Error};

diesel::define_sql_function!(fn lower(x: Text) -> Text);
diesel::define_sql_function!(fn upper(x: Text) -> Text);
diesel::define_sql_function!(fn coalesce(x: Nullable<Text>, y: Text) -> Text);

/// The three targets of the test schema's expression indexes.
macro_rules! lower_email {
    () => {
        index_expression(lower(accounts::email))
    };
}
macro_rules! tenant_handle {
    () => {
        (
            accounts::tenant,
            index_expression(accounts::profile.retrieve_as_text("handle")),
        )
    };
}
macro_rules! owner_alias {
    () => {
        (
            aliases::owner,
            index_expression(coalesce(aliases::alias, "")),
        )
    };
}

fn stored_aliases(conn: &mut PgConnection, owner: &str) -> Vec<(Option<String>, String)> {
    aliases::table
        .filter(aliases::owner.eq(owner))
        .order(aliases::id)
        .select((aliases::alias, aliases::note))
        .load(conn)
        .unwrap()
}

fn account_emails(conn: &mut PgConnection, tenant: &str) -> Vec<(String, String)> {
    accounts::table
        .filter(accounts::tenant.eq(tenant))
        .order(accounts::id)
        .select((accounts::email, accounts::name))
        .load(conn)
        .unwrap()
}

#[test]
fn the_accounts_migration_holds_exactly_what_the_helper_writes() {
    let up = include_str!("../migrations/2026-12-01-000001_accounts/up.sql");
    let indexes = [
        unique_index(accounts::table, lower_email!()).unwrap(),
        unique_index(accounts::table, tenant_handle!()).unwrap(),
        unique_index(aliases::table, owner_alias!()).unwrap(),
    ];
    for index in &indexes {
        assert!(
            up.lines().any(|l| l == index.up),
            "{} not in up.sql:\n{up}",
            index.up
        );
    }
    assert_eq!(
        indexes.each_ref().map(|i| i.down.as_str()),
        [
            r#"DROP INDEX "accounts_lower_email_key_9f4c1d4d";"#,
            r#"DROP INDEX "accounts_tenant_profile_handle_text_key_5fdba2bb";"#,
            r#"DROP INDEX "aliases_owner_coalesce_alias_text_key_4bc3ece7";"#,
        ]
    );
}

#[test]
fn the_target_is_written_as_text_with_its_values_as_literals() {
    let row = NewAccount::new("t", "Ada@example.com", "Ada");
    let insert = diesel::insert_into(accounts::table)
        .values(&row)
        .on_conflict_do(lower_email!(), ConflictAction::Update);
    assert_eq!(
        debug_query::<Pg, _>(&insert).to_string(),
        r#"INSERT INTO "accounts" ("tenant", "email", "name") VALUES ($1, $2, $3) ON CONFLICT ((lower("email"))) DO UPDATE SET "tenant" = excluded."tenant", "email" = excluded."email", "name" = excluded."name" -- binds: ["t", "Ada@example.com", "Ada"]"#
    );
    let insert = diesel::insert_into(accounts::table)
        .values(&row)
        .on_conflict_do(tenant_handle!(), ConflictAction::Nothing);
    assert_eq!(
        debug_query::<Pg, _>(&insert).to_string(),
        r#"INSERT INTO "accounts" ("tenant", "email", "name") VALUES ($1, $2, $3) ON CONFLICT ("tenant", (("profile" ->> 'handle'::text))) DO NOTHING -- binds: ["t", "Ada@example.com", "Ada"]"#
    );
}

#[test]
fn single_row_terminals_find_the_row_by_the_expression() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-single");
    let email = format!("{tenant}@Example.com");
    let first: Account = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &email, "Ada"))
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .insert_and_get(conn)
        .unwrap();
    // Same key in another case: the stored row is updated, its email too.
    let lowered = email.to_lowercase();
    let (updated, outcome): (Account, Outcome) = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &lowered, "Ada L."))
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (updated.id, updated.email.as_str(), outcome),
        (first.id, lowered.as_str(), Outcome::Updated)
    );
    // DO NOTHING reads the kept row back by the expression.
    let upper = email.to_uppercase();
    let (kept, outcome): (Account, Outcome) = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &upper, "Someone else"))
        .on_conflict_do(lower_email!(), ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (kept.id, kept.name.as_str(), outcome),
        (first.id, "Ada L.", Outcome::Unchanged)
    );
    let kept_id: i64 = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &upper, "Someone else"))
        .on_conflict_do(lower_email!(), ConflictAction::Nothing)
        .insert(conn)
        .unwrap();
    assert_eq!(kept_id, first.id);
    // skip_unchanged on identical values leaves the row alone.
    let (_, outcome): (Account, Outcome) = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &lowered, "Ada L."))
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(
        account_emails(conn, &tenant),
        vec![(lowered.clone(), "Ada L.".to_owned())]
    );
}

#[test]
fn bulk_terminals_pair_every_input_row_by_the_expression() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-bulk");
    let e = |n: &str| format!("{n}.{tenant}@example.com");
    let existing: Vec<i64> = diesel::insert_into(accounts::table)
        .values(&vec![
            NewAccount::new(&tenant, &e("a"), "a"),
            NewAccount::new(&tenant, &e("b"), "b"),
        ])
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    let (ua, ub, c) = (e("A").to_uppercase(), e("b").to_uppercase(), e("c"));
    let rows = vec![
        NewAccount::new(&tenant, &c, "c"),
        NewAccount::new(&tenant, &ub, "B2"),
        NewAccount::new(&tenant, &ua, "A2"),
    ];
    let got: Vec<(Account, Outcome)> = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    let summary: Vec<(i64, &str, Outcome)> = got
        .iter()
        .map(|(a, o)| (a.id, a.name.as_str(), *o))
        .collect();
    assert_eq!(summary[1], (existing[1], "B2", Outcome::Updated));
    assert_eq!(summary[2], (existing[0], "A2", Outcome::Updated));
    assert_eq!((summary[0].1, summary[0].2), ("c", Outcome::Inserted));
    // DO NOTHING: the kept rows are read back by the expression, in input order.
    let (a, d, uc) = (e("a"), e("d"), c.to_uppercase());
    let again = vec![
        NewAccount::new(&tenant, &a, "ignored"),
        NewAccount::new(&tenant, &d, "d"),
        NewAccount::new(&tenant, &uc, "ignored"),
    ];
    let kept: Vec<Account> = diesel::insert_into(accounts::table)
        .values(&again)
        .on_conflict_do(lower_email!(), ConflictAction::Nothing)
        .bulk_insert_and_get(conn)
        .unwrap();
    let kept: Vec<(i64, &str)> = kept.iter().map(|a| (a.id, a.name.as_str())).collect();
    assert_eq!(kept[0], (existing[0], "A2"));
    assert_eq!(kept[2], (summary[0].0, "c"));
    assert_eq!(kept[1].1, "d");
    let counts = diesel::insert_into(accounts::table)
        .values(&again)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .bulk_execute(conn)
        .unwrap();
    assert_eq!(
        (counts.inserted, counts.updated, counts.unchanged),
        (0, 3, 0)
    );
    assert_eq!(
        account_emails(conn, &tenant),
        vec![
            (e("a"), "ignored".to_owned()),
            (ub.clone(), "B2".to_owned()),
            (c.to_uppercase(), "ignored".to_owned()),
            (e("d"), "d".to_owned()),
        ]
    );
}

#[test]
fn rows_equal_under_the_expression_are_duplicates_in_one_batch() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-dup");
    let (lower, upper) = (
        format!("{tenant}@x.org"),
        format!("{tenant}@X.ORG").to_uppercase(),
    );
    let rows = vec![
        NewAccount::new(&tenant, &lower, "first"),
        NewAccount::new(&tenant, &upper, "second"),
    ];
    let error = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
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
        "{error}"
    );
    let ids: Vec<i64> = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .on_duplicate_keys(DuplicateKeys::KeepLast)
        .bulk_insert(conn)
        .unwrap();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        account_emails(conn, &tenant),
        vec![(upper, "second".to_owned())]
    );
}

#[test]
fn a_jsonb_key_and_a_column_make_one_target() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-json");
    let profile = |handle: Option<&str>| match handle {
        Some(h) => serde_json::json!({ "handle": h }),
        None => serde_json::json!({}),
    };
    fn account<'a>(
        tenant: &'a str,
        email: &'a str,
        name: &'a str,
        profile: serde_json::Value,
    ) -> NewAccount<'a> {
        NewAccount {
            profile: Some(profile),
            ..NewAccount::new(tenant, email, name)
        }
    }
    let account = |email, name, handle| account(&tenant, email, name, profile(handle));
    let (a, b, c) = (
        format!("a.{tenant}@x"),
        format!("b.{tenant}@x"),
        format!("c.{tenant}@x"),
    );
    let first: Vec<(Account, Outcome)> = diesel::insert_into(accounts::table)
        .values(&vec![account(&a, "a", Some("ada")), account(&b, "b", None)])
        .on_conflict_do(tenant_handle!(), ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    // `ada` again updates its row; a missing handle is NULL and never conflicts.
    let second: Vec<(Account, Outcome)> = diesel::insert_into(accounts::table)
        .values(&vec![
            account(&c, "c", None),
            account(&a, "a2", Some("ada")),
        ])
        .on_conflict_do(tenant_handle!(), ConflictAction::Update)
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(second[1].0.id, first[0].0.id);
    assert_eq!(
        second
            .iter()
            .map(|(a, o)| (a.name.as_str(), *o))
            .collect::<Vec<_>>(),
        vec![("c", Outcome::Inserted), ("a2", Outcome::Updated)]
    );
    let single: (Account, Outcome) = diesel::insert_into(accounts::table)
        .values(account(&a, "a3", Some("ada")))
        .on_conflict_do(tenant_handle!(), ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (single.0.id, single.0.name.as_str(), single.1),
        (first[0].0.id, "a2", Outcome::Unchanged)
    );
    assert_eq!(
        account_emails(conn, &tenant),
        vec![(a.clone(), "a2".into()), (b, "b".into()), (c, "c".into())]
    );
}

#[test]
fn coalesce_makes_a_missing_value_a_key() {
    let conn = &mut test_connection();
    let owner = unique_key("expr-alias");
    let alias = |alias, note| NewAlias {
        owner: &owner,
        alias,
        note,
    };
    let ids: Vec<i64> = diesel::insert_into(aliases::table)
        .values(&vec![alias(None, "none"), alias(Some("x"), "x")])
        .on_conflict_do(owner_alias!(), ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    let again: Vec<i64> = diesel::insert_into(aliases::table)
        .values(&vec![alias(Some("x"), "x2"), alias(None, "none2")])
        .on_conflict_do(owner_alias!(), ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    assert_eq!(again, vec![ids[1], ids[0]]);
    // '' and NULL are one key under coalesce(alias, '').
    let empty: i64 = diesel::insert_into(aliases::table)
        .values(alias(Some(""), "empty"))
        .on_conflict_do(owner_alias!(), ConflictAction::Update)
        .insert(conn)
        .unwrap();
    assert_eq!(empty, ids[0]);
    assert_eq!(
        stored_aliases(conn, &owner),
        vec![
            (Some(String::new()), "empty".into()),
            (Some("x".into()), "x2".into())
        ]
    );
}

/// PostgreSQL switches a prepared statement to a generic plan after five executions; a
/// target with a bind parameter would fail from then on.
#[test]
fn the_prepared_statement_keeps_working_past_the_generic_plan_switch() {
    let conn = &mut test_connection();
    let owner = unique_key("expr-prepared");
    for i in 0..8 {
        let note = format!("note {i}");
        let single: i64 = diesel::insert_into(aliases::table)
            .values(NewAlias {
                owner: &owner,
                alias: None,
                note: &note,
            })
            .on_conflict_do(owner_alias!(), ConflictAction::Update)
            .insert(conn)
            .unwrap();
        let rows = vec![NewAlias {
            owner: &owner,
            alias: Some("a"),
            note: &note,
        }];
        let bulk: Vec<i64> = diesel::insert_into(aliases::table)
            .values(&rows)
            .on_conflict_do(owner_alias!(), ConflictAction::Nothing)
            .bulk_insert(conn)
            .unwrap();
        assert_ne!(single, bulk[0]);
    }
    assert_eq!(
        stored_aliases(conn, &owner),
        vec![(None, "note 7".into()), (Some("a".into()), "note 0".into())]
    );
}

#[test]
fn what_cannot_be_a_target_is_refused_before_anything_is_sent() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-bad");
    let email = format!("{tenant}@x");
    let sent = record_sql(conn);
    // A jsonb value cannot be written as a literal.
    let error = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &email, "a"))
        .on_conflict_do(
            index_expression(accounts::profile.concat(serde_json::json!({ "a": 1 }))),
            ConflictAction::Update,
        )
        .insert::<i64, _>(conn)
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidTarget { reason } if reason.contains("literal")),
        "{error}"
    );
    // The insert does not supply `profile`: its key would be the column's default.
    let error = diesel::insert_into(accounts::table)
        .values(&vec![NewAccount::new(&tenant, &email, "a")])
        .on_conflict_do(tenant_handle!(), ConflictAction::Update)
        .bulk_insert::<i64, _>(conn)
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidTarget { reason } if reason.contains("\"profile\"")),
        "{error}"
    );
    // An expression that reads no column of the table.
    let error = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &email, "a"))
        .on_conflict_do(
            index_expression(sql::<Text>("lower('x')")),
            ConflictAction::Update,
        )
        .insert::<i64, _>(conn)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidTarget { .. }), "{error}");
    let statements = sent.lock().unwrap().clone();
    assert!(
        statements.iter().all(|s| !s.contains("INSERT")),
        "{statements:#?}"
    );
    assert_eq!(account_emails(conn, &tenant), vec![]);
}

#[test]
fn an_expression_no_index_matches_is_no_matching_unique_index_with_the_index_to_create() {
    let conn = &mut connection();
    let tenant = unique_key("expr-noindex");
    let email = format!("{tenant}@x");
    let error = diesel::insert_into(accounts::table)
        .values(&NewAccount::new(&tenant, &email, "a"))
        .on_conflict_do(
            index_expression(upper(accounts::email)),
            ConflictAction::Update,
        )
        .insert::<i64, _>(conn)
        .unwrap_err();
    match error {
        Error::NoMatchingUniqueIndex { hint, target, .. } => {
            assert_eq!(target, r#"((upper("email")))"#);
            assert_eq!(
                hint,
                r#"CREATE UNIQUE INDEX ON "accounts" ((upper("email")))"#
            );
        }
        other => panic!("expected NoMatchingUniqueIndex, got {other:?}"),
    }
    let rows = vec![NewAccount::new(&tenant, &email, "a")];
    let error = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(
            (accounts::tenant, index_expression(upper(accounts::email))),
            ConflictAction::Nothing,
        )
        .bulk_insert_and_get::<Account, _>(conn)
        .unwrap_err();
    assert!(
        matches!(&error, Error::NoMatchingUniqueIndex { hint, .. }
            if hint == r#"CREATE UNIQUE INDEX ON "accounts" ("tenant", (upper("email")))"#),
        "{error}"
    );
    assert_eq!(account_emails(conn, &tenant), vec![]);
}

/// Eight threads upsert the same keys, each in its own letter case, in bulk and in turn:
/// one row per key at the end, no deadlock, every call's rows paired.
#[test]
fn concurrent_bulk_upserts_by_the_expression_leave_one_row_per_key() {
    let pool = pool(8);
    let tenant = unique_key("expr-threads");
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}.{tenant}@x")).collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (pool, keys, tenant) = (&pool, &keys, &tenant);
            scope.spawn(move || {
                let conn = &mut pool.get().unwrap();
                let name = format!("thread {t}");
                for round in 0..3 {
                    let emails: Vec<String> = keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            if (i + t + round) % 2 == 0 {
                                k.to_uppercase()
                            } else {
                                k.clone()
                            }
                        })
                        .rev()
                        .collect();
                    let rows: Vec<NewAccount<'_>> = emails
                        .iter()
                        .map(|e| NewAccount::new(tenant, e, &name))
                        .collect();
                    let got: Vec<Account> = diesel::insert_into(accounts::table)
                        .values(&rows)
                        .on_conflict_do(lower_email!(), ConflictAction::Update)
                        .bulk_insert_and_get(conn)
                        .unwrap();
                    for (row, account) in rows.iter().zip(&got) {
                        assert_eq!(account.email.to_lowercase(), row.email.to_lowercase());
                    }
                }
            });
        }
    });
    let conn = &mut connection();
    let stored: Vec<String> = accounts::table
        .filter(accounts::tenant.eq(&tenant))
        .select(lower(accounts::email))
        .order(lower(accounts::email))
        .load(conn)
        .unwrap();
    let mut expected: Vec<String> = keys.clone();
    expected.sort();
    assert_eq!(stored, expected);
    diesel::delete(accounts::table.filter(accounts::tenant.eq(&tenant)))
        .execute(conn)
        .unwrap();
}

/// The statements of a bulk call on an expression target (shown in docs/bulk.md, checked here):
/// PostgreSQL ranks the input's keys, then one upsert pairs the written rows by the expression.
#[test]
fn bulk_statements_evaluate_the_expression_on_the_input_and_docs_show_them() {
    let conn = &mut test_connection();
    let rows = vec![
        NewAccount::new("main", "Ada@Example.com", "Ada"),
        NewAccount::new("main", "grace@example.com", "Grace"),
    ];
    let call = |conn: &mut PgConnection| -> Vec<i64> {
        diesel::insert_into(accounts::table)
            .values(&rows)
            .on_conflict_do(lower_email!(), ConflictAction::Update)
            .bulk_insert(conn)
            .unwrap()
    };
    let first = call(conn);
    let sent = crate::single::SentSql::attach(conn);
    assert_eq!(call(conn), first);
    let statements: Vec<String> = sent
        .take()
        .into_iter()
        .map(|s| s.split(" -- binds: ").next().unwrap().to_owned())
        .collect();
    let rank = r#"SELECT "__upsert_ord", dense_rank() OVER (ORDER BY "__upsert_k0") FROM (SELECT *, (lower(CAST("email" AS text))) AS "__upsert_k0" FROM unnest($1, $2) AS "__upsert_row"("email", "__upsert_ord")) AS "__upsert_input" WHERE "__upsert_k0" IS NOT NULL"#;
    let upsert = r#"WITH "__upsert_input" AS (SELECT *, (lower(CAST("email" AS text))) AS "__upsert_k0" FROM unnest($1, $2, $3, $4) AS "__upsert_row"("tenant", "email", "name", "__upsert_ord")), "__upserted" AS (INSERT INTO "accounts" ("tenant", "email", "name") SELECT "tenant", "email", "name" FROM "__upsert_input" ON CONFLICT ((lower("email"))) DO UPDATE SET "tenant" = excluded."tenant", "email" = excluded."email", "name" = excluded."name" RETURNING "accounts"."id", true AS "__upsert_inserted", (lower("accounts"."email")) AS "__upsert_k0") SELECT "__upsert_input"."__upsert_ord", "__upserted".* FROM "__upserted" LEFT JOIN "__upsert_input" ON "__upsert_input"."__upsert_k0" = "__upserted"."__upsert_k0""#;
    assert_eq!(
        statements,
        [
            rank,
            "SAVEPOINT diesel_savepoint_1",
            upsert,
            "RELEASE SAVEPOINT diesel_savepoint_1"
        ]
    );
    assert!(include_str!("../docs/bulk.md").contains(upsert));
}

mod qualified {
    diesel::table! {
        /// Created by the test that uses it, in its test transaction.
        expr_q.members (id) {
            id -> Int8,
            email -> Text,
            name -> Text,
        }
    }
}

#[derive(Insertable, Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = qualified::members, check_for_backend(diesel::pg::Pg))]
struct Member {
    #[diesel(skip_insertion)]
    id: i64,
    email: String,
    name: String,
}

/// A schema-qualified table: the expression's columns are written as Diesel writes them there
/// (`"expr_q"."members"."email"`), and the index helper qualifies its `DROP INDEX`.
#[test]
fn a_schema_qualified_table_takes_expression_targets_and_its_index() {
    use qualified::members;
    let conn = &mut test_connection();
    let index = unique_index(members::table, index_expression(lower(members::email))).unwrap();
    assert_eq!(
        index.up,
        r#"CREATE UNIQUE INDEX "members_lower_email_key_509c15dc" ON "expr_q"."members" ((lower("email")));"#
    );
    assert_eq!(
        index.down,
        r#"DROP INDEX "expr_q"."members_lower_email_key_509c15dc";"#
    );
    conn.batch_execute(
        "CREATE SCHEMA expr_q; \
         CREATE TABLE expr_q.members (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL)",
    )
    .unwrap();
    conn.batch_execute(&index.up).unwrap();
    let member = |email: &str, name: &str| Member {
        id: 0,
        email: email.into(),
        name: name.into(),
    };
    let first: Member = diesel::insert_into(members::table)
        .values(member("Ada@x", "Ada"))
        .on_conflict_do(
            index_expression(lower(members::email)),
            ConflictAction::Update,
        )
        .insert_and_get(conn)
        .unwrap();
    let (kept, outcome): (Member, Outcome) = diesel::insert_into(members::table)
        .values(member("ADA@X", "ignored"))
        .on_conflict_do(
            index_expression(lower(members::email)),
            ConflictAction::Nothing,
        )
        .insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        (kept.id, kept.name.as_str(), outcome),
        (first.id, "Ada", Outcome::Unchanged)
    );
    let rows = vec![member("grace@x", "Grace"), member("ada@X", "Ada L.")];
    let got: Vec<(Member, Outcome)> = diesel::insert_into(members::table)
        .values(&rows)
        .on_conflict_do(
            index_expression(lower(members::email)),
            ConflictAction::Update,
        )
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|(m, o)| (m.name.as_str(), *o))
            .collect::<Vec<_>>(),
        vec![("Grace", Outcome::Inserted), ("Ada L.", Outcome::Updated)]
    );
    assert_eq!(got[1].0.id, first.id);
    let stored: Vec<(String, String)> = members::table
        .order(members::id)
        .select((members::email, members::name))
        .load(conn)
        .unwrap();
    assert_eq!(
        stored,
        vec![
            ("ada@X".into(), "Ada L.".into()),
            ("grace@x".into(), "Grace".into())
        ]
    );
    conn.batch_execute(&index.down).unwrap();
}

#[test]
fn bulk_update_finds_rows_by_an_index_expression() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-update");
    let (a, b) = (format!("a.{tenant}@x"), format!("b.{tenant}@x"));
    diesel::insert_into(accounts::table)
        .values(&vec![NewAccount::new(&tenant, &a, "a")])
        .execute(conn)
        .unwrap();
    let (ua, ub) = (a.to_uppercase(), b.to_uppercase());
    let changes = vec![
        (accounts::email.eq(&ub), accounts::name.eq("B")),
        (accounts::email.eq(&ua), accounts::name.eq("A")),
    ];
    let outcomes = diesel_upsert::bulk_update(accounts::table)
        .set(&changes)
        .by(lower_email!())
        .apply(conn)
        .unwrap();
    use diesel_upsert::UpdateOutcome::{Missing, Updated};
    assert_eq!(outcomes, [Missing, Updated]);
    assert_eq!(account_emails(conn, &tenant), vec![(ua, "A".to_owned())]);
}

/// `skip_unchanged` in bulk reads identical rows back in the upsert statement itself, matched
/// by the expression; a row changed only in the case of its email is written.
#[test]
fn skip_unchanged_in_bulk_matches_identical_rows_by_the_expression() {
    let conn = &mut test_connection();
    let tenant = unique_key("expr-same");
    let (a, b) = (format!("a.{tenant}@x"), format!("b.{tenant}@x"));
    let rows = vec![
        NewAccount::new(&tenant, &a, "a"),
        NewAccount::new(&tenant, &b, "b"),
    ];
    let first: Vec<i64> = diesel::insert_into(accounts::table)
        .values(&rows)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .bulk_insert(conn)
        .unwrap();
    let ub = b.to_uppercase();
    let again = vec![
        NewAccount::new(&tenant, &a, "a"),
        NewAccount::new(&tenant, &ub, "b"),
    ];
    let got: Vec<(Account, Outcome)> = diesel::insert_into(accounts::table)
        .values(&again)
        .on_conflict_do(lower_email!(), ConflictAction::Update)
        .skip_unchanged()
        .bulk_insert_and_get_with_outcome(conn)
        .unwrap();
    assert_eq!(
        got.iter().map(|(acc, o)| (acc.id, *o)).collect::<Vec<_>>(),
        vec![(first[0], Outcome::Unchanged), (first[1], Outcome::Updated)]
    );
    assert_eq!(
        account_emails(conn, &tenant),
        vec![(a, "a".to_owned()), (ub, "b".to_owned())]
    );
}
