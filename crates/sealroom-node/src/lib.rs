//! # sealroom-node
//!
//! The runtime that turns the sans-IO protocol into services people run:
//!
//! * [`config`], [`pki`], [`init`]: federation setup — a CA, certificates and
//!   keys per node, `federation.toml` and one config per node;
//! * [`tls`]: mutual TLS 1.3 (rustls with aws-lc-rs) and peer identities;
//! * [`grpc`]: the tonic services of `proto/sealroom/v1/node.proto`;
//! * [`driver`]: the one driver of every role's state machine — each step
//!   made durable (state, replay archive, audit log: one transaction) before
//!   anything it sent leaves — and its actor loop;
//! * [`coordinator_node`], [`helper_node`], [`client_node`]: each role's
//!   transport (gRPC services and where its messages go);
//! * [`engine`]: the MPC engine's helper-to-helper transport (sessions of
//!   `sealroom-mpc` machines over pinned mutual-TLS streams);
//! * [`metrics`]: Prometheus metrics on a port of their own.
//!
//! ## What this crate must never do
//!
//! Decide anything the protocol decides (it only moves messages, keeps time
//! and stores state), accept a request whose certificate is not registered in
//! the federation under a role allowed for that call, relay a share through
//! the coordinator, or log, label or export a share, seed, key or input.

#![forbid(unsafe_code)]

pub mod audit_keys;
pub mod client_node;
pub mod config;
pub mod context;
pub mod coordinator_node;
pub mod directory;
pub mod driver;
pub mod engine;
pub mod grpc;
pub mod helper_node;
pub mod init;
pub mod local;
pub mod metrics;
pub mod pki;
pub mod record;
pub mod reload;
pub mod replay;
pub mod server;
pub mod shutdown;
pub mod tasks;
pub mod tls;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Durable state could not be read or written.
    #[error("store: {0}")]
    Store(#[from] sealroom_store::StoreError),
    /// TLS material or configuration refused.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The federation file names parties inconsistently.
    #[error("{0}")]
    Directory(#[from] directory::DirectoryError),
    /// Persisted helper state no longer verifies.
    #[error("restoring helper state: {0}")]
    Restore(#[from] sealroom_protocol::helper::HelperError),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The role needs a signing key and none was configured.
    #[error("this role needs a signing key (signing_key in the node config)")]
    MissingSigningKey,
    /// The node's signer could not sign.
    #[error("signer: {0}")]
    Signer(String),
    /// The OS random number generator failed.
    #[error("OS randomness: {0}")]
    Randomness(String),
    /// Socket errors.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The node's audit log does not verify; the node will not append to it
    /// unless the operator says so (`--accept-broken-audit-chain`).
    #[error(
        "the audit log is broken at entry {first}: {reason} ({bad} bad of {checked} entries \
         checked); refusing to start and append to it. Investigate first (docs/runbook.md, \
         \"Suspected tampering\"); to run on this log anyway, start the node with \
         --accept-broken-audit-chain, which records that decision in the log"
    )]
    AuditChainBroken {
        /// The first bad entry's sequence number.
        first: u64,
        /// What is wrong with it.
        reason: String,
        /// Bad entries that no earlier override names.
        bad: usize,
        /// Entries checked.
        checked: u64,
    },
}
