//! The order round's parameters (`OrderParams::from_bytes`), which every
//! client and helper decodes from a signed descriptor: nothing may panic,
//! and whatever decodes is canonical (re-encodes to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_analytics::query::OrderParams;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = OrderParams::from_bytes(data) {
        assert_eq!(params.to_bytes(), data, "a decoded encoding is canonical");
        assert!(params.outputs() <= params.cells().len() * 16);
    }
});
