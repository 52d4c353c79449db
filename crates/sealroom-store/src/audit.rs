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
//! every signature and every checkpoint, and names every bad entry.
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
use sealroom_protocol::action::{MessageKind, Persist};
use sealroom_protocol::envelope::{
    MAX_SIGNED_BODY, SharedSigner, SignedMessage, SignerExt as _, VerifyingKey, claimed_key_id,
    decode_limited,
};
use sealroom_protocol::{Digest, pb};

use crate::error::db;
use crate::rows::{column, from_sql_round, to_sql_round};
use crate::{Store, StoreError};

/// A signed checkpoint is appended after this many entries without one.
pub const CHECKPOINT_EVERY: u64 = 64;
/// Largest artifact the verifier decodes: the protocol's own limit on a
/// signed body ([`MAX_SIGNED_BODY`], which every signature check applies
/// again), plus the envelope around it — a label of at most 64 bytes, the
/// body's tag and length (5 bytes), the key id and the signature (34 and 66
/// bytes with their framing) — rounded up. Nothing a node accepts is larger
/// (the protocol verifies it), and nothing it signs is: descriptors are
/// verified before they are issued and an abort record sheds evidence to
/// fit (`coordinator::fit_abort_record`); every other artifact is bounded by
/// `MAX_CLIENTS` indices. So every entry a node can write verifies.
pub const MAX_ARTIFACT: usize = MAX_SIGNED_BODY + 1024;
/// Derive-key context of the possession proof in a rotated key entry.
pub const KEY_POSSESSION_CONTEXT: &[u8] = b"sealroom audit key possession v1";
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
    /// An operator's decision to start the node on a log that does not
    /// verify, naming its bad entries (signed by the node).
    Override,
    /// A helper's attestation of an MPC preprocessing batch (signed by
    /// that helper; a helper's log holds every helper's for its batches).
    EngineBatch,
    /// The MPC preprocessing batches one computation consumed (signed by
    /// the consuming helper).
    EngineUse,
    /// An MPC engine session this helper aborted, with the failed check
    /// (signed by the helper).
    EngineAbort,
}

impl AuditKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AuditKind; 12] = [
        AuditKind::Key,
        AuditKind::Descriptor,
        AuditKind::Receipt,
        AuditKind::Report,
        AuditKind::InclusionSet,
        AuditKind::Result,
        AuditKind::Abort,
        AuditKind::Checkpoint,
        AuditKind::Override,
        AuditKind::EngineBatch,
        AuditKind::EngineUse,
        AuditKind::EngineAbort,
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
            AuditKind::Override => "override",
            AuditKind::EngineBatch => "engine_batch",
            AuditKind::EngineUse => "engine_use",
            AuditKind::EngineAbort => "engine_abort",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl AuditKind {
    /// The kind of audit entry a signed protocol message becomes (shares,
    /// uploads and sit-out notices never enter the log).
    pub fn of(kind: MessageKind) -> Option<AuditKind> {
        match kind {
            MessageKind::Descriptor => Some(AuditKind::Descriptor),
            MessageKind::Receipt => Some(AuditKind::Receipt),
            MessageKind::Report => Some(AuditKind::Report),
            MessageKind::InclusionSet => Some(AuditKind::InclusionSet),
            MessageKind::Result => Some(AuditKind::Result),
            MessageKind::Abort => Some(AuditKind::Abort),
            MessageKind::Upload | MessageKind::AggregateShare | MessageKind::SitOut => None,
        }
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
    /// Its signer (a key file's key, or an HSM behind the trait).
    pub key: SharedSigner,
}

/// What one [`Store::record`] call appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Audit entries appended, checkpoints included.
    pub entries: u64,
    /// The time of the last checkpoint appended, if any (Unix milliseconds).
    pub checkpoint_at_ms: Option<u64>,
}

/// One state-machine step for [`Store::commit_steps`]: what
/// [`Store::commit`] takes for a single step.
#[derive(Clone, Debug)]
pub struct StepWrite<'a> {
    /// Its [`Persist`] actions.
    pub persists: Vec<&'a Persist>,
    /// Its replay-archive row.
    pub archive: Option<ArchiveWrite<'a>>,
    /// Its audit entries.
    pub audit: Vec<AuditRecord>,
    /// The round it ends, if any (a signed checkpoint marks it).
    pub end_of_round: Option<u64>,
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
    records: &[&AuditRecord],
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
            .map(|env| env.encode_to_vec())
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
            let artifact = checkpoint(signer, None, next, prev)?;
            push(AuditKind::Checkpoint, None, artifact, &mut next, &mut prev)?;
            unsigned = 0;
            appended.checkpoint_at_ms = Some(at_ms);
        }
    }
    if let (Some(signer), Some(round)) = (signer, end_of_round)
        && next > 0
    {
        let artifact = checkpoint(signer, Some(round), next, prev)?;
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
        // An artifact already in the log (a re-sent message, a step redone
        // after a restart) is not appended again.
        let mut fresh: Vec<&AuditRecord> = Vec::with_capacity(audit.len());
        for record in audit {
            let digest = artifact_digest(&record.artifact);
            let new = sqlx::query(
                "INSERT INTO audit_digests (digest) VALUES ($1) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&digest[..])
            .execute(&mut *$tx)
            .await
            .map_err(db(backend, operation))?
            .rows_affected()
                == 1;
            if new {
                fresh.push(record);
            }
        }
        if wants_audit && (!fresh.is_empty() || end_of_round.is_some()) {
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
                &fresh,
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

// The MPC engine's pool commits its batches with their audit entries
// through `record_in_tx!`, so it lives below it, as a child of this module.
#[path = "engine.rs"]
pub mod engine;

impl Store {
    /// Makes one state-machine step durable in one transaction (one fsync):
    /// its [`Persist`] actions (with the refusals of [`Store::apply`]), its
    /// replay-archive row (if given) and its audit entries (artifacts already
    /// in the log are not appended again), followed by a signed checkpoint
    /// whenever [`CHECKPOINT_EVERY`] entries have gone unsigned and, if
    /// `end_of_round` is given, one marking that round's end. Checkpoints need
    /// `signer`; without one (clients) only the chain is kept. All of it
    /// commits, or none of it does.
    pub async fn commit(
        &self,
        persists: &[&Persist],
        archive: Option<ArchiveWrite<'_>>,
        audit: &[AuditRecord],
        signer: Option<&AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<Appended, StoreError> {
        let backend = self.backend();
        let operation = "commit a step (state, archive, audit log)";
        let step = PreparedStep::new(archive, audit, signer, end_of_round)?;
        let appended = write_transaction!(self, operation, |tx| {
            for persist in persists {
                persist_in_tx!(tx, backend, operation, *persist);
            }
            record_in_tx!(tx, backend, operation, step)
        });
        Ok(appended)
    }

    /// Makes several steps durable in **one** transaction (one fsync, a
    /// group commit): each as [`Store::commit`] would, in order, so the
    /// audit chain and the archive are exactly what committing them one
    /// by one would leave. All of them commit, or none does.
    pub async fn commit_steps(
        &self,
        steps: &[StepWrite<'_>],
        signer: Option<&AuditSigner>,
    ) -> Result<Appended, StoreError> {
        let backend = self.backend();
        let operation = "commit steps (state, archive, audit log)";
        let prepared = steps
            .iter()
            .map(|s| PreparedStep::new(s.archive, &s.audit, signer, s.end_of_round))
            .collect::<Result<Vec<_>, _>>()?;
        let appended = write_transaction!(self, operation, |tx| {
            let mut total = Appended::default();
            for (step, prepared) in steps.iter().zip(&prepared) {
                for persist in &step.persists {
                    persist_in_tx!(tx, backend, operation, *persist);
                }
                let appended: Appended = record_in_tx!(tx, backend, operation, prepared);
                total.entries += appended.entries;
                total.checkpoint_at_ms = appended.checkpoint_at_ms.or(total.checkpoint_at_ms);
            }
            total
        });
        Ok(appended)
    }

    /// Records a step with nothing to persist (see [`Store::commit`]).
    pub async fn record(
        &self,
        archive: Option<ArchiveWrite<'_>>,
        audit: &[AuditRecord],
        signer: Option<&AuditSigner>,
        end_of_round: Option<u64>,
    ) -> Result<Appended, StoreError> {
        self.commit(&[], archive, audit, signer, end_of_round).await
    }

    /// Enters `key` (this node's key and its federation's signers) into the
    /// log, unless the last key entry already says the same (ignoring its
    /// time). Returns whether it appended.
    ///
    /// The entries form a rotation chain ([`pb::AuditKey`]): the first is
    /// signed by the key it introduces; a later one by the key of the entry
    /// before it. When the node's own key changed, `previous` must be the
    /// signer of the key the log names (it signs the entry, and the new key
    /// proves possession of itself); without it the node's log cannot follow
    /// the rotation and this is [`StoreError::KeyRotationUnsigned`].
    pub async fn audit_register_key(
        &self,
        key: &pb::AuditKey,
        signer: &AuditSigner,
        previous: Option<&SharedSigner>,
    ) -> Result<bool, StoreError> {
        let last = self
            .audit_last_of(AuditKind::Key)
            .await?
            .and_then(|e| pb::SignedEnvelope::decode(e.artifact.as_slice()).ok())
            .and_then(|env| pb::AuditKey::decode(env.body.as_slice()).ok());
        let mut entry = key.clone();
        let current = signer.key.verifying_key().to_bytes().to_vec();
        entry.verifying_key = current.clone();
        let comparable = |k: &pb::AuditKey| pb::AuditKey {
            at_ms: 0,
            previous_key: Vec::new(),
            possession: Vec::new(),
            ..k.clone()
        };
        let artifact = match &last {
            Some(old) if comparable(old) == comparable(&entry) => return Ok(false),
            None => {
                entry.previous_key = Vec::new();
                entry.possession = Vec::new();
                signer.key.sign(&entry)?
            }
            Some(old) if old.verifying_key == current => {
                // Same key, other peers: the key vouches for its own update.
                entry.previous_key = current;
                entry.possession = Vec::new();
                signer.key.sign(&entry)?
            }
            Some(old) => {
                let logged = key_id_hex(&old.verifying_key);
                let previous = previous
                    .filter(|p| p.verifying_key().to_bytes().as_slice() == old.verifying_key)
                    .ok_or_else(|| StoreError::KeyRotationUnsigned {
                        logged,
                        current: signer.key.key_id().to_hex(),
                    })?;
                entry.previous_key = old.verifying_key.clone();
                let proof = possession_message(&entry.previous_key, &entry.verifying_key);
                entry.possession = signer.key.sign_raw(&proof)?.to_vec();
                previous.sign(&entry)?
            }
        };
        let record = AuditRecord {
            kind: AuditKind::Key,
            round_id: None,
            artifact,
        };
        self.record(None, &[record], Some(signer), None).await?;
        Ok(true)
    }

    /// Appends an override entry: the operator's decision, signed by this
    /// node, to run on a log whose `broken` entries do not verify (see
    /// [`pb::AuditOverride`]). It links to the log's head as it stands, so a
    /// verifier reports each named entry as "chain broken at N, override
    /// recorded at M". Returns the override's sequence number.
    pub async fn audit_record_override(
        &self,
        broken: &[&AuditViolation],
        signer: &AuditSigner,
    ) -> Result<u64, StoreError> {
        let head = self.audit_head().await?;
        let (entries, head_hash) = head.map_or((0, [0; 32]), |(seq, hash)| (seq + 1, hash));
        let body = pb::AuditOverride {
            node: signer.node.clone(),
            at_ms: now_ms(),
            broken: broken
                .iter()
                .map(|v| pb::AuditOverrideEntry {
                    seq: v.seq,
                    reason: v.reason.clone(),
                })
                .collect(),
            entries,
            head_hash: head_hash.to_vec(),
        };
        let record = AuditRecord {
            kind: AuditKind::Override,
            round_id: None,
            artifact: signer.key.sign(&body)?,
        };
        self.record(None, &[record], Some(signer), None).await?;
        Ok(entries)
    }

    /// The last entry's sequence number and hash.
    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let backend = self.backend();
        let operation = "read the audit log";
        let row: Option<(i64, Vec<u8>)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(pool)
                .await
                .map_err(db(backend, operation))?
        });
        row.map(|(seq, hash)| {
            let seq_u = u64::try_from(seq).map_err(|_| StoreError::CorruptRow {
                table: AUDIT,
                key: format!("seq = {seq}"),
                reason: "negative seq".into(),
            })?;
            Ok((seq_u, hash_of(&hash, seq)?))
        })
        .transpose()
    }

    /// Fills `audit_digests` for a log written before it existed (schema
    /// version 3), so that no artifact already in the log is appended again.
    pub(crate) async fn backfill_audit_digests(&self) -> Result<(), StoreError> {
        let backend = self.backend();
        let operation = "index the audit log's artifacts";
        write_transaction!(self, operation, |tx| {
            let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_digests")
                .fetch_one(&mut *tx)
                .await
                .map_err(db(backend, operation))?;
            if indexed == 0 {
                let rows =
                    sqlx::query("SELECT seq, artifact FROM audit_log WHERE kind <> 'checkpoint'")
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db(backend, operation))?;
                for row in &rows {
                    let seq: i64 = column(row, "seq", AUDIT, "key unreadable")?;
                    let artifact: Vec<u8> =
                        column(row, "artifact", AUDIT, &format!("seq = {seq}"))?;
                    sqlx::query(
                        "INSERT INTO audit_digests (digest) VALUES ($1) ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(&blake3::hash(&artifact).as_bytes()[..])
                    .execute(&mut *tx)
                    .await
                    .map_err(db(backend, operation))?;
                }
            }
        });
        Ok(())
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
    /// The keys of the last key entry: the log owner's key and the signer
    /// keys it trusts now (what `audit verify --federation` pins).
    pub current_keys: Vec<KeySeen>,
    /// Override entries (operator decisions to run on a broken log), in log
    /// order.
    pub overrides: Vec<OverrideSeen>,
}

/// An override entry the verifier read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideSeen {
    /// Its sequence number.
    pub seq: u64,
    /// The node's clock when it was recorded (Unix milliseconds).
    pub at_ms: u64,
    /// The bad entries it names.
    pub broken: Vec<u64>,
}

/// A bad entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}{}", acknowledged_by.map_or(String::new(), |m| format!(" (chain broken at {seq}, override recorded at {m})")))]
pub struct AuditViolation {
    /// Its sequence number (the expected one, for a gap).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
    /// The override entry that names it, if an operator has recorded the
    /// decision to run on the log regardless (the entry is still bad).
    pub acknowledged_by: Option<u64>,
}

impl AuditViolation {
    fn new(seq: u64, reason: String) -> AuditViolation {
        AuditViolation {
            seq,
            reason,
            acknowledged_by: None,
        }
    }
}

#[derive(Default)]
struct Keys {
    own: Option<VerifyingKey>,
    /// A coordinator log's key before its last rotation, with the highest
    /// round the log named before the rotation: artifacts of those rounds
    /// (under way at the switch) may still carry the old key's signature.
    retired_own: Option<(VerifyingKey, u64)>,
    own_role: Option<sealroom_protocol::Role>,
    coordinator: Vec<VerifyingKey>,
    helpers: Vec<VerifyingKey>,
}

fn parse_key(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "not 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

fn ed25519_signature(bytes: &[u8]) -> Option<[u8; 64]> {
    bytes.try_into().ok()
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
/// chain it covers, and no artifact twice.
///
/// It does not stop at the first bad entry: every entry is checked (each
/// link against the hash the entry before it *stores*, so one edit is
/// reported once, not for every entry after it) and every bad entry is
/// named, in sequence order, with the first thing wrong with it. The
/// summary counts every entry checked.
pub fn verify_chain(entries: &[AuditEntry]) -> (AuditSummary, Vec<AuditViolation>) {
    let mut summary = AuditSummary::default();
    let mut violations = Vec::new();
    let mut keys = Keys::default();
    let mut prev = [0u8; 32];
    let mut seen = BTreeSet::new();
    let mut since_checkpoint = 0u64;
    let mut expected = 0u64;
    for entry in entries {
        // The first thing wrong with this entry, if any.
        let mut problem: Option<AuditViolation> = None;
        let mut note = |seq: u64, reason: String| {
            problem.get_or_insert(AuditViolation::new(seq, reason));
        };
        let gap = entry.seq != expected;
        if entry.seq > expected {
            let missing = if entry.seq - expected == 1 {
                format!("entry {expected} was deleted")
            } else {
                format!("entries {expected} to {} were deleted", entry.seq - 1)
            };
            note(
                expected,
                format!(
                    "sequence jumps from {} to {}: {missing}",
                    expected.wrapping_sub(1),
                    entry.seq
                ),
            );
        } else if entry.seq < expected {
            note(
                entry.seq,
                format!("sequence number {} out of order", entry.seq),
            );
        }
        // After a gap the link is broken by the gap itself: named once.
        if !gap && entry.prev_hash != prev {
            note(
                entry.seq,
                "does not link to the entry before it (an entry was deleted, inserted or reordered)"
                    .into(),
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
            note(
                entry.seq,
                "its contents do not match its hash (the entry was edited)".into(),
            );
        }
        if let Err(reason) = check_artifact(entry, &prev, &mut keys, &mut summary) {
            note(entry.seq, reason);
        }
        if !seen.insert(*blake3::hash(&entry.artifact).as_bytes()) {
            note(entry.seq, "repeats an artifact already in the log".into());
        }
        violations.extend(problem);
        expected = expected.max(entry.seq.saturating_add(1));
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
    // A bad entry an override after it names is known to the operator.
    for v in &mut violations {
        v.acknowledged_by = summary
            .overrides
            .iter()
            .find(|o| o.seq > v.seq && o.broken.contains(&v.seq))
            .map(|o| o.seq);
    }
    (summary, violations)
}

/// The bad entries of `violations` that no override names: what should stop
/// a node from starting.
pub fn unacknowledged(violations: &[AuditViolation]) -> Vec<&AuditViolation> {
    violations
        .iter()
        .filter(|v| v.acknowledged_by.is_none())
        .collect()
}

fn no_round(entry: &AuditEntry, what: &str) -> Result<(), String> {
    match entry.round_id {
        None => Ok(()),
        Some(r) => Err(format!(
            "{what} belongs to no round, but its entry names round {r}"
        )),
    }
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
            let key = parse_key(&body.verifying_key)
                .map_err(|e| format!("key entry holds a malformed key: {e}"))?;
            match keys.own {
                // The first key entry of a log introduces the log's key.
                None => {
                    verify_as::<pb::AuditKey>(&env, &[key])?;
                }
                // Every later one is signed by the key it follows: nobody
                // without the current key can introduce another.
                Some(previous) => {
                    verify_as::<pb::AuditKey>(&env, &[previous]).map_err(|e| {
                        format!(
                            "key entry is not signed by the log's key {} ({e}): a key entry must be signed by the key it replaces",
                            previous.key_id()
                        )
                    })?;
                    if body.previous_key != previous.to_bytes() {
                        return Err(format!(
                            "key entry says it follows key {}, but the log's key is {}",
                            key_id_hex(&body.previous_key),
                            previous.key_id()
                        ));
                    }
                    if key != previous {
                        let proof = possession_message(&body.previous_key, &body.verifying_key);
                        let signature = ed25519_signature(&body.possession)
                            .ok_or("rotated key entry carries no possession proof")?;
                        key.verify_raw(&proof, &signature).map_err(|_| {
                            "rotated key entry: the new key's possession proof does not verify"
                                .to_string()
                        })?;
                    }
                }
            }
            let role = sealroom_protocol::Role::from_pb(body.role)
                .ok_or_else(|| format!("key entry: unknown role {}", body.role))?;
            let retired_own = match keys.own {
                Some(previous) if previous != key => {
                    summary.rounds.last().map(|last| (previous, *last))
                }
                _ => keys.retired_own,
            };
            let mut next = Keys {
                own: Some(key),
                retired_own,
                own_role: Some(role),
                ..Keys::default()
            };
            summary.node = Some((role.as_str().to_string(), body.node.clone()));
            summary.current_keys.clear();
            push_key(summary, role.as_str(), &body.node, &key, true);
            for peer in &body.peers {
                let key = parse_key(&peer.verifying_key)
                    .map_err(|e| format!("key entry: malformed key for {:?}: {e}", peer.name))?;
                let peer_role = sealroom_protocol::Role::from_pb(peer.role);
                match peer_role {
                    Some(sealroom_protocol::Role::Coordinator) => next.coordinator.push(key),
                    Some(sealroom_protocol::Role::Helper) => next.helpers.push(key),
                    _ => {
                        return Err(format!(
                            "key entry: peer {:?} has role {}",
                            peer.name, peer.role
                        ));
                    }
                }
                push_key(
                    summary,
                    peer_role.map_or("?", sealroom_protocol::Role::as_str),
                    &peer.name,
                    &key,
                    false,
                );
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
        AuditKind::Override => {
            if own.is_empty() {
                return Err(no_key());
            }
            let body: pb::AuditOverride = verify_as(&env, &own)?;
            if entry.round_id.is_some() {
                return Err("an override belongs to no round".into());
            }
            if body.entries != entry.seq || body.head_hash != prev_hash {
                return Err(format!(
                    "override signs a log of {} entries with another head than the chain's",
                    body.entries
                ));
            }
            if body.broken.is_empty() || body.broken.iter().any(|b| b.seq >= entry.seq) {
                return Err("override names no bad entry, or one after itself".into());
            }
            summary.overrides.push(OverrideSeen {
                seq: entry.seq,
                at_ms: entry.at_ms,
                broken: body.broken.iter().map(|b| b.seq).collect(),
            });
            Ok(())
        }
        AuditKind::Descriptor => round(
            verify_as::<pb::RoundDescriptor>(&env, &keys.coordinator_keys(entry.round_id)?)?
                .round_id,
        ),
        AuditKind::InclusionSet => round(
            verify_as::<pb::InclusionSet>(&env, &keys.coordinator_keys(entry.round_id)?)?.round_id,
        ),
        AuditKind::Result => round(
            verify_as::<pb::RoundResult>(&env, &keys.coordinator_keys(entry.round_id)?)?.round_id,
        ),
        AuditKind::Abort => {
            let abort: pb::AbortRecord = verify_as(&env, &keys.coordinator_keys(entry.round_id)?)?;
            round(abort.round_id)?;
            let reason = abort
                .reason()
                .as_str_name()
                .trim_start_matches("ABORT_REASON_")
                .to_lowercase();
            *summary.aborts.entry(reason).or_default() += 1;
            Ok(())
        }
        AuditKind::EngineBatch => {
            verify_as::<pb::EngineBatch>(&env, &keys.helper_keys()?)?;
            no_round(entry, "an engine batch attestation")
        }
        AuditKind::EngineUse => {
            if own.is_empty() {
                return Err(no_key());
            }
            verify_as::<pb::EngineUse>(&env, &own)?;
            no_round(entry, "an engine use record")
        }
        AuditKind::EngineAbort => {
            if own.is_empty() {
                return Err(no_key());
            }
            let abort: pb::EngineAbort = verify_as(&env, &own)?;
            *summary
                .aborts
                .entry(format!("engine_{}", abort.reason))
                .or_default() += 1;
            no_round(entry, "an engine abort record")
        }
        AuditKind::Receipt => round(verify_as::<pb::Receipt>(&env, &keys.helper_keys()?)?.round_id),
        AuditKind::Report => {
            round(verify_as::<pb::HelperReport>(&env, &keys.helper_keys()?)?.round_id)
        }
    }
}

impl Keys {
    /// Keys that may sign coordinator artifacts of `round` in this log.
    fn coordinator_keys(&self, round: Option<u64>) -> Result<Vec<VerifyingKey>, String> {
        let own = self.own.ok_or_else(no_key)?;
        Ok(
            if self.own_role == Some(sealroom_protocol::Role::Coordinator) {
                let mut keys = vec![own];
                if let Some((retired, last)) = self.retired_own
                    && round.is_some_and(|r| r <= last)
                {
                    keys.push(retired);
                }
                keys
            } else {
                self.coordinator.clone()
            },
        )
    }

    /// Keys that may sign helper artifacts in this log.
    fn helper_keys(&self) -> Result<Vec<VerifyingKey>, String> {
        let own = self.own.ok_or_else(no_key)?;
        let mut keys = self.helpers.clone();
        if self.own_role == Some(sealroom_protocol::Role::Helper) {
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
    if !summary.current_keys.contains(&seen) {
        summary.current_keys.push(seen.clone());
    }
    if !summary.keys.contains(&seen) {
        summary.keys.push(seen);
    }
}

/// Reads one line of `sealroom audit export` (JSON: `seq`, `at_ms`, `kind`,
/// `round_id` (a number or null), and hex `artifact`, `prev_hash`, `hash`)
/// back into an entry for [`verify_chain`]. Every field the chain hash
/// covers must be there; the error names the first one that is missing or
/// malformed. The line comes from another machine: nothing in it is
/// trusted until the chain verifies.
pub fn entry_from_export(line: &str) -> Result<AuditEntry, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON entry: {e}"))?;
    let field = |name: &str| v.get(name).ok_or_else(|| format!("no `{name}`"));
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or_else(|| format!("`{name}` is not a number"))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .ok_or_else(|| format!("`{name}` is not a string"))
    };
    let bytes = |name: &str| hex::decode(text(name)?).map_err(|_| format!("`{name}` is not hex"));
    let hash = |name: &str| {
        <[u8; 32]>::try_from(bytes(name)?).map_err(|_| format!("`{name}` is not 32 bytes"))
    };
    let round_id = match field("round_id")? {
        serde_json::Value::Null => None,
        r => Some(
            r.as_u64()
                .ok_or_else(|| "`round_id` is not a number".to_string())?,
        ),
    };
    Ok(AuditEntry {
        seq: number("seq")?,
        at_ms: number("at_ms")?,
        kind: text("kind")?.to_string(),
        round_id,
        artifact: bytes("artifact")?,
        prev_hash: hash("prev_hash")?,
        hash: hash("hash")?,
    })
}

/// What a new key signs to prove it holds itself, in a rotated key entry.
pub fn possession_message(previous_key: &[u8], new_key: &[u8]) -> Vec<u8> {
    [KEY_POSSESSION_CONTEXT, previous_key, new_key].concat()
}

fn key_id_hex(key: &[u8]) -> String {
    <[u8; 32]>::try_from(key)
        .ok()
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .map_or_else(|| "(malformed key)".to_string(), |k| k.key_id().to_hex())
}

/// The digest under which an artifact is known to the log.
fn artifact_digest(artifact: &pb::SignedEnvelope) -> [u8; 32] {
    *blake3::hash(&artifact.encode_to_vec()).as_bytes()
}

/// A digest of bytes a step sent, as archived ([`pb::ArchivedOutput`]).
pub fn output_digest(bytes: &[u8]) -> Digest {
    Digest::of("sealroom 2026-11 archived output v1", bytes)
}
