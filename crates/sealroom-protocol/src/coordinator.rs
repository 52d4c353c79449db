//! The coordinator role (DESIGN.md §2 steps 1, 4 and 6): issues signed
//! descriptors, gathers the helpers' reports, signs the inclusion set,
//! reconstructs from the helpers' aggregate shares, and publishes a signed
//! [`pb::RoundResult`] — or a signed [`pb::AbortRecord`] that says why
//! nothing was released. It never sees an individual input.
//!
//! Fail closed: every path that cannot meet the round's contract (too few
//! clients, a helper missing, inconsistent shares, a deadline) ends in an
//! abort record, never in a partial or unchecked result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sealroom_core::shamir;
use sealroom_core::vector;
use sealroom_core::{Fp, QuantSpec, Ring, RingKind, ShareVec, SharingError, additive};

use crate::action::{Action, Message, Persist, SecretBytes};
use crate::descriptor::{DescriptorError, DescriptorParams, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, SigningKey, VerifyingKey, decode_limited};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::pb;
use crate::pb::AbortReason;

/// The coordinator's fixed configuration: the federation's policy.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Federation id.
    pub federation_id: String,
    /// Key that signs descriptors, inclusion sets and results.
    pub signing_key: SigningKey,
    /// Key epoch the signing key is valid for.
    pub epoch: u64,
    /// Helpers with their signing keys; position = helper index.
    pub helpers: Vec<(PartyId, VerifyingKey)>,
    /// `Some(t)` for Shamir t-of-h, `None` for additive.
    pub threshold: Option<usize>,
    /// Smallest releasable inclusion set.
    pub min_clients: usize,
    /// How long clients may upload.
    pub upload_window_ms: u64,
    /// How long after the upload window helpers have to report and answer.
    pub aggregation_window_ms: u64,
}

/// What one round computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Public name.
    pub name: String,
    /// Elements per client vector.
    pub vector_len: u64,
    /// Ring of the shares (F_p is required for threshold mode).
    pub ring: RingKind,
    /// Quantization.
    pub spec: QuantSpec,
    /// Task parameters carried, signed, in the descriptor.
    pub params: Vec<u8>,
    /// Raises the round's `min_clients` above the coordinator's default
    /// (a lower value is ignored: the default is a floor).
    pub min_clients: Option<usize>,
}

/// The coordinator across rounds: owns the round-id counter.
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    next_round_id: u64,
}

impl Coordinator {
    /// A coordinator whose next round id is `next_round_id` (one above the
    /// last one it persisted).
    pub fn new(config: CoordinatorConfig, next_round_id: u64) -> Coordinator {
        Coordinator {
            config,
            next_round_id: next_round_id.max(1),
        }
    }

    /// The id the next round will get.
    pub fn next_round_id(&self) -> u64 {
        self.next_round_id
    }

    /// Issues a round of `task` over `clients`. The descriptor is validated
    /// exactly as its receivers will validate it (including the headroom
    /// check), so a round that could overflow or break policy is refused here.
    pub fn start_round(
        &mut self,
        now: Millis,
        task: Task,
        clients: Vec<PartyId>,
        nonce: [u8; 32],
    ) -> Result<(CoordinatorRound, Vec<Action>), CoordinatorError> {
        let round_id = self.next_round_id;
        let descriptor = DescriptorParams {
            federation_id: self.config.federation_id.clone(),
            round_id,
            epoch: self.config.epoch,
            task_name: task.name,
            task_params: task.params,
            vector_len: task.vector_len,
            ring: task.ring,
            spec: task.spec,
            threshold: self.config.threshold,
            clients,
            helpers: self.config.helpers.iter().map(|(id, _)| *id).collect(),
            min_clients: task
                .min_clients
                .map_or(self.config.min_clients, |m| m.max(self.config.min_clients)),
            issued_at: now,
            upload_window_ms: self.config.upload_window_ms,
            aggregation_window_ms: self.config.aggregation_window_ms,
            nonce,
        }
        .sign(&self.config.signing_key)?;
        self.next_round_id += 1;

        let mut actions = vec![Action::Persist(Persist::CoordinatorRound { round_id })];
        let shared = Arc::new(descriptor.envelope().clone());
        for to in descriptor.helpers().iter().chain(descriptor.clients()) {
            actions.push(Action::Send {
                to: *to,
                message: Message::Descriptor(Arc::clone(&shared)),
            });
        }
        let round = CoordinatorRound {
            report_deadline: descriptor
                .upload_deadline()
                .plus(self.config.aggregation_window_ms / 2),
            descriptor,
            signing_key: self.config.signing_key.clone(),
            helper_keys: self.config.helpers.clone(),
            reports: BTreeMap::new(),
            inclusion: None,
            answers: BTreeMap::new(),
            outcome: None,
        };
        Ok((round, actions))
    }
}

/// The outcome of a round.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The sum was released.
    Completed(RoundSummary),
    /// Nothing was released.
    Aborted(AbortSummary),
}

impl Outcome {
    /// The signed record to publish and log.
    pub fn record(&self) -> &pb::SignedEnvelope {
        match self {
            Outcome::Completed(s) => &s.result,
            Outcome::Aborted(a) => &a.record,
        }
    }
}

/// A completed round.
#[derive(Clone, Debug)]
pub struct RoundSummary {
    /// Round id.
    pub round_id: u64,
    /// The signed result.
    pub result: pb::SignedEnvelope,
    /// Client indices whose inputs are in the sum.
    pub included: Vec<u32>,
    /// Helpers whose shares were used.
    pub answering_helpers: Vec<u32>,
    /// The exact sum of the included clients' quantized inputs.
    pub sum: Vec<i64>,
    /// The sum dequantized (exact: the headroom check guarantees it).
    pub values: Vec<f64>,
}

/// An aborted round.
#[derive(Clone, Debug)]
pub struct AbortSummary {
    /// Round id.
    pub round_id: u64,
    /// The signed abort record.
    pub record: pb::SignedEnvelope,
    /// Why.
    pub reason: AbortReason,
    /// Human-readable account.
    pub detail: String,
    /// Helpers that failed to report or answer.
    pub missing_helpers: Vec<u32>,
    /// Helpers blamed by the consistency check.
    pub suspect_helpers: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Inclusion {
    envelope: pb::SignedEnvelope,
    hash: Digest,
    clients: Vec<u32>,
    helpers: Vec<u32>,
}

#[derive(Debug)]
struct Answer {
    header: pb::SignedEnvelope,
    vector: SecretBytes,
}

/// One round from the coordinator's side.
#[derive(Debug)]
pub struct CoordinatorRound {
    descriptor: VerifiedDescriptor,
    signing_key: SigningKey,
    helper_keys: Vec<(PartyId, VerifyingKey)>,
    report_deadline: Millis,
    reports: BTreeMap<usize, (Vec<u32>, pb::SignedEnvelope)>,
    inclusion: Option<Inclusion>,
    answers: BTreeMap<usize, Answer>,
    outcome: Option<Outcome>,
}

impl CoordinatorRound {
    /// The round's descriptor.
    pub fn descriptor(&self) -> &VerifiedDescriptor {
        &self.descriptor
    }

    /// The outcome, once the round has one.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Consumes the finished round, yielding its outcome (or the round back if
    /// it is still running).
    pub fn into_outcome(self) -> Result<Outcome, Box<CoordinatorRound>> {
        match self.outcome {
            Some(outcome) => Ok(outcome),
            None => Err(Box::new(self)),
        }
    }

    /// The signed inclusion set, once decided.
    pub fn inclusion_set(&self) -> Option<&pb::SignedEnvelope> {
        self.inclusion.as_ref().map(|i| &i.envelope)
    }

    /// When [`CoordinatorRound::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.outcome.is_some() {
            None
        } else if self.inclusion.is_none() {
            Some(self.report_deadline)
        } else {
            Some(self.descriptor.aggregation_deadline())
        }
    }

    fn helper(&self, from: &PartyId) -> Result<(usize, VerifyingKey), CoordinatorError> {
        let round = self.descriptor.round_id();
        let index = self
            .descriptor
            .helper_index(from)
            .ok_or(CoordinatorError::NotAHelper {
                round,
                party: *from,
            })?;
        let key = self.helper_keys[index].1;
        Ok((index, key))
    }

    /// A helper's signed report of the clients whose shares it holds.
    pub fn on_report(
        &mut self,
        _now: Millis,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Vec<Action>, CoordinatorError> {
        let round = self.descriptor.round_id();
        let (index, key) = self.helper(&from)?;
        let verified = key.verify::<pb::HelperReport>(envelope)?;
        let report = verified.message();
        self.check_binding(
            &report.descriptor_hash,
            report.round_id,
            report.helper_index,
            index,
        )?;
        let n = self.descriptor.clients().len() as u32;
        if !report.received.windows(2).all(|w| w[0] < w[1])
            || report.received.iter().any(|&c| c >= n)
        {
            return Err(CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason: "received set is not strictly increasing client indices".into(),
            });
        }
        if let Some((previous, _)) = self.reports.get(&index) {
            return if previous == &report.received {
                Ok(Vec::new())
            } else {
                Err(CoordinatorError::ConflictingReport {
                    round,
                    helper: index,
                })
            };
        }
        if self.inclusion.is_some() || self.outcome.is_some() {
            return Err(CoordinatorError::TooLate {
                round,
                helper: index,
            });
        }
        self.reports
            .insert(index, (report.received.clone(), envelope.clone()));
        if self.reports.len() == self.descriptor.helpers().len() {
            Ok(self.decide())
        } else {
            Ok(Vec::new())
        }
    }

    fn check_binding(
        &self,
        descriptor_hash: &[u8],
        round_id: u64,
        helper_index: u32,
        index: usize,
    ) -> Result<(), CoordinatorError> {
        let round = self.descriptor.round_id();
        if descriptor_hash != self.descriptor.hash().0 || round_id != round {
            return Err(CoordinatorError::WrongRound {
                round,
                helper: index,
            });
        }
        if helper_index as usize != index {
            return Err(CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason: format!("claims helper index {helper_index}"),
            });
        }
        Ok(())
    }

    /// Time passed: decide the inclusion set once the report deadline is
    /// reached, or finish once the aggregation deadline is.
    pub fn on_timer(&mut self, now: Millis) -> Vec<Action> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        if self.inclusion.is_none() {
            if now >= self.report_deadline {
                self.decide()
            } else {
                Vec::new()
            }
        } else if now >= self.descriptor.aggregation_deadline() {
            self.finish()
        } else {
            Vec::new()
        }
    }

    /// Picks the helpers that answer and the clients they all hold; aborts if
    /// that cannot reach `min_clients` or enough helpers.
    fn decide(&mut self) -> Vec<Action> {
        let h = self.descriptor.helpers().len();
        let t = self.descriptor.threshold();
        let missing: Vec<u32> = (0..h)
            .filter(|i| !self.reports.contains_key(i))
            .map(|i| i as u32)
            .collect();
        let candidates: Vec<usize> = self.reports.keys().copied().collect();
        let chosen = match self.descriptor.mode() {
            Mode::Additive if !missing.is_empty() => {
                let detail = format!(
                    "helper(s) {missing:?} did not report before the deadline; additive mode needs every helper"
                );
                return self.abort(AbortReason::HelperMissing, detail, missing, Vec::new(), 0);
            }
            Mode::Additive => best_helper_set(&self.reports, &candidates, h),
            Mode::Threshold(_) if candidates.len() < t => {
                let detail = format!(
                    "only {} helper(s) reported, {t} needed; missing {missing:?}",
                    candidates.len()
                );
                return self.abort(AbortReason::Deadline, detail, missing, Vec::new(), 0);
            }
            Mode::Threshold(_) => best_helper_set(&self.reports, &candidates, t),
        };
        let (helpers, clients) = chosen;
        if clients.len() < self.descriptor.min_clients() {
            let detail = format!(
                "only {} client(s) are held by every answering helper; min_clients is {}",
                clients.len(),
                self.descriptor.min_clients()
            );
            let size = clients.len() as u32;
            return self.abort(
                AbortReason::NotEnoughClients,
                detail,
                missing,
                Vec::new(),
                size,
            );
        }
        let set = pb::InclusionSet {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            clients: clients.clone(),
            helpers: helpers.clone(),
        };
        let envelope = self.signing_key.sign(&set);
        let hash = Digest::of(contexts::INCLUSION, &envelope.body);
        let mut actions = vec![Action::Persist(Persist::CoordinatorInclusion {
            round_id: self.descriptor.round_id(),
            inclusion_set: envelope.clone(),
        })];
        for &j in &helpers {
            actions.push(Action::Send {
                to: self.descriptor.helpers()[j as usize],
                message: Message::InclusionSet(envelope.clone()),
            });
        }
        self.inclusion = Some(Inclusion {
            envelope,
            hash,
            clients,
            helpers,
        });
        actions
    }

    /// A helper's aggregate share: a signed header and the vector it digests.
    pub fn on_aggregate(
        &mut self,
        _now: Millis,
        from: PartyId,
        bytes: &[u8],
    ) -> Result<Vec<Action>, CoordinatorError> {
        let round = self.descriptor.round_id();
        let (index, key) = self.helper(&from)?;
        let limit = self.descriptor.vector_bytes() + 2048;
        let mut message: pb::AggregateShare =
            decode_limited(bytes, limit).map_err(|e| CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason: e.to_string(),
            })?;
        let vector = SecretBytes::new(std::mem::take(&mut message.vector));
        let header_env = message.header.ok_or(CoordinatorError::MalformedMessage {
            round,
            helper: index,
            reason: "no header".into(),
        })?;
        let verified = key.verify::<pb::AggregateShareHeader>(&header_env)?;
        let header = verified.message();
        self.check_binding(
            &header.descriptor_hash,
            header.round_id,
            header.helper_index,
            index,
        )?;
        let Some(inclusion) = &self.inclusion else {
            return Err(CoordinatorError::Unexpected {
                round,
                helper: index,
            });
        };
        if header.inclusion_hash != inclusion.hash.0 {
            return Err(CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason: "answers a different inclusion set".into(),
            });
        }
        if !inclusion.helpers.contains(&(index as u32)) {
            return Err(CoordinatorError::Unexpected {
                round,
                helper: index,
            });
        }
        if header.vector_digest != Digest::of(contexts::AGGREGATE, vector.expose()).0 {
            return Err(CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason: "vector does not match its signed digest".into(),
            });
        }
        let len = self.descriptor.vector_len();
        let valid = match self.descriptor.encoding().ring() {
            RingKind::Z2_32 => vector::check_le::<u32>(vector.expose(), len),
            RingKind::Z2_64 => vector::check_le::<u64>(vector.expose(), len),
            _ => vector::check_le::<Fp>(vector.expose(), len),
        };
        valid.map_err(|e| CoordinatorError::MalformedMessage {
            round,
            helper: index,
            reason: e.to_string(),
        })?;
        if self.outcome.is_some() {
            return Err(CoordinatorError::TooLate {
                round,
                helper: index,
            });
        }
        if let Some(previous) = self.answers.get(&index) {
            return if previous.vector == vector {
                Ok(Vec::new())
            } else {
                Err(CoordinatorError::ConflictingReport {
                    round,
                    helper: index,
                })
            };
        }
        self.answers.insert(
            index,
            Answer {
                header: header_env,
                vector,
            },
        );
        if self.answers.len() == inclusion.helpers.len() {
            Ok(self.finish())
        } else {
            Ok(Vec::new())
        }
    }

    /// Reconstructs from the answers in hand, or aborts.
    fn finish(&mut self) -> Vec<Action> {
        let Some(inclusion) = self.inclusion.clone() else {
            return Vec::new();
        };
        let size = inclusion.clients.len() as u32;
        let missing: Vec<u32> = inclusion
            .helpers
            .iter()
            .copied()
            .filter(|j| !self.answers.contains_key(&(*j as usize)))
            .collect();
        let t = self.descriptor.threshold();
        if self.answers.len() < t {
            let detail = format!(
                "helper(s) {missing:?} did not answer before the deadline; {t} answers needed, {} received",
                self.answers.len()
            );
            return self.abort(
                AbortReason::HelperMissing,
                detail,
                missing,
                Vec::new(),
                size,
            );
        }
        let reconstructed = match self.descriptor.mode() {
            Mode::Additive => match self.descriptor.encoding().ring() {
                RingKind::Z2_32 => self.reconstruct_additive::<u32>(),
                RingKind::Z2_64 => self.reconstruct_additive::<u64>(),
                _ => self.reconstruct_additive::<Fp>(),
            },
            Mode::Threshold(params) => self.reconstruct_threshold(params),
        };
        let sum = match reconstructed {
            Ok(sum) => sum,
            Err(SharingError::Inconsistent(report)) => {
                let suspects: Vec<u32> = report.suspects.iter().map(|&s| s as u32).collect();
                // A client that sends a helper a vector off its polynomial has
                // the same effect as a helper answering wrongly: "suspect" is
                // where the inconsistency shows, not proof of who caused it.
                let detail = format!(
                    "aggregate shares are inconsistent: {report} (a helper answered wrongly, or a client sent inconsistent shares)"
                );
                return self.abort(
                    AbortReason::InconsistentShares,
                    detail,
                    missing,
                    suspects,
                    size,
                );
            }
            Err(e) => {
                let detail = format!("reconstruction failed: {e}");
                return self.abort(
                    AbortReason::ReconstructionFailed,
                    detail,
                    missing,
                    Vec::new(),
                    size,
                );
            }
        };
        let spec = self.descriptor.encoding().spec();
        let values = sum.iter().map(|&q| spec.dequantize(q)).collect();
        let answering: Vec<u32> = self.answers.keys().map(|&j| j as u32).collect();
        let result = pb::RoundResult {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            inclusion_hash: inclusion.hash.0.to_vec(),
            included_clients: inclusion.clients.clone(),
            answering_helpers: answering.clone(),
            sum: sum.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let envelope = self.signing_key.sign(&result);
        self.outcome = Some(Outcome::Completed(RoundSummary {
            round_id: self.descriptor.round_id(),
            result: envelope.clone(),
            included: inclusion.clients,
            answering_helpers: answering,
            sum,
            values,
        }));
        self.publish(Message::Result(Arc::new(envelope)))
    }

    /// Decodes each answer into a wiped-on-drop vector. The answers were
    /// validated on arrival (length, canonical elements), so a failure here
    /// is reported as a malformed share rather than trusted.
    fn decoded_answers<R: Ring>(&self) -> Result<Vec<(usize, ShareVec<R>)>, SharingError> {
        let len = self.descriptor.vector_len();
        self.answers
            .iter()
            .map(|(&helper, a)| {
                vector::decode_le::<R>(a.vector.expose(), len)
                    .map(|v| (helper, ShareVec::new(v)))
                    .map_err(|_| SharingError::ShareLength {
                        helper,
                        source: vector::LengthMismatch {
                            expected: len,
                            actual: a.vector.len() / R::BYTES,
                        },
                    })
            })
            .collect()
    }

    fn reconstruct_additive<R: Ring>(&self) -> Result<Vec<i64>, SharingError> {
        let decoded = self.decoded_answers::<R>()?;
        let refs: Vec<&[R]> = decoded.iter().map(|(_, v)| v.expose()).collect();
        let sum = additive::reconstruct(&refs, self.descriptor.helpers().len())?;
        Ok(self
            .descriptor
            .encoding()
            .decode_sum_integers(&sum)
            .expect("the ring matches the descriptor's encoding"))
    }

    fn reconstruct_threshold(
        &self,
        params: shamir::ShamirParams,
    ) -> Result<Vec<i64>, SharingError> {
        let decoded = self.decoded_answers::<Fp>()?;
        let refs: Vec<(usize, &[Fp])> = decoded.iter().map(|(j, v)| (*j, v.expose())).collect();
        let sum = shamir::reconstruct_checked(params, &refs)?;
        Ok(self
            .descriptor
            .encoding()
            .decode_sum_integers(&sum)
            .expect("threshold rounds are in F_p"))
    }

    fn abort(
        &mut self,
        reason: AbortReason,
        detail: String,
        missing_helpers: Vec<u32>,
        suspect_helpers: Vec<u32>,
        included_clients: u32,
    ) -> Vec<Action> {
        let mut evidence: Vec<pb::SignedEnvelope> =
            self.reports.values().map(|(_, e)| e.clone()).collect();
        evidence.extend(self.answers.values().map(|a| a.header.clone()));
        let record = pb::AbortRecord {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            reason: reason as i32,
            detail: detail.clone(),
            missing_helpers: missing_helpers.clone(),
            suspect_helpers: suspect_helpers.clone(),
            included_clients,
            evidence,
        };
        let envelope = self.signing_key.sign(&record);
        self.outcome = Some(Outcome::Aborted(AbortSummary {
            round_id: self.descriptor.round_id(),
            record: envelope.clone(),
            reason,
            detail,
            missing_helpers,
            suspect_helpers,
        }));
        self.publish(Message::Abort(Arc::new(envelope)))
    }

    fn publish(&self, message: Message) -> Vec<Action> {
        self.descriptor
            .helpers()
            .iter()
            .chain(self.descriptor.clients())
            .map(|to| Action::Send {
                to: *to,
                message: message.clone(),
            })
            .collect()
    }
}

/// Chooses which reporting helpers answer: the set of at least `min_size`
/// helpers whose common clients are most numerous, preferring more helpers on
/// ties (more redundancy for the consistency check), then the
/// lexicographically smallest. Returns (helpers, common clients), sorted.
fn best_helper_set(
    reports: &BTreeMap<usize, (Vec<u32>, pb::SignedEnvelope)>,
    candidates: &[usize],
    min_size: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut best: Option<(Vec<u32>, Vec<u32>)> = None;
    let n = candidates.len();
    // Searching subsets is exponential in the helper count; beyond 10
    // reporting helpers, all of them answer.
    let min_size = if n > 10 { n } else { min_size };
    for mask in 1u32..(1u32 << n) {
        if (mask.count_ones() as usize) < min_size {
            continue;
        }
        let members: Vec<usize> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| candidates[i])
            .collect();
        let mut common: BTreeSet<u32> = reports[&members[0]].0.iter().copied().collect();
        for m in &members[1..] {
            let held: BTreeSet<u32> = reports[m].0.iter().copied().collect();
            common = common.intersection(&held).copied().collect();
        }
        let better = match &best {
            None => true,
            Some((h, c)) => (common.len(), members.len()) > (c.len(), h.len()),
        };
        if better {
            best = Some((
                members.iter().map(|&m| m as u32).collect(),
                common.into_iter().collect(),
            ));
        }
    }
    best.unwrap_or_default()
}

/// Why the coordinator refused a message or a round.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The round could not be issued.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A signed envelope was refused.
    #[error("envelope refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The sender is not a helper of the round.
    #[error("round {round}: {party} is not a helper of this round")]
    NotAHelper {
        /// Round id.
        round: u64,
        /// Sender.
        party: PartyId,
    },
    /// A message bound to another round.
    #[error("round {round}: message from helper {helper} is bound to another round")]
    WrongRound {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
    },
    /// A malformed report or answer.
    #[error("round {round}: malformed message from helper {helper}: {reason}")]
    MalformedMessage {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
        /// What is wrong.
        reason: String,
    },
    /// A second, different report or answer from the same helper.
    #[error("round {round}: helper {helper} sent two different messages for the same step")]
    ConflictingReport {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
    },
    /// A message after the step it belongs to was closed.
    #[error("round {round}: message from helper {helper} arrived after its step closed")]
    TooLate {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
    },
    /// An answer the coordinator did not ask for.
    #[error("round {round}: helper {helper} answered without being asked")]
    Unexpected {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
    },
}
