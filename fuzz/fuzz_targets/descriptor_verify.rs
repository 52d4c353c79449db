//! Round descriptors from arbitrary bytes: `VerifiedDescriptor::verify`
//! against a fixed trust (one pinned coordinator key, epochs 1..=1000) never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_protocol::{VerifiedDescriptor, pb};

fuzz_target!(|data: &[u8]| {
    let trust = &sealroom_fuzz::fixture(0).trust;
    if let Ok(envelope) = pb::SignedEnvelope::decode(data) {
        let _ = VerifiedDescriptor::verify(&envelope, trust);
    }
});
