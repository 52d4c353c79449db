//! A deterministic discrete-event simulation of whole rounds at scale
//! (issue #8): one [`Coordinator`], a few [`Helper`]s and up to ten thousand
//! [`Client`]s exchange the state machines' own messages through an
//! in-memory network on a mock clock. No sockets, no async runtime and no
//! sleeping: time is a [`Millis`] counter that jumps to the next message
//! delivery or deadline, and every message takes a seeded random latency.
//!
//! ```no_run
//! use sealroom_protocol::sim::{SimConfig, simulate};
//!
//! let report = simulate(&SimConfig {
//!     clients: 10_000,
//!     min_clients: 5_000,
//!     threshold: Some(2),
//!     ..SimConfig::default()
//! })?;
//! println!("{:.3} rounds/s", report.rounds_per_second);
//! # Ok::<(), sealroom_protocol::sim::SimError>(())
//! ```
//!
//! Each round, a share of the clients drops out ([`SimConfig::client_dropout`]):
//! some never upload (*no-shows*), the others (*late* clients,
//! [`SimConfig::late_fraction`]) upload so slowly that at least one of their
//! uploads reaches its helper at or after the upload deadline, where the
//! helper must refuse it. Helpers can be down for a whole round
//! ([`SimConfig::helper_dropout`], [`SimConfig::failed_helpers`]).
//!
//! Every round is checked against an account the simulator keeps on its own,
//! from the mock clock and the inputs — never from the state machines' view:
//!
//! * which uploads reached which live helper before the deadline: each
//!   helper's signed report must list exactly those clients, every such upload
//!   must be accepted and every later one refused as late;
//! * a completed round must include exactly the clients every answering helper
//!   holds, with the helper set the coordinator's policy calls for (the most
//!   clients in common), and release the plaintext sum of exactly those
//!   clients' quantized inputs ([`plaintext_sum`]) — bit for bit, also after
//!   dequantization, and in the signed result record;
//! * an aborted round must abort for the reason the situation calls for: a
//!   helper missing in additive mode ([`AbortReason::HelperMissing`]), too few
//!   helpers for the threshold ([`AbortReason::Deadline`]), or fewer than
//!   `min_clients` clients held by the helpers that would answer
//!   ([`AbortReason::NotEnoughClients`]) — and name the missing helpers.
//!
//! A round that breaks any of these ends the run with [`SimError::Violation`].
//!
//! **This is a simulation.** All randomness — keys, nonces, inputs, dropouts,
//! latencies and the clients' sharing randomness — comes from one ChaCha20
//! stream seeded by [`SimConfig::seed`], so a run is reproducible and its
//! shares are predictable to anyone who knows the seed. Production clients
//! draw their sharing randomness from the OS.
//!
//! **Threads and clocks.** A client's step on the descriptor depends only on
//! its own state, the descriptor, its input, its randomness and the arrival
//! time — all known when the round starts — so those steps are computed
//! ahead, on [`SimConfig::threads`] threads, and their messages are released
//! when the descriptor is delivered. Every other step runs in event order on
//! one thread, and the outcome does not depend on the thread count. The one
//! clock the simulator reads is the wall clock, to report its own speed
//! ([`SimReport::wall_time`]); protocol time is only ever the mock clock.
//!
//! **Cost.** Every client verifies the whole descriptor, which lists every
//! client (about 340 kB at 10,000 clients), and
//! [`Coordinator::start_round`] returns one copy of it per party: a round's
//! work and the start's memory are quadratic in the client count (about
//! 3.4 GB for 10,000 clients). [`simulate`] refuses configs whose fan-out
//! would exceed [`MAX_DESCRIPTOR_FANOUT_BYTES`]. A client's round state holds
//! the descriptor too, so receipts are verified for the first
//! [`RECEIPT_SAMPLE`] participating clients of each round only; the others'
//! receipts are delivered and counted.
//!
//! [`Coordinator`]: crate::coordinator::Coordinator
//! [`Coordinator::start_round`]: crate::coordinator::Coordinator::start_round
//! [`Helper`]: crate::helper::Helper
//! [`Client`]: crate::client::Client

use std::time::{Duration, Instant};

use sealroom_core::{QuantSpec, RingKind};

use crate::ids::Millis;
use crate::machine::Refusal;
use crate::pb::AbortReason;

/// Clients per round whose receipts are verified (see the module doc).
pub const RECEIPT_SAMPLE: usize = 64;
/// Most helpers a simulation may have: the coordinator's choice of helper
/// set is checked against every subset of the live helpers.
pub const MAX_SIM_HELPERS: usize = 10;
/// Largest total size of the descriptor copies one round start may return.
pub const MAX_DESCRIPTOR_FANOUT_BYTES: u64 = 4 << 30;
/// Most threads a run uses.
pub const MAX_SIM_THREADS: usize = 64;
/// Most rounds one run may have.
pub const MAX_SIM_ROUNDS: usize = 1_000_000;

const FEDERATION: &str = "sealroom-sim";
const START: Millis = Millis(1_700_000_000_000);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Clients listed in every round.
    pub clients: usize,
    /// Helpers.
    pub helpers: usize,
    /// `Some(t)` for Shamir t-of-h, `None` for additive n-of-n.
    pub threshold: Option<usize>,
    /// Smallest releasable inclusion set.
    pub min_clients: usize,
    /// Elements per client vector.
    pub vector_len: usize,
    /// Ring of the shares; `None` picks Z_2^64 for additive and F_p for
    /// threshold mode.
    pub ring: Option<RingKind>,
    /// Quantization of the inputs.
    pub spec: QuantSpec,
    /// Share of the clients that drop out of each round, in `[0, 1]`
    /// (rounded down to a whole number of clients).
    pub client_dropout: f64,
    /// Share of the dropped-out clients that upload late rather than never,
    /// in `[0, 1]`.
    pub late_fraction: f64,
    /// Probability that each helper is down for a whole round, in `[0, 1]`.
    pub helper_dropout: f64,
    /// Helpers (by index) that are down in every round.
    pub failed_helpers: Vec<usize>,
    /// Rounds to run, one after the other.
    pub rounds: usize,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// How long clients may upload.
    pub upload_window_ms: u64,
    /// How long after the upload window helpers have to report and answer.
    pub aggregation_window_ms: u64,
    /// Each message takes between 1 ms and this long to arrive (uniform).
    /// Must be below a quarter of the aggregation window and half the upload
    /// window, so that only dropouts — never the latency — make a party late.
    pub max_latency_ms: u64,
    /// Threshold mode: whether a round with exactly `threshold` live
    /// helpers may release an unchecked sum (see
    /// [`crate::coordinator::CoordinatorConfig::allow_unverified`]).
    pub allow_unverified: bool,
    /// Threads that compute the clients' steps (0: one per available core;
    /// at most [`MAX_SIM_THREADS`] are used). The outcome does not depend on
    /// it; only the speed does.
    pub threads: usize,
}

impl Default for SimConfig {
    /// 1,000 clients, 3 helpers (additive), 30% client dropout (half of it
    /// late), `min_clients` 500, 16-element vectors, 3 rounds.
    fn default() -> Self {
        SimConfig {
            clients: 1_000,
            helpers: 3,
            threshold: None,
            min_clients: 500,
            vector_len: 16,
            ring: None,
            spec: QuantSpec::new(16, 8.0, 24).expect("a valid constant spec"),
            client_dropout: 0.3,
            late_fraction: 0.5,
            helper_dropout: 0.0,
            failed_helpers: Vec::new(),
            rounds: 3,
            seed: 0,
            upload_window_ms: 10_000,
            aggregation_window_ms: 10_000,
            max_latency_ms: 200,
            allow_unverified: false,
            threads: 0,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// Every round, in order.
    pub rounds: Vec<RoundReport>,
    /// Wall-clock time of the whole run (setup included).
    pub wall_time: Duration,
    /// Rounds per wall-clock second.
    pub rounds_per_second: f64,
    /// Messages the state machines sent.
    pub messages_sent: u64,
    /// Messages delivered to their recipient (all sent messages except those
    /// to a helper that is down and the published outcome records, which no
    /// state machine consumes).
    pub messages_delivered: u64,
    /// Delivered messages per wall-clock second.
    pub messages_per_second: f64,
    /// Mock time the run covered.
    pub simulated_ms: u64,
}

impl SimReport {
    /// Rounds that released a sum.
    pub fn completed(&self) -> usize {
        self.rounds
            .iter()
            .filter(|r| matches!(r.outcome, SimOutcome::Completed))
            .count()
    }

    /// Rounds that aborted.
    pub fn aborted(&self) -> usize {
        self.rounds.len() - self.completed()
    }
}

/// One checked round.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    /// Round id.
    pub round_id: u64,
    /// How it ended.
    pub outcome: SimOutcome,
    /// Clients in the inclusion set (for an abort: the size of the set the
    /// answering helpers held in common).
    pub included: usize,
    /// Clients whose every upload reached every live helper in time.
    pub on_time: usize,
    /// Clients that never uploaded.
    pub no_shows: usize,
    /// Clients with at least one upload past the deadline.
    pub late: usize,
    /// Uploads the helpers refused as late.
    pub late_uploads_refused: usize,
    /// Helpers down for the round.
    pub helpers_down: Vec<usize>,
    /// Messages sent during the round.
    pub messages: u64,
}

/// How a round ended.
#[derive(Clone, Debug, PartialEq)]
pub enum SimOutcome {
    /// The sum was released (and matched the plaintext sum).
    Completed,
    /// Nothing was released, for a reason the simulation agreed with.
    Aborted {
        /// The reason in the signed abort record.
        reason: AbortReason,
        /// The coordinator's account.
        detail: String,
    },
}

/// Why a simulation stopped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration cannot be simulated.
    #[error("invalid simulation config: {field}: {reason}")]
    InvalidConfig {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The coordinator refused to issue a round (the descriptor it would
    /// sign breaks a rule: headroom, threshold, `min_clients`, …).
    #[error("the coordinator refused to issue round {round}: {source}")]
    RoundRefused {
        /// The round that could not start (1-based).
        round: u64,
        /// Why.
        source: Refusal,
    },
    /// A state machine did something the simulation's own account rejects.
    #[error("round {round}: {detail}")]
    Violation {
        /// Round id.
        round: u64,
        /// What went wrong.
        detail: String,
    },
}

/// Runs `config.rounds` rounds and checks each one; see the module doc.
pub fn simulate(config: &SimConfig) -> Result<SimReport, SimError> {
    let started = Instant::now();
    validate(config)?;
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(MAX_SIM_THREADS);
    let mut world = world::World::new(config, threads);
    let mut rounds = Vec::with_capacity(config.rounds.min(1024));
    for _ in 0..config.rounds {
        rounds.push(world.run_round()?);
        // Leave a gap so rounds never share a millisecond.
        world.now = world.now.plus(1);
    }
    let wall_time = started.elapsed();
    let secs = wall_time.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(SimReport {
        rounds_per_second: rounds.len() as f64 / secs,
        messages_per_second: world.delivered as f64 / secs,
        rounds,
        wall_time,
        messages_sent: world.sent,
        messages_delivered: world.delivered,
        simulated_ms: world.now.0 - START.0,
    })
}

fn validate(c: &SimConfig) -> Result<(), SimError> {
    let invalid = |field, reason: String| Err(SimError::InvalidConfig { field, reason });
    for (field, p) in [
        ("client_dropout", c.client_dropout),
        ("late_fraction", c.late_fraction),
        ("helper_dropout", c.helper_dropout),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return invalid(field, format!("{p} is not a probability in [0, 1]"));
        }
    }
    if c.clients < 2 {
        return invalid("clients", format!("{} clients; at least 2", c.clients));
    }
    if !(2..=MAX_SIM_HELPERS).contains(&c.helpers) {
        return invalid(
            "helpers",
            format!(
                "{} helpers; the simulator runs 2..={MAX_SIM_HELPERS}",
                c.helpers
            ),
        );
    }
    if let Some(&h) = c.failed_helpers.iter().find(|&&h| h >= c.helpers) {
        return invalid(
            "failed_helpers",
            format!("helper {h} does not exist (there are {})", c.helpers),
        );
    }
    if c.vector_len == 0 || c.vector_len > 1 << 16 {
        return invalid(
            "vector_len",
            format!("{} is outside 1..=65536", c.vector_len),
        );
    }
    let input_bytes = (c.clients as u64) * (c.vector_len as u64) * 8;
    if input_bytes > 1 << 30 {
        return invalid(
            "vector_len",
            format!(
                "{} clients × {} elements need {input_bytes} bytes of inputs per round; at most 1 GiB",
                c.clients, c.vector_len
            ),
        );
    }
    let parties = (c.clients + c.helpers) as u64;
    let fanout = parties * (parties * 34 + 512);
    if fanout > MAX_DESCRIPTOR_FANOUT_BYTES {
        return invalid(
            "clients",
            format!(
                "{} clients: starting a round returns one descriptor copy per party, about {} MB in all, above the simulator's limit of {} MB",
                c.clients,
                fanout >> 20,
                MAX_DESCRIPTOR_FANOUT_BYTES >> 20
            ),
        );
    }
    if c.max_latency_ms == 0 {
        return invalid("max_latency_ms", "must be at least 1".into());
    }
    if c.upload_window_ms <= c.max_latency_ms.saturating_mul(2) {
        return invalid(
            "upload_window_ms",
            format!(
                "{} ms must exceed twice max_latency_ms ({} ms): a descriptor and an upload must fit in the window",
                c.upload_window_ms, c.max_latency_ms
            ),
        );
    }
    if c.aggregation_window_ms <= c.max_latency_ms.saturating_mul(4) {
        return invalid(
            "aggregation_window_ms",
            format!(
                "{} ms must exceed four times max_latency_ms ({} ms): reports, the inclusion set and the answers must fit in it",
                c.aggregation_window_ms, c.max_latency_ms
            ),
        );
    }
    // Millis arithmetic saturates; keep the run far from u64::MAX anyway.
    if c.rounds > MAX_SIM_ROUNDS {
        return invalid(
            "rounds",
            format!("{} rounds; at most {MAX_SIM_ROUNDS}", c.rounds),
        );
    }
    // Millis arithmetic saturates; keep the run far from u64::MAX anyway.
    let run_ms = c
        .upload_window_ms
        .checked_add(c.aggregation_window_ms)
        .and_then(|w| w.checked_add(c.max_latency_ms))
        .and_then(|w| w.checked_mul(c.rounds as u64 + 1));
    if run_ms.is_none_or(|ms| ms > u64::MAX / 4) {
        return invalid(
            "upload_window_ms",
            "the windows times the rounds overflow the mock clock".into(),
        );
    }
    Ok(())
}

mod check;
mod world;

/// The exact sum of the `included` clients' inputs (indices into `inputs`),
/// each quantized with `spec` on its own — the plaintext reference a secure
/// round must equal bit for bit. `None` if an index is out of range, the
/// inputs differ in length, a value is NaN or infinite, or the sum overflows
/// `i64`.
pub fn plaintext_sum(spec: &QuantSpec, inputs: &[Vec<f64>], included: &[u32]) -> Option<Vec<i64>> {
    let len = inputs.first().map_or(0, Vec::len);
    let mut sum = vec![0i64; len];
    for &c in included {
        let input = inputs.get(usize::try_from(c).ok()?)?;
        if input.len() != len {
            return None;
        }
        let q = spec.quantize(input).ok()?;
        for (s, v) in sum.iter_mut().zip(&q.values) {
            *s = s.checked_add(*v)?;
        }
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            clients: 40,
            min_clients: 20,
            rounds: 2,
            ..SimConfig::default()
        }
    }

    #[test]
    fn runs_are_reproducible_and_independent_of_the_thread_count() {
        let run = |threads, seed| {
            simulate(&SimConfig {
                threads,
                seed,
                threshold: Some(2),
                ..small()
            })
            .expect("valid run")
        };
        let one = run(1, 7);
        assert_eq!(one.completed(), 2);
        for threads in [2, 3, 1_000_000] {
            let other = run(threads, 7);
            assert_eq!(one.rounds, other.rounds, "{threads} threads");
            assert_eq!(one.messages_sent, other.messages_sent);
            assert_eq!(one.simulated_ms, other.simulated_ms);
        }
        assert_ne!(one.simulated_ms, run(1, 8).simulated_ms, "the seed matters");
    }

    #[test]
    fn late_clients_are_refused_and_counted() {
        let report = simulate(&SimConfig {
            client_dropout: 0.5,
            late_fraction: 1.0,
            ..small()
        })
        .expect("valid run");
        for round in &report.rounds {
            assert_eq!((round.late, round.no_shows, round.on_time), (20, 0, 20));
            assert!(round.late_uploads_refused >= 20, "{round:?}");
            assert_eq!(round.included, 20);
        }
    }

    #[test]
    fn plaintext_sum_adds_exactly_the_included_quantized_inputs() {
        let spec = QuantSpec::new(2, 8.0, 7).expect("valid spec");
        let inputs = vec![vec![0.25, -1.0], vec![9.0, 0.5], vec![0.125, 0.0]];
        // 0.125 · 4 = 0.5 rounds to even (0); 9.0 clips to 8.0.
        assert_eq!(
            plaintext_sum(&spec, &inputs, &[0, 1, 2]),
            Some(vec![33, -2])
        );
        assert_eq!(plaintext_sum(&spec, &inputs, &[1]), Some(vec![32, 2]));
        assert_eq!(plaintext_sum(&spec, &inputs, &[]), Some(vec![0, 0]));
        assert_eq!(plaintext_sum(&spec, &inputs, &[3]), None, "out of range");
        assert_eq!(plaintext_sum(&spec, &[vec![f64::NAN]], &[0]), None);
        assert_eq!(plaintext_sum(&spec, &[vec![1.0], vec![]], &[0, 1]), None);
    }

    #[test]
    fn invalid_configs_are_errors_not_panics() {
        let cases: Vec<SimConfig> = vec![
            SimConfig {
                clients: 0,
                ..small()
            },
            SimConfig {
                helpers: 0,
                ..small()
            },
            SimConfig {
                helpers: 11,
                ..small()
            },
            SimConfig {
                client_dropout: f64::NAN,
                ..small()
            },
            SimConfig {
                late_fraction: 1.5,
                ..small()
            },
            SimConfig {
                helper_dropout: -0.1,
                ..small()
            },
            SimConfig {
                vector_len: 0,
                ..small()
            },
            SimConfig {
                max_latency_ms: 0,
                ..small()
            },
            SimConfig {
                upload_window_ms: 10,
                ..small()
            },
            SimConfig {
                aggregation_window_ms: 0,
                ..small()
            },
            SimConfig {
                failed_helpers: vec![3],
                ..small()
            },
            SimConfig {
                clients: 50_000,
                ..small()
            },
            SimConfig {
                rounds: usize::MAX,
                ..small()
            },
        ];
        for config in cases {
            assert!(
                matches!(simulate(&config), Err(SimError::InvalidConfig { .. })),
                "{config:?}"
            );
        }
        // Rules the coordinator enforces come back as its refusal.
        for config in [
            SimConfig {
                min_clients: 41,
                ..small()
            },
            SimConfig {
                min_clients: 1,
                ..small()
            },
            SimConfig {
                threshold: Some(1),
                ..small()
            },
            SimConfig {
                threshold: Some(2),
                ring: Some(RingKind::Z2_64),
                ..small()
            },
        ] {
            assert!(
                matches!(
                    simulate(&config),
                    Err(SimError::RoundRefused { round: 1, .. })
                ),
                "{config:?}"
            );
        }
    }
}
