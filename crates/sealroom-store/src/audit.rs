//! The signed, hash-chained audit log and the replay archive (DESIGN.md §6).
//!
//! **Audit log.** Every signed artifact a node issues or accepts — round
//! descriptors, receipts, helper reports, inclusion sets, results, aborts
//! with their reason, the node's own key — is appended as an entry holding
//! its sequence number, time, kind, round id, the encoded signed envelope and
//! the hash of the previous entry. Every [`CHECKPOINT_EVERY`] entries and at
//! the end of each round the node appends a checkpoint signed with its key
//! over the chain so far. An append is one transaction: a crash leaves
//! either the whole step or none of it. [`verify_chain`] re-checks the chain,
//! every signature and every checkpoint, and names the first bad entry.
//!
//! Entries hold only signed protocol artifacts, which carry identities,
//! indices, digests and (for results) the released aggregate — never a
//! share, a seed, a key's secret half or an input.
//!
//! **Replay archive.** What a role's state machine consumed in a round (an
//! encoded [`pb::ArchivedStep`] per step), so that `sealroom replay` can run
//! it again. It holds this node's own shares, seeds and inputs only, and is
//! pruned like the helper's uploads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prost::Message as _;
use sealroom_protocol::envelope::{SignedMessage, VerifyingKey, claimed_key_id, decode_limited};
use sealroom_protocol::{Digest, SigningKey, pb};

use crate::error::db;
use crate::rows::{column, from_sql_round, to_sql_round};
use crate::{Store, StoreError};

/// A signed checkpoint is appended after this many entries without one.
pub const CHECKPOINT_EVERY: u64 = 64;
/// Largest artifact the verifier decodes (a descriptor with its params and
/// up to 10⁵ clients fits comfortably).
const MAX_ARTIFACT: usize = 8 << 20;
const HASH_CONTEXT: &str = "sealroom 2026-11 audit entry v1";
const AUDIT: &str = "audit_log";
const ARCHIVE: &str = "round_archive";

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditKind {
    /// The node's signing key and the federation's signer keys.
    Key,
    /// A round descriptor (signed by the coordinator).
    Descriptor,
    /// A receipt for an upload (signed by a helper).
    Receipt,
    /// A helper's report of the uploads it holds.
    Report,
    /// An inclusion set (signed by the coordinator).
    InclusionSet,
    /// A released result (signed by the coordinator).
    Result,
    /// An abort record with its reason (signed by the coordinator).
    Abort,
    /// The node's signature over the chain so far.
    Checkpoint,
}

impl AuditKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AuditKind; 8] = [
        AuditKind::Key,
        AuditKind::Descriptor,
        AuditKind::Receipt,
        AuditKind::Report,
        AuditKind::InclusionSet,
        AuditKind::Result,
        AuditKind::Abort,
        AuditKind::Checkpoint,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Key => "key",
            AuditKind::Descriptor => "descriptor",
            AuditKind::Receipt => "receipt",
            AuditKind::Report => "report",
            AuditKind::InclusionSet => "inclusion_set",
            AuditKind::Result => "result",
            AuditKind::Abort => "abort",
            AuditKind::Checkpoint => "checkpoint",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An artifact to append.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// What it is.
    pub kind: AuditKind,
    /// The round it belongs to.
    pub round_id: Option<u64>,
    /// The signed artifact.
    pub artifact: pb::SignedEnvelope,
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number, from 0 without gaps.
    pub seq: u64,
    /// The node's clock when appended (Unix milliseconds).
    pub at_ms: u64,
    /// Kind as stored (see [`AuditKind`]).
    pub kind: String,
    /// Round id, for round artifacts.
    pub round_id: Option<u64>,
    /// The encoded signed envelope.
    pub artifact: Vec<u8>,
    /// The previous entry's hash (zeros for the first).
    pub prev_hash: [u8; 32],
    /// This entry's hash ([`entry_hash`]).
    pub hash: [u8; 32],
}

/// The chain hash of an entry: BLAKE3 (derive-key mode) over its fields,
/// each length-prefixed, and the previous entry's hash.
pub fn entry_hash(
    seq: u64,
    at_ms: u64,
    kind: &str,
    round_id: Option<u64>,
    artifact: &[u8],
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(HASH_CONTEXT);
    h.update(&seq.to_le_bytes());
    h.update(&at_ms.to_le_bytes());
    h.update(&(kind.len() as u64).to_le_bytes());
    h.update(kind.as_bytes());
    match round_id {
        Some(r) => h.update(&[1]).update(&r.to_le_bytes()),
        None => h.update(&[0]),
    };
    h.update(&(artifact.len() as u64).to_le_bytes());
    h.update(artifact);
    h.update(prev_hash);
    *h.finalize().as_bytes()
}

/// The key a node signs its checkpoints with.
#[derive(Clone, Debug)]
pub struct AuditSigner {
    /// The node's name.
    pub node: String,
    /// Its signing key (`Debug` redacted).
    pub key: SigningKey,
}

/// What one [`Store::record`] call appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Audit entries appended, checkpoints included.
    pub entries: u64,
    /// The time of the last checkpoint appended, if any (Unix milliseconds).
    pub checkpoint_at_ms: Option<u64>,
}

/// One step for the replay archive.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveWrite<'a> {
    /// Round.
    pub round_id: u64,
    /// `"client"`, `"coordinator"` or `"helper"`.
    pub role: &'static str,
    /// The step (may hold this node's own secrets).
    pub step: &'a pb::ArchivedStep,
}

struct NewRow {
    seq: i64,
    at_ms: i64,
    kind: &'static str,
    round_id: Option<i64>,
    artifact: Vec<u8>,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn to_sql(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::CorruptRow {
        table: AUDIT,
        key: what.into(),
        reason: format!("{value} does not fit a 64-bit signed column"),
    })
}

fn hash_of(bytes: &[u8], seq: i64) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::CorruptRow {
        table: AUDIT,
        key: format!("seq = {seq}"),
        reason: format!("a hash of {} bytes", bytes.len()),
    })
}

/// The rows to insert after `head` (the last entry's seq and hash):
/// `records`, with a signed checkpoint whenever [`CHECKPOINT_EVERY`] entries
/// have gone unsigned and, if `end_of_round` is given, one at the end.
fn plan_append(
    head: Option<(u64, [u8; 32])>,
    last_checkpoint: Option<u64>,
    records: &[AuditRecord],
    signer: Option<&AuditSigner>,
    end_of_round: Option<u64>,
    at_ms: u64,
) -> Result<(Vec<NewRow>, Appended), StoreError> {
    let mut next = head.map_or(0, |(seq, _)| seq + 1);
    let mut prev = head.map_or([0; 32], |(_, hash)| hash);
    let mut unsigned = next - last_checkpoint.map_or(0, |c| c + 1);
    let mut rows = Vec::new();
    let mut appended = Appended::default();
    let mut push = |kind: AuditKind,
                    round: Option<u64>,
                    artifact: Vec<u8>,
                    next: &mut u64,
                    prev: &mut [u8; 32]|
     -> Result<(), StoreError> {
        let hash = entry_hash(*next, at_ms, kind.as_str(), round, &artifact, prev);
        rows.push(NewRow {
            seq: to_sql(*next, "seq")?,
            at_ms: to_sql(at_ms, "at_ms")?,
            kind: kind.as_str(),
            round_id: round.map(to_sql_round).transpose()?,
            artifact,
            prev_hash: *prev,
            hash,
        });
        *next += 1;
        *prev = hash;
        Ok(())
    };
    let checkpoint = |signer: &AuditSigner, round: Option<u64>, next: u64, prev: [u8; 32]| {
        signer
            .key
            .sign(&pb::AuditCheckpoint {
                seq: next - 1,
                head_hash: prev.to_vec(),
                at_ms,
                node: signer.node.clone(),
                round_id: round.unwrap_or(0),
            })
            .encode_to_vec()
    };
    for record in records {
        push(
            record.kind,
            record.round_id,
            record.artifact.encode_to_vec(),
            &mut next,
            &mut prev,
        )?;
        unsigned += 1;
        if let Some(signer) = signer
            && unsigned >= CHECKPOINT_EVERY
        {
            let artifact = checkpoint(signer, None, next, prev);
            push(AuditKind::Checkpoint, None, artifact, &mut next, &mut prev)?;
            unsigned = 0;
            appended.checkpoint_at_ms = Some(at_ms);
        }
    }
    if let (Some(signer), Some(round)) = (signer, end_of_round)
        && next > 0
    {
        let artifact = checkpoint(signer, Some(round), next, prev);
        push(
            AuditKind::Checkpoint,
            Some(round),
            artifact,
            &mut next,
            &mut prev,
        )?;
        appended.checkpoint_at_ms = Some(at_ms);
    }
    appended.entries = rows.len() as u64;
    Ok((rows, appended))
}

fn entry_from_row<R>(row: &R) -> Result<AuditEntry, StoreError>
where
    R: sqlx::Row,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let seq: i64 = column(row, "seq", AUDIT, "key unreadable")?;
    let key = format!("seq = {seq}");
    let corrupt = |reason: &str| StoreError::CorruptRow {
        table: AUDIT,
        key: key.clone(),
        reason: reason.into(),
    };
    let at_ms: i64 = column(row, "at_ms", AUDIT, &key)?;
    let round: Option<i64> = column(row, "round_id", AUDIT, &key)?;
    let prev: Vec<u8> = column(row, "prev_hash", AUDIT, &key)?;
    let hash: Vec<u8> = column(row, "hash", AUDIT, &key)?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative seq"))?,
        at_ms: u64::try_from(at_ms).map_err(|_| corrupt("negative time"))?,
        kind: column(row, "kind", AUDIT, &key)?,
        round_id: round.map(|r| from_sql_round(AUDIT, r)).transpose()?,
        artifact: column(row, "artifact", AUDIT, &key)?,
        prev_hash: hash_of(&prev, seq)?,
        hash: hash_of(&hash, seq)?,
    })
}

/// A step to record, encoded before its transaction opens.
struct PreparedStep<'a> {
    archive_row: Option<(i64, &'static str, Vec<u8>)>,
    audit: &'a [AuditRecord],
    signer: Option<&'a AuditSigner>,
    end_of_round: Option<u64>,
    at_ms: u64,
}

impl<'a> PreparedStep<'a> {
    fn new(
        archive: Option<ArchiveWrite<'_>>,
        audit: &'a [AuditRecord],
        signer: Option<&'a AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<PreparedStep<'a>, StoreError> {
        let archive_row = archive
            .map(|a| {
                Ok::<_, StoreError>((to_sql_round(a.round_id)?, a.role, a.step.encode_to_vec()))
            })
            .transpose()?;
        Ok(PreparedStep {
            archive_row,
            audit,
            signer,
            end_of_round,
            at_ms: now_ms(),
        })
    }

    /// Whether the step appends to the audit log (artifacts, or a signed
    /// end-of-round checkpoint).
    fn wants_audit(&self) -> bool {
        !self.audit.is_empty() || (self.end_of_round.is_some() && self.signer.is_some())
    }
}

/// The body of [`Store::record`] within the open transaction `$tx`, for a
/// [`PreparedStep`]; evaluates to the [`Appended`] counts.
macro_rules! record_in_tx {
    ($tx:ident, $backend:expr, $operation:expr, $step:expr) => {{
        let (backend, operation, step): (_, _, &PreparedStep<'_>) = ($backend, $operation, &$step);
        let (archive_row, wants_audit) = (&step.archive_row, step.wants_audit());
        let (audit, signer, end_of_round, at_ms) =
            (step.audit, step.signer, step.end_of_round, step.at_ms);
        if let Some((round, role, data)) = &archive_row {
            sqlx::query(
                "INSERT INTO round_archive (round_id, step, role, data) \
                 SELECT $1, COALESCE(MAX(step) + 1, 0), $2, $3 FROM round_archive \
                 WHERE round_id = $4",
            )
            .bind(round)
            .bind(*role)
            .bind(data.as_slice())
            .bind(round)
            .execute(&mut *$tx)
            .await
            .map_err(db(backend, operation))?;
        }
        if wants_audit {
            let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *$tx)
                .await
                .map_err(db(backend, operation))?;
            let head = match head {
                Some(row) => {
                    let seq: i64 = column(&row, "seq", AUDIT, "head")?;
                    let hash: Vec<u8> = column(&row, "hash", AUDIT, "head")?;
                    Some((u64::try_from(seq).unwrap_or_default(), hash_of(&hash, seq)?))
                }
                None => None,
            };
            let last_checkpoint: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM audit_log WHERE kind = 'checkpoint'")
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err(db(backend, operation))?;
            let (rows, appended) = plan_append(
                head,
                last_checkpoint.and_then(|c| u64::try_from(c).ok()),
                audit,
                signer,
                end_of_round,
                at_ms,
            )?;
            for row in &rows {
                sqlx::query(
                    "INSERT INTO audit_log (seq, at_ms, kind, round_id, artifact, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(row.seq)
                .bind(row.at_ms)
                .bind(row.kind)
                .bind(row.round_id)
                .bind(row.artifact.as_slice())
                .bind(row.prev_hash.as_slice())
                .bind(row.hash.as_slice())
                .execute(&mut *$tx)
                .await
                .map_err(db(backend, operation))?;
            }
            appended
        } else {
            Appended::default()
        }
    }};
}

impl Store {
    /// Records one state-machine step in one transaction: its replay-archive
    /// row (if given) and its audit entries, followed by a signed checkpoint
    /// whenever [`CHECKPOINT_EVERY`] entries have gone unsigned and, if
    /// `end_of_round` is given, one marking that round's end. Checkpoints need
    /// `signer`; without one (clients) only the chain is kept.
    pub async fn record(
        &self,
        archive: Option<ArchiveWrite<'_>>,
        audit: &[AuditRecord],
        signer: Option<&AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<Appended, StoreError> {
        let backend = self.backend();
        let operation = "record a step in the audit log and archive";
        let step = PreparedStep::new(archive, audit, signer, end_of_round)?;
        let appended = write_transaction!(self, operation, |tx| {
            record_in_tx!(tx, backend, operation, step)
        });
        Ok(appended)
    }

    /// Makes `persist` durable and records its step (see [`Store::record`])
    /// — for an accepted upload (the helper's hot path) or a client's round
    /// in one transaction and one fsync; other actions in two.
    pub async fn apply_and_record(
        &self,
        persist: &sealroom_protocol::action::Persist,
        archive: Option<ArchiveWrite<'_>>,
        audit: &[AuditRecord],
        signer: Option<&AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<Appended, StoreError> {
        use sealroom_protocol::action::Persist;
        let backend = self.backend();
        let (round_id, client_index, upload) = match persist {
            Persist::HelperUpload {
                round_id,
                client_index,
                upload,
            } => (*round_id, *client_index, upload),
            Persist::ClientRound { round_id } => {
                let role = crate::coordinator::Role::Client;
                return self
                    .advance_and_record(role, *round_id, archive, audit, signer, end_of_round)
                    .await;
            }
            Persist::CoordinatorRound { round_id } => {
                let role = crate::coordinator::Role::Coordinator;
                return self
                    .advance_and_record(role, *round_id, archive, audit, signer, end_of_round)
                    .await;
            }
            other => {
                self.apply(other).await?;
                return self.record(archive, audit, signer, end_of_round).await;
            }
        };
        let operation = "persist a helper upload and record its step";
        let step = PreparedStep::new(archive, audit, signer, end_of_round)?;
        let appended = write_transaction!(self, operation, |tx| {
            insert_upload_in_tx!(tx, backend, operation, round_id, client_index, upload);
            record_in_tx!(tx, backend, operation, step)
        });
        tracing::debug!(
            backend,
            round = round_id,
            client = client_index,
            bytes = upload.len(),
            "helper upload persisted and recorded"
        );
        Ok(appended)
    }

    /// Raises `role`'s round counter to `round` and records the step, in one
    /// transaction.
    async fn advance_and_record(
        &self,
        role: crate::coordinator::Role,
        round: u64,
        archive: Option<ArchiveWrite<'_>>,
        audit: &[AuditRecord],
        signer: Option<&AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<Appended, StoreError> {
        let backend = self.backend();
        let operation = "persist a round counter and record its step";
        let step = PreparedStep::new(archive, audit, signer, end_of_round)?;
        let appended = write_transaction!(self, operation, |tx| {
            advance_counter!(tx, backend, role, round)?;
            record_in_tx!(tx, backend, operation, step)
        });
        Ok(appended)
    }

    /// Appends `key` (signed by `signer`) unless the last key entry already
    /// says the same (ignoring its time). Returns whether it appended.
    pub async fn audit_register_key(
        &self,
        key: &pb::AuditKey,
        signer: &AuditSigner,
    ) -> Result<bool, StoreError> {
        let last = self.audit_last_of(AuditKind::Key).await?;
        let same = last
            .and_then(|e| pb::SignedEnvelope::decode(e.artifact.as_slice()).ok())
            .and_then(|env| pb::AuditKey::decode(env.body.as_slice()).ok())
            .is_some_and(|old| {
                pb::AuditKey { at_ms: 0, ..old }
                    == pb::AuditKey {
                        at_ms: 0,
                        ..key.clone()
                    }
            });
        if same {
            return Ok(false);
        }
        let record = AuditRecord {
            kind: AuditKind::Key,
            round_id: None,
            artifact: signer.key.sign(key),
        };
        self.record(None, &[record], Some(signer), None).await?;
        Ok(true)
    }

    async fn audit_last_of(&self, kind: AuditKind) -> Result<Option<AuditEntry>, StoreError> {
        let backend = self.backend();
        let operation = "read the audit log";
        let row = with_pool!(self, |pool| {
            match sqlx::query(
                "SELECT seq, at_ms, kind, round_id, artifact, prev_hash, hash FROM audit_log \
                 WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(kind.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db(backend, operation))?
            {
                Some(row) => Some(entry_from_row(&row)?),
                None => None,
            }
        });
        Ok(row)
    }

    /// The audit log in sequence order: all of it, or one round's entries.
    pub async fn audit_entries(&self, round: Option<u64>) -> Result<Vec<AuditEntry>, StoreError> {
        let backend = self.backend();
        let operation = "read the audit log";
        let round = round.map(to_sql_round).transpose()?;
        let entries = with_pool!(self, |pool| {
            let rows = match round {
                Some(r) => {
                    sqlx::query(
                        "SELECT seq, at_ms, kind, round_id, artifact, prev_hash, hash \
                         FROM audit_log WHERE round_id = $1 ORDER BY seq",
                    )
                    .bind(r)
                    .fetch_all(pool)
                    .await
                }
                None => {
                    sqlx::query(
                        "SELECT seq, at_ms, kind, round_id, artifact, prev_hash, hash \
                         FROM audit_log ORDER BY seq",
                    )
                    .fetch_all(pool)
                    .await
                }
            }
            .map_err(db(backend, operation))?;
            rows.iter()
                .map(entry_from_row)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(entries)
    }

    /// One upload a helper stored (what its archive refers to), if it is
    /// still kept.
    pub async fn helper_upload(
        &self,
        round: u64,
        client_index: u32,
    ) -> Result<Option<sealroom_protocol::action::SecretBytes>, StoreError> {
        let backend = self.backend();
        let operation = "read a stored upload";
        let id = to_sql_round(round)?;
        let bytes: Option<Vec<u8>> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT upload FROM helper_uploads WHERE round_id = $1 AND client_index = $2",
            )
            .bind(id)
            .bind(i64::from(client_index))
            .fetch_optional(pool)
            .await
            .map_err(db(backend, operation))?
        });
        Ok(bytes.map(sealroom_protocol::action::SecretBytes::new))
    }

    /// The time of the last signed checkpoint (Unix milliseconds), if any.
    pub async fn audit_last_checkpoint_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .audit_last_of(AuditKind::Checkpoint)
            .await?
            .map(|e| e.at_ms))
    }

    /// Rounds this node's other tables say it took part in but whose
    /// artifacts are missing from its audit log — what a log cut short
    /// after its last checkpoint leaves behind. Each item names the round
    /// and what is missing. Rounds below the first round the log names
    /// predate the log and are not reported; a log that names no round at
    /// all is checked against every stored round.
    pub async fn audit_gaps(&self, entries: &[AuditEntry]) -> Result<Vec<String>, StoreError> {
        let backend = self.backend();
        let operation = "cross-check the audit log";
        // Rounds below the first one the log names predate it (a node
        // upgraded from a version without the audit log): not gaps.
        let first_logged = entries
            .iter()
            .filter_map(|e| e.round_id)
            .min()
            .map_or(i64::MIN, |r| i64::try_from(r).unwrap_or(i64::MAX));
        let has = |kind: &str, round: i64| {
            round < first_logged
                || entries
                    .iter()
                    .any(|e| e.kind == kind && e.round_id.map(|r| r as i64) == Some(round))
        };
        let (outcomes, helper_rounds, counters): StoredRounds = with_pool!(self, |pool| {
            let outcomes = sqlx::query_as("SELECT round_id, kind FROM coordinator_outcomes")
                .fetch_all(pool)
                .await
                .map_err(db(backend, operation))?;
            let helper_rounds = sqlx::query_scalar("SELECT round_id FROM helper_rounds")
                .fetch_all(pool)
                .await
                .map_err(db(backend, operation))?;
            let counters = sqlx::query_as(
                "SELECT role, last_round_id FROM round_counters WHERE role <> 'client'",
            )
            .fetch_all(pool)
            .await
            .map_err(db(backend, operation))?;
            (outcomes, helper_rounds, counters)
        });
        let mut gaps = Vec::new();
        for (round, kind) in outcomes {
            if !has(&kind, round) {
                gaps.push(format!(
                    "round {round}: the stored {kind} record is not in the audit log"
                ));
            }
        }
        for round in helper_rounds {
            if !has("descriptor", round) {
                gaps.push(format!(
                    "round {round}: the accepted descriptor is not in the audit log"
                ));
            }
        }
        for (role, round) in counters {
            if round > 0
                && !has("descriptor", round)
                && !gaps
                    .iter()
                    .any(|g| g.starts_with(&format!("round {round}:")))
            {
                gaps.push(format!(
                    "round {round}: the {role}'s last round has no descriptor in the audit log"
                ));
            }
        }
        Ok(gaps)
    }

    /// The replay archive of `round`: (role, step) in the order recorded.
    pub async fn archived_steps(
        &self,
        round: u64,
    ) -> Result<Vec<(String, pb::ArchivedStep)>, StoreError> {
        let backend = self.backend();
        let operation = "read the round archive";
        let id = to_sql_round(round)?;
        let rows: Vec<(i64, String, Vec<u8>)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT step, role, data FROM round_archive WHERE round_id = $1 ORDER BY step",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db(backend, operation))?
        });
        rows.into_iter()
            .map(|(step, role, data)| {
                pb::ArchivedStep::decode(data.as_slice())
                    .map(|s| (role, s))
                    .map_err(|e| StoreError::CorruptRow {
                        table: ARCHIVE,
                        key: format!("round_id = {round}, step = {step}"),
                        reason: format!("archived step does not decode: {e}"),
                    })
            })
            .collect()
    }

    /// Round ids with an archive, ascending.
    pub async fn archived_rounds(&self) -> Result<Vec<u64>, StoreError> {
        let backend = self.backend();
        let operation = "list archived rounds";
        let ids: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT DISTINCT round_id FROM round_archive ORDER BY round_id")
                .fetch_all(pool)
                .await
                .map_err(db(backend, operation))?
        });
        ids.into_iter()
            .map(|r| from_sql_round(ARCHIVE, r))
            .collect()
    }

    /// Deletes the archives of all but the newest `keep` rounds; returns the
    /// rows deleted.
    pub async fn prune_archive(&self, keep: usize) -> Result<u64, StoreError> {
        let backend = self.backend();
        let operation = "prune the round archive";
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let done = with_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM round_archive WHERE round_id NOT IN \
                 (SELECT DISTINCT round_id FROM round_archive ORDER BY round_id DESC LIMIT $1)",
            )
            .bind(keep)
            .execute(pool)
            .await
            .map_err(db(backend, operation))?
            .rows_affected()
        });
        Ok(done)
    }
}

/// (round, kind) of stored outcomes; accepted helper rounds; (role, last
/// round) counters.
type StoredRounds = (Vec<(i64, String)>, Vec<i64>, Vec<(String, i64)>);

/// A signer named in a key entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySeen {
    /// `"coordinator"` or `"helper"`.
    pub role: String,
    /// Party name.
    pub name: String,
    /// Key id (hex).
    pub key_id: String,
    /// Whether this is the log owner's own key.
    pub own: bool,
}

/// What [`verify_chain`] found.
#[derive(Clone, Debug, Default)]
pub struct AuditSummary {
    /// Entries checked.
    pub entries: u64,
    /// Entries by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Distinct rounds.
    pub rounds: BTreeSet<u64>,
    /// Aborts by reason (e.g. `not_enough_clients`).
    pub aborts: BTreeMap<String, u64>,
    /// Sequence number of the last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Time of the last checkpoint (Unix milliseconds).
    pub last_checkpoint_at_ms: Option<u64>,
    /// Entries after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
    /// The log owner (from its key entries).
    pub node: Option<(String, String)>,
    /// Keys named by key entries.
    pub keys: Vec<KeySeen>,
}

/// The first bad entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct AuditViolation {
    /// Its sequence number (the expected one, for a gap).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

#[derive(Default)]
struct Keys {
    own: Option<VerifyingKey>,
    own_role: String,
    coordinator: Vec<VerifyingKey>,
    helpers: Vec<VerifyingKey>,
}

fn verify_as<M: SignedMessage + Clone>(
    env: &pb::SignedEnvelope,
    keys: &[VerifyingKey],
) -> Result<M, String> {
    let id = claimed_key_id(env).map_err(|e| e.to_string())?;
    let key = keys
        .iter()
        .find(|k| k.key_id() == id)
        .ok_or_else(|| format!("signed by key {} that no key entry names", id.to_hex()))?;
    key.verify::<M>(env)
        .map(|v| v.message().clone())
        .map_err(|e| e.to_string())
}

/// Re-checks `entries` (the whole log, in sequence order): sequence numbers
/// from 0 without gaps, every entry's hash and link to the previous one,
/// every artifact's signature against the keys the log's key entries name,
/// each artifact's round against its entry's, each checkpoint against the
/// chain it covers, and no artifact twice. Returns the summary so far and
/// the first violation, if any.
pub fn verify_chain(entries: &[AuditEntry]) -> (AuditSummary, Option<AuditViolation>) {
    let mut summary = AuditSummary::default();
    let mut keys = Keys::default();
    let mut prev = [0u8; 32];
    let mut seen = BTreeSet::new();
    let mut since_checkpoint = 0u64;
    for (expected, entry) in entries.iter().enumerate() {
        let expected = expected as u64;
        let fail = |reason: String| AuditViolation {
            seq: entry.seq,
            reason,
        };
        if entry.seq != expected {
            let reason = if entry.seq > expected {
                format!(
                    "sequence jumps from {} to {}: entry {expected} was deleted",
                    expected.wrapping_sub(1),
                    entry.seq
                )
            } else {
                format!("sequence number {} out of order", entry.seq)
            };
            return (
                summary,
                Some(AuditViolation {
                    seq: expected,
                    reason,
                }),
            );
        }
        if entry.prev_hash != prev {
            return (
                summary,
                Some(fail(
                    "does not link to the entry before it (an entry was deleted, inserted or reordered)"
                        .into(),
                )),
            );
        }
        let hash = entry_hash(
            entry.seq,
            entry.at_ms,
            &entry.kind,
            entry.round_id,
            &entry.artifact,
            &entry.prev_hash,
        );
        if hash != entry.hash {
            return (
                summary,
                Some(fail(
                    "its contents do not match its hash (the entry was edited)".into(),
                )),
            );
        }
        if let Err(reason) = check_artifact(entry, &prev, &mut keys, &mut summary) {
            return (summary, Some(fail(reason)));
        }
        if !seen.insert(*blake3::hash(&entry.artifact).as_bytes()) {
            return (
                summary,
                Some(fail("repeats an artifact already in the log".into())),
            );
        }
        prev = entry.hash;
        summary.entries += 1;
        *summary.by_kind.entry(entry.kind.clone()).or_default() += 1;
        if let Some(r) = entry.round_id {
            summary.rounds.insert(r);
        }
        if entry.kind == AuditKind::Checkpoint.as_str() {
            summary.last_checkpoint = Some(entry.seq);
            summary.last_checkpoint_at_ms = Some(entry.at_ms);
            since_checkpoint = 0;
        } else {
            since_checkpoint += 1;
        }
    }
    summary.unsigned_tail = since_checkpoint;
    (summary, None)
}

fn check_artifact(
    entry: &AuditEntry,
    prev_hash: &[u8; 32],
    keys: &mut Keys,
    summary: &mut AuditSummary,
) -> Result<(), String> {
    let kind =
        AuditKind::parse(&entry.kind).ok_or_else(|| format!("unknown kind {:?}", entry.kind))?;
    let env: pb::SignedEnvelope = decode_limited(&entry.artifact, MAX_ARTIFACT)
        .map_err(|e| format!("artifact does not decode: {e}"))?;
    let own: Vec<VerifyingKey> = keys.own.into_iter().collect();
    let round = |r: u64| -> Result<(), String> {
        if entry.round_id == Some(r) {
            Ok(())
        } else {
            Err(format!(
                "its artifact is for round {r} but the entry says {:?}",
                entry.round_id
            ))
        }
    };
    match kind {
        AuditKind::Key => {
            let body = pb::AuditKey::decode(env.body.as_slice())
                .map_err(|e| format!("key entry does not decode: {e}"))?;
            let bytes: [u8; 32] = body
                .verifying_key
                .as_slice()
                .try_into()
                .map_err(|_| "key entry holds a malformed key".to_string())?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
            verify_as::<pb::AuditKey>(&env, &[key])?;
            let mut next = Keys {
                own: Some(key),
                own_role: body.role.clone(),
                ..Keys::default()
            };
            summary.node = Some((body.role.clone(), body.node.clone()));
            push_key(summary, &body.role, &body.node, &key, true);
            for peer in &body.peers {
                let bytes: [u8; 32] = peer
                    .verifying_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| format!("key entry: malformed key for {:?}", peer.name))?;
                let key = VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
                match peer.role.as_str() {
                    "coordinator" => next.coordinator.push(key),
                    "helper" => next.helpers.push(key),
                    other => return Err(format!("key entry: unknown role {other:?}")),
                }
                push_key(summary, &peer.role, &peer.name, &key, false);
            }
            *keys = next;
            Ok(())
        }
        AuditKind::Checkpoint => {
            if own.is_empty() {
                return Err(no_key());
            }
            let body: pb::AuditCheckpoint = verify_as(&env, &own)?;
            if body.seq + 1 != entry.seq || body.head_hash != prev_hash {
                return Err(format!(
                    "checkpoint signs entry {} with another hash than the chain's",
                    body.seq
                ));
            }
            if entry.round_id.unwrap_or(0) != body.round_id {
                return Err("checkpoint names another round than its entry".into());
            }
            Ok(())
        }
        AuditKind::Descriptor => {
            round(verify_as::<pb::RoundDescriptor>(&env, &keys.coordinator_keys()?)?.round_id)
        }
        AuditKind::InclusionSet => {
            round(verify_as::<pb::InclusionSet>(&env, &keys.coordinator_keys()?)?.round_id)
        }
        AuditKind::Result => {
            round(verify_as::<pb::RoundResult>(&env, &keys.coordinator_keys()?)?.round_id)
        }
        AuditKind::Abort => {
            let abort: pb::AbortRecord = verify_as(&env, &keys.coordinator_keys()?)?;
            round(abort.round_id)?;
            let reason = abort
                .reason()
                .as_str_name()
                .trim_start_matches("ABORT_REASON_")
                .to_lowercase();
            *summary.aborts.entry(reason).or_default() += 1;
            Ok(())
        }
        AuditKind::Receipt => round(verify_as::<pb::Receipt>(&env, &keys.helper_keys()?)?.round_id),
        AuditKind::Report => {
            round(verify_as::<pb::HelperReport>(&env, &keys.helper_keys()?)?.round_id)
        }
    }
}

impl Keys {
    /// Keys that may sign coordinator artifacts in this log.
    fn coordinator_keys(&self) -> Result<Vec<VerifyingKey>, String> {
        let own = self.own.ok_or_else(no_key)?;
        Ok(if self.own_role == "coordinator" {
            vec![own]
        } else {
            self.coordinator.clone()
        })
    }

    /// Keys that may sign helper artifacts in this log.
    fn helper_keys(&self) -> Result<Vec<VerifyingKey>, String> {
        let own = self.own.ok_or_else(no_key)?;
        let mut keys = self.helpers.clone();
        if self.own_role == "helper" {
            keys.push(own);
        }
        Ok(keys)
    }
}

fn no_key() -> String {
    "no key entry precedes it, so its signature cannot be checked".to_string()
}

fn push_key(summary: &mut AuditSummary, role: &str, name: &str, key: &VerifyingKey, own: bool) {
    let seen = KeySeen {
        role: role.into(),
        name: name.into(),
        key_id: key.key_id().to_hex(),
        own,
    };
    if !summary.keys.contains(&seen) {
        summary.keys.push(seen);
    }
}

/// A digest of bytes a step sent, as archived ([`pb::ArchivedOutput`]).
pub fn output_digest(bytes: &[u8]) -> Digest {
    Digest::of("sealroom 2026-11 archived output v1", bytes)
}
