//! # sealroom-store
//!
//! Durable state of sealroom nodes (DESIGN.md §6), with sqlx on SQLite (a file
//! under the node's data dir, the embedded default) or PostgreSQL (a
//! `postgres://` URL, for deployments that outgrow one machine).
//!
//! ## What it owns
//!
//! * the **persistence of protocol state**: every
//!   [`Persist`](sealroom_protocol::action::Persist) action a state machine
//!   hands back is made durable by [`Store::apply`] — in one transaction,
//!   committed before it returns, so a runtime that awaits it before
//!   executing the step's later actions honours the ordering contract of
//!   [`sealroom_protocol::action`] ("the answer record is on disk before the
//!   answer leaves", "a receipt means the share is stored");
//! * what each role reads back after a restart: a helper's
//!   [`HelperState`](sealroom_protocol::helper::HelperState) for
//!   [`Helper::restore`](sealroom_protocol::helper::Helper::restore), a
//!   client's last round, a coordinator's next round id, the inclusion sets it
//!   signed and the final records of its rounds;
//! * the schema, as two sqlx migration sets with the same tables, one per
//!   dialect (`migrations/sqlite`, `migrations/postgres`), applied on open.
//!
//! The store enforces the invariants that keep the protocol's promises across
//! restarts, independently of the state machines: a helper records **at most
//! one** inclusion-set answer per round ([`StoreError::AnswerConflict`]),
//! round counters only increase ([`StoreError::RoundNotIncreasing`]), and
//! nothing stored is silently overwritten (uploads, inclusion sets, final
//! records).
//!
//! ## What it must never do
//!
//! * **Never log, format or put into an error a share** — uploads are handled
//!   as [`SecretBytes`](sealroom_protocol::action::SecretBytes) and read back
//!   into it at once; logs and errors carry round ids, client indices, table
//!   names and lengths, never row contents.
//! * Never print a database password: URLs are redacted in errors, logs and
//!   `Debug`.
//! * Never panic on stored data: a row that does not decode is a
//!   [`StoreError::CorruptRow`].
//! * Never make protocol decisions: it checks only what keeps the stored state
//!   consistent. Signatures and descriptor fields are verified by
//!   sealroom-protocol, which also re-verifies everything on restore.
//!
//! Known limits: bytes pass through sqlx's and the database's own buffers,
//! which are not zeroized. SQLite runs with `secure_delete` on, so pruned
//! shares are overwritten in the database file (older copies can linger in
//! the WAL until its next checkpoint); PostgreSQL keeps deleted rows until
//! `VACUUM`.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sealroom_protocol::action::Persist;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use audit::engine;
pub use audit::{
    Appended, ArchiveWrite, AuditEntry, AuditKind, AuditRecord, AuditSigner, AuditSummary,
    AuditViolation, OverrideSeen, StepWrite, unacknowledged, verify_chain,
};
pub use error::StoreError;
pub use sealroom_protocol::pb::SignedEnvelope;

/// Runs `$body` in a transaction on whichever pool `$store` has, commits it,
/// and evaluates to the body's value. A `?` in the body returns early and the
/// dropped transaction rolls back. `$sqlite_begin` / `$postgres_begin` are the
/// statements that open the transaction on each backend.
macro_rules! in_transaction {
    ($store:expr, $operation:expr, $sqlite_begin:literal, $postgres_begin:literal,
     |$tx:ident| $body:block) => {{
        let backend = $store.backend();
        let operation: &'static str = $operation;
        match &$store.pool {
            $crate::Pool::Sqlite(pool) => {
                let mut $tx = pool
                    .begin_with($sqlite_begin)
                    .await
                    .map_err($crate::error::db(backend, operation))?;
                let value = $body;
                $tx.commit()
                    .await
                    .map_err($crate::error::db(backend, operation))?;
                value
            }
            $crate::Pool::Postgres(pool) => {
                let mut $tx = pool
                    .begin_with($postgres_begin)
                    .await
                    .map_err($crate::error::db(backend, operation))?;
                let value = $body;
                $tx.commit()
                    .await
                    .map_err($crate::error::db(backend, operation))?;
                value
            }
        }
    }};
}

/// A write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
/// taken up front (waiting up to the busy timeout), so two concurrent writers
/// never fail upgrading a read lock. On PostgreSQL it is READ COMMITTED; the
/// statements are written to be correct under it (conditional updates and
/// constraints, not read-then-write).
macro_rules! write_transaction {
    ($store:expr, $operation:expr, |$tx:ident| $body:block) => {
        in_transaction!($store, $operation, "BEGIN IMMEDIATE", "BEGIN", |$tx| $body)
    };
}

/// A read transaction that sees one consistent snapshot on both backends.
macro_rules! read_transaction {
    ($store:expr, $operation:expr, |$tx:ident| $body:block) => {
        in_transaction!(
            $store,
            $operation,
            "BEGIN",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            |$tx| $body
        )
    };
}

/// Evaluates `$body` with `$pool` bound to whichever pool `$store` has.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// Within the open transaction `$tx`, raises `$role`'s round counter to
/// `$round`, or evaluates to [`StoreError::RoundNotIncreasing`] if it is not
/// above the stored one. One conditional upsert: correct under concurrency on
/// both backends.
macro_rules! advance_counter {
    ($tx:ident, $backend:expr, $role:expr, $round:expr) => {{
        let role: $crate::coordinator::Role = $role;
        let round: u64 = $round;
        let value = $crate::rows::to_sql_round(round)?;
        let operation = "advance a round counter";
        let done = sqlx::query(
            "INSERT INTO round_counters (role, last_round_id) VALUES ($1, $2) \
             ON CONFLICT (role) DO UPDATE SET last_round_id = excluded.last_round_id \
             WHERE round_counters.last_round_id < excluded.last_round_id",
        )
        .bind(role.as_str())
        .bind(value)
        .execute(&mut *$tx)
        .await
        .map_err($crate::error::db($backend, operation))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            let row = sqlx::query("SELECT last_round_id FROM round_counters WHERE role = $1")
                .bind(role.as_str())
                .fetch_one(&mut *$tx)
                .await
                .map_err($crate::error::db($backend, operation))?;
            let key = format!("role = {}", role.as_str());
            let last: i64 = $crate::rows::column(&row, "last_round_id", "round_counters", &key)?;
            Err(StoreError::RoundNotIncreasing {
                role: role.as_str(),
                round,
                last: $crate::rows::from_sql_round("round_counters", last)?,
            })
        }
    }};
}

/// Within the open transaction `$tx`, stores an accepted upload
/// ([`Persist::HelperUpload`]): its round must be stored, and a second upload
/// for the same round and client is refused.
macro_rules! insert_upload_in_tx {
    ($tx:ident, $backend:expr, $operation:expr, $round:expr, $client:expr, $upload:expr) => {{
        let round: u64 = $round;
        let client: u32 = $client;
        let id = $crate::rows::to_sql_round(round)?;
        let known = sqlx::query("SELECT 1 AS known FROM helper_rounds WHERE round_id = $1")
            .bind(id)
            .fetch_optional(&mut *$tx)
            .await
            .map_err($crate::error::db($backend, $operation))?;
        if known.is_none() {
            return Err(StoreError::UnknownRound { round });
        }
        let inserted = sqlx::query(
            "INSERT INTO helper_uploads (round_id, client_index, upload) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(i64::from(client))
        .bind($upload.expose())
        .execute(&mut *$tx)
        .await;
        if let Err(e) = inserted {
            return Err(match $crate::error::violated(&e) {
                Some(sqlx::error::ErrorKind::UniqueViolation) => {
                    StoreError::DuplicateUpload { round, client }
                }
                Some(sqlx::error::ErrorKind::ForeignKeyViolation) => {
                    StoreError::UnknownRound { round }
                }
                _ => $crate::error::db($backend, $operation)(e),
            });
        }
    }};
}

/// Within the open transaction `$tx`, makes one [`Persist`] action durable,
/// with the same refusals as [`Store::apply`].
macro_rules! persist_in_tx {
    ($tx:ident, $backend:expr, $operation:expr, $persist:expr) => {{
        let (backend, operation) = ($backend, $operation);
        match $persist {
            Persist::ClientRound { round_id } => {
                advance_counter!($tx, backend, $crate::coordinator::Role::Client, *round_id)?
            }
            Persist::CoordinatorRound { round_id } => advance_counter!(
                $tx,
                backend,
                $crate::coordinator::Role::Coordinator,
                *round_id
            )?,
            Persist::HelperRound {
                round_id,
                descriptor,
            } => {
                let named = $crate::rows::descriptor_round(descriptor).map_err(|e| {
                    StoreError::MalformedDescriptor {
                        reason: e.to_string(),
                    }
                })?;
                if named != *round_id {
                    return Err(StoreError::MalformedDescriptor {
                        reason: format!(
                            "descriptor of round {named} persisted as round {round_id}"
                        ),
                    });
                }
                advance_counter!($tx, backend, $crate::coordinator::Role::Helper, *round_id)?;
                sqlx::query("INSERT INTO helper_rounds (round_id, descriptor) VALUES ($1, $2)")
                    .bind($crate::rows::to_sql_round(*round_id)?)
                    .bind(prost::Message::encode_to_vec(descriptor))
                    .execute(&mut *$tx)
                    .await
                    .map_err($crate::error::db(backend, operation))?;
            }
            Persist::HelperUpload {
                round_id,
                client_index,
                upload,
            } => {
                insert_upload_in_tx!($tx, backend, operation, *round_id, *client_index, upload)
            }
            Persist::HelperReport { round_id, report } => {
                let encoded = prost::Message::encode_to_vec(report);
                set_once_in_tx!(
                    $tx,
                    backend,
                    operation,
                    "helper_rounds",
                    "report",
                    *round_id,
                    encoded,
                    StoreError::ReportConflict { round: *round_id }
                )
            }
            Persist::HelperAnswer {
                round_id,
                inclusion_hash,
            } => set_once_in_tx!(
                $tx,
                backend,
                operation,
                "helper_rounds",
                "answered_inclusion_hash",
                *round_id,
                inclusion_hash.0.to_vec(),
                StoreError::AnswerConflict { round: *round_id }
            ),
            Persist::CoordinatorInclusion {
                round_id,
                inclusion_set,
            } => {
                let id = $crate::rows::to_sql_round(*round_id)?;
                let encoded = prost::Message::encode_to_vec(inclusion_set);
                let inserted = sqlx::query(
                    "INSERT INTO coordinator_inclusions (round_id, inclusion_set) VALUES ($1, $2) \
                     ON CONFLICT (round_id) DO NOTHING",
                )
                .bind(id)
                .bind(encoded.as_slice())
                .execute(&mut *$tx)
                .await
                .map_err($crate::error::db(backend, operation))?;
                if inserted.rows_affected() == 0 {
                    let row = sqlx::query(
                        "SELECT inclusion_set FROM coordinator_inclusions WHERE round_id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err($crate::error::db(backend, operation))?;
                    let key = $crate::rows::round_key(*round_id);
                    let stored: Vec<u8> = $crate::rows::column(
                        &row,
                        "inclusion_set",
                        "coordinator_inclusions",
                        &key,
                    )?;
                    if stored != encoded {
                        return Err(StoreError::InclusionConflict { round: *round_id });
                    }
                }
            }
        }
    }};
}

/// Within the open transaction `$tx`, sets `$table.$column` of round
/// `$round` to `$value` if it is unset: the same value again is accepted (a
/// retried write), another one is `$conflict`, a missing round
/// [`StoreError::UnknownRound`]. One conditional update: correct under
/// concurrency on both backends.
macro_rules! set_once_in_tx {
    ($tx:ident, $backend:expr, $operation:expr, $table:literal, $column:literal, $round:expr,
     $value:expr, $conflict:expr) => {{
        let round: u64 = $round;
        let value: Vec<u8> = $value;
        let id = $crate::rows::to_sql_round(round)?;
        let updated = sqlx::query(concat!(
            "UPDATE ",
            $table,
            " SET ",
            $column,
            " = $2 WHERE round_id = $1 AND ",
            $column,
            " IS NULL"
        ))
        .bind(id)
        .bind(value.as_slice())
        .execute(&mut *$tx)
        .await
        .map_err($crate::error::db($backend, $operation))?;
        if updated.rows_affected() == 0 {
            let row = sqlx::query(concat!(
                "SELECT ",
                $column,
                " FROM ",
                $table,
                " WHERE round_id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *$tx)
            .await
            .map_err($crate::error::db($backend, $operation))?;
            let stored: Option<Vec<u8>> = match &row {
                Some(row) => {
                    $crate::rows::column(row, $column, $table, &$crate::rows::round_key(round))?
                }
                None => return Err(StoreError::UnknownRound { round }),
            };
            match stored {
                Some(stored) if stored == value => {}
                Some(_) => return Err($conflict),
                // Only possible if the row changed between the two statements.
                None => return Err(StoreError::UnknownRound { round }),
            }
        }
    }};
}

pub mod audit;
mod coordinator;
mod error;
mod helper;
mod rows;

#[cfg(test)]
mod tests;

/// How long a SQLite connection waits for another writer's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in a SQLite pool (readers run in parallel under WAL; writers
/// take turns).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections in a PostgreSQL pool.
const POSTGRES_MAX_CONNECTIONS: u32 = 8;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A node's durable state, on SQLite or PostgreSQL.
///
/// Cloning is cheap and shares the connection pool. Every method is one
/// transaction (or one statement); concurrent calls from several tasks are
/// safe.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Path or URL with any password redacted, for logs and errors.
    location: String,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens (creating if missing, parent directories too) the SQLite store
    /// at `path` and brings its schema up to date.
    ///
    /// The database runs in WAL mode with `synchronous=FULL` (a committed
    /// transaction survives power loss), foreign keys on, `secure_delete` on,
    /// and a busy timeout so concurrent writers wait rather than fail.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let location = path.display().to_string();
        if path.as_os_str().is_empty() {
            return Err(StoreError::InvalidLocation {
                location,
                reason: "the SQLite path is empty",
            });
        }
        if path.as_os_str() == ":memory:" {
            return Err(StoreError::InvalidLocation {
                location,
                reason: "an in-memory database is not durable",
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                backend: "sqlite",
                location: location.clone(),
                source,
            })?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "sqlite",
                location: location.clone(),
                source,
            })?;
        tracing::info!(backend = "sqlite", location = %location, "store opened");
        let store = Store {
            pool: Pool::Sqlite(pool),
            location,
        };
        store.backfill_audit_digests().await?;
        Ok(store)
    }

    /// Opens the store named by `url_or_path` and brings its schema up to
    /// date: `postgres://…` or `postgresql://…` selects PostgreSQL;
    /// `sqlite://PATH`, `sqlite:PATH` or a bare path selects SQLite (see
    /// [`Store::open_sqlite`]). Any other `scheme://` is refused.
    pub async fn open(url_or_path: &str) -> Result<Store, StoreError> {
        if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
            return Store::open_postgres(url_or_path).await;
        }
        let path = url_or_path
            .strip_prefix("sqlite://")
            .or_else(|| url_or_path.strip_prefix("sqlite:"))
            .unwrap_or(url_or_path);
        if path == url_or_path
            && let Some((scheme, _)) = url_or_path.split_once("://")
        {
            return Err(StoreError::UnsupportedScheme {
                scheme: scheme.chars().take(32).collect(),
            });
        }
        Store::open_sqlite(Path::new(path)).await
    }

    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let location = redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
            backend: "postgres",
            location: location.clone(),
            source,
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                backend: "postgres",
                location: location.clone(),
                source,
            })?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "postgres",
                location: location.clone(),
                source,
            })?;
        tracing::info!(backend = "postgres", location = %location, "store opened");
        let store = Store {
            pool: Pool::Postgres(pool),
            location,
        };
        store.backfill_audit_digests().await?;
        Ok(store)
    }

    /// Makes one [`Persist`] action durable: one transaction, committed before
    /// this returns. The caller must not execute the step's later actions
    /// (send anything) until it has returned `Ok`.
    ///
    /// Refused, with nothing written: a round id above `i64::MAX`; a
    /// non-increasing client, coordinator or helper round; an upload, report
    /// or answer for a round not stored; a second upload for the same round
    /// and client; a report or an answer different from the one already
    /// recorded for the round (re-recording the same one is accepted); a
    /// different inclusion set for a coordinator round that has one.
    pub async fn apply(&self, persist: &Persist) -> Result<(), StoreError> {
        self.commit(&[persist], None, &[], None, None).await?;
        Ok(())
    }

    /// Which backend this store runs on: `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes the connection pool, waiting for connections in use to be
    /// returned. Later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

impl fmt::Debug for Store {
    /// Backend and location only (a URL's password is redacted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("location", &self.location)
            .finish()
    }
}

/// `url` without its password and query string (which may carry one too).
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let query = if url.contains('?') { "?…" } else { "" };
    format!("{scheme}://{authority}{path}{query}")
}
