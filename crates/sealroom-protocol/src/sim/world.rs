//! The simulator's engine: the parties, the in-flight messages ordered by
//! delivery time, and the mock clock that jumps from one event to the next.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, RngExt as _, SeedableRng};
use sealroom_core::{RingKind, Seed};

use super::{FEDERATION, RECEIPT_SAMPLE, RoundReport, START, SimConfig, SimError};
use crate::action::{Action, Message};
use crate::client::{Client, ClientConfig};
use crate::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use crate::descriptor::DescriptorTrust;
use crate::envelope::{PartyKeys, SigningKey, VerifyingKey};
use crate::helper::{Helper, HelperConfig};
use crate::ids::{Millis, PartyId};
use crate::machine::{
    ClientInput, Inbound, Input, Machine, Participation, Refusal, RefusalCode, Start, Step,
};
use crate::pb;

/// Who a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Coordinator,
    Helper(usize),
    Client(usize),
}

/// A message's contents. The coordinator sends every party its own copy of
/// the descriptor; identical copies are shared to keep the queue small.
enum Payload {
    Message(Message),
    Descriptor(Arc<pb::SignedEnvelope>),
}

struct InFlight {
    at: Millis,
    seq: u64,
    from: PartyId,
    to: Node,
    payload: Payload,
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

/// What a client does in a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Behaviour {
    OnTime,
    NoShow,
    /// Uploads to the helpers in the mask arrive at or after the deadline.
    Late(u32),
}

pub(super) struct HelperNode {
    pub(super) id: PartyId,
    pub(super) key: VerifyingKey,
    pub(super) helper: Helper,
}

/// The simulator's own account of a round.
pub(super) struct RoundState {
    pub(super) round_id: u64,
    pub(super) deadline: Millis,
    pub(super) inputs: Vec<Vec<f64>>,
    pub(super) behaviour: Vec<Behaviour>,
    pub(super) down: Vec<bool>,
    /// `held[h][c]`: client c's upload reached live helper h before the deadline.
    pub(super) held: Vec<Vec<bool>>,
    pub(super) late_refused: usize,
    pub(super) messages: u64,
    /// The clients whose receipts are checked (see [`RECEIPT_SAMPLE`]):
    /// which helpers' receipts each verified.
    pub(super) receipts: BTreeMap<usize, Vec<bool>>,
    /// The signed inclusion set, once the coordinator sent it.
    pub(super) inclusion_set: Option<pb::SignedEnvelope>,
    /// The round's outcome, once the coordinator has one.
    pub(super) outcome: Option<Outcome>,
    /// The descriptor the coordinator sent the clients, and when each
    /// client's copy arrives.
    client_descriptor: Option<Arc<pb::SignedEnvelope>>,
    descriptor_at: Vec<Option<Millis>>,
    /// Client steps computed ahead of their delivery, by client index.
    prepared: Vec<Option<Prepared>>,
}

/// A client's step on receiving the descriptor, computed ahead of time (in
/// parallel): it depends only on the client's own state, the descriptor,
/// its input, its randomness and the arrival time, all known once the round
/// starts. Its actions are executed when the descriptor is delivered.
struct Prepared {
    at: Millis,
    step: Result<Step, Refusal>,
    keep: bool,
}

pub(super) struct World<'a> {
    pub(super) config: &'a SimConfig,
    pub(super) now: Millis,
    pub(super) coordinator_key: VerifyingKey,
    pub(super) helpers: Vec<HelperNode>,
    pub(super) sent: u64,
    pub(super) delivered: u64,
    rng: ChaCha20Rng,
    threads: usize,
    coordinator_id: PartyId,
    coordinator: Coordinator,
    clients: Vec<(PartyId, Client)>,
    nodes: HashMap<PartyId, Node>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

fn party(rng: &mut ChaCha20Rng) -> PartyId {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    PartyId(id)
}

impl<'a> World<'a> {
    pub(super) fn new(config: &'a SimConfig, threads: usize) -> World<'a> {
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let coordinator_signing = SigningKey::generate(&mut rng);
        let coordinator_id = party(&mut rng);
        let trust = DescriptorTrust::single(FEDERATION, coordinator_signing.verifying_key());
        let mut nodes = HashMap::with_capacity(config.clients + config.helpers + 1);
        nodes.insert(coordinator_id, Node::Coordinator);
        let helpers: Vec<HelperNode> = (0..config.helpers)
            .map(|h| {
                let key = SigningKey::generate(&mut rng);
                let id = party(&mut rng);
                nodes.insert(id, Node::Helper(h));
                HelperNode {
                    id,
                    key: key.verifying_key(),
                    helper: Helper::new(HelperConfig {
                        me: id,
                        coordinator: coordinator_id,
                        signer: Arc::new(key),
                        trust: trust.clone(),
                    }),
                }
            })
            .collect();
        let helper_keys: BTreeMap<PartyId, PartyKeys> =
            helpers.iter().map(|h| (h.id, h.key.into())).collect();
        let clients = (0..config.clients)
            .map(|c| {
                let id = party(&mut rng);
                nodes.insert(id, Node::Client(c));
                let client = Client::new(
                    ClientConfig {
                        me: id,
                        coordinator: coordinator_id,
                        trust: trust.clone(),
                        helper_keys: helper_keys.clone(),
                    },
                    None,
                );
                (id, client)
            })
            .collect();
        let coordinator = Coordinator::new(
            CoordinatorConfig {
                federation_id: FEDERATION.into(),
                signer: Arc::new(coordinator_signing.clone()),
                epoch: 0,
                helpers: helpers.iter().map(|h| (h.id, h.key.into())).collect(),
                threshold: config.threshold,
                min_clients: config.min_clients,
                upload_window_ms: config.upload_window_ms,
                aggregation_window_ms: config.aggregation_window_ms,
                allow_unverified: config.allow_unverified,
            },
            1,
        );
        World {
            config,
            rng,
            threads: threads.max(1),
            now: START,
            coordinator_id,
            coordinator_key: coordinator_signing.verifying_key(),
            coordinator,
            helpers,
            clients,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            sent: 0,
            delivered: 0,
        }
    }

    fn task(&self) -> Task {
        let ring = self.config.ring.unwrap_or(match self.config.threshold {
            None => RingKind::Z2_64,
            Some(_) => RingKind::Fp61,
        });
        Task {
            engine: None,
            name: "sim".into(),
            vector_len: self.config.vector_len as u64,
            ring,
            spec: self.config.spec,
            params: Vec::new(),
            min_clients: None,
        }
    }

    fn latency(&mut self) -> u64 {
        self.rng.random_range(1..=self.config.max_latency_ms)
    }

    /// Draws who drops out of this round and how.
    fn behaviours(&mut self) -> Vec<Behaviour> {
        let n = self.config.clients;
        let h = self.config.helpers;
        let dropped = ((n as f64) * self.config.client_dropout).floor() as usize;
        let late = ((dropped as f64) * self.config.late_fraction).round() as usize;
        // A partial Fisher–Yates shuffle picks the dropped clients.
        let mut order: Vec<usize> = (0..n).collect();
        for i in 0..dropped.min(n) {
            let j = self.rng.random_range(i..n);
            order.swap(i, j);
        }
        let mut behaviour = vec![Behaviour::OnTime; n];
        for (k, &c) in order.iter().take(dropped).enumerate() {
            behaviour[c] = if k < late {
                // One helper surely gets the upload late; each other one
                // with probability 1/2, so some late clients are held by
                // some helpers and not others.
                let mut mask = 1u32 << self.rng.random_range(0..h);
                for j in 0..h {
                    if self.rng.random_bool(0.5) {
                        mask |= 1 << j;
                    }
                }
                Behaviour::Late(mask)
            } else {
                Behaviour::NoShow
            };
        }
        behaviour
    }

    pub(super) fn run_round(&mut self) -> Result<RoundReport, SimError> {
        let config = self.config;
        let behaviour = self.behaviours();
        let mut down: Vec<bool> = (0..config.helpers)
            .map(|h| config.failed_helpers.contains(&h))
            .collect();
        for d in &mut down {
            *d |= self.rng.random_bool(config.helper_dropout);
        }
        let clip = config.spec.clip();
        let inputs: Vec<Vec<f64>> = (0..config.clients)
            .map(|_| {
                (0..config.vector_len)
                    .map(|_| self.rng.random_range(-1.2 * clip..1.2 * clip))
                    .collect()
            })
            .collect();
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);

        let round_number = self.coordinator.next_round_id();
        let ids: Vec<PartyId> = self.clients.iter().map(|(id, _)| *id).collect();
        let start = Start {
            task: self.task(),
            clients: ids,
            nonce,
        };
        let step = self
            .coordinator
            .handle(self.now, Input::Start(start))
            .map_err(|source| SimError::RoundRefused {
                round: round_number,
                source,
            })?;
        let deadline = self
            .coordinator
            .round()
            .map(|r| r.descriptor().upload_deadline())
            .ok_or_else(|| SimError::Violation {
                round: round_number,
                detail: "the coordinator started no round".into(),
            })?;
        let mut state = RoundState {
            round_id: round_number,
            deadline,
            inputs,
            behaviour,
            down,
            held: vec![vec![false; config.clients]; config.helpers],
            late_refused: 0,
            messages: 0,
            receipts: BTreeMap::new(),
            inclusion_set: None,
            outcome: None,
            client_descriptor: None,
            descriptor_at: vec![None; config.clients],
            prepared: Vec::new(),
        };
        let coordinator_id = self.coordinator_id;
        self.run_actions(&mut state, coordinator_id, step.actions)?;
        self.prepare_clients(&mut state)?;

        while state.outcome.is_none() {
            let next_timer = self.next_timer(&state);
            let next_message = self.queue.peek().map(|Reverse(m)| m.at);
            let Some(at) = next_timer.into_iter().chain(next_message).min() else {
                break;
            };
            self.now = self.now.max(at);
            let now = self.now;
            if self.coordinator.next_deadline().is_some_and(|d| d <= now) {
                let step = self
                    .coordinator
                    .handle(now, Input::Timer)
                    .map_err(|e| violation(&state, format!("the coordinator's timer: {e}")))?;
                self.coordinator_step(&mut state, step)?;
            }
            for h in 0..self.helpers.len() {
                if state.down[h] {
                    continue;
                }
                if self.helpers[h]
                    .helper
                    .next_deadline()
                    .is_some_and(|d| d <= now)
                {
                    let id = self.helpers[h].id;
                    let step = self.helpers[h]
                        .helper
                        .handle(now, Input::Timer)
                        .map_err(|e| violation(&state, format!("helper {h}'s timer: {e}")))?;
                    self.run_actions(&mut state, id, step.actions)?;
                }
            }
            while state.outcome.is_none() && self.queue.peek().is_some_and(|Reverse(m)| m.at <= now)
            {
                let Some(Reverse(m)) = self.queue.pop() else {
                    break;
                };
                self.deliver(&mut state, m)?;
            }
        }
        self.queue.clear();
        let report = self.check(&state)?;
        for node in &mut self.helpers {
            node.helper.prune(2);
        }
        Ok(report)
    }

    fn coordinator_step(&mut self, state: &mut RoundState, step: Step) -> Result<(), SimError> {
        let coordinator_id = self.coordinator_id;
        if let Some(outcome) = step.outcome {
            state.outcome = Some(outcome);
        }
        self.run_actions(state, coordinator_id, step.actions)
    }

    fn next_timer(&self, state: &RoundState) -> Option<Millis> {
        let helpers = self
            .helpers
            .iter()
            .enumerate()
            .filter(|(h, _)| !state.down[*h])
            .filter_map(|(_, node)| node.helper.next_deadline());
        self.coordinator
            .next_deadline()
            .into_iter()
            .chain(helpers)
            .min()
    }

    fn enqueue(&mut self, at: Millis, from: PartyId, to: Node, payload: Payload) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            payload,
        }));
    }

    /// Executes a step's actions in order. Persist actions need no disk
    /// here: no simulated party restarts.
    fn run_actions(
        &mut self,
        state: &mut RoundState,
        from: PartyId,
        actions: Vec<Action>,
    ) -> Result<(), SimError> {
        let sender = self.nodes.get(&from).copied();
        for action in actions {
            let Action::Send { to, message, .. } = action else {
                continue;
            };
            self.sent += 1;
            state.messages += 1;
            let Some(&to_node) = self.nodes.get(&to) else {
                return Err(SimError::Violation {
                    round: state.round_id,
                    detail: format!("a {} was sent to unknown party {to}", message.kind()),
                });
            };
            let mut at = self.now.plus(self.latency());
            let payload = match message {
                Message::Descriptor(shared) => {
                    if let Node::Client(c) = to_node {
                        state.descriptor_at[c].get_or_insert(at);
                        state
                            .client_descriptor
                            .get_or_insert_with(|| Arc::clone(&shared));
                    }
                    Payload::Descriptor(shared)
                }
                // Published outcomes: no state machine takes them.
                Message::Result(_) | Message::Abort(_) => continue,
                Message::InclusionSet(env) => {
                    state.inclusion_set.get_or_insert_with(|| env.clone());
                    Payload::Message(Message::InclusionSet(env))
                }
                Message::Upload(bytes) => {
                    if let (Some(Node::Client(c)), Node::Helper(h)) = (sender, to_node)
                        && let Behaviour::Late(mask) = state.behaviour[c]
                        && mask & (1 << h) != 0
                    {
                        at = state
                            .deadline
                            .plus(self.rng.random_range(0..=self.config.max_latency_ms));
                    }
                    Payload::Message(Message::Upload(bytes))
                }
                other => Payload::Message(other),
            };
            self.enqueue(at, from, to_node, payload);
        }
        Ok(())
    }

    fn deliver(&mut self, state: &mut RoundState, m: InFlight) -> Result<(), SimError> {
        let now = self.now;
        match m.to {
            Node::Coordinator => {
                self.delivered += 1;
                let from = self.nodes.get(&m.from).copied();
                let msg = match (m.payload, from) {
                    (Payload::Message(Message::Report(env)), Some(Node::Helper(h))) => {
                        self.check_report(state, h, &env)?;
                        Inbound::Report(env)
                    }
                    (Payload::Message(Message::AggregateShare(bytes)), _) => {
                        Inbound::AggregateShare(bytes)
                    }
                    _ => {
                        return Err(violation(
                            state,
                            "the coordinator got an unexpected message".into(),
                        ));
                    }
                };
                let step = self
                    .coordinator
                    .handle(now, Input::Inbound { from: m.from, msg })
                    .map_err(|e| {
                        violation(state, format!("the coordinator refused a helper: {e}"))
                    })?;
                self.coordinator_step(state, step)
            }
            Node::Helper(h) => {
                if state.down[h] {
                    return Ok(());
                }
                self.delivered += 1;
                let id = self.helpers[h].id;
                let payload = m.payload;
                let msg = match &payload {
                    Payload::Descriptor(env) => Inbound::Descriptor((**env).clone()),
                    Payload::Message(message) => Inbound::from_message(message.clone())
                        .ok_or_else(|| violation(state, format!("helper {h} got an outcome")))?,
                };
                let upload_from = match (&msg, self.nodes.get(&m.from).copied()) {
                    (Inbound::Upload(_), Some(Node::Client(c))) => Some(c),
                    (Inbound::Upload(_), _) => {
                        return Err(violation(state, "an upload from a non-client".into()));
                    }
                    _ => None,
                };
                let result = self.helpers[h]
                    .helper
                    .handle(now, Input::Inbound { from: m.from, msg });
                let step = match (upload_from, result) {
                    (Some(c), Ok(step)) if now < state.deadline => {
                        state.held[h][c] = true;
                        step
                    }
                    (Some(c), Ok(_)) => {
                        return Err(violation(
                            state,
                            format!(
                                "helper {h} accepted client {c}'s upload {} ms after the deadline",
                                now.0 - state.deadline.0
                            ),
                        ));
                    }
                    (Some(_), Err(e)) if e.code == RefusalCode::Late && now >= state.deadline => {
                        state.late_refused += 1;
                        return Ok(());
                    }
                    (Some(_), Err(e)) if e.retryable() => {
                        // The upload overtook the descriptor: the client
                        // tries again shortly, as a real one does.
                        let at = now.plus(self.latency());
                        self.enqueue(at, m.from, Node::Helper(h), payload);
                        return Ok(());
                    }
                    (Some(c), Err(e)) => {
                        return Err(violation(
                            state,
                            format!("helper {h} refused client {c}'s upload: {e}"),
                        ));
                    }
                    (None, Ok(step)) => step,
                    (None, Err(e)) => {
                        return Err(violation(
                            state,
                            format!("helper {h} refused a message: {e}"),
                        ));
                    }
                };
                self.run_actions(state, id, step.actions)
            }
            Node::Client(c) => {
                self.delivered += 1;
                match m.payload {
                    Payload::Descriptor(env) => self.participate(state, c, &env),
                    Payload::Message(Message::Receipt(env)) => {
                        let round = state.round_id;
                        if let Some(seen) = state.receipts.get_mut(&c) {
                            self.clients[c]
                                .1
                                .handle(
                                    now,
                                    Input::Inbound {
                                        from: m.from,
                                        msg: Inbound::Receipt(env),
                                    },
                                )
                                .map_err(|e| SimError::Violation {
                                    round,
                                    detail: format!("client {c} refused a receipt: {e}"),
                                })?;
                            if let Some(h) = self.helpers.iter().position(|h| h.id == m.from) {
                                seen[h] = true;
                            }
                        }
                        Ok(())
                    }
                    _ => Err(violation(
                        state,
                        format!("client {c} got an unexpected message"),
                    )),
                }
            }
        }
    }

    /// Computes every participating client's step on the descriptor ahead
    /// of its delivery, on `threads` threads. The sharing randomness is drawn
    /// here, in client order, so the run does not depend on the thread count.
    fn prepare_clients(&mut self, state: &mut RoundState) -> Result<(), SimError> {
        let Some(envelope) = state.client_descriptor.clone() else {
            return Ok(());
        };
        // (arrival, randomness, whether to keep the round state for receipts)
        let mut kept = 0;
        let jobs: Vec<Option<(Millis, Seed, bool)>> = state
            .behaviour
            .iter()
            .zip(&state.descriptor_at)
            .map(|(behaviour, at)| match (behaviour, at) {
                (Behaviour::NoShow, _) | (_, None) => None,
                (_, Some(at)) => {
                    let mut randomness = [0u8; 32];
                    self.rng.fill_bytes(&mut randomness);
                    kept += 1;
                    Some((*at, Seed::from_bytes(randomness), kept <= RECEIPT_SAMPLE))
                }
            })
            .collect();
        let chunk = self.clients.len().div_ceil(self.threads).max(1);
        let envelope: &pb::SignedEnvelope = &envelope;
        let inputs = &state.inputs;
        let done = std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .clients
                .chunks_mut(chunk)
                .zip(jobs.chunks(chunk))
                .enumerate()
                .map(|(k, (clients, jobs))| {
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        for (i, ((_, client), job)) in clients.iter_mut().zip(jobs).enumerate() {
                            let c = k * chunk + i;
                            let Some((at, seed, keep)) = job else {
                                continue;
                            };
                            let step = client_step(client, *at, envelope, &inputs[c], seed);
                            out.push((
                                c,
                                Prepared {
                                    at: *at,
                                    step,
                                    keep: *keep,
                                },
                            ));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join())
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|_| SimError::Violation {
            round: state.round_id,
            detail: "a client step panicked".into(),
        })?;
        state.prepared = (0..self.clients.len()).map(|_| None).collect();
        for (c, prepared) in done.into_iter().flatten() {
            state.prepared[c] = Some(prepared);
        }
        Ok(())
    }

    /// A client receives the descriptor: its prepared step if it was
    /// computed for this descriptor and this time, else the step now.
    fn participate(
        &mut self,
        state: &mut RoundState,
        c: usize,
        envelope: &Arc<pb::SignedEnvelope>,
    ) -> Result<(), SimError> {
        if state.behaviour[c] == Behaviour::NoShow {
            return Ok(());
        }
        let now = self.now;
        let prepared = state.prepared.get_mut(c).and_then(Option::take);
        let shared = state
            .client_descriptor
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, envelope));
        let (step, keep) = match prepared {
            Some(p) if p.at == now && shared => (p.step, p.keep),
            _ => {
                let mut randomness = [0u8; 32];
                self.rng.fill_bytes(&mut randomness);
                let keep = state.receipts.len() < RECEIPT_SAMPLE;
                let seed = Seed::from_bytes(randomness);
                (
                    client_step(
                        &mut self.clients[c].1,
                        now,
                        envelope,
                        &state.inputs[c],
                        &seed,
                    ),
                    keep,
                )
            }
        };
        let step = step.map_err(|e| SimError::Violation {
            round: state.round_id,
            detail: format!("client {c} refused to take part: {e}"),
        })?;
        if keep {
            state.receipts.insert(c, vec![false; self.helpers.len()]);
        }
        let id = self.clients[c].0;
        self.run_actions(state, id, step.actions)
    }
}

/// A client's whole step on a descriptor: it verifies it, computes its
/// input (the simulation's own) and shares it.
fn client_step(
    client: &mut Client,
    at: Millis,
    envelope: &pb::SignedEnvelope,
    input: &[f64],
    seed: &Seed,
) -> Result<Step, Refusal> {
    let asked = client.handle(
        at,
        Input::Inbound {
            from: client_coordinator(client),
            msg: Inbound::Descriptor(envelope.clone()),
        },
    )?;
    let round = asked.round.unwrap_or(0);
    client.handle(
        at,
        Input::Participate(Participation {
            round,
            input: Ok(ClientInput::new(input.to_vec())),
            randomness: seed.clone(),
        }),
    )
}

fn client_coordinator(client: &Client) -> PartyId {
    client.coordinator()
}

fn violation(state: &RoundState, detail: String) -> SimError {
    SimError::Violation {
        round: state.round_id,
        detail,
    }
}
