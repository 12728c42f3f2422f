//! docs/sql.md against the crate: every ```sql block of the page that shows statements the crate
//! sends is compared with the statements the same call really sends, recorded through Diesel's
//! instrumentation on a real connection.
//!
//! The page wraps long statements over several lines and separates the statements of one call
//! by a blank line; the comparison collapses every run of whitespace into one space. Each
//! statement's `-- binds:` line is compared too: it is part of what the instrumentation reports.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::debug_query;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_upsert::prelude::*;
use diesel_upsert::{index_expression, on_constraint, Error};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

use crate::harness::models::*;
use crate::harness::schema::*;
use crate::harness::test_connection;

const SQL_MD: &str = include_str!("../docs/sql.md");
const SQL_MD_PATH: &str = "docs/sql.md";

/// The row "most calls below insert" (docs/sql.md).
const TEA: NewProduct<'static> = NewProduct {
    sku: "TEA-1",
    name: "Green tea",
    description: Some("Loose leaf"),
    qty: 10,
    price_cents: 450,
};

// ------------------------------------------------------------------------------ the page

/// One ```sql block of the page.
#[derive(Debug)]
struct SqlBlock {
    /// The markdown file, relative to the crate root.
    path: &'static str,
    /// The text of the nearest heading above the block, without the `#`s.
    heading: String,
    /// 0 for the first ```sql block under that heading, 1 for the second, ...
    ordinal: usize,
    /// 1-based line of the opening fence.
    line: usize,
    /// The statements of the block (separated by blank lines), whitespace-normalized.
    statements: Vec<String>,
}

fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sql_blocks(path: &'static str, markdown: &str) -> Vec<SqlBlock> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut ordinal = 0;
    // The fence of the block being read, whether it is an ```sql block, and its statements.
    let mut open: Option<(String, bool)> = None;
    let mut statements: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match &open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let fence = line[..line.len() - trimmed.len()].to_owned() + "```";
                    open = Some((fence, info.trim() == "sql"));
                    start = index + 1;
                } else if line.starts_with('#') {
                    heading = line.trim_start_matches('#').trim().to_owned();
                    ordinal = 0;
                }
            }
            Some((fence, is_sql)) => {
                if trimmed == "```" && line.starts_with(fence.trim_end_matches("```")) {
                    if *is_sql {
                        if !current.trim().is_empty() {
                            statements.push(normalize(&current));
                        }
                        blocks.push(SqlBlock {
                            path,
                            heading: heading.clone(),
                            ordinal,
                            line: start,
                            statements: std::mem::take(&mut statements),
                        });
                        ordinal += 1;
                    }
                    current.clear();
                    open = None;
                } else if *is_sql {
                    if line.trim().is_empty() {
                        if !current.trim().is_empty() {
                            statements.push(normalize(&current));
                        }
                        current.clear();
                    } else {
                        current.push_str(line);
                        current.push('\n');
                    }
                }
            }
        }
    }
    assert!(open.is_none(), "{path}: a code block is not closed");
    blocks
}

// ------------------------------------------------------------------------------ what is sent

/// Records the SQL of every statement a connection sends, except transaction control
/// (`BEGIN`, `SAVEPOINT`, `RELEASE SAVEPOINT`, ...: the page describes those in prose).
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Sent {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let mut text = String::new();
            if write!(text, "{query}").is_err() {
                text = "<a query that cannot be displayed>".to_owned();
            }
            let first = text.split_whitespace().next().unwrap_or_default();
            let control = ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"]
                .iter()
                .any(|word| first.eq_ignore_ascii_case(word));
            if !control {
                self.0.lock().unwrap().push(normalize(&text));
            }
        }
    }
}

type Call = fn(&mut PgConnection) -> diesel_upsert::Result<()>;

/// A documented call and the ```sql block that shows what it sends.
struct Case {
    heading: &'static str,
    ordinal: usize,
    /// Run the call once before recording, so that its row exists (the page shows the
    /// follow-up `SELECT` of a row left in place).
    row_exists: bool,
    call: Call,
}

/// The statements `case.call` sends on a fresh connection (inside a test transaction).
fn sent_by(case: &Case) -> Vec<String> {
    let conn = &mut test_connection();
    // Warm up, then roll back: the crate reads a table's catalog facts once per process, and
    // Diesel looks up the OIDs of types such as enums once per connection. Neither is part of
    // the statements the page shows for a call.
    let _ = conn.transaction::<(), Error, _>(|conn| {
        let _ = (case.call)(conn);
        Err(Error::Query(diesel::result::Error::RollbackTransaction))
    });
    if case.row_exists {
        (case.call)(conn).unwrap_or_else(|e| {
            panic!(
                "{} #{}: preparing the existing row failed: {e}",
                case.heading, case.ordinal
            )
        });
    }
    let sent = Sent::default();
    conn.set_instrumentation(sent.clone());
    let _ = (case.call)(conn);
    let statements = std::mem::take(&mut *sent.0.lock().unwrap());
    statements
}

// ------------------------------------------------------------------------------ the cases

/// Every documented call of docs/sql.md, in page order.
fn cases() -> Vec<Case> {
    vec![
        Case {
            heading: "`.execute(conn)` and `diesel::debug_query`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .execute(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`insert(conn)`: the primary key",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _id: i64 = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .insert(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`insert_and_get(conn)` and `insert_and_get_with_outcome(conn)`: the row",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let (_row, _outcome): (Product, Outcome) = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .insert_and_get_with_outcome(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`insert_and_get(conn)` and `insert_and_get_with_outcome(conn)`: the row",
            ordinal: 1,
            row_exists: false,
            call: |conn| {
                let _summary: ProductSummary = diesel::insert_into(products::table)
                    .values(&TEA)
                    .upsert_and_get(products::sku, conn)?;
                Ok(())
            },
        },
        Case {
            heading: "The follow-up `SELECT`: when the statement returns no row",
            ordinal: 0,
            row_exists: true,
            call: |conn| {
                let _id: i64 = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Nothing)
                    .insert(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "Columns the insert supplies",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&NewProduct {
                        description: None,
                        ..TEA
                    })
                    .upsert_and_get(products::sku, conn)?;
                Ok(())
            },
        },
        Case {
            heading: "Columns the insert supplies",
            ordinal: 1,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values((products::sku.eq("TEA-1"), products::name.eq("Sencha")))
                    .upsert_and_get(products::sku, conn)?;
                Ok(())
            },
        },
        Case {
            heading: "ConflictAction::Update",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _country: Country = diesel::insert_into(countries::table)
                    .values(&NewCountry {
                        code: "NO",
                        name: "Norway",
                        population: Some(5_500_000),
                    })
                    .upsert_and_get(countries::code, conn)?;
                Ok(())
            },
        },
        Case {
            heading: "ConflictAction::Update",
            ordinal: 1,
            row_exists: false,
            call: |conn| {
                let _task: Task = diesel::insert_into(tasks::table)
                    .values(&NewTask {
                        slug: "docs",
                        title: "Docs",
                        status: Some(TaskStatus::Doing),
                    })
                    .upsert_and_get(tasks::slug, conn)?;
                Ok(())
            },
        },
        Case {
            heading: "ConflictAction::Update",
            ordinal: 2,
            row_exists: true,
            call: |conn| {
                let (_row, _outcome): (Product, Outcome) = diesel::insert_into(products::table)
                    .values((products::sku.eq("TEA-1"), products::name.eq("x")))
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_only(products::sku)
                    .insert_and_get_with_outcome(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "ConflictAction::Nothing",
            ordinal: 0,
            row_exists: true,
            call: |conn| {
                let (_row, _outcome): (Product, Outcome) = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Nothing)
                    .insert_and_get_with_outcome(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "A column, or a tuple of columns",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: VendorProduct = diesel::insert_into(vendor_products::table)
                    .values(&NewVendorProduct {
                        vendor: "acme",
                        sku: "ROPE-10",
                        name: "Rope",
                        qty: 1,
                    })
                    .on_conflict_do(
                        (vendor_products::vendor, vendor_products::sku),
                        ConflictAction::Update,
                    )
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "A named constraint: `on_constraint(\"name\")`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let sub = NewSubscription {
                    email: "ada@example.com",
                    plan: "pro",
                    seats: Some(3),
                };
                let _row: Subscription = diesel::insert_into(subscriptions::table)
                    .values(&sub)
                    .on_conflict_do(
                        on_constraint("subscriptions_email_unique"),
                        ConflictAction::Update,
                    )
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "A named constraint: `on_constraint(\"name\")`",
            ordinal: 1,
            row_exists: true,
            call: |conn| {
                let sub = NewSubscription {
                    email: "ada@example.com",
                    plan: "pro",
                    seats: Some(3),
                };
                let _row: Subscription = diesel::insert_into(subscriptions::table)
                    .values(&sub)
                    .on_conflict_do(
                        on_constraint("subscriptions_email_unique"),
                        ConflictAction::Nothing,
                    )
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "A partial unique index: `.index_predicate(predicate)`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Membership = diesel::insert_into(memberships::table)
                    .values(&NewMembership {
                        user_id: 1,
                        org: "acme",
                        role: "admin",
                        deleted_at: None,
                    })
                    .on_conflict_do(
                        (memberships::user_id, memberships::org),
                        ConflictAction::Update,
                    )
                    .index_predicate(memberships::deleted_at.is_null())
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "A partial unique index: `.index_predicate(predicate)`",
            ordinal: 1,
            // The page inserts the owner first with a plain insert; the first run does the same.
            row_exists: true,
            call: |conn| {
                let owner = NewMembership {
                    user_id: 2,
                    org: "it's",
                    role: "owner",
                    deleted_at: None,
                };
                let _row: Membership = diesel::insert_into(memberships::table)
                    .values(&owner)
                    .on_conflict_do(memberships::org, ConflictAction::Nothing)
                    .index_predicate(memberships::role.eq("owner"))
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "An index expression: `index_expression(expression)`",
            ordinal: 0,
            row_exists: true,
            call: |conn| {
                let _row: Account = diesel::insert_into(accounts::table)
                    .values(&NewAccount::new("main", "Ada@Example.com", "Ada"))
                    .on_conflict_do(
                        index_expression(lower(accounts::email)),
                        ConflictAction::Nothing,
                    )
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_only(columns)`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_only((products::name, products::qty))
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_except(columns)`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_except(products::description)
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.touch(column)`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .skip_unchanged()
                    .touch(products::updated_at)
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_values(changeset)`",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_values(changeset)`",
            ordinal: 1,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_values((
                        products::description.eq("restocked"),
                        products::qty.eq(products::qty + 1),
                    ))
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_condition(condition)`",
            ordinal: 0,
            // The stored price, 450, is not above the new one: the row is read back.
            row_exists: true,
            call: |conn| {
                let (_row, _outcome): (Product, Outcome) = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_condition(excluded(products::price_cents).lt(products::price_cents))
                    .insert_and_get_with_outcome(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.update_condition(condition)`",
            ordinal: 1,
            row_exists: false,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_condition(
                        products::price_cents
                            .ge(100_i64)
                            .and(products::qty.lt(excluded(products::qty))),
                    )
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "`.skip_unchanged()`",
            ordinal: 0,
            // The page shows the statement alone: the row is new (or differs).
            row_exists: false,
            call: |conn| {
                let (_row, _outcome): (Product, Outcome) = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .skip_unchanged()
                    .insert_and_get_with_outcome(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "All options together",
            ordinal: 0,
            // The name is unchanged, so `skip_unchanged` leaves the row and it is read back.
            row_exists: true,
            call: |conn| {
                let _row: Product = diesel::insert_into(products::table)
                    .values(&TEA)
                    .on_conflict_do(products::sku, ConflictAction::Update)
                    .update_only((products::name, products::qty))
                    .update_values(products::qty.eq(products::qty + excluded(products::qty)))
                    .update_condition(products::price_cents.ge(0_i64))
                    .skip_unchanged()
                    .insert_and_get(conn)?;
                Ok(())
            },
        },
        Case {
            heading: "Errors",
            ordinal: 0,
            row_exists: false,
            call: |conn| {
                let result = diesel::insert_into(products::table)
                    .values(&NewProduct {
                        sku: "PAN-1",
                        name: "Pan",
                        description: None,
                        qty: 0,
                        price_cents: 0,
                    })
                    .on_conflict_do(products::name, ConflictAction::Update)
                    .insert::<i64, _>(conn);
                assert!(
                    matches!(result, Err(Error::NoMatchingUniqueIndex { .. })),
                    "{result:?}"
                );
                Ok(())
            },
        },
    ]
}

/// ```sql blocks of the page that show no statement of a documented call, with the reason.
/// None today: keep this list empty unless a block cannot be produced by a call.
const NOT_CHECKED: &[(&str, usize, &str)] = &[];

// ------------------------------------------------------------------------------ the report

/// A word diff of two normalized statements: `[-doc-]{+sent+}` around the words that differ.
fn word_diff(doc: &str, sent: &str) -> String {
    let a: Vec<&str> = doc.split(' ').collect();
    let b: Vec<&str> = sent.split(' ').collect();
    // Longest common subsequence, by dynamic programming from the end.
    let mut lcs = vec![vec![0_usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out: Vec<String> = Vec::new();
    let (mut removed, mut added): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let flush = |out: &mut Vec<String>, removed: &mut Vec<&str>, added: &mut Vec<&str>| {
        if !removed.is_empty() {
            out.push(format!("[-{}-]", removed.join(" ")));
            removed.clear();
        }
        if !added.is_empty() {
            out.push(format!("{{+{}+}}", added.join(" ")));
            added.clear();
        }
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            flush(&mut out, &mut removed, &mut added);
            out.push(a[i].to_owned());
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(b[j]);
            j += 1;
        } else {
            removed.push(a[i]);
            i += 1;
        }
    }
    flush(&mut out, &mut removed, &mut added);
    out.join(" ")
}

/// How a block differs from what was sent, or `None` when it shows exactly that.
fn mismatch(block: &SqlBlock, sent: &[String]) -> Option<String> {
    if block.statements == sent {
        return None;
    }
    let mut report = format!(
        "{}:{} (\"{}\", sql block #{} of that section): the page shows {} statement(s), \
         the call sent {}.\n",
        block.path,
        block.line,
        block.heading,
        block.ordinal,
        block.statements.len(),
        sent.len()
    );
    for n in 0..block.statements.len().max(sent.len()) {
        match (block.statements.get(n), sent.get(n)) {
            (Some(doc), Some(sent)) if doc == sent => {
                let _ = writeln!(report, "  statement {}: same", n + 1);
            }
            (Some(doc), Some(sent)) => {
                let _ = writeln!(
                    report,
                    "  statement {}: differs ([-on the page-] {{+sent+}}):\n    {}\n    page: {doc}\n    sent: {sent}",
                    n + 1,
                    word_diff(doc, sent)
                );
            }
            (Some(doc), None) => {
                let _ = writeln!(
                    report,
                    "  statement {}: on the page, not sent: {doc}",
                    n + 1
                );
            }
            (None, Some(sent)) => {
                let _ = writeln!(
                    report,
                    "  statement {}: sent, not on the page: {sent}",
                    n + 1
                );
            }
            (None, None) => unreachable!(),
        }
    }
    Some(report)
}

fn find<'a>(blocks: &'a [SqlBlock], heading: &str, ordinal: usize) -> Option<&'a SqlBlock> {
    blocks
        .iter()
        .find(|b| b.heading == heading && b.ordinal == ordinal)
}

// ------------------------------------------------------------------------------ the tests

#[test]
fn every_sql_block_of_sql_md_is_what_the_crate_sends() {
    let blocks = sql_blocks(SQL_MD_PATH, SQL_MD);
    let mut failures = Vec::new();
    for case in cases() {
        let Some(block) = find(&blocks, case.heading, case.ordinal) else {
            failures.push(format!(
                "{SQL_MD_PATH}: no sql block #{} under the heading \"{}\" (a heading renamed, a \
                 block moved?)",
                case.ordinal, case.heading
            ));
            continue;
        };
        if let Some(report) = mismatch(block, &sent_by(&case)) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documented calls do not send what {SQL_MD_PATH} shows:\n\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

#[test]
fn every_sql_block_of_sql_md_is_checked() {
    let blocks = sql_blocks(SQL_MD_PATH, SQL_MD);
    let cases = cases();
    let unchecked: Vec<String> = blocks
        .iter()
        .filter(|b| {
            !cases
                .iter()
                .any(|c| c.heading == b.heading && c.ordinal == b.ordinal)
                && !NOT_CHECKED
                    .iter()
                    .any(|&(heading, ordinal, _)| heading == b.heading && ordinal == b.ordinal)
        })
        .map(|b| {
            format!(
                "{SQL_MD_PATH}:{} (\"{}\", sql block #{})",
                b.line, b.heading, b.ordinal
            )
        })
        .collect();
    assert!(
        unchecked.is_empty(),
        "sql blocks no case of tests/docs_sql.rs checks (add a `Case`, or list the block in \
         NOT_CHECKED with the reason):\n{}",
        unchecked.join("\n")
    );
}

#[test]
fn debug_query_shows_the_statement_execute_sends() {
    let query = diesel::insert_into(products::table)
        .values(&TEA)
        .on_conflict_do(products::sku, ConflictAction::Update);
    let shown = debug_query::<Pg, _>(&query).to_string();
    assert!(!shown.contains('\n'), "{shown}");
    let blocks = sql_blocks(SQL_MD_PATH, SQL_MD);
    let block = find(&blocks, "`.execute(conn)` and `diesel::debug_query`", 0)
        .expect("the .execute(conn) block of docs/sql.md");
    assert_eq!(block.statements, vec![normalize(&shown)]);
}

/// The prose of "Columns the insert supplies": a row that supplies no column.
#[test]
fn a_row_without_columns_is_written_with_default_values() {
    #[derive(Insertable)]
    #[diesel(table_name = countries)]
    struct OnlyPopulation {
        population: Option<i64>,
    }
    let query = diesel::insert_into(countries::table)
        .values(&OnlyPopulation { population: None })
        .on_conflict_do(countries::code, ConflictAction::Nothing);
    let shown = debug_query::<Pg, _>(&query).to_string();
    let documented = r#"INSERT INTO "countries" DEFAULT VALUES ON CONFLICT ("code") DO NOTHING"#;
    assert!(
        SQL_MD.contains(&format!("`{documented}`")),
        "{SQL_MD_PATH} no longer shows `{documented}`"
    );
    assert_eq!(shown, format!("{documented} -- binds: []"));
}

/// docs/hstore.md's one ```sql block: what Diesel renders for the `.key()` query above it.
#[test]
fn the_key_query_of_hstore_md_is_what_diesel_renders() {
    let blocks = sql_blocks("docs/hstore.md", include_str!("../docs/hstore.md"));
    let block = find(&blocks, "Keys in queries: `.key()`", 0)
        .expect("the sql block under \"Keys in queries\" in docs/hstore.md");
    let query = articles::table
        .select(articles::title.key("en"))
        .filter(articles::title.key("ar").eq("شاي"))
        .order_by(articles::title.key("en").desc());
    let shown = normalize(&debug_query::<Pg, _>(&query).to_string());
    let (sql, binds) = shown
        .split_once(" -- binds: ")
        .expect("debug_query shows binds");
    assert_eq!(binds, r#"["شاي"]"#);
    if let Some(report) = mismatch(block, &[sql.to_owned()]) {
        panic!("docs/hstore.md does not show what `.key()` renders:\n{report}");
    }
}
