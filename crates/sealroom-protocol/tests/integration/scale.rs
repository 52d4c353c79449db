//! The protocol at scale (issue #8): 10,000 simulated clients, 30% of them
//! dropping out — half never upload, half upload after the deadline — and
//! 3 helpers, in additive and in 2-of-3 threshold mode, through
//! [`sealroom_protocol::sim`]. The simulator checks every round against its
//! own account (the exact plaintext sum of exactly the included clients, or
//! the abort reason the situation calls for) and fails the run otherwise;
//! these tests check what the report says on top of that.
//!
//! Speed is printed (`cargo test -p sealroom-protocol --test integration
//! scale:: -- --nocapture`), never asserted. A 10,000-client round costs seconds even
//! so: every client verifies the whole 340 kB descriptor, which lists every
//! client, so a round's work grows with the square of the client count. The
//! 10,000-client configurations therefore run one round each; the rules that
//! do not depend on scale (several rounds with helper dropouts, the
//! `min_clients` floor) are checked with fewer clients.

use sealroom_protocol::pb::AbortReason;
use sealroom_protocol::sim::{SimConfig, SimOutcome, SimReport, simulate};

/// 10,000 clients, 3 helpers, 30% dropout (half no-shows, half late).
fn ten_thousand(threshold: Option<usize>, seed: u64) -> SimConfig {
    SimConfig {
        clients: 10_000,
        helpers: 3,
        threshold,
        min_clients: 5_000,
        vector_len: 16,
        client_dropout: 0.3,
        late_fraction: 0.5,
        rounds: 1,
        seed,
        ..SimConfig::default()
    }
}

fn print(label: &str, report: &SimReport) {
    println!(
        "{label}: {} round(s), {} completed, {} aborted in {:.2?}: {:.3} rounds/s, \
         {} messages delivered ({:.0}/s), {} ms of mock time",
        report.rounds.len(),
        report.completed(),
        report.aborted(),
        report.wall_time,
        report.rounds_per_second,
        report.messages_delivered,
        report.messages_per_second,
        report.simulated_ms,
    );
}

fn run(label: &str, config: &SimConfig) -> SimReport {
    let report = simulate(config).unwrap_or_else(|e| panic!("{label}: {e}"));
    print(label, &report);
    assert_eq!(report.rounds.len(), config.rounds);
    report
}

/// Both 10,000-client runs share one test so that only one round start's
/// descriptor copies (about 3.4 GB) are in memory at a time.
#[test]
fn ten_thousand_clients_with_30_percent_dropout() {
    // Additive: exactly the 7,000 clients whose uploads all arrived in time.
    let report = run("additive 3 helpers", &ten_thousand(None, 1));
    for round in &report.rounds {
        assert_eq!(round.outcome, SimOutcome::Completed, "{round:?}");
        assert_eq!((round.no_shows, round.late), (1_500, 1_500));
        assert_eq!(round.on_time, 7_000);
        assert_eq!(round.included, 7_000, "late clients are never included");
        assert!(
            round.late_uploads_refused >= round.late,
            "every late client had at least one upload refused: {round:?}"
        );
    }

    // Threshold 2-of-3: the coordinator may pick the two helpers that hold
    // the most clients, which can include late clients whose late upload
    // went to the third helper only.
    let report = run("threshold 2-of-3", &ten_thousand(Some(2), 2));
    for round in &report.rounds {
        assert_eq!(round.outcome, SimOutcome::Completed, "{round:?}");
        assert_eq!(round.on_time, 7_000);
        assert!(
            (7_000..=8_500).contains(&round.included),
            "{} included",
            round.included
        );
        assert!(round.late_uploads_refused >= round.late);
    }
}

/// `min_clients` one above the survivors: nothing is released, in either
/// mode. (At 1,000 clients: the rule does not depend on scale, and a
/// 10,000-client round costs tens of seconds in the dev profile.)
#[test]
fn min_clients_above_the_survivors_aborts_with_not_enough_clients() {
    for (label, threshold) in [("additive", None), ("threshold 2-of-3", Some(2))] {
        let config = SimConfig {
            clients: 1_000,
            threshold,
            // 700 clients upload in time; in threshold mode the best pair of
            // helpers may also hold some late clients (at most 150).
            min_clients: if threshold.is_none() { 701 } else { 851 },
            rounds: 2,
            seed: 3,
            ..SimConfig::default()
        };
        let report = run(label, &config);
        for round in &report.rounds {
            assert!(
                matches!(
                    round.outcome,
                    SimOutcome::Aborted {
                        reason: AbortReason::NotEnoughClients,
                        ..
                    }
                ),
                "{label}: {round:?}"
            );
            assert_eq!(round.on_time, 700);
            assert!(round.included < config.min_clients, "{round:?}");
        }
    }
}

/// Several rounds per mode with helpers failing at random: every round is
/// checked by the simulator, and both outcomes occur.
#[test]
fn many_rounds_with_client_and_helper_dropouts() {
    // Additive rounds abort when any helper is down, threshold rounds only
    // when two are: different rates give both outcomes in a few rounds.
    for (label, threshold, helper_dropout, seed) in [
        ("additive", None, 0.15, 10),
        ("threshold 2-of-3", Some(2), 0.4, 11),
    ] {
        let config = SimConfig {
            clients: 500,
            min_clients: 250,
            threshold,
            // Releases from exactly t answers, so that one helper down is
            // tolerated (marked unverified in the signed result).
            allow_unverified: threshold.is_some(),
            helper_dropout,
            rounds: 10,
            seed,
            ..SimConfig::default()
        };
        let report = run(label, &config);
        assert!(report.completed() > 0, "{label}: no round completed");
        assert!(
            report.aborted() > 0,
            "{label}: no helper dropout aborted a round"
        );
        for round in &report.rounds {
            match &round.outcome {
                SimOutcome::Completed => assert!(round.included >= config.min_clients),
                SimOutcome::Aborted { reason, .. } => {
                    assert!(!round.helpers_down.is_empty(), "{round:?}");
                    let expected = if threshold.is_none() {
                        AbortReason::HelperMissing
                    } else {
                        AbortReason::Deadline
                    };
                    assert_eq!(*reason, expected, "{round:?}");
                }
            }
        }
    }
}

/// One helper down in every round: additive rounds abort naming it; 2-of-3
/// threshold rounds complete with the other two; with two down, threshold
/// rounds abort too.
#[test]
fn helper_dropout_aborts_additive_and_is_tolerated_by_threshold() {
    let base = SimConfig {
        clients: 300,
        min_clients: 150,
        failed_helpers: vec![1],
        rounds: 3,
        seed: 20,
        ..SimConfig::default()
    };
    let report = run("additive, helper 1 down", &base);
    for round in &report.rounds {
        assert_eq!(round.helpers_down, vec![1]);
        let SimOutcome::Aborted { reason, detail } = &round.outcome else {
            panic!("an additive round completed without helper 1: {round:?}");
        };
        assert_eq!(*reason, AbortReason::HelperMissing);
        assert!(detail.contains("[1]"), "{detail}");
    }

    // 2-of-3 with one helper down: two answers cannot be checked against
    // each other, so by default the rounds abort...
    let strict = SimConfig {
        threshold: Some(2),
        ..base.clone()
    };
    let report = run("threshold 2-of-3, helper 1 down", &strict);
    for round in &report.rounds {
        assert!(
            matches!(
                round.outcome,
                SimOutcome::Aborted {
                    reason: AbortReason::Unverifiable,
                    ..
                }
            ),
            "{round:?}"
        );
    }
    // ...and complete, marked unverified, where the federation allows it.
    let threshold = SimConfig {
        allow_unverified: true,
        ..strict
    };
    let report = run(
        "threshold 2-of-3 (unverified allowed), helper 1 down",
        &threshold,
    );
    for round in &report.rounds {
        assert_eq!(round.outcome, SimOutcome::Completed, "{round:?}");
        assert!(round.included >= 210, "{round:?}");
    }

    let two_down = SimConfig {
        failed_helpers: vec![0, 2],
        ..threshold
    };
    let report = run("threshold 2-of-3, helpers 0 and 2 down", &two_down);
    for round in &report.rounds {
        assert!(
            matches!(
                round.outcome,
                SimOutcome::Aborted {
                    reason: AbortReason::Deadline,
                    ..
                }
            ),
            "{round:?}"
        );
    }
}
