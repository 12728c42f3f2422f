//! Prints the migration SQL for an hstore column whose keys must be unique or present.
//!
//! ```text
//! cargo run --example hstore_migrations -- <table> <column> <key>...
//! cargo run --example hstore_migrations -- articles title en ar
//! ```
//!
//! Prints, for `up.sql` and `down.sql`: a unique index on each key alone, one on all the keys
//! together (when there are several), and a CHECK constraint requiring all of them. Keep the
//! statements you need. Nothing connects to a database.

use diesel_upsert::hstore::{required_keys, unique_index, MigrationSql};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (table, column, keys) = match args.as_slice() {
        [table, column, keys @ ..] if !keys.is_empty() => (table, column, keys),
        _ => {
            eprintln!("usage: hstore_migrations <table> <column> <key>...");
            return ExitCode::FAILURE;
        }
    };
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();

    let mut statements: Vec<(String, diesel_upsert::Result<MigrationSql>)> = keys
        .iter()
        .map(|key| {
            (
                format!("unique key {key:?}"),
                unique_index(table, column, &[key]),
            )
        })
        .collect();
    if keys.len() > 1 {
        statements.push((
            format!("unique together {keys:?}"),
            unique_index(table, column, &keys),
        ));
    }
    statements.push((
        format!("required {keys:?}"),
        required_keys(table, column, &keys),
    ));

    let mut up = Vec::new();
    let mut down = Vec::new();
    for (what, sql) in statements {
        match sql {
            Ok(sql) => {
                up.push(format!("-- {what}\n{}", sql.up));
                down.push(format!("-- {what}\n{}", sql.down));
            }
            Err(e) => {
                eprintln!("error: {what}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    down.reverse();
    println!("-- up.sql\n{}\n", up.join("\n"));
    println!("-- down.sql\n{}", down.join("\n"));
    ExitCode::SUCCESS
}
