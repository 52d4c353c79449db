//! A helper that accepted a valid round, fed an upload from a chosen party (raw
//! bytes, then merged over a valid upload's header), the valid uploads, its
//! report deadline, and an inclusion set (raw, then merged over a valid set and
//! signed by the coordinator's fixed key): nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{START, fixture};
use sealroom_protocol::pb;

fuzz_target!(|input: (u8, u8, &[u8], &[u8])| {
    let (shape, sender, upload, set) = input;
    let (f, from) = (fixture(shape), fixture(shape).party(sender));
    let now = if sender & 0x80 == 0 {
        START
    } else {
        f.upload_deadline()
    };
    let mut helper = f.helper(0);
    let _ = helper.on_upload(now, from, upload);
    if let Some(bytes) = f.patched_upload(from, upload) {
        let _ = helper.on_upload(now, from, &bytes);
    }
    for (client, uploads) in f.clients.iter().zip(&f.uploads) {
        let _ = helper.on_upload(START, client.me, &uploads[0]);
    }
    helper.on_timer(f.upload_deadline());
    if let Ok(envelope) = pb::SignedEnvelope::decode(set) {
        let _ = helper.on_inclusion_set(now, &envelope);
    }
    if let Some(envelope) = f.patched_inclusion_set(set) {
        let _ = helper.on_inclusion_set(now, &envelope);
    }
});
