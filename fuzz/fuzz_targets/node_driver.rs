//! The production node driver of a helper (`sealroom_node::driver::Driver`
//! over a real SQLite store, stepped with `handle_at` at a fixed clock) fed
//! one real round interleaved with arbitrary messages from every party: the
//! node never stops on peer input, the real round ends at the node, and its
//! replay archive keeps the real round and only rounds the node accepted.
//! Input format: `sealroom_fuzz::node`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sealroom_fuzz::node::helper_driver(data));
