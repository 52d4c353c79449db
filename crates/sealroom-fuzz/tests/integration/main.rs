//! The harnesses of `fuzz/` on fixed inputs, as one test binary (the
//! `integration` target; a module per file): a harness that breaks or
//! stops checking fails `cargo test --workspace`, not only when a fuzzer
//! happens on it.

mod fixtures;
mod node_driver;
