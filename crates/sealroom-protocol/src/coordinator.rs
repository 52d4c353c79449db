//! The coordinator role (DESIGN.md §2 steps 1, 4 and 6): issues signed
//! descriptors, gathers the helpers' reports, signs the inclusion set,
//! reconstructs from the helpers' aggregate shares, and publishes a signed
//! [`pb::RoundResult`] — or a signed [`pb::AbortRecord`] that says why
//! nothing was released. It never sees an individual input.
//!
//! Fail closed: every path that cannot meet the round's contract (too few
//! clients, a helper missing, inconsistent shares, a deadline, a threshold
//! release that could not be checked) ends in an abort record, never in a
//! partial or unchecked result.
//!
//! A round is a value that each event consumes ([`CoordinatorRound::handle`]
//! returns it back, or its [`Outcome`]): a finished round no longer exists
//! and cannot take input. Its phase is an enum: reports are gathered, then
//! answers to the one inclusion set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sealroom_core::vector;
use sealroom_core::{Fp, QuantSpec, RingKind, SharingError};

use crate::action::{Action, Message, MessageKind, Persist, SecretBytes};
use crate::descriptor::{DescriptorError, DescriptorParams, EngineRef, Mode, VerifiedDescriptor};
use crate::envelope::{
    EnvelopeError, MAX_SIGNED_BODY, PartyKeys, SharedSigner, SignerError, SignerExt as _,
    decode_limited,
};
use crate::ids::{Digest, Millis, PartyId, contexts};
use crate::machine::{
    Artifact, Inbound, Input, Machine, Refusal, RefusalCode, SitOut, Start, Step, not_for,
};
use crate::pb;
use crate::pb::AbortReason;

/// Derive-key context of a result's sum digest.
pub const SUM_DIGEST_CONTEXT: &str = "sealroom 2026-11 result sum v1";
/// Largest sit-out notice decoded.
const MAX_SIT_OUT_BYTES: usize = 256;

/// The coordinator's fixed configuration: the federation's policy.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Federation id.
    pub federation_id: String,
    /// Signs descriptors, inclusion sets and results.
    pub signer: SharedSigner,
    /// Key epoch the signing key is valid for.
    pub epoch: u64,
    /// Helpers with their signing keys; position = helper index.
    pub helpers: Vec<(PartyId, PartyKeys)>,
    /// `Some(t)` for Shamir t-of-h, `None` for additive.
    pub threshold: Option<usize>,
    /// Smallest releasable inclusion set.
    pub min_clients: usize,
    /// How long clients may upload.
    pub upload_window_ms: u64,
    /// How long after the upload window helpers have to report and answer.
    pub aggregation_window_ms: u64,
    /// Threshold mode: whether a sum reconstructed from exactly `t` answers
    /// (so unchecked: a wrong share from one helper cannot be detected) may
    /// be released, marked `unverified` in the signed result. Off by
    /// default: such a round aborts instead.
    pub allow_unverified: bool,
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
    /// An engine round: the helpers run this program instead of summing
    /// (additive mode, three helpers).
    pub engine: Option<EngineRef>,
}

/// The shortest aggregation window of an engine round: the helpers
/// preprocess and run the program inside it.
pub const ENGINE_AGGREGATION_WINDOW_MS: u64 = 120_000;

/// The most outputs an engine round's answer may carry beyond the round's
/// vector length.
pub const ENGINE_EXTRA_OUTPUTS: usize = 4096;

/// The coordinator across rounds: owns the round-id counter and the round
/// under way (one at a time).
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    next_round_id: u64,
    round: Option<CoordinatorRound>,
}

impl Machine for Coordinator {
    fn handle(&mut self, now: Millis, input: Input) -> Result<Step, Refusal> {
        let event = match input {
            Input::Start(start) => return self.start(now, start),
            Input::Inbound {
                from,
                msg: Inbound::Report(env),
            } => Event::Report(from, env),
            Input::Inbound {
                from,
                msg: Inbound::AggregateShare(bytes),
            } => Event::Answer(from, bytes),
            Input::Inbound {
                from,
                msg: Inbound::SitOut(bytes),
            } => Event::SitOut(from, bytes),
            Input::Timer => Event::Timer,
            other => return Err(not_for("coordinator", &other)),
        };
        let Some(round) = self.round.take() else {
            if matches!(event, Event::Timer) {
                // A timer with no round running has nothing to do.
                return Ok(Step::default());
            }
            let error = CoordinatorError::NoRound;
            return Err(Refusal {
                round: None,
                code: error.code(),
                error: Box::new(error.into()),
            });
        };
        let round_id = round.descriptor.round_id();
        match round.handle(now, event) {
            Ok(RoundStep::Continue(round, step)) => {
                self.round = Some(*round);
                Ok(step)
            }
            Ok(RoundStep::Finish(outcome, mut step)) => {
                step.outcome = Some(*outcome);
                step.ends_round = true;
                Ok(step)
            }
            Err((round, error)) => {
                self.round = Some(*round);
                Err(Refusal {
                    round: Some(round_id),
                    code: error.code(),
                    error: Box::new(error.into()),
                })
            }
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.round.as_ref().map(CoordinatorRound::next_deadline)
    }
}

impl Coordinator {
    /// A coordinator whose next round id is `next_round_id` (one above the
    /// last one it persisted).
    pub fn new(config: CoordinatorConfig, next_round_id: u64) -> Coordinator {
        Coordinator {
            config,
            next_round_id: next_round_id.max(1),
            round: None,
        }
    }

    /// Switches to a new signing key for rounds started from now on, at
    /// key epoch `epoch` (a key rotation). A round under way finishes under
    /// the key and epoch it began with (its receivers trust the replaced key
    /// for the epochs before `epoch`).
    pub fn set_signer(&mut self, signer: SharedSigner, epoch: u64) {
        self.config.signer = signer;
        self.config.epoch = epoch;
    }

    /// Replaces the helpers' keys (a helper's key rotation or retirement,
    /// reloaded from the federation's file), for the round under way too:
    /// a helper that switched keys mid-round signs its report and answer
    /// with the new one, and a retired key is refused at once. Helpers are
    /// matched by identity; the helper set itself never changes here.
    pub fn set_helper_keys(&mut self, keys: &BTreeMap<PartyId, PartyKeys>) {
        let update = |list: &mut Vec<(PartyId, PartyKeys)>| {
            for (id, k) in list {
                if let Some(new) = keys.get(id) {
                    *k = *new;
                }
            }
        };
        update(&mut self.config.helpers);
        if let Some(round) = &mut self.round {
            update(&mut round.helper_keys);
        }
    }

    /// The key epoch of the rounds it starts.
    pub fn epoch(&self) -> u64 {
        self.config.epoch
    }

    /// The id the next round will get.
    pub fn next_round_id(&self) -> u64 {
        self.next_round_id
    }

    /// The round under way, if any.
    pub fn round(&self) -> Option<&CoordinatorRound> {
        self.round.as_ref()
    }

    /// Issues a round of `start.task` over `start.clients`. The descriptor is
    /// validated exactly as its receivers will validate it (including the
    /// headroom check), so a round that could overflow or break policy is
    /// refused here.
    fn start(&mut self, now: Millis, start: Start) -> Result<Step, Refusal> {
        let refuse = |error: CoordinatorError| Refusal {
            round: None,
            code: error.code(),
            error: Box::new(error.into()),
        };
        if let Some(round) = &self.round {
            return Err(refuse(CoordinatorError::RoundRunning {
                round: round.descriptor.round_id(),
            }));
        }
        let round_id = self.next_round_id;
        let task = start.task;
        // A sum travels at the narrowest width its headroom check admits
        // for these clients (docs/protocol.md, "Narrow shares").
        let share_bits = match (&task.engine, self.config.threshold) {
            (None, None) => {
                DescriptorParams::narrowest_share_bits(task.ring, start.clients.len(), task.spec)
            }
            _ => None,
        };
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
            clients: start.clients,
            helpers: self.config.helpers.iter().map(|(id, _)| *id).collect(),
            min_clients: task
                .min_clients
                .map_or(self.config.min_clients, |m| m.max(self.config.min_clients)),
            issued_at: now,
            upload_window_ms: self.config.upload_window_ms,
            aggregation_window_ms: if task.engine.is_some() {
                self.config
                    .aggregation_window_ms
                    .max(ENGINE_AGGREGATION_WINDOW_MS)
            } else {
                self.config.aggregation_window_ms
            },
            nonce: start.nonce,
            engine: task.engine,
            share_bits,
        }
        .sign(self.config.signer.as_ref())
        .map_err(|e| refuse(e.into()))?;
        self.next_round_id += 1;

        let mut actions = vec![Action::Persist(Persist::CoordinatorRound { round_id })];
        let shared = Arc::new(descriptor.envelope().clone());
        for to in descriptor.helpers().iter().chain(descriptor.clients()) {
            actions.push(Action::Send {
                to: *to,
                round: round_id,
                message: Message::Descriptor(Arc::clone(&shared)),
            });
        }
        self.round = Some(CoordinatorRound {
            report_deadline: descriptor
                .upload_deadline()
                .plus(self.config.aggregation_window_ms / 2),
            descriptor,
            signer: self.config.signer.clone(),
            helper_keys: self.config.helpers.clone(),
            allow_unverified: self.config.allow_unverified,
            sat_out: BTreeMap::new(),
            phase: Phase::Reporting {
                reports: BTreeMap::new(),
            },
        });
        Ok(Step::new(Some(round_id), actions))
    }
}

/// The outcome of a round.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The sum was released.
    Completed(Box<RoundSummary>),
    /// Nothing was released.
    Aborted(Box<AbortSummary>),
}

impl Outcome {
    /// The signed record to publish and log.
    pub fn record(&self) -> &pb::SignedEnvelope {
        match self {
            Outcome::Completed(s) => &s.result,
            Outcome::Aborted(a) => &a.record,
        }
    }

    /// The round.
    pub fn round_id(&self) -> u64 {
        match self {
            Outcome::Completed(s) => s.round_id,
            Outcome::Aborted(a) => a.round_id,
        }
    }
}

/// A completed round.
#[derive(Clone, Debug)]
pub struct RoundSummary {
    /// Round id.
    pub round_id: u64,
    /// The signed result (it signs a digest of `sum`).
    pub result: pb::SignedEnvelope,
    /// Client indices whose inputs are in the sum.
    pub included: Vec<u32>,
    /// Helpers whose shares were used.
    pub answering_helpers: Vec<u32>,
    /// The exact sum of the included clients' quantized inputs.
    pub sum: Vec<i64>,
    /// The sum dequantized (exact: the headroom check guarantees it).
    /// Engine rounds: empty (see `outputs`).
    pub values: Vec<f64>,
    /// Engine rounds: the program's verified outputs, identical in every
    /// helper's signed answer (empty for a sum).
    pub outputs: Vec<i128>,
    /// Threshold mode: released from exactly `t` answers, unchecked (only
    /// when the federation's policy allows it).
    pub unverified: bool,
    /// Why the clients that sat out did so.
    pub sat_out: Vec<pb::SitOutCount>,
    /// The round's signed descriptor.
    pub descriptor: pb::SignedEnvelope,
    /// The signed inclusion set the helpers answered.
    pub inclusion_set: pb::SignedEnvelope,
    /// The answers the sum was reconstructed from: evidence a later phase
    /// of the same task can hand its clients, so that each re-derives this
    /// sum from the helpers' signatures instead of trusting the coordinator.
    /// (Shares of the released aggregate only: together they reveal that
    /// aggregate and nothing else.)
    pub answers: Vec<AnswerEvidence>,
}

impl RoundSummary {
    /// The evidence of this release, for a later phase's clients to
    /// re-derive the sum from (see [`crate::evidence`]).
    pub fn evidence(&self) -> pb::ReleaseEvidence {
        crate::evidence::build(
            &self.descriptor,
            &self.inclusion_set,
            &self.result,
            self.answers
                .iter()
                .map(|a| (a.header.clone(), a.vector.expose().to_vec())),
        )
    }
}

/// What a completed round releases.
enum Released {
    /// A sum round: the exact sum and its dequantized values.
    Sum {
        sum: Vec<i64>,
        values: Vec<f64>,
        unverified: bool,
    },
    /// An engine round: the program's verified outputs.
    Outputs(Vec<i128>),
}

/// One helper's signed answer, as evidence of a released sum.
#[derive(Clone, Debug)]
pub struct AnswerEvidence {
    /// Helper index.
    pub helper: u32,
    /// The signed [`pb::AggregateShareHeader`].
    pub header: pb::SignedEnvelope,
    /// The aggregate share vector the header signs a digest of.
    pub vector: SecretBytes,
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
    /// Why the clients that sat out did so.
    pub sat_out: Vec<pb::SitOutCount>,
    /// Engine rounds: the clients whose uploads failed the sketch check,
    /// as a majority of the helpers name them (signed in the record).
    pub excluded_clients: Vec<u32>,
}

/// The client indices that more than half of a round's `helpers` name,
/// identically, in a signed `clients_excluded` engine failure: the honest
/// helpers run the same sketch check on the same uploads and agree, so one
/// corrupted helper can neither add a client to the set nor remove one.
/// Empty when no set has a majority.
fn majority_exclusion(
    headers: &BTreeMap<u32, pb::AggregateShareHeader>,
    helpers: usize,
) -> Vec<u32> {
    let mut votes: BTreeMap<Vec<u32>, usize> = BTreeMap::new();
    for h in headers.values() {
        if let Some(f) = &h.engine_failure
            && f.code == "clients_excluded"
            && !f.excluded_clients.is_empty()
        {
            let mut set = f.excluded_clients.clone();
            set.sort_unstable();
            set.dedup();
            *votes.entry(set).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .find(|(_, n)| 2 * n > helpers)
        .map(|(set, _)| set)
        .unwrap_or_default()
}

/// Keeps an abort record within [`MAX_SIGNED_BODY`], the limit every
/// verifier of a signed message applies (helpers, clients, audit logs): an
/// abort must always be signable and verifiable, whatever the round's size.
/// The evidence is what can grow past it (16 helper reports naming 100,000
/// clients each are about 4.5 MiB), so the largest reports go first (answer
/// headers, which carry the blame of a consistency failure, are small and
/// stay), then, if clients gave very many distinct sit-out subjects, the
/// least common of those; the detail says what was left out.
fn fit_abort_record(record: &mut pb::AbortRecord) {
    use prost::Message as _;
    if record.encoded_len() <= MAX_SIGNED_BODY {
        return;
    }
    let (evidence, sat_out) = (record.evidence.len(), record.sat_out.len());
    // Room for the note added below.
    let limit = MAX_SIGNED_BODY - 1024;
    while record.encoded_len() > limit {
        let largest = (0..record.evidence.len()).max_by_key(|&i| record.evidence[i].encoded_len());
        match largest {
            Some(i) => {
                record.evidence.remove(i);
            }
            None => break,
        }
    }
    let mut size = record.encoded_len();
    if size > limit {
        record.sat_out.sort_by_key(|c| std::cmp::Reverse(c.clients));
        // What a count takes in the record: itself, a tag and (at least) a
        // one-byte length; the estimate never falls below the real size.
        while size > limit
            && let Some(count) = record.sat_out.pop()
        {
            size -= count.encoded_len() + 2;
        }
    }
    // The detail lists sit-out reasons too: cut to its first 4 KiB.
    if record.encoded_len() > limit {
        let mut end = record.detail.len().min(4096);
        while !record.detail.is_char_boundary(end) {
            end -= 1;
        }
        record.detail.truncate(end);
        record.detail.push('…');
    }
    record.detail = format!(
        "{} ({} of {evidence} signed messages and {} of {sat_out} sit-out reasons left out of this \
         record to keep it within {MAX_SIGNED_BODY} bytes)",
        record.detail,
        evidence - record.evidence.len(),
        sat_out - record.sat_out.len(),
    );
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

type Reports = BTreeMap<usize, (Vec<u32>, pb::SignedEnvelope)>;

/// Where a round stands.
#[derive(Debug)]
enum Phase {
    /// Gathering the helpers' reports.
    Reporting { reports: Reports },
    /// The inclusion set is out; gathering the answers.
    Answering {
        reports: Reports,
        inclusion: Inclusion,
        answers: BTreeMap<usize, Answer>,
    },
}

/// What happens to a round.
#[derive(Debug)]
enum Event {
    Report(PartyId, pb::SignedEnvelope),
    Answer(PartyId, SecretBytes),
    SitOut(PartyId, Vec<u8>),
    Timer,
}

/// A round after an event.
#[derive(Debug)]
enum RoundStep {
    /// Still running.
    Continue(Box<CoordinatorRound>, Step),
    /// Finished: the round is gone.
    Finish(Box<Outcome>, Step),
}

type RoundResult = Result<RoundStep, (Box<CoordinatorRound>, CoordinatorError)>;

/// One round from the coordinator's side.
#[derive(Debug)]
pub struct CoordinatorRound {
    descriptor: VerifiedDescriptor,
    signer: SharedSigner,
    helper_keys: Vec<(PartyId, PartyKeys)>,
    report_deadline: Millis,
    allow_unverified: bool,
    sat_out: BTreeMap<u32, SitOut>,
    phase: Phase,
}

impl CoordinatorRound {
    /// The round's descriptor.
    pub fn descriptor(&self) -> &VerifiedDescriptor {
        &self.descriptor
    }

    /// The signed inclusion set, once decided.
    pub fn inclusion_set(&self) -> Option<&pb::SignedEnvelope> {
        match &self.phase {
            Phase::Answering { inclusion, .. } => Some(&inclusion.envelope),
            Phase::Reporting { .. } => None,
        }
    }

    /// Helpers that have reported, and (once the inclusion set is out) those
    /// asked to answer that have not: what a runtime re-offers a helper that
    /// reconnects.
    pub fn awaited_answers(&self) -> Vec<PartyId> {
        match &self.phase {
            Phase::Answering {
                inclusion, answers, ..
            } => inclusion
                .helpers
                .iter()
                .filter(|h| !answers.contains_key(&(**h as usize)))
                .filter_map(|h| self.descriptor.helpers().get(*h as usize).copied())
                .collect(),
            Phase::Reporting { .. } => Vec::new(),
        }
    }

    /// When [`Input::Timer`] next has something to do.
    pub fn next_deadline(&self) -> Millis {
        match self.phase {
            Phase::Reporting { .. } => self.report_deadline,
            Phase::Answering { .. } => self.descriptor.aggregation_deadline(),
        }
    }

    fn handle(self, now: Millis, event: Event) -> RoundResult {
        match event {
            Event::Report(from, env) => self.on_report(from, &env),
            Event::Answer(from, bytes) => self.on_aggregate(from, bytes),
            Event::SitOut(from, bytes) => self.on_sit_out(from, &bytes),
            Event::Timer => self.on_timer(now),
        }
    }

    fn helper(&self, from: &PartyId) -> Result<(usize, PartyKeys), CoordinatorError> {
        let round = self.descriptor.round_id();
        let index = self
            .descriptor
            .helper_index(from)
            .ok_or(CoordinatorError::NotAHelper {
                round,
                party: *from,
            })?;
        let key =
            self.helper_keys
                .get(index)
                .map(|(_, k)| *k)
                .ok_or(CoordinatorError::NotAHelper {
                    round,
                    party: *from,
                })?;
        Ok((index, key))
    }

    /// A helper's signed report of the clients whose shares it holds.
    fn on_report(self, from: PartyId, envelope: &pb::SignedEnvelope) -> RoundResult {
        let checked = self.check_report(from, envelope);
        let (index, received) = match checked {
            Ok(v) => v,
            Err(e) => return Err((Box::new(self), e)),
        };
        let round = self.descriptor.round_id();
        let (reports, answering) = match &self.phase {
            Phase::Reporting { reports } => (reports, false),
            Phase::Answering { reports, .. } => (reports, true),
        };
        if let Some((previous, _)) = reports.get(&index) {
            // The same report again (a restarted helper re-sends it) is not news.
            return if previous == &received {
                Ok(RoundStep::Continue(
                    Box::new(self),
                    Step::new(Some(round), Vec::new()),
                ))
            } else {
                Err((
                    Box::new(self),
                    CoordinatorError::ConflictingReport {
                        round,
                        helper: index,
                    },
                ))
            };
        }
        if answering {
            return Err((
                Box::new(self),
                CoordinatorError::TooLate {
                    round,
                    helper: index,
                },
            ));
        }
        let mut this = self;
        let all = {
            let Phase::Reporting { reports } = &mut this.phase else {
                unreachable!("checked above: the round is gathering reports")
            };
            reports.insert(index, (received, envelope.clone()));
            reports.len() == this.descriptor.helpers().len()
        };
        let artifact = Artifact {
            kind: MessageKind::Report,
            round,
            envelope: envelope.clone(),
        };
        let mut step = if all {
            this.decide()
        } else {
            Ok(RoundStep::Continue(
                Box::new(this),
                Step::new(Some(round), Vec::new()),
            ))
        }?;
        match &mut step {
            RoundStep::Continue(_, s) | RoundStep::Finish(_, s) => s.accepted.insert(0, artifact),
        }
        Ok(step)
    }

    fn check_report(
        &self,
        from: PartyId,
        envelope: &pb::SignedEnvelope,
    ) -> Result<(usize, Vec<u32>), CoordinatorError> {
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
        Ok((index, report.received.clone()))
    }

    fn check_binding(
        &self,
        descriptor_hash: &[u8],
        round_id: u64,
        helper_index: u32,
        index: usize,
    ) -> Result<(), CoordinatorError> {
        let round = self.descriptor.round_id();
        // A helper's signed message of an earlier round: what a restarted
        // helper re-sends when it does not know that round is over. Not an
        // attack and not a mix-up: say so.
        if round_id < round {
            return Err(CoordinatorError::RoundOver {
                round,
                helper: index,
                claimed: round_id,
            });
        }
        if descriptor_hash != self.descriptor.hash().0 || round_id != round {
            return Err(CoordinatorError::WrongRound {
                round,
                helper: index,
                claimed: round_id,
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

    /// A client's notice that it sits the round out, and why. Once too many
    /// clients have for `min_clients` to be reached, the round aborts at
    /// once, with their reasons, instead of waiting for its deadlines.
    fn on_sit_out(mut self, from: PartyId, bytes: &[u8]) -> RoundResult {
        let round = self.descriptor.round_id();
        let parsed = (|| {
            let client = self
                .descriptor
                .client_index(&from)
                .ok_or(CoordinatorError::NotAClient { round, party: from })?;
            let notice: pb::SitOut = decode_limited(bytes, MAX_SIT_OUT_BYTES).map_err(|e| {
                CoordinatorError::MalformedSitOut {
                    round,
                    reason: e.to_string(),
                }
            })?;
            if notice.descriptor_hash != self.descriptor.hash().0 || notice.round_id != round {
                return Err(CoordinatorError::MalformedSitOut {
                    round,
                    reason: "bound to another round".into(),
                });
            }
            let reason = pb::SitOutReason::try_from(notice.reason)
                .ok()
                .filter(|r| *r != pb::SitOutReason::Unspecified)
                .ok_or_else(|| CoordinatorError::MalformedSitOut {
                    round,
                    reason: format!("unknown reason {}", notice.reason),
                })?;
            Ok((client, SitOut::new(reason, &notice.subject)))
        })();
        let (client, sit_out) = match parsed {
            Ok(v) => v,
            Err(e) => return Err((Box::new(self), e)),
        };
        match self.sat_out.get(&client) {
            Some(known) if *known == sit_out => {
                return Ok(RoundStep::Continue(
                    Box::new(self),
                    Step::new(Some(round), Vec::new()),
                ));
            }
            Some(_) => {
                return Err((
                    Box::new(self),
                    CoordinatorError::ConflictingSitOut { round, client },
                ));
            }
            None => {}
        }
        if matches!(self.phase, Phase::Answering { .. }) {
            return Err((Box::new(self), CoordinatorError::SitOutTooLate { round }));
        }
        self.sat_out.insert(client, sit_out);
        let n = self.descriptor.clients().len();
        if n - self.sat_out.len() < self.descriptor.min_clients() {
            let detail = format!(
                "{} of {n} clients sat the round out ({}); min_clients {} cannot be reached",
                self.sat_out.len(),
                describe_sit_outs(&self.sit_out_counts()),
                self.descriptor.min_clients(),
            );
            return self.abort(
                AbortReason::NotEnoughClients,
                detail,
                Vec::new(),
                Vec::new(),
                0,
            );
        }
        Ok(RoundStep::Continue(
            Box::new(self),
            Step::new(Some(round), Vec::new()),
        ))
    }

    /// The clients' reasons, counted.
    fn sit_out_counts(&self) -> Vec<pb::SitOutCount> {
        let mut counts: BTreeMap<(i32, &str), u32> = BTreeMap::new();
        for s in self.sat_out.values() {
            *counts.entry((s.reason as i32, &s.subject)).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((reason, subject), clients)| pb::SitOutCount {
                reason,
                subject: subject.to_string(),
                clients,
            })
            .collect()
    }

    /// Time passed: decide the inclusion set once the report deadline is
    /// reached, or finish once the aggregation deadline is.
    fn on_timer(self, now: Millis) -> RoundResult {
        match self.phase {
            Phase::Reporting { .. } if now >= self.report_deadline => self.decide(),
            Phase::Answering { .. } if now >= self.descriptor.aggregation_deadline() => {
                self.finish()
            }
            _ => Ok(RoundStep::Continue(
                Box::new(self),
                Step::new(None, Vec::new()),
            )),
        }
    }

    /// Picks the helpers that answer and the clients they all hold; aborts if
    /// that cannot reach `min_clients` or enough helpers.
    ///
    /// Threshold mode: when at least `t + 1` helpers reported, at least
    /// `t + 1` are asked — the client set shrinks rather than the helper set
    /// — so that the answers can be checked against each other before
    /// anything is released.
    fn decide(self) -> RoundResult {
        let Phase::Reporting { reports } = &self.phase else {
            return Ok(RoundStep::Continue(
                Box::new(self),
                Step::new(None, Vec::new()),
            ));
        };
        let h = self.descriptor.helpers().len();
        let t = self.descriptor.threshold();
        let missing: Vec<u32> = (0..h)
            .filter(|i| !reports.contains_key(i))
            .map(|i| i as u32)
            .collect();
        let candidates: Vec<usize> = reports.keys().copied().collect();
        let chosen = match self.descriptor.mode() {
            Mode::Additive if !missing.is_empty() => {
                let detail = format!(
                    "helper(s) {missing:?} did not report before the deadline; additive mode needs every helper"
                );
                return self.abort(AbortReason::HelperMissing, detail, missing, Vec::new(), 0);
            }
            Mode::Additive => best_helper_set(reports, &candidates, h),
            Mode::Threshold(_) if candidates.len() < t => {
                let detail = format!(
                    "only {} helper(s) reported, {t} needed; missing {missing:?}",
                    candidates.len()
                );
                return self.abort(AbortReason::Deadline, detail, missing, Vec::new(), 0);
            }
            Mode::Threshold(_) if candidates.len() == t && !self.allow_unverified => {
                let detail = format!(
                    "only {t} helper(s) reported (missing {missing:?}): a release needs {} answers so that a wrong share can be detected, and this federation does not allow unverified releases",
                    t + 1
                );
                return self.abort(AbortReason::Unverifiable, detail, missing, Vec::new(), 0);
            }
            Mode::Threshold(_) => {
                let redundant = (t + 1).min(candidates.len());
                best_helper_set(reports, &candidates, redundant)
            }
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
        let round_id = self.descriptor.round_id();
        let set = pb::InclusionSet {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id,
            clients: clients.clone(),
            helpers: helpers.clone(),
        };
        let envelope = match self.signer.sign(&set) {
            Ok(env) => env,
            Err(e) => return Err((Box::new(self), e.into())),
        };
        let hash = Digest::of(contexts::INCLUSION, &envelope.body);
        let mut actions = vec![Action::Persist(Persist::CoordinatorInclusion {
            round_id,
            inclusion_set: envelope.clone(),
        })];
        for &j in &helpers {
            if let Some(to) = self.descriptor.helpers().get(j as usize) {
                actions.push(Action::Send {
                    to: *to,
                    round: round_id,
                    message: Message::InclusionSet(envelope.clone()),
                });
            }
        }
        let mut this = self;
        let Phase::Reporting { reports } = std::mem::replace(
            &mut this.phase,
            Phase::Reporting {
                reports: BTreeMap::new(),
            },
        ) else {
            unreachable!("matched above")
        };
        this.phase = Phase::Answering {
            reports,
            inclusion: Inclusion {
                envelope,
                hash,
                clients,
                helpers,
            },
            answers: BTreeMap::new(),
        };
        Ok(RoundStep::Continue(
            Box::new(this),
            Step::new(Some(round_id), actions),
        ))
    }

    /// A helper's aggregate share: a signed header and the vector it digests.
    fn on_aggregate(self, from: PartyId, bytes: SecretBytes) -> RoundResult {
        let round = self.descriptor.round_id();
        let checked = self.check_answer(from, &bytes);
        let (index, answer) = match checked {
            Ok(v) => v,
            Err(e) => return Err((Box::new(self), e)),
        };
        let Phase::Answering {
            answers, inclusion, ..
        } = &self.phase
        else {
            unreachable!("check_answer refuses answers before the inclusion set")
        };
        if let Some(previous) = answers.get(&index) {
            return if previous.vector.ct_eq(&answer.vector) {
                Ok(RoundStep::Continue(
                    Box::new(self),
                    Step::new(Some(round), Vec::new()),
                ))
            } else {
                Err((
                    Box::new(self),
                    CoordinatorError::ConflictingReport {
                        round,
                        helper: index,
                    },
                ))
            };
        }
        let all = answers.len() + 1 == inclusion.helpers.len();
        let mut this = self;
        if let Phase::Answering { answers, .. } = &mut this.phase {
            answers.insert(index, answer);
        }
        if all {
            this.finish()
        } else {
            Ok(RoundStep::Continue(
                Box::new(this),
                Step::new(Some(round), Vec::new()),
            ))
        }
    }

    fn check_answer(
        &self,
        from: PartyId,
        bytes: &SecretBytes,
    ) -> Result<(usize, Answer), CoordinatorError> {
        let round = self.descriptor.round_id();
        let (index, key) = self.helper(&from)?;
        let Phase::Answering { inclusion, .. } = &self.phase else {
            return Err(CoordinatorError::Unexpected {
                round,
                helper: index,
            });
        };
        let limit = if self.descriptor.engine().is_some() {
            (self.descriptor.vector_len() + ENGINE_EXTRA_OUTPUTS) * 16 + 4096
        } else {
            self.descriptor.vector_bytes() + 2048
        };
        let mut message: pb::AggregateShare =
            decode_limited(bytes.expose(), limit).map_err(|e| {
                CoordinatorError::MalformedMessage {
                    round,
                    helper: index,
                    reason: e.to_string(),
                }
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
        if self.descriptor.engine().is_some() {
            let malformed = |reason: String| CoordinatorError::MalformedMessage {
                round,
                helper: index,
                reason,
            };
            let max = len.saturating_add(ENGINE_EXTRA_OUTPUTS);
            if !vector.len().is_multiple_of(16) || vector.len() / 16 > max {
                return Err(malformed(format!(
                    "engine outputs of {} bytes (whole i128 values, at most {max})",
                    vector.len()
                )));
            }
            if header.program_hash.len() != 32 {
                return Err(malformed(
                    "engine answer without a 32-byte program hash".into(),
                ));
            }
            if header.engine_failure.is_some() && !vector.is_empty() {
                return Err(malformed(
                    "engine answer with both outputs and a failure".into(),
                ));
            }
            return Ok((
                index,
                Answer {
                    header: header_env,
                    vector,
                },
            ));
        }
        let packing = self.descriptor.encoding().packing();
        let valid = match self.descriptor.encoding().ring() {
            RingKind::Z2_32 => vector::check_packed::<u32>(vector.expose(), len, packing),
            RingKind::Z2_64 => vector::check_packed::<u64>(vector.expose(), len, packing),
            RingKind::Fp61 => vector::check_le::<Fp>(vector.expose(), len),
        };
        valid.map_err(|e| CoordinatorError::MalformedMessage {
            round,
            helper: index,
            reason: e.to_string(),
        })?;
        Ok((
            index,
            Answer {
                header: header_env,
                vector,
            },
        ))
    }

    /// Reconstructs from the answers in hand, or aborts.
    fn finish(self) -> RoundResult {
        let Phase::Answering {
            inclusion, answers, ..
        } = &self.phase
        else {
            return self.decide();
        };
        let size = inclusion.clients.len() as u32;
        let missing: Vec<u32> = inclusion
            .helpers
            .iter()
            .copied()
            .filter(|j| !answers.contains_key(&(*j as usize)))
            .collect();
        let t = self.descriptor.threshold();
        if answers.len() < t {
            let detail = format!(
                "helper(s) {missing:?} did not answer before the deadline; {t} answers needed, {} received",
                answers.len()
            );
            return self.abort(
                AbortReason::HelperMissing,
                detail,
                missing,
                Vec::new(),
                size,
            );
        }
        let unverified = matches!(self.descriptor.mode(), Mode::Threshold(_)) && answers.len() == t;
        if unverified && !self.allow_unverified {
            let detail = format!(
                "only {t} of the {} helpers asked answered (missing {missing:?}): without a {}th answer a wrong share cannot be detected, and this federation does not allow unverified releases",
                inclusion.helpers.len(),
                t + 1
            );
            return self.abort(AbortReason::Unverifiable, detail, missing, Vec::new(), size);
        }
        if self.descriptor.engine().is_some() {
            return self.finish_engine(missing, size);
        }
        let vectors: BTreeMap<usize, &[u8]> = answers
            .iter()
            .map(|(&j, a)| (j, a.vector.expose()))
            .collect();
        let reconstructed = crate::evidence::reconstruct(&self.descriptor, &vectors);
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
        self.release(Released::Sum {
            sum,
            values,
            unverified,
        })
    }

    /// Signs the result of what the answers in hand release, and publishes it.
    fn release(self, released: Released) -> RoundResult {
        let Phase::Answering {
            inclusion, answers, ..
        } = &self.phase
        else {
            return self.decide();
        };
        let answering: Vec<u32> = answers.keys().map(|&j| j as u32).collect();
        let round_id = self.descriptor.round_id();
        let (sum, values, outputs, unverified) = match released {
            Released::Sum {
                sum,
                values,
                unverified,
            } => (sum, values, Vec::new(), unverified),
            Released::Outputs(outputs) => (Vec::new(), Vec::new(), outputs, false),
        };
        let (digest, length) = if self.descriptor.engine().is_some() {
            (outputs_digest(&outputs), outputs.len())
        } else {
            (sum_digest(&sum), sum.len())
        };
        let result = pb::RoundResult {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id,
            inclusion_hash: inclusion.hash.0.to_vec(),
            included_clients: inclusion.clients.clone(),
            answering_helpers: answering.clone(),
            sum_digest: digest.0.to_vec(),
            sum_length: length as u64,
            unverified,
        };
        let envelope = match self.signer.sign(&result) {
            Ok(env) => env,
            Err(e) => return Err((Box::new(self), e.into())),
        };
        let outcome = Outcome::Completed(Box::new(RoundSummary {
            round_id,
            result: envelope.clone(),
            included: inclusion.clients.clone(),
            answering_helpers: answering,
            sum,
            values,
            outputs,
            unverified,
            sat_out: self.sit_out_counts(),
            descriptor: self.descriptor.envelope().clone(),
            inclusion_set: inclusion.envelope.clone(),
            answers: answers
                .iter()
                .map(|(&helper, a)| AnswerEvidence {
                    helper: helper as u32,
                    header: a.header.clone(),
                    vector: a.vector.clone(),
                })
                .collect(),
        }));
        let actions = self.publish(Message::Result(Arc::new(envelope)));
        Ok(RoundStep::Finish(
            Box::new(outcome),
            Step::new(Some(round_id), actions),
        ))
    }

    /// An engine round with every helper's answer in hand: releases the
    /// outputs only if all three signed the same program and the same
    /// outputs and none reports a failure; otherwise aborts with the signed
    /// answer headers as evidence.
    fn finish_engine(self, missing: Vec<u32>, size: u32) -> RoundResult {
        let Phase::Answering { answers, .. } = &self.phase else {
            return self.decide();
        };
        let mut headers = BTreeMap::new();
        for (&j, a) in answers {
            match decode_limited::<pb::AggregateShareHeader>(&a.header.body, MAX_SIGNED_BODY) {
                Ok(h) => headers.insert(j as u32, h),
                Err(e) => {
                    let detail = format!("helper {j}'s engine answer header: {e}");
                    return self.abort(
                        AbortReason::ReconstructionFailed,
                        detail,
                        missing,
                        vec![j as u32],
                        size,
                    );
                }
            };
        }
        let failures: Vec<String> = headers
            .iter()
            .filter_map(|(j, h)| {
                h.engine_failure.as_ref().map(|f| {
                    let excluded = if f.excluded_clients.is_empty() {
                        String::new()
                    } else {
                        format!(", clients excluded: {:?}", f.excluded_clients)
                    };
                    format!("helper {j}: {} ({}{excluded})", f.code, f.detail)
                })
            })
            .collect();
        if !failures.is_empty() {
            let detail = format!(
                "the engine program released nothing: {}",
                failures.join("; ")
            );
            let excluded = majority_exclusion(&headers, self.descriptor.helpers().len());
            return self.abort_excluding(
                AbortReason::EngineFailed,
                detail,
                (missing, Vec::new()),
                size,
                excluded,
            );
        }
        // Group the answers by (program hash, outputs): all must agree.
        let key = |j: &u32| {
            let a = &answers[&(*j as usize)];
            (headers[j].program_hash.clone(), a.vector.expose().to_vec())
        };
        let helpers: Vec<u32> = headers.keys().copied().collect();
        let mut groups: Vec<(Vec<u8>, Vec<u8>, Vec<u32>)> = Vec::new();
        for j in &helpers {
            let (p, v) = key(j);
            match groups.iter_mut().find(|g| g.0 == p && g.1 == v) {
                Some(g) => g.2.push(*j),
                None => groups.push((p, v, vec![*j])),
            }
        }
        if groups.len() != 1 {
            // The helpers outside the largest group are the suspects (with
            // three helpers and one corrupted, the two honest ones agree).
            groups.sort_by_key(|g| std::cmp::Reverse(g.2.len()));
            let suspects: Vec<u32> = groups.iter().skip(1).flat_map(|g| g.2.clone()).collect();
            let detail = format!(
                "the helpers' signed engine answers differ ({} distinct program/output pairs; helper(s) {suspects:?} disagree with the others)",
                groups.len()
            );
            return self.abort(
                AbortReason::EngineDisagreement,
                detail,
                missing,
                suspects,
                size,
            );
        }
        // check_answer accepted only whole 16-byte values.
        let outputs = crate::machine::unpack_outputs(&groups[0].1).unwrap_or_default();
        self.release(Released::Outputs(outputs))
    }

    /// Ends the round with a signed abort record. A signer that cannot sign
    /// leaves the round as it is (the runtime treats a signer failure as
    /// fatal): nothing is ever published unsigned.
    fn abort(
        self,
        reason: AbortReason,
        detail: String,
        missing_helpers: Vec<u32>,
        suspect_helpers: Vec<u32>,
        included_clients: u32,
    ) -> RoundResult {
        self.abort_excluding(
            reason,
            detail,
            (missing_helpers, suspect_helpers),
            included_clients,
            Vec::new(),
        )
    }

    /// [`Self::abort`] naming the clients a majority of the helpers excluded
    /// by the sketch check (engine rounds).
    fn abort_excluding(
        self,
        reason: AbortReason,
        detail: String,
        (missing_helpers, suspect_helpers): (Vec<u32>, Vec<u32>),
        included_clients: u32,
        excluded_clients: Vec<u32>,
    ) -> RoundResult {
        let (reports, answers) = match &self.phase {
            Phase::Reporting { reports } => (reports, None),
            Phase::Answering {
                reports, answers, ..
            } => (reports, Some(answers)),
        };
        let mut evidence: Vec<pb::SignedEnvelope> =
            reports.values().map(|(_, e)| e.clone()).collect();
        evidence.extend(answers.into_iter().flatten().map(|(_, a)| a.header.clone()));
        let sat_out = self.sit_out_counts();
        let round_id = self.descriptor.round_id();
        let mut record = pb::AbortRecord {
            descriptor_hash: self.descriptor.hash().0.to_vec(),
            round_id,
            reason: reason as i32,
            detail,
            missing_helpers: missing_helpers.clone(),
            suspect_helpers: suspect_helpers.clone(),
            included_clients,
            evidence,
            sat_out,
            excluded_clients: excluded_clients.clone(),
        };
        fit_abort_record(&mut record);
        let (detail, sat_out) = (record.detail.clone(), record.sat_out.clone());
        let envelope = match self.signer.sign(&record) {
            Ok(env) => env,
            Err(e) => return Err((Box::new(self), e.into())),
        };
        let outcome = Outcome::Aborted(Box::new(AbortSummary {
            round_id,
            record: envelope.clone(),
            reason,
            detail,
            missing_helpers,
            suspect_helpers,
            sat_out,
            excluded_clients,
        }));
        let actions = self.publish(Message::Abort(Arc::new(envelope)));
        Ok(RoundStep::Finish(
            Box::new(outcome),
            Step::new(Some(round_id), actions),
        ))
    }

    fn publish(&self, message: Message) -> Vec<Action> {
        let round = self.descriptor.round_id();
        self.descriptor
            .helpers()
            .iter()
            .chain(self.descriptor.clients())
            .map(|to| Action::Send {
                to: *to,
                round,
                message: message.clone(),
            })
            .collect()
    }
}

/// The digest a result signs instead of the sum itself.
pub fn sum_digest(sum: &[i64]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(SUM_DIGEST_CONTEXT);
    for v in sum {
        hasher.update(&v.to_le_bytes());
    }
    Digest(*hasher.finalize().as_bytes())
}

/// BLAKE3 of an engine round's outputs (packed little-endian i128): what
/// its result record signs in place of a sum digest.
pub fn outputs_digest(outputs: &[i128]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("sealroom 2026-12 engine outputs v1");
    for v in outputs {
        hasher.update(&v.to_le_bytes());
    }
    Digest(*hasher.finalize().as_bytes())
}

/// "no table \"salaries\" (3), below the client's floor (1)".
pub fn describe_sit_outs(counts: &[pb::SitOutCount]) -> String {
    counts
        .iter()
        .map(|c| {
            let what = match pb::SitOutReason::try_from(c.reason) {
                Ok(pb::SitOutReason::NoSuchTable) => "no table",
                Ok(pb::SitOutReason::NoSuchColumn) => "no column",
                Ok(pb::SitOutReason::BelowClientFloor) => "thresholds below the client's floor",
                Ok(pb::SitOutReason::UnsupportedTask) => "task not supported",
                Ok(pb::SitOutReason::DataUnavailable) => "data unavailable",
                Ok(pb::SitOutReason::InvalidParameters) => "invalid parameters",
                Ok(pb::SitOutReason::BudgetExhausted) => "privacy budget exhausted",
                Ok(pb::SitOutReason::InputFailed) => "input computation failed",
                Ok(pb::SitOutReason::Unspecified) | Err(_) => "unspecified",
            };
            if c.subject.is_empty() {
                format!("{what} ({})", c.clients)
            } else {
                format!("{what} {:?} ({})", c.subject, c.clients)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chooses which reporting helpers answer: the set of at least `min_size`
/// helpers whose common clients are most numerous, preferring more helpers on
/// ties (more redundancy for the consistency check), then the
/// lexicographically smallest. Returns (helpers, common clients), sorted.
fn best_helper_set(
    reports: &Reports,
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
    /// The coordinator's signer failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// A round was asked for while another runs.
    #[error("round {round} is still running")]
    RoundRunning {
        /// The round under way.
        round: u64,
    },
    /// A message while no round runs.
    #[error("no round is running")]
    NoRound,
    /// The sender is not a helper of the round.
    #[error("round {round}: {party} is not a helper of this round")]
    NotAHelper {
        /// Round id.
        round: u64,
        /// Sender.
        party: PartyId,
    },
    /// The sender is not a client of the round.
    #[error("round {round}: {party} is not a client of this round")]
    NotAClient {
        /// Round id.
        round: u64,
        /// Sender.
        party: PartyId,
    },
    /// A message bound to another round: one not yet started, or this
    /// round's id with another descriptor.
    #[error(
        "round {round}: message from helper {helper} names round {claimed} with another descriptor than this round's"
    )]
    WrongRound {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
        /// The round the helper's signed message names.
        claimed: u64,
    },
    /// A helper's message of a round that is over (a restarted helper
    /// re-sends its report while it does not know the outcome).
    #[error(
        "round {round} is under way: helper {helper}'s message is for round {claimed}, which is over \
         (a restarted helper re-sends its report of an unanswered round; nothing to do)"
    )]
    RoundOver {
        /// Round id (the round under way).
        round: u64,
        /// Helper index.
        helper: usize,
        /// The earlier round the helper's signed message names.
        claimed: u64,
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
    /// A malformed sit-out notice.
    #[error("round {round}: malformed sit-out notice: {reason}")]
    MalformedSitOut {
        /// Round id.
        round: u64,
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
    /// A second, different sit-out notice from the same client.
    #[error("round {round}: client {client} gave two different reasons for sitting out")]
    ConflictingSitOut {
        /// Round id.
        round: u64,
        /// Client index.
        client: u32,
    },
    /// A message after the step it belongs to was closed.
    #[error("round {round}: message from helper {helper} arrived after its step closed")]
    TooLate {
        /// Round id.
        round: u64,
        /// Helper index.
        helper: usize,
    },
    /// A sit-out notice after the inclusion set was decided.
    #[error("round {round}: sit-out notice after the inclusion set was decided")]
    SitOutTooLate {
        /// Round id.
        round: u64,
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

impl CoordinatorError {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            CoordinatorError::Descriptor(_) => RefusalCode::RoundRefused,
            CoordinatorError::Envelope(_) => RefusalCode::BadSignature,
            CoordinatorError::Signer(_) => RefusalCode::SigningFailed,
            CoordinatorError::RoundRunning { .. } => RefusalCode::RoundRunning,
            CoordinatorError::NoRound => RefusalCode::NoRound,
            CoordinatorError::NotAHelper { .. } | CoordinatorError::NotAClient { .. } => {
                RefusalCode::NotAParticipant
            }
            CoordinatorError::WrongRound { .. } => RefusalCode::RoundMismatch,
            CoordinatorError::MalformedMessage { .. }
            | CoordinatorError::MalformedSitOut { .. } => RefusalCode::Malformed,
            CoordinatorError::ConflictingReport { .. }
            | CoordinatorError::ConflictingSitOut { .. } => RefusalCode::Conflicting,
            CoordinatorError::TooLate { .. }
            | CoordinatorError::SitOutTooLate { .. }
            | CoordinatorError::RoundOver { .. } => RefusalCode::TooLate,
            CoordinatorError::Unexpected { .. } => RefusalCode::Unexpected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, excluded: &[u32]) -> pb::AggregateShareHeader {
        pb::AggregateShareHeader {
            engine_failure: Some(pb::EngineFailure {
                code: code.into(),
                detail: String::new(),
                excluded_clients: excluded.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_majority_of_helpers_excludes_clients() {
        let ok = pb::AggregateShareHeader::default();
        let headers = |hs: Vec<pb::AggregateShareHeader>| {
            hs.into_iter()
                .enumerate()
                .map(|(j, h)| (j as u32, h))
                .collect::<BTreeMap<_, _>>()
        };
        let excluded = |hs| majority_exclusion(&headers(hs), 3);
        // Two honest helpers agree (in any order); a third names another.
        assert_eq!(
            excluded(vec![
                failure("clients_excluded", &[3, 1]),
                failure("clients_excluded", &[1, 3]),
                failure("clients_excluded", &[0]),
            ]),
            vec![1, 3]
        );
        // One helper alone (a corrupted one) excludes nobody.
        assert!(excluded(vec![failure("clients_excluded", &[2]), ok.clone(), ok]).is_empty());
        // Another failure code or an empty set is no exclusion.
        assert!(
            excluded(vec![
                failure("mac_check", &[2]),
                failure("mac_check", &[2]),
                failure("clients_excluded", &[]),
            ])
            .is_empty()
        );
    }
}
