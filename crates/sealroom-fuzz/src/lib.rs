//! Fixtures and harnesses shared by sealroom's fuzz targets
//! (`fuzz/fuzz_targets/`, a cargo-fuzz crate outside the workspace).
//!
//! Every key comes from a fixed ChaCha20 seed and every round from fixed
//! parameters, so a crashing input replays identically on any machine. The
//! fixtures are built once per process ([`OnceLock`]); the targets build
//! fresh state machines from them for each input, so inputs never influence
//! one another.
//!
//! Structured targets use [`patched`]: the fuzzer's bytes are merged, as
//! protobuf, over a valid message (scalars and strings replaced, repeated
//! fields appended, sub-messages merged), and the result is signed with the
//! right fixed key. That gets past the signature check to the validation
//! behind it. An empty patch leaves the valid message as it is, so the happy
//! path is always one input away.
//!
//! State machines are driven only through [`Machine::handle`], the step
//! contract every node runs. [`node`] goes one layer out: the production
//! node driver over a real store (the `node_driver*` targets).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::{QuantSpec, RingKind, Seed};
use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::client::{Client, ClientConfig};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::descriptor::{DescriptorTrust, TrustedKey};
use sealroom_protocol::helper::{Helper, HelperConfig};
use sealroom_protocol::ids::contexts;
use sealroom_protocol::machine::{
    ClientInput, EngineOutcome, EngineResult, Inbound, Input, Participation, Start, Step,
};
use sealroom_protocol::{Digest, Machine, Millis, PartyId, SigningKey, VerifiedDescriptor, pb};

pub mod node;

/// The federation of every fixture.
pub const FEDERATION: &str = "fuzz-federation";
/// When the fixture rounds are issued.
pub const START: Millis = Millis(1_700_000_000_000);
/// Upload window and aggregation window of the fixture rounds.
pub const WINDOW_MS: u64 = 10_000;
/// Clients per fixture round.
pub const CLIENTS: usize = 4;
/// Helpers per fixture round.
pub const HELPERS: usize = 3;
/// Elements per vector.
pub const VECTOR_LEN: usize = 4;
/// The coordinator's identity.
pub const COORDINATOR: PartyId = PartyId([0x30; 32]);
/// A party that takes part in nothing.
pub const OUTSIDER: PartyId = PartyId([0xee; 32]);
/// The nonce of every fixture round.
const NONCE: [u8; 32] = [0x5e; 32];

/// Round shapes a target picks with one input byte: additive over each ring,
/// Shamir 2-of-3 over F_p, and an engine round over Z_2^64 (uploads carry
/// sketch shares; the inclusion set asks the runtime to run a program).
const SHAPES: [(RingKind, Option<usize>, bool); 5] = [
    (RingKind::Z2_32, None, false),
    (RingKind::Z2_64, None, false),
    (RingKind::Fp61, None, false),
    (RingKind::Fp61, Some(2), false),
    (RingKind::Z2_64, None, true),
];

/// A fixed Ed25519 key, the same for a given seed on every run.
pub fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// The fixture of shape `shape % 5` (built on first use).
pub fn fixture(shape: u8) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; SHAPES.len()] = [const { OnceLock::new() }; SHAPES.len()];
    let i = usize::from(shape) % SHAPES.len();
    FIXTURES[i].get_or_init(|| Fixture::new(SHAPES[i].0, SHAPES[i].1, SHAPES[i].2))
}

/// `valid` if `patch` is empty; otherwise `bare` with `patch` merged over it
/// as protobuf, or `None` if `patch` does not decode.
pub fn patched<M: prost::Message + Clone>(valid: &M, bare: &M, patch: &[u8]) -> Option<M> {
    if patch.is_empty() {
        return Some(valid.clone());
    }
    let mut message = bare.clone();
    message.merge(patch).ok()?;
    Some(message)
}

/// `msg` from `from`, as the transport hands it to a state machine.
pub fn inbound(from: PartyId, msg: Inbound) -> Input {
    Input::Inbound { from, msg }
}

/// What `pick` selects from the messages `actions` send.
pub fn sent<T>(actions: &[Action], pick: impl Fn(&Message) -> Option<T>) -> Vec<T> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { message, .. } => pick(message),
            _ => None,
        })
        .collect()
}

/// One valid round with everything its parties exchanged on the happy path.
pub struct Fixture {
    /// The coordinator's configuration.
    pub coordinator: CoordinatorConfig,
    /// The coordinator's key (signs descriptors and inclusion sets).
    pub coordinator_key: SigningKey,
    /// What the round computes.
    pub task: Task,
    /// The trust every party has in the coordinator: its key, epochs 1..=1000.
    pub trust: DescriptorTrust,
    /// The round's verified descriptor.
    pub descriptor: VerifiedDescriptor,
    /// Helper configurations, by helper index.
    pub helpers: Vec<HelperConfig>,
    /// Helper keys (sign receipts, reports and answers), by helper index.
    pub helper_keys: Vec<SigningKey>,
    /// Client configurations, by client index.
    pub clients: Vec<ClientConfig>,
    /// `uploads[c][j]`: client `c`'s encoded upload to helper `j`.
    pub uploads: Vec<Vec<Vec<u8>>>,
    /// `receipts[c][j]`: helper `j`'s signed receipt for that upload.
    pub receipts: Vec<Vec<pb::SignedEnvelope>>,
    /// `reports[j]`: helper `j`'s signed report, holding every client.
    pub reports: Vec<pb::SignedEnvelope>,
    /// The inclusion set the coordinator signs for those reports.
    pub inclusion_set: pb::InclusionSet,
    /// `aggregates[j]`: helper `j`'s answer to it.
    pub aggregates: Vec<pb::AggregateShare>,
}

impl Fixture {
    fn new(ring: RingKind, threshold: Option<usize>, engine: bool) -> Fixture {
        let coordinator_key = key(1);
        let trust = DescriptorTrust {
            federation_id: FEDERATION.into(),
            coordinator_keys: vec![TrustedKey {
                key: coordinator_key.verifying_key(),
                valid_from_epoch: 1,
                valid_until_epoch: Some(1_000),
            }],
            min_clients_floor: sealroom_protocol::descriptor::MIN_MIN_CLIENTS,
            pinned_helpers: None,
        };
        let helper_keys: Vec<SigningKey> = (0..HELPERS as u64).map(|j| key(100 + j)).collect();
        let helper_ids: Vec<PartyId> = (0..HELPERS as u8)
            .map(|j| PartyId([0x20 + j; 32]))
            .collect();
        let client_ids: Vec<PartyId> = (0..CLIENTS as u8)
            .map(|c| PartyId([0x10 + c; 32]))
            .collect();
        let coordinator = CoordinatorConfig {
            federation_id: FEDERATION.into(),
            signer: Arc::new(coordinator_key.clone()),
            epoch: 7,
            helpers: helper_ids
                .iter()
                .zip(&helper_keys)
                .map(|(id, k)| (*id, k.verifying_key().into()))
                .collect(),
            threshold,
            min_clients: 2,
            upload_window_ms: WINDOW_MS,
            aggregation_window_ms: WINDOW_MS,
            allow_unverified: false,
        };
        let task = Task {
            engine: engine.then(|| sealroom_protocol::descriptor::EngineRef {
                program: "fuzz-program".into(),
                version: 1,
            }),
            name: "fuzz".into(),
            vector_len: VECTOR_LEN as u64,
            ring,
            spec: QuantSpec::new(16, 8.0, 24).expect("a valid spec"),
            params: Vec::new(),
            min_clients: None,
        };
        let helpers = helper_ids
            .iter()
            .zip(&helper_keys)
            .map(|(id, key)| HelperConfig {
                me: *id,
                coordinator: COORDINATOR,
                signer: Arc::new(key.clone()),
                trust: trust.clone(),
            })
            .collect();
        let helper_verifying_keys: BTreeMap<PartyId, _> =
            coordinator.helpers.iter().copied().collect();
        let clients = client_ids
            .iter()
            .map(|id| ClientConfig {
                me: *id,
                coordinator: COORDINATOR,
                trust: trust.clone(),
                helper_keys: helper_verifying_keys.clone(),
            })
            .collect();
        let (started, _) = started_coordinator(&coordinator, &task, client_ids);
        let mut fixture = Fixture {
            descriptor: started
                .round()
                .expect("a started coordinator runs a round")
                .descriptor()
                .clone(),
            coordinator,
            coordinator_key,
            task,
            trust,
            helpers,
            helper_keys,
            clients,
            uploads: Vec::new(),
            receipts: vec![Vec::new(); CLIENTS],
            reports: Vec::new(),
            inclusion_set: pb::InclusionSet::default(),
            aggregates: Vec::new(),
        };
        fixture.uploads = (0..CLIENTS)
            .map(|c| {
                let (_, actions) = fixture.participating_client(c);
                sent(&actions, |m| match m {
                    Message::Upload(bytes) => Some(bytes.expose().to_vec()),
                    _ => None,
                })
            })
            .collect();
        let mut helpers: Vec<Helper> = (0..HELPERS).map(|j| fixture.helper(j)).collect();
        for (j, helper) in helpers.iter_mut().enumerate() {
            for c in 0..CLIENTS {
                let upload = SecretBytes::new(fixture.uploads[c][j].clone());
                let step = helper
                    .handle(
                        START,
                        inbound(fixture.clients[c].me, Inbound::Upload(upload)),
                    )
                    .expect("helpers accept the fixture's uploads");
                fixture.receipts[c].extend(sent(&step.actions, |m| match m {
                    Message::Receipt(e) => Some(e.clone()),
                    _ => None,
                }));
                fixture.reports.extend(sent(&step.actions, |m| match m {
                    Message::Report(e) => Some(e.clone()),
                    _ => None,
                }));
            }
        }
        assert_eq!(
            fixture.reports.len(),
            HELPERS,
            "every helper reports once all clients sent"
        );

        // The coordinator decides on every client and helper; the helpers answer.
        let mut coordinator = fixture.coordinator();
        let mut decided = Step::default();
        for (helper, report) in fixture.helpers.iter().zip(&fixture.reports) {
            decided = coordinator
                .handle(START, inbound(helper.me, Inbound::Report(report.clone())))
                .expect("a valid report");
        }
        let set = coordinator
            .round()
            .and_then(|r| r.inclusion_set())
            .expect("every helper reported")
            .clone();
        fixture.inclusion_set = decoded(&set);
        assert_eq!(fixture.inclusion_set.clients.len(), CLIENTS);
        let asked = sent(&decided.actions, |m| {
            matches!(m, Message::InclusionSet(_)).then_some(())
        });
        assert_eq!(asked.len(), fixture.inclusion_set.helpers.len());
        let mut outcome = None;
        for (helper, config) in helpers.iter_mut().zip(&fixture.helpers) {
            let mut step = helper
                .handle(
                    START,
                    inbound(COORDINATOR, Inbound::InclusionSet(set.clone())),
                )
                .expect("a valid inclusion set");
            // An engine round: the runtime would run the program with the
            // other helpers; the fixture hands every helper the same stand-in
            // result (the coordinator compares the three signed answers).
            if let Some(job) = step.actions.iter().find_map(|a| match a {
                Action::Engine(job) => Some(job.clone()),
                _ => None,
            }) {
                let result = EngineResult {
                    round: job.descriptor.round_id(),
                    program_hash: [7; 32],
                    outcome: EngineOutcome::Outputs(vec![0; job.descriptor.vector_len()]),
                };
                step = helper
                    .handle(START, Input::Engine(result))
                    .expect("the engine result of the round it runs");
            }
            for bytes in sent(&step.actions, |m| match m {
                Message::AggregateShare(bytes) => Some(bytes.clone()),
                _ => None,
            }) {
                let share = pb::AggregateShare::decode(bytes.expose()).expect("an answer we made");
                let step = coordinator
                    .handle(START, inbound(config.me, Inbound::AggregateShare(bytes)))
                    .expect("a valid answer");
                outcome = outcome.or(step.outcome);
                fixture.aggregates.push(share);
            }
        }
        assert!(
            matches!(outcome, Some(Outcome::Completed(_))),
            "the fixture round completes: {outcome:?}"
        );
        fixture
    }

    /// Client `c` after taking part in the round afresh (its uploads are the
    /// actions returned).
    pub fn participating_client(&self, c: usize) -> (Client, Vec<Action>) {
        let mut client = Client::new(self.clients[c].clone(), None);
        let asked = client
            .handle(
                START,
                inbound(
                    COORDINATOR,
                    Inbound::Descriptor(self.descriptor.envelope().clone()),
                ),
            )
            .expect("the fixture's clients accept the round");
        debug_assert!(
            asked
                .actions
                .iter()
                .any(|a| matches!(a, Action::Compute(_)))
        );
        let input: Vec<f64> = (0..VECTOR_LEN)
            .map(|k| (c as f64 + 1.0) * (k as f64 - 1.5))
            .collect();
        let step = client
            .handle(
                START,
                Input::Participate(Participation {
                    round: self.descriptor.round_id(),
                    input: Ok(ClientInput::new(input)),
                    randomness: Seed::from_bytes([c as u8; 32]),
                }),
            )
            .expect("the fixture's clients take part");
        (client, step.actions)
    }

    /// Helper `j`, fresh, having accepted the round.
    pub fn helper(&self, j: usize) -> Helper {
        let mut helper = Helper::new(self.helpers[j].clone());
        helper
            .handle(
                START,
                inbound(
                    COORDINATOR,
                    Inbound::Descriptor(self.descriptor.envelope().clone()),
                ),
            )
            .expect("the fixture's helpers accept the round");
        helper
    }

    /// The coordinator, fresh, having started the round.
    pub fn coordinator(&self) -> Coordinator {
        let clients = self.clients.iter().map(|c| c.me).collect();
        let (coordinator, _) = started_coordinator(&self.coordinator, &self.task, clients);
        debug_assert_eq!(
            coordinator.round().map(|r| r.descriptor().hash()),
            Some(self.descriptor.hash())
        );
        coordinator
    }

    /// A party picked by `selector`: a client, a helper, the coordinator or
    /// an outsider.
    pub fn party(&self, selector: u8) -> PartyId {
        let parties: Vec<PartyId> = (self.clients.iter().map(|c| c.me))
            .chain(self.helpers.iter().map(|h| h.me))
            .chain([COORDINATOR, OUTSIDER])
            .collect();
        parties[usize::from(selector) % parties.len()]
    }

    /// When uploads stop being accepted.
    pub fn upload_deadline(&self) -> Millis {
        self.descriptor.upload_deadline()
    }

    // Structured inputs: valid messages with the fuzzer's bytes merged in,
    // signed again by the key the receiver trusts.

    /// The round's descriptor with the fields `clear` selects emptied (bit 0
    /// task, 1 clients, 2 helpers, 3 nonce, 4 signing key id, 5 task.quant)
    /// and `patch` merged over it, signed by the coordinator.
    pub fn resigned_descriptor(&self, clear: u8, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        resigned_descriptor(
            &self.coordinator_key,
            self.descriptor.envelope(),
            clear,
            patch,
        )
    }
    /// `from`'s encoded upload to helper 0 (client 0's if `from` is not a
    /// client): the valid one if `patch` is empty, else its header (hash,
    /// round, client index) with `patch` merged over it.
    pub fn patched_upload(&self, from: PartyId, patch: &[u8]) -> Option<Vec<u8>> {
        let client = self.descriptor.client_index(&from).unwrap_or(0) as usize;
        let valid = pb::Upload::decode(self.uploads[client][0].as_slice()).expect("a valid upload");
        let bare = pb::Upload {
            share: None,
            ..valid.clone()
        };
        Some(patched(&valid, &bare, patch)?.encode_to_vec())
    }

    /// An inclusion set signed by the coordinator: the valid one if `patch` is
    /// empty, else `patch` merged over one bound to the round that names no
    /// client and no helper.
    pub fn patched_inclusion_set(&self, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        let bare = pb::InclusionSet {
            clients: Vec::new(),
            helpers: Vec::new(),
            ..self.inclusion_set.clone()
        };
        let set = patched(&self.inclusion_set, &bare, patch)?;
        Some(self.coordinator_key.sign(&set))
    }

    /// Helper `j`'s report, signed by helper `j`: the valid one if `patch` is
    /// empty, else `patch` merged over one that holds no client.
    pub fn patched_report(&self, j: usize, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        let valid: pb::HelperReport = decoded(&self.reports[j]);
        let bare = pb::HelperReport {
            received: Vec::new(),
            ..valid.clone()
        };
        Some(self.helper_keys[j].sign(&patched(&valid, &bare, patch)?))
    }

    /// Helper `j`'s encoded answer to `inclusion_set`: its valid vector, or
    /// `vector` if that is not empty, under a header bound to that set and
    /// vector, with `header_patch` merged over the header, signed by helper `j`.
    pub fn patched_answer(
        &self,
        j: usize,
        inclusion_set: &pb::SignedEnvelope,
        vector: &[u8],
        header_patch: &[u8],
    ) -> Option<Vec<u8>> {
        let mut share = self.aggregates[j].clone();
        if !vector.is_empty() {
            share.vector = vector.to_vec();
        }
        let mut header: pb::AggregateShareHeader =
            decoded(share.header.as_ref().expect("answers carry a header"));
        header.inclusion_hash = Digest::of(contexts::INCLUSION, &inclusion_set.body)
            .0
            .to_vec();
        header.vector_digest = Digest::of(contexts::AGGREGATE, &share.vector).0.to_vec();
        header.merge(header_patch).ok()?;
        share.header = Some(self.helper_keys[j].sign(&header));
        Some(share.encode_to_vec())
    }

    /// Helper `j`'s receipt for client `c` with `patch` merged over it, signed
    /// by helper `j`.
    pub fn patched_receipt(&self, c: usize, j: usize, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        let mut receipt: pb::Receipt = decoded(&self.receipts[c][j]);
        receipt.merge(patch).ok()?;
        Some(self.helper_keys[j].sign(&receipt))
    }
}

/// The body of an envelope this crate signed.
pub fn decoded<M: prost::Message + Default>(envelope: &pb::SignedEnvelope) -> M {
    M::decode(envelope.body.as_slice()).expect("a message the fixture signed")
}

/// A coordinator of `config` that started a round of `task` over `clients`
/// at [`START`], and that step.
fn started_coordinator(
    config: &CoordinatorConfig,
    task: &Task,
    clients: Vec<PartyId>,
) -> (Coordinator, Step) {
    let mut coordinator = Coordinator::new(config.clone(), 1);
    let start = Start {
        task: task.clone(),
        clients,
        nonce: NONCE,
    };
    let step = coordinator
        .handle(START, Input::Start(start))
        .expect("the fixture round is valid");
    (coordinator, step)
}

/// `descriptor`'s body with the fields `clear` selects emptied (bit 0 task,
/// 1 clients, 2 helpers, 3 nonce, 4 signing key id, 5 task.quant) and
/// `patch` merged over it, signed by `key`; `None` if `patch` does not
/// decode.
pub fn resigned_descriptor(
    key: &SigningKey,
    descriptor: &pb::SignedEnvelope,
    clear: u8,
    patch: &[u8],
) -> Option<pb::SignedEnvelope> {
    let mut body: pb::RoundDescriptor = decoded(descriptor);
    let clear = |bit: u8| clear & (1 << bit) != 0;
    if clear(0) {
        body.task = None;
    }
    if clear(1) {
        body.clients.clear();
    }
    if clear(2) {
        body.helpers.clear();
    }
    if clear(3) {
        body.nonce.clear();
    }
    if clear(4) {
        body.signing_key_id.clear();
    }
    if clear(5) {
        body.task.iter_mut().for_each(|t| t.quant = None);
    }
    body.merge(patch).ok()?;
    Some(key.sign(&body))
}

/// The coordinator's catalog: every built-in task, as a node has it.
pub fn analytics_catalog() -> &'static sealroom_node::tasks::TaskCatalog {
    static CATALOG: OnceLock<sealroom_node::tasks::TaskCatalog> = OnceLock::new();
    CATALOG.get_or_init(sealroom_analytics::service::catalog)
}

/// A query with every aggregate shape over the columns `dept`, `x`, `y`.
pub fn csv_plan() -> &'static sealroom_analytics::query::QueryPlan {
    static PLAN: OnceLock<sealroom_analytics::query::QueryPlan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = sealroom_analytics::query::QuerySpec {
            max_rows_per_client: None,
            sql: "SELECT dept, COUNT(*), SUM(x), AVG(y), VAR_SAMP(x), HISTOGRAM(x, 0, 10), \
                  REGR_SLOPE(y, x), OLS(y, x) FROM t WHERE x > 0 OR y IS NULL GROUP BY dept"
                .into(),
            domains: [("dept".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
            bounds: [
                ("x".to_string(), [-100.0, 100.0]),
                ("y".to_string(), [-1.0e6, 1.0e6]),
            ]
            .into(),
            min_rows: 5,
            min_clients: 2,
            dp: None,
        };
        sealroom_analytics::query::plan(&spec).expect("the fixed query plans")
    })
}

/// A single-threaded runtime (with its timer and I/O drivers, which the
/// store's connection pool uses) for targets that drive async code.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}
