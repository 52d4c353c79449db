//! Whole rounds through the simulated network: honest rounds in both modes,
//! dropouts of clients and helpers, a lossy network, and determinism.

use crate::support;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_protocol::coordinator::Outcome;
use sealroom_protocol::pb::AbortReason;
use support::{Faults, Network, Setup, Sim, check_outcome, random_inputs};

fn run_honest(setup: Setup, seed: u64) -> Outcome {
    let mut sim = Sim::new(setup.clone(), Network::default(), seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xfeed);
    let inputs = random_inputs(&mut rng, setup.clients, setup.vector_len, setup.spec.clip());
    let run = sim.run_round(inputs, &Faults::default());
    assert_eq!(
        check_outcome(&sim, &run),
        None,
        "honest round must complete: {:?}",
        sim.refusals
    );
    assert!(
        sim.refusals.is_empty(),
        "honest round saw refusals: {:?}",
        sim.refusals
    );
    for client in &sim.clients {
        assert_eq!(
            client.receipts_ok, setup.helpers,
            "every helper acknowledged every client"
        );
    }
    run.outcome
}

#[test]
fn honest_additive_rounds_match_plaintext_bit_for_bit() {
    for (helpers, clients) in [(3, 200), (5, 60), (2, 5)] {
        let Outcome::Completed(s) = run_honest(Setup::additive(helpers, clients), helpers as u64)
        else {
            panic!("completed");
        };
        assert_eq!(s.included.len(), clients);
    }
    // Z_2^32 with a spec that fits 40 clients.
    let mut setup = Setup::additive(3, 40);
    setup.ring = sealroom_core::RingKind::Z2_32;
    setup.spec = sealroom_core::QuantSpec::new(10, 4.0, 14).expect("valid");
    run_honest(setup, 7);
}

#[test]
fn honest_threshold_rounds_match_plaintext_bit_for_bit() {
    for (t, helpers, clients) in [(2, 3, 200), (3, 5, 100), (5, 5, 20)] {
        let mut setup = Setup::threshold(t, helpers, clients);
        // With t = h no answer can be checked against another: only a
        // federation that allows unverified releases runs such rounds.
        setup.allow_unverified = t == helpers;
        let Outcome::Completed(s) = run_honest(setup, clients as u64) else {
            panic!("completed");
        };
        assert_eq!(s.included.len(), clients);
        assert_eq!(
            s.answering_helpers.len(),
            helpers,
            "all helpers answer when all hold every client"
        );
        assert_eq!(s.unverified, t == helpers, "t={t} h={helpers}");
    }
}

/// Narrow shares hold the worst case exactly: every client at +clip, at
/// −clip, and mixed, in a round whose shares the coordinator narrowed to
/// the tightest width the headroom check admits (8-bit values, 256 clients:
/// 16 bits; 7 clients: 11 bits, with padding bits in the packed vector).
#[test]
fn narrowed_rounds_sum_the_worst_case_exactly() {
    use prost::Message as _;
    use sealroom_protocol::pb;
    for (clients, len, bits) in [(256usize, 3usize, 16u32), (7, 13, 11)] {
        let mut setup = Setup::additive(3, clients);
        setup.ring = sealroom_core::RingKind::Z2_32;
        setup.spec = sealroom_core::QuantSpec::new(0, 127.0, 8).expect("valid");
        setup.vector_len = len;
        setup.min_clients = clients;
        let mut sim = Sim::new(setup.clone(), Network::default(), 21);
        for sign in [1.0, -1.0, 0.0] {
            let inputs: Vec<Vec<f64>> = (0..clients)
                .map(|c| {
                    let v = if sign == 0.0 {
                        if c % 2 == 0 { 127.0 } else { -127.0 }
                    } else {
                        sign * 127.0
                    };
                    vec![v; len]
                })
                .collect();
            let run = sim.run_round(inputs, &Faults::default());
            assert_eq!(check_outcome(&sim, &run), None, "{clients} clients, {sign}");
            let Outcome::Completed(s) = &run.outcome else {
                panic!("completed")
            };
            let expected = match sign {
                0.0 => (clients as i64).rem_euclid(2) * 127,
                _ => sign as i64 * 127 * clients as i64,
            };
            assert_eq!(s.sum, vec![expected; len]);
            let descriptor =
                pb::RoundDescriptor::decode(s.descriptor.body.as_slice()).expect("a descriptor");
            assert_eq!(descriptor.task.expect("a task").share_bits, bits);
        }
    }
}

#[test]
fn long_vectors_cross_prg_block_boundaries() {
    let mut setup = Setup::threshold(2, 3, 6);
    setup.vector_len = 5000;
    run_honest(setup.clone(), 11);
    setup = Setup::additive(3, 6);
    setup.vector_len = 5000;
    run_honest(setup, 12);
}

/// Clients drop out at random (0–50%). Each round either releases the exact
/// sum over at least min_clients clients or aborts for too few clients.
#[test]
fn client_dropouts_never_release_below_min_clients() {
    let mut aborted = 0;
    let mut completed = 0;
    for seed in 0..24u64 {
        let setup = if seed % 2 == 0 {
            Setup::additive(3, 30)
        } else {
            Setup::threshold(2, 3, 30)
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let rate = (seed % 6) as f64 * 0.1; // 0%..50%
        let offline: Vec<usize> = (0..setup.clients)
            .filter(|_| rand::RngExt::random_bool(&mut rng, rate))
            .collect();
        // Push some seeds over the edge: min_clients near the expected survivors.
        let mut setup = setup;
        setup.min_clients = 15 + (seed as usize % 4) * 2;
        let mut sim = Sim::new(setup.clone(), Network::default(), seed);
        let inputs = random_inputs(&mut rng, setup.clients, setup.vector_len, setup.spec.clip());
        let faults = Faults {
            offline_clients: offline.clone(),
            ..Faults::default()
        };
        let run = sim.run_round(inputs, &faults);
        let online = setup.clients - offline.len();
        match check_outcome(&sim, &run) {
            None => {
                completed += 1;
                let Outcome::Completed(s) = &run.outcome else {
                    unreachable!()
                };
                assert_eq!(
                    s.included.len(),
                    online,
                    "exactly the clients that uploaded"
                );
                assert!(s.included.iter().all(|c| !offline.contains(&(*c as usize))));
            }
            Some(reason) => {
                aborted += 1;
                assert_eq!(reason, AbortReason::NotEnoughClients);
                assert!(
                    online < setup.min_clients,
                    "aborted although {online} clients uploaded"
                );
            }
        }
    }
    assert!(
        completed > 0 && aborted > 0,
        "both paths exercised: {completed} completed, {aborted} aborted"
    );
}

/// Helpers drop at each step. Additive rounds abort naming the helper;
/// threshold rounds complete while t helpers remain.
#[test]
fn helper_dropouts_abort_or_complete_correctly() {
    // Dead before the round: additive aborts (helper missing), threshold 2-of-3 completes.
    let mut sim = Sim::new(Setup::additive(3, 10), Network::default(), 1);
    let inputs = random_inputs(&mut ChaCha20Rng::seed_from_u64(1), 10, 16, 8.0);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            dead_helpers: vec![1],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), Some(AbortReason::HelperMissing));
    let Outcome::Aborted(a) = &run.outcome else {
        unreachable!()
    };
    assert_eq!(a.missing_helpers, vec![1]);

    // Threshold 2-of-3 with one helper dead: only t answers are possible,
    // which cannot be checked against each other. By default the round
    // aborts; a federation that allows unverified releases gets the sum,
    // marked unverified in the signed result.
    let mut sim = Sim::new(Setup::threshold(2, 3, 10), Network::default(), 2);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            dead_helpers: vec![2],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), Some(AbortReason::Unverifiable));
    let mut setup = Setup::threshold(2, 3, 10);
    setup.allow_unverified = true;
    let mut sim = Sim::new(setup, Network::default(), 2);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            dead_helpers: vec![2],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), None);
    let Outcome::Completed(s) = &run.outcome else {
        unreachable!()
    };
    assert_eq!(s.answering_helpers, vec![0, 1]);
    assert!(s.unverified);
    let record = sim
        .coordinator_key
        .verifying_key()
        .verify::<sealroom_protocol::pb::RoundResult>(&s.result)
        .expect("signed");
    assert!(record.message().unverified, "the signed record says so");

    // Two of three down with t = 2: too few helpers report.
    let mut sim = Sim::new(Setup::threshold(2, 3, 10), Network::default(), 3);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            dead_helpers: vec![0, 2],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), Some(AbortReason::Deadline));

    // Crash after reporting (misses the inclusion set): additive aborts, and the
    // restarted helper answers nothing for that round; the next round succeeds.
    let mut sim = Sim::new(Setup::additive(3, 10), Network::default(), 4);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            crash_after_report: vec![2],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), Some(AbortReason::HelperMissing));
    let run = sim.run_round(inputs.clone(), &Faults::default());
    assert_eq!(check_outcome(&sim, &run), None, "{:?}", sim.refusals);

    // Threshold 3-of-5 with a crash after reporting: the set was sent to all 5,
    // four answer, reconstruction proceeds with a consistency check.
    let mut sim = Sim::new(Setup::threshold(3, 5, 10), Network::default(), 5);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            crash_after_report: vec![4],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), None);

    // Crash between persisting the answer and sending it: the restarted helper
    // refuses to answer again, the additive round aborts; the next round works.
    let mut sim = Sim::new(Setup::additive(3, 10), Network::default(), 6);
    let run = sim.run_round(
        inputs.clone(),
        &Faults {
            crash_before_answer_send: vec![0],
            ..Faults::default()
        },
    );
    assert_eq!(check_outcome(&sim, &run), Some(AbortReason::HelperMissing));
    assert!(
        sim.helpers[0].disk.rounds[0].answered.is_some(),
        "answer record persisted"
    );
    let run = sim.run_round(inputs, &Faults::default());
    assert_eq!(check_outcome(&sim, &run), None);
}

/// Messages delayed, duplicated, reordered and lost. Every round completes
/// correctly or aborts with a valid reason, and never releases below min_clients.
#[test]
fn lossy_network_delays_duplicates_and_reordering() {
    let mut outcomes = std::collections::BTreeMap::new();
    for seed in 0..30u64 {
        let setup = match seed % 3 {
            0 => Setup::additive(3, 25),
            1 => Setup::threshold(2, 3, 25),
            _ => Setup::threshold(3, 5, 25),
        };
        let net = Network {
            drop: [0.0, 0.002, 0.01][(seed % 3) as usize],
            duplicate: 0.2,
            max_delay_ms: 3_000,
        };
        let mut sim = Sim::new(setup.clone(), net, 100 + seed);
        let inputs = random_inputs(
            &mut ChaCha20Rng::seed_from_u64(seed),
            setup.clients,
            setup.vector_len,
            8.0,
        );
        let run = sim.run_round(inputs, &Faults::default());
        let reason = check_outcome(&sim, &run);
        if let Some(r) = reason {
            assert!(
                matches!(
                    r,
                    AbortReason::HelperMissing
                        | AbortReason::NotEnoughClients
                        | AbortReason::Deadline
                        | AbortReason::Unverifiable
                ),
                "unexpected abort reason {r:?}"
            );
        }
        *outcomes.entry(format!("{reason:?}")).or_insert(0) += 1;
    }
    assert!(
        outcomes.get("None").copied().unwrap_or(0) >= 20,
        "most rounds complete: {outcomes:?}"
    );
}

/// The same inputs and seeds produce byte-identical transcripts.
#[test]
fn same_inputs_and_seeds_give_identical_transcripts() {
    let transcript = |seed: u64| {
        let setup = Setup::threshold(2, 3, 12);
        let net = Network {
            drop: 0.01,
            duplicate: 0.1,
            max_delay_ms: 500,
        };
        let mut sim = Sim::new(setup.clone(), net, seed);
        let inputs = random_inputs(&mut ChaCha20Rng::seed_from_u64(seed), 12, 16, 8.0);
        let run = sim.run_round(
            inputs.clone(),
            &Faults {
                offline_clients: vec![3],
                ..Faults::default()
            },
        );
        let record = prost::Message::encode_to_vec(run.outcome.record());
        (sim.transcript, record)
    };
    let (a, ra) = transcript(42);
    let (b, rb) = transcript(42);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    let (c, _) = transcript(43);
    assert_ne!(a, c, "a different seed gives a different transcript");
}

/// Several rounds in a row: round ids increase, each round stands alone.
#[test]
fn consecutive_rounds_are_independent() {
    let setup = Setup::additive(3, 8);
    let mut sim = Sim::new(setup.clone(), Network::default(), 9);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut hashes = Vec::new();
    for round in 1..=4u64 {
        let inputs = random_inputs(&mut rng, setup.clients, setup.vector_len, 8.0);
        let run = sim.run_round(inputs, &Faults::default());
        assert_eq!(check_outcome(&sim, &run), None);
        let Outcome::Completed(s) = &run.outcome else {
            unreachable!()
        };
        assert_eq!(s.round_id, round);
        hashes.push(run.descriptor_hash);
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 4);
}
