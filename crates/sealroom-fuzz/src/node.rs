//! The production node driver under attack (STYLE.md 16b): a helper's or the
//! coordinator's [`Driver`] over a real store, fed one real round's valid
//! messages interleaved with arbitrary inbound messages from every party.
//!
//! The federation is made once per process by `sealroom init`'s own code
//! ([`init_federation`], into a directory under [`std::env::temp_dir`]
//! named by the pid, which lives as long as the process); each node's
//! context comes from [`open_context`] and each state machine is built as
//! the node builds it ([`helper_node`], [`coordinator_node`]). The real
//! round (fixed task, inputs, randomness, nonce and clock) is computed once,
//! in memory. Each input then gets a fresh node: a new data directory with
//! a new, empty SQLite store (the default when `database` is unset), the
//! node's key registered in its audit log, its machine restored from that
//! store, and a [`Driver`] stepped with [`Driver::handle_at`] on a
//! single-threaded runtime at a fixed, monotonic clock.
//!
//! # Input
//!
//! A sequence of operations (at most [`MAX_OPS`]), each three header bytes
//! and a payload: `[slot << 4 | kind, time << 4 | sender, len,
//! payload[len]...]` (a short payload takes what is left, and so does
//! `len` = [`REST`]; a header cut short ends the sequence). `slot % (real
//! messages + 1)` is the real message an operation is delivered before (the
//! last slot: after all of them); `sender` picks a party (the coordinator,
//! a helper, a client, or an outsider the federation does not know); `kind`
//! picks the message (see [`helper_driver`] and [`coordinator_driver`]);
//! `time` the moment, in sixteenths of a window. Raw kinds carry the payload
//! as it arrives (envelopes decoded as protobuf, as the transport does);
//! patched kinds merge it over a valid message and sign it again with the
//! key the node trusts for it, so the checks behind the signatures are
//! reached. Short headers let the fuzzer's first, tiny inputs already be
//! operations.
//!
//! # What is checked
//!
//! After each input: the driver never returns `Err` (a node-stopping error)
//! for peer input. At the end: the real round ended at the node (a helper
//! answered an inclusion set for it, durably; the coordinator reached an
//! outcome), and the node's replay archive holds the real round and no
//! round the node did not itself accept (a peer's claimed round never keys
//! a row).
//!
//! Keys come from the OS generator (as `sealroom init` makes them), so they
//! differ between processes; every signature the fuzzer needs is made in
//! process, so an input replays the same way.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use sealroom_core::Seed;
use sealroom_node::config::{NodeConfig, Role, load_node_config};
use sealroom_node::context::NodeContext;
use sealroom_node::driver::{Driver, NodeMachine};
use sealroom_node::init::{InitOptions, init_federation};
use sealroom_node::local::open_context;
use sealroom_node::metrics::Metrics;
use sealroom_node::{audit_keys, client_node, coordinator_node, helper_node};
use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::client::Client;
use sealroom_protocol::coordinator::{Coordinator, Outcome, Task};
use sealroom_protocol::helper::{Helper, HelperConfig, HelperState, PersistedRound};
use sealroom_protocol::ids::contexts;
use sealroom_protocol::machine::{
    ClientInput, Inbound, Input, Participation, Refusal, Start, Step,
};
use sealroom_protocol::{Digest, Machine, Millis, PartyId, SigningKey, pb};

use crate::{START, decoded, inbound, patched, resigned_descriptor, runtime, sent};

/// Operations per input at most (each costs a few store transactions).
pub const MAX_OPS: usize = 32;
/// An operation's length byte that gives it the rest of the input.
pub const REST: u8 = 0xff;
/// Helpers of the federation.
const HELPERS: usize = 3;
/// Clients of the federation.
const CLIENTS: usize = 4;
/// Upload window and aggregation window of the federation's rounds.
const WINDOW_MS: u64 = 10_000;
/// Elements per vector of the real round.
const VECTOR_LEN: u64 = 4;
/// The real round's nonce.
const NONCE: [u8; 32] = [0x6e; 32];
/// A party the federation does not know.
const OUTSIDER: PartyId = PartyId([0xee; 32]);

/// The helper node (`helper-0`) under attack. Real messages, in order: the
/// descriptor, each client's upload, the inclusion set. Kinds (`kind % 11`):
/// 0 raw descriptor; 1 the real descriptor re-signed by the coordinator
/// (payload: a byte of fields to clear, then a patch; only once the real
/// descriptor is out: a coordinator that equivocates before it may
/// legitimately displace the round); 2 raw upload; 3 the sender's valid
/// upload header patched; 4 raw inclusion set; 5 the real inclusion set
/// patched and re-signed (only once the real descriptor is out); 6 timer;
/// 7–10 raw receipt, report, aggregate share, sit-out (not for a helper).
/// Before the last real message the clock stays inside the upload window
/// (a timer past it would legitimately close the round early).
pub fn helper_driver(data: &[u8]) {
    let federation = federation();
    runtime().block_on(federation.attack_helper(data));
}

/// The coordinator under attack. Real inputs, in order: the admin's start,
/// each helper's report, each selected helper's answer (computed by that
/// helper, in memory, for the inclusion set this coordinator signed). Kinds
/// (`kind % 11`): 0 raw report; 1 a valid report of helper `sender % 3`
/// patched and signed by it; 2 raw aggregate share; 3 a valid answer of
/// helper `sender % 3` to the current inclusion set with its vector (the
/// first `payload[0]` bytes after it, if any) and header patch (the rest)
/// signed by it; 4 raw sit-out; 5 a valid sit-out of client `sender % 4`
/// patched; 6 timer; 7–10 raw descriptor, upload, receipt, inclusion set
/// (not for a coordinator). Timers at the report and aggregation deadlines
/// end every input.
pub fn coordinator_driver(data: &[u8]) {
    let federation = federation();
    runtime().block_on(federation.attack_coordinator(data));
}

/// The federation and its real round, made on first use.
pub fn federation() -> &'static Federation {
    static FEDERATION: OnceLock<Federation> = OnceLock::new();
    FEDERATION.get_or_init(|| runtime().block_on(Federation::build()))
}

/// A federation made by `sealroom init`, and one real round of it.
pub struct Federation {
    /// Holds the federation and each input's data directory.
    dir: ProcessDir,
    /// Data directories made so far (each input gets a new one).
    runs: AtomicU64,
    /// A data directory with an empty store, as `open_context` makes it.
    template: PathBuf,
    /// `helper-0`'s node config.
    helper: NodeConfig,
    /// The coordinator's node config.
    coordinator: NodeConfig,
    /// One metrics registry for every node this process runs.
    metrics: Metrics,
    /// The coordinator's signing key.
    coordinator_key: SigningKey,
    /// The helpers' signing keys, by helper index.
    helper_keys: Vec<SigningKey>,
    /// The helpers' state-machine configs (for in-memory peers).
    helper_configs: Vec<HelperConfig>,
    coordinator_id: PartyId,
    helper_ids: Vec<PartyId>,
    client_ids: Vec<PartyId>,
    /// The admin's request of the real round.
    start: Start,
    /// The real round's id, signed descriptor and its hash.
    round: u64,
    descriptor: pb::SignedEnvelope,
    descriptor_hash: Digest,
    /// `uploads[c][j]`: client `c`'s upload to helper `j`.
    uploads: Vec<Vec<SecretBytes>>,
    /// `reports[j]`: helper `j`'s report (every client).
    reports: Vec<pb::SignedEnvelope>,
    /// The inclusion set for those reports.
    inclusion_set: pb::SignedEnvelope,
    /// `answers[j]`: helper `j`'s answer to it.
    answers: Vec<pb::AggregateShare>,
}

/// One operation of an input (see the module documentation).
#[derive(Clone, Copy, Debug)]
struct Op<'a> {
    slot: usize,
    sender: u8,
    kind: u8,
    time: u8,
    payload: &'a [u8],
}

impl Op<'_> {
    /// When the operation happens: in the 16 ms before [`START`] if it comes
    /// before the first real message (which is at [`START`]), else within
    /// `span` ms after it.
    fn at(&self, span: u64) -> Millis {
        if self.slot == 0 {
            Millis(START.0 - 16 + u64::from(self.time))
        } else {
            START.plus(u64::from(self.time) * (span / 16))
        }
    }
}

/// The operations of `data`, stably sorted by slot (`slots` real messages).
fn ops(data: &[u8], slots: usize) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    let mut rest = data;
    while ops.len() < MAX_OPS {
        let [what, who, len, tail @ ..] = rest else {
            break;
        };
        let len = match *len {
            REST => tail.len(),
            len => usize::from(len).min(tail.len()),
        };
        let (payload, next) = tail.split_at(len);
        ops.push(Op {
            slot: usize::from(what >> 4) % (slots + 1),
            kind: what & 0x0f,
            sender: who & 0x0f,
            time: who >> 4,
            payload,
        });
        rest = next;
    }
    ops.sort_by_key(|op| op.slot);
    ops
}

/// `payload` split into its first byte (0 if empty) and the rest.
fn split_first(payload: &[u8]) -> (u8, &[u8]) {
    payload
        .split_first()
        .map_or((0, &[][..]), |(first, rest)| (*first, rest))
}

/// An envelope as the transport decodes it, or `None` (refused before the
/// node sees it).
fn envelope(payload: &[u8]) -> Option<pb::SignedEnvelope> {
    pb::SignedEnvelope::decode(payload).ok()
}

impl Federation {
    async fn build() -> Federation {
        let dir = ProcessDir::new();
        let options = InitOptions {
            helpers: HELPERS,
            clients: CLIENTS,
            min_clients: Some(2),
            federation_id: "fuzz-node".into(),
            upload_window_ms: WINDOW_MS,
            aggregation_window_ms: WINDOW_MS,
            ..InitOptions::default()
        };
        let summary = init_federation(&dir.path().join("federation"), &options)
            .expect("init makes a federation");
        let configs: Vec<NodeConfig> = summary
            .nodes
            .iter()
            .map(|n| load_node_config(&n.config).expect("init's configs load"))
            .collect();
        let of_role = |role: Role| configs.iter().filter(move |c| c.role == role);
        let metrics = Metrics::new();

        // Each state machine's config, made by the node's own code from its
        // context (its store, under the federation directory, is not used).
        let coordinator = of_role(Role::Coordinator)
            .next()
            .expect("init makes a coordinator")
            .clone();
        let ctx = context(&coordinator, &metrics).await;
        let coordinator_config =
            coordinator_node::coordinator_config(&ctx).expect("the coordinator's config");
        let (ring, spec) =
            coordinator_node::federation_encoding(&ctx).expect("the federation's encoding");
        ctx.store.close().await;
        let mut helper_configs = Vec::new();
        for config in of_role(Role::Helper) {
            let ctx = context(config, &metrics).await;
            helper_configs.push(helper_node::helper_config(&ctx).expect("a helper's config"));
            ctx.store.close().await;
        }
        let mut clients = Vec::new();
        for config in of_role(Role::Client) {
            let ctx = context(config, &metrics).await;
            clients.push(Client::new(client_node::client_config(&ctx), None));
            ctx.store.close().await;
        }
        let signing_key = |c: &NodeConfig| c.signing_key.clone().expect("a signing key");
        let helper_keys: Vec<SigningKey> = of_role(Role::Helper).map(signing_key).collect();
        let coordinator_key = signing_key(&coordinator);
        let coordinator_id = coordinator.id;
        let helper_ids: Vec<PartyId> = helper_configs.iter().map(|h| h.me).collect();
        let client_ids: Vec<PartyId> = of_role(Role::Client).map(|c| c.id).collect();
        assert_eq!(
            coordinator_config
                .helpers
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            helper_ids,
            "helper indices follow the federation file"
        );

        // An empty store, copied for each input.
        let template = dir.path().join("template");
        let mut empty = coordinator.clone();
        empty.data_dir = template.clone();
        context(&empty, &metrics).await.store.close().await;

        // The real round, in memory.
        let start = Start {
            task: Task {
                engine: None,
                name: sealroom_node::tasks::SYNTHETIC.into(),
                vector_len: VECTOR_LEN,
                ring,
                spec,
                params: Vec::new(),
                min_clients: None,
            },
            clients: client_ids.clone(),
            nonce: NONCE,
        };
        let mut machine = Coordinator::new(coordinator_config, 1);
        machine
            .handle(START, Input::Start(start.clone()))
            .expect("the real round starts");
        let descriptor = machine.round().expect("a round runs").descriptor().clone();
        let (round, descriptor_hash) = (descriptor.round_id(), descriptor.hash());
        let descriptor = descriptor.envelope().clone();
        let mut uploads = Vec::new();
        for (c, client) in clients.iter_mut().enumerate() {
            client
                .handle(
                    START,
                    inbound(coordinator_id, Inbound::Descriptor(descriptor.clone())),
                )
                .expect("clients accept the real round");
            let input = (0..VECTOR_LEN)
                .map(|k| (c as f64 + 1.0) * (k as f64 - 1.5))
                .collect();
            let step = client
                .handle(
                    START,
                    Input::Participate(Participation {
                        round,
                        input: Ok(ClientInput::new(input)),
                        randomness: Seed::from_bytes([0x40 + c as u8; 32]),
                    }),
                )
                .expect("clients take part");
            let to_helper = |j: usize| {
                step.actions.iter().find_map(|a| match a {
                    Action::Send {
                        to,
                        message: Message::Upload(bytes),
                        ..
                    } if *to == helper_ids[j] => Some(bytes.clone()),
                    _ => None,
                })
            };
            uploads.push(
                (0..HELPERS)
                    .map(|j| to_helper(j).expect("an upload to every helper"))
                    .collect::<Vec<_>>(),
            );
        }
        let mut helpers: Vec<Helper> = helper_configs
            .iter()
            .map(|config| Helper::new(config.clone()))
            .collect();
        let mut reports = Vec::new();
        for (j, helper) in helpers.iter_mut().enumerate() {
            helper
                .handle(
                    START,
                    inbound(coordinator_id, Inbound::Descriptor(descriptor.clone())),
                )
                .expect("helpers accept the real round");
            for (c, upload) in uploads.iter().enumerate() {
                let step = helper
                    .handle(
                        START,
                        inbound(client_ids[c], Inbound::Upload(upload[j].clone())),
                    )
                    .expect("helpers accept the real uploads");
                reports.extend(sent(&step.actions, |m| match m {
                    Message::Report(e) => Some(e.clone()),
                    _ => None,
                }));
            }
        }
        assert_eq!(reports.len(), HELPERS, "every helper reports");
        for (id, report) in helper_ids.iter().zip(&reports) {
            machine
                .handle(START, inbound(*id, Inbound::Report(report.clone())))
                .expect("the coordinator accepts the real reports");
        }
        let inclusion_set = machine
            .round()
            .and_then(|r| r.inclusion_set())
            .expect("every helper reported")
            .clone();
        let mut answers = Vec::new();
        let mut outcome = None;
        for (id, helper) in helper_ids.iter().zip(&mut helpers) {
            let step = helper
                .handle(
                    START,
                    inbound(coordinator_id, Inbound::InclusionSet(inclusion_set.clone())),
                )
                .expect("helpers answer the real inclusion set");
            for bytes in sent(&step.actions, |m| match m {
                Message::AggregateShare(bytes) => Some(bytes.clone()),
                _ => None,
            }) {
                answers.push(pb::AggregateShare::decode(bytes.expose()).expect("an answer"));
                let step = machine
                    .handle(START, inbound(*id, Inbound::AggregateShare(bytes)))
                    .expect("the coordinator accepts the real answers");
                outcome = outcome.or(step.outcome);
            }
        }
        assert!(
            matches!(outcome, Some(Outcome::Completed(_))),
            "the real round completes: {outcome:?}"
        );
        Federation {
            helper: of_role(Role::Helper)
                .next()
                .expect("init makes helpers")
                .clone(),
            dir,
            runs: AtomicU64::new(0),
            template,
            coordinator,
            metrics,
            coordinator_key,
            helper_keys,
            helper_configs,
            coordinator_id,
            helper_ids,
            client_ids,
            start,
            round,
            descriptor,
            descriptor_hash,
            uploads,
            reports,
            inclusion_set,
            answers,
        }
    }

    /// A party picked by `selector`: the coordinator, a helper, a client,
    /// or an outsider.
    fn party(&self, selector: u8) -> PartyId {
        let parties: Vec<PartyId> = std::iter::once(self.coordinator_id)
            .chain(self.helper_ids.iter().copied())
            .chain(self.client_ids.iter().copied())
            .chain([OUTSIDER])
            .collect();
        parties[usize::from(selector) % parties.len()]
    }

    /// A fresh node of `config`: a new data directory with an empty store
    /// (a copy of [`Federation::template`], as `open_context` leaves a new
    /// store: this skips its migrations' fsyncs on every input), opened by
    /// `open_context`, the node's key registered in its audit log (as a
    /// node does when it starts).
    async fn fresh_context(&self, config: &NodeConfig) -> (NodeContext, PathBuf) {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let mut config = config.clone();
        config.data_dir = self.dir.path().join(format!("run-{run}"));
        copy_dir(&self.template, &config.data_dir);
        let ctx = context(&config, &self.metrics).await;
        audit_keys::register_key(&ctx)
            .await
            .expect("a fresh store registers the node's key");
        (ctx, config.data_dir)
    }

    // The helper node.

    async fn attack_helper(&self, data: &[u8]) {
        let (ctx, data_dir) = self.fresh_context(&self.helper).await;
        let store = ctx.store.clone();
        let archive_rounds = ctx.archive_rounds;
        let config = helper_node::helper_config(&ctx).expect("a helper has a signing key");
        let state = store.helper_state().await.expect("a fresh store reads");
        let helper = Helper::restore(config, state, START).expect("an empty state restores");
        let mut node = Node::new(Driver::new(ctx, helper), data_dir);

        let me = self.helper.id;
        let j = self
            .helper_ids
            .iter()
            .position(|id| *id == me)
            .expect("the node is a helper of the federation");
        let mut real = vec![(
            START,
            inbound(
                self.coordinator_id,
                Inbound::Descriptor(self.descriptor.clone()),
            ),
        )];
        for (c, uploads) in self.uploads.iter().enumerate() {
            let upload = Inbound::Upload(uploads[j].clone());
            real.push((
                START.plus(1 + c as u64),
                inbound(self.client_ids[c], upload),
            ));
        }
        let set = Inbound::InclusionSet(self.inclusion_set.clone());
        real.push((START.plus(100), inbound(self.coordinator_id, set)));

        let slots = real.len();
        let mut ops = ops(data, slots).into_iter().peekable();
        for (slot, (at, input)) in real.into_iter().enumerate() {
            while let Some(op) = ops.next_if(|op| op.slot == slot) {
                // Inside the upload window until the real round is through.
                let at = op.at(WINDOW_MS);
                if let Some(input) = self.helper_input(&op, j, slot > 0) {
                    let _ = node.feed(at, input).await;
                }
            }
            let _ = node.feed(at, input).await;
        }
        for op in ops {
            let at = op.at(3 * WINDOW_MS);
            if let Some(input) = self.helper_input(&op, j, true) {
                let _ = node.feed(at, input).await;
            }
        }
        let _ = node.feed(START.plus(3 * WINDOW_MS), Input::Timer).await;

        // Rounds the node accepted above the real one push it out of the
        // archive by design (the retention policy), never otherwise.
        let retained = node.rounds.range(self.round + 1..).count() < archive_rounds;
        let state = store.helper_state().await.expect("the store reads");
        let answered = state
            .rounds
            .iter()
            .any(|r| r.descriptor == self.descriptor && r.answered.is_some());
        assert!(
            answered || !retained,
            "the real round {} did not end at the helper (rounds held: {})",
            self.round,
            state.rounds.len()
        );
        node.check_archive(self.round, retained).await;
        node.finish().await;
    }

    /// The input `op` makes for helper `j`; `None` if it makes none.
    fn helper_input(&self, op: &Op<'_>, j: usize, descriptor_out: bool) -> Option<Input> {
        let from = self.party(op.sender);
        let payload = op.payload;
        let msg = match op.kind % 11 {
            0 => Inbound::Descriptor(envelope(payload)?),
            1 if descriptor_out => {
                let (clear, patch) = split_first(payload);
                let env =
                    resigned_descriptor(&self.coordinator_key, &self.descriptor, clear, patch)?;
                return Some(inbound(self.coordinator_id, Inbound::Descriptor(env)));
            }
            2 => Inbound::Upload(SecretBytes::new(payload.to_vec())),
            3 => {
                let c = self
                    .client_ids
                    .iter()
                    .position(|id| *id == from)
                    .unwrap_or(0);
                let valid = pb::Upload::decode(self.uploads[c][j].expose()).expect("an upload");
                let bare = pb::Upload {
                    share: None,
                    ..valid.clone()
                };
                let upload = patched(&valid, &bare, payload)?;
                Inbound::Upload(SecretBytes::new(upload.encode_to_vec()))
            }
            4 => Inbound::InclusionSet(envelope(payload)?),
            5 if descriptor_out => {
                let valid: pb::InclusionSet = decoded(&self.inclusion_set);
                let bare = pb::InclusionSet {
                    clients: Vec::new(),
                    helpers: Vec::new(),
                    ..valid.clone()
                };
                let set = self.coordinator_key.sign(&patched(&valid, &bare, payload)?);
                return Some(inbound(self.coordinator_id, Inbound::InclusionSet(set)));
            }
            6 => return Some(Input::Timer),
            7 => Inbound::Receipt(envelope(payload)?),
            8 => Inbound::Report(envelope(payload)?),
            9 => Inbound::AggregateShare(SecretBytes::new(payload.to_vec())),
            10 => Inbound::SitOut(payload.to_vec()),
            _ => return None,
        };
        Some(inbound(from, msg))
    }

    // The coordinator.

    async fn attack_coordinator(&self, data: &[u8]) {
        let (ctx, data_dir) = self.fresh_context(&self.coordinator).await;
        let store = ctx.store.clone();
        let config = coordinator_node::coordinator_config(&ctx).expect("the coordinator's config");
        let next_round = store
            .coordinator_next_round_id()
            .await
            .expect("a fresh store reads");
        assert_eq!(
            next_round, self.round,
            "a fresh coordinator starts the real round"
        );
        let driver = Driver::new(ctx, Coordinator::new(config, next_round));
        let mut node = Node::new(driver, data_dir);
        // The other helpers, in memory, holding every upload and their report.
        let mut helpers: Vec<Helper> = (0..HELPERS).map(|j| self.reported_helper(j)).collect();

        // Real inputs: the start, the reports, then the answers (slots
        // 1 + HELPERS ..) as the inclusion set this coordinator signed asks.
        let slots = 1 + 2 * HELPERS;
        let mut ops = ops(data, slots).into_iter().peekable();
        for slot in 0..slots {
            while let Some(op) = ops.next_if(|op| op.slot == slot) {
                let at = op.at(2 * WINDOW_MS);
                if let Some(input) = self.coordinator_input(&op, &node) {
                    let _ = node.feed(at, input).await;
                }
            }
            if slot == 0 {
                let step = node.feed(START, Input::Start(self.start.clone())).await;
                assert!(step.is_ok(), "the real round starts: {step:?}");
            } else if slot <= HELPERS {
                let j = slot - 1;
                let report = Inbound::Report(self.reports[j].clone());
                let at = START.plus(10 + j as u64);
                let _ = node.feed(at, inbound(self.helper_ids[j], report)).await;
            } else {
                let j = slot - 1 - HELPERS;
                let Some(set) = node.asked.get(j).cloned().flatten() else {
                    continue;
                };
                let answered = helpers[j].handle(
                    node.clock,
                    inbound(self.coordinator_id, Inbound::InclusionSet(set)),
                );
                let Ok(step) = answered else { continue };
                for bytes in sent(&step.actions, |m| match m {
                    Message::AggregateShare(bytes) => Some(bytes.clone()),
                    _ => None,
                }) {
                    let answer = Inbound::AggregateShare(bytes);
                    let _ = node
                        .feed(START.plus(200), inbound(self.helper_ids[j], answer))
                        .await;
                }
            }
        }
        for op in ops {
            let at = op.at(3 * WINDOW_MS);
            if let Some(input) = self.coordinator_input(&op, &node) {
                let _ = node.feed(at, input).await;
            }
        }
        let deadlines = [
            START.plus(WINDOW_MS + WINDOW_MS / 2),
            START.plus(2 * WINDOW_MS),
        ];
        for at in deadlines {
            let _ = node.feed(at, Input::Timer).await;
        }

        assert!(
            node.outcomes.contains(&self.round) && node.driver.machine().round().is_none(),
            "the real round {} reached no outcome at the coordinator",
            self.round
        );
        node.check_archive(self.round, true).await;
        node.finish().await;
    }

    /// Helper `j` in memory, as after reporting the real round with every
    /// upload (restored as a node restores it).
    fn reported_helper(&self, j: usize) -> Helper {
        let state = HelperState {
            rounds: vec![PersistedRound {
                descriptor: self.descriptor.clone(),
                uploads: (0..CLIENTS)
                    .map(|c| (c as u32, self.uploads[c][j].clone()))
                    .collect(),
                report: Some(self.reports[j].clone()),
                answered: None,
            }],
        };
        Helper::restore(self.helper_configs[j].clone(), state, START)
            .expect("a reported helper restores")
    }

    /// The input `op` makes for the coordinator; `None` if it makes none.
    fn coordinator_input(&self, op: &Op<'_>, node: &Node<Coordinator>) -> Option<Input> {
        let from = self.party(op.sender);
        let payload = op.payload;
        let j = usize::from(op.sender) % HELPERS;
        let msg = match op.kind % 11 {
            0 => Inbound::Report(envelope(payload)?),
            1 => {
                let valid: pb::HelperReport = decoded(&self.reports[j]);
                let bare = pb::HelperReport {
                    received: Vec::new(),
                    ..valid.clone()
                };
                let report = self.helper_keys[j].sign(&patched(&valid, &bare, payload)?);
                return Some(inbound(self.helper_ids[j], Inbound::Report(report)));
            }
            2 => Inbound::AggregateShare(SecretBytes::new(payload.to_vec())),
            3 => {
                let set = node
                    .driver
                    .machine()
                    .round()
                    .and_then(|r| r.inclusion_set())
                    .unwrap_or(&self.inclusion_set);
                let answer = self.patched_answer(j, set, payload)?;
                return Some(inbound(self.helper_ids[j], Inbound::AggregateShare(answer)));
            }
            4 => Inbound::SitOut(payload.to_vec()),
            5 => {
                let c = usize::from(op.sender) % CLIENTS;
                let valid = pb::SitOut {
                    descriptor_hash: self.descriptor_hash.0.to_vec(),
                    round_id: self.round,
                    reason: pb::SitOutReason::NoSuchTable as i32,
                    subject: "wine".into(),
                };
                let mut notice = valid.clone();
                notice.merge(payload).ok()?;
                return Some(inbound(
                    self.client_ids[c],
                    Inbound::SitOut(notice.encode_to_vec()),
                ));
            }
            6 => return Some(Input::Timer),
            7 => Inbound::Descriptor(envelope(payload)?),
            8 => Inbound::Upload(SecretBytes::new(payload.to_vec())),
            9 => Inbound::Receipt(envelope(payload)?),
            10 => Inbound::InclusionSet(envelope(payload)?),
            _ => return None,
        };
        Some(inbound(from, msg))
    }

    /// Helper `j`'s valid answer bound to `set`, with the vector and header
    /// patch `payload` holds (see [`coordinator_driver`]), signed by helper `j`.
    fn patched_answer(
        &self,
        j: usize,
        set: &pb::SignedEnvelope,
        payload: &[u8],
    ) -> Option<SecretBytes> {
        let (n, rest) = split_first(payload);
        let (vector, header_patch) = rest.split_at(usize::from(n).min(rest.len()));
        let mut share = self.answers.get(j)?.clone();
        if !vector.is_empty() {
            share.vector = vector.to_vec();
        }
        let mut header: pb::AggregateShareHeader =
            decoded(share.header.as_ref().expect("answers carry a header"));
        header.inclusion_hash = Digest::of(contexts::INCLUSION, &set.body).0.to_vec();
        header.vector_digest = Digest::of(contexts::AGGREGATE, &share.vector).0.to_vec();
        header.merge(header_patch).ok()?;
        share.header = Some(self.helper_keys[j].sign(&header));
        Some(SecretBytes::new(share.encode_to_vec()))
    }
}

/// `at` relative to [`START`], in ms.
fn offset(at: Millis) -> i128 {
    i128::from(at.0) - i128::from(START.0)
}

/// This process's directory under [`std::env::temp_dir`], named by its pid.
/// A static is never dropped, so the directory outlives the process; the
/// next process removes the directories of processes that have ended.
struct ProcessDir(PathBuf);

/// Names of [`ProcessDir`]s: this prefix and a pid.
const PROCESS_DIR_PREFIX: &str = "sealroom-fuzz-node-";

impl ProcessDir {
    fn new() -> ProcessDir {
        let temp = std::env::temp_dir();
        let pid = std::process::id();
        // Where `/proc` lists running processes, forget ended ones' dirs.
        let proc = std::path::Path::new("/proc");
        if proc.join("self").exists()
            && let Ok(entries) = std::fs::read_dir(&temp)
        {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(other) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(PROCESS_DIR_PREFIX))
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if other == pid || !proc.join(other.to_string()).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = temp.join(format!("{PROCESS_DIR_PREFIX}{pid}"));
        std::fs::create_dir_all(&dir).expect("a directory under the temporary directory");
        ProcessDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

/// Copies the files of directory `from` into a new directory `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("a data directory");
    for entry in std::fs::read_dir(from)
        .expect("the template store")
        .flatten()
    {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy the template store");
    }
}

/// Opens `config`'s context as a node does.
async fn context(config: &NodeConfig, metrics: &Metrics) -> NodeContext {
    open_context(config, metrics.clone())
        .await
        .expect("a node's context opens")
}

/// A node under attack: its driver, its clock, and what it accepted.
struct Node<M: NodeMachine> {
    driver: Driver<M>,
    /// Where its store lives.
    data_dir: PathBuf,
    /// The node's clock: never goes back.
    clock: Millis,
    /// Every round an accepted step touched (the node's own rounds).
    rounds: BTreeSet<u64>,
    /// Rounds the node reached an outcome of (coordinator).
    outcomes: BTreeSet<u64>,
    /// The inclusion set sent to each helper, by helper index (coordinator).
    asked: Vec<Option<pb::SignedEnvelope>>,
}

impl<M: NodeMachine> Node<M> {
    fn new(driver: Driver<M>, data_dir: PathBuf) -> Node<M> {
        Node {
            driver,
            data_dir,
            clock: Millis(START.0 - 256),
            rounds: BTreeSet::new(),
            outcomes: BTreeSet::new(),
            asked: vec![None; HELPERS],
        }
    }

    /// Feeds `input` at `at` (or now, if the clock is past it): the step or
    /// the refusal. A node-stopping error fails the run.
    async fn feed(&mut self, at: Millis, input: Input) -> Result<Step, Refusal> {
        self.clock = self.clock.max(at);
        let name = input.name();
        let result = match self.driver.handle_at(self.clock, input).await {
            Ok(result) => result,
            Err(error) => panic!(
                "the node stopped on a {name} input at {:+} ms: {error}",
                offset(self.clock)
            ),
        };
        if let Ok(step) = &result {
            self.rounds.extend(step.rounds());
            self.outcomes
                .extend(step.outcome.as_ref().map(Outcome::round_id));
            let helpers = self.driver.ctx().directory.helpers.clone();
            for action in &step.actions {
                if let Action::Send {
                    to,
                    message: Message::InclusionSet(set),
                    ..
                } = action
                    && let Some(j) = helpers.iter().position(|h| h.id == *to)
                {
                    self.asked[j] = Some(set.clone());
                }
            }
        }
        result
    }

    /// Closes the store and removes the data directory.
    async fn finish(self) {
        self.driver.ctx().store.close().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// The replay archive holds `real` (if `retained`) and only rounds this
    /// node accepted.
    async fn check_archive(&self, real: u64, retained: bool) {
        let archived = self
            .driver
            .ctx()
            .store
            .archived_rounds()
            .await
            .expect("the archive lists its rounds");
        assert!(
            archived.iter().all(|r| self.rounds.contains(r)),
            "the archive holds rounds the node never accepted: {archived:?} (accepted: {:?})",
            self.rounds
        );
        assert!(
            archived.contains(&real) || !retained,
            "the archive lost the real round {real}: {archived:?}"
        );
    }
}
