//! A client round after `participate`, fed a raw receipt envelope from a chosen
//! party and a valid receipt merged with the fuzzer's bytes and signed again by
//! a helper: nothing may panic, and no bad receipt stops the valid ones from
//! being accepted afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{CLIENTS, HELPERS, fixture};
use sealroom_protocol::pb;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (shape, sender, receipt) = input;
    let (f, from) = (fixture(shape), fixture(shape).party(sender));
    let (client, chosen) = (
        usize::from(sender) % CLIENTS,
        usize::from(sender >> 4) % HELPERS,
    );
    let (mut round, _) = f.client_round(client);
    if let Ok(envelope) = pb::SignedEnvelope::decode(receipt) {
        let _ = round.on_receipt(from, &envelope);
    }
    if let Some(envelope) = f.patched_receipt(client, chosen, receipt) {
        let _ = round.on_receipt(f.helpers[chosen].me, &envelope);
    }
    for (helper, valid) in f.helpers.iter().zip(&f.receipts[client]) {
        round
            .on_receipt(helper.me, valid)
            .expect("a valid receipt is accepted");
    }
    assert!(round.all_receipts());
});
