//! Nothing: this package only holds the integration tests (`../tests/`), benchmarks
//! (`../benches/`) and examples (`../examples/`) of `diesel-upsert`, so that the published crate
//! declares no target it does not ship. Its test harness reads `migrations/` through the
//! `dev/migrations` link to the repository's `migrations/`.
