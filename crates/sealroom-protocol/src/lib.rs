//! # sealroom-protocol
//!
//! The secure-aggregation round of DESIGN.md §2, as sans-IO state machines:
//!
//! * [`pb`]: the wire messages, generated from `proto/sealroom/v1/round.proto`;
//! * [`envelope`]: Ed25519-signed envelopes with per-type labels, and
//!   [`envelope::Verified`] values only verification can make;
//! * [`descriptor`]: signed round descriptors and their complete validation;
//! * [`client`], [`helper`], [`coordinator`]: the three roles;
//! * [`evidence`]: a released sum re-derived from its signed parts, so a
//!   later phase of a task is checked against an earlier one;
//! * [`sim`]: a deterministic simulation of whole rounds with thousands of
//!   clients, dropouts and a mock clock, checking every outcome (issue #8).
//!
//! ## What this crate must never do
//!
//! It does no I/O, reads no clock and draws no randomness of its own: every
//! input — a message with its authenticated sender, a timer firing, the
//! current time, the randomness for seeds and nonces — is handed in by the
//! caller, and every effect — a message to send, state to make durable before
//! anything else happens, the round's outcome — is handed back as an
//! [`action::Action`]. That makes each step deterministic, replayable and
//! testable without sockets. (The one exception is [`sim`], a test and
//! benchmark harness: it draws all its randomness from a seeded stream and
//! reads the wall clock only to report its own speed.) It never logs, and
//! never puts a share, seed, key or input into an error, a `Debug` string or
//! an outcome.

#![forbid(unsafe_code)]

pub mod action;
pub mod client;
pub mod coordinator;
pub mod descriptor;
pub mod envelope;
pub mod evidence;
pub mod helper;
pub mod ids;
pub mod machine;
pub mod sim;

/// Wire messages generated from `proto/sealroom/v1/round.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/sealroom.v1.rs"));
}

pub use descriptor::{DescriptorError, DescriptorTrust, Mode, VerifiedDescriptor};
pub use envelope::{PartyKeys, SharedSigner, Signer, SignerExt, SigningKey, VerifyingKey};
pub use ids::{Digest, Millis, PartyId, Role};
pub use machine::{Inbound, Input, Machine, Refusal, RefusalCode, Step};
