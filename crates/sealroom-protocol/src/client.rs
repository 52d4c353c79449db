//! The client role: verifies a round descriptor, quantizes and secret-shares
//! its input, sends one upload per helper, and checks the helpers' receipts
//! (DESIGN.md §2 steps 1–3).

use std::collections::BTreeMap;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::additive::{self, AdditiveShare};
use sealroom_core::quant::{ErrorFeedback, QuantError};
use sealroom_core::shamir::{self, ShamirShare};
use sealroom_core::{Fp, Ring, RingKind, Seed, SharingError};

use crate::action::{Action, Message, Persist, SecretBytes};
use crate::descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, VerifyingKey};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::pb;

/// A client's fixed configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// This client's identity.
    pub me: PartyId,
    /// Federation and pinned coordinator keys.
    pub trust: DescriptorTrust,
    /// Helpers' receipt-signing keys.
    pub helper_keys: BTreeMap<PartyId, VerifyingKey>,
}

/// A client across rounds: remembers the last round it took part in.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    last_round: Option<u64>,
}

impl Client {
    /// A client restored with the last round id it persisted (if any).
    pub fn new(config: ClientConfig, last_round: Option<u64>) -> Client {
        Client { config, last_round }
    }

    /// The highest round id this client has taken part in.
    pub fn last_round(&self) -> Option<u64> {
        self.last_round
    }

    /// Verifies a descriptor for this client: signature by a pinned
    /// coordinator key, version, federation, fields, headroom, a round id
    /// above the last one seen, and this client in the participant list.
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

    /// Takes part in a round: checks the descriptor, quantizes `input` (with
    /// error feedback if given), shares it with randomness drawn from a
    /// ChaCha20 stream seeded by `randomness` (which the caller draws from the
    /// OS and may record for replay), and returns the uploads to send.
    ///
    /// Nothing changes if any check fails.
    pub fn participate(
        &mut self,
        now: Millis,
        envelope: &pb::SignedEnvelope,
        input: &[f64],
        error_feedback: Option<&mut ErrorFeedback>,
        randomness: &Seed,
    ) -> Result<(ClientRound, Vec<Action>), ClientError> {
        let descriptor = self.check_descriptor(envelope)?;
        let round = descriptor.round_id();
        if now >= descriptor.upload_deadline() {
            return Err(ClientError::Late { round });
        }
        if input.len() != descriptor.vector_len() {
            return Err(ClientError::InputLength {
                round,
                expected: descriptor.vector_len(),
                actual: input.len(),
            });
        }
        let spec = descriptor.encoding().spec();
        let quantized = match error_feedback {
            Some(ef) => ef.quantize(&spec, input),
            None => spec.quantize(input),
        }
        .map_err(|source| ClientError::Quantization { round, source })?;
        let index = descriptor
            .client_index(&self.config.me)
            .expect("check_descriptor verified membership");
        let mut rng = ChaCha20Rng::from_seed(*randomness.expose_bytes());
        let context = descriptor.hash().0;
        let helpers = descriptor.helpers().len();
        let encoding = descriptor.encoding();
        let embed_err = |source| ClientError::Quantization { round, source };
        let share_err = |source| ClientError::Sharing { round, source };
        let shares: Vec<ShareBytes> = match (descriptor.mode(), encoding.ring()) {
            (Mode::Additive, RingKind::Z2_32) => additive_bytes::<u32>(
                secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
                helpers,
                index,
                context,
                &mut rng,
            )
            .map_err(share_err)?,
            (Mode::Additive, RingKind::Z2_64) => additive_bytes::<u64>(
                secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
                helpers,
                index,
                context,
                &mut rng,
            )
            .map_err(share_err)?,
            (Mode::Additive, _) => additive_bytes::<Fp>(
                secret(encoding.embed(&quantized).map_err(embed_err)?).expose(),
                helpers,
                index,
                context,
                &mut rng,
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

        let mut actions = vec![Action::Persist(Persist::ClientRound { round_id: round })];
        let mut upload_digests = Vec::with_capacity(helpers);
        for (helper, share) in descriptor.helpers().iter().zip(shares) {
            let upload = pb::Upload {
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
                message: Message::Upload(bytes),
            });
        }
        self.last_round = Some(round);
        Ok((
            ClientRound {
                receipts: vec![None; helpers],
                helper_keys: self.config.helper_keys.clone(),
                descriptor,
                index,
                upload_digests,
                clipped: quantized.clipped,
            },
            actions,
        ))
    }
}

/// Wipes the share bytes held in a protobuf upload.
pub(crate) fn zeroize_upload(mut upload: pb::Upload) {
    use zeroize::Zeroize as _;
    match &mut upload.share {
        Some(pb::upload::Share::Seed(b)) | Some(pb::upload::Share::Vector(b)) => b.zeroize(),
        None => {}
    }
}

/// Holds an embedded input in a type that wipes it when dropped.
fn secret<R: Ring>(v: Vec<R>) -> sealroom_core::ShareVec<R> {
    sealroom_core::ShareVec::new(v)
}

enum ShareBytes {
    Seed(Seed),
    Vector(SecretBytes),
}

fn additive_bytes<R: Ring>(
    input: &[R],
    helpers: usize,
    index: u32,
    context: [u8; 32],
    rng: &mut ChaCha20Rng,
) -> Result<Vec<ShareBytes>, SharingError> {
    Ok(additive::share(input, helpers, index, context, rng)?
        .into_iter()
        .map(|s| match s {
            AdditiveShare::Seed(seed) => ShareBytes::Seed(seed),
            AdditiveShare::Correction(v) => ShareBytes::Vector(SecretBytes::new(
                sealroom_core::vector::encode_le(v.expose()),
            )),
        })
        .collect())
}

/// One round from a client's side, after its uploads are out.
#[derive(Debug)]
pub struct ClientRound {
    descriptor: VerifiedDescriptor,
    index: u32,
    upload_digests: Vec<Digest>,
    receipts: Vec<Option<pb::SignedEnvelope>>,
    helper_keys: BTreeMap<PartyId, VerifyingKey>,
    clipped: usize,
}

impl ClientRound {
    /// The round's descriptor.
    pub fn descriptor(&self) -> &VerifiedDescriptor {
        &self.descriptor
    }
    /// This client's index in the round.
    pub fn client_index(&self) -> u32 {
        self.index
    }
    /// How many input values were clipped by quantization.
    pub fn clipped(&self) -> usize {
        self.clipped
    }

    /// Verifies a helper's signed receipt for this client's upload.
    pub fn on_receipt(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<(), ClientError> {
        let round = self.descriptor.round_id();
        let helper = self
            .descriptor
            .helper_index(&from)
            .ok_or(ClientError::NotAHelper { round, party: from })?;
        let key = self
            .helper_keys
            .get(&from)
            .ok_or(ClientError::NotAHelper { round, party: from })?;
        let verified = key.verify::<pb::Receipt>(envelope)?;
        let r = verified.message();
        let mismatch = |field: &'static str| ClientError::ReceiptMismatch {
            round,
            helper,
            field,
        };
        if r.descriptor_hash != self.descriptor.hash().0 {
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
        if r.upload_digest != self.upload_digests[helper].0 {
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
}
