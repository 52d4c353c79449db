//! The integration tests of `sealroom-store`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom-store --test integration
//! audit_tamper::`.

mod audit_tamper;
mod audit_vectors;
