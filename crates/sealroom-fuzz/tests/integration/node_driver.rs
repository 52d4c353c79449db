//! The `node_driver` harnesses on fixed inputs: empty, garbage, and one
//! operation of every kind in every position, so `cargo test` checks the
//! harness itself (its real round completes, its checks hold) without a
//! fuzzer.

use sealroom_fuzz::node::{coordinator_driver, helper_driver};

/// One operation: header and payload (see `sealroom_fuzz::node`).
fn op(slot: u8, sender: u8, kind: u8, time: u8, payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(payload.len()).expect("a short payload");
    let mut bytes = vec![slot << 4 | kind & 0x0f, time << 4 | sender & 0x0f, len];
    bytes.extend(payload);
    bytes
}

/// Inputs every harness must take: nothing, a cut-off header, garbage, a
/// length beyond the input, and each kind with an empty payload (patched
/// kinds then carry the valid message) and a garbage one, in every slot.
fn inputs() -> Vec<Vec<u8>> {
    let garbage: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(151)).collect();
    let mut inputs = vec![
        Vec::new(),
        vec![0x11; 2],
        garbage.clone(),
        vec![0x12, 0, 200, 1, 2, 3],
        vec![0x12, 0, 0xff, 1, 2, 3],
    ];
    for slot in 0..8u8 {
        let mut empty = Vec::new();
        let mut garbled = Vec::new();
        for kind in 0..11u8 {
            let sender = kind.wrapping_mul(3).wrapping_add(slot);
            empty.extend(op(slot, sender, kind, slot * 2, &[]));
            garbled.extend(op(slot, sender, kind, 15 - slot, &garbage[..64]));
        }
        inputs.push(empty);
        inputs.push(garbled);
    }
    inputs
}

#[test]
fn helper_harness_takes_malformed_input() {
    for (i, input) in inputs().into_iter().enumerate() {
        eprintln!("input {i}");
        helper_driver(&input);
    }
}

#[test]
fn coordinator_harness_takes_malformed_input() {
    for (i, input) in inputs().into_iter().enumerate() {
        eprintln!("input {i}");
        coordinator_driver(&input);
    }
}

#[test]
fn helper_survives_a_client_that_uploads_first() {
    // Client 0's valid upload (sender 4 is the first client) before its
    // real one: the real one is a duplicate, and the round still ends.
    helper_driver(&op(1, 4, 3, 0, &[]));
}

#[test]
fn coordinator_survives_an_early_timer() {
    // A timer past the report deadline before any report: the round aborts,
    // and that is an outcome.
    coordinator_driver(&op(1, 0, 6, 15, &[]));
}

/// Finding (node_driver), fixed: a descriptor the coordinator signed with a
/// round id above `i64::MAX` passed `VerifiedDescriptor::verify`, the helper
/// machine accepted it, the store refused to persist it
/// (`StoreError::RoundIdOutOfRange`), so `Driver::handle_at` returned `Err`
/// and the helper node stopped. Verification now refuses such a round id.
/// The fuzzer's input was the operation this test builds.
#[test]
fn helper_survives_a_round_id_the_store_cannot_hold() {
    // After the real descriptor, the coordinator's: the real one re-signed
    // with round_id (field 3) = 2^63.
    let mut patch = vec![0x00, 0x18];
    patch.extend([0x80; 9]);
    patch.push(0x01);
    helper_driver(&op(1, 0, 1, 0, &patch));
}
