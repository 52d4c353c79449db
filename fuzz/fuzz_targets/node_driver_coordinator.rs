//! The production node driver of the coordinator (`Driver` over a real
//! SQLite store, stepped with `handle_at` at a fixed clock) fed one real
//! round — the admin's start, the helpers' reports and answers — interleaved
//! with arbitrary messages from every party: the node never stops on peer
//! input, the real round reaches an outcome, and the replay archive keeps it
//! and only it. Input format: `sealroom_fuzz::node`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sealroom_fuzz::node::coordinator_driver(data));
