//! Issue #13, finding 1: every signed record a coordinator writes must be one
//! its own verifiers accept, or its audit log fails `sealroom audit verify`
//! (and helpers refuse the published record). An abort carries the helpers'
//! signed reports as evidence; at the protocol's own limits (16 helpers,
//! 100,000 clients, every report naming every client) those reports alone
//! are about 4.5 MiB, past the 4 MiB every verifier allows a signed body.

use std::sync::Arc;

use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::descriptor::MAX_CLIENTS;
use sealroom_protocol::envelope::MAX_SIGNED_BODY;
use sealroom_protocol::machine::Start;
use sealroom_protocol::{Inbound, Input, Machine, Millis, PartyId, SigningKey, pb};

const HELPERS: usize = sealroom_core::additive::MAX_HELPERS;

fn party(tag: u8, i: usize) -> PartyId {
    let mut id = [tag; 32];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    PartyId(id)
}

#[test]
fn an_abort_at_the_protocols_limits_stays_verifiable() {
    let coordinator_key = SigningKey::from_secret_bytes(&[1; 32]);
    let helper_keys: Vec<SigningKey> = (0..HELPERS)
        .map(|h| SigningKey::from_secret_bytes(&[10 + h as u8; 32]))
        .collect();
    let helpers: Vec<PartyId> = (0..HELPERS).map(|h| party(0xee, h)).collect();
    let clients: Vec<PartyId> = (0..MAX_CLIENTS).map(|c| party(0xcc, c)).collect();
    let config = CoordinatorConfig {
        federation_id: "limits".into(),
        signer: Arc::new(coordinator_key.clone()),
        epoch: 0,
        helpers: helpers
            .iter()
            .zip(&helper_keys)
            .map(|(id, k)| (*id, k.verifying_key().into()))
            .collect(),
        threshold: None,
        min_clients: 2,
        upload_window_ms: 1_000,
        aggregation_window_ms: 1_000,
        allow_unverified: false,
    };
    let mut coordinator = Coordinator::new(config, 1);
    let start = Millis(1_000_000);
    coordinator
        .handle(
            start,
            Input::Start(Start {
                task: Task {
                    engine: None,
                    name: "limits".into(),
                    vector_len: 1,
                    ring: RingKind::Z2_64,
                    spec: QuantSpec::new(8, 1.0, 16).expect("valid spec"),
                    params: Vec::new(),
                    min_clients: None,
                },
                clients,
                nonce: [7; 32],
            }),
        )
        .expect("the round starts");
    let descriptor = coordinator.round().expect("running").descriptor().clone();
    // Every helper holds every client's share and says so.
    let received: Vec<u32> = (0..MAX_CLIENTS as u32).collect();
    let mut reports_bytes = 0;
    for (h, key) in helper_keys.iter().enumerate() {
        let report = key.sign(&pb::HelperReport {
            descriptor_hash: descriptor.hash().0.to_vec(),
            round_id: descriptor.round_id(),
            helper_index: h as u32,
            received: received.clone(),
        });
        reports_bytes += prost::Message::encoded_len(&report);
        coordinator
            .handle(
                start,
                Input::Inbound {
                    from: helpers[h],
                    msg: Inbound::Report(report),
                },
            )
            .expect("the report is accepted");
    }
    assert!(
        reports_bytes > MAX_SIGNED_BODY,
        "the reports alone ({reports_bytes} bytes) exceed a signed body's limit"
    );
    // No helper answers: the round aborts with every report as evidence.
    let step = coordinator
        .handle(descriptor.aggregation_deadline().plus(1), Input::Timer)
        .expect("the deadline passes");
    let Some(Outcome::Aborted(abort)) = step.outcome else {
        panic!("the round aborts");
    };
    assert!(
        abort.record.body.len() <= MAX_SIGNED_BODY,
        "an abort of {} bytes is more than any verifier accepts",
        abort.record.body.len()
    );
    let verified = coordinator_key
        .verifying_key()
        .verify::<pb::AbortRecord>(&abort.record)
        .expect("the coordinator's own abort verifies");
    let record = verified.message();
    assert_eq!(record.reason(), pb::AbortReason::HelperMissing);
    assert_eq!(record.missing_helpers.len(), HELPERS);
    assert!(
        !record.evidence.is_empty() && record.evidence.len() < HELPERS,
        "as many reports as fit are kept: {}",
        record.evidence.len()
    );
    assert!(
        record.detail.contains(&format!(
            "{} of {HELPERS} signed messages",
            HELPERS - record.evidence.len()
        )),
        "the detail says what was left out: {}",
        record.detail
    );
    assert_eq!(abort.detail, record.detail);
}
