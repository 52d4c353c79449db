//! The one error type of the store.
//!
//! Variants name what an operator or the runtime can act on. None of them
//! carries stored or persisted *contents* (an upload, an envelope): only round
//! ids, client indices, table names and reasons. Database URLs appear only
//! with their password redacted.

use std::path::PathBuf;

/// Why the store could not open, persist or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An MPC engine key epoch already has keys here (they are written once).
    #[error("engine key epoch {epoch} already has keys on this helper")]
    EngineEpochExists {
        /// The epoch.
        epoch: u64,
    },
    /// A preprocessing batch with this id is already stored (produced twice).
    #[error("engine batch {batch} is already in this helper's pool")]
    EngineBatchExists {
        /// The batch id (hex).
        batch: String,
    },
    /// A preprocessing batch cannot be taken: unknown here, of another key
    /// epoch, or already consumed (a batch is used once, also across
    /// restarts). Nothing was taken.
    #[error("engine batch {batch} cannot be used: {reason}")]
    EngineBatchUnavailable {
        /// The batch id (hex).
        batch: String,
        /// Why.
        reason: String,
    },
    /// The location given to [`crate::Store::open`] cannot name a durable store.
    #[error("store location {location:?} is not usable: {reason}")]
    InvalidLocation {
        /// The location as given (URL password redacted).
        location: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL with a scheme the store does not speak.
    #[error(
        "unsupported store URL scheme {scheme:?}: give a file path, sqlite://PATH, postgres://… or postgresql://…"
    )]
    UnsupportedScheme {
        /// The scheme found (the part before `://`).
        scheme: String,
    },
    /// The directory of the SQLite file could not be created.
    #[error("cannot create directory {} for the SQLite store: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or connected to (missing permissions,
    /// server down, wrong credentials, a file that is not SQLite…).
    #[error("cannot open the {backend} store at {location}: {source}")]
    Open {
        /// `"sqlite"` or `"postgres"`.
        backend: &'static str,
        /// Path or URL (password redacted).
        location: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations failed, e.g. because the database was written by
    /// a newer sealroom (downgrades are not supported) or a shipped migration
    /// was edited.
    #[error("cannot migrate the {backend} store at {location} to this version's schema: {source}")]
    Migrate {
        /// `"sqlite"` or `"postgres"`.
        backend: &'static str,
        /// Path or URL (password redacted).
        location: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query or transaction failed in the database (disk full, connection
    /// lost, lock timeout…). Nothing of the failed operation was committed.
    #[error("{backend} store: {operation} failed: {source}")]
    Database {
        /// `"sqlite"` or `"postgres"`.
        backend: &'static str,
        /// What the store was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A round id above `i64::MAX`, which the store's 64-bit signed columns
    /// cannot hold (it is refused, never wrapped).
    #[error(
        "round id {round} is above the store's limit of {} (i64::MAX)",
        i64::MAX
    )]
    RoundIdOutOfRange {
        /// The round id.
        round: u64,
    },
    /// A [`sealroom_protocol::action::Persist::HelperRound`] whose descriptor
    /// body does not decode, so its round id is unknown.
    #[error("helper round descriptor does not decode: {reason}")]
    MalformedDescriptor {
        /// The decoder's reason.
        reason: String,
    },
    /// A round counter would not increase: round ids are strictly increasing
    /// per role (replay protection across restarts).
    #[error(
        "{role} round {round} is not above the last persisted {role} round {last}: refusing a non-increasing round id"
    )]
    RoundNotIncreasing {
        /// `"client"`, `"coordinator"` or `"helper"`.
        role: &'static str,
        /// The round id refused.
        round: u64,
        /// The highest round id already persisted.
        last: u64,
    },
    /// An upload or answer for a helper round the store does not hold (never
    /// persisted, or pruned).
    #[error("helper round {round} is not in the store (never persisted, or pruned)")]
    UnknownRound {
        /// The round id.
        round: u64,
    },
    /// A second upload for the same round and client. The helper never emits
    /// one, so this signals a bug in the runtime; the stored upload is kept.
    #[error(
        "helper round {round}: an upload from client {client} is already stored; refusing to overwrite it"
    )]
    DuplicateUpload {
        /// The round id.
        round: u64,
        /// The client index.
        client: u32,
    },
    /// The single-answer rule: the helper already recorded an answer to a
    /// different inclusion set for this round. Answering a second set would
    /// let a coordinator difference two sums and learn one client's input.
    #[error(
        "helper round {round} already answered a different inclusion set: refusing to record a second answer"
    )]
    AnswerConflict {
        /// The round id.
        round: u64,
    },
    /// The coordinator already persisted a different signed inclusion set for
    /// this round; the first one is kept.
    #[error(
        "coordinator round {round} already has a different signed inclusion set: refusing to replace it"
    )]
    InclusionConflict {
        /// The round id.
        round: u64,
    },
    /// A different final record is already stored for this round; the first
    /// one is kept.
    #[error(
        "coordinator round {round} already has a different final record ({existing}): refusing to replace it"
    )]
    OutcomeConflict {
        /// The round id.
        round: u64,
        /// The kind of the record already stored (`"result"` or `"abort"`).
        existing: String,
    },
    /// An outcome kind other than `"result"` or `"abort"`.
    #[error("outcome kind {kind:?} is neither \"result\" nor \"abort\"")]
    InvalidOutcomeKind {
        /// The kind given (at most 32 characters of it).
        kind: String,
    },
    /// A stored row that does not decode or breaks the schema's invariants:
    /// the database was damaged or edited by hand. Restore it from a backup,
    /// or inspect the named row.
    #[error("corrupt row in table {table} ({key}): {reason}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// Which row (its key, never its contents).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A [`sealroom_protocol::action::Persist`] variant this version of the
    /// store does not know: upgrade sealroom-store with sealroom-protocol.
    #[error(
        "this version of sealroom-store cannot persist this action: upgrade it together with sealroom-protocol"
    )]
    UnsupportedAction,
    /// A helper's report for a round that already has a different one.
    #[error("round {round}: a different report was already recorded")]
    ReportConflict {
        /// Round id.
        round: u64,
    },
    /// The node's signer could not sign a checkpoint or key entry.
    #[error(transparent)]
    Signer(#[from] sealroom_protocol::envelope::SignerError),
    /// The node's signing key is not the key its audit log names, and the key
    /// it replaces is not available to sign the rotation.
    #[error(
        "this node's signing key {current} is not the key its audit log names ({logged}); a key rotation must be signed by the key it replaces: keep it as `previous_signing_key` in the node's config until the node has started once with the new key"
    )]
    KeyRotationUnsigned {
        /// Key id the log names.
        logged: String,
        /// Key id of the key in use.
        current: String,
    },
}

/// Maps a driver error during `operation` to [`StoreError::Database`].
pub(crate) fn db(
    backend: &'static str,
    operation: &'static str,
) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError::Database {
        backend,
        operation,
        source,
    }
}

/// The constraint a driver error reports as violated, if any.
pub(crate) fn violated(error: &sqlx::Error) -> Option<sqlx::error::ErrorKind> {
    match error {
        sqlx::Error::Database(e) => Some(e.kind()),
        _ => None,
    }
}
