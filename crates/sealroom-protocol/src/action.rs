//! What the state machines hand back to the runtime: messages to send and
//! state to make durable.
//!
//! **Ordering contract.** A runtime executes a step's actions in order, and a
//! [`Action::Persist`] must be durable (fsync'd or committed) before any
//! later action of the same step is executed. That is how "the helper records
//! its single answer before the answer leaves" and "a receipt means the share
//! is stored" are enforced without the protocol doing I/O.

use core::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::ids::{Digest, PartyId};
use crate::pb;

/// Bytes that may hold a secret (an encoded upload, an aggregate share).
/// Zeroized on drop; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of secret bytes.
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Zeroizing::new(bytes))
    }
    /// The bytes, for the transport or the store only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(len={}, <redacted>)", self.0.len())
    }
}

/// A protocol message in flight.
///
/// What goes to every party of a round (descriptor, result, abort) is shared
/// through an [`Arc`]: a round with 10⁵ clients hands back 10⁵ send actions
/// but one copy of the envelope.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Message {
    /// Coordinator → clients and helpers: a signed [`pb::RoundDescriptor`].
    Descriptor(Arc<pb::SignedEnvelope>),
    /// Client → helper: an encoded [`pb::Upload`] (holds a share).
    Upload(SecretBytes),
    /// Helper → client: a signed [`pb::Receipt`].
    Receipt(pb::SignedEnvelope),
    /// Helper → coordinator: a signed [`pb::HelperReport`].
    Report(pb::SignedEnvelope),
    /// Coordinator → helper: a signed [`pb::InclusionSet`].
    InclusionSet(pb::SignedEnvelope),
    /// Helper → coordinator: an encoded [`pb::AggregateShare`] (holds a share).
    AggregateShare(SecretBytes),
    /// Coordinator → everyone: a signed [`pb::RoundResult`].
    Result(Arc<pb::SignedEnvelope>),
    /// Coordinator → everyone: a signed [`pb::AbortRecord`].
    Abort(Arc<pb::SignedEnvelope>),
}

impl Message {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Descriptor(_) => "descriptor",
            Message::Upload(_) => "upload",
            Message::Receipt(_) => "receipt",
            Message::Report(_) => "report",
            Message::InclusionSet(_) => "inclusion_set",
            Message::AggregateShare(_) => "aggregate_share",
            Message::Result(_) => "result",
            Message::Abort(_) => "abort",
        }
    }
}

/// State a role must make durable before it proceeds.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Persist {
    /// Client: the highest round it has taken part in (replay protection
    /// across restarts).
    ClientRound {
        /// Round id.
        round_id: u64,
    },
    /// Helper: it accepted a round descriptor (and so will refuse older ones).
    HelperRound {
        /// The signed descriptor.
        descriptor: pb::SignedEnvelope,
    },
    /// Helper: an accepted upload, before its receipt is sent.
    HelperUpload {
        /// Round id.
        round_id: u64,
        /// Client index.
        client_index: u32,
        /// The encoded upload (holds a share).
        upload: SecretBytes,
    },
    /// Helper: the one inclusion set it answers for this round, before the
    /// answer is sent.
    HelperAnswer {
        /// Round id.
        round_id: u64,
        /// Hash of the signed inclusion set's body.
        inclusion_hash: Digest,
    },
    /// Coordinator: a round id is used, before its descriptor is sent.
    CoordinatorRound {
        /// Round id.
        round_id: u64,
    },
    /// Coordinator: the inclusion set it signed, before it is sent.
    CoordinatorInclusion {
        /// Round id.
        round_id: u64,
        /// The signed inclusion set.
        inclusion_set: pb::SignedEnvelope,
    },
}

/// One effect of a step.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send `message` to `to` over its authenticated channel.
    Send {
        /// Recipient.
        to: PartyId,
        /// Message.
        message: Message,
    },
    /// Make this durable before executing any later action.
    Persist(Persist),
}
