//! The integration tests of `sealroom-protocol`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom-protocol --test integration
//! scale::`.

#[path = "../support/mod.rs"]
mod support;

mod abort_size;
mod attacks;
mod evidence;
mod rounds;
mod scale;
mod stale_report;
mod vectors;
