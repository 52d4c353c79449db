//! The integration tests of `sealroom-node`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom-node --test integration
//! red_team::`.
//!
//! `tests/log_redaction.rs` and `tests/operator_logs.rs` stay binaries of
//! their own: each installs the process's one global `tracing` subscriber
//! and reads everything it captured.

mod audit_replay;
mod deploy_files;
mod e2e;
mod engine;
mod engine_rounds;
mod init;
mod metrics_http;
mod red_team;
