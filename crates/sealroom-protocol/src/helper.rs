//! The helper role (DESIGN.md §2 steps 3–5): validates uploads and signs
//! receipts, reports its received set when the upload window closes, and
//! answers **at most one** inclusion set per round with its aggregate share.
//!
//! The single-answer rule is what stops a coordinator from learning one
//! client's input by asking for sums over `S` and `S ∖ {i}` (the differencing
//! attack). The helper emits [`Persist::HelperAnswer`] before the answer, so a
//! runtime that honours the ordering contract of [`crate::action`] has the
//! record on disk before the share leaves; after a restart from that state
//! ([`Helper::restore`]) a second inclusion set is still refused. The *same*
//! set again is answered again with the same sum (deterministic, so byte for
//! byte the answer it already gave): that is how a round survives a lost
//! answer or a helper restart after answering, and it reveals nothing new.
//!
//! **What a round holds in memory, and for how long.** The shares of a
//! round while it collects and until it answers; then only the signed
//! answer it sent (to send again), and nothing once the round closes —
//! when the coordinator's descriptor of a later round arrives (it runs one
//! round at a time, so the earlier one is over for it), or at the latest
//! [`ANSWER_GRACE_MS`] after its aggregation deadline. A closed round
//! refuses every inclusion set ([`HelperError::AggregationClosed`]).
//! The shares stay in the store until pruned, so a retained round costs a
//! helper disk, not memory.
//!
//! An upload names its round by the descriptor's hash; it is matched only
//! against descriptors this helper verified. A round id an upload *claims*
//! is compared with verified state but never keys anything: an upload for a
//! round not (yet) known is refused ([`HelperError::NotYetKnown`], which a
//! client retries), never held.

use std::collections::BTreeMap;

use prost::Message as _;
use sealroom_core::prg::{self, PrgDomain};
use sealroom_core::vector::{self, DecodeError};
use sealroom_core::{Fp, Ring, RingKind, Seed, ShareVec, additive, shamir};
use zeroize::{Zeroize as _, Zeroizing};

use crate::action::{Action, EngineJob, EngineUpload, Message, MessageKind, Persist, SecretBytes};
use crate::client::zeroize_upload;
use crate::descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
use crate::envelope::{EnvelopeError, SharedSigner, SignerError, SignerExt as _, decode_limited};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::machine::{
    Artifact, EngineResult, Inbound, Input, Machine, Refusal, RefusalCode, Step, not_for,
};
use crate::pb;

/// Bytes of an upload beyond its share vector (hash, ids, framing).
pub const UPLOAD_OVERHEAD: usize = 128;

/// How long after a round's aggregation deadline, by this helper's clock,
/// it still answers (or answers again) the round's inclusion set: the
/// tolerance for the coordinator's clock running behind this helper's. The
/// coordinator stops waiting for answers at the aggregation deadline by its
/// own clock, so an answer later than that is of no use to it; after the
/// grace the helper drops the round's shares and its answer from memory.
pub const ANSWER_GRACE_MS: u64 = 120_000;

/// A helper's fixed configuration.
#[derive(Clone, Debug)]
pub struct HelperConfig {
    /// This helper's identity.
    pub me: PartyId,
    /// The coordinator's identity (where reports and answers go, and the
    /// only sender of descriptors and inclusion sets).
    pub coordinator: PartyId,
    /// Signs receipts, reports and answers.
    pub signer: SharedSigner,
    /// Federation and pinned coordinator keys.
    pub trust: DescriptorTrust,
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
    /// The report sent, if any ([`Persist::HelperReport`]).
    pub report: Option<pb::SignedEnvelope>,
    /// The inclusion set answered, if any ([`Persist::HelperAnswer`]).
    pub answered: Option<Digest>,
}

/// A helper across rounds.
#[derive(Debug)]
pub struct Helper {
    config: HelperConfig,
    last_round: Option<u64>,
    rounds: BTreeMap<u64, HelperRound>,
    left_out: usize,
}

#[derive(Debug)]
struct HelperRound {
    descriptor: VerifiedDescriptor,
    index: usize,
    /// Emptied once the round has answered (or handed its engine job
    /// over) and when it closes.
    shares: BTreeMap<u32, StoredShare>,
    /// Engine rounds: each client's sketch shares (κ_i ‖ τ_i).
    sketches: BTreeMap<u32, SecretBytes>,
    phase: Phase,
    /// The answer to the round's one inclusion set, once made.
    answer: AnswerState,
}

#[derive(Debug, Default)]
enum AnswerState {
    /// No answer in memory: none made yet, or made before a restart (then
    /// made again, byte for byte, from the shares restored with the round).
    #[default]
    Idle,
    /// Engine rounds: the program is running (an inclusion set repeated
    /// meanwhile is told to retry).
    Running,
    /// The signed answer, sent again for the same set.
    Sent(SecretBytes),
}

/// Where a round stands for this helper.
#[derive(Debug)]
enum Phase {
    /// Accepting uploads.
    Collecting,
    /// Reported (the signed report, for re-sending after a restart).
    Reported(pb::SignedEnvelope),
    /// Answered this inclusion set; nothing more is accepted.
    Answered(Digest),
    /// [`ANSWER_GRACE_MS`] past the aggregation deadline: shares and answer
    /// dropped; nothing is accepted or answered.
    Closed,
}

#[derive(Debug)]
enum StoredShare {
    Seed(Seed),
    Vector(SecretBytes),
}

impl Machine for Helper {
    fn handle(&mut self, now: Millis, input: Input) -> Result<Step, Refusal> {
        match input {
            Input::Inbound { from, msg } => match msg {
                Inbound::Descriptor(env) => self.on_descriptor(from, &env),
                Inbound::Upload(bytes) => self.on_upload(now, from, &bytes),
                Inbound::InclusionSet(env) => self.on_inclusion_set(from, &env),
                other => Err(not_for("helper", &Input::Inbound { from, msg: other })),
            },
            Input::Engine(result) => self.on_engine(result),
            Input::Timer => self.on_timer(now),
            other => Err(not_for("helper", &other)),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let reports = self
            .rounds
            .values()
            .filter(|r| matches!(r.phase, Phase::Collecting))
            .map(|r| r.descriptor.upload_deadline());
        let closes = self
            .rounds
            .values()
            .filter(|r| r.closable())
            .map(HelperRound::closes_at);
        reports.chain(closes).min()
    }
}

fn refuse(round: Option<u64>, error: HelperError) -> Refusal {
    Refusal {
        round,
        code: error.code(),
        error: Box::new(error.into()),
    }
}

impl Helper {
    /// A helper with no history.
    pub fn new(config: HelperConfig) -> Helper {
        Helper {
            config,
            last_round: None,
            rounds: BTreeMap::new(),
            left_out: 0,
        }
    }

    /// Rebuilds a helper from what it persisted at `now`: every descriptor
    /// and upload is verified again; rounds it reported stay reported and
    /// rounds it answered stay answered. A round already closed at `now`
    /// ([`ANSWER_GRACE_MS`] past its aggregation deadline) or by a later
    /// round's descriptor (every round but the newest) is restored closed,
    /// its uploads left in the store and not decoded.
    pub fn restore(
        config: HelperConfig,
        state: HelperState,
        now: Millis,
    ) -> Result<Helper, HelperError> {
        let mut helper = Helper::new(config);
        let newest = state.rounds.len().saturating_sub(1);
        for (position, persisted) in state.rounds.into_iter().enumerate() {
            let descriptor = match helper.verify_descriptor(&persisted.descriptor) {
                Ok(descriptor) => descriptor,
                // Signed by a coordinator key this helper no longer trusts
                // (retired after a rotation, runbook "Rotating the
                // coordinator's signing key"): the round can take no more
                // input, so it is left out — counted, never answered.
                Err(HelperError::Descriptor(
                    DescriptorError::UntrustedKey { .. }
                    | DescriptorError::KeyNotValidForEpoch { .. },
                )) => {
                    helper.left_out += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let round_id = descriptor.round_id();
            helper.check_new_round(&descriptor)?;
            let mut round = helper.round_for(descriptor);
            if position < newest || now >= round.closes_at() {
                round.phase = Phase::Closed;
                helper.last_round = Some(round_id);
                helper.rounds.insert(round_id, round);
                continue;
            }
            for (client_index, bytes) in persisted.uploads {
                let mut upload = decode_upload(bytes.expose(), round.max_upload_bytes())?;
                let from = *round
                    .descriptor
                    .clients()
                    .get(client_index as usize)
                    .ok_or(HelperError::MalformedUpload {
                        reason: "client index out of range".into(),
                    })?;
                let (client, share, sketch) = round.check(from, &mut upload)?;
                zeroize_upload(upload);
                round.shares.insert(client, share);
                if let Some(sketch) = sketch {
                    round.sketches.insert(client, sketch);
                }
            }
            round.phase = match (persisted.answered, persisted.report) {
                (Some(hash), _) => Phase::Answered(hash),
                (None, Some(report)) => Phase::Reported(report),
                (None, None) => Phase::Collecting,
            };
            helper.last_round = Some(round_id);
            helper.rounds.insert(round_id, round);
        }
        Ok(helper)
    }

    /// Stored rounds [`Helper::restore`] left out because their descriptor
    /// is signed by a coordinator key no longer trusted.
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// The highest round id accepted.
    pub fn last_round(&self) -> Option<u64> {
        self.last_round
    }

    /// The rounds this helper holds, ascending.
    pub fn rounds(&self) -> Vec<u64> {
        self.rounds.keys().copied().collect()
    }

    /// Reports already sent for rounds that are not answered yet and whose
    /// aggregation window is still open: what a restarted helper sends the
    /// coordinator again (the same signed bytes; they are not new
    /// artifacts).
    pub fn outstanding_reports(&self, now: Millis) -> Vec<(u64, pb::SignedEnvelope)> {
        self.rounds
            .values()
            .filter(|r| now < r.descriptor.aggregation_deadline())
            .filter_map(|r| match &r.phase {
                Phase::Reported(report) => Some((r.descriptor.round_id(), report.clone())),
                _ => None,
            })
            .collect()
    }

    /// The most bytes an upload from `from` may have: the largest share it
    /// owes this helper in a round still collecting, or `None` if it owes
    /// none (the transport then reads no more than a small upload before
    /// asking the state machine, so nothing a peer claims sizes a buffer).
    pub fn expected_upload_bytes(&self, from: &PartyId) -> Option<usize> {
        self.rounds
            .values()
            .filter(|r| matches!(r.phase, Phase::Collecting))
            .filter_map(|r| {
                let client = r.descriptor.client_index(from)?;
                (!r.shares.contains_key(&client)).then(|| r.upload_bytes(client))
            })
            .max()
    }

    /// Replaces the coordinator keys this helper trusts (a key rotation,
    /// reloaded from the federation's file). Rounds already accepted keep
    /// going: what they take next is checked against their descriptor's key,
    /// which a rotation keeps trusted for their epoch.
    pub fn set_trust(&mut self, trust: DescriptorTrust) {
        self.config.trust = trust;
    }

    /// Switches to a new signing key (this helper's own key rotation): what
    /// it signs from now on — receipts, reports, answers, also of rounds
    /// under way — is signed with `signer`, which every other node trusts
    /// beside the replaced key until the rotation is retired.
    pub fn set_signer(&mut self, signer: SharedSigner) {
        self.config.signer = signer;
    }

    /// Bytes of shares, sketch shares and kept answers this helper holds in
    /// memory, over all its rounds: what a round costs it in memory until
    /// it answers, then only its answer until it closes.
    pub fn bytes_in_memory(&self) -> usize {
        self.rounds.values().map(HelperRound::bytes_in_memory).sum()
    }

    /// Forgets all but the `keep` most recent rounds.
    pub fn prune(&mut self, keep: usize) {
        while self.rounds.len() > keep {
            self.rounds.pop_first();
        }
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

    fn check_new_round(&self, descriptor: &VerifiedDescriptor) -> Result<(), HelperError> {
        let round = descriptor.round_id();
        match self.last_round {
            Some(last) if round <= last => Err(DescriptorError::Replayed { round, last }.into()),
            _ => Ok(()),
        }
    }

    fn round_for(&self, descriptor: VerifiedDescriptor) -> HelperRound {
        let index = descriptor
            .helper_index(&self.config.me)
            .expect("verify_descriptor checked membership");
        HelperRound {
            descriptor,
            index,
            shares: BTreeMap::new(),
            sketches: BTreeMap::new(),
            phase: Phase::Collecting,
            answer: AnswerState::Idle,
        }
    }

    fn check_coordinator(&self, from: PartyId, kind: &'static str) -> Result<(), Refusal> {
        if from == self.config.coordinator {
            Ok(())
        } else {
            Err(refuse(None, HelperError::WrongSender { party: from, kind }))
        }
    }

    /// A round descriptor from the coordinator. A duplicate of a known
    /// round's descriptor is accepted again with nothing to do; an older or
    /// replayed one is refused.
    fn on_descriptor(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Step, Refusal> {
        self.check_coordinator(from, "descriptor")?;
        let descriptor = self
            .verify_descriptor(envelope)
            .map_err(|e| refuse(None, e))?;
        let round_id = descriptor.round_id();
        if let Some(known) = self.rounds.get(&round_id)
            && known.descriptor.hash() == descriptor.hash()
        {
            return Ok(Step::new(Some(round_id), Vec::new()));
        }
        self.check_new_round(&descriptor)
            .map_err(|e| refuse(None, e))?;
        let round = self.round_for(descriptor);
        self.last_round = Some(round_id);
        // The coordinator runs one round at a time: its descriptor of a
        // later round says every earlier one is over for it, so nothing
        // they hold can still be asked for.
        for earlier in self.rounds.values_mut() {
            if earlier.closable() {
                earlier.close();
            }
        }
        self.rounds.insert(round_id, round);
        Ok(Step {
            accepted: vec![Artifact {
                kind: MessageKind::Descriptor,
                round: round_id,
                envelope: envelope.clone(),
            }],
            ..Step::new(
                Some(round_id),
                vec![Action::Persist(Persist::HelperRound {
                    round_id,
                    descriptor: envelope.clone(),
                })],
            )
        })
    }

    /// An upload from `from` (the identity its channel authenticated):
    /// persist it, then send the receipt (and the report, if every client
    /// has now sent).
    fn on_upload(
        &mut self,
        now: Millis,
        from: PartyId,
        bytes: &SecretBytes,
    ) -> Result<Step, Refusal> {
        let limit = self
            .rounds
            .values()
            .map(HelperRound::max_upload_bytes)
            .max()
            .unwrap_or(UPLOAD_OVERHEAD);
        if bytes.len() > limit {
            // Larger than any upload a known round takes: it can only be for
            // a round this helper has not heard of yet (or garbage, which the
            // sender then retries in vain until its deadline).
            return Err(refuse(None, HelperError::NotYetKnown));
        }
        let mut upload = decode_upload(bytes.expose(), limit).map_err(|e| refuse(None, e))?;
        let Some(hash) = Digest::from_slice(&upload.descriptor_hash) else {
            zeroize_upload(upload);
            return Err(refuse(
                None,
                HelperError::MalformedUpload {
                    reason: "descriptor hash is not 32 bytes".into(),
                },
            ));
        };
        let Some(round) = self
            .rounds
            .values_mut()
            .find(|r| r.descriptor.hash() == hash)
        else {
            let claimed = upload.round_id;
            zeroize_upload(upload);
            let error = match self.last_round {
                Some(last) if claimed <= last => HelperError::UnknownRound,
                _ => HelperError::NotYetKnown,
            };
            return Err(refuse(None, error));
        };
        let round_id = round.descriptor.round_id();
        let outcome = round.accept(now, from, &mut upload);
        zeroize_upload(upload);
        let (client_index, share, sketch) = outcome.map_err(|e| refuse(Some(round_id), e))?;
        let receipt = pb::Receipt {
            descriptor_hash: hash.0.to_vec(),
            round_id,
            helper_index: round.index as u32,
            client_index,
            upload_digest: Digest::of(contexts::UPLOAD, bytes.expose()).0.to_vec(),
        };
        let receipt = self
            .config
            .signer
            .sign(&receipt)
            .map_err(|e| refuse(Some(round_id), e.into()))?;
        let complete = round.shares.len() + 1 == round.descriptor.clients().len();
        let report = if complete {
            Some(
                round
                    .report_with(&self.config, Some(client_index))
                    .map_err(|e| refuse(Some(round_id), e.into()))?,
            )
        } else {
            None
        };
        // Every check passed and every signature is made: now the state changes.
        round.shares.insert(client_index, share);
        if let Some(sketch) = sketch {
            round.sketches.insert(client_index, sketch);
        }
        let mut actions = vec![
            Action::Persist(Persist::HelperUpload {
                round_id,
                client_index,
                upload: bytes.clone(),
            }),
            Action::Send {
                to: from,
                round: round_id,
                message: Message::Receipt(receipt),
            },
        ];
        if let Some(report) = report {
            actions.extend(round.reported(&self.config, report));
        }
        Ok(Step::new(Some(round_id), actions))
    }

    /// Time passed: reports the received set of every round whose upload
    /// window has closed.
    fn on_timer(&mut self, now: Millis) -> Result<Step, Refusal> {
        let mut actions = Vec::new();
        for round in self
            .rounds
            .values_mut()
            .filter(|r| matches!(r.phase, Phase::Collecting))
            .filter(|r| now >= r.descriptor.upload_deadline())
        {
            let round_id = round.descriptor.round_id();
            let report = round
                .report_with(&self.config, None)
                .map_err(|e| refuse(Some(round_id), e.into()))?;
            actions.extend(round.reported(&self.config, report));
        }
        for round in self.rounds.values_mut() {
            if round.closable() && now >= round.closes_at() {
                round.close();
            }
        }
        Ok(Step::new(None, actions))
    }

    /// The coordinator's signed inclusion set. Answers with this helper's
    /// aggregate share over exactly those clients — once per round, ever.
    fn on_inclusion_set(
        &mut self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Step, Refusal> {
        self.check_coordinator(from, "inclusion set")?;
        let hash_claim =
            decode_limited::<pb::InclusionSet>(&envelope.body, crate::envelope::MAX_SIGNED_BODY)
                .ok()
                .and_then(|s| Digest::from_slice(&s.descriptor_hash))
                .ok_or_else(|| {
                    refuse(
                        None,
                        HelperError::MalformedInclusionSet {
                            reason: "undecodable".into(),
                        },
                    )
                })?;
        let Some(round) = self
            .rounds
            .values_mut()
            .find(|r| r.descriptor.hash() == hash_claim)
        else {
            return Err(refuse(None, HelperError::UnknownRound));
        };
        let round_id = round.descriptor.round_id();
        let fail = |e: HelperError| refuse(Some(round_id), e);
        let key = self
            .config
            .trust
            .key(&round.descriptor.signing_key_id())
            .ok_or(HelperError::Descriptor(DescriptorError::UntrustedKey {
                key_id: round.descriptor.signing_key_id(),
            }))
            .map_err(fail)?;
        let verified = key
            .key
            .verify::<pb::InclusionSet>(envelope)
            .map_err(|e| fail(e.into()))?;
        let set = verified.message();
        let inclusion_hash = verified.body_digest(contexts::INCLUSION);
        let repeat = round.check_inclusion(set, inclusion_hash).map_err(fail)?;
        if round.descriptor.engine().is_some() {
            return round.engine_job(envelope, set, inclusion_hash, repeat, &self.config);
        }
        let coordinator = self.config.coordinator;
        let send = |encoded: SecretBytes| Action::Send {
            to: coordinator,
            round: round_id,
            message: Message::AggregateShare(encoded),
        };
        if let AnswerState::Sent(encoded) = &round.answer {
            // `repeat` holds: an answered round accepts only its own set.
            return Ok(Step::new(Some(round_id), vec![send(encoded.clone())]));
        }

        let mut vector = round.aggregate(&set.clients).map_err(fail)?;
        let header = pb::AggregateShareHeader {
            descriptor_hash: hash_claim.0.to_vec(),
            round_id,
            helper_index: round.index as u32,
            inclusion_hash: inclusion_hash.0.to_vec(),
            vector_digest: Digest::of(contexts::AGGREGATE, &vector).0.to_vec(),
            ..Default::default()
        };
        let header = self
            .config
            .signer
            .sign(&header)
            .map_err(|e| fail(e.into()))?;
        // The shares are no longer needed (before the answer is encoded, so
        // that they and its copies are not in memory together).
        round.shares.clear();
        let mut message = pb::AggregateShare {
            header: Some(header),
            vector: std::mem::take(&mut *vector),
        };
        let encoded = SecretBytes::new(message.encode_to_vec());
        message.vector.zeroize();
        // The same set again (the coordinator lost the answer, or this
        // helper restarted before it left): the same sum, byte for byte,
        // with nothing new to record. A *different* set is refused. The
        // answer is kept for that.
        round.answer = AnswerState::Sent(encoded.clone());
        Ok(round.record_answer(envelope, inclusion_hash, repeat, send(encoded), true))
    }
}

impl Helper {
    /// The engine program's result for a round this helper is computing:
    /// signs the answer (program hash, outputs or failure) for the
    /// coordinator and keeps it to send again for the same set.
    fn on_engine(&mut self, result: EngineResult) -> Result<Step, Refusal> {
        let round_id = result.round;
        let Some(round) = self.rounds.get_mut(&round_id) else {
            return Err(refuse(None, HelperError::UnknownRound));
        };
        let fail = |e: HelperError| refuse(Some(round_id), e);
        let (Phase::Answered(inclusion_hash), AnswerState::Running) = (&round.phase, &round.answer)
        else {
            return Err(fail(HelperError::NoEngineComputation { round: round_id }));
        };
        let inclusion_hash = *inclusion_hash;
        let (vector, failure) = result.outcome.to_wire();
        let header = pb::AggregateShareHeader {
            descriptor_hash: round.descriptor.hash().0.to_vec(),
            round_id,
            helper_index: round.index as u32,
            inclusion_hash: inclusion_hash.0.to_vec(),
            vector_digest: Digest::of(contexts::AGGREGATE, &vector).0.to_vec(),
            program_hash: result.program_hash.to_vec(),
            engine_failure: failure,
        };
        let header = self
            .config
            .signer
            .sign(&header)
            .map_err(|e| fail(e.into()))?;
        let encoded = SecretBytes::new(
            pb::AggregateShare {
                header: Some(header),
                vector,
            }
            .encode_to_vec(),
        );
        round.answer = AnswerState::Sent(encoded.clone());
        Ok(Step {
            ends_round: true,
            ..Step::new(
                Some(round_id),
                vec![Action::Send {
                    to: self.config.coordinator,
                    round: round_id,
                    message: Message::AggregateShare(encoded),
                }],
            )
        })
    }
}

impl HelperRound {
    /// An engine round's inclusion set: records it as this round's one
    /// answer (before anything runs: the program's outputs are known to
    /// the helpers when it ends), then asks the runtime to run the program
    /// over exactly those clients' uploads. The same set again gets the
    /// signed answer again, or (after a restart, when none was kept) runs
    /// the program again over the same inputs, which reveals nothing new.
    fn engine_job(
        &mut self,
        envelope: &pb::SignedEnvelope,
        set: &pb::InclusionSet,
        inclusion_hash: Digest,
        repeat: bool,
        config: &HelperConfig,
    ) -> Result<Step, Refusal> {
        let round_id = self.descriptor.round_id();
        match &self.answer {
            AnswerState::Sent(answer) => {
                return Ok(Step::new(
                    Some(round_id),
                    vec![Action::Send {
                        to: config.coordinator,
                        round: round_id,
                        message: Message::AggregateShare(answer.clone()),
                    }],
                ));
            }
            AnswerState::Running => {
                return Err(refuse(
                    Some(round_id),
                    HelperError::EngineRunning { round: round_id },
                ));
            }
            AnswerState::Idle => {}
        }
        let mut uploads = Vec::with_capacity(set.clients.len());
        for &client in &set.clients {
            let (share, seed) = match self.shares.get(&client) {
                Some(StoredShare::Seed(seed)) => {
                    (SecretBytes::new(seed.expose_bytes().to_vec()), true)
                }
                Some(StoredShare::Vector(bytes)) => (bytes.clone(), false),
                None => {
                    return Err(refuse(
                        Some(round_id),
                        HelperError::UnreceivedClient {
                            round: round_id,
                            client,
                        },
                    ));
                }
            };
            let sketch = self.sketches.get(&client).cloned().ok_or_else(|| {
                refuse(
                    Some(round_id),
                    HelperError::UnreceivedClient {
                        round: round_id,
                        client,
                    },
                )
            })?;
            uploads.push(EngineUpload {
                client_index: client,
                share,
                seed,
                sketch,
            });
        }
        // The job holds what the program needs; the round keeps no shares.
        self.answer = AnswerState::Running;
        self.shares.clear();
        self.sketches.clear();
        let job = Action::Engine(Box::new(EngineJob {
            descriptor: self.descriptor.clone(),
            inclusion_hash,
            uploads,
        }));
        // The round ends with the program's answer (`Helper::on_engine`).
        Ok(self.record_answer(envelope, inclusion_hash, repeat, job, false))
    }

    /// The step that answers inclusion set `inclusion_hash` with `action`
    /// (the aggregate share, or the engine job that makes the answer): the
    /// first time, the set becomes the round's one answer, recorded durably
    /// before `action`; again (`repeat`), `action` alone.
    fn record_answer(
        &mut self,
        envelope: &pb::SignedEnvelope,
        inclusion_hash: Digest,
        repeat: bool,
        action: Action,
        ends_round: bool,
    ) -> Step {
        let round_id = self.descriptor.round_id();
        if repeat {
            return Step::new(Some(round_id), vec![action]);
        }
        self.phase = Phase::Answered(inclusion_hash);
        Step {
            accepted: vec![Artifact {
                kind: MessageKind::InclusionSet,
                round: round_id,
                envelope: envelope.clone(),
            }],
            ends_round,
            ..Step::new(
                Some(round_id),
                vec![
                    Action::Persist(Persist::HelperAnswer {
                        round_id,
                        inclusion_hash,
                    }),
                    action,
                ],
            )
        }
    }
}

fn decode_upload(bytes: &[u8], limit: usize) -> Result<pb::Upload, HelperError> {
    decode_limited::<pb::Upload>(bytes, limit).map_err(|e| HelperError::MalformedUpload {
        reason: e.to_string(),
    })
}

fn strictly_increasing(v: &[u32]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

impl HelperRound {
    fn bytes_in_memory(&self) -> usize {
        let shares: usize = self
            .shares
            .values()
            .map(|s| match s {
                StoredShare::Seed(_) => Seed::LEN,
                StoredShare::Vector(bytes) => bytes.len(),
            })
            .sum();
        let sketches: usize = self.sketches.values().map(SecretBytes::len).sum();
        let answer = match &self.answer {
            AnswerState::Sent(bytes) => bytes.len(),
            AnswerState::Idle | AnswerState::Running => 0,
        };
        shares + sketches + answer
    }

    /// When the round closes ([`Phase::Closed`]).
    fn closes_at(&self) -> Millis {
        self.descriptor.aggregation_deadline().plus(ANSWER_GRACE_MS)
    }

    /// Whether the round can close now that its time has come: not closed
    /// yet, and no engine program running on its inputs (it closes once the
    /// program's answer is in).
    fn closable(&self) -> bool {
        !matches!(self.phase, Phase::Closed) && !matches!(self.answer, AnswerState::Running)
    }

    /// Drops the round's shares and answer from memory: it answers nothing
    /// more.
    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.shares.clear();
        self.sketches.clear();
        self.answer = AnswerState::Idle;
    }

    /// The largest upload any client may send this helper in this round.
    fn max_upload_bytes(&self) -> usize {
        self.descriptor.vector_bytes() + UPLOAD_OVERHEAD
    }

    /// The exact bound on the upload `client` owes this helper.
    fn upload_bytes(&self, client: u32) -> usize {
        if self.expects_seed(client) {
            UPLOAD_OVERHEAD
        } else {
            self.max_upload_bytes()
        }
    }

    fn expects_seed(&self, client: u32) -> bool {
        match self.descriptor.mode() {
            Mode::Additive => {
                additive::correction_holder(client, self.descriptor.helpers().len()) != self.index
            }
            Mode::Threshold(params) => params.seeded_helpers(client).any(|h| h == self.index),
        }
    }

    /// Validates an upload from `from` in time; returns the client index and
    /// the share to store (the caller stores it once every signature is made).
    fn accept(
        &self,
        now: Millis,
        from: PartyId,
        upload: &mut pb::Upload,
    ) -> Result<(u32, StoredShare, Option<SecretBytes>), HelperError> {
        let round = self.descriptor.round_id();
        if now >= self.descriptor.upload_deadline() || !matches!(self.phase, Phase::Collecting) {
            return Err(HelperError::Late {
                round,
                client: self.descriptor.client_index(&from),
            });
        }
        let checked = self.check(from, upload)?;
        if self.shares.contains_key(&checked.0) {
            return Err(HelperError::DuplicateUpload {
                round,
                client: checked.0,
            });
        }
        Ok(checked)
    }

    /// An engine round's upload carries this helper's sketch shares (exactly
    /// 32 bytes, both elements canonical); any other round's carries none.
    fn check_sketch(
        &self,
        client: u32,
        upload: &pb::Upload,
    ) -> Result<Option<SecretBytes>, HelperError> {
        let round = self.descriptor.round_id();
        match (self.descriptor.engine(), upload.sketch.is_empty()) {
            (None, true) => Ok(None),
            (None, false) => Err(HelperError::MalformedUpload {
                reason: format!(
                    "round {round}, client {client}: a sketch in a round that runs no engine program"
                ),
            }),
            (Some(_), _) => match sealroom_mpc::client::decode_sketch(&upload.sketch) {
                Some(_) => Ok(Some(SecretBytes::new(upload.sketch.clone()))),
                None => Err(HelperError::MalformedUpload {
                    reason: format!(
                        "round {round}, client {client}: an engine round's upload needs {} bytes of canonical sketch shares, got {}",
                        sealroom_mpc::client::SKETCH_BYTES,
                        upload.sketch.len()
                    ),
                }),
            },
        }
    }

    /// A vector share is moved out of `upload` (not copied): the caller
    /// wipes what is left.
    fn check(
        &self,
        from: PartyId,
        upload: &mut pb::Upload,
    ) -> Result<(u32, StoredShare, Option<SecretBytes>), HelperError> {
        let round = self.descriptor.round_id();
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
        let sketch = self.check_sketch(client, upload)?;
        let expects_seed = self.expects_seed(client);
        let share = match (&mut upload.share, expects_seed) {
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
                let packing = self.descriptor.encoding().packing();
                let check = match self.descriptor.encoding().ring() {
                    RingKind::Z2_32 => vector::check_packed::<u32>(v, len, packing),
                    RingKind::Z2_64 => vector::check_packed::<u64>(v, len, packing),
                    RingKind::Fp61 => vector::check_le::<Fp>(v, len),
                };
                match check {
                    Ok(()) => StoredShare::Vector(SecretBytes::new(std::mem::take(v))),
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
        Ok((client, share, sketch))
    }

    /// The signed report of the clients held (with `plus`, about to be
    /// stored), without changing anything.
    fn report_with(
        &self,
        config: &HelperConfig,
        plus: Option<u32>,
    ) -> Result<pb::SignedEnvelope, SignerError> {
        let mut received: Vec<u32> = self.shares.keys().copied().chain(plus).collect();
        received.sort_unstable();
        received.dedup();
        config.signer.sign(&pb::HelperReport {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id: self.descriptor.round_id(),
            helper_index: self.index as u32,
            received,
        })
    }

    /// Moves to [`Phase::Reported`]: the report is persisted, then sent.
    fn reported(&mut self, config: &HelperConfig, report: pb::SignedEnvelope) -> [Action; 2] {
        let round_id = self.descriptor.round_id();
        self.phase = Phase::Reported(report.clone());
        [
            Action::Persist(Persist::HelperReport {
                round_id,
                report: report.clone(),
            }),
            Action::Send {
                to: config.coordinator,
                round: round_id,
                message: Message::Report(report),
            },
        ]
    }

    /// Checks an inclusion set against this round; `Ok(true)` when it is the
    /// very set this helper already answered (which it may answer again, with
    /// the same sum).
    fn check_inclusion(
        &self,
        set: &pb::InclusionSet,
        inclusion_hash: Digest,
    ) -> Result<bool, HelperError> {
        let round = self.descriptor.round_id();
        if set.round_id != round {
            return Err(HelperError::RoundMismatch { round });
        }
        match &self.phase {
            Phase::Answered(previous) if *previous == inclusion_hash => return Ok(true),
            Phase::Answered(_) => {
                return Err(HelperError::AlreadyAnswered {
                    round,
                    same_set: false,
                });
            }
            Phase::Collecting => return Err(HelperError::NotReported { round }),
            Phase::Closed => return Err(HelperError::AggregationClosed { round }),
            Phase::Reported(_) => {}
        }
        let malformed = |reason: &str| HelperError::MalformedInclusionSet {
            reason: format!("round {round}: {reason}"),
        };
        if !strictly_increasing(&set.helpers) || !strictly_increasing(&set.clients) {
            return Err(malformed("indices are not strictly increasing"));
        }
        let helpers = self.descriptor.helpers().len();
        if set.helpers.iter().any(|&h| h as usize >= helpers) {
            return Err(malformed("helper index out of range"));
        }
        if !set.helpers.contains(&(self.index as u32)) {
            return Err(HelperError::NotSelected { round });
        }
        let needed = self.descriptor.threshold();
        if set.helpers.len() < needed {
            return Err(HelperError::TooFewHelpers {
                round,
                selected: set.helpers.len(),
                needed,
            });
        }
        if set.clients.len() < self.descriptor.min_clients() {
            return Err(HelperError::InclusionTooSmall {
                round,
                size: set.clients.len(),
                min_clients: self.descriptor.min_clients(),
            });
        }
        if let Some(&missing) = set.clients.iter().find(|c| !self.shares.contains_key(c)) {
            return Err(HelperError::UnreceivedClient {
                round,
                client: missing,
            });
        }
        Ok(false)
    }

    /// Σ over `clients` of this helper's shares, packed little-endian (wiped
    /// when dropped).
    fn aggregate(&self, clients: &[u32]) -> Result<Zeroizing<Vec<u8>>, HelperError> {
        let packing = self.descriptor.encoding().packing();
        match (self.descriptor.mode(), self.descriptor.encoding().ring()) {
            (Mode::Threshold(_), _) => self.aggregate_in::<Fp>(
                clients,
                shamir::domain,
                vector::add_le_bytes_assign,
                vector::encode_le,
            ),
            (Mode::Additive, RingKind::Z2_32) => self.aggregate_in::<u32>(
                clients,
                additive::domain,
                |acc, bytes| vector::add_packed_assign(acc, bytes, packing),
                |acc| vector::encode_packed(acc, packing),
            ),
            (Mode::Additive, RingKind::Z2_64) => self.aggregate_in::<u64>(
                clients,
                additive::domain,
                |acc, bytes| vector::add_packed_assign(acc, bytes, packing),
                |acc| vector::encode_packed(acc, packing),
            ),
            (Mode::Additive, RingKind::Fp61) => self.aggregate_in::<Fp>(
                clients,
                additive::domain,
                vector::add_le_bytes_assign,
                vector::encode_le,
            ),
        }
    }

    /// Σ of the shares in `R`: seeds expanded at the ring's full width,
    /// vectors decoded with `add`; `encode` writes the sum at the round's
    /// share width (a narrowed round sends only the low bits, which is
    /// all the sum needs).
    fn aggregate_in<R: Ring>(
        &self,
        clients: &[u32],
        domain: fn([u8; 32], u32, usize) -> PrgDomain,
        add: impl Fn(&mut [R], &[u8]) -> Result<(), vector::DecodeError>,
        encode: impl Fn(&[R]) -> Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HelperError> {
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
                Some(StoredShare::Vector(bytes)) => add(acc.expose_mut(), bytes.expose())
                    .map_err(|_| HelperError::NonCanonicalShare { round, client })?,
                None => return Err(HelperError::UnreceivedClient { round, client }),
            }
        }
        Ok(Zeroizing::new(encode(acc.expose())))
    }
}

/// Why a helper refused a message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// An engine round's program is still running for this inclusion set:
    /// ask again later for its answer.
    #[error("round {round}: the engine computation for this inclusion set is still running; retry")]
    EngineRunning {
        /// Round id.
        round: u64,
    },
    /// An engine result for a round that is not computing one.
    #[error("round {round}: no engine computation is running")]
    NoEngineComputation {
        /// Round id.
        round: u64,
    },
    /// The descriptor was refused.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A signed envelope was refused.
    #[error("envelope refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// This helper's signer failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// A descriptor or inclusion set from someone other than the coordinator.
    #[error("a {kind} from {party}, who is not the coordinator")]
    WrongSender {
        /// The sender.
        party: PartyId,
        /// What it sent.
        kind: &'static str,
    },
    /// An upload that does not decode.
    #[error("malformed upload: {reason}")]
    MalformedUpload {
        /// What is wrong.
        reason: String,
    },
    /// A message for a round this helper no longer holds or never accepted.
    #[error("the round is unknown to this helper or closed")]
    UnknownRound,
    /// An upload for a round this helper has not heard of yet (its
    /// descriptor may still be on the way): retry shortly.
    #[error("round not yet known to this helper; retry")]
    NotYetKnown,
    /// A message whose round id or descriptor hash belongs to another round.
    #[error("message does not belong to round {round}: round id and descriptor hash disagree")]
    RoundMismatch {
        /// The round the descriptor hash names.
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
    #[error("round {round}: upload arrived after the window closed")]
    Late {
        /// Round id.
        round: u64,
        /// The sender's client index, if it is a client of the round.
        client: Option<u32>,
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
    #[error("malformed inclusion set: {reason}")]
    MalformedInclusionSet {
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
    /// An inclusion set after the round closed, [`ANSWER_GRACE_MS`] past its
    /// aggregation deadline (the coordinator no longer waits for answers).
    #[error(
        "round {round}: the aggregation window has closed; this helper answers no inclusion set for it"
    )]
    AggregationClosed {
        /// Round id.
        round: u64,
    },
    /// An inclusion set before this helper reported its received set.
    #[error("round {round}: inclusion set arrived before this helper reported")]
    NotReported {
        /// Round id.
        round: u64,
    },
}

impl HelperError {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            HelperError::Descriptor(e) => e.code(),
            HelperError::Envelope(_) => RefusalCode::BadSignature,
            HelperError::Signer(_) => RefusalCode::SigningFailed,
            HelperError::WrongSender { .. } => RefusalCode::WrongSender,
            HelperError::MalformedUpload { .. } => RefusalCode::Malformed,
            HelperError::UnknownRound => RefusalCode::UnknownRound,
            HelperError::NotYetKnown => RefusalCode::RoundNotYetKnown,
            HelperError::RoundMismatch { .. } => RefusalCode::RoundMismatch,
            HelperError::NotAParticipant { .. } => RefusalCode::NotAParticipant,
            HelperError::ClientIndexMismatch { .. } => RefusalCode::Malformed,
            HelperError::Late { .. } => RefusalCode::Late,
            HelperError::DuplicateUpload { .. } => RefusalCode::Duplicate,
            HelperError::WrongShareKind { .. } => RefusalCode::WrongShareKind,
            HelperError::ShareLength { .. } => RefusalCode::ShareLength,
            HelperError::NonCanonicalShare { .. } => RefusalCode::NonCanonical,
            HelperError::MalformedInclusionSet { .. }
            | HelperError::TooFewHelpers { .. }
            | HelperError::InclusionTooSmall { .. }
            | HelperError::UnreceivedClient { .. } => RefusalCode::InclusionInvalid,
            HelperError::NotSelected { .. } => RefusalCode::NotSelected,
            HelperError::AlreadyAnswered { .. } => RefusalCode::AlreadyAnswered,
            HelperError::NotReported { .. } => RefusalCode::NotReported,
            HelperError::AggregationClosed { .. } => RefusalCode::Late,
            HelperError::EngineRunning { .. } => RefusalCode::RoundRunning,
            HelperError::NoEngineComputation { .. } => RefusalCode::Unexpected,
        }
    }
}
