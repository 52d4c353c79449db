//! A coordinator that started a round, fed (through `Machine::handle`) a raw
//! report envelope, aggregate share and sit-out notice from a chosen party,
//! then every helper's report (the chosen helper's merged with the fuzzer's
//! bytes and signed again), the report deadline, every helper's answer (the
//! chosen one with the fuzzer's vector and header patch) and the aggregation
//! deadline: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{HELPERS, START, fixture, inbound};
use sealroom_protocol::action::SecretBytes;
use sealroom_protocol::machine::{Inbound, Input};
use sealroom_protocol::{Machine, pb};

fuzz_target!(|input: (u8, u8, &[u8], &[u8], &[u8])| {
    let (shape, sender, report, header, vector) = input;
    let (f, chosen) = (fixture(shape), usize::from(sender) % HELPERS);
    let (mut coordinator, from) = (f.coordinator(), f.party(sender));
    if let Ok(envelope) = pb::SignedEnvelope::decode(report) {
        let _ = coordinator.handle(START, inbound(from, Inbound::Report(envelope)));
    }
    let raw = SecretBytes::new(vector.to_vec());
    let _ = coordinator.handle(START, inbound(from, Inbound::AggregateShare(raw)));
    let _ = coordinator.handle(START, inbound(from, Inbound::SitOut(header.to_vec())));
    for (j, helper) in f.helpers.iter().enumerate() {
        let patch = if j == chosen { report } else { &[] };
        if let Some(envelope) = f.patched_report(j, patch) {
            let _ = coordinator.handle(START, inbound(helper.me, Inbound::Report(envelope)));
        }
    }
    if let Some(t) = coordinator.next_deadline() {
        let _ = coordinator.handle(t, Input::Timer);
    }
    let Some(set) = coordinator.round().and_then(|r| r.inclusion_set()).cloned() else {
        return;
    };
    for (j, helper) in f.helpers.iter().enumerate() {
        let (vector, header) = if j == chosen {
            (vector, header)
        } else {
            (&[][..], &[][..])
        };
        if let Some(bytes) = f.patched_answer(j, &set, vector, header) {
            let answer = Inbound::AggregateShare(SecretBytes::new(bytes));
            let _ = coordinator.handle(START, inbound(helper.me, answer));
        }
    }
    if let Some(t) = coordinator.next_deadline() {
        let _ = coordinator.handle(t, Input::Timer);
    }
});
