//! Signed envelopes from arbitrary bytes: decoding and verification as every
//! signed message type, against a fixed key, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_protocol::envelope::{MAX_SIGNED_BODY, claimed_key_id, decode_limited};
use sealroom_protocol::pb;

fuzz_target!(|data: &[u8]| {
    let key = sealroom_fuzz::fixture(0).coordinator_key.verifying_key();
    let _ = decode_limited::<pb::SignedEnvelope>(data, MAX_SIGNED_BODY);
    let Ok(envelope) = pb::SignedEnvelope::decode(data) else {
        return;
    };
    let _ = claimed_key_id(&envelope);
    let _ = key.verify::<pb::RoundDescriptor>(&envelope);
    let _ = key.verify::<pb::Receipt>(&envelope);
    let _ = key.verify::<pb::HelperReport>(&envelope);
    let _ = key.verify::<pb::InclusionSet>(&envelope);
    let _ = key.verify::<pb::AggregateShareHeader>(&envelope);
    let _ = key.verify::<pb::RoundResult>(&envelope);
    let _ = key.verify::<pb::AbortRecord>(&envelope);
});
