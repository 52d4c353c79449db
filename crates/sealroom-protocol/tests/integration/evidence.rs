//! Release evidence: a completed round's signed parts re-derive its sum at
//! any party holding the federation's keys, and every forgery a coordinator
//! could try (a changed share, a dropped or duplicated answer, parts of two
//! rounds, a result signing another sum, an unverified threshold release)
//! is refused.

use crate::support;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_protocol::coordinator::{Outcome, RoundSummary};
use sealroom_protocol::descriptor::DescriptorTrust;
use sealroom_protocol::evidence::{self, EvidenceError, FederationKeys};
use sealroom_protocol::pb;
use support::{Faults, Network, Setup, Sim, random_inputs};

fn completed(sim: &mut Sim, seed: u64) -> RoundSummary {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let s = &sim.setup;
    let inputs = random_inputs(&mut rng, s.clients, s.vector_len, s.spec.clip());
    match sim.run_round(inputs, &Faults::default()).outcome {
        Outcome::Completed(summary) => *summary,
        Outcome::Aborted(a) => panic!("the round aborted: {}", a.detail),
    }
}

fn keys(sim: &Sim) -> FederationKeys {
    FederationKeys {
        trust: DescriptorTrust::single(support::FEDERATION, sim.coordinator_key.verifying_key()),
        helper_keys: sim
            .helpers
            .iter()
            .map(|h| (h.id, h.key.verifying_key().into()))
            .collect(),
    }
}

fn inconsistent(result: Result<evidence::VerifiedRelease, EvidenceError>, what: &str) {
    match result {
        Err(EvidenceError::Inconsistent(reason)) => {
            assert!(
                reason.contains(what),
                "{reason:?} does not mention {what:?}"
            )
        }
        other => panic!("expected an inconsistency about {what:?}, got {other:?}"),
    }
}

#[test]
fn honest_evidence_re_derives_the_released_sum() {
    for setup in [Setup::additive(3, 12), Setup::threshold(2, 3, 12)] {
        let mut sim = Sim::new(setup, Network::default(), 11);
        let summary = completed(&mut sim, 1);
        let encoded = summary.evidence().encode_to_vec();
        let verified = evidence::verify(&keys(&sim), &evidence::decode(&encoded).expect("decodes"))
            .expect("honest evidence verifies");
        assert_eq!(verified.sum, summary.sum);
        assert_eq!(verified.values, summary.values);
        assert_eq!(verified.included, summary.included);
        assert_eq!(verified.descriptor.round_id(), summary.round_id);
    }
}

#[test]
fn forged_evidence_is_refused() {
    let mut sim = Sim::new(Setup::additive(3, 12), Network::default(), 12);
    let keys = keys(&sim);
    let first = completed(&mut sim, 2);
    let second = completed(&mut sim, 3);
    let good = first.evidence();

    // A changed share no longer matches the digest its helper signed.
    let mut e = good.clone();
    e.answers[1].vector[0] ^= 1;
    inconsistent(
        evidence::verify(&keys, &e),
        "does not match its signed digest",
    );

    // An answer left out, or given twice.
    let mut e = good.clone();
    e.answers.pop();
    inconsistent(evidence::verify(&keys, &e), "answering helpers");
    let mut e = good.clone();
    e.answers.push(e.answers[0].clone());
    inconsistent(evidence::verify(&keys, &e), "answers twice");

    // Parts of two rounds.
    let mut e = good.clone();
    e.result = second.evidence().result;
    inconsistent(evidence::verify(&keys, &e), "another round");
    let mut e = good.clone();
    e.answers[0] = second.evidence().answers[0].clone();
    inconsistent(evidence::verify(&keys, &e), "another round");

    // A result the coordinator signed over another sum.
    let mut e = good.clone();
    let mut result = pb::RoundResult::decode(e.result.as_ref().expect("a result").body.as_slice())
        .expect("ours");
    result.sum_digest = sealroom_protocol::coordinator::sum_digest(&vec![0; first.sum.len()])
        .0
        .to_vec();
    e.result = Some(sim.coordinator_key.sign(&result));
    assert!(
        matches!(evidence::verify(&keys, &e), Err(EvidenceError::Sum { .. })),
        "a result over another sum was accepted"
    );

    // An answer signed by a key other than its helper's.
    let mut e = good.clone();
    let header = pb::AggregateShareHeader::decode(
        e.answers[2]
            .header
            .as_ref()
            .expect("a header")
            .body
            .as_slice(),
    )
    .expect("ours");
    e.answers[2].header = Some(sim.helpers[0].key.sign(&header));
    assert!(
        matches!(
            evidence::verify(&keys, &e),
            Err(EvidenceError::Envelope {
                part: "answer header",
                ..
            })
        ),
        "an answer under another helper's key was accepted"
    );

    // A helper this party does not trust.
    let mut partial = keys.clone();
    let first_helper = sim.helpers[0].id;
    partial.helper_keys.remove(&first_helper);
    inconsistent(
        evidence::verify(&partial, &good),
        "not one this party trusts",
    );

    // Missing parts and garbage.
    let mut e = good.clone();
    e.inclusion_set = None;
    assert_eq!(
        evidence::verify(&keys, &e).err(),
        Some(EvidenceError::Missing("inclusion set"))
    );
    assert!(matches!(
        evidence::decode(&[0xff, 0xff, 0xff]),
        Err(EvidenceError::Malformed(_))
    ));
}

#[test]
fn unverified_threshold_releases_cannot_back_a_later_phase() {
    let mut setup = Setup::threshold(3, 3, 10);
    setup.allow_unverified = true;
    let mut sim = Sim::new(setup, Network::default(), 13);
    let summary = completed(&mut sim, 4);
    assert!(summary.unverified, "t = h releases are unverified");
    assert!(matches!(
        evidence::verify(&keys(&sim), &summary.evidence()),
        Err(EvidenceError::Unverified { threshold: 3, .. })
    ));
}
