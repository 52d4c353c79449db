//! Attacks on the round, each refused with its own typed error.

use crate::support;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::{QuantSpec, RingKind, Seed};
use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::client::{Client, ClientError};
use sealroom_protocol::coordinator::{CoordinatorError, Outcome, Task};
use sealroom_protocol::descriptor::{
    DescriptorError, DescriptorParams, MAX_ROUND_ID, PROTOCOL_VERSION, VerifiedDescriptor,
};
use sealroom_protocol::envelope::EnvelopeError;
use sealroom_protocol::helper::{Helper, HelperError};
use sealroom_protocol::machine::{
    ClientInput, Inbound, Input, Participation, ProtocolError, Refusal, Start, Step,
};
use sealroom_protocol::{Machine, Millis, PartyId, SigningKey, pb};
use support::{Faults, Network, START, Setup, Sim, check_outcome, random_inputs};

/// A federation with a round started: 3 helpers, 5 clients, min_clients 3.
struct Fixture {
    sim: Sim,
    descriptor: VerifiedDescriptor,
    /// uploads[client][helper]: encoded upload bytes.
    uploads: Vec<Vec<Vec<u8>>>,
}

fn helper_error(r: Refusal) -> HelperError {
    match *r.error {
        ProtocolError::Helper(e) => e,
        other => panic!("not a helper's refusal: {other}"),
    }
}

fn client_error(r: Refusal) -> ClientError {
    match *r.error {
        ProtocolError::Client(e) => e,
        other => panic!("not a client's refusal: {other}"),
    }
}

fn coordinator_error(r: Refusal) -> CoordinatorError {
    match *r.error {
        ProtocolError::Coordinator(e) => e,
        other => panic!("not the coordinator's refusal: {other}"),
    }
}

/// A client takes part: it verifies `descriptor`, then shares `input`.
fn participate(
    client: &mut Client,
    now: Millis,
    descriptor: &pb::SignedEnvelope,
    input: &[f64],
    seed: [u8; 32],
) -> Result<Step, ClientError> {
    let asked = client
        .handle(
            now,
            Input::Inbound {
                from: client.coordinator(),
                msg: Inbound::Descriptor(descriptor.clone()),
            },
        )
        .map_err(client_error)?;
    client
        .handle(
            now,
            Input::Participate(Participation {
                round: asked.round.expect("a verified round"),
                input: Ok(ClientInput::new(input.to_vec())),
                randomness: Seed::from_bytes(seed),
            }),
        )
        .map_err(client_error)
}

/// Issues descriptor `round_id` over `clients` as the sim's coordinator
/// would (a second round while the first one runs needs its own signer).
fn issue(sim: &Sim, round_id: u64, clients: Vec<PartyId>, nonce: u8) -> VerifiedDescriptor {
    issue_task(sim, round_id, clients, nonce, sim.task()).expect("valid descriptor")
}

fn issue_task(
    sim: &Sim,
    round_id: u64,
    clients: Vec<PartyId>,
    nonce: u8,
    task: Task,
) -> Result<VerifiedDescriptor, DescriptorError> {
    DescriptorParams {
        engine: None,
        share_bits: None,
        federation_id: support::FEDERATION.into(),
        round_id,
        epoch: 0,
        task_name: task.name,
        task_params: task.params,
        vector_len: task.vector_len,
        ring: task.ring,
        spec: task.spec,
        threshold: sim.setup.threshold,
        clients,
        helpers: sim.helpers.iter().map(|h| h.id).collect(),
        min_clients: sim.setup.min_clients,
        issued_at: START,
        upload_window_ms: support::UPLOAD_WINDOW_MS,
        aggregation_window_ms: support::AGGREGATION_WINDOW_MS,
        nonce: [nonce; 32],
    }
    .sign(&sim.coordinator_key)
}

/// Starts a round of the sim's task over all its clients at the sim's
/// coordinator; its descriptor.
fn start_round(sim: &mut Sim, nonce: u8) -> VerifiedDescriptor {
    let ids: Vec<PartyId> = sim.clients.iter().map(|c| c.id).collect();
    let task = sim.task();
    sim.coordinator
        .handle(
            START,
            Input::Start(Start {
                task,
                clients: ids,
                nonce: [nonce; 32],
            }),
        )
        .expect("starts");
    sim.coordinator
        .round()
        .expect("running")
        .descriptor()
        .clone()
}

/// The one aggregate share among a helper's `actions` (exactly one).
fn answer_of(actions: &[Action]) -> Vec<u8> {
    let answers: Vec<Vec<u8>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Message::AggregateShare(b),
                ..
            } => Some(b.expose().to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "one answer in {actions:?}");
    answers.into_iter().next().expect("one")
}

/// The encoded uploads a participation step sends, in helper order.
fn uploads_of(step: Step) -> Vec<Vec<u8>> {
    step.actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Message::Upload(b),
                ..
            } => Some(b.expose().to_vec()),
            _ => None,
        })
        .collect()
}

fn fixture(setup: Setup) -> Fixture {
    let mut sim = Sim::new(setup.clone(), Network::default(), 77);
    let descriptor = start_round(&mut sim, 1);
    let coordinator = sim.coordinator_id;
    for h in &mut sim.helpers {
        h.helper
            .as_mut()
            .expect("alive")
            .handle(
                START,
                Input::Inbound {
                    from: coordinator,
                    msg: Inbound::Descriptor(descriptor.envelope().clone()),
                },
            )
            .expect("valid descriptor");
    }
    let inputs = random_inputs(
        &mut ChaCha20Rng::seed_from_u64(5),
        setup.clients,
        setup.vector_len,
        4.0,
    );
    let mut uploads = Vec::new();
    for (c, node) in sim.clients.iter_mut().enumerate() {
        let step = participate(
            &mut node.client,
            START,
            descriptor.envelope(),
            &inputs[c],
            [c as u8; 32],
        )
        .expect("participates");
        uploads.push(uploads_of(step));
    }
    Fixture {
        sim,
        descriptor,
        uploads,
    }
}

fn setup() -> Setup {
    let mut s = Setup::additive(3, 5);
    s.min_clients = 3;
    s
}

/// Feeds `input` to a helper; the refusal as a helper error.
fn feed(helper: &mut Helper, now: Millis, input: Input) -> Result<Step, HelperError> {
    helper.handle(now, input).map_err(helper_error)
}

/// Feeds `input` to a helper and records what it persists on `disk`, as a
/// runtime would; the step's actions.
fn recorded(
    helper: &mut Helper,
    disk: &mut support::Disk,
    now: Millis,
    input: Input,
) -> Result<Vec<Action>, HelperError> {
    let step = feed(helper, now, input)?;
    for action in &step.actions {
        if let Action::Persist(p) = action {
            disk.apply_public(p);
        }
    }
    Ok(step.actions)
}

fn upload_input(from: PartyId, bytes: &[u8]) -> Input {
    Input::Inbound {
        from,
        msg: Inbound::Upload(SecretBytes::new(bytes.to_vec())),
    }
}

impl Fixture {
    fn helper(&mut self, h: usize) -> &mut Helper {
        self.sim.helpers[h].helper.as_mut().expect("alive")
    }
    fn client_id(&self, c: usize) -> PartyId {
        self.sim.clients[c].id
    }
    fn upload(
        &mut self,
        h: usize,
        now: Millis,
        from: PartyId,
        bytes: &[u8],
    ) -> Result<Step, HelperError> {
        feed(self.helper(h), now, upload_input(from, bytes))
    }
    fn descriptor_to(&mut self, h: usize, env: &pb::SignedEnvelope) -> Result<Step, HelperError> {
        let from = self.sim.coordinator_id;
        feed(
            self.helper(h),
            START,
            Input::Inbound {
                from,
                msg: Inbound::Descriptor(env.clone()),
            },
        )
    }
    fn inclusion_to(&mut self, h: usize, env: &pb::SignedEnvelope) -> Result<Step, HelperError> {
        let from = self.sim.coordinator_id;
        feed(
            self.helper(h),
            START,
            Input::Inbound {
                from,
                msg: Inbound::InclusionSet(env.clone()),
            },
        )
    }
    /// Delivers every client's upload to helper `h` and makes it report.
    fn fill_and_report(&mut self, h: usize, clients: &[usize]) {
        for &c in clients {
            let id = self.client_id(c);
            let bytes = self.uploads[c][h].clone();
            self.upload(h, START, id, &bytes).expect("valid upload");
        }
        let after = START.plus(support::UPLOAD_WINDOW_MS);
        feed(self.helper(h), after, Input::Timer).expect("timer");
    }
    fn inclusion(
        &self,
        clients: Vec<u32>,
        helpers: Vec<u32>,
        key: &SigningKey,
    ) -> pb::SignedEnvelope {
        key.sign(&pb::InclusionSet {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            clients,
            helpers,
        })
    }
}

fn descriptor_body(env: &pb::SignedEnvelope) -> pb::RoundDescriptor {
    pb::RoundDescriptor::decode(env.body.as_slice()).expect("decodes")
}

#[test]
fn forged_descriptor_is_refused() {
    let mut f = fixture(setup());
    // Signed by a key nobody pinned.
    let attacker = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(666));
    let mut body = descriptor_body(f.descriptor.envelope());
    body.round_id = 2;
    let forged = attacker.sign(&body);
    let err = f.sim.clients[0]
        .client
        .check_descriptor(&forged)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Descriptor(DescriptorError::UntrustedKey { .. })
        ),
        "{err}"
    );
    let err = f.descriptor_to(0, &forged).unwrap_err();
    assert!(
        matches!(
            err,
            HelperError::Descriptor(DescriptorError::UntrustedKey { .. })
        ),
        "{err}"
    );
}

#[test]
fn wrongly_signed_descriptor_is_refused() {
    let mut f = fixture(setup());
    // The coordinator's key id, but the body was altered after signing.
    let mut tampered = f.descriptor.envelope().clone();
    let mut body = descriptor_body(&tampered);
    body.round_id = 2;
    body.min_clients = 2;
    tampered.body = body.encode_to_vec();
    let err = f.sim.clients[1]
        .client
        .check_descriptor(&tampered)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Descriptor(DescriptorError::Envelope(
                EnvelopeError::BadSignature { .. }
            ))
        ),
        "{err}"
    );
    let err = f.descriptor_to(1, &tampered).unwrap_err();
    assert!(matches!(
        err,
        HelperError::Descriptor(DescriptorError::Envelope(
            EnvelopeError::BadSignature { .. }
        ))
    ));
}

#[test]
fn replayed_round_id_is_refused() {
    let mut f = fixture(setup());
    // Every client already took part in round 1: seeing it again is a replay.
    let err = f.sim.clients[0]
        .client
        .check_descriptor(f.descriptor.envelope())
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Descriptor(DescriptorError::Replayed { round: 1, last: 1 })
    );
    // A fresh round 2, then round 1 again at a helper.
    let ids: Vec<PartyId> = f.sim.clients.iter().map(|c| c.id).collect();
    let d2 = issue(&f.sim, 2, ids, 2).envelope().clone();
    f.descriptor_to(0, &d2).expect("round 2 accepted");
    // A re-signed copy of round 1 (different nonce, same id) is still a replay.
    let mut body = descriptor_body(f.descriptor.envelope());
    body.nonce = vec![9; 32];
    let replay = f.sim.coordinator_key.sign(&body);
    let err = f.descriptor_to(0, &replay).unwrap_err();
    assert_eq!(
        err,
        HelperError::Descriptor(DescriptorError::Replayed { round: 1, last: 2 })
    );
}

#[test]
fn unknown_protocol_version_is_refused() {
    let mut f = fixture(setup());
    let mut body = descriptor_body(f.descriptor.envelope());
    body.protocol_version = PROTOCOL_VERSION + 1;
    body.round_id = 5;
    let future = f.sim.coordinator_key.sign(&body);
    let err = f.descriptor_to(2, &future).unwrap_err();
    assert_eq!(
        err,
        HelperError::Descriptor(DescriptorError::UnsupportedVersion {
            version: 2,
            supported: 1
        })
    );
    let err = f.sim.clients[0]
        .client
        .check_descriptor(&future)
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Descriptor(DescriptorError::UnsupportedVersion { .. })
    ));
}

#[test]
fn round_id_beyond_the_store_limit_is_refused() {
    // Found by the node_driver fuzz target: a coordinator-signed round id
    // above i64::MAX passed verification, then the helper's store refused to
    // persist it and the helper node stopped.
    let mut f = fixture(setup());
    let mut body = descriptor_body(f.descriptor.envelope());
    body.round_id = MAX_ROUND_ID + 1;
    let huge = f.sim.coordinator_key.sign(&body);
    let err = f.descriptor_to(0, &huge).unwrap_err();
    assert!(
        matches!(
            err,
            HelperError::Descriptor(DescriptorError::Invalid {
                field: "round_id",
                ..
            })
        ),
        "{err}"
    );
    let err = f.sim.clients[0].client.check_descriptor(&huge).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Descriptor(DescriptorError::Invalid {
                field: "round_id",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn upload_for_another_round_is_refused() {
    let mut f = fixture(setup());
    let id = f.client_id(0);
    // Right descriptor hash, wrong round id.
    let mut upload = pb::Upload::decode(f.uploads[0][1].as_slice()).expect("decodes");
    upload.round_id = 7;
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(err, HelperError::RoundMismatch { round: 1 });
    // A descriptor hash the helper never saw, claiming a round id it knows
    // or has passed: the claim is not trusted, the round is unknown.
    let mut upload = pb::Upload::decode(f.uploads[0][1].as_slice()).expect("decodes");
    upload.descriptor_hash = vec![0xAA; 32];
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(err, HelperError::UnknownRound);
    // Claiming a later round: perhaps its descriptor is on the way.
    upload.round_id = 2;
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(err, HelperError::NotYetKnown);
    upload.round_id = 0;
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(err, HelperError::UnknownRound);
}

#[test]
fn duplicate_upload_is_refused() {
    let mut f = fixture(setup());
    let id = f.client_id(2);
    let bytes = f.uploads[2][0].clone();
    let step = f.upload(0, START, id, &bytes).expect("first upload");
    assert!(step.actions.iter().any(|a| matches!(
        a,
        Action::Send {
            message: Message::Receipt(_),
            ..
        }
    )));
    let err = f.upload(0, START, id, &bytes).unwrap_err();
    assert_eq!(
        err,
        HelperError::DuplicateUpload {
            round: 1,
            client: 2
        }
    );
}

#[test]
fn wrong_vector_length_is_refused() {
    let mut f = fixture(setup());
    // Client 1's correction vector goes to helper 1 (1 mod 3).
    let id = f.client_id(1);
    let mut upload = pb::Upload::decode(f.uploads[1][1].as_slice()).expect("decodes");
    let Some(pb::upload::Share::Vector(v)) = &mut upload.share else {
        panic!("helper 1 holds the correction")
    };
    let full = v.len();
    assert_eq!(full, f.descriptor.vector_bytes());
    v.truncate(full - 8);
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(
        err,
        HelperError::ShareLength {
            round: 1,
            client: 1,
            expected: full,
            actual: full - 8
        }
    );
    // A seed of the wrong size, and a vector where a seed is due.
    let mut upload = pb::Upload::decode(f.uploads[1][0].as_slice()).expect("decodes");
    upload.share = Some(pb::upload::Share::Seed(vec![0; 31]));
    let err = f.upload(0, START, id, &upload.encode_to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            HelperError::ShareLength {
                expected: 32,
                actual: 31,
                ..
            }
        ),
        "{err}"
    );
    upload.share = Some(pb::upload::Share::Vector(vec![0; full]));
    let err = f.upload(0, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(
        err,
        HelperError::WrongShareKind {
            round: 1,
            client: 1,
            expected: "seed"
        }
    );
    // The helper still accepts the genuine upload afterwards.
    let bytes = f.uploads[1][0].clone();
    f.upload(0, START, id, &bytes)
        .expect("genuine upload still accepted");
}

/// Narrow shares: a sum's correction vector travels bit-packed at the
/// descriptor's share width, the narrowest the headroom check admits for
/// the listed clients. A share one byte long or short, or with a padding
/// bit set, is refused like any malformed share; a descriptor whose width
/// could not hold the sum, or that narrows a threshold or engine round, is
/// refused by every receiver (`sign` verifies as they do).
#[test]
fn narrowed_shares_are_exactly_sized_and_canonical() {
    let mut narrow = setup();
    narrow.ring = RingKind::Z2_32;
    narrow.spec = QuantSpec::new(0, 127.0, 8).expect("valid");
    narrow.vector_len = 15;
    let mut f = fixture(narrow);
    // 5 clients × 127 = 635 needs 11 signed bits: 15 × 11 = 165 bits, 21
    // bytes with 3 padding bits (the plaintext f32 vector is 60 bytes).
    assert_eq!(f.descriptor.encoding().share_bits(), Some(11));
    assert_eq!(f.descriptor.vector_bytes(), 21);
    let id = f.client_id(1);
    let genuine = f.uploads[1][1].clone();
    let mut upload = pb::Upload::decode(genuine.as_slice()).expect("decodes");
    let Some(pb::upload::Share::Vector(v)) = &mut upload.share else {
        panic!("helper 1 holds the correction")
    };
    assert_eq!(v.len(), 21);
    v[20] |= 0x80;
    let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
    assert_eq!(
        err,
        HelperError::NonCanonicalShare {
            round: 1,
            client: 1
        }
    );
    for len in [20, 22, 60] {
        upload.share = Some(pb::upload::Share::Vector(vec![0; len]));
        let err = f.upload(1, START, id, &upload.encode_to_vec()).unwrap_err();
        assert_eq!(
            err,
            HelperError::ShareLength {
                round: 1,
                client: 1,
                expected: 21,
                actual: len
            }
        );
    }
    f.upload(1, START, id, &genuine)
        .expect("the genuine narrow upload is accepted");

    let ids: Vec<PartyId> = f.sim.clients.iter().map(|c| c.id).collect();
    let params = |share_bits: Option<u8>, threshold: Option<usize>| DescriptorParams {
        engine: None,
        share_bits,
        federation_id: support::FEDERATION.into(),
        round_id: 10,
        epoch: 0,
        task_name: "x".into(),
        task_params: Vec::new(),
        vector_len: 4,
        ring: if threshold.is_some() {
            RingKind::Fp61
        } else {
            RingKind::Z2_32
        },
        spec: QuantSpec::new(0, 127.0, 8).expect("valid"),
        threshold,
        clients: ids.clone(),
        helpers: f.sim.helpers.iter().map(|h| h.id).collect(),
        min_clients: 3,
        issued_at: Millis(0),
        upload_window_ms: 1,
        aggregation_window_ms: 1,
        nonce: [0; 32],
    };
    let sign = |p: DescriptorParams| p.sign(&f.sim.coordinator_key);
    assert_eq!(
        DescriptorParams::narrowest_share_bits(
            RingKind::Z2_32,
            ids.len(),
            QuantSpec::new(0, 127.0, 8).expect("valid")
        ),
        Some(11)
    );
    sign(params(Some(11), None)).expect("11 bits hold 5 × 127");
    sign(params(Some(20), None)).expect("any width that holds the sum");
    for bits in [10, 32, 1] {
        let err = sign(params(Some(bits), None)).unwrap_err();
        assert!(
            matches!(err, DescriptorError::Quantization { .. }),
            "{bits} bits: {err}"
        );
    }
    let err = sign(params(Some(20), Some(2))).unwrap_err();
    assert!(
        matches!(
            err,
            DescriptorError::Invalid {
                field: "task.share_bits",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn client_not_in_list_is_refused() {
    let mut f = fixture(setup());
    let stranger = PartyId([0x55; 32]);
    let bytes = f.uploads[0][0].clone();
    let err = f.upload(0, START, stranger, &bytes).unwrap_err();
    assert_eq!(
        err,
        HelperError::NotAParticipant {
            round: 1,
            party: stranger
        }
    );
    // A listed client claiming another client's index.
    let id = f.client_id(3);
    let err = f.upload(0, START, id, &bytes).unwrap_err();
    assert_eq!(
        err,
        HelperError::ClientIndexMismatch {
            round: 1,
            claimed: 0,
            actual: 3
        }
    );
    // And a client left out of a round refuses it.
    let ids: Vec<PartyId> = f.sim.clients.iter().skip(1).map(|c| c.id).collect();
    let r2 = issue(&f.sim, 2, ids, 3);
    let err = f.sim.clients[0]
        .client
        .check_descriptor(r2.envelope())
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Descriptor(DescriptorError::NotAParticipant {
            round: 2,
            role: "client"
        })
    );
}

#[test]
fn late_and_malformed_uploads_are_refused() {
    let mut f = fixture(setup());
    let id = f.client_id(0);
    let bytes = f.uploads[0][0].clone();
    let late = START.plus(support::UPLOAD_WINDOW_MS);
    assert_eq!(
        f.upload(0, late, id, &bytes).unwrap_err(),
        HelperError::Late {
            round: 1,
            client: Some(0)
        }
    );
    let err = f
        .upload(0, START, id, &[0xff, 0xff, 0xff, 0x01])
        .unwrap_err();
    assert!(matches!(err, HelperError::MalformedUpload { .. }), "{err}");
    // Larger than any known round's upload: not decoded at all (it could
    // only be for a round not yet known).
    let err = f.upload(0, START, id, &vec![0u8; 1 << 16]).unwrap_err();
    assert_eq!(err, HelperError::NotYetKnown);
    // A NaN input is the client's own error, before anything is sent.
    let ids: Vec<PartyId> = f.sim.clients.iter().map(|c| c.id).collect();
    let r2 = issue(&f.sim, 2, ids, 4);
    let mut input = vec![0.0; 16];
    input[3] = f64::NAN;
    let err = participate(
        &mut f.sim.clients[0].client,
        START,
        r2.envelope(),
        &input,
        [0; 32],
    )
    .unwrap_err();
    assert!(matches!(err, ClientError::Quantization { .. }), "{err}");
    assert_eq!(
        f.sim.clients[0].client.last_round(),
        Some(1),
        "a refused round changes nothing"
    );
}

#[test]
fn inclusion_set_below_min_clients_is_refused() {
    let mut f = fixture(setup());
    f.fill_and_report(0, &[0, 1, 2, 3, 4]);
    let key = f.sim.coordinator_key.clone();
    let set = f.inclusion(vec![0, 1], vec![0, 1, 2], &key);
    let err = f.inclusion_to(0, &set).unwrap_err();
    assert_eq!(
        err,
        HelperError::InclusionTooSmall {
            round: 1,
            size: 2,
            min_clients: 3
        }
    );
}

#[test]
fn inclusion_set_naming_unreceived_client_is_refused() {
    let mut f = fixture(setup());
    f.fill_and_report(0, &[0, 1, 2, 3]);
    let key = f.sim.coordinator_key.clone();
    let set = f.inclusion(vec![0, 1, 4], vec![0, 1, 2], &key);
    let err = f.inclusion_to(0, &set).unwrap_err();
    assert_eq!(
        err,
        HelperError::UnreceivedClient {
            round: 1,
            client: 4
        }
    );
    // Nor may the set be signed by anyone but the coordinator.
    let other = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
    let set = f.inclusion(vec![0, 1, 2], vec![0, 1, 2], &other);
    assert!(matches!(
        f.inclusion_to(0, &set),
        Err(HelperError::Envelope(_))
    ));
}

/// The differencing attack: sums over S and S ∖ {i} would reveal client i.
/// The helper answers one inclusion set per round, also after a restart.
#[test]
fn second_inclusion_set_is_refused_even_after_restart() {
    let f = fixture(setup());
    // Record what the helper persists, as a runtime would.
    let mut disk = support::Disk::default();
    let coordinator = f.sim.coordinator_id;
    let mut fresh = Helper::new(f.sim.helpers[0].config.clone());
    let mut run =
        |helper: &mut Helper, now: Millis, input: Input| recorded(helper, &mut disk, now, input);
    let descriptor = Input::Inbound {
        from: coordinator,
        msg: Inbound::Descriptor(f.descriptor.envelope().clone()),
    };
    run(&mut fresh, START, descriptor).expect("valid");
    for c in 0..5 {
        let id = f.client_id(c);
        run(&mut fresh, START, upload_input(id, &f.uploads[c][0])).expect("valid");
    }
    run(
        &mut fresh,
        START.plus(support::UPLOAD_WINDOW_MS),
        Input::Timer,
    )
    .expect("timer");
    let key = f.sim.coordinator_key.clone();
    let all = f.inclusion(vec![0, 1, 2, 3, 4], vec![0, 1, 2], &key);
    let minus_one = f.inclusion(vec![0, 1, 2, 3], vec![0, 1, 2], &key);
    let set = |env: &pb::SignedEnvelope| Input::Inbound {
        from: coordinator,
        msg: Inbound::InclusionSet(env.clone()),
    };
    let actions = run(&mut fresh, START, set(&all)).expect("first set answered");
    let first_answer = actions[1].clone();
    // The answer record is persisted before the answer is sent.
    assert!(matches!(
        actions[0],
        Action::Persist(sealroom_protocol::action::Persist::HelperAnswer { .. })
    ));
    assert!(matches!(
        actions[1],
        Action::Send {
            message: Message::AggregateShare(_),
            ..
        }
    ));
    assert_eq!(
        run(&mut fresh, START, set(&minus_one)).unwrap_err(),
        HelperError::AlreadyAnswered {
            round: 1,
            same_set: false
        }
    );
    // The same set again gets the same answer, byte for byte, and nothing
    // new is persisted (a lost answer or a restart must not lose the round).
    let again = run(&mut fresh, START, set(&all)).expect("the same set is answered again");
    assert_eq!(again.len(), 1, "no Persist: nothing new to record");
    assert_eq!(
        answer_of(&again),
        answer_of(std::slice::from_ref(&first_answer))
    );
    // Crash and restart from the persisted state: still refused.
    drop(fresh);
    let mut restarted =
        Helper::restore(f.sim.helpers[0].config.clone(), disk.state(), START).expect("restores");
    assert_eq!(
        feed(&mut restarted, START, set(&minus_one)).unwrap_err(),
        HelperError::AlreadyAnswered {
            round: 1,
            same_set: false
        }
    );
    // After the coordinator key that signed the round is retired (a live
    // rotation), a restart leaves the round out: it takes no more input and
    // is answered to no one.
    let mut retired = f.sim.helpers[0].config.clone();
    retired.trust.coordinator_keys = vec![sealroom_protocol::descriptor::TrustedKey {
        key: sealroom_protocol::SigningKey::from_secret_bytes(&[0x5e; 32]).verifying_key(),
        valid_from_epoch: 1,
        valid_until_epoch: None,
    }];
    let mut after_retirement =
        Helper::restore(retired, disk.state(), START).expect("restores without the round");
    assert_eq!(after_retirement.left_out(), 1);
    assert!(after_retirement.rounds().is_empty());
    assert!(feed(&mut after_retirement, START, set(&all)).is_err());
    // Without the answer record (a runtime that ignored Persist) it would
    // answer: the record is what protects the client.
    let mut forgetful = disk.clone();
    forgetful.rounds[0].answered = None;
    let mut careless = Helper::restore(f.sim.helpers[0].config.clone(), forgetful.state(), START)
        .expect("restores");
    assert!(feed(&mut careless, START, set(&minus_one)).is_ok());
}

/// A round costs a helper memory only while it can still be answered: the
/// shares until the one answer, then that answer (sent again, byte for
/// byte, for the same set) until `ANSWER_GRACE_MS` past the aggregation
/// deadline, then nothing — and an inclusion set after that, the same or
/// another, is refused. A round never answered (the coordinator aborted it)
/// closes the same way, and a helper restarted after the close restores the
/// round closed without decoding its shares.
#[test]
fn a_helper_drops_a_rounds_shares_once_answered_and_everything_once_closed() {
    let f = fixture(setup());
    let mut disk = support::Disk::default();
    let coordinator = f.sim.coordinator_id;
    let config = f.sim.helpers[0].config.clone();
    let mut helper = Helper::new(config.clone());
    let mut run =
        |helper: &mut Helper, now: Millis, input: Input| recorded(helper, &mut disk, now, input);
    let descriptor = Input::Inbound {
        from: coordinator,
        msg: Inbound::Descriptor(f.descriptor.envelope().clone()),
    };
    run(&mut helper, START, descriptor).expect("valid");
    assert_eq!(helper.bytes_in_memory(), 0);
    for c in 0..5 {
        let id = f.client_id(c);
        run(&mut helper, START, upload_input(id, &f.uploads[c][0])).expect("valid");
    }
    let collected = helper.bytes_in_memory();
    // Helper 0 holds the correction vector of clients 0 and 3 (8 elements
    // of Z_2^64 narrowed to the round's share width) and a seed of the rest.
    let vector = f.descriptor.vector_bytes();
    assert_eq!(collected, 2 * vector + 3 * 32);
    let after_uploads = START.plus(support::UPLOAD_WINDOW_MS);
    run(&mut helper, after_uploads, Input::Timer).expect("timer");
    let closes = f
        .descriptor
        .aggregation_deadline()
        .plus(sealroom_protocol::helper::ANSWER_GRACE_MS);
    assert_eq!(helper.next_deadline(), Some(closes));

    let key = f.sim.coordinator_key.clone();
    let all = f.inclusion(vec![0, 1, 2, 3, 4], vec![0, 1, 2], &key);
    let minus_one = f.inclusion(vec![0, 1, 2, 3], vec![0, 1, 2], &key);
    let set = |env: &pb::SignedEnvelope| Input::Inbound {
        from: coordinator,
        msg: Inbound::InclusionSet(env.clone()),
    };
    let answer = answer_of(&run(&mut helper, START, set(&all)).expect("answered"));
    // Only the answer is left: the five shares are gone.
    assert_eq!(helper.bytes_in_memory(), answer.len());
    // The same set, up to the last moment of the grace, gets the same bytes.
    let last_moment = Millis(closes.0 - 1);
    let again = run(&mut helper, last_moment, set(&all)).expect("the same set again");
    assert_eq!(answer_of(&again), answer);
    assert_eq!(
        run(&mut helper, last_moment, set(&minus_one)).unwrap_err(),
        HelperError::AlreadyAnswered {
            round: 1,
            same_set: false
        }
    );
    // A timer before the close changes nothing; at the close the answer goes.
    run(&mut helper, last_moment, Input::Timer).expect("timer");
    assert_eq!(helper.bytes_in_memory(), answer.len());
    run(&mut helper, closes, Input::Timer).expect("timer");
    assert_eq!(helper.bytes_in_memory(), 0);
    assert_eq!(helper.next_deadline(), None);
    for late in [&all, &minus_one] {
        assert_eq!(
            run(&mut helper, closes, set(late)).unwrap_err(),
            HelperError::AggregationClosed { round: 1 }
        );
    }

    // Restarted before the close: the shares come back, and the answer made
    // from them again is the same, byte for byte; then only it is held.
    let mut restarted = Helper::restore(config.clone(), disk.state(), START).expect("restores");
    assert_eq!(restarted.bytes_in_memory(), collected);
    let remade = answer_of(
        &feed(&mut restarted, START, set(&all))
            .expect("answered")
            .actions,
    );
    assert_eq!(remade, answer);
    assert_eq!(restarted.bytes_in_memory(), answer.len());
    // Restarted after the close: closed, nothing decoded, nothing answered.
    let mut late = Helper::restore(config.clone(), disk.state(), closes).expect("restores");
    assert_eq!(late.rounds(), vec![1]);
    assert_eq!(late.bytes_in_memory(), 0);
    assert_eq!(late.next_deadline(), None);
    assert_eq!(
        feed(&mut late, closes, set(&all)).unwrap_err(),
        HelperError::AggregationClosed { round: 1 }
    );
    // A round that was never answered (no inclusion set came) closes too.
    let mut unanswered = disk.clone();
    unanswered.rounds[0].answered = None;
    let mut aborted = Helper::restore(config.clone(), unanswered.state(), START).expect("restores");
    assert_eq!(aborted.bytes_in_memory(), collected);
    assert_eq!(aborted.next_deadline(), Some(closes));
    feed(&mut aborted, closes, Input::Timer).expect("timer");
    assert_eq!(aborted.bytes_in_memory(), 0);
    assert_eq!(
        feed(&mut aborted, closes, set(&all)).unwrap_err(),
        HelperError::AggregationClosed { round: 1 }
    );
    // The coordinator's descriptor of the next round closes the earlier
    // one at once, answered or not: the coordinator runs one round at a
    // time, so round 1 is over for it.
    let next = issue(&f.sim, 2, f.descriptor.clients().to_vec(), 9);
    for answered in [true, false] {
        let mut state = disk.clone();
        if !answered {
            state.rounds[0].answered = None;
        }
        let mut helper = Helper::restore(config.clone(), state.state(), START).expect("restores");
        if answered {
            feed(&mut helper, START, set(&all)).expect("answered");
        }
        assert!(helper.bytes_in_memory() > 0);
        let descriptor = Input::Inbound {
            from: coordinator,
            msg: Inbound::Descriptor(next.envelope().clone()),
        };
        recorded(&mut helper, &mut state, START, descriptor).expect("the next round");
        assert_eq!(helper.bytes_in_memory(), 0, "answered: {answered}");
        assert_eq!(
            feed(&mut helper, START, set(&all)).unwrap_err(),
            HelperError::AggregationClosed { round: 1 }
        );
        // Restarted with both rounds stored: round 1 is restored closed
        // (not decoded), whatever the time.
        let mut restarted =
            Helper::restore(config.clone(), state.state(), START).expect("restores");
        assert_eq!(restarted.rounds(), vec![1, 2]);
        assert_eq!(restarted.bytes_in_memory(), 0);
        assert_eq!(
            feed(&mut restarted, START, set(&all)).unwrap_err(),
            HelperError::AggregationClosed { round: 1 }
        );
    }
}

/// A helper returns a wrong aggregate share in threshold mode with h ≥ t + 1:
/// the coordinator detects it, aborts, and records signed evidence.
#[test]
fn wrong_aggregate_share_is_detected_and_round_aborted() {
    for (t, h, liar, identifiable) in [(2, 3, 1, false), (3, 5, 4, true), (3, 5, 0, true)] {
        let mut sim = Sim::new(Setup::threshold(t, h, 8), Network::default(), 31);
        let inputs = random_inputs(&mut ChaCha20Rng::seed_from_u64(31), 8, 16, 8.0);
        let run = sim.run_round(
            inputs,
            &Faults {
                lying_helpers: vec![liar],
                ..Faults::default()
            },
        );
        assert_eq!(
            check_outcome(&sim, &run),
            Some(pb::AbortReason::InconsistentShares)
        );
        let Outcome::Aborted(abort) = &run.outcome else {
            unreachable!()
        };
        if identifiable {
            assert_eq!(abort.suspect_helpers, vec![liar as u32], "t={t} h={h}");
        } else {
            assert!(abort.suspect_helpers.is_empty());
        }
        let record = sim
            .coordinator_key
            .verifying_key()
            .verify::<pb::AbortRecord>(&abort.record)
            .expect("signed");
        let answers: Vec<_> = record
            .message()
            .evidence
            .iter()
            .filter(|e| e.label == "sealroom/v1/aggregate-share")
            .collect();
        assert_eq!(
            answers.len(),
            h,
            "every answer's signed header is kept as evidence"
        );
        // The liar's own signature is on its answer header.
        let liar_key = sim.helpers[liar].key.verifying_key();
        assert!(
            answers
                .iter()
                .any(|e| liar_key.verify::<pb::AggregateShareHeader>(e).is_ok())
        );
    }
}

#[test]
fn overflowing_quantization_is_refused_at_issue() {
    let mut f = fixture(setup());
    assert!(f.helper(0).last_round().is_some());
    let ids: Vec<PartyId> = f.sim.clients.iter().map(|c| c.id).collect();
    // 5 clients × 2^31 would overflow Z_2^32.
    let task = Task {
        engine: None,
        name: "too big".into(),
        vector_len: 4,
        ring: RingKind::Z2_32,
        spec: QuantSpec::new(0, 2_147_000_000.0, 32).expect("valid spec"),
        params: Vec::new(),
        min_clients: None,
    };
    let err = issue_task(&f.sim, 5, ids.clone(), 5, task.clone()).unwrap_err();
    assert!(matches!(err, DescriptorError::Quantization { .. }), "{err}");
    // The coordinator refuses to start it (and keeps its running round).
    let running = f.sim.coordinator.round().map(|r| r.descriptor().round_id());
    let mut coordinator =
        sealroom_protocol::coordinator::Coordinator::new(f.sim.coordinator_config(), 5);
    let err = coordinator_error(
        coordinator
            .handle(
                START,
                Input::Start(Start {
                    task,
                    clients: ids.clone(),
                    nonce: [5; 32],
                }),
            )
            .unwrap_err(),
    );
    assert!(
        matches!(
            err,
            CoordinatorError::Descriptor(DescriptorError::Quantization { .. })
        ),
        "{err}"
    );
    // min_clients of 1 would release single inputs: refused too.
    let params = DescriptorParams {
        engine: None,
        share_bits: None,
        federation_id: support::FEDERATION.into(),
        round_id: 10,
        epoch: 0,
        task_name: "x".into(),
        task_params: Vec::new(),
        vector_len: 4,
        ring: RingKind::Z2_64,
        spec: QuantSpec::new(8, 1.0, 16).expect("valid"),
        threshold: None,
        clients: ids,
        helpers: f.sim.helpers.iter().map(|h| h.id).collect(),
        min_clients: 1,
        issued_at: Millis(0),
        upload_window_ms: 1,
        aggregation_window_ms: 1,
        nonce: [0; 32],
    };
    let err = params.sign(&f.sim.coordinator_key).unwrap_err();
    assert!(
        matches!(
            err,
            DescriptorError::Invalid {
                field: "min_clients",
                ..
            }
        ),
        "{err}"
    );
    // The round that did start is unaffected.
    assert_eq!(
        f.sim.coordinator.round().map(|r| r.descriptor().round_id()),
        running
    );
}

/// Threshold mode with 2t <= h would let a coordinator get sums over S and
/// S minus one client from two disjoint groups of t helpers (each answering
/// once). Such descriptors are refused by clients and helpers alike.
#[test]
fn threshold_without_a_helper_majority_is_refused() {
    let mut f = fixture(Setup::threshold(2, 3, 5));
    let mut body = descriptor_body(f.descriptor.envelope());
    body.round_id = 9;
    body.helpers.push(vec![0x77; 32]); // 2 of 4 helpers
    let minority = f.sim.coordinator_key.sign(&body);
    let err = f.descriptor_to(0, &minority).unwrap_err();
    assert!(
        matches!(
            &err,
            HelperError::Descriptor(DescriptorError::Invalid {
                field: "threshold",
                ..
            })
        ),
        "{err}"
    );
    let err = f.sim.clients[0]
        .client
        .check_descriptor(&minority)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Descriptor(DescriptorError::Invalid {
                field: "threshold",
                ..
            })
        ),
        "{err}"
    );
}

/// A coordinator cannot list itself (or anyone else) as a helper: clients
/// send shares only to the helpers they know.
#[test]
fn client_refuses_a_descriptor_naming_an_unknown_helper() {
    let f = fixture(setup());
    let mut body = descriptor_body(f.descriptor.envelope());
    body.round_id = 3;
    body.helpers[2] = f.sim.coordinator_id.0.to_vec();
    let rogue = f.sim.coordinator_key.sign(&body);
    let err = f.sim.clients[0]
        .client
        .check_descriptor(&rogue)
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::UnknownHelper {
            round: 3,
            party: f.sim.coordinator_id
        }
    );
}

/// A node's own min_clients floor cannot be lowered by the coordinator.
#[test]
fn min_clients_below_the_local_floor_is_refused() {
    let f = fixture(setup());
    let mut trust = sealroom_protocol::DescriptorTrust::single(
        support::FEDERATION,
        f.sim.coordinator_key.verifying_key(),
    );
    trust.min_clients_floor = 4;
    let err =
        sealroom_protocol::VerifiedDescriptor::verify(f.descriptor.envelope(), &trust).unwrap_err();
    assert!(
        matches!(
            err,
            DescriptorError::Invalid {
                field: "min_clients",
                ..
            }
        ),
        "{err}"
    );
    trust.min_clients_floor = 3;
    assert!(sealroom_protocol::VerifiedDescriptor::verify(f.descriptor.envelope(), &trust).is_ok());
}

/// A node that pinned its federation's helpers and threshold refuses a
/// descriptor with fewer helpers (which fewer colluders could break).
#[test]
fn descriptor_with_other_helpers_than_the_federation_is_refused() {
    let f = fixture(setup());
    let helpers: Vec<PartyId> = f.sim.helpers.iter().map(|h| h.id).collect();
    let mut trust = sealroom_protocol::DescriptorTrust::single(
        support::FEDERATION,
        f.sim.coordinator_key.verifying_key(),
    );
    trust.pinned_helpers = Some((helpers.clone(), 3));
    assert!(sealroom_protocol::VerifiedDescriptor::verify(f.descriptor.envelope(), &trust).is_ok());
    let mut body = descriptor_body(f.descriptor.envelope());
    body.helpers.pop();
    body.threshold = 2;
    let shrunk = f.sim.coordinator_key.sign(&body);
    let err = sealroom_protocol::VerifiedDescriptor::verify(&shrunk, &trust).unwrap_err();
    assert!(
        matches!(
            err,
            DescriptorError::Invalid {
                field: "helpers",
                ..
            }
        ),
        "{err}"
    );
}

fn engine_setup() -> Setup {
    let mut s = setup();
    s.engine = Some(sealroom_protocol::descriptor::EngineRef {
        program: "sim-max".into(),
        version: 1,
    });
    s
}

/// An engine round's upload carries exactly one helper's canonical sketch
/// shares; a sum round's carries none. Anything else is refused, typed, and
/// changes nothing (the honest upload is accepted afterwards).
#[test]
fn engine_round_uploads_need_a_canonical_sketch_and_sum_rounds_refuse_one() {
    let mut f = fixture(engine_setup());
    let id = f.client_id(0);
    let honest = pb::Upload::decode(f.uploads[0][1].as_slice()).expect("decodes");
    assert_eq!(
        honest.sketch.len(),
        32,
        "the client attached its sketch shares"
    );
    let mut bad = Vec::new();
    for sketch in [Vec::new(), vec![0u8; 31], vec![0xff; 32], vec![0u8; 33]] {
        let mut u = honest.clone();
        u.sketch = sketch;
        bad.push(u.encode_to_vec());
    }
    for bytes in &bad {
        let err = f.upload(1, START, id, bytes).unwrap_err();
        assert!(
            matches!(&err, HelperError::MalformedUpload { reason } if reason.contains("sketch")),
            "{err}"
        );
    }
    let honest_bytes = f.uploads[0][1].clone();
    f.upload(1, START, id, &honest_bytes)
        .expect("the honest upload is still accepted");

    let mut f = fixture(setup());
    let mut u = pb::Upload::decode(f.uploads[0][1].as_slice()).expect("decodes");
    assert!(u.sketch.is_empty(), "a sum round's upload has no sketch");
    u.sketch = vec![0u8; 32];
    let err = f.upload(1, START, id, &u.encode_to_vec()).unwrap_err();
    assert!(
        matches!(&err, HelperError::MalformedUpload { reason } if reason.contains("sketch")),
        "{err}"
    );
}

/// An engine descriptor needs additive mode over Z_2^32/Z_2^64 and exactly
/// three helpers, and a well-formed program name.
#[test]
fn engine_descriptors_are_checked() {
    let sim = Sim::new(engine_setup(), Network::default(), 3);
    let ids: Vec<PartyId> = sim.clients.iter().map(|c| c.id).collect();
    let with = |program: &str, ring: RingKind| {
        let mut task = sim.task();
        task.ring = ring;
        let mut params = DescriptorParams {
            engine: Some(sealroom_protocol::descriptor::EngineRef {
                program: program.into(),
                version: 1,
            }),
            share_bits: None,
            federation_id: support::FEDERATION.into(),
            round_id: 1,
            epoch: 0,
            task_name: task.name,
            task_params: task.params,
            vector_len: task.vector_len,
            ring: task.ring,
            spec: task.spec,
            threshold: None,
            clients: ids.clone(),
            helpers: sim.helpers.iter().map(|h| h.id).collect(),
            min_clients: sim.setup.min_clients,
            issued_at: START,
            upload_window_ms: support::UPLOAD_WINDOW_MS,
            aggregation_window_ms: support::AGGREGATION_WINDOW_MS,
            nonce: [9; 32],
        };
        if ring == RingKind::Fp61 {
            params.threshold = Some(2);
        }
        params.sign(&sim.coordinator_key)
    };
    with("sim-max", RingKind::Z2_64).expect("a valid engine descriptor");
    for (name, ring) in [
        ("", RingKind::Z2_64),
        ("Bad Name", RingKind::Z2_64),
        (&"x".repeat(65), RingKind::Z2_64),
        ("sim-max", RingKind::Fp61),
    ] {
        let err = with(name, ring).unwrap_err();
        assert!(
            matches!(&err, DescriptorError::Invalid { field, .. } if *field == "engine"),
            "{name:?} {ring:?}: {err}"
        );
    }
}

/// The coordinator releases an engine round's outputs only when all three
/// helpers signed the same program and outputs: one lying helper aborts
/// the round naming it; a helper whose engine failed aborts it with the
/// failure's code; a helper that crashed after recording the set, before
/// its answer left, does not answer another set.
#[test]
fn engine_round_outputs_need_three_identical_signed_answers() {
    let inputs = |sim: &mut Sim| random_inputs(&mut sim.rng, 5, sim.setup.vector_len, 4.0);
    let max_of = |sim: &Sim, run: &support::RoundRun, included: &[u32]| {
        let mut max = vec![i128::MIN; sim.setup.vector_len];
        for &c in included {
            let q = sim
                .setup
                .spec
                .quantize(&run.inputs[c as usize])
                .expect("finite");
            for (m, &v) in max.iter_mut().zip(&q.values) {
                *m = (*m).max(i128::from(v));
            }
        }
        max
    };

    let mut sim = Sim::new(engine_setup(), Network::default(), 11);
    let x = inputs(&mut sim);
    let run = sim.run_round(x, &Faults::default());
    let Outcome::Completed(s) = &run.outcome else {
        panic!("completes: {:?}", run.outcome)
    };
    assert!(s.sum.is_empty() && s.values.is_empty());
    assert_eq!(s.outputs, max_of(&sim, &run, &s.included));
    let record = sim
        .coordinator_key
        .verifying_key()
        .verify::<pb::RoundResult>(&s.result)
        .expect("signed");
    assert_eq!(
        record.message().sum_digest,
        sealroom_protocol::coordinator::outputs_digest(&s.outputs)
            .0
            .to_vec()
    );

    let x = inputs(&mut sim);
    let run = sim.run_round(
        x,
        &Faults {
            lying_helpers: vec![2],
            ..Faults::default()
        },
    );
    let Outcome::Aborted(a) = &run.outcome else {
        panic!("a lying helper aborts the round: {:?}", run.outcome)
    };
    assert_eq!(a.reason, pb::AbortReason::EngineDisagreement);
    assert_eq!(a.suspect_helpers, vec![2]);

    let x = inputs(&mut sim);
    let run = sim.run_round(
        x,
        &Faults {
            failing_engines: vec![0],
            ..Faults::default()
        },
    );
    let Outcome::Aborted(a) = &run.outcome else {
        panic!("a failed engine aborts the round: {:?}", run.outcome)
    };
    assert_eq!(a.reason, pb::AbortReason::EngineFailed);
    assert!(a.detail.contains("helper 0: mac_check"), "{}", a.detail);

    let x = inputs(&mut sim);
    let run = sim.run_round(
        x,
        &Faults {
            crash_before_answer_send: vec![1],
            ..Faults::default()
        },
    );
    // As in a sum round, the simulated coordinator does not ask again: the
    // round aborts; the answer record was persisted before anything ran.
    assert_eq!(
        check_outcome(&sim, &run),
        Some(pb::AbortReason::HelperMissing)
    );
    assert!(
        sim.helpers[1]
            .disk
            .rounds
            .last()
            .is_some_and(|r| r.answered.is_some())
    );
    let x = inputs(&mut sim);
    let run = sim.run_round(x, &Faults::default());
    let Outcome::Completed(s) = &run.outcome else {
        panic!("the next engine round completes: {:?}", run.outcome)
    };
    assert_eq!(s.outputs, max_of(&sim, &run, &s.included));
}

/// Issue #15's upload target: with input validity on (an engine round over
/// Z_2^32, as every FedAvg validity, clipping or robust round is), a
/// client's upload at 100,000 parameters stays within 1.1× a plaintext f32
/// update — one helper gets the 4-byte-per-element correction vector, the
/// other two a 32-byte seed, each 32 bytes of sketch shares. The bytes are
/// the encoded `Upload` messages the client sends.
#[test]
fn a_validity_round_upload_at_100k_parameters_stays_within_1_1x_plaintext_f32() {
    let mut s = engine_setup();
    s.vector_len = 100_000;
    s.ring = RingKind::Z2_32;
    s.clients = 3;
    let f = fixture(s);
    let plain = 4 * 100_000;
    for (c, uploads) in f.uploads.iter().enumerate() {
        assert_eq!(uploads.len(), 3, "one upload per helper");
        let total: usize = uploads.iter().map(Vec::len).sum();
        let ratio = total as f64 / plain as f64;
        assert!(
            ratio <= 1.1,
            "client {c}: {total} bytes against {plain} for f32 ({ratio:.4}x)"
        );
        assert!(ratio > 1.0, "the vector itself is sent: {ratio}");
        eprintln!("client {c}: {total} bytes against {plain} for f32 ({ratio:.5}x)");
    }
}

/// Bandwidth below plaintext (issue #17): at 8-bit quantization and 256
/// listed clients the coordinator narrows the sum's shares to 16 bits, so
/// the correction vector is exactly half an f32 update and a client's whole
/// upload (the vector, two seeds, each message's descriptor hash and ids)
/// is 0.5× plus framing; at 10 clients 12 bits suffice (0.375×).
#[test]
fn an_8_bit_upload_is_half_of_plaintext_f32_at_256_clients() {
    for (clients, bits) in [(256usize, 16u8), (10, 12)] {
        let mut s = setup();
        s.clients = clients;
        s.ring = RingKind::Z2_32;
        s.spec = QuantSpec::new(0, 127.0, 8).expect("valid");
        s.vector_len = 100_000;
        let mut sim = Sim::new(s.clone(), Network::default(), 256);
        let descriptor = start_round(&mut sim, 3);
        assert_eq!(descriptor.encoding().share_bits(), Some(bits));
        let plain = 4 * s.vector_len;
        let inputs = random_inputs(&mut ChaCha20Rng::seed_from_u64(9), 3, s.vector_len, 127.0);
        for (c, input) in inputs.iter().enumerate() {
            let step = participate(
                &mut sim.clients[c].client,
                START,
                descriptor.envelope(),
                input,
                [c as u8; 32],
            )
            .expect("participates");
            let sizes: Vec<usize> = uploads_of(step).iter().map(Vec::len).collect();
            assert_eq!(sizes.len(), 3, "one upload per helper");
            let vector = s.vector_len * usize::from(bits) / 8;
            let total: usize = sizes.iter().sum();
            assert!(
                sizes.iter().any(|&n| n >= vector && n < vector + 64),
                "one upload carries the {vector}-byte packed correction: {sizes:?}"
            );
            let ratio = total as f64 / plain as f64;
            assert!(
                total <= vector + 256,
                "{clients} clients, client {c}: {total} bytes against {plain} for f32 ({ratio:.5}x)"
            );
            eprintln!(
                "{clients} clients at {bits} bits, client {c}: {total} bytes against {plain} for f32 ({ratio:.5}x)"
            );
        }
    }
}
