//! Evidence of a released sum: a round's signed descriptor, inclusion set
//! and result, and the helper-signed answers the sum was reconstructed from.
//!
//! Any party that trusts the federation's coordinator and helper keys
//! re-derives the sum from this evidence ([`verify`]) instead of believing
//! the coordinator. A task that runs in phases uses it so that a later phase
//! is checked against an earlier one by every client: a query's stats round
//! carries the evidence of its counts round, and each client re-derives the
//! released cells from it (issue #12, finding 3).
//!
//! What the evidence reveals: the answers of the helpers that answered,
//! which together reconstruct the round's released aggregate and nothing
//! else (each is a share of the sum over the inclusion set; no individual
//! input can be recovered from them). Hand it only to parties entitled to
//! that aggregate.

use std::collections::BTreeMap;

use sealroom_core::shamir;
use sealroom_core::vector;
use sealroom_core::{Fp, Ring, RingKind, ShareVec, SharingError, additive};

use crate::descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, MAX_SIGNED_BODY, PartyKeys, decode_limited};
use crate::ids::{Digest, PartyId, contexts};
use crate::pb;

/// Largest encoded evidence [`decode`] accepts (the descriptor, inclusion
/// set and result are small; the answers dominate).
pub const MAX_EVIDENCE_BYTES: usize = 64 << 20;

/// The keys a party checks evidence against: the coordinator's (through the
/// descriptor trust) and every helper's, from the federation's own file.
#[derive(Clone, Debug)]
pub struct FederationKeys {
    /// Which coordinator keys sign descriptors, inclusion sets and results.
    pub trust: DescriptorTrust,
    /// Helpers' signing keys by identity.
    pub helper_keys: BTreeMap<PartyId, PartyKeys>,
}

/// A sum re-derived from verified evidence.
#[derive(Clone, Debug)]
pub struct VerifiedRelease {
    /// The round's verified descriptor.
    pub descriptor: VerifiedDescriptor,
    /// Client indices whose inputs are in the sum (the signed inclusion set).
    pub included: Vec<u32>,
    /// The exact sum of the included clients' quantized inputs.
    pub sum: Vec<i64>,
    /// The sum dequantized with the descriptor's spec.
    pub values: Vec<f64>,
}

/// Why evidence was refused. Names fields and helper indices only: never
/// a share or a value of the sum.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// It does not decode.
    #[error("release evidence is malformed: {0}")]
    Malformed(String),
    /// A part is missing.
    #[error("release evidence has no {0}")]
    Missing(&'static str),
    /// The descriptor does not verify.
    #[error("release evidence: {0}")]
    Descriptor(#[from] DescriptorError),
    /// A signature or envelope does not verify.
    #[error("release evidence: {part}: {source}")]
    Envelope {
        /// Which part.
        part: &'static str,
        /// Why.
        source: EnvelopeError,
    },
    /// Two parts do not belong together.
    #[error("release evidence: {0}")]
    Inconsistent(String),
    /// Threshold mode: the release used exactly `t` answers, so nobody can
    /// check them against each other.
    #[error(
        "release evidence for round {round}: the sum was released unverified (exactly {threshold} answers); a later phase cannot rest on it"
    )]
    Unverified {
        /// Round id.
        round: u64,
        /// Threshold.
        threshold: usize,
    },
    /// The answers do not reconstruct to the signed sum.
    #[error("release evidence for round {round}: {reason}")]
    Sum {
        /// Round id.
        round: u64,
        /// Why (no values).
        reason: String,
    },
}

/// The evidence of a completed round.
pub fn build(
    descriptor: &pb::SignedEnvelope,
    inclusion_set: &pb::SignedEnvelope,
    result: &pb::SignedEnvelope,
    answers: impl IntoIterator<Item = (pb::SignedEnvelope, Vec<u8>)>,
) -> pb::ReleaseEvidence {
    pb::ReleaseEvidence {
        descriptor: Some(descriptor.clone()),
        inclusion_set: Some(inclusion_set.clone()),
        result: Some(result.clone()),
        answers: answers
            .into_iter()
            .map(|(header, vector)| pb::AggregateShare {
                header: Some(header),
                vector,
            })
            .collect(),
    }
}

/// Decodes encoded evidence (at most [`MAX_EVIDENCE_BYTES`]).
pub fn decode(bytes: &[u8]) -> Result<pb::ReleaseEvidence, EvidenceError> {
    decode_limited(bytes, MAX_EVIDENCE_BYTES).map_err(|e| EvidenceError::Malformed(e.to_string()))
}

/// Checks every signature and binding in `evidence` against `keys` and
/// re-derives the released sum from the helpers' answers: the descriptor
/// must verify as any round's would, the inclusion set and result must be
/// signed by the key that signed the descriptor and name it, each answer
/// must be signed by the helper it names and answer that inclusion set, the
/// answering helpers must be exactly those the result names, and the
/// reconstructed sum must match the result's signed digest. Threshold
/// releases are re-checked for consistency (more than `t` answers) and
/// refused when they were unverified.
pub fn verify(
    keys: &FederationKeys,
    evidence: &pb::ReleaseEvidence,
) -> Result<VerifiedRelease, EvidenceError> {
    let part = |p: &'static str| move |source| EvidenceError::Envelope { part: p, source };
    let descriptor = VerifiedDescriptor::verify(
        evidence
            .descriptor
            .as_ref()
            .ok_or(EvidenceError::Missing("descriptor"))?,
        &keys.trust,
    )?;
    let round = descriptor.round_id();
    let bad = |reason: String| EvidenceError::Inconsistent(format!("round {round}: {reason}"));
    let coordinator = keys
        .trust
        .key(&descriptor.signing_key_id())
        .ok_or_else(|| bad("the descriptor's signing key is not trusted".into()))?
        .key;

    let inclusion_env = evidence
        .inclusion_set
        .as_ref()
        .ok_or(EvidenceError::Missing("inclusion set"))?;
    if inclusion_env.body.len() > MAX_SIGNED_BODY {
        return Err(bad("the inclusion set is too large".into()));
    }
    let inclusion = coordinator
        .verify::<pb::InclusionSet>(inclusion_env)
        .map_err(part("inclusion set"))?;
    let inclusion = inclusion.message();
    let inclusion_hash = Digest::of(contexts::INCLUSION, &inclusion_env.body);
    if inclusion.descriptor_hash != descriptor.hash().0 || inclusion.round_id != round {
        return Err(bad("the inclusion set belongs to another round".into()));
    }
    check_indices(
        "inclusion set clients",
        &inclusion.clients,
        descriptor.clients().len(),
    )
    .map_err(bad)?;
    check_indices(
        "inclusion set helpers",
        &inclusion.helpers,
        descriptor.helpers().len(),
    )
    .map_err(bad)?;

    let result = coordinator
        .verify::<pb::RoundResult>(
            evidence
                .result
                .as_ref()
                .ok_or(EvidenceError::Missing("result"))?,
        )
        .map_err(part("result"))?;
    let result = result.message();
    if result.descriptor_hash != descriptor.hash().0 || result.round_id != round {
        return Err(bad("the result belongs to another round".into()));
    }
    if result.inclusion_hash != inclusion_hash.0 {
        return Err(bad("the result answers another inclusion set".into()));
    }
    if result.included_clients != inclusion.clients {
        return Err(bad(
            "the result's clients differ from the inclusion set's".into()
        ));
    }
    if result.sum_length != descriptor.vector_len() as u64 {
        return Err(bad(
            "the result's sum length differs from the descriptor's".into()
        ));
    }
    let t = descriptor.threshold();
    if result.unverified {
        return Err(EvidenceError::Unverified {
            round,
            threshold: t,
        });
    }

    // The answers: one per answering helper, each signed by that helper.
    let mut answers: BTreeMap<usize, &[u8]> = BTreeMap::new();
    for answer in &evidence.answers {
        let header_env = answer
            .header
            .as_ref()
            .ok_or(EvidenceError::Missing("answer header"))?;
        // The claimed index only selects the key; the verified header must
        // name the same helper.
        let claimed = decode_limited::<pb::AggregateShareHeader>(&header_env.body, MAX_SIGNED_BODY)
            .map_err(part("answer header"))?
            .helper_index;
        let index = claimed as usize;
        let helper = descriptor
            .helpers()
            .get(index)
            .ok_or_else(|| bad(format!("an answer names helper {index}, not in the round")))?;
        let key = keys
            .helper_keys
            .get(helper)
            .ok_or_else(|| bad(format!("helper {index} is not one this party trusts")))?;
        let header = key
            .verify::<pb::AggregateShareHeader>(header_env)
            .map_err(part("answer header"))?;
        let header = header.message();
        if header.helper_index != claimed
            || header.descriptor_hash != descriptor.hash().0
            || header.round_id != round
            || header.inclusion_hash != inclusion_hash.0
        {
            return Err(bad(format!(
                "helper {index}'s answer belongs to another round"
            )));
        }
        if header.vector_digest != Digest::of(contexts::AGGREGATE, &answer.vector).0 {
            return Err(bad(format!(
                "helper {index}'s vector does not match its signed digest"
            )));
        }
        if answers.insert(index, &answer.vector).is_some() {
            return Err(bad(format!("helper {index} answers twice")));
        }
    }
    let answering: Vec<u32> = answers.keys().map(|&j| j as u32).collect();
    if answering != result.answering_helpers {
        return Err(bad(
            "the answers are not exactly those of the result's answering helpers".into(),
        ));
    }
    if !answering.iter().all(|j| inclusion.helpers.contains(j)) {
        return Err(bad("an answering helper was not asked".into()));
    }
    if answers.len() < t {
        return Err(bad(format!("{} answers, {t} needed", answers.len())));
    }
    if matches!(descriptor.mode(), Mode::Threshold(_)) && answers.len() == t {
        // The result says it was checked; the evidence cannot show it.
        return Err(EvidenceError::Unverified {
            round,
            threshold: t,
        });
    }
    let sum = reconstruct(&descriptor, &answers).map_err(|e| EvidenceError::Sum {
        round,
        reason: e.to_string(),
    })?;
    if crate::coordinator::sum_digest(&sum).0.as_slice() != result.sum_digest.as_slice() {
        return Err(EvidenceError::Sum {
            round,
            reason: "the answers reconstruct to a sum other than the one the result signs".into(),
        });
    }
    let spec = descriptor.encoding().spec();
    let values = sum.iter().map(|&q| spec.dequantize(q)).collect();
    Ok(VerifiedRelease {
        included: inclusion.clients.clone(),
        descriptor,
        sum,
        values,
    })
}

/// Indices strictly increasing and below `len`.
fn check_indices(what: &str, indices: &[u32], len: usize) -> Result<(), String> {
    if !indices.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!("{what} are not strictly increasing"));
    }
    if indices.last().is_some_and(|&i| i as usize >= len) {
        return Err(format!("{what} name an index outside the round"));
    }
    Ok(())
}

/// The sum from the helpers' answers (helper index → packed little-endian
/// vector), in the descriptor's mode and ring: additive shares are added,
/// Shamir shares interpolated and, with more than `t`, checked against each
/// other. Shared by the coordinator and [`verify`].
pub(crate) fn reconstruct(
    descriptor: &VerifiedDescriptor,
    answers: &BTreeMap<usize, &[u8]>,
) -> Result<Vec<i64>, SharingError> {
    let encoding = descriptor.encoding();
    let sum = match descriptor.mode() {
        Mode::Additive => {
            let h = descriptor.helpers().len();
            let packing = encoding.packing();
            match encoding.ring() {
                RingKind::Z2_32 => encoding.decode_sum_integers(&additive::reconstruct(
                    &refs(&decoded(descriptor, answers, |b, len| {
                        vector::decode_packed::<u32>(b, len, packing)
                    })?),
                    h,
                )?),
                RingKind::Z2_64 => encoding.decode_sum_integers(&additive::reconstruct(
                    &refs(&decoded(descriptor, answers, |b, len| {
                        vector::decode_packed::<u64>(b, len, packing)
                    })?),
                    h,
                )?),
                RingKind::Fp61 => encoding.decode_sum_integers(&additive::reconstruct(
                    &refs(&decoded(descriptor, answers, vector::decode_le::<Fp>)?),
                    h,
                )?),
            }
        }
        Mode::Threshold(params) => {
            let shares = decoded(descriptor, answers, vector::decode_le::<Fp>)?;
            let indexed: Vec<(usize, &[Fp])> =
                shares.iter().map(|(j, v)| (*j, v.expose())).collect();
            encoding.decode_sum_integers(&shamir::reconstruct_checked(params, &indexed)?)
        }
    };
    Ok(sum.expect("the ring matches the descriptor's encoding"))
}

fn refs<R: Ring>(shares: &[(usize, ShareVec<R>)]) -> Vec<&[R]> {
    shares.iter().map(|(_, v)| v.expose()).collect()
}

/// Decodes each answer into a wiped-on-drop vector; a wrong length or a
/// non-canonical element is a malformed share.
fn decoded<R: Ring>(
    descriptor: &VerifiedDescriptor,
    answers: &BTreeMap<usize, &[u8]>,
    decode: impl Fn(&[u8], usize) -> Result<Vec<R>, vector::DecodeError>,
) -> Result<Vec<(usize, ShareVec<R>)>, SharingError> {
    let len = descriptor.vector_len();
    let expected_bytes = descriptor.vector_bytes();
    answers
        .iter()
        .map(|(&helper, bytes)| {
            decode(bytes, len)
                .map(|v| (helper, ShareVec::new(v)))
                .map_err(|_| SharingError::ShareLength {
                    helper,
                    source: vector::LengthMismatch {
                        expected: len,
                        actual: bytes
                            .len()
                            .saturating_mul(len)
                            .checked_div(expected_bytes)
                            .unwrap_or(0),
                    },
                })
        })
        .collect()
}
