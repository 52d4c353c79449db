//! A helper that accepted a valid round, fed (through `Machine::handle`) an
//! upload from a chosen party (raw bytes, then merged over a valid upload's
//! header), the valid uploads, its report deadline, and an inclusion set from
//! the coordinator (raw, then merged over a valid set and signed by the
//! coordinator's fixed key): nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{COORDINATOR, START, fixture, inbound};
use sealroom_protocol::action::SecretBytes;
use sealroom_protocol::machine::{Inbound, Input};
use sealroom_protocol::{Machine, pb};

fuzz_target!(|input: (u8, u8, &[u8], &[u8])| {
    let (shape, sender, upload, set) = input;
    let (f, from) = (fixture(shape), fixture(shape).party(sender));
    let now = if sender & 0x80 == 0 {
        START
    } else {
        f.upload_deadline()
    };
    let mut helper = f.helper(0);
    let raw = SecretBytes::new(upload.to_vec());
    let _ = helper.handle(now, inbound(from, Inbound::Upload(raw)));
    if let Some(bytes) = f.patched_upload(from, upload) {
        let _ = helper.handle(now, inbound(from, Inbound::Upload(SecretBytes::new(bytes))));
    }
    for (client, uploads) in f.clients.iter().zip(&f.uploads) {
        let valid = SecretBytes::new(uploads[0].clone());
        let _ = helper.handle(START, inbound(client.me, Inbound::Upload(valid)));
    }
    let _ = helper.handle(f.upload_deadline(), Input::Timer);
    if let Ok(envelope) = pb::SignedEnvelope::decode(set) {
        let _ = helper.handle(now, inbound(COORDINATOR, Inbound::InclusionSet(envelope)));
    }
    if let Some(envelope) = f.patched_inclusion_set(set) {
        let _ = helper.handle(now, inbound(COORDINATOR, Inbound::InclusionSet(envelope)));
    }
});
