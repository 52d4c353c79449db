//! The one step contract of every role (STYLE.md §2, in the style of
//! quinn-proto): a role's state machine takes one [`Input`] at a time with
//! the current time, and hands back a [`Step`] — what to persist, send or
//! compute, which signed artifacts it verified, and (coordinator) the
//! round's outcome — or a [`Refusal`] that changed nothing.
//!
//! **One parse boundary.** Inbound messages arrive as the transport got
//! them ([`Inbound`]: an envelope or opaque bytes from an authenticated
//! sender); only the state machines decode and verify them. What keys
//! durable state or memory — a round id, a client index, a size — comes
//! from state the machine already holds, never from a peer's claim:
//! [`Step::round`] and [`Refusal::round`] name a round only when the input
//! was matched to a round this node verified, and every [`Action::Send`]
//! carries its round, so the runtime never decodes a body to learn it.
//!
//! **Refusals change nothing.** A refused input leaves the machine exactly
//! as it was; that is why a runtime may record a refusal by its digest
//! alone, and why replay skips refused steps.

use core::fmt;

use sealroom_core::Seed;

use crate::action::{Action, Message, MessageKind, SecretBytes};
use crate::coordinator::{Outcome, Task};
use crate::ids::{Millis, PartyId};
use crate::pb;
pub use crate::pb::RefusalCode;

/// One thing that happens to a state machine.
#[derive(Debug)]
pub enum Input {
    /// Coordinator: run a round.
    Start(Start),
    /// A message from `from`, the identity the transport authenticated.
    Inbound {
        /// The authenticated sender.
        from: PartyId,
        /// The message, as received.
        msg: Inbound,
    },
    /// Client: its input for a round it was asked to compute
    /// ([`Action::Compute`]), or why it sits the round out.
    Participate(Participation),
    /// Helper: what the engine program it was asked to run
    /// ([`crate::action::Action::Engine`]) produced.
    Engine(EngineResult),
    /// Time passed: a deadline the machine gave ([`Machine::next_deadline`])
    /// is reached.
    Timer,
}

impl Input {
    /// A short name, for logs and archives.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Start(_) => "start",
            Input::Inbound { msg, .. } => msg.kind().as_str(),
            Input::Participate(_) => "participate",
            Input::Engine(_) => "engine",
            Input::Timer => "timer",
        }
    }
}

/// What an engine round's program produced at one helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineResult {
    /// The round.
    pub round: u64,
    /// BLAKE3 of the program run (`Program::hash`).
    pub program_hash: [u8; 32],
    /// Its verified outputs, or why there are none.
    pub outcome: EngineOutcome,
}

/// The outcome of an engine round's program at one helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineOutcome {
    /// Every output, verified by the engine's MAC check (public: the
    /// round's release).
    Outputs(Vec<i128>),
    /// Nothing was released.
    Failed {
        /// `clients_excluded`, or the engine's abort code.
        code: String,
        /// The engine's account (helper and client indices, never values).
        detail: String,
        /// Clients whose sketch check failed (client indices of the round).
        excluded: Vec<u32>,
    },
}

impl EngineOutcome {
    /// The wire form of an answer or an archive entry: the outputs packed
    /// little-endian (empty on failure) and the failure, if any.
    pub fn to_wire(&self) -> (Vec<u8>, Option<pb::EngineFailure>) {
        match self {
            EngineOutcome::Outputs(v) => (pack_outputs(v), None),
            EngineOutcome::Failed {
                code,
                detail,
                excluded,
            } => (
                Vec::new(),
                Some(pb::EngineFailure {
                    code: code.clone(),
                    detail: detail.clone(),
                    excluded_clients: excluded.clone(),
                }),
            ),
        }
    }

    /// The inverse of [`EngineOutcome::to_wire`]; `None` when the outputs
    /// are not whole 16-byte values.
    pub fn from_wire(outputs: &[u8], failure: Option<&pb::EngineFailure>) -> Option<Self> {
        Some(match failure {
            Some(f) => EngineOutcome::Failed {
                code: f.code.clone(),
                detail: f.detail.clone(),
                excluded: f.excluded_clients.clone(),
            },
            None => EngineOutcome::Outputs(unpack_outputs(outputs)?),
        })
    }
}

/// Engine outputs as they travel and are archived: packed little-endian i128.
pub fn pack_outputs(outputs: &[i128]) -> Vec<u8> {
    outputs.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`pack_outputs`]; `None` unless `bytes` holds whole
/// 16-byte values.
pub fn unpack_outputs(bytes: &[u8]) -> Option<Vec<i128>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| {
                let mut b = [0u8; 16];
                b.copy_from_slice(c);
                i128::from_le_bytes(b)
            })
            .collect(),
    )
}

/// A message as the transport received it: a signed envelope (decoded by
/// the transport's framing, its body still opaque), or opaque bytes.
#[derive(Clone, Debug)]
pub enum Inbound {
    /// Coordinator → helper or client: a signed descriptor.
    Descriptor(pb::SignedEnvelope),
    /// Client → helper: an encoded upload.
    Upload(SecretBytes),
    /// Helper → client: a signed receipt.
    Receipt(pb::SignedEnvelope),
    /// Helper → coordinator: a signed report.
    Report(pb::SignedEnvelope),
    /// Coordinator → helper: a signed inclusion set.
    InclusionSet(pb::SignedEnvelope),
    /// Helper → coordinator: an encoded aggregate share.
    AggregateShare(SecretBytes),
    /// Client → coordinator: an encoded sit-out notice.
    SitOut(Vec<u8>),
}

impl Inbound {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Inbound::Descriptor(_) => MessageKind::Descriptor,
            Inbound::Upload(_) => MessageKind::Upload,
            Inbound::Receipt(_) => MessageKind::Receipt,
            Inbound::Report(_) => MessageKind::Report,
            Inbound::InclusionSet(_) => MessageKind::InclusionSet,
            Inbound::AggregateShare(_) => MessageKind::AggregateShare,
            Inbound::SitOut(_) => MessageKind::SitOut,
        }
    }

    /// The message a sender's [`Action::Send`] becomes on arrival, for
    /// harnesses that carry messages between machines in memory. Outcome
    /// records (result, abort) are published, not consumed: `None`.
    pub fn from_message(message: Message) -> Option<Inbound> {
        Some(match message {
            Message::Descriptor(env) => Inbound::Descriptor((*env).clone()),
            Message::Upload(bytes) => Inbound::Upload(bytes),
            Message::Receipt(env) => Inbound::Receipt(env),
            Message::Report(env) => Inbound::Report(env),
            Message::InclusionSet(env) => Inbound::InclusionSet(env),
            Message::AggregateShare(bytes) => Inbound::AggregateShare(bytes),
            Message::SitOut(bytes) => Inbound::SitOut(bytes),
            Message::Result(_) | Message::Abort(_) => return None,
        })
    }

    /// The exact bytes received (what an archive digests).
    pub fn wire_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        use prost::Message as _;
        zeroize::Zeroizing::new(match self {
            Inbound::Descriptor(env)
            | Inbound::Receipt(env)
            | Inbound::Report(env)
            | Inbound::InclusionSet(env) => env.encode_to_vec(),
            Inbound::Upload(bytes) | Inbound::AggregateShare(bytes) => bytes.expose().to_vec(),
            Inbound::SitOut(bytes) => bytes.clone(),
        })
    }
}

/// Coordinator: a round to run.
#[derive(Clone, Debug)]
pub struct Start {
    /// What the round computes.
    pub task: Task,
    /// The invited clients; position = client index.
    pub clients: Vec<PartyId>,
    /// 32 fresh random bytes (from the OS in production).
    pub nonce: [u8; 32],
}

/// Client: its contribution to round `round`.
#[derive(Debug)]
pub struct Participation {
    /// The round (as [`Action::Compute`] named it).
    pub round: u64,
    /// The input vector, or why the client sits the round out.
    pub input: Result<ClientInput, SitOut>,
    /// Seed of the sharing randomness (drawn from the OS in production;
    /// recorded in the client's own archive for replay).
    pub randomness: Seed,
}

/// A client's input vector: private, zeroized on drop, `Debug` redacted.
pub struct ClientInput(zeroize::Zeroizing<Vec<f64>>);

impl ClientInput {
    /// Takes ownership of an input vector.
    pub fn new(values: Vec<f64>) -> ClientInput {
        ClientInput(zeroize::Zeroizing::new(values))
    }
    /// The values, for sharing only.
    pub fn expose(&self) -> &[f64] {
        &self.0
    }
}

impl fmt::Debug for ClientInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientInput(len={}, <redacted>)", self.0.len())
    }
}

/// Why a client sits a round out: a typed reason about the task (never
/// about its rows) and the name it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitOut {
    /// The reason.
    pub reason: pb::SitOutReason,
    /// A table or column name from the task, or empty.
    pub subject: String,
}

/// Longest [`SitOut::subject`] that travels.
pub const MAX_SIT_OUT_SUBJECT: usize = 64;

impl SitOut {
    /// A reason about `subject`; a subject that is too long or holds other
    /// characters than `[A-Za-z0-9_.-]` is dropped (it is shown to the
    /// coordinator's admin and must not carry anything else).
    pub fn new(reason: pb::SitOutReason, subject: &str) -> SitOut {
        SitOut {
            reason,
            subject: clean_subject(subject),
        }
    }
}

/// `subject` if it is a plain name, else empty.
pub fn clean_subject(subject: &str) -> String {
    let plain = subject.len() <= MAX_SIT_OUT_SUBJECT
        && subject
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if plain {
        subject.to_string()
    } else {
        String::new()
    }
}

/// A signed artifact a step verified (to enter into the audit log).
#[derive(Clone, Debug)]
pub struct Artifact {
    /// What it is.
    pub kind: MessageKind,
    /// Its round.
    pub round: u64,
    /// The signed envelope.
    pub envelope: pb::SignedEnvelope,
}

/// What one accepted input led to.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Step {
    /// The round the input belongs to, from verified state (`None` for a
    /// timer that had nothing to do).
    pub round: Option<u64>,
    /// Effects, in order (see [`crate::action`] for the ordering contract).
    pub actions: Vec<Action>,
    /// Signed artifacts received and verified in this step.
    pub accepted: Vec<Artifact>,
    /// Coordinator: the round's outcome, when this step finished it.
    pub outcome: Option<Outcome>,
    /// This node's part of `round` is over (a signed checkpoint follows).
    pub ends_round: bool,
}

impl Step {
    /// A step of `round` with these actions.
    pub fn new(round: Option<u64>, actions: Vec<Action>) -> Step {
        Step {
            round,
            actions,
            ..Step::default()
        }
    }

    /// The rounds this step's actions touch, ascending (a helper's timer
    /// may report several rounds at once).
    pub fn rounds(&self) -> Vec<u64> {
        let mut rounds: Vec<u64> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Send { round, .. } => *round,
                Action::Persist(p) => p.round_id(),
                Action::Compute(d) => d.round_id(),
                Action::Engine(job) => job.descriptor.round_id(),
            })
            .chain(self.round)
            .collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds
    }
}

/// Why an input was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct Refusal {
    /// The round the input was matched to, from verified state; `None`
    /// when it could not be (a peer's claimed round id never appears here).
    pub round: Option<u64>,
    /// The stable code (archived, counted in metrics, compared by replay).
    pub code: RefusalCode,
    /// The error, for logs and the peer (boxed: refusals travel in
    /// `Result`s on every hot path and must stay small).
    pub error: Box<ProtocolError>,
}

impl Refusal {
    /// Whether the peer should simply try again shortly (the round is not
    /// known here yet).
    pub fn retryable(&self) -> bool {
        self.code == RefusalCode::RoundNotYetKnown
    }

    /// The code's name, for metrics.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }
}

/// The metrics label of a refusal code.
pub fn code_name(code: RefusalCode) -> &'static str {
    match code {
        RefusalCode::None => "none",
        RefusalCode::Malformed => "malformed",
        RefusalCode::BadSignature => "bad_signature",
        RefusalCode::UntrustedKey => "untrusted_key",
        RefusalCode::DescriptorInvalid => "descriptor_invalid",
        RefusalCode::Replayed => "replayed",
        RefusalCode::NotAParticipant => "not_a_participant",
        RefusalCode::UnknownRound => "unknown_round",
        RefusalCode::RoundNotYetKnown => "round_not_yet_known",
        RefusalCode::RoundMismatch => "round_mismatch",
        RefusalCode::Late => "late",
        RefusalCode::Duplicate => "duplicate",
        RefusalCode::WrongShareKind => "wrong_share_kind",
        RefusalCode::ShareLength => "wrong_length",
        RefusalCode::NonCanonical => "non_canonical",
        RefusalCode::AlreadyAnswered => "already_answered",
        RefusalCode::NotReported => "not_reported",
        RefusalCode::NotSelected => "not_selected",
        RefusalCode::InclusionInvalid => "inclusion_invalid",
        RefusalCode::Conflicting => "conflicting",
        RefusalCode::TooLate => "too_late",
        RefusalCode::Unexpected => "unexpected",
        RefusalCode::WrongSender => "wrong_sender",
        RefusalCode::InputInvalid => "input_invalid",
        RefusalCode::SharingFailed => "sharing_failed",
        RefusalCode::ReceiptMismatch => "receipt_mismatch",
        RefusalCode::UnknownHelper => "unknown_helper",
        RefusalCode::RoundRunning => "round_running",
        RefusalCode::RoundRefused => "round_refused",
        RefusalCode::SigningFailed => "signing_failed",
        RefusalCode::NoRound => "no_round",
    }
}

/// The errors of the three roles.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client's.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// A helper's.
    #[error(transparent)]
    Helper(#[from] crate::helper::HelperError),
    /// The coordinator's.
    #[error(transparent)]
    Coordinator(#[from] crate::coordinator::CoordinatorError),
    /// An input this role never consumes (a runtime routing bug, or a peer
    /// calling the wrong service).
    #[error("a {role} does not take {input} inputs")]
    NotForThisRole {
        /// The role.
        role: &'static str,
        /// The input.
        input: &'static str,
    },
}

/// A role's state machine: the one contract every runtime, simulation,
/// replay and fuzz target drives.
pub trait Machine: Send {
    /// Consumes `input` at time `now`.
    fn handle(&mut self, now: Millis, input: Input) -> Result<Step, Refusal>;

    /// When [`Input::Timer`] next has something to do.
    fn next_deadline(&self) -> Option<Millis>;
}

/// A refusal for an input a role never takes.
pub(crate) fn not_for(role: &'static str, input: &Input) -> Refusal {
    Refusal {
        round: None,
        code: RefusalCode::Unexpected,
        error: Box::new(ProtocolError::NotForThisRole {
            role,
            input: input.name(),
        }),
    }
}
