//! A tour of `diesel-upsert`: every kind of upsert (single-row, hstore key, bulk), what it did,
//! and the SQL it sent.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The database comes from the same harness as the tests (`tests/harness/`): `DATABASE_URL` when
//! set, else the local server `postgres://postgres@127.0.0.1:5432/postgres`, else a throwaway
//! cluster started from the installed PostgreSQL binaries. The program creates a fresh database,
//! applies `migrations/`, and drops the database when it exits. The tables and models it uses
//! are in `tests/harness/schema.rs` and `tests/harness/models.rs`.
//!
//! Every statement the connection sends is recorded with Diesel's instrumentation
//! (`Connection::set_instrumentation`) and printed below the call that sent it, with line breaks
//! added before the main clauses for reading.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use diesel_upsert::{on_constraint, Error};

use harness::models::{
    Article, Membership, NewArticle, NewMembership, NewProduct, NewSubscription, NewVendorProduct,
    Product, Subscription, VendorProduct,
};
use harness::schema::{articles, memberships, products, subscriptions, vendor_products};

type AnyError = Box<dyn std::error::Error>;

fn main() -> Result<(), AnyError> {
    let conn = &mut harness::connection();
    let sql = SentSql::attach(conn);
    println!("Connected to a fresh database with the schema of migrations/ (dropped at exit).");

    update_inserts_then_updates(conn, &sql)?;
    none_fields_keep_the_stored_value(conn, &sql)?;
    update_only_restricts_the_set_list(conn, &sql)?;
    update_values_increments_a_counter(conn, &sql)?;
    update_condition_can_leave_the_row_alone(conn, &sql)?;
    skip_unchanged_writes_nothing_for_an_identical_row(conn, &sql)?;
    nothing_keeps_and_returns_the_existing_row(conn, &sql)?;
    tuple_target(conn, &sql)?;
    named_constraint_target(conn, &sql)?;
    partial_index_target(conn, &sql)?;
    hstore_key_target(conn, &sql)?;
    bulk(conn, &sql)?;
    errors(conn, &sql)?;

    println!();
    println!("Done. The database is dropped as the program exits.");
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The upserts

fn update_inserts_then_updates(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "1. Insert or update on a unique column: on_conflict_do(products::sku, ConflictAction::Update)",
        "No row has sku TEA-1 yet, so the row is inserted. The SET list names every column the \
         insert supplied except the conflict target (sku) and the primary key (id).",
    );
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(
            &NewProduct::new("TEA-1", "Green tea")
                .description("Loose leaf, 100 g")
                .qty(10)
                .price_cents(450),
        )
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step(
        "The same sku again, with a new name, qty and price: the existing row is updated in place.",
    );
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(
            &NewProduct::new("TEA-1", "Green tea, organic")
                .description("Loose leaf, 100 g")
                .qty(12)
                .price_cents(480),
        )
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));
    Ok(())
}

fn none_fields_keep_the_stored_value(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "2. A `None` field keeps the stored value",
        "NewProduct::description is None here: the column is left out of the column list (the \
         same effect as DEFAULT on an insert) and therefore out of the SET list, so the stored \
         description stays. The same holds for columns a tuple of `.eq()` values leaves out.",
    );
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(
            &NewProduct::new("TEA-1", "Green tea, organic")
                .qty(12)
                .price_cents(490),
        )
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("Only sku and name supplied: qty, price_cents and description keep their values.");
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values((products::sku.eq("TEA-1"), products::name.eq("Sencha")))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));
    Ok(())
}

fn update_only_restricts_the_set_list(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "3. .update_only(products::qty): copy only some of the supplied columns",
        "The insert supplies a new name, qty and price; on conflict only qty is copied.",
    );
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(
            &NewProduct::new("TEA-1", "Renamed tea")
                .qty(40)
                .price_cents(999),
        )
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_only(products::qty)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));
    Ok(())
}

fn update_values_increments_a_counter(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "4. .update_values(..): a counter, qty = qty + excluded.qty",
        "update_values assigns columns with any expression, on top of the default SET list. \
         Three deliveries of 5 mugs each: the first inserts, the next two add to the stock.",
    );
    for _ in 0..3 {
        let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
            .values(&NewProduct::new("MUG-1", "Mug").qty(5).price_cents(800))
            .on_conflict_do(products::sku, ConflictAction::Update)
            .update_values(products::qty.eq(products::qty + excluded(products::qty)))
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(outcome, &show_product(&row));
    }
    Ok(())
}

fn update_condition_can_leave_the_row_alone(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "5. .update_condition(..): update only when the new price is lower",
        "MUG-1 costs 800. An offer at 950 does not satisfy the condition: PostgreSQL leaves the \
         row alone and RETURNING yields nothing, so the row is read back by its key in a second \
         statement and reported as Unchanged.",
    );
    let lower_price = excluded(products::price_cents).lt(products::price_cents);
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct::new("MUG-1", "Mug").qty(5).price_cents(950))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(lower_price)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("An offer at 700 satisfies it: updated, in one statement.");
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct::new("MUG-1", "Mug").qty(5).price_cents(700))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .update_condition(lower_price)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));
    Ok(())
}

fn skip_unchanged_writes_nothing_for_an_identical_row(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "6. .skip_unchanged(): no new row version when nothing changed",
        "It adds (ROW(current values))::record *<> (ROW(new values))::record to the update condition. \
         First the row is inserted ...",
    );
    let kettle = NewProduct::new("KETTLE-1", "Kettle")
        .qty(3)
        .price_cents(3500);
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&kettle)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("... then sent again with identical values: nothing is written, the row is read back.");
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&kettle)
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("... and with a new price: the values differ, so the row is updated.");
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&kettle.price_cents(3200))
        .on_conflict_do(products::sku, ConflictAction::Update)
        .skip_unchanged()
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));
    Ok(())
}

fn nothing_keeps_and_returns_the_existing_row(
    conn: &mut PgConnection,
    sql: &SentSql,
) -> Result<(), AnyError> {
    section(
        "7. ConflictAction::Nothing: keep the existing row, and still get it back",
        "DO NOTHING writes nothing and returns nothing for an existing row; insert_and_get then \
         reads the row by the conflict key (Diesel's own do_nothing() would give NotFound here).",
    );
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct::new("TEA-1", "Some other tea"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("A new key with ConflictAction::Nothing is simply inserted, in one statement.");
    let (row, outcome): (Product, Outcome) = diesel::insert_into(products::table)
        .values(&NewProduct::new("CUP-1", "Cup"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &show_product(&row));

    step("insert(conn) returns only the primary key: of the inserted, updated or existing row.");
    let id: i64 = diesel::insert_into(products::table)
        .values(&NewProduct::new("TEA-1", "Some other tea"))
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .insert(conn)?;
    sql.print();
    println!("   => id {id}");
    Ok(())
}

fn hstore_key_target(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "11. An hstore key as conflict target",
        "articles has a unique index on ((\"title\" -> 'en')). title.key(\"en\") targets it; the key is \
         written as an escaped literal, so PostgreSQL infers the index on every execution.",
    );
    for body in ["first body", "second body"] {
        let (row, outcome): (Article, Outcome) = diesel::insert_into(articles::table)
            .values(&NewArticle::new(&[("en", "Tea"), ("ar", "شاي")], body))
            .on_conflict_do(articles::title.key("en"), ConflictAction::Update)
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(
            outcome,
            &format!(
                "Article {{ id: {}, title: {:?}, body: {:?} }}",
                row.id, row.title, row.body
            ),
        );
    }
    Ok(())
}

fn bulk(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "12. Bulk: one result per input row, in input order, matched by key",
        "TEA-1 and CUP-1 exist; BOWL-1 is new. With ConflictAction::Nothing the existing rows come \
         back unchanged and the new one inserted. Rows are sent sorted by key in one transaction.",
    );
    let rows = vec![
        NewProduct::new("TEA-1", "Tea again"),
        NewProduct::new("BOWL-1", "Bowl"),
        NewProduct::new("CUP-1", "Cup again"),
    ];
    let results: Vec<(Product, Outcome)> = diesel::insert_into(products::table)
        .values(&rows)
        .on_conflict_do(products::sku, ConflictAction::Nothing)
        .bulk_insert_and_get_with_outcome(conn)?;
    sql.print();
    for (row, outcome) in results {
        result(outcome, &show_product(&row));
    }
    Ok(())
}

fn tuple_target(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "8. A tuple target: UNIQUE (vendor, sku)",
        "on_conflict_do((vendor_products::vendor, vendor_products::sku), ..). Neither key column \
         is in the SET list.",
    );
    for (vendor, name, qty) in [
        ("acme", "Rope, 10 m", 1),
        ("acme", "Rope, 10 m", 4),
        ("globex", "Rope", 2),
    ] {
        let (row, outcome): (VendorProduct, Outcome) = diesel::insert_into(vendor_products::table)
            .values(&NewVendorProduct {
                vendor,
                sku: "ROPE-10",
                name,
                qty,
            })
            .on_conflict_do(
                (vendor_products::vendor, vendor_products::sku),
                ConflictAction::Update,
            )
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(outcome, &format!("{row:?}"));
    }
    Ok(())
}

fn named_constraint_target(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "9. A named constraint: on_constraint(\"subscriptions_email_unique\")",
        "ON CONFLICT ON CONSTRAINT names the constraint instead of its columns. The crate does \
         not know those columns when it writes the SQL, so the SET list copies every supplied \
         column, email included (to the same value).",
    );
    let mut pro = NewSubscription {
        email: "ada@example.com",
        plan: "pro",
        seats: Some(3),
    };
    for _ in 0..2 {
        let (row, outcome): (Subscription, Outcome) = diesel::insert_into(subscriptions::table)
            .values(&pro)
            .on_conflict_do(
                on_constraint("subscriptions_email_unique"),
                ConflictAction::Update,
            )
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(outcome, &format!("{row:?}"));
        pro.seats = Some(5);
    }

    step(
        "With ConflictAction::Nothing the existing row must be found by the constraint's \
         columns: they are read from pg_constraint first.",
    );
    let (row, outcome): (Subscription, Outcome) = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "ada@example.com",
            plan: "free",
            seats: None,
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Nothing,
        )
        .insert_and_get_with_outcome(conn)?;
    sql.print();
    result(outcome, &format!("{row:?}"));
    Ok(())
}

fn partial_index_target(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "10. A partial unique index: .index_predicate(..)",
        "memberships has UNIQUE (user_id, org) WHERE deleted_at IS NULL. The predicate lets \
         PostgreSQL infer that index; it is written as SQL text, never as a bind parameter. \
         User 1 has a deleted membership in acme, which does not conflict: a live one is inserted.",
    );
    diesel::insert_into(memberships::table)
        .values(&NewMembership {
            user_id: 1,
            org: "acme",
            role: "admin",
            deleted_at: Some(chrono::Utc::now()),
        })
        .execute(conn)?;
    sql.clear();
    for role in ["member", "admin"] {
        let (row, outcome): (Membership, Outcome) = diesel::insert_into(memberships::table)
            .values(&NewMembership {
                user_id: 1,
                org: "acme",
                role,
                deleted_at: None,
            })
            .on_conflict_do(
                (memberships::user_id, memberships::org),
                ConflictAction::Update,
            )
            .index_predicate(memberships::deleted_at.is_null())
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(outcome, &show_membership(&row));
    }

    step(
        "One owner per org: UNIQUE (org) WHERE role = 'owner'. A value bound in the predicate \
         becomes an escaped literal. With ConflictAction::Nothing the read-back repeats the \
         predicate.",
    );
    for user_id in [2, 3] {
        let (row, outcome): (Membership, Outcome) = diesel::insert_into(memberships::table)
            .values(&NewMembership {
                user_id,
                org: "acme",
                role: "owner",
                deleted_at: None,
            })
            .on_conflict_do(memberships::org, ConflictAction::Nothing)
            .index_predicate(memberships::role.eq("owner"))
            .insert_and_get_with_outcome(conn)?;
        sql.print();
        result(outcome, &show_membership(&row));
    }
    Ok(())
}

fn errors(conn: &mut PgConnection, sql: &SentSql) -> Result<(), AnyError> {
    section(
        "13. Errors: a target without a unique index",
        "products.name has no unique index. PostgreSQL rejects the statement (SQLSTATE 42P10); \
         the crate returns Error::NoMatchingUniqueIndex with the index that would match.",
    );
    let attempt = diesel::insert_into(products::table)
        .values(&NewProduct::new("PAN-1", "Pan"))
        .on_conflict_do(products::name, ConflictAction::Update)
        .insert::<i64, _>(conn);
    sql.print();
    match attempt {
        Err(Error::NoMatchingUniqueIndex {
            table,
            target,
            hint,
        }) => {
            println!("   => Error::NoMatchingUniqueIndex");
            println!("        table:  {table}");
            println!("        target: {target}");
            println!("        hint:   {hint}");
        }
        // A server with localized messages (lc_messages other than English) reports the same
        // failure as Error::Query: see the CHANGELOG.
        Err(other) => println!("   => error: {other}"),
        Ok(id) => println!("   => unexpectedly succeeded with id {id}"),
    }

    step("The connection is still usable (no transaction was left aborted):");
    let count: i64 = products::table.count().get_result(conn)?;
    sql.print();
    println!("   => {count} products");

    section(
        "14. Errors: an index predicate on a named constraint",
        "PostgreSQL infers partial indexes only from column and expression targets, so this \
         combination is rejected while the statement is built, before anything is sent: \
         Error::InvalidTarget.",
    );
    let attempt = diesel::insert_into(subscriptions::table)
        .values(&NewSubscription {
            email: "bob@example.com",
            plan: "pro",
            seats: None,
        })
        .on_conflict_do(
            on_constraint("subscriptions_email_unique"),
            ConflictAction::Update,
        )
        .index_predicate(subscriptions::plan.eq("pro"))
        .insert::<i64, _>(conn);
    sql.print();
    match attempt {
        Err(error @ Error::InvalidTarget { .. }) => println!("   => Error::InvalidTarget: {error}"),
        Err(other) => println!("   => error: {other}"),
        Ok(id) => println!("   => unexpectedly succeeded with id {id}"),
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Recording and printing

/// Recorded in place of a statement whose SQL could not be written.
const NOT_WRITTEN: &str = "(none: the statement was rejected while it was built, nothing was sent)";

/// The SQL of every statement the connection sent since the last `print`, with its binds.
#[derive(Clone, Default)]
struct SentSql {
    statements: Arc<Mutex<Vec<String>>>,
    /// The last statement printed, to abbreviate repeats.
    last: Arc<Mutex<String>>,
}

impl SentSql {
    fn attach(conn: &mut PgConnection) -> SentSql {
        let sent = SentSql::default();
        let statements = Arc::clone(&sent.statements);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                // Not `to_string()`: writing the SQL fails (and `to_string` would panic) when
                // the statement is rejected while it is built, before anything is sent.
                let mut text = String::new();
                if write!(text, "{query}").is_err() {
                    text = NOT_WRITTEN.to_owned();
                }
                if let Ok(mut statements) = statements.lock() {
                    statements.push(text);
                }
            }
        });
        sent
    }

    fn take(&self) -> Vec<String> {
        self.statements
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn clear(&self) {
        self.take();
    }

    fn print(&self) {
        let statements = self.take();
        if statements.is_empty() {
            println!("   SQL: (none sent)");
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for statement in statements {
            if statement == NOT_WRITTEN {
                println!("   SQL: {NOT_WRITTEN}");
                continue;
            }
            if statement.contains(" FROM pg_class c ") {
                println!("   SQL: (the catalog query: the table's key types, read once per process and table)");
                continue;
            }
            let (text, binds) = match statement.rfind(" -- binds: ") {
                Some(at) => (&statement[..at], shorten_arrays(&statement[at + 1..])),
                None => (statement.as_str(), String::new()),
            };
            if text == last.as_str() {
                println!("   SQL: (the same statement as above) {binds}");
                continue;
            }
            let mut lines = layout(text).into_iter();
            println!("   SQL: {}", lines.next().unwrap_or_default());
            for line in lines {
                println!("          {line}");
            }
            if !binds.is_empty() {
                println!("        {binds}");
            }
            *last = text.to_owned();
        }
    }
}

/// Bulk statements send each column as one binary array, which Diesel's debug output lists
/// byte by byte: each such list becomes `<binary array, N bytes>`.
fn shorten_arrays(binds: &str) -> String {
    let mut out = String::with_capacity(binds.len());
    let mut rest = binds;
    while let Some(start) = rest.find('[') {
        out.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        let end = tail.find(']').unwrap_or(tail.len());
        let inner = &tail[..end];
        let bytes = inner.split(", ").count();
        let all_bytes = bytes > 8 && inner.split(", ").all(|n| n.parse::<u8>().is_ok());
        if all_bytes {
            out.push_str(&format!("<binary array, {bytes} bytes>"));
        } else {
            out.push('[');
            out.push_str(inner);
            if end < tail.len() {
                out.push(']');
            }
        }
        rest = tail.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Splits SQL text before its main clauses (outside quoted strings and identifiers), then wraps
/// long clauses after commas. Only whitespace is added: the text is otherwise what was sent.
fn layout(sql: &str) -> Vec<String> {
    const BREAKS: &[&str] = &[
        " ON CONFLICT ",
        " DO UPDATE SET ",
        " DO NOTHING",
        " WHERE ",
        " RETURNING ",
        " FROM ",
        " JOIN ",
        " ORDER BY ",
    ];
    const WIDTH: usize = 92;
    let mut clauses = vec![String::new()];
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        let c = rest.chars().next().unwrap_or(' ');
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {
                let current = clauses.last().map(String::as_str).unwrap_or_default();
                let starts_clause = BREAKS.iter().any(|b| rest.starts_with(b))
                    && !current.ends_with(" IS DISTINCT")
                    && !current.ends_with(" *<>");
                if starts_clause && !current.is_empty() {
                    clauses.push(String::new());
                    i += 1; // the space before the keyword
                    continue;
                }
            }
        }
        if let Some(current) = clauses.last_mut() {
            current.push(c);
        }
        i += c.len_utf8();
    }
    let mut lines = Vec::new();
    for clause in clauses {
        let mut line = String::new();
        for piece in clause.split_inclusive(", ") {
            if !line.is_empty() && line.len() + piece.len() > WIDTH {
                lines.push(line.trim_end().to_owned());
                line = String::from("  ");
            }
            line.push_str(piece);
        }
        lines.push(line);
    }
    lines
}

fn section(title: &str, explanation: &str) {
    println!();
    println!("{title}");
    println!("{}", "-".repeat(title.trim_start().len().min(96)));
    for line in wrap(explanation, 96) {
        println!("   {line}");
    }
}

fn step(explanation: &str) {
    println!();
    for line in wrap(explanation, 96) {
        println!("   {line}");
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

fn result(outcome: Outcome, row: &str) {
    println!("   => Outcome::{outcome:?}: {row}");
}

fn show_product(p: &Product) -> String {
    format!(
        "Product {{ id: {}, sku: {:?}, name: {:?}, description: {:?}, qty: {}, price_cents: {} }}",
        p.id, p.sku, p.name, p.description, p.qty, p.price_cents
    )
}

fn show_membership(m: &Membership) -> String {
    format!(
        "Membership {{ id: {}, user_id: {}, org: {:?}, role: {:?}, deleted_at: {} }}",
        m.id,
        m.user_id,
        m.org,
        m.role,
        if m.deleted_at.is_some() {
            "Some(..)"
        } else {
            "None"
        }
    )
}
