//! What the state machines hand back to the runtime: messages to send, state
//! to make durable, and (clients) an input to compute.
//!
//! **Ordering contract.** A runtime executes a step's actions in order, and a
//! [`Action::Persist`] must be durable (fsync'd or committed) before any
//! later action of the same step is executed. That is how "the helper records
//! its single answer before the answer leaves" and "a receipt means the share
//! is stored" are enforced without the protocol doing I/O.

use core::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::descriptor::VerifiedDescriptor;
use crate::ids::{Digest, PartyId};
use crate::pb;

/// Bytes that may hold a secret (an encoded upload, an aggregate share).
/// Zeroized when the last clone is dropped (clones share one buffer, so a
/// runtime can keep a reference for its archive without copying a share);
/// `Debug` shows only the length; compared only in constant time
/// ([`SecretBytes::ct_eq`]), never with `==`.
///
/// ```compile_fail
/// use sealroom_protocol::action::SecretBytes;
/// let a = SecretBytes::new(vec![1]);
/// let b = SecretBytes::new(vec![1]);
/// let _ = a == b; // no PartialEq: a variable-time compare of shares
/// ```
#[derive(Clone)]
pub struct SecretBytes(Arc<Zeroizing<Vec<u8>>>);

impl SecretBytes {
    /// Takes ownership of secret bytes.
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Arc::new(Zeroizing::new(bytes)))
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
    /// Equality in time independent of the contents (the length is public).
    pub fn ct_eq(&self, other: &SecretBytes) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
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
    /// Client → coordinator: an encoded [`pb::SitOut`], why this client
    /// does not take part (never anything about its rows).
    SitOut(Vec<u8>),
}

impl Message {
    /// What kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Descriptor(_) => MessageKind::Descriptor,
            Message::Upload(_) => MessageKind::Upload,
            Message::Receipt(_) => MessageKind::Receipt,
            Message::Report(_) => MessageKind::Report,
            Message::InclusionSet(_) => MessageKind::InclusionSet,
            Message::AggregateShare(_) => MessageKind::AggregateShare,
            Message::Result(_) => MessageKind::Result,
            Message::Abort(_) => MessageKind::Abort,
            Message::SitOut(_) => MessageKind::SitOut,
        }
    }

    /// The exact bytes this message puts on the wire (an encoded envelope or
    /// the encoded message); zeroized when dropped.
    pub fn wire_bytes(&self) -> Zeroizing<Vec<u8>> {
        use prost::Message as _;
        Zeroizing::new(match self {
            Message::Descriptor(env) | Message::Result(env) | Message::Abort(env) => {
                env.encode_to_vec()
            }
            Message::Receipt(env) | Message::Report(env) | Message::InclusionSet(env) => {
                env.encode_to_vec()
            }
            Message::Upload(bytes) | Message::AggregateShare(bytes) => bytes.expose().to_vec(),
            Message::SitOut(bytes) => bytes.clone(),
        })
    }

    /// The envelope this message shares with every other recipient
    /// (descriptor, result, abort): one `Arc` for the whole fan-out.
    pub fn shared(&self) -> Option<&Arc<pb::SignedEnvelope>> {
        match self {
            Message::Descriptor(env) | Message::Result(env) | Message::Abort(env) => Some(env),
            _ => None,
        }
    }
}

/// The kinds of [`Message`], as archives, metrics and logs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// A round descriptor.
    Descriptor,
    /// A share upload.
    Upload,
    /// A helper's receipt.
    Receipt,
    /// A helper's report.
    Report,
    /// An inclusion set.
    InclusionSet,
    /// An aggregate share.
    AggregateShare,
    /// A released result.
    Result,
    /// An abort record.
    Abort,
    /// A client's reason for sitting a round out.
    SitOut,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 9] = [
        MessageKind::Descriptor,
        MessageKind::Upload,
        MessageKind::Receipt,
        MessageKind::Report,
        MessageKind::InclusionSet,
        MessageKind::AggregateShare,
        MessageKind::Result,
        MessageKind::Abort,
        MessageKind::SitOut,
    ];

    /// The name used in metrics, logs and archives.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Descriptor => "descriptor",
            MessageKind::Upload => "upload",
            MessageKind::Receipt => "receipt",
            MessageKind::Report => "report",
            MessageKind::InclusionSet => "inclusion_set",
            MessageKind::AggregateShare => "aggregate_share",
            MessageKind::Result => "result",
            MessageKind::Abort => "abort",
            MessageKind::SitOut => "sit_out",
        }
    }

    /// Parses [`MessageKind::as_str`].
    pub fn parse(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State a role must make durable before it proceeds.
#[derive(Clone, Debug)]
pub enum Persist {
    /// Client: the highest round it has taken part in (replay protection
    /// across restarts).
    ClientRound {
        /// Round id.
        round_id: u64,
    },
    /// Helper: it accepted a round descriptor (and so will refuse older ones).
    HelperRound {
        /// Round id.
        round_id: u64,
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
    /// Helper: the report it sends for a round (it never reports twice; a
    /// restarted helper re-sends this one).
    HelperReport {
        /// Round id.
        round_id: u64,
        /// The signed report.
        report: pb::SignedEnvelope,
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

impl Persist {
    /// The round this state belongs to.
    pub fn round_id(&self) -> u64 {
        match self {
            Persist::ClientRound { round_id }
            | Persist::HelperUpload { round_id, .. }
            | Persist::HelperReport { round_id, .. }
            | Persist::HelperAnswer { round_id, .. }
            | Persist::CoordinatorRound { round_id }
            | Persist::CoordinatorInclusion { round_id, .. }
            | Persist::HelperRound { round_id, .. } => *round_id,
        }
    }
}

/// One effect of a step.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send `message`, which belongs to round `round`, to `to` over its
    /// authenticated channel.
    Send {
        /// Recipient.
        to: PartyId,
        /// The round the message belongs to (from verified state: the
        /// runtime never decodes a body to learn it).
        round: u64,
        /// Message.
        message: Message,
    },
    /// Make this durable before executing any later action.
    Persist(Persist),
    /// Client: compute this client's input for the verified descriptor and
    /// hand it back as [`crate::machine::Input::Participate`].
    Compute(Box<VerifiedDescriptor>),
    /// Helper: run the engine round's program with the other two helpers
    /// over these uploads and hand the result back as
    /// [`crate::machine::Input::Engine`].
    Engine(Box<EngineJob>),
}

/// An engine round's computation, as a helper's runtime runs it.
#[derive(Clone, Debug)]
pub struct EngineJob {
    /// The round's verified descriptor (program, parameters, vector length).
    pub descriptor: VerifiedDescriptor,
    /// Hash of the signed inclusion set the computation answers (with the
    /// descriptor's hash, it names the engine session).
    pub inclusion_hash: Digest,
    /// The included clients' uploads, in increasing client index.
    pub uploads: Vec<EngineUpload>,
}

/// One included client's upload to this helper, for the engine.
#[derive(Clone)]
pub struct EngineUpload {
    /// Client index in the round.
    pub client_index: u32,
    /// The share: a 32-byte seed, or the packed little-endian correction vector.
    pub share: SecretBytes,
    /// Whether `share` is a seed.
    pub seed: bool,
    /// This helper's sketch shares (κ_i ‖ τ_i, 32 bytes).
    pub sketch: SecretBytes,
}

impl std::fmt::Debug for EngineUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EngineUpload(client={}, seed={}, <redacted>)",
            self.client_index, self.seed
        )
    }
}
