//! The integration tests of `sealroom-mpc`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom-mpc --test integration
//! validity::`.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod clients;
mod krum;
mod material;
mod noise;
mod online;
mod preproc;
mod robust;
mod robustness;
mod validity;
mod vectors;
