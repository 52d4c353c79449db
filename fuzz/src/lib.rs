//! Fixtures shared by sealroom's fuzz targets (`fuzz_targets/`).
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

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::{QuantSpec, RingKind, Seed};
use sealroom_protocol::action::{Action, Message};
use sealroom_protocol::client::{Client, ClientConfig, ClientRound};
use sealroom_protocol::coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorRound, Outcome, Task,
};
use sealroom_protocol::descriptor::{DescriptorTrust, TrustedKey};
use sealroom_protocol::helper::{Helper, HelperConfig};
use sealroom_protocol::ids::contexts;
use sealroom_protocol::{Digest, Millis, PartyId, SigningKey, VerifiedDescriptor, pb};

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

/// Round shapes a target picks with one input byte: additive over each ring,
/// and Shamir 2-of-3 over F_p.
const SHAPES: [(RingKind, Option<usize>); 4] = [
    (RingKind::Z2_32, None),
    (RingKind::Z2_64, None),
    (RingKind::Fp61, None),
    (RingKind::Fp61, Some(2)),
];

/// A fixed Ed25519 key, the same for a given seed on every run.
pub fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// The fixture of shape `shape % 4` (built on first use).
pub fn fixture(shape: u8) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; SHAPES.len()] = [const { OnceLock::new() }; SHAPES.len()];
    let i = usize::from(shape) % SHAPES.len();
    FIXTURES[i].get_or_init(|| Fixture::new(SHAPES[i].0, SHAPES[i].1))
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

/// One valid round with everything its parties exchanged on the happy path.
pub struct Fixture {
    /// The coordinator's configuration (its key signs descriptors and
    /// inclusion sets).
    pub coordinator: CoordinatorConfig,
    /// What the round computes.
    pub task: Task,
    /// The trust every party has in the coordinator: its key, epochs 1..=1000.
    pub trust: DescriptorTrust,
    /// The round's verified descriptor.
    pub descriptor: VerifiedDescriptor,
    /// Helper configurations, by helper index.
    pub helpers: Vec<HelperConfig>,
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
    fn new(ring: RingKind, threshold: Option<usize>) -> Fixture {
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
            signing_key: coordinator_key,
            epoch: 7,
            helpers: helper_ids
                .iter()
                .zip(&helper_keys)
                .map(|(id, k)| (*id, k.verifying_key()))
                .collect(),
            threshold,
            min_clients: 2,
            upload_window_ms: WINDOW_MS,
            aggregation_window_ms: WINDOW_MS,
        };
        let task = Task {
            name: "fuzz".into(),
            vector_len: VECTOR_LEN as u64,
            ring,
            spec: QuantSpec::new(16, 8.0, 24).expect("a valid spec"),
            params: Vec::new(),
            min_clients: None,
        };
        let helpers = helper_ids
            .iter()
            .zip(helper_keys)
            .map(|(id, signing_key)| HelperConfig {
                me: *id,
                coordinator: COORDINATOR,
                signing_key,
                trust: trust.clone(),
                max_pending_uploads: 16,
            })
            .collect();
        let helper_verifying_keys: BTreeMap<PartyId, _> =
            coordinator.helpers.iter().copied().collect();
        let clients = client_ids
            .iter()
            .map(|id| ClientConfig {
                me: *id,
                trust: trust.clone(),
                helper_keys: helper_verifying_keys.clone(),
            })
            .collect();
        let mut fixture = Fixture {
            descriptor: Coordinator::new(coordinator.clone(), 1)
                .start_round(START, task.clone(), client_ids, [0x5e; 32])
                .expect("the fixture round is valid")
                .0
                .descriptor()
                .clone(),
            coordinator,
            task,
            trust,
            helpers,
            clients,
            uploads: Vec::new(),
            receipts: vec![Vec::new(); CLIENTS],
            reports: Vec::new(),
            inclusion_set: pb::InclusionSet::default(),
            aggregates: Vec::new(),
        };
        fixture.uploads = (0..CLIENTS)
            .map(|c| {
                let (_, actions) = fixture.client_round(c);
                actions
                    .into_iter()
                    .filter_map(|a| match a {
                        Action::Send {
                            message: Message::Upload(bytes),
                            ..
                        } => Some(bytes.expose().to_vec()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut helpers: Vec<Helper> = (0..HELPERS).map(|j| fixture.helper(j)).collect();
        for (j, helper) in helpers.iter_mut().enumerate() {
            for c in 0..CLIENTS {
                let from = fixture.clients[c].me;
                let actions = helper
                    .on_upload(START, from, &fixture.uploads[c][j])
                    .expect("helpers accept the fixture's uploads");
                for action in actions {
                    match action {
                        Action::Send {
                            message: Message::Receipt(e),
                            ..
                        } => fixture.receipts[c].push(e),
                        Action::Send {
                            message: Message::Report(e),
                            ..
                        } => fixture.reports.push(e),
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(
            fixture.reports.len(),
            HELPERS,
            "every helper reports once all clients sent"
        );

        // The coordinator decides on every client and helper; the helpers answer.
        let mut round = fixture.coordinator_round();
        let mut decided = Vec::new();
        for (helper, report) in fixture.helpers.iter().zip(&fixture.reports) {
            decided = round
                .on_report(START, helper.me, report)
                .expect("a valid report");
        }
        let set = round
            .inclusion_set()
            .expect("every helper reported")
            .clone();
        fixture.inclusion_set = decoded(&set);
        assert_eq!(fixture.inclusion_set.clients.len(), CLIENTS);
        assert_eq!(decided.len(), 1 + fixture.inclusion_set.helpers.len());
        for (helper, config) in helpers.iter_mut().zip(&fixture.helpers) {
            let actions = helper
                .on_inclusion_set(START, &set)
                .expect("a valid inclusion set");
            for action in actions {
                if let Action::Send {
                    message: Message::AggregateShare(bytes),
                    ..
                } = action
                {
                    let share =
                        pb::AggregateShare::decode(bytes.expose()).expect("an answer we made");
                    round
                        .on_aggregate(START, config.me, bytes.expose())
                        .expect("a valid answer");
                    fixture.aggregates.push(share);
                }
            }
        }
        assert!(
            matches!(round.outcome(), Some(Outcome::Completed(_))),
            "the fixture round completes: {:?}",
            round.outcome()
        );
        fixture
    }

    /// Client `c`, participating in the round afresh.
    pub fn client_round(&self, c: usize) -> (ClientRound, Vec<Action>) {
        let input: Vec<f64> = (0..VECTOR_LEN)
            .map(|k| (c as f64 + 1.0) * (k as f64 - 1.5))
            .collect();
        Client::new(self.clients[c].clone(), None)
            .participate(
                START,
                self.descriptor.envelope(),
                &input,
                None,
                &Seed::from_bytes([c as u8; 32]),
            )
            .expect("the fixture's clients take part")
    }

    /// Helper `j`, fresh, having accepted the round.
    pub fn helper(&self, j: usize) -> Helper {
        let mut helper = Helper::new(self.helpers[j].clone());
        helper
            .on_descriptor(START, self.descriptor.envelope())
            .expect("the fixture's helpers accept the round");
        helper
    }

    /// The coordinator's side of the round, fresh after `start_round`.
    pub fn coordinator_round(&self) -> CoordinatorRound {
        let clients = self.clients.iter().map(|c| c.me).collect();
        let (round, _) = Coordinator::new(self.coordinator.clone(), 1)
            .start_round(START, self.task.clone(), clients, [0x5e; 32])
            .expect("the fixture round is valid");
        debug_assert_eq!(round.descriptor().hash(), self.descriptor.hash());
        round
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
        let mut body: pb::RoundDescriptor = decoded(self.descriptor.envelope());
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
        Some(self.coordinator.signing_key.sign(&body))
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
        Some(self.coordinator.signing_key.sign(&set))
    }

    /// Helper `j`'s report, signed by helper `j`: the valid one if `patch` is
    /// empty, else `patch` merged over one that holds no client.
    pub fn patched_report(&self, j: usize, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        let valid: pb::HelperReport = decoded(&self.reports[j]);
        let bare = pb::HelperReport {
            received: Vec::new(),
            ..valid.clone()
        };
        Some(
            self.helpers[j]
                .signing_key
                .sign(&patched(&valid, &bare, patch)?),
        )
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
        share.header = Some(self.helpers[j].signing_key.sign(&header));
        Some(share.encode_to_vec())
    }

    /// Helper `j`'s receipt for client `c` with `patch` merged over it, signed
    /// by helper `j`.
    pub fn patched_receipt(&self, c: usize, j: usize, patch: &[u8]) -> Option<pb::SignedEnvelope> {
        let mut receipt: pb::Receipt = decoded(&self.receipts[c][j]);
        receipt.merge(patch).ok()?;
        Some(self.helpers[j].signing_key.sign(&receipt))
    }
}

/// The body of an envelope this module signed.
fn decoded<M: prost::Message + Default>(envelope: &pb::SignedEnvelope) -> M {
    M::decode(envelope.body.as_slice()).expect("a message the fixture signed")
}

/// The coordinator's catalog with the training and query tasks.
pub fn analytics_catalog() -> &'static sealroom_node::tasks::TaskCatalog {
    static CATALOG: OnceLock<sealroom_node::tasks::TaskCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut c = sealroom_node::tasks::TaskCatalog::with_builtins();
        sealroom_analytics::training::register_tasks(&mut c);
        sealroom_analytics::joint::register_tasks(&mut c);
        c
    })
}

/// A query with every aggregate shape over the columns `dept`, `x`, `y`.
pub fn csv_plan() -> &'static sealroom_analytics::query::QueryPlan {
    static PLAN: OnceLock<sealroom_analytics::query::QueryPlan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = sealroom_analytics::query::QuerySpec {
            sql: "SELECT dept, COUNT(*), SUM(x), AVG(y), VAR_SAMP(x), HISTOGRAM(x, 0, 10), \
                  REGR_SLOPE(y, x), OLS(y, x) FROM t WHERE x > 0 OR y IS NULL GROUP BY dept"
                .into(),
            domains: [("dept".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
            min_rows: 5,
            min_clients: 2,
        };
        sealroom_analytics::query::plan(&spec).expect("the fixed query plans")
    })
}

/// A single-threaded runtime for targets that drive async code.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}
