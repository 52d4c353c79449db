//! Issue #13, finding 6: a helper that restarts re-sends the report of a
//! round it never answered; when that round is already over and the next
//! one runs, the coordinator refused it as "bound to another round", which
//! reads like a mix-up or an attack. It is refused as a message of a round
//! that is over (`too_late`), naming both rounds.

use std::sync::Arc;

use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::machine::Start;
use sealroom_protocol::{
    Inbound, Input, Machine, Millis, PartyId, RefusalCode, SigningKey, VerifiedDescriptor, pb,
};

fn start(coordinator: &mut Coordinator, at: Millis, nonce: u8) -> VerifiedDescriptor {
    coordinator
        .handle(
            at,
            Input::Start(Start {
                task: Task {
                    engine: None,
                    name: "synthetic".into(),
                    vector_len: 4,
                    ring: RingKind::Z2_64,
                    spec: QuantSpec::new(8, 1.0, 16).expect("valid spec"),
                    params: Vec::new(),
                    min_clients: None,
                },
                clients: (1..=3u8).map(|i| PartyId([i; 32])).collect(),
                nonce: [nonce; 32],
            }),
        )
        .expect("the round starts");
    coordinator.round().expect("running").descriptor().clone()
}

#[test]
fn a_report_of_a_round_that_is_over_is_refused_as_such() {
    let coordinator_key = SigningKey::from_secret_bytes(&[1; 32]);
    let helper_keys: Vec<SigningKey> = (0..2)
        .map(|h| SigningKey::from_secret_bytes(&[10 + h; 32]))
        .collect();
    let helpers: Vec<PartyId> = (0..2u8).map(|h| PartyId([0xe0 + h; 32])).collect();
    let mut coordinator = Coordinator::new(
        CoordinatorConfig {
            federation_id: "stale".into(),
            signer: Arc::new(coordinator_key),
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
        },
        1,
    );
    let t0 = Millis(1_000_000);
    let first = start(&mut coordinator, t0, 1);
    let report = helper_keys[0].sign(&pb::HelperReport {
        descriptor_hash: first.hash().0.to_vec(),
        round_id: first.round_id(),
        helper_index: 0,
        received: vec![0, 1, 2],
    });
    let resend = |report: &pb::SignedEnvelope| Input::Inbound {
        from: helpers[0],
        msg: Inbound::Report(report.clone()),
    };
    coordinator
        .handle(t0, resend(&report))
        .expect("the report is accepted");
    // Helper 1 never reports: the round aborts at its report deadline.
    let step = coordinator
        .handle(first.aggregation_deadline(), Input::Timer)
        .expect("the deadline passes");
    assert!(matches!(step.outcome, Some(Outcome::Aborted(_))));

    let later = first.aggregation_deadline().plus(10);
    let second = start(&mut coordinator, later, 2);
    assert_eq!(second.round_id(), first.round_id() + 1);
    // Helper 0, restarted, re-sends its report of the first round.
    let refused = coordinator
        .handle(later, resend(&report))
        .expect_err("a report of a round that is over is refused");
    assert_eq!(refused.code, RefusalCode::TooLate);
    assert_eq!(refused.round, Some(second.round_id()));
    let said = refused.to_string();
    assert!(
        said.contains(&format!("is for round {}, which is over", first.round_id())),
        "{said}"
    );
    assert!(!said.contains("bound to another round"), "{said}");

    // A report naming the running round's id with another descriptor is
    // still refused as bound elsewhere.
    let forged = helper_keys[0].sign(&pb::HelperReport {
        descriptor_hash: first.hash().0.to_vec(),
        round_id: second.round_id(),
        helper_index: 0,
        received: vec![0, 1, 2],
    });
    let refused = coordinator
        .handle(later, resend(&forged))
        .expect_err("refused");
    assert_eq!(refused.code, RefusalCode::RoundMismatch);
}
