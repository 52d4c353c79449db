//! What the runtimes record for the audit log and the replay archive
//! (DESIGN.md §6): each state-machine step's input, the digests of what it
//! sent, and the signed artifacts it issued or accepted.

use std::sync::Arc;

use prost::Message as _;
use sealroom_protocol::action::{Action, Message};
use sealroom_protocol::{Millis, PartyId, pb};
use sealroom_store::audit::output_digest;
use sealroom_store::{ArchiveWrite, AuditKind, AuditRecord, AuditSigner};
use zeroize::Zeroize as _;

use crate::NodeError;
use crate::context::NodeContext;

/// Rounds whose replay archive a node keeps by default.
/// (A helper's archive refers to its stored uploads, which it keeps for
/// [`crate::helper_node::KEEP_ROUNDS`] rounds: the same number.)
pub const DEFAULT_ARCHIVE_ROUNDS: usize = 16;

/// The round a message belongs to, read from its (signed or encoded) body.
pub fn round_of(message: &Message) -> Option<u64> {
    fn signed<M: prost::Message + Default>(
        env: &pb::SignedEnvelope,
        round: fn(M) -> u64,
    ) -> Option<u64> {
        M::decode(env.body.as_slice()).ok().map(round)
    }
    match message {
        Message::Descriptor(env) => signed(env, |d: pb::RoundDescriptor| d.round_id),
        Message::Receipt(env) => signed(env, |r: pb::Receipt| r.round_id),
        Message::Report(env) => signed(env, |r: pb::HelperReport| r.round_id),
        Message::InclusionSet(env) => signed(env, |i: pb::InclusionSet| i.round_id),
        Message::Result(env) => signed(env, |r: pb::RoundResult| r.round_id),
        Message::Abort(env) => signed(env, |a: pb::AbortRecord| a.round_id),
        Message::Upload(bytes) => pb::Upload::decode(bytes.expose()).ok().map(|u| u.round_id),
        Message::AggregateShare(bytes) => pb::AggregateShare::decode(bytes.expose())
            .ok()
            .and_then(|a| a.header)
            .and_then(|h| signed(&h, |h: pb::AggregateShareHeader| h.round_id)),
        _ => None,
    }
}

/// The envelope a message shares with every other recipient (descriptor,
/// result, abort): one `Arc` for the whole fan-out.
fn shared(message: &Message) -> Option<&Arc<pb::SignedEnvelope>> {
    match message {
        Message::Descriptor(env) | Message::Result(env) | Message::Abort(env) => Some(env),
        _ => None,
    }
}

/// The archived digest of the exact bytes a message puts on the wire.
fn wire_digest(message: &Message) -> Vec<u8> {
    let bytes = zeroize::Zeroizing::new(match message {
        Message::Descriptor(env) | Message::Result(env) | Message::Abort(env) => {
            env.encode_to_vec()
        }
        Message::Receipt(env) | Message::Report(env) | Message::InclusionSet(env) => {
            env.encode_to_vec()
        }
        Message::Upload(bytes) | Message::AggregateShare(bytes) => bytes.expose().to_vec(),
        _ => Vec::new(),
    });
    output_digest(&bytes).0.to_vec()
}

/// The archived form of the messages `actions` send (all of them, or only
/// those of round `only`): recipient, kind and digest — never the bytes. A
/// message shared by many recipients is encoded, hashed and its round read
/// once.
pub fn outputs(actions: &[Action], only: Option<u64>) -> Vec<pb::ArchivedOutput> {
    let mut last_shared: Option<(&Arc<pb::SignedEnvelope>, Option<u64>, Vec<u8>)> = None;
    let mut out = Vec::new();
    for action in actions {
        let Action::Send { to, message } = action else {
            continue;
        };
        let (round, digest) = match (shared(message), &last_shared) {
            (Some(env), Some((seen, round, digest))) if Arc::ptr_eq(env, seen) => {
                (*round, digest.clone())
            }
            (Some(env), _) => {
                let (round, digest) = (round_of(message), wire_digest(message));
                last_shared = Some((env, round, digest.clone()));
                (round, digest)
            }
            (None, _) => (
                if only.is_some() {
                    round_of(message)
                } else {
                    None
                },
                wire_digest(message),
            ),
        };
        if only.is_some_and(|r| round != Some(r)) {
            continue;
        }
        out.push(pb::ArchivedOutput {
            to: to.0.to_vec(),
            kind: message.kind().to_string(),
            digest,
        });
    }
    out
}

/// The signed artifacts `actions` send, for the audit log (each once, though
/// a descriptor or result goes to many parties). Shares never are.
pub fn sent_artifacts(actions: &[Action], only: Option<u64>) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut seen: Vec<&Arc<pb::SignedEnvelope>> = Vec::new();
    for action in actions {
        let Action::Send { message, .. } = action else {
            continue;
        };
        if let Some(env) = shared(message) {
            if seen.iter().any(|s| Arc::ptr_eq(s, env)) {
                continue;
            }
            seen.push(env);
        }
        let (kind, env): (AuditKind, &pb::SignedEnvelope) = match message {
            Message::Descriptor(env) => (AuditKind::Descriptor, env),
            Message::Receipt(env) => (AuditKind::Receipt, env),
            Message::Report(env) => (AuditKind::Report, env),
            Message::InclusionSet(env) => (AuditKind::InclusionSet, env),
            Message::Result(env) => (AuditKind::Result, env),
            Message::Abort(env) => (AuditKind::Abort, env),
            _ => continue,
        };
        let round = round_of(message);
        if only.is_some_and(|r| round != Some(r)) || records.iter().any(|r| &r.artifact == env) {
            continue;
        }
        records.push(AuditRecord {
            kind,
            round_id: round,
            artifact: env.clone(),
        });
    }
    records
}

/// One step to record: the input consumed and what came of it.
#[derive(Debug)]
pub struct Step {
    /// Round it belongs to.
    pub round: u64,
    /// The archived step (input, outputs, refusal).
    pub archived: pb::ArchivedStep,
    /// Signed artifacts for the audit log.
    pub audit: Vec<AuditRecord>,
    /// Whether this step ends the round for this node (a checkpoint follows).
    pub ends_round: bool,
}

impl Step {
    /// A step consuming `input` at `now`.
    pub fn new(round: u64, now: Millis, input: pb::archived_step::Input) -> Step {
        Step {
            round,
            archived: pb::ArchivedStep {
                now_ms: now.0,
                input: Some(input),
                outputs: Vec::new(),
                refused: String::new(),
            },
            audit: Vec::new(),
            ends_round: false,
        }
    }

    /// Notes what `actions` sent (only round `self.round`'s messages when
    /// `filter` is set) and the artifacts among them.
    pub fn sent(mut self, actions: &[Action], filter: bool) -> Step {
        let only = filter.then_some(self.round);
        self.archived.outputs = outputs(actions, only);
        self.audit.extend(sent_artifacts(actions, only));
        self
    }

    /// Replaces an archived upload's bytes by a reference to the helper's
    /// stored copy (`helper_uploads`, this round and `client_index`).
    pub fn stored_upload(mut self, client_index: u32) -> Step {
        if let Some(pb::archived_step::Input::Upload(m)) = self.archived.input.as_mut() {
            m.bytes.zeroize();
            m.bytes = Vec::new();
            m.stored = true;
            m.client_index = client_index;
        }
        self
    }

    /// Notes that the state machine refused the input.
    pub fn refused(mut self, error: &dyn std::fmt::Display) -> Step {
        self.archived.refused = error.to_string();
        self
    }

    /// Adds an artifact received (a verified descriptor, report or
    /// inclusion set).
    pub fn accepted(mut self, kind: AuditKind, artifact: &pb::SignedEnvelope) -> Step {
        self.audit.insert(
            0,
            AuditRecord {
                kind,
                round_id: Some(self.round),
                artifact: artifact.clone(),
            },
        );
        self
    }

    /// Marks the end of this node's part of the round.
    pub fn ends_round(mut self) -> Step {
        self.ends_round = true;
        self
    }
}

impl Drop for Step {
    /// Wipes the secrets an archived step may hold (an upload, an input, a
    /// seed) once recorded.
    fn drop(&mut self) {
        use pb::archived_step::Input;
        match &mut self.archived.input {
            Some(Input::Upload(m)) | Some(Input::AggregateShare(m)) => m.bytes.zeroize(),
            Some(Input::Participate(p)) => {
                p.input.zeroize();
                p.seed.zeroize();
            }
            _ => {}
        }
    }
}

/// The checkpoint signer of a node that has a signing key.
pub fn signer(ctx: &NodeContext) -> Option<AuditSigner> {
    ctx.signing_key.as_ref().map(|key| AuditSigner {
        node: ctx.name.clone(),
        key: key.clone(),
    })
}

/// Makes `step` durable (archive row and audit entries, one transaction)
/// before anything it sent leaves, and updates the audit metrics.
pub async fn record(ctx: &NodeContext, step: Step) -> Result<(), NodeError> {
    commit(ctx, None, step).await
}

/// Makes `persist` durable and records `step` — one transaction for an
/// accepted upload or a round counter (see
/// [`sealroom_store::Store::apply_and_record`]).
pub async fn apply_and_record(
    ctx: &NodeContext,
    persist: &sealroom_protocol::action::Persist,
    step: Step,
) -> Result<(), NodeError> {
    commit(ctx, Some(persist), step).await
}

async fn commit(
    ctx: &NodeContext,
    persist: Option<&sealroom_protocol::action::Persist>,
    step: Step,
) -> Result<(), NodeError> {
    let signer = signer(ctx);
    let archive = Some(ArchiveWrite {
        round_id: step.round,
        role: ctx.role.as_str(),
        step: &step.archived,
    });
    let audit: &[AuditRecord] = if signer.is_some() { &step.audit } else { &[] };
    let end_of_round = step.ends_round.then_some(step.round);
    let appended = match persist {
        Some(p) => {
            ctx.store
                .apply_and_record(p, archive, audit, signer.as_ref(), end_of_round)
                .await?
        }
        None => {
            ctx.store
                .record(archive, audit, signer.as_ref(), end_of_round)
                .await?
        }
    };
    ctx.metrics
        .audit_appended(appended.entries, appended.checkpoint_at_ms);
    if step.ends_round
        && let Err(e) = ctx.store.prune_archive(ctx.archive_rounds).await
    {
        tracing::warn!(error = %e, "pruning old round archives failed");
    }
    Ok(())
}

/// Records each of `steps` (see [`record`]).
pub async fn record_all(ctx: &NodeContext, steps: Vec<Step>) -> Result<(), NodeError> {
    for step in steps {
        record(ctx, step).await?;
    }
    Ok(())
}

/// Enters this node's key and its federation's signer keys into its audit
/// log, unless the last key entry says the same.
pub async fn register_key(ctx: &NodeContext) -> Result<(), NodeError> {
    let Some(signer) = signer(ctx) else {
        return Ok(());
    };
    let mut peers = vec![pb::AuditPeerKey {
        role: "coordinator".into(),
        name: ctx.directory.coordinator.name.clone(),
        verifying_key: ctx
            .directory
            .coordinator
            .signing_key
            .map(|k| k.to_bytes().to_vec())
            .unwrap_or_default(),
    }];
    for h in &ctx.directory.helpers {
        peers.push(pb::AuditPeerKey {
            role: "helper".into(),
            name: h.name.clone(),
            verifying_key: h
                .signing_key
                .map(|k| k.to_bytes().to_vec())
                .unwrap_or_default(),
        });
    }
    peers.retain(|p| p.name != ctx.name);
    let key = pb::AuditKey {
        node: ctx.name.clone(),
        role: ctx.role.as_str().into(),
        verifying_key: signer.key.verifying_key().to_bytes().to_vec(),
        epoch: 0,
        at_ms: crate::context::now().0,
        peers,
    };
    if let Some(at) = ctx.store.audit_last_checkpoint_ms().await? {
        ctx.metrics.audit_appended(0, Some(at));
    }
    if ctx.store.audit_register_key(&key, &signer).await? {
        ctx.metrics.audit_appended(1, None);
        tracing::info!(key_id = %signer.key.verifying_key().key_id(), "signing key entered into the audit log");
    }
    Ok(())
}

/// A party id from archived bytes.
pub fn party(bytes: &[u8]) -> Option<PartyId> {
    PartyId::from_slice(bytes)
}

/// Ends this node's part of `round`: a signed checkpoint (nodes with a key)
/// and pruning of old archives.
pub async fn end_round(ctx: &NodeContext, round: u64) -> Result<(), NodeError> {
    let signer = signer(ctx);
    if signer.is_some() {
        let appended = ctx
            .store
            .record(None, &[], signer.as_ref(), Some(round))
            .await?;
        ctx.metrics
            .audit_appended(appended.entries, appended.checkpoint_at_ms);
    }
    if let Err(e) = ctx.store.prune_archive(ctx.archive_rounds).await {
        tracing::warn!(error = %e, "pruning old round archives failed");
    }
    Ok(())
}
