//! A coordinator round after `start_round`, fed a raw report envelope and
//! aggregate share from a chosen party, then every helper's report (the chosen
//! helper's merged with the fuzzer's bytes and signed again), the report
//! deadline, every helper's answer (the chosen one with the fuzzer's vector and
//! header patch) and the aggregation deadline: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sealroom_fuzz::{HELPERS, START, fixture};
use sealroom_protocol::pb;

fuzz_target!(|input: (u8, u8, &[u8], &[u8], &[u8])| {
    let (shape, sender, report, header, vector) = input;
    let (f, chosen) = (fixture(shape), usize::from(sender) % HELPERS);
    let (mut round, from) = (f.coordinator_round(), f.party(sender));
    if let Ok(envelope) = pb::SignedEnvelope::decode(report) {
        let _ = round.on_report(START, from, &envelope);
    }
    let _ = round.on_aggregate(START, from, vector);
    for (j, helper) in f.helpers.iter().enumerate() {
        let patch = if j == chosen { report } else { &[] };
        if let Some(envelope) = f.patched_report(j, patch) {
            let _ = round.on_report(START, helper.me, &envelope);
        }
    }
    if let Some(t) = round.next_deadline() {
        round.on_timer(t);
    }
    let Some(set) = round.inclusion_set().cloned() else {
        return;
    };
    for (j, helper) in f.helpers.iter().enumerate() {
        let (vector, header) = if j == chosen {
            (vector, header)
        } else {
            (&[][..], &[][..])
        };
        if let Some(bytes) = f.patched_answer(j, &set, vector, header) {
            let _ = round.on_aggregate(START, helper.me, &bytes);
        }
    }
    if let Some(t) = round.next_deadline() {
        round.on_timer(t);
    }
});
