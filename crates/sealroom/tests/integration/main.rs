//! The integration tests of `sealroom`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom --test integration
//! chaos::`.
//!
//! `tests/wan.rs` (network namespaces, root only, every test ignored by a
//! plain `cargo test`) stays a binary of its own.

#[path = "../common/mod.rs"]
mod common;

mod audit_chain;
mod bench_cli;
mod chaos;
mod cli;
mod operator_cli;
mod otlp_cli;
mod otlp_nodes;
mod red_team_audit;
mod revocation;
mod rotation;
