//! A simulated federation for protocol tests: one coordinator, `h` helpers
//! and `n` clients exchanging the state machines' messages through an
//! in-memory network with a mock clock. The network can drop, delay,
//! duplicate and reorder messages; helpers can be killed (and restarted from
//! what they persisted) and clients can drop out. No sockets, no threads:
//! everything is driven by one seeded RNG, so a run is reproducible.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use prost::Message as _;
use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, RngExt as _, SeedableRng};
use sealroom_core::{QuantSpec, RingKind, Seed};
use std::sync::Arc;

use sealroom_protocol::action::{Action, EngineJob, Message, Persist, SecretBytes};
use sealroom_protocol::client::{Client, ClientConfig};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::descriptor::{DescriptorTrust, EngineRef};
use sealroom_protocol::helper::{Helper, HelperConfig, HelperState, PersistedRound};
use sealroom_protocol::machine::{
    ClientInput, EngineOutcome, EngineResult, Inbound, Input, Participation, Start, Step,
};
use sealroom_protocol::{Machine, Millis, PartyId, SigningKey, pb};

pub const FEDERATION: &str = "sim-federation";
pub const START: Millis = Millis(1_700_000_000_000);
pub const UPLOAD_WINDOW_MS: u64 = 10_000;
pub const AGGREGATION_WINDOW_MS: u64 = 10_000;

/// What the network does to messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Network {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Largest extra delay (uniform), in ms; 0 delivers in send order.
    pub max_delay_ms: u64,
}

/// A federation's shape and policy.
#[derive(Clone, Debug)]
pub struct Setup {
    pub helpers: usize,
    pub clients: usize,
    pub threshold: Option<usize>,
    pub min_clients: usize,
    pub vector_len: usize,
    pub ring: RingKind,
    pub spec: QuantSpec,
    /// Threshold mode: release from exactly `t` answers, marked unverified.
    pub allow_unverified: bool,
    /// Engine rounds: the program the descriptor names (the simulation's
    /// helpers compute its stand-in, the element-wise maximum, in the clear).
    pub engine: Option<EngineRef>,
}

impl Setup {
    pub fn additive(helpers: usize, clients: usize) -> Setup {
        Setup {
            helpers,
            clients,
            threshold: None,
            min_clients: (clients / 2).max(2),
            vector_len: 16,
            ring: RingKind::Z2_64,
            spec: QuantSpec::new(16, 8.0, 24).expect("valid spec"),
            allow_unverified: false,
            engine: None,
        }
    }

    pub fn threshold(t: usize, helpers: usize, clients: usize) -> Setup {
        Setup {
            threshold: Some(t),
            ring: RingKind::Fp61,
            ..Setup::additive(helpers, clients)
        }
    }
}

/// Per-round fault injection.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Clients that never upload.
    pub offline_clients: Vec<usize>,
    /// Helpers that crash before the round starts and stay down.
    pub dead_helpers: Vec<usize>,
    /// Helpers that crash after sending their report and restart after the
    /// aggregation deadline (they miss the inclusion set).
    pub crash_after_report: Vec<usize>,
    /// Helpers that crash right after receiving the inclusion set and persisting
    /// the answer record, before the answer leaves; restarted later.
    pub crash_before_answer_send: Vec<usize>,
    /// Helpers whose answer is replaced by a wrong one (signed by them).
    /// Engine rounds: whose engine result is off by one in its first output.
    pub lying_helpers: Vec<usize>,
    /// Engine rounds: helpers whose engine reports a failed MAC check.
    pub failing_engines: Vec<usize>,
}

pub struct HelperNode {
    pub id: PartyId,
    pub key: SigningKey,
    pub config: HelperConfig,
    pub helper: Option<Helper>,
    pub disk: Disk,
}

/// What a helper made durable.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub rounds: Vec<PersistedRound>,
}

impl Disk {
    pub fn apply_public(&mut self, p: &Persist) {
        self.apply(p)
    }

    fn apply(&mut self, p: &Persist) {
        match p {
            Persist::HelperRound { descriptor, .. } => self.rounds.push(PersistedRound {
                descriptor: descriptor.clone(),
                uploads: Vec::new(),
                report: None,
                answered: None,
            }),
            Persist::HelperReport { round_id, report } => {
                if let Some(r) = self.round_mut(*round_id) {
                    r.report = Some(report.clone());
                }
            }
            Persist::HelperUpload {
                round_id,
                client_index,
                upload,
            } => {
                if let Some(r) = self.round_mut(*round_id) {
                    r.uploads.push((*client_index, upload.clone()));
                }
            }
            Persist::HelperAnswer {
                round_id,
                inclusion_hash,
            } => {
                if let Some(r) = self.round_mut(*round_id) {
                    r.answered = Some(*inclusion_hash);
                }
            }
            _ => {}
        }
    }

    fn round_mut(&mut self, round_id: u64) -> Option<&mut PersistedRound> {
        self.rounds.iter_mut().find(|r| {
            pb::RoundDescriptor::decode(r.descriptor.body.as_slice())
                .map(|d| d.round_id)
                .ok()
                == Some(round_id)
        })
    }

    pub fn state(&self) -> HelperState {
        HelperState {
            rounds: self.rounds.clone(),
        }
    }
}

pub struct ClientNode {
    pub id: PartyId,
    pub client: Client,
    pub receipts_ok: usize,
}

#[derive(Debug)]
struct InFlight {
    at: Millis,
    seq: u64,
    from: PartyId,
    to: PartyId,
    message: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Sim {
    pub setup: Setup,
    pub net: Network,
    pub rng: ChaCha20Rng,
    pub now: Millis,
    pub coordinator_id: PartyId,
    pub coordinator_key: SigningKey,
    pub coordinator: Coordinator,
    coordinator_config: CoordinatorConfig,
    pub helpers: Vec<HelperNode>,
    pub clients: Vec<ClientNode>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Every message sent, in order: (from, to, kind, digest of bytes).
    pub transcript: Vec<String>,
    /// Errors the state machines returned, as text (refusals are normal under faults).
    pub refusals: Vec<String>,
}

/// The result of one simulated round.
pub struct RoundRun {
    pub outcome: Outcome,
    /// Each client's input (by client index).
    pub inputs: Vec<Vec<f64>>,
    pub descriptor_hash: [u8; 32],
}

fn party(rng: &mut ChaCha20Rng) -> PartyId {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    PartyId(id)
}

impl Sim {
    pub fn new(setup: Setup, net: Network, seed: u64) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let coordinator_key = SigningKey::generate(&mut rng);
        let coordinator_id = party(&mut rng);
        let trust = DescriptorTrust::single(FEDERATION, coordinator_key.verifying_key());
        let helpers: Vec<HelperNode> = (0..setup.helpers)
            .map(|_| {
                let key = SigningKey::generate(&mut rng);
                let id = party(&mut rng);
                let config = HelperConfig {
                    me: id,
                    coordinator: coordinator_id,
                    signer: Arc::new(key.clone()),
                    trust: trust.clone(),
                };
                HelperNode {
                    id,
                    key,
                    helper: Some(Helper::new(config.clone())),
                    config,
                    disk: Disk::default(),
                }
            })
            .collect();
        let helper_keys: BTreeMap<PartyId, _> = helpers
            .iter()
            .map(|h| (h.id, h.key.verifying_key().into()))
            .collect();
        let clients = (0..setup.clients)
            .map(|_| {
                let id = party(&mut rng);
                let config = ClientConfig {
                    me: id,
                    coordinator: coordinator_id,
                    trust: trust.clone(),
                    helper_keys: helper_keys.clone(),
                };
                ClientNode {
                    id,
                    client: Client::new(config, None),
                    receipts_ok: 0,
                }
            })
            .collect();
        let coordinator_config = CoordinatorConfig {
            federation_id: FEDERATION.into(),
            signer: Arc::new(coordinator_key.clone()),
            epoch: 0,
            helpers: helpers
                .iter()
                .map(|h| (h.id, h.key.verifying_key().into()))
                .collect(),
            threshold: setup.threshold,
            min_clients: setup.min_clients,
            upload_window_ms: UPLOAD_WINDOW_MS,
            aggregation_window_ms: AGGREGATION_WINDOW_MS,
            allow_unverified: setup.allow_unverified,
        };
        let coordinator = Coordinator::new(coordinator_config.clone(), 1);
        Sim {
            setup,
            net,
            rng,
            now: START,
            coordinator_id,
            coordinator_key,
            coordinator,
            coordinator_config,
            helpers,
            clients,
            queue: BinaryHeap::new(),
            seq: 0,
            transcript: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// The coordinator's configuration (for a second coordinator in tests).
    pub fn coordinator_config(&self) -> CoordinatorConfig {
        self.coordinator_config.clone()
    }

    pub fn task(&self) -> Task {
        Task {
            engine: self.setup.engine.clone(),
            name: "sim".into(),
            vector_len: self.setup.vector_len as u64,
            ring: self.setup.ring,
            spec: self.setup.spec,
            params: Vec::new(),
            min_clients: None,
        }
    }

    fn send(&mut self, from: PartyId, to: PartyId, message: Message) {
        self.transcript.push(format!(
            "{} {from}->{to} {} {}",
            self.now.0,
            message.kind(),
            hex::encode(&blake3::hash(&message_bytes(&message)).as_bytes()[..8])
        ));
        if self.rng.random_bool(self.net.drop) {
            return;
        }
        let copies = if self.rng.random_bool(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.net.max_delay_ms == 0 {
                1
            } else {
                self.rng.random_range(1..=self.net.max_delay_ms)
            };
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now.plus(delay),
                seq: self.seq,
                from,
                to,
                message: message.clone(),
            }));
        }
    }

    /// Executes a node's actions in order (Persist first, as the contract says).
    fn run_actions(&mut self, from: PartyId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, message, .. } => self.send(from, to, message),
                Action::Persist(p) => {
                    if let Some(h) = self.helpers.iter_mut().find(|h| h.id == from) {
                        h.disk.apply(&p);
                    }
                }
                _ => {}
            }
        }
    }

    /// A coordinator step: its actions, and its outcome if it has one.
    fn coordinator_step(&mut self, step: Step, outcome: &mut Option<Outcome>) {
        let id = self.coordinator_id;
        if let Some(o) = step.outcome {
            *outcome = Some(o);
        }
        self.run_actions(id, step.actions);
    }

    /// Runs one round to its outcome. `inputs[i]` is client i's vector.
    pub fn run_round(&mut self, inputs: Vec<Vec<f64>>, faults: &Faults) -> RoundRun {
        for &h in &faults.dead_helpers {
            self.helpers[h].helper = None;
        }
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);
        let ids: Vec<PartyId> = self.clients.iter().map(|c| c.id).collect();
        let task = self.task();
        let step = self
            .coordinator
            .handle(
                self.now,
                Input::Start(Start {
                    task,
                    clients: ids,
                    nonce,
                }),
            )
            .expect("round starts");
        let round = self.coordinator.round().expect("a round runs");
        let descriptor_hash = round.descriptor().hash().0;
        let aggregation_deadline = round.descriptor().aggregation_deadline();
        let mut outcome = None;
        self.coordinator_step(step, &mut outcome);
        let mut restart_at: Vec<(Millis, usize)> = Vec::new();

        let deadline = START
            .plus(10 * (UPLOAD_WINDOW_MS + AGGREGATION_WINDOW_MS))
            .max(self.now.plus(100_000));
        while outcome.is_none() {
            let next_timer = self.next_timer(&restart_at);
            let next_msg = self.queue.peek().map(|Reverse(m)| m.at);
            let at = match (next_timer, next_msg) {
                (Some(t), Some(m)) => t.min(m),
                (t, m) => t.or(m).expect("a round always has a pending deadline"),
            };
            assert!(
                at <= deadline,
                "simulation ran past its deadline without an outcome"
            );
            self.now = self.now.max(at);
            // Restarts due now.
            let due: Vec<usize> = restart_at
                .iter()
                .filter(|(t, _)| *t <= self.now)
                .map(|(_, h)| *h)
                .collect();
            restart_at.retain(|(t, _)| *t > self.now);
            for h in due {
                self.restart_helper(h, self.now);
            }
            // Timers.
            if self
                .coordinator
                .next_deadline()
                .is_some_and(|d| d <= self.now)
            {
                let step = self
                    .coordinator
                    .handle(self.now, Input::Timer)
                    .expect("timers are never refused");
                self.coordinator_step(step, &mut outcome);
            }
            for i in 0..self.helpers.len() {
                let id = self.helpers[i].id;
                let now = self.now;
                if let Some(helper) = self.helpers[i].helper.as_mut()
                    && helper.next_deadline().is_some_and(|d| d <= now)
                {
                    let step = helper
                        .handle(now, Input::Timer)
                        .expect("timers are never refused");
                    self.run_actions(id, step.actions);
                }
            }
            // Messages due now.
            while outcome.is_none() && self.queue.peek().is_some_and(|Reverse(m)| m.at <= self.now)
            {
                let Reverse(m) = self.queue.pop().expect("peeked");
                self.deliver(
                    m,
                    &inputs,
                    faults,
                    &mut restart_at,
                    aggregation_deadline,
                    &mut outcome,
                );
            }
        }
        // Let the published outcome reach everyone (and nothing else happen);
        // helpers still down for a scheduled restart come back before the next round.
        self.queue.clear();
        for (_, h) in restart_at {
            self.restart_helper(h, self.now);
        }
        RoundRun {
            outcome: outcome.expect("finished"),
            inputs,
            descriptor_hash,
        }
    }

    /// What an engine round's program would release, computed in the clear
    /// from the inputs (the sans-IO state machines never see the engine:
    /// this stands in for `sealroom-node`'s engine run).
    fn engine_stand_in(
        &self,
        job: &EngineJob,
        inputs: &[Vec<f64>],
        faults: &Faults,
        h: usize,
    ) -> EngineResult {
        let round = job.descriptor.round_id();
        if faults.failing_engines.contains(&h) {
            return EngineResult {
                round,
                program_hash: [7; 32],
                outcome: EngineOutcome::Failed {
                    code: "mac_check".into(),
                    detail: "the batched MAC check failed".into(),
                    excluded: Vec::new(),
                },
            };
        }
        let spec = self.setup.spec;
        let mut max = vec![i128::MIN; self.setup.vector_len];
        for u in &job.uploads {
            let q = spec
                .quantize(&inputs[u.client_index as usize])
                .expect("finite inputs");
            for (m, &v) in max.iter_mut().zip(&q.values) {
                *m = (*m).max(i128::from(v));
            }
        }
        if faults.lying_helpers.contains(&h) {
            max[0] += 1;
        }
        EngineResult {
            round,
            program_hash: [7; 32],
            outcome: EngineOutcome::Outputs(max),
        }
    }

    /// Restarts helper `h` at `now` from what it persisted.
    pub fn restart_helper(&mut self, h: usize, now: Millis) {
        let node = &mut self.helpers[h];
        node.helper =
            Some(Helper::restore(node.config.clone(), node.disk.state(), now).expect("restore"));
    }

    fn next_timer(&self, restarts: &[(Millis, usize)]) -> Option<Millis> {
        let helpers = self
            .helpers
            .iter()
            .filter_map(|h| h.helper.as_ref()?.next_deadline());
        let restarts = restarts.iter().map(|(t, _)| *t);
        self.coordinator
            .next_deadline()
            .into_iter()
            .chain(helpers)
            .chain(restarts)
            .min()
    }

    fn deliver(
        &mut self,
        m: InFlight,
        inputs: &[Vec<f64>],
        faults: &Faults,
        restart_at: &mut Vec<(Millis, usize)>,
        aggregation_deadline: Millis,
        outcome: &mut Option<Outcome>,
    ) {
        let now = self.now;
        let is_inclusion = matches!(m.message, Message::InclusionSet(_));
        let Some(msg) = Inbound::from_message(m.message.clone()) else {
            return;
        };
        let input = Input::Inbound { from: m.from, msg };
        if m.to == self.coordinator_id {
            match self.coordinator.handle(now, input) {
                Ok(step) => self.coordinator_step(step, outcome),
                Err(e) => self.refusals.push(format!("coordinator: {e}")),
            }
            return;
        }
        if let Some(h) = self.helpers.iter().position(|h| h.id == m.to) {
            let id = self.helpers[h].id;
            let Some(helper) = self.helpers[h].helper.as_mut() else {
                return;
            };
            match helper.handle(now, input) {
                Ok(step) => {
                    let mut actions = step.actions;
                    if is_inclusion {
                        if faults.crash_before_answer_send.contains(&h) {
                            // Persist the answer record, then die before sending.
                            actions.retain(|a| matches!(a, Action::Persist(_)));
                            self.run_actions(id, actions);
                            self.helpers[h].helper = None;
                            restart_at.push((now.plus(1), h));
                            return;
                        }
                        if let Some(job) = actions.iter().find_map(|a| match a {
                            Action::Engine(job) => Some(job.clone()),
                            _ => None,
                        }) {
                            // The engine's stand-in: persist first (the
                            // contract), then hand the helper its result.
                            self.run_actions(id, actions);
                            let result = self.engine_stand_in(&job, inputs, faults, h);
                            let Some(helper) = self.helpers[h].helper.as_mut() else {
                                return;
                            };
                            actions = match helper.handle(now, Input::Engine(result)) {
                                Ok(step) => step.actions,
                                Err(e) => {
                                    self.refusals.push(format!("helper {h}: {e}"));
                                    return;
                                }
                            };
                        } else if faults.lying_helpers.contains(&h) {
                            let key = self.helpers[h].key.clone();
                            actions = actions.into_iter().map(|a| lie(a, &key)).collect();
                        }
                    }
                    let reported = actions.iter().any(|a| {
                        matches!(
                            a,
                            Action::Send {
                                message: Message::Report(_),
                                ..
                            }
                        )
                    });
                    self.run_actions(id, actions);
                    if reported && faults.crash_after_report.contains(&h) {
                        self.helpers[h].helper = None;
                        restart_at.push((aggregation_deadline.plus(1), h));
                    }
                }
                Err(e) if e.retryable() => {
                    // An upload that overtook its descriptor: the client retries.
                    self.seq += 1;
                    self.queue.push(Reverse(InFlight {
                        at: now.plus(5),
                        seq: self.seq,
                        from: m.from,
                        to: m.to,
                        message: m.message,
                    }));
                }
                Err(e) => self.refusals.push(format!("helper {h}: {e}")),
            }
            return;
        }
        if let Some(c) = self.clients.iter().position(|c| c.id == m.to) {
            if faults.offline_clients.contains(&c) {
                return;
            }
            let is_receipt = matches!(m.message, Message::Receipt(_));
            let node = &mut self.clients[c];
            match node.client.handle(now, input) {
                Ok(step) if is_receipt => {
                    node.receipts_ok += 1;
                    debug_assert!(step.actions.is_empty());
                }
                Ok(step) => {
                    // A descriptor: compute the input, then take part.
                    let Some(round) = step.round else { return };
                    let mut randomness = [0u8; 32];
                    self.rng.fill_bytes(&mut randomness);
                    let node = &mut self.clients[c];
                    let participated = node.client.handle(
                        now,
                        Input::Participate(Participation {
                            round,
                            input: Ok(ClientInput::new(inputs[c].clone())),
                            randomness: Seed::from_bytes(randomness),
                        }),
                    );
                    match participated {
                        Ok(step) => {
                            let id = node.id;
                            self.run_actions(id, step.actions);
                        }
                        Err(e) => self.refusals.push(format!("client {c}: {e}")),
                    }
                }
                Err(e) => self.refusals.push(format!("client {c}: {e}")),
            }
        }
    }
}

/// A lying helper: adds 1 to the first element of its answer and re-signs.
fn lie(action: Action, key: &SigningKey) -> Action {
    let Action::Send {
        to,
        round,
        message: Message::AggregateShare(bytes),
    } = action
    else {
        return action;
    };
    let mut share = pb::AggregateShare::decode(bytes.expose()).expect("own answer decodes");
    share.vector[0] = share.vector[0].wrapping_add(1);
    let env = share.header.take().expect("header");
    let mut header = pb::AggregateShareHeader::decode(env.body.as_slice()).expect("own header");
    header.vector_digest =
        sealroom_protocol::Digest::of(sealroom_protocol::ids::contexts::AGGREGATE, &share.vector)
            .0
            .to_vec();
    share.header = Some(key.sign(&header));
    Action::Send {
        to,
        round,
        message: Message::AggregateShare(SecretBytes::new(share.encode_to_vec())),
    }
}

fn message_bytes(message: &Message) -> Vec<u8> {
    match message {
        Message::Upload(b) | Message::AggregateShare(b) => b.expose().to_vec(),
        Message::Descriptor(e) | Message::Result(e) | Message::Abort(e) => e.encode_to_vec(),
        Message::Receipt(e) | Message::Report(e) | Message::InclusionSet(e) => e.encode_to_vec(),
        Message::SitOut(b) => b.clone(),
    }
}

/// Random inputs, partly beyond the clip bound (to exercise clipping).
pub fn random_inputs(
    rng: &mut ChaCha20Rng,
    clients: usize,
    len: usize,
    clip: f64,
) -> Vec<Vec<f64>> {
    (0..clients)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(-1.2 * clip..1.2 * clip))
                .collect()
        })
        .collect()
}

/// The plaintext reference: the exact sum of the included clients' quantized inputs.
pub fn plaintext_sum(spec: &QuantSpec, inputs: &[Vec<f64>], included: &[u32]) -> Vec<i64> {
    sealroom_protocol::sim::plaintext_sum(spec, inputs, included)
        .expect("finite inputs of one length, included indices in range")
}

/// Asserts the run's outcome is either a correct release over at least
/// `min_clients` clients, or an abort; returns the abort reason if aborted.
pub fn check_outcome(sim: &Sim, run: &RoundRun) -> Option<pb::AbortReason> {
    match &run.outcome {
        Outcome::Completed(summary) => {
            assert!(
                summary.included.len() >= sim.setup.min_clients,
                "released a sum over {} clients, below min_clients {}",
                summary.included.len(),
                sim.setup.min_clients
            );
            assert_eq!(
                summary.sum,
                plaintext_sum(&sim.setup.spec, &run.inputs, &summary.included),
                "secure sum differs from the plaintext sum of the inclusion set"
            );
            // The published record verifies and says the same.
            let verified = sim
                .coordinator_key
                .verifying_key()
                .verify::<pb::RoundResult>(&summary.result)
                .expect("result is signed by the coordinator");
            assert_eq!(verified.message().included_clients, summary.included);
            assert_eq!(verified.message().descriptor_hash, run.descriptor_hash);
            None
        }
        Outcome::Aborted(abort) => {
            let verified = sim
                .coordinator_key
                .verifying_key()
                .verify::<pb::AbortRecord>(&abort.record)
                .expect("abort record is signed by the coordinator");
            assert_eq!(verified.message().reason, abort.reason as i32);
            assert_eq!(verified.message().descriptor_hash, run.descriptor_hash);
            Some(abort.reason)
        }
    }
}
