//! Round descriptors (DESIGN.md §2 step 1): what a round computes, who takes
//! part, the threshold and `min_clients`, the deadlines — signed by the
//! coordinator, and hashed so that every later message binds to it.
//!
//! A [`VerifiedDescriptor`] is the parsed, checked form: it can only be made by
//! verifying a signature against a trusted coordinator key *and* validating
//! every field (version, federation, sizes, uniqueness of parties, threshold,
//! `min_clients`, and the quantization headroom for this many clients). After
//! that, nothing downstream re-checks or can get it wrong.

use std::collections::HashSet;

use sealroom_core::shamir::ShamirParams;
use sealroom_core::{QuantError, QuantSpec, RingKind, RoundEncoding, SharingError};

use crate::envelope::{
    EnvelopeError, KeyId, Signer, SignerError, SignerExt as _, Verified, VerifyingKey,
    claimed_key_id,
};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::pb;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest vector a round may sum.
pub const MAX_VECTOR_LEN: u64 = 1 << 28;
/// Most clients one round may list.
pub const MAX_CLIENTS: usize = 100_000;
/// Smallest `min_clients`: a sum over one client is that client's input.
pub const MIN_MIN_CLIENTS: usize = 2;

/// Largest task parameter block a descriptor may carry (1 MiB).
pub const MAX_TASK_PARAMS: usize = 1 << 20;
/// The largest round id: every node keys durable state by round in a signed
/// 64-bit column, so a descriptor naming a larger one is refused at
/// verification, before any node takes it.
pub const MAX_ROUND_ID: u64 = i64::MAX.unsigned_abs();

/// How shares are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Additive n-of-n: every helper must answer.
    Additive,
    /// Shamir t-of-h over F_p.
    Threshold(ShamirParams),
}

impl Mode {
    /// Shares needed to reconstruct.
    pub fn threshold(&self, helpers: usize) -> usize {
        match self {
            Mode::Additive => helpers,
            Mode::Threshold(p) => p.threshold(),
        }
    }
}

/// A coordinator key a node accepts, with the epochs it is valid for (key
/// rotation: the config lists the next key with its first valid epoch).
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// The public key.
    pub key: VerifyingKey,
    /// First epoch this key may sign.
    pub valid_from_epoch: u64,
    /// Last epoch this key may sign, if retired.
    pub valid_until_epoch: Option<u64>,
}

/// What a node checks descriptors against.
#[derive(Clone, Debug)]
pub struct DescriptorTrust {
    /// The federation this node belongs to.
    pub federation_id: String,
    /// The pinned coordinator keys.
    pub coordinator_keys: Vec<TrustedKey>,
    /// The smallest `min_clients` this node accepts (its own policy: the
    /// coordinator cannot lower it).
    pub min_clients_floor: usize,
    /// The helpers (in order) and the threshold this node's federation
    /// agreed on; when set, a descriptor naming other helpers or another
    /// threshold is refused (a coordinator must not shrink the helper set or
    /// lower the threshold). `None` accepts any valid helper set.
    pub pinned_helpers: Option<(Vec<PartyId>, usize)>,
}

impl DescriptorTrust {
    /// Trust in a single coordinator key, valid from epoch 0, accepting any
    /// `min_clients` from [`MIN_MIN_CLIENTS`] up.
    pub fn single(federation_id: impl Into<String>, key: VerifyingKey) -> Self {
        DescriptorTrust {
            federation_id: federation_id.into(),
            coordinator_keys: vec![TrustedKey {
                key,
                valid_from_epoch: 0,
                valid_until_epoch: None,
            }],
            min_clients_floor: MIN_MIN_CLIENTS,
            pinned_helpers: None,
        }
    }

    /// The coordinator key with this id, if trusted at all.
    pub fn key(&self, key_id: &KeyId) -> Option<&TrustedKey> {
        self.coordinator_keys
            .iter()
            .find(|k| &k.key.key_id() == key_id)
    }
}

/// A descriptor whose signature and every field have been checked.
#[derive(Clone, Debug)]
pub struct VerifiedDescriptor {
    envelope: pb::SignedEnvelope,
    hash: Digest,
    federation_id: String,
    round_id: u64,
    epoch: u64,
    task_name: String,
    task_params: Vec<u8>,
    vector_len: usize,
    encoding: RoundEncoding,
    mode: Mode,
    clients: Vec<PartyId>,
    helpers: Vec<PartyId>,
    min_clients: usize,
    issued_at: Millis,
    upload_deadline: Millis,
    aggregation_deadline: Millis,
    signing_key_id: KeyId,
    engine: Option<EngineRef>,
}

/// The MPC engine program an engine round runs (its name and version; the
/// program itself is a pure function of the descriptor and the inclusion
/// set's size, and every answer signs its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineRef {
    /// Program name (1–64 characters of `a-z`, `0-9`, `-`).
    pub program: String,
    /// Program version.
    pub version: u32,
}

/// The longest engine program name a descriptor may carry.
pub const MAX_PROGRAM_NAME: usize = 64;

/// What a coordinator fills in to issue a descriptor.
#[derive(Clone, Debug)]
pub struct DescriptorParams {
    /// Federation id.
    pub federation_id: String,
    /// Round id (strictly increasing).
    pub round_id: u64,
    /// Key epoch.
    pub epoch: u64,
    /// Public name of the computation.
    pub task_name: String,
    /// Task parameters (at most [`MAX_TASK_PARAMS`] bytes).
    pub task_params: Vec<u8>,
    /// Elements per client vector.
    pub vector_len: u64,
    /// Ring of the shares.
    pub ring: RingKind,
    /// Quantization.
    pub spec: QuantSpec,
    /// Additive or threshold; the threshold for threshold mode.
    pub threshold: Option<usize>,
    /// Participants; position = client index.
    pub clients: Vec<PartyId>,
    /// Helpers; position = helper index.
    pub helpers: Vec<PartyId>,
    /// Smallest releasable inclusion set.
    pub min_clients: usize,
    /// Issue time.
    pub issued_at: Millis,
    /// Upload window length.
    pub upload_window_ms: u64,
    /// Aggregation window length (after the upload window).
    pub aggregation_window_ms: u64,
    /// 32 fresh random bytes.
    pub nonce: [u8; 32],
    /// An engine round's program (additive mode, three helpers); `None` for
    /// a sum.
    pub engine: Option<EngineRef>,
    /// Narrow shares (a Z_2^k sum only): reduce every share mod 2^bits and
    /// pack it at that width; `None` keeps the ring's width. See
    /// [`DescriptorParams::narrowest_share_bits`].
    pub share_bits: Option<u8>,
}

impl DescriptorParams {
    /// The narrowest share width a sum of `clients` contributions in `ring`
    /// with `spec` admits (`None`: no narrower width holds the sum, or the
    /// ring is F_p). Only a sum narrows: an engine round converts its
    /// uploads at the ring's full width, and a threshold round shares in F_p.
    pub fn narrowest_share_bits(ring: RingKind, clients: usize, spec: QuantSpec) -> Option<u8> {
        sealroom_core::fits(ring, clients as u64, spec)
            .ok()?
            .narrowest()
            .share_bits()
    }

    /// Encodes, signs, and verifies the result exactly as a receiver would —
    /// so a coordinator cannot issue a descriptor its parties would refuse.
    pub fn sign(self, key: &dyn Signer) -> Result<VerifiedDescriptor, DescriptorError> {
        let descriptor = pb::RoundDescriptor {
            protocol_version: PROTOCOL_VERSION,
            federation_id: self.federation_id.clone(),
            round_id: self.round_id,
            epoch: self.epoch,
            task: Some(pb::Task {
                name: self.task_name,
                vector_length: self.vector_len,
                encoding: encoding_to_pb(self.ring) as i32,
                quant: Some(pb::QuantSpec {
                    scale_bits: i32::from(self.spec.scale_bits()),
                    clip: self.spec.clip(),
                    bits: u32::from(self.spec.bits()),
                }),
                params: self.task_params,
                share_bits: self.share_bits.map_or(0, u32::from),
            }),
            mode: if self.threshold.is_some() {
                pb::Mode::Threshold
            } else {
                pb::Mode::Additive
            } as i32,
            clients: self.clients.iter().map(|c| c.0.to_vec()).collect(),
            helpers: self.helpers.iter().map(|h| h.0.to_vec()).collect(),
            threshold: self.threshold.unwrap_or(self.helpers.len()) as u32,
            min_clients: self.min_clients as u32,
            issued_at_ms: self.issued_at.0,
            upload_window_ms: self.upload_window_ms,
            aggregation_window_ms: self.aggregation_window_ms,
            nonce: self.nonce.to_vec(),
            signing_key_id: key.verifying_key().key_id().0.to_vec(),
            engine: self.engine.map(|e| pb::EngineBinding {
                program: e.program,
                version: e.version,
            }),
        };
        let envelope = key.sign(&descriptor)?;
        let trust = DescriptorTrust::single(self.federation_id, key.verifying_key());
        VerifiedDescriptor::verify(&envelope, &trust)
    }
}

/// The wire encoding of a ring.
pub fn encoding_to_pb(ring: RingKind) -> pb::Encoding {
    match ring {
        RingKind::Z2_32 => pb::Encoding::Z232,
        RingKind::Z2_64 => pb::Encoding::Z264,
        RingKind::Fp61 => pb::Encoding::Fp61,
    }
}

/// The ring of a wire encoding (`None` for an unknown or unspecified one).
pub fn ring_of_pb(encoding: i32) -> Option<RingKind> {
    match pb::Encoding::try_from(encoding) {
        Ok(pb::Encoding::Z232) => Some(RingKind::Z2_32),
        Ok(pb::Encoding::Z264) => Some(RingKind::Z2_64),
        Ok(pb::Encoding::Fp61) => Some(RingKind::Fp61),
        Ok(pb::Encoding::Unspecified) | Err(_) => None,
    }
}

impl VerifiedDescriptor {
    /// Verifies the signature against the trusted coordinator keys and checks
    /// every field. Replay (round ids) is the caller's state and checked there.
    pub fn verify(
        envelope: &pb::SignedEnvelope,
        trust: &DescriptorTrust,
    ) -> Result<VerifiedDescriptor, DescriptorError> {
        let key_id = claimed_key_id(envelope)?;
        let trusted = trust
            .key(&key_id)
            .ok_or(DescriptorError::UntrustedKey { key_id })?;
        let verified: Verified<pb::RoundDescriptor> = trusted.key.verify(envelope)?;
        let d = verified.message();
        let round = d.round_id;

        if round > MAX_ROUND_ID {
            return Err(DescriptorError::Invalid {
                round,
                field: "round_id",
                reason: format!("above the limit of {MAX_ROUND_ID}"),
            });
        }
        if d.protocol_version != PROTOCOL_VERSION {
            return Err(DescriptorError::UnsupportedVersion {
                version: d.protocol_version,
                supported: PROTOCOL_VERSION,
            });
        }
        if d.federation_id != trust.federation_id {
            return Err(DescriptorError::WrongFederation {
                round,
                expected: trust.federation_id.clone(),
                actual: d.federation_id.chars().take(64).collect(),
            });
        }
        let signing_key_id =
            Digest::from_slice(&d.signing_key_id).ok_or(DescriptorError::Invalid {
                round,
                field: "signing_key_id",
                reason: "not 32 bytes".into(),
            })?;
        if signing_key_id != key_id {
            return Err(DescriptorError::Invalid {
                round,
                field: "signing_key_id",
                reason: "does not name the key that signed the envelope".into(),
            });
        }
        if d.epoch < trusted.valid_from_epoch
            || trusted
                .valid_until_epoch
                .is_some_and(|until| d.epoch > until)
        {
            return Err(DescriptorError::KeyNotValidForEpoch {
                round,
                key_id,
                epoch: d.epoch,
            });
        }
        let invalid = |field: &'static str, reason: String| DescriptorError::Invalid {
            round,
            field,
            reason,
        };

        let task = d
            .task
            .as_ref()
            .ok_or_else(|| invalid("task", "missing".into()))?;
        if task.params.len() > MAX_TASK_PARAMS {
            return Err(invalid(
                "task.params",
                format!(
                    "{} bytes, more than the limit of {MAX_TASK_PARAMS}",
                    task.params.len()
                ),
            ));
        }
        if task.vector_length == 0 || task.vector_length > MAX_VECTOR_LEN {
            return Err(invalid(
                "task.vector_length",
                format!("{} is outside 1..={MAX_VECTOR_LEN}", task.vector_length),
            ));
        }
        let ring = ring_of_pb(task.encoding).ok_or_else(|| {
            invalid(
                "task.encoding",
                format!("unknown encoding {}", task.encoding),
            )
        })?;
        let q = task
            .quant
            .as_ref()
            .ok_or_else(|| invalid("task.quant", "missing".into()))?;
        let scale_bits = i8::try_from(q.scale_bits).map_err(|_| {
            invalid(
                "task.quant.scale_bits",
                format!("{} out of range", q.scale_bits),
            )
        })?;
        let bits = u8::try_from(q.bits)
            .map_err(|_| invalid("task.quant.bits", format!("{} out of range", q.bits)))?;
        let spec = QuantSpec::new(scale_bits, q.clip, bits)
            .map_err(|source| DescriptorError::Quantization { round, source })?;

        let clients = parse_parties(&d.clients, "clients", round, MAX_CLIENTS)?;
        let helpers = parse_parties(
            &d.helpers,
            "helpers",
            round,
            sealroom_core::additive::MAX_HELPERS,
        )?;
        if clients.is_empty() {
            return Err(invalid("clients", "empty participant list".into()));
        }
        let client_set: HashSet<&PartyId> = clients.iter().collect();
        if let Some(both) = helpers.iter().find(|h| client_set.contains(h)) {
            return Err(invalid(
                "helpers",
                format!("party {both} is listed as client and helper"),
            ));
        }
        let threshold = d.threshold as usize;
        let mode = match pb::Mode::try_from(d.mode) {
            Ok(pb::Mode::Additive) => {
                sealroom_core::additive::check_helpers(helpers.len())
                    .map_err(|source| DescriptorError::Sharing { round, source })?;
                if threshold != helpers.len() {
                    return Err(invalid(
                        "threshold",
                        format!(
                            "additive mode needs all {} helpers, not {threshold}",
                            helpers.len()
                        ),
                    ));
                }
                Mode::Additive
            }
            Ok(pb::Mode::Threshold) => {
                if ring != RingKind::Fp61 {
                    return Err(invalid(
                        "task.encoding",
                        "threshold mode requires fp61".into(),
                    ));
                }
                // Each helper answers one inclusion set per round, but with
                // 2t <= h a coordinator could send S to one group of t helpers
                // and S minus one client to another, disjoint group, and
                // subtract. A majority threshold makes two disjoint groups of
                // t helpers impossible.
                if 2 * threshold <= helpers.len() {
                    return Err(invalid(
                        "threshold",
                        format!(
                            "{threshold} of {} helpers is not a majority: two disjoint groups of {threshold} helpers could answer two different inclusion sets",
                            helpers.len()
                        ),
                    ));
                }
                Mode::Threshold(
                    ShamirParams::new(threshold, helpers.len())
                        .map_err(|source| DescriptorError::Sharing { round, source })?,
                )
            }
            _ => return Err(invalid("mode", format!("unknown mode {}", d.mode))),
        };
        if let Some((pinned, pinned_threshold)) = &trust.pinned_helpers
            && (pinned != &helpers || *pinned_threshold != threshold)
        {
            return Err(invalid(
                "helpers",
                format!(
                    "{} helpers with threshold {threshold} do not match the federation's {} helpers with threshold {pinned_threshold}",
                    helpers.len(),
                    pinned.len()
                ),
            ));
        }
        let min_clients = d.min_clients as usize;
        let floor = trust.min_clients_floor.max(MIN_MIN_CLIENTS);
        if min_clients < floor || min_clients > clients.len() {
            return Err(invalid(
                "min_clients",
                format!(
                    "{min_clients} is outside {floor}..={} (this node's floor is {floor})",
                    clients.len()
                ),
            ));
        }
        if d.upload_window_ms == 0 || d.aggregation_window_ms == 0 {
            return Err(invalid("deadlines", "windows must be positive".into()));
        }
        if d.nonce.len() != 32 {
            return Err(invalid(
                "nonce",
                format!("{} bytes, expected 32", d.nonce.len()),
            ));
        }
        // A sum must not wrap the ring; an engine round's uploads are
        // converted one by one and summed (if at all) in the engine's F_p,
        // so each client's values need only fit the ring.
        let holders = if d.engine.is_some() {
            1
        } else {
            clients.len() as u64
        };
        let encoding = sealroom_core::fits(ring, holders, spec)
            .map_err(|source| DescriptorError::Quantization { round, source })?;
        // Narrow shares: a plain additive sum in Z_2^k only, and only to a
        // width the headroom check admits for every listed client.
        let encoding = match task.share_bits {
            0 => encoding,
            bits => {
                if d.engine.is_some() || !matches!(mode, Mode::Additive) {
                    return Err(invalid(
                        "task.share_bits",
                        "only an additive sum narrows its shares (not an engine or threshold round)"
                            .into(),
                    ));
                }
                let bits = u8::try_from(bits)
                    .map_err(|_| invalid("task.share_bits", format!("{bits} out of range")))?;
                encoding
                    .narrowed(bits)
                    .map_err(|source| DescriptorError::Quantization { round, source })?
            }
        };
        let engine = match &d.engine {
            None => None,
            Some(b) => {
                let name_ok = !b.program.is_empty()
                    && b.program.len() <= MAX_PROGRAM_NAME
                    && b.program
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
                if !name_ok {
                    return Err(invalid(
                        "engine",
                        format!(
                            "program name must be 1-{MAX_PROGRAM_NAME} characters of a-z, 0-9 and -"
                        ),
                    ));
                }
                if !matches!(mode, Mode::Additive) || helpers.len() != 3 {
                    return Err(invalid(
                        "engine",
                        "an engine round needs additive mode and exactly three helpers".into(),
                    ));
                }
                if matches!(ring, RingKind::Fp61) {
                    return Err(invalid(
                        "engine",
                        "an engine round's uploads are over Z_2^32 or Z_2^64".into(),
                    ));
                }
                Some(EngineRef {
                    program: b.program.clone(),
                    version: b.version,
                })
            }
        };

        let issued_at = Millis(d.issued_at_ms);
        let upload_deadline = issued_at.plus(d.upload_window_ms);
        Ok(VerifiedDescriptor {
            hash: verified.body_digest(contexts::DESCRIPTOR),
            federation_id: d.federation_id.clone(),
            round_id: round,
            epoch: d.epoch,
            task_name: task.name.clone(),
            task_params: task.params.clone(),
            vector_len: task.vector_length as usize,
            encoding,
            mode,
            clients,
            helpers,
            min_clients,
            issued_at,
            upload_deadline,
            aggregation_deadline: upload_deadline.plus(d.aggregation_window_ms),
            signing_key_id,
            engine,
            envelope: verified.envelope().clone(),
        })
    }

    /// The engine program this round runs instead of a sum, if any.
    pub fn engine(&self) -> Option<&EngineRef> {
        self.engine.as_ref()
    }

    /// The signed envelope, to forward or log.
    pub fn envelope(&self) -> &pb::SignedEnvelope {
        &self.envelope
    }
    /// The hash binding every later message to this round.
    pub fn hash(&self) -> Digest {
        self.hash
    }
    /// Federation id.
    pub fn federation_id(&self) -> &str {
        &self.federation_id
    }
    /// Round id.
    pub fn round_id(&self) -> u64 {
        self.round_id
    }
    /// Key epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Public task name.
    pub fn task_name(&self) -> &str {
        &self.task_name
    }
    /// Task parameters, as signed by the coordinator.
    pub fn task_params(&self) -> &[u8] {
        &self.task_params
    }
    /// Elements per vector.
    pub fn vector_len(&self) -> usize {
        self.vector_len
    }
    /// The checked encoding (ring, spec, headroom for every listed client).
    pub fn encoding(&self) -> &RoundEncoding {
        &self.encoding
    }
    /// Additive or threshold.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Shares needed to reconstruct.
    pub fn threshold(&self) -> usize {
        self.mode.threshold(self.helpers.len())
    }
    /// Participants; position = client index.
    pub fn clients(&self) -> &[PartyId] {
        &self.clients
    }
    /// Helpers; position = helper index.
    pub fn helpers(&self) -> &[PartyId] {
        &self.helpers
    }
    /// Smallest releasable inclusion set.
    pub fn min_clients(&self) -> usize {
        self.min_clients
    }
    /// When the coordinator issued the round.
    pub fn issued_at(&self) -> Millis {
        self.issued_at
    }
    /// Uploads arriving at or after this are refused.
    pub fn upload_deadline(&self) -> Millis {
        self.upload_deadline
    }
    /// Helpers' answers arriving at or after this are not waited for.
    pub fn aggregation_deadline(&self) -> Millis {
        self.aggregation_deadline
    }
    /// The key that signed.
    pub fn signing_key_id(&self) -> KeyId {
        self.signing_key_id
    }
    /// Index of a client, if listed.
    pub fn client_index(&self, id: &PartyId) -> Option<u32> {
        self.clients.iter().position(|c| c == id).map(|i| i as u32)
    }
    /// Index of a helper, if listed.
    pub fn helper_index(&self, id: &PartyId) -> Option<usize> {
        self.helpers.iter().position(|h| h == id)
    }
    /// Bytes of one share vector as it travels (at the narrowed width, if
    /// the round narrows its shares).
    pub fn vector_bytes(&self) -> usize {
        self.encoding.vector_bytes(self.vector_len)
    }
}

fn parse_parties(
    raw: &[Vec<u8>],
    field: &'static str,
    round: u64,
    max: usize,
) -> Result<Vec<PartyId>, DescriptorError> {
    if raw.len() > max {
        return Err(DescriptorError::Invalid {
            round,
            field,
            reason: format!("{} entries, at most {max} allowed", raw.len()),
        });
    }
    let mut seen = HashSet::with_capacity(raw.len());
    raw.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let id = PartyId::from_slice(bytes).ok_or_else(|| DescriptorError::Invalid {
                round,
                field,
                reason: format!("entry {i} is {} bytes, expected 32", bytes.len()),
            })?;
            if !seen.insert(id) {
                return Err(DescriptorError::Invalid {
                    round,
                    field,
                    reason: format!("party {id} listed twice"),
                });
            }
            Ok(id)
        })
        .collect()
}

impl DescriptorError {
    /// The stable refusal code.
    pub fn code(&self) -> crate::machine::RefusalCode {
        use crate::machine::RefusalCode;
        match self {
            DescriptorError::Envelope(_) => RefusalCode::BadSignature,
            DescriptorError::Signer(_) => RefusalCode::SigningFailed,
            DescriptorError::UntrustedKey { .. } | DescriptorError::KeyNotValidForEpoch { .. } => {
                RefusalCode::UntrustedKey
            }
            DescriptorError::Replayed { .. } => RefusalCode::Replayed,
            DescriptorError::NotAParticipant { .. } => RefusalCode::NotAParticipant,
            DescriptorError::UnsupportedVersion { .. }
            | DescriptorError::WrongFederation { .. }
            | DescriptorError::Invalid { .. }
            | DescriptorError::Quantization { .. }
            | DescriptorError::Sharing { .. } => RefusalCode::DescriptorInvalid,
        }
    }
}

/// Why a descriptor was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The envelope's signature, label or encoding is wrong.
    #[error("descriptor envelope refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The coordinator's signer could not sign the descriptor.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// Signed by a key that is not a pinned coordinator key.
    #[error("descriptor is signed by untrusted key {key_id}")]
    UntrustedKey {
        /// The key id the envelope claims.
        key_id: KeyId,
    },
    /// A trusted key, used outside its epochs.
    #[error("round {round}: key {key_id} is not valid for epoch {epoch}")]
    KeyNotValidForEpoch {
        /// Round id.
        round: u64,
        /// Key id.
        key_id: KeyId,
        /// Epoch claimed.
        epoch: u64,
    },
    /// A protocol version this build does not speak.
    #[error("protocol version {version} is not supported (this build speaks {supported})")]
    UnsupportedVersion {
        /// Version claimed.
        version: u32,
        /// Version supported.
        supported: u32,
    },
    /// For another federation.
    #[error("round {round} is for federation {actual:?}, not {expected:?}")]
    WrongFederation {
        /// Round id.
        round: u64,
        /// Our federation.
        expected: String,
        /// Theirs (truncated).
        actual: String,
    },
    /// A round id not above the last one seen: a replay.
    #[error("round {round} replayed: last round seen was {last}")]
    Replayed {
        /// Round id claimed.
        round: u64,
        /// Highest round id seen before.
        last: u64,
    },
    /// This node is not in the round in the role it expects.
    #[error("round {round} does not list this node as a {role}")]
    NotAParticipant {
        /// Round id.
        round: u64,
        /// The role expected.
        role: &'static str,
    },
    /// A malformed field.
    #[error("round {round}: invalid {field}: {reason}")]
    Invalid {
        /// Round id.
        round: u64,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Quantization spec invalid, or the sum could overflow.
    #[error("round {round}: {source}")]
    Quantization {
        /// Round id.
        round: u64,
        /// The check that failed.
        source: QuantError,
    },
    /// Helper count or threshold invalid.
    #[error("round {round}: {source}")]
    Sharing {
        /// Round id.
        round: u64,
        /// The check that failed.
        source: SharingError,
    },
}
