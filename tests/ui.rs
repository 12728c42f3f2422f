//! Compile-fail tests: the messages a misuse of the terminals gets (`tests/ui/*.stderr`, made by
//! `TRYBUILD=overwrite cargo test --all-features --test lib ui::`; they follow the compiler's
//! wording, so a new toolchain may need them regenerated). The messages are those of the
//! build with every feature, the README's test command: with the `async` feature the compiler
//! names the terminals' trait by its path, since two traits are called `RunUpsertDsl`.

#[test]
#[cfg_attr(
    not(feature = "async"),
    ignore = "the expected messages are those of `cargo test --all-features`"
)]
fn a_terminal_on_the_wrong_kind_of_records_says_which_terminals_fit() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("../tests/ui/*.rs");
}
