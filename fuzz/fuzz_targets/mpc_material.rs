#![no_main]
//! The MPC engine's at-rest batch decoder (a helper's stored preprocessing
//! material) never panics, and what it accepts re-encodes byte for byte.

use libfuzzer_sys::fuzz_target;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::{Batch, BatchId};

fuzz_target!(|data: &[u8]| {
    // The header fields a real record would carry, taken from the input so
    // the fuzzer can reach the body checks.
    let me = HelperIndex::new(usize::from(data.get(5).copied().unwrap_or(0) % 3))
        .unwrap_or(HelperIndex::ALL[0]);
    let mut id = [0u8; 16];
    if let Some(b) = data.get(8..24) {
        id.copy_from_slice(b);
    }
    let epoch = data
        .get(24..32)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if let Ok(batch) = Batch::from_bytes(data, me, BatchId(id), epoch) {
        assert_eq!(&batch.to_bytes()[..], data);
    }
});
