//! A client after it took part in a round, fed (through `Machine::handle`) a
//! raw receipt envelope from a chosen party and a valid receipt merged with
//! the fuzzer's bytes and signed again by a helper: nothing may panic, and
//! no bad receipt stops the valid ones from being accepted afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{CLIENTS, HELPERS, START, fixture, inbound};
use sealroom_protocol::machine::Inbound;
use sealroom_protocol::{Machine, pb};

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (shape, sender, receipt) = input;
    let (f, from) = (fixture(shape), fixture(shape).party(sender));
    let (client, chosen) = (
        usize::from(sender) % CLIENTS,
        usize::from(sender >> 4) % HELPERS,
    );
    let (mut machine, _) = f.participating_client(client);
    if let Ok(envelope) = pb::SignedEnvelope::decode(receipt) {
        let _ = machine.handle(START, inbound(from, Inbound::Receipt(envelope)));
    }
    if let Some(envelope) = f.patched_receipt(client, chosen, receipt) {
        let _ = machine.handle(
            START,
            inbound(f.helpers[chosen].me, Inbound::Receipt(envelope)),
        );
    }
    for (helper, valid) in f.helpers.iter().zip(&f.receipts[client]) {
        machine
            .handle(START, inbound(helper.me, Inbound::Receipt(valid.clone())))
            .expect("a valid receipt is accepted");
    }
    let round = machine.current_round().expect("the client took part");
    assert!(round.all_receipts());
});
