//! Compile-fail tests: the messages a misuse of the terminals gets (`tests/ui/*.stderr`, made by
//! `TRYBUILD=overwrite cargo test --test lib ui::`; they follow the compiler's wording, so a new
//! toolchain may need them regenerated).

#[test]
fn a_terminal_on_the_wrong_kind_of_records_says_which_terminals_fit() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("../tests/ui/*.rs");
}
