//! Abort evidence: why a computation or a preprocessing batch stopped.
//!
//! Every variant names the check that failed and, where the failure is
//! attributable to one peer's own message (a malformed message, an opening
//! that contradicts that peer's commitment, a message for the wrong session),
//! that peer. Where a failure cannot be pinned on one helper (a MAC check sums
//! all three helpers' values; two transcripts that differ may be the fault of
//! the third helper), the evidence says which peer's message was *involved*
//! and nothing more. No variant carries a secret, and none blames a helper on
//! evidence a client controls (a client's bad upload excludes that client
//! instead; see `crate::client`).

use crate::machine::HelperIndex;
use crate::wire::WireError;

/// The evidence of an abort.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("aborted in round {round}: {reason}")]
pub struct Abort {
    /// Why.
    pub reason: AbortReason,
    /// The round in which it was detected.
    pub round: u32,
}

/// Which check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Σσ_i ≠ 0 in the batched MAC check (DKLPSS 2013): some opened value
    /// or some MAC share was wrong. Not attributable.
    #[error("MAC check failed")]
    MacCheckFailed,
    /// A peer's transcript hash of opened values differs from ours: some
    /// helper sent different shares (or broadcasts) to the two others.
    #[error("transcript of opened values differs from helper {peer:?}'s")]
    TranscriptMismatch {
        /// The peer whose hash differed (involved, not necessarily guilty).
        peer: HelperIndex,
    },
    /// A peer revealed a value that does not match its own commitment.
    #[error("helper {peer:?} opened a value that does not match its commitment")]
    CommitmentMismatch {
        /// The peer (attributable).
        peer: HelperIndex,
    },
    /// The two holders of a replicated component sent different values.
    #[error("replicated opening inconsistent between helpers {a:?} and {b:?}")]
    ReplicatedOpenMismatch {
        /// One holder.
        a: HelperIndex,
        /// The other holder.
        b: HelperIndex,
    },
    /// Chida et al.'s verification of the preprocessing batch failed.
    #[error("preprocessing multiplication verification failed")]
    MultiplicationVerificationFailed,
    /// A peer's hello named a different program.
    #[error("helper {peer:?} runs a different program")]
    ProgramMismatch {
        /// The peer.
        peer: HelperIndex,
    },
    /// A peer's hello named different preprocessing material (batch ids/digests).
    #[error("helper {peer:?} uses different preprocessing material")]
    MaterialMismatch {
        /// The peer.
        peer: HelperIndex,
    },
    /// A peer's hello or confirmation named different parameters or a different digest.
    #[error("helper {peer:?} disagrees on the batch parameters or digest")]
    ParameterMismatch {
        /// The peer.
        peer: HelperIndex,
    },
    /// A peer's message did not decode or had the wrong shape.
    #[error("helper {peer:?} sent a malformed message: {error}")]
    Malformed {
        /// The peer.
        peer: HelperIndex,
        /// What was wrong.
        error: WireError,
    },
    /// A message for another session or protocol.
    #[error("helper {peer:?} sent a message for another session")]
    WrongSession {
        /// The peer.
        peer: HelperIndex,
    },
    /// The header's sender differs from the authenticated sender.
    #[error("helper {peer:?} sent a message claiming another sender")]
    WrongSender {
        /// The peer.
        peer: HelperIndex,
    },
    /// A second message for the same round.
    #[error("helper {peer:?} sent round {round} twice")]
    Duplicate {
        /// The peer.
        peer: HelperIndex,
        /// The round.
        round: u32,
    },
    /// A message for a round that is already over (a replay).
    #[error("helper {peer:?} sent a message for past round {round}")]
    Replay {
        /// The peer.
        peer: HelperIndex,
        /// The round.
        round: u32,
    },
    /// A message more than one round ahead.
    #[error("helper {peer:?} sent a message for future round {round}")]
    OutOfOrder {
        /// The peer.
        peer: HelperIndex,
        /// The round.
        round: u32,
    },
    /// A round did not complete before its deadline.
    #[error("timed out waiting for {missing:?}")]
    Timeout {
        /// Peers whose message is missing.
        missing: Vec<HelperIndex>,
    },
    /// The opened square of a random-bit candidate was zero (probability
    /// 2^−127 per bit): the batch is discarded and should be retried.
    #[error("a random-bit candidate was zero; retry the batch")]
    ZeroSquare,
    /// A verified opening of a square had no square root (impossible unless
    /// the verification was bypassed).
    #[error("an opened square has no square root")]
    NotASquare,
    /// An internal invariant failed (a bug, never peer-triggered).
    #[error("internal error")]
    Internal,
}

impl AbortReason {
    /// A stable lower-case code for metrics labels and records (it names
    /// the failed check, never a value).
    pub fn code(&self) -> &'static str {
        match self {
            AbortReason::MacCheckFailed => "mac_check_failed",
            AbortReason::TranscriptMismatch { .. } => "transcript_mismatch",
            AbortReason::CommitmentMismatch { .. } => "commitment_mismatch",
            AbortReason::ReplicatedOpenMismatch { .. } => "replicated_open_mismatch",
            AbortReason::MultiplicationVerificationFailed => "multiplication_verification_failed",
            AbortReason::ProgramMismatch { .. } => "program_mismatch",
            AbortReason::MaterialMismatch { .. } => "material_mismatch",
            AbortReason::ParameterMismatch { .. } => "parameter_mismatch",
            AbortReason::Malformed { .. } => "malformed",
            AbortReason::WrongSession { .. } => "wrong_session",
            AbortReason::WrongSender { .. } => "wrong_sender",
            AbortReason::Duplicate { .. } => "duplicate",
            AbortReason::Replay { .. } => "replay",
            AbortReason::OutOfOrder { .. } => "out_of_order",
            AbortReason::Timeout { .. } => "timeout",
            AbortReason::ZeroSquare => "zero_square",
            AbortReason::NotASquare => "not_a_square",
            AbortReason::Internal => "internal",
        }
    }
}
