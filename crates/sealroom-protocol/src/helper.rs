//! The helper role (DESIGN.md §2 steps 3–5): validates uploads and signs
//! receipts, reports its received set when the upload window closes, and
//! answers **at most one** inclusion set per round with its aggregate share.
//!
//! The single-answer rule is what stops a coordinator from learning one
//! client's input by asking for sums over `S` and `S ∖ {i}` (the differencing
//! attack). The helper emits [`Persist::HelperAnswer`] before the answer, so a
//! runtime that honours the ordering contract of [`crate::action`] has the
//! record on disk before the share leaves; after a restart from that state
//! ([`Helper::restore`]) a second inclusion set is still refused.

use std::collections::BTreeMap;

use prost::Message as _;
use sealroom_core::prg::{self, PrgDomain};
use sealroom_core::vector::{self, DecodeError};
use sealroom_core::{Fp, Ring, RingKind, Seed, ShareVec, additive, shamir};

use crate::action::{Action, Message, Persist, SecretBytes};
use crate::client::zeroize_upload;
use crate::descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, SigningKey, decode_limited};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::pb;

/// Bytes of an upload beyond its share vector (hash, ids, framing).
pub const UPLOAD_OVERHEAD: usize = 128;
/// How long an upload for a not-yet-seen descriptor is held.
pub const PENDING_TTL_MS: u64 = 60_000;

/// A helper's fixed configuration.
#[derive(Clone, Debug)]
pub struct HelperConfig {
    /// This helper's identity.
    pub me: PartyId,
    /// The coordinator's identity (where reports and answers go).
    pub coordinator: PartyId,
    /// Key that signs receipts, reports and answers.
    pub signing_key: SigningKey,
    /// Federation and pinned coordinator keys.
    pub trust: DescriptorTrust,
    /// Uploads held while their descriptor has not arrived yet.
    pub max_pending_uploads: usize,
}

/// What a helper persisted, to restore it after a restart.
#[derive(Clone, Debug, Default)]
pub struct HelperState {
    /// Rounds, in the order they were accepted.
    pub rounds: Vec<PersistedRound>,
}

/// One round's durable state.
#[derive(Clone, Debug)]
pub struct PersistedRound {
    /// The signed descriptor ([`Persist::HelperRound`]).
    pub descriptor: pb::SignedEnvelope,
    /// Accepted uploads ([`Persist::HelperUpload`]).
    pub uploads: Vec<(u32, SecretBytes)>,
    /// The inclusion set answered, if any ([`Persist::HelperAnswer`]).
    pub answered: Option<Digest>,
}

/// A helper across rounds.
#[derive(Debug)]
pub struct Helper {
    config: HelperConfig,
    last_round: Option<u64>,
    rounds: BTreeMap<u64, HelperRound>,
    pending: Vec<PendingUpload>,
}

#[derive(Debug)]
struct PendingUpload {
    received_at: Millis,
    from: PartyId,
    bytes: SecretBytes,
}

#[derive(Debug)]
struct HelperRound {
    descriptor: VerifiedDescriptor,
    index: usize,
    shares: BTreeMap<u32, StoredShare>,
    reported: bool,
    answered: Option<Digest>,
}

#[derive(Debug)]
enum StoredShare {
    Seed(Seed),
    Vector(SecretBytes),
}

impl Helper {
    /// A helper with no history.
    pub fn new(config: HelperConfig) -> Helper {
        Helper {
            config,
            last_round: None,
            rounds: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    /// Rebuilds a helper from what it persisted: every descriptor and upload is
    /// verified again, and rounds it answered stay answered.
    pub fn restore(config: HelperConfig, state: HelperState) -> Result<Helper, HelperError> {
        let mut helper = Helper::new(config);
        for persisted in state.rounds {
            let descriptor = helper.verify_descriptor(&persisted.descriptor)?;
            let round_id = descriptor.round_id();
            helper.insert_round(descriptor)?;
            for (client_index, bytes) in persisted.uploads {
                let upload = helper.decode_upload(bytes.expose())?;
                let round = helper.rounds.get_mut(&round_id).expect("inserted above");
                let from = *round
                    .descriptor
                    .clients()
                    .get(client_index as usize)
                    .ok_or(HelperError::MalformedUpload {
                        reason: "client index out of range".into(),
                    })?;
                round.accept(from, upload)?;
            }
            let round = helper.rounds.get_mut(&round_id).expect("inserted above");
            round.answered = persisted.answered;
            // A restored round with an answer has necessarily reported.
            round.reported |= persisted.answered.is_some();
        }
        Ok(helper)
    }

    /// The highest round id accepted.
    pub fn last_round(&self) -> Option<u64> {
        self.last_round
    }

    /// When [`Helper::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        let reports = self
            .rounds
            .values()
            .filter(|r| !r.reported)
            .map(|r| r.descriptor.upload_deadline());
        let pending = self
            .pending
            .iter()
            .map(|p| p.received_at.plus(PENDING_TTL_MS));
        reports.chain(pending).min()
    }

    fn verify_descriptor(
        &self,
        envelope: &pb::SignedEnvelope,
    ) -> Result<VerifiedDescriptor, HelperError> {
        let descriptor = VerifiedDescriptor::verify(envelope, &self.config.trust)?;
        if descriptor.helper_index(&self.config.me).is_none() {
            return Err(DescriptorError::NotAParticipant {
                round: descriptor.round_id(),
                role: "helper",
            }
            .into());
        }
        Ok(descriptor)
    }

    fn insert_round(&mut self, descriptor: VerifiedDescriptor) -> Result<(), HelperError> {
        let round = descriptor.round_id();
        if let Some(last) = self.last_round
            && round <= last
        {
            return Err(DescriptorError::Replayed { round, last }.into());
        }
        let index = descriptor
            .helper_index(&self.config.me)
            .expect("verified membership");
        self.last_round = Some(round);
        self.rounds.insert(
            round,
            HelperRound {
                descriptor,
                index,
                shares: BTreeMap::new(),
                reported: false,
                answered: None,
            },
        );
        Ok(())
    }

    /// A round descriptor from the coordinator. A duplicate of the current
    /// round's descriptor is ignored; an older or replayed one is refused.
    pub fn on_descriptor(
        &mut self,
        now: Millis,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Vec<Action>, HelperError> {
        let descriptor = self.verify_descriptor(envelope)?;
        if let Some(known) = self.rounds.get(&descriptor.round_id())
            && known.descriptor.hash() == descriptor.hash()
        {
            return Ok(Vec::new());
        }
        let hash = descriptor.hash();
        self.insert_round(descriptor)?;
        let mut actions = vec![Action::Persist(Persist::HelperRound {
            descriptor: envelope.clone(),
        })];
        // Uploads that overtook the descriptor are processed now; ones that
        // turn out invalid are dropped, as they would have been refused.
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| pending_hash(p.bytes.expose()) == Some(hash));
        self.pending = waiting;
        for p in ready {
            if let Ok(more) = self.on_upload(now, p.from, p.bytes.expose()) {
                actions.extend(more);
            }
        }
        Ok(actions)
    }

    fn max_upload_bytes(&self) -> usize {
        let largest = self
            .rounds
            .values()
            .map(|r| r.descriptor.vector_bytes())
            .max();
        largest.unwrap_or(crate::descriptor::MAX_VECTOR_LEN as usize * 8) + UPLOAD_OVERHEAD
    }

    fn decode_upload(&self, bytes: &[u8]) -> Result<pb::Upload, HelperError> {
        decode_limited::<pb::Upload>(bytes, self.max_upload_bytes()).map_err(|e| {
            HelperError::MalformedUpload {
                reason: e.to_string(),
            }
        })
    }

    /// An upload from `from` (the identity its channel authenticated).
    /// Returns the actions for an accepted upload (persist it, then send the
    /// receipt, and the report if every client has now sent), nothing for an
    /// upload held until its descriptor arrives, or the reason for refusal.
    pub fn on_upload(
        &mut self,
        now: Millis,
        from: PartyId,
        bytes: &[u8],
    ) -> Result<Vec<Action>, HelperError> {
        let upload = self.decode_upload(bytes)?;
        let Some(hash) = Digest::from_slice(&upload.descriptor_hash) else {
            zeroize_upload(upload);
            return Err(HelperError::MalformedUpload {
                reason: "descriptor hash is not 32 bytes".into(),
            });
        };
        let Some(round) = self
            .rounds
            .values_mut()
            .find(|r| r.descriptor.hash() == hash)
        else {
            let claimed = upload.round_id;
            zeroize_upload(upload);
            if let Some(known) = self.rounds.get(&claimed) {
                return Err(HelperError::RoundMismatch {
                    round: known.descriptor.round_id(),
                });
            }
            if self.last_round.is_some_and(|last| claimed <= last) {
                return Err(HelperError::UnknownRound { round: claimed });
            }
            let from_sender = self.pending.iter().filter(|p| p.from == from).count();
            if self.pending.len() >= self.config.max_pending_uploads || from_sender >= 8 {
                return Err(HelperError::PendingFull { round: claimed });
            }
            self.pending.push(PendingUpload {
                received_at: now,
                from,
                bytes: SecretBytes::new(bytes.to_vec()),
            });
            return Ok(Vec::new());
        };
        if now >= round.descriptor.upload_deadline() || round.reported {
            let (r, c) = (round.descriptor.round_id(), upload.client_index);
            zeroize_upload(upload);
            return Err(HelperError::Late {
                round: r,
                client: c,
            });
        }
        let client_index = round.accept(from, upload)?;
        let mut actions = vec![
            Action::Persist(Persist::HelperUpload {
                round_id: round.descriptor.round_id(),
                client_index,
                upload: SecretBytes::new(bytes.to_vec()),
            }),
            Action::Send {
                to: from,
                message: Message::Receipt(self.config.signing_key.sign(&pb::Receipt {
                    descriptor_hash: hash.0.to_vec(),
                    round_id: round.descriptor.round_id(),
                    helper_index: round.index as u32,
                    client_index,
                    upload_digest: Digest::of(contexts::UPLOAD, bytes).0.to_vec(),
                })),
            },
        ];
        if round.shares.len() == round.descriptor.clients().len() {
            actions.push(round.report(&self.config));
        }
        Ok(actions)
    }

    /// Time passed: reports the received set of every round whose upload
    /// window has closed, and drops stale held uploads.
    pub fn on_timer(&mut self, now: Millis) -> Vec<Action> {
        self.pending
            .retain(|p| now < p.received_at.plus(PENDING_TTL_MS));
        let config = &self.config;
        self.rounds
            .values_mut()
            .filter(|r| !r.reported && now >= r.descriptor.upload_deadline())
            .map(|r| r.report(config))
            .collect()
    }

    /// The coordinator's signed inclusion set. Answers with this helper's
    /// aggregate share over exactly those clients — once per round, ever.
    pub fn on_inclusion_set(
        &mut self,
        _now: Millis,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Vec<Action>, HelperError> {
        let hash_claim = pb::InclusionSet::decode(envelope.body.as_slice())
            .ok()
            .and_then(|s| Digest::from_slice(&s.descriptor_hash))
            .ok_or(HelperError::MalformedInclusionSet {
                round: 0,
                reason: "undecodable".into(),
            })?;
        let round = self
            .rounds
            .values_mut()
            .find(|r| r.descriptor.hash() == hash_claim)
            .ok_or(HelperError::UnknownRound { round: 0 })?;
        let round_id = round.descriptor.round_id();
        let key = self
            .config
            .trust
            .key(&round.descriptor.signing_key_id())
            .ok_or(HelperError::Descriptor(DescriptorError::UntrustedKey {
                key_id: round.descriptor.signing_key_id(),
            }))?;
        let verified = key.key.verify::<pb::InclusionSet>(envelope)?;
        let set = verified.message();
        let inclusion_hash = verified.body_digest(contexts::INCLUSION);
        if set.round_id != round_id {
            return Err(HelperError::RoundMismatch { round: round_id });
        }
        if let Some(previous) = round.answered {
            return Err(HelperError::AlreadyAnswered {
                round: round_id,
                same_set: previous == inclusion_hash,
            });
        }
        if !round.reported {
            return Err(HelperError::NotReported { round: round_id });
        }
        let malformed = |reason: &str| HelperError::MalformedInclusionSet {
            round: round_id,
            reason: reason.into(),
        };
        if !strictly_increasing(&set.helpers) || !strictly_increasing(&set.clients) {
            return Err(malformed("indices are not strictly increasing"));
        }
        let helpers = round.descriptor.helpers().len();
        if set.helpers.iter().any(|&h| h as usize >= helpers) {
            return Err(malformed("helper index out of range"));
        }
        if !set.helpers.contains(&(round.index as u32)) {
            return Err(HelperError::NotSelected { round: round_id });
        }
        let needed = round.descriptor.threshold();
        if set.helpers.len() < needed {
            return Err(HelperError::TooFewHelpers {
                round: round_id,
                selected: set.helpers.len(),
                needed,
            });
        }
        if set.clients.len() < round.descriptor.min_clients() {
            return Err(HelperError::InclusionTooSmall {
                round: round_id,
                size: set.clients.len(),
                min_clients: round.descriptor.min_clients(),
            });
        }
        if let Some(&missing) = set.clients.iter().find(|c| !round.shares.contains_key(c)) {
            return Err(HelperError::UnreceivedClient {
                round: round_id,
                client: missing,
            });
        }

        let vector = round.aggregate(&set.clients)?;
        let header = pb::AggregateShareHeader {
            descriptor_hash: hash_claim.0.to_vec(),
            round_id,
            helper_index: round.index as u32,
            inclusion_hash: inclusion_hash.0.to_vec(),
            vector_digest: Digest::of(contexts::AGGREGATE, &vector).0.to_vec(),
        };
        let message = pb::AggregateShare {
            header: Some(self.config.signing_key.sign(&header)),
            vector,
        };
        let encoded = SecretBytes::new(message.encode_to_vec());
        let mut message = message;
        zeroize::Zeroize::zeroize(&mut message.vector);
        round.answered = Some(inclusion_hash);
        Ok(vec![
            Action::Persist(Persist::HelperAnswer {
                round_id,
                inclusion_hash,
            }),
            Action::Send {
                to: self.config.coordinator,
                message: Message::AggregateShare(encoded),
            },
        ])
    }

    /// Forgets all but the `keep` most recent rounds.
    pub fn prune(&mut self, keep: usize) {
        while self.rounds.len() > keep {
            self.rounds.pop_first();
        }
    }
}

fn pending_hash(bytes: &[u8]) -> Option<Digest> {
    let upload = pb::Upload::decode(bytes).ok()?;
    let hash = Digest::from_slice(&upload.descriptor_hash);
    zeroize_upload(upload);
    hash
}

fn strictly_increasing(v: &[u32]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

impl HelperRound {
    /// Validates an upload from `from` and stores its share; returns the
    /// client index. The upload's share bytes are wiped either way.
    fn accept(&mut self, from: PartyId, upload: pb::Upload) -> Result<u32, HelperError> {
        let round = self.descriptor.round_id();
        let outcome = self.check_and_store(from, &upload, round);
        zeroize_upload(upload);
        outcome
    }

    fn check_and_store(
        &mut self,
        from: PartyId,
        upload: &pb::Upload,
        round: u64,
    ) -> Result<u32, HelperError> {
        if upload.round_id != round {
            return Err(HelperError::RoundMismatch { round });
        }
        let client = self
            .descriptor
            .client_index(&from)
            .ok_or(HelperError::NotAParticipant { round, party: from })?;
        if upload.client_index != client {
            return Err(HelperError::ClientIndexMismatch {
                round,
                claimed: upload.client_index,
                actual: client,
            });
        }
        if self.shares.contains_key(&client) {
            return Err(HelperError::DuplicateUpload { round, client });
        }
        let expects_seed = match self.descriptor.mode() {
            Mode::Additive => {
                additive::correction_holder(client, self.descriptor.helpers().len()) != self.index
            }
            Mode::Threshold(params) => params.seeded_helpers(client).any(|h| h == self.index),
        };
        let share = match (&upload.share, expects_seed) {
            (Some(pb::upload::Share::Seed(seed)), true) => {
                StoredShare::Seed(Seed::try_from_slice(seed).ok_or(HelperError::ShareLength {
                    round,
                    client,
                    expected: Seed::LEN,
                    actual: seed.len(),
                })?)
            }
            (Some(pb::upload::Share::Vector(v)), false) => {
                let len = self.descriptor.vector_len();
                let check = match self.descriptor.encoding().ring() {
                    RingKind::Z2_32 => vector::check_le::<u32>(v, len),
                    RingKind::Z2_64 => vector::check_le::<u64>(v, len),
                    _ => vector::check_le::<Fp>(v, len),
                };
                match check {
                    Ok(()) => StoredShare::Vector(SecretBytes::new(v.clone())),
                    Err(DecodeError::Length {
                        expected_bytes,
                        actual_bytes,
                    }) => {
                        return Err(HelperError::ShareLength {
                            round,
                            client,
                            expected: expected_bytes,
                            actual: actual_bytes,
                        });
                    }
                    Err(_) => return Err(HelperError::NonCanonicalShare { round, client }),
                }
            }
            (None, _) => {
                return Err(HelperError::MalformedUpload {
                    reason: "upload carries no share".into(),
                });
            }
            (_, expects_seed) => {
                return Err(HelperError::WrongShareKind {
                    round,
                    client,
                    expected: if expects_seed { "seed" } else { "vector" },
                });
            }
        };
        self.shares.insert(client, share);
        Ok(client)
    }

    fn report(&mut self, config: &HelperConfig) -> Action {
        self.reported = true;
        let report = pb::HelperReport {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            helper_index: self.index as u32,
            received: self.shares.keys().copied().collect(),
        };
        Action::Send {
            to: config.coordinator,
            message: Message::Report(config.signing_key.sign(&report)),
        }
    }

    /// Σ over `clients` of this helper's shares, packed little-endian.
    fn aggregate(&self, clients: &[u32]) -> Result<Vec<u8>, HelperError> {
        match (self.descriptor.mode(), self.descriptor.encoding().ring()) {
            (Mode::Threshold(_), _) => self.aggregate_in::<Fp>(clients, shamir::domain),
            (Mode::Additive, RingKind::Z2_32) => {
                self.aggregate_in::<u32>(clients, additive::domain)
            }
            (Mode::Additive, RingKind::Z2_64) => {
                self.aggregate_in::<u64>(clients, additive::domain)
            }
            (Mode::Additive, _) => self.aggregate_in::<Fp>(clients, additive::domain),
        }
    }

    fn aggregate_in<R: Ring>(
        &self,
        clients: &[u32],
        domain: fn([u8; 32], u32, usize) -> PrgDomain,
    ) -> Result<Vec<u8>, HelperError> {
        let round = self.descriptor.round_id();
        let context = self.descriptor.hash().0;
        let mut acc = ShareVec::<R>::zeros(self.descriptor.vector_len());
        for &client in clients {
            match self.shares.get(&client) {
                Some(StoredShare::Seed(seed)) => prg::expand_add_into(
                    seed,
                    &domain(context, client, self.index),
                    acc.expose_mut(),
                ),
                Some(StoredShare::Vector(bytes)) => {
                    vector::add_le_bytes_assign(acc.expose_mut(), bytes.expose())
                        .map_err(|_| HelperError::NonCanonicalShare { round, client })?
                }
                None => return Err(HelperError::UnreceivedClient { round, client }),
            }
        }
        Ok(vector::encode_le(acc.expose()))
    }
}

/// Why a helper refused a message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// The descriptor was refused.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A signed envelope was refused.
    #[error("envelope refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// An upload that does not decode.
    #[error("malformed upload: {reason}")]
    MalformedUpload {
        /// What is wrong.
        reason: String,
    },
    /// A message for a round this helper does not know (or no longer holds).
    #[error("round {round} is unknown or closed")]
    UnknownRound {
        /// The round id claimed.
        round: u64,
    },
    /// A message whose round id or descriptor hash belongs to another round.
    #[error("message does not belong to round {round}: round id and descriptor hash disagree")]
    RoundMismatch {
        /// The round the descriptor hash names.
        round: u64,
    },
    /// Too many uploads are waiting for descriptors.
    #[error("round {round}: too many uploads are waiting for their descriptor")]
    PendingFull {
        /// The round id claimed.
        round: u64,
    },
    /// The sender is not a client of the round.
    #[error("round {round}: {party} is not a client of this round")]
    NotAParticipant {
        /// Round id.
        round: u64,
        /// The authenticated sender.
        party: PartyId,
    },
    /// The upload claims another client's index.
    #[error("round {round}: upload claims client index {claimed}, sender is client {actual}")]
    ClientIndexMismatch {
        /// Round id.
        round: u64,
        /// Index claimed.
        claimed: u32,
        /// The sender's index.
        actual: u32,
    },
    /// The upload window had closed.
    #[error("round {round}: upload from client {client} arrived after the window closed")]
    Late {
        /// Round id.
        round: u64,
        /// Client index claimed.
        client: u32,
    },
    /// A second upload from the same client.
    #[error("round {round}: client {client} already uploaded")]
    DuplicateUpload {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
    },
    /// A seed where a vector was due, or the reverse.
    #[error("round {round}: client {client} must send this helper a {expected}")]
    WrongShareKind {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
        /// What was due.
        expected: &'static str,
    },
    /// A share of the wrong size.
    #[error("round {round}: share from client {client} has {actual} bytes, expected {expected}")]
    ShareLength {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
        /// Bytes due.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// A field element outside the field.
    #[error("round {round}: share from client {client} holds a non-canonical element")]
    NonCanonicalShare {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
    },
    /// An inclusion set that does not parse or is out of range.
    #[error("round {round}: malformed inclusion set: {reason}")]
    MalformedInclusionSet {
        /// Round id (0 if unknown).
        round: u64,
        /// What is wrong.
        reason: String,
    },
    /// The inclusion set does not ask this helper.
    #[error("round {round}: the inclusion set does not select this helper")]
    NotSelected {
        /// Round id.
        round: u64,
    },
    /// Fewer helpers selected than reconstruction needs.
    #[error("round {round}: {selected} helpers selected, {needed} needed")]
    TooFewHelpers {
        /// Round id.
        round: u64,
        /// Helpers selected.
        selected: usize,
        /// Helpers needed.
        needed: usize,
    },
    /// Fewer clients than `min_clients`.
    #[error("round {round}: inclusion set of {size} clients is below min_clients {min_clients}")]
    InclusionTooSmall {
        /// Round id.
        round: u64,
        /// Set size.
        size: usize,
        /// The round's minimum.
        min_clients: usize,
    },
    /// The set names a client whose share this helper does not hold.
    #[error(
        "round {round}: inclusion set names client {client}, whose share this helper never received"
    )]
    UnreceivedClient {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
    },
    /// This helper already answered an inclusion set for the round.
    #[error("round {round}: already answered an inclusion set ({})", if *same_set { "this same one" } else { "a different one: refusing a second sum" })]
    AlreadyAnswered {
        /// Round id.
        round: u64,
        /// Whether the new set is identical to the answered one.
        same_set: bool,
    },
    /// An inclusion set before this helper reported its received set.
    #[error("round {round}: inclusion set arrived before this helper reported")]
    NotReported {
        /// Round id.
        round: u64,
    },
}
