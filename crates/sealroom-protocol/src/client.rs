//! The client role: verifies a round descriptor, quantizes and secret-shares
//! its input, sends one upload per helper, and checks the helpers' receipts
//! (DESIGN.md §2 steps 1–3).

use std::collections::BTreeMap;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::additive::{self, AdditiveShare};
use sealroom_core::quant::QuantError;
use sealroom_core::shamir::{self, ShamirShare};
use sealroom_core::{Fp, Ring, RingKind, Seed, SharingError};

use crate::action::{Action, Message, MessageKind, Persist, SecretBytes};
use crate::descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, PartyKeys};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::machine::{
    Artifact, Inbound, Input, Machine, Participation, Refusal, RefusalCode, Step, not_for,
};
use crate::pb;

/// A client's fixed configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// This client's identity.
    pub me: PartyId,
    /// The coordinator's identity (the only sender of descriptors, and where
    /// sit-out notices go).
    pub coordinator: PartyId,
    /// Federation and pinned coordinator keys.
    pub trust: DescriptorTrust,
    /// Helpers' receipt-signing keys (two during a helper's key rotation).
    pub helper_keys: BTreeMap<PartyId, PartyKeys>,
}

/// A client across rounds: remembers the last round it took part in, the
/// round it was asked to compute an input for, and its current round.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    last_round: Option<u64>,
    asked: Option<VerifiedDescriptor>,
    round: Option<ClientRound>,
}

impl Machine for Client {
    fn handle(&mut self, now: Millis, input: Input) -> Result<Step, Refusal> {
        match input {
            Input::Inbound {
                from,
                msg: Inbound::Descriptor(env),
            } => self.on_descriptor(from, &env),
            Input::Participate(p) => self.participate(now, p),
            Input::Inbound {
                from,
                msg: Inbound::Receipt(env),
            } => self.on_receipt(from, &env),
            other => Err(not_for("client", &other)),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        None
    }
}

fn refuse(round: Option<u64>, error: ClientError) -> Refusal {
    Refusal {
        round,
        code: error.code(),
        error: Box::new(error.into()),
    }
}

impl Client {
    /// A client restored with the last round id it persisted (if any).
    pub fn new(config: ClientConfig, last_round: Option<u64>) -> Client {
        Client {
            config,
            last_round,
            asked: None,
            round: None,
        }
    }

    /// Replaces the coordinator keys this client trusts (a key rotation,
    /// reloaded from the federation's file).
    pub fn set_trust(&mut self, trust: DescriptorTrust) {
        self.config.trust = trust;
    }

    /// Replaces the helpers' keys (a helper's key rotation or retirement,
    /// reloaded from the federation's file), for the round under way too:
    /// a helper that switched keys mid-round signs its receipt with the
    /// new one, and a retired key is refused at once.
    pub fn set_helper_keys(&mut self, keys: BTreeMap<PartyId, PartyKeys>) {
        if let Some(round) = &mut self.round {
            for (id, k) in &mut round.helpers {
                if let Some(new) = keys.get(id) {
                    *k = *new;
                }
            }
        }
        self.config.helper_keys = keys;
    }

    /// The coordinator this client takes descriptors from.
    pub fn coordinator(&self) -> PartyId {
        self.config.coordinator
    }

    /// The highest round id this client has taken part in.
    pub fn last_round(&self) -> Option<u64> {
        self.last_round
    }

    /// The round this client is taking part in, once its uploads are out.
    pub fn current_round(&self) -> Option<&ClientRound> {
        self.round.as_ref()
    }

    /// Verifies a descriptor for this client: signature by a pinned
    /// coordinator key, version, federation, fields, headroom, a round id
    /// above the last one seen, this client in the participant list, and
    /// only helpers this client knows.
    pub fn check_descriptor(
        &self,
        envelope: &pb::SignedEnvelope,
    ) -> Result<VerifiedDescriptor, ClientError> {
        let descriptor = VerifiedDescriptor::verify(envelope, &self.config.trust)?;
        let round = descriptor.round_id();
        if let Some(last) = self.last_round
            && round <= last
        {
            return Err(DescriptorError::Replayed { round, last }.into());
        }
        if descriptor.client_index(&self.config.me).is_none() {
            return Err(DescriptorError::NotAParticipant {
                round,
                role: "client",
            }
            .into());
        }
        // Shares go only to helpers this client knows: a coordinator must not
        // be able to name itself, or anyone else, as a helper.
        if let Some(party) = descriptor
            .helpers()
            .iter()
            .find(|h| !self.config.helper_keys.contains_key(h))
        {
            return Err(ClientError::UnknownHelper {
                round,
                party: *party,
            });
        }
        Ok(descriptor)
    }

    /// A descriptor from the coordinator: once verified, the runtime is
    /// asked to compute this client's input ([`Action::Compute`]).
    fn on_descriptor(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Step, Refusal> {
        if from != self.config.coordinator {
            return Err(refuse(None, ClientError::WrongSender { party: from }));
        }
        let descriptor = self
            .check_descriptor(envelope)
            .map_err(|e| refuse(None, e))?;
        let round = descriptor.round_id();
        if self
            .asked
            .as_ref()
            .is_some_and(|a| a.hash() == descriptor.hash())
        {
            // The same descriptor again (a reconnect): already asked.
            return Ok(Step::new(Some(round), Vec::new()));
        }
        self.asked = Some(descriptor.clone());
        Ok(Step {
            accepted: vec![Artifact {
                kind: MessageKind::Descriptor,
                round,
                envelope: envelope.clone(),
            }],
            ..Step::new(Some(round), vec![Action::Compute(Box::new(descriptor))])
        })
    }

    /// This client's input for the round it was asked about (or why it sits
    /// it out): quantizes and shares the input with randomness drawn from a
    /// ChaCha20 stream seeded by `randomness`, and returns the uploads to
    /// send; a sit-out becomes a notice to the coordinator. Nothing changes
    /// if any check fails.
    fn participate(&mut self, now: Millis, p: Participation) -> Result<Step, Refusal> {
        let Some(descriptor) = self.asked.as_ref().filter(|d| d.round_id() == p.round) else {
            return Err(refuse(None, ClientError::NotAsked { round: p.round }));
        };
        let round = descriptor.round_id();
        if let Some(last) = self.last_round
            && round <= last
        {
            return Err(refuse(
                Some(round),
                DescriptorError::Replayed { round, last }.into(),
            ));
        }
        if now >= descriptor.upload_deadline() {
            return Err(refuse(Some(round), ClientError::Late { round }));
        }
        let mut actions = vec![Action::Persist(Persist::ClientRound { round_id: round })];
        let client_round = match p.input {
            Ok(input) => {
                let (client_round, uploads) =
                    share_input(descriptor, &self.config, input.expose(), &p.randomness)
                        .map_err(|e| refuse(Some(round), e))?;
                actions.extend(uploads);
                Some(client_round)
            }
            Err(sit_out) => {
                let notice = pb::SitOut {
                    descriptor_hash: descriptor.hash().0.to_vec(),
                    round_id: round,
                    reason: sit_out.reason as i32,
                    subject: crate::machine::clean_subject(&sit_out.subject),
                };
                actions.push(Action::Send {
                    to: self.config.coordinator,
                    round,
                    message: Message::SitOut(notice.encode_to_vec()),
                });
                None
            }
        };
        let ends_round = client_round.is_none();
        self.last_round = Some(round);
        self.asked = None;
        self.round = client_round;
        Ok(Step {
            ends_round,
            ..Step::new(Some(round), actions)
        })
    }

    fn on_receipt(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Step, Refusal> {
        let Some(round) = self.round.as_mut() else {
            return Err(refuse(None, ClientError::NoRound));
        };
        let round_id = round.round_id;
        round
            .on_receipt(from, envelope)
            .map_err(|e| refuse(Some(round_id), e))?;
        Ok(Step {
            ends_round: round.all_receipts(),
            ..Step::new(Some(round_id), Vec::new())
        })
    }
}

/// Quantizes and shares `input` for `descriptor`: the round state and the
/// upload actions.
fn share_input(
    descriptor: &VerifiedDescriptor,
    config: &ClientConfig,
    input: &[f64],
    randomness: &Seed,
) -> Result<(ClientRound, Vec<Action>), ClientError> {
    let round = descriptor.round_id();
    if input.len() != descriptor.vector_len() {
        return Err(ClientError::InputLength {
            round,
            expected: descriptor.vector_len(),
            actual: input.len(),
        });
    }
    let spec = descriptor.encoding().spec();
    let quantized = spec
        .quantize(input)
        .map_err(|source| ClientError::Quantization { round, source })?;
    let index = descriptor
        .client_index(&config.me)
        .expect("check_descriptor verified membership");
    let mut rng = ChaCha20Rng::from_seed(*randomness.expose_bytes());
    let context = descriptor.hash().0;
    let helpers = descriptor.helpers().len();
    let encoding = descriptor.encoding();
    let embed_err = |source| ClientError::Quantization { round, source };
    let share_err = |source| ClientError::Sharing { round, source };
    let packing = encoding.packing();
    let shares: Vec<ShareBytes> = match (descriptor.mode(), encoding.ring()) {
        (Mode::Additive, RingKind::Z2_32) => additive_bytes::<u32>(
            secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
            helpers,
            index,
            context,
            &mut rng,
            |v| sealroom_core::vector::encode_packed(v, packing),
        )
        .map_err(share_err)?,
        (Mode::Additive, RingKind::Z2_64) => additive_bytes::<u64>(
            secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
            helpers,
            index,
            context,
            &mut rng,
            |v| sealroom_core::vector::encode_packed(v, packing),
        )
        .map_err(share_err)?,
        (Mode::Additive, RingKind::Fp61) => additive_bytes::<Fp>(
            secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
            helpers,
            index,
            context,
            &mut rng,
            sealroom_core::vector::encode_le,
        )
        .map_err(share_err)?,
        (Mode::Threshold(params), _) => shamir::share(
            params,
            secret(encoding.embed::<Fp>(&quantized).map_err(embed_err)?).expose(),
            index,
            context,
            &mut rng,
        )
        .map_err(share_err)?
        .into_iter()
        .map(|s| match s {
            ShamirShare::Seed(seed) => ShareBytes::Seed(seed),
            ShamirShare::Vector(v) => ShareBytes::Vector(SecretBytes::new(
                sealroom_core::vector::encode_le(v.expose()),
            )),
        })
        .collect(),
    };
    // An engine round: each helper also gets its shares of the integrity
    // sketch over the same signed values (sealroom_mpc::client), drawn after
    // the shares so a sum round's randomness use is unchanged.
    let mut sketches: Vec<zeroize::Zeroizing<[u8; 32]>> = match descriptor.engine() {
        Some(_) => sealroom_mpc::client::sketch_upload(&quantized.values, &mut rng).into(),
        None => Vec::new(),
    };
    let mut actions = Vec::with_capacity(helpers);
    let mut upload_digests = Vec::with_capacity(helpers);
    for (h, (helper, share)) in descriptor.helpers().iter().zip(shares).enumerate() {
        let upload = pb::Upload {
            sketch: sketches.get(h).map(|s| s.to_vec()).unwrap_or_default(),
            descriptor_hash: context.to_vec(),
            round_id: round,
            client_index: index,
            share: Some(match share {
                ShareBytes::Seed(seed) => pb::upload::Share::Seed(seed.expose_bytes().to_vec()),
                ShareBytes::Vector(bytes) => pb::upload::Share::Vector(bytes.expose().to_vec()),
            }),
        };
        let bytes = SecretBytes::new(upload.encode_to_vec());
        zeroize_upload(upload);
        upload_digests.push(Digest::of(contexts::UPLOAD, bytes.expose()));
        actions.push(Action::Send {
            to: *helper,
            round,
            message: Message::Upload(bytes),
        });
    }
    sketches.clear();
    let helper_keys = descriptor
        .helpers()
        .iter()
        .filter_map(|h| config.helper_keys.get(h).map(|k| (*h, *k)))
        .collect();
    Ok((
        ClientRound {
            round_id: round,
            descriptor_hash: descriptor.hash(),
            helpers: helper_keys,
            receipts: vec![None; helpers],
            index,
            upload_digests,
        },
        actions,
    ))
}

/// Wipes the share bytes held in a protobuf upload.
pub(crate) fn zeroize_upload(mut upload: pb::Upload) {
    use zeroize::Zeroize as _;
    match &mut upload.share {
        Some(pb::upload::Share::Seed(b)) | Some(pb::upload::Share::Vector(b)) => b.zeroize(),
        None => {}
    }
    upload.sketch.zeroize();
}

/// Holds an embedded input in a type that wipes it when dropped.
fn secret<R: Ring>(v: Vec<R>) -> sealroom_core::ShareVec<R> {
    sealroom_core::ShareVec::new(v)
}

enum ShareBytes {
    Seed(Seed),
    Vector(SecretBytes),
}

/// Additive shares of `input`, the correction vector encoded by `encode`
/// (at the round's share width).
fn additive_bytes<R: Ring>(
    input: &[R],
    helpers: usize,
    index: u32,
    context: [u8; 32],
    rng: &mut ChaCha20Rng,
    encode: impl Fn(&[R]) -> Vec<u8>,
) -> Result<Vec<ShareBytes>, SharingError> {
    Ok(additive::share(input, helpers, index, context, rng)?
        .into_iter()
        .map(|s| match s {
            AdditiveShare::Seed(seed) => ShareBytes::Seed(seed),
            AdditiveShare::Correction(v) => {
                ShareBytes::Vector(SecretBytes::new(encode(v.expose())))
            }
        })
        .collect())
}

/// One round from a client's side, after its uploads are out.
#[derive(Debug)]
pub struct ClientRound {
    round_id: u64,
    descriptor_hash: Digest,
    /// The round's helpers (position = helper index) and their keys.
    helpers: Vec<(PartyId, PartyKeys)>,
    index: u32,
    upload_digests: Vec<Digest>,
    receipts: Vec<Option<pb::SignedEnvelope>>,
}

impl ClientRound {
    /// The round.
    pub fn round_id(&self) -> u64 {
        self.round_id
    }
    /// This client's index in the round.
    pub fn client_index(&self) -> u32 {
        self.index
    }
    /// Verifies a helper's signed receipt for this client's upload.
    fn on_receipt(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<(), ClientError> {
        let round = self.round_id;
        let (helper, key) = self
            .helpers
            .iter()
            .enumerate()
            .find(|(_, (id, _))| *id == from)
            .map(|(i, (_, key))| (i, *key))
            .ok_or(ClientError::NotAHelper { round, party: from })?;
        let verified = key.verify::<pb::Receipt>(envelope)?;
        let r = verified.message();
        let mismatch = |field: &'static str| ClientError::ReceiptMismatch {
            round,
            helper,
            field,
        };
        if r.descriptor_hash != self.descriptor_hash.0 {
            return Err(mismatch("descriptor_hash"));
        }
        if r.round_id != round {
            return Err(mismatch("round_id"));
        }
        if r.helper_index as usize != helper {
            return Err(mismatch("helper_index"));
        }
        if r.client_index != self.index {
            return Err(mismatch("client_index"));
        }
        if self
            .upload_digests
            .get(helper)
            .is_none_or(|d| r.upload_digest != d.0)
        {
            return Err(mismatch("upload_digest"));
        }
        self.receipts[helper] = Some(envelope.clone());
        Ok(())
    }

    /// Whether every helper has acknowledged this client's upload.
    pub fn all_receipts(&self) -> bool {
        self.receipts.iter().all(Option::is_some)
    }

    /// The receipts collected so far, by helper index.
    pub fn receipts(&self) -> &[Option<pb::SignedEnvelope>] {
        &self.receipts
    }
}

/// Why a client refused a round or a receipt.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The descriptor was refused.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A receipt envelope was refused.
    #[error("receipt refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The upload window had closed.
    #[error("round {round}: the upload window has closed")]
    Late {
        /// Round id.
        round: u64,
    },
    /// The input has the wrong length for the task.
    #[error("round {round}: input has {actual} values, the task needs {expected}")]
    InputLength {
        /// Round id.
        round: u64,
        /// Task length.
        expected: usize,
        /// Input length.
        actual: usize,
    },
    /// The input could not be quantized (NaN or infinity).
    #[error("round {round}: {source}")]
    Quantization {
        /// Round id.
        round: u64,
        /// What failed.
        source: QuantError,
    },
    /// Sharing failed.
    #[error("round {round}: {source}")]
    Sharing {
        /// Round id.
        round: u64,
        /// What failed.
        source: SharingError,
    },
    /// The descriptor names a helper this client does not know.
    #[error(
        "round {round}: the descriptor names {party} as a helper, which this client does not know; no share is sent"
    )]
    UnknownHelper {
        /// Round id.
        round: u64,
        /// The unknown party.
        party: PartyId,
    },
    /// A receipt from a party that is not a helper of the round.
    #[error("round {round}: {party} is not a helper of this round")]
    NotAHelper {
        /// Round id.
        round: u64,
        /// The sender.
        party: PartyId,
    },
    /// A receipt that does not match what was sent.
    #[error("round {round}: receipt from helper {helper} has a wrong {field}")]
    ReceiptMismatch {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
        /// The field that differs.
        field: &'static str,
    },
    /// A descriptor from someone other than the coordinator.
    #[error("a descriptor from {party}, who is not the coordinator")]
    WrongSender {
        /// The sender.
        party: PartyId,
    },
    /// An input for a round this client was not asked to compute.
    #[error("round {round}: this client was not asked for an input")]
    NotAsked {
        /// The round named.
        round: u64,
    },
    /// A receipt while no round is under way.
    #[error("a receipt, but this client has no round under way")]
    NoRound,
}

impl ClientError {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            ClientError::Descriptor(e) => e.code(),
            ClientError::Envelope(_) => RefusalCode::BadSignature,
            ClientError::Late { .. } => RefusalCode::Late,
            ClientError::InputLength { .. } | ClientError::Quantization { .. } => {
                RefusalCode::InputInvalid
            }
            ClientError::Sharing { .. } => RefusalCode::SharingFailed,
            ClientError::UnknownHelper { .. } => RefusalCode::UnknownHelper,
            ClientError::NotAHelper { .. } => RefusalCode::WrongSender,
            ClientError::ReceiptMismatch { .. } => RefusalCode::ReceiptMismatch,
            ClientError::WrongSender { .. } => RefusalCode::WrongSender,
            ClientError::NotAsked { .. } => RefusalCode::Unexpected,
            ClientError::NoRound => RefusalCode::NoRound,
        }
    }
}
