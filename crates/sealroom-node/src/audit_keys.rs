//! What a node checks and writes in its audit log at start-up: the chain
//! itself ([`check_chain`]: a node does not append to a log that does not
//! verify, unless its operator says so and that decision is logged), then
//! the key entries — this node's key and the signer keys of its
//! federation, entered whenever they differ from the last entry, a rotation
//! chain, each entry signed by the key it follows (see
//! [`sealroom_store::Store::audit_register_key`]).

use std::time::Instant;

use sealroom_protocol::pb;

use crate::NodeError;
use crate::context::{NodeContext, now};
use crate::directory::Party;

/// Verifies this node's whole audit log as `sealroom audit verify` does
/// (hash chain, links, every signature, every checkpoint) before the node
/// appends anything to it. A bad entry that no earlier override entry names
/// stops the start with [`NodeError::AuditChainBroken`] (the first one and
/// why); with [`NodeContext::accept_broken_audit_chain`] the node appends an
/// override entry naming every such entry, signed with its key, and starts.
///
/// Cost: one read of the whole log and one Ed25519 verification per entry —
/// linear in the log's length (of the order of a second per 10,000 entries
/// in a debug build, far less in a release build); the time taken is logged.
pub async fn check_chain(ctx: &NodeContext) -> Result<(), NodeError> {
    let Some(signer) = ctx.audit_signer() else {
        return Ok(());
    };
    let started = Instant::now();
    let entries = ctx.store.audit_entries(None).await?;
    let (summary, violations) = sealroom_store::verify_chain(&entries);
    drop(entries);
    let bad = sealroom_store::unacknowledged(&violations);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let Some(first) = bad.first() else {
        tracing::info!(
            entries = summary.entries,
            acknowledged = violations.len(),
            elapsed_ms,
            "audit chain verified"
        );
        return Ok(());
    };
    if !ctx.accept_broken_audit_chain {
        tracing::error!(
            first = first.seq,
            reason = %first.reason,
            bad = bad.len(),
            "the audit log does not verify; refusing to start"
        );
        return Err(NodeError::AuditChainBroken {
            first: first.seq,
            reason: first.reason.clone(),
            bad: bad.len(),
            checked: summary.entries,
        });
    }
    let at = ctx.store.audit_record_override(&bad, &signer).await?;
    ctx.metrics.audit_appended(1, None);
    tracing::warn!(
        first = first.seq,
        reason = %first.reason,
        bad = bad.len(),
        override_seq = at,
        "the audit log does not verify; starting anyway as the operator asked \
         (--accept-broken-audit-chain), override recorded in the log"
    );
    Ok(())
}

/// Enters this node's key and its federation's signer keys into its audit
/// log, unless the last key entry says the same. A node whose key changed
/// needs the key it replaces (`previous_signing_key`) to sign the entry.
pub async fn register_key(ctx: &NodeContext) -> Result<(), NodeError> {
    let Some(signer) = ctx.audit_signer() else {
        return Ok(());
    };
    // A party's key, and during a coordinator rotation also the key it
    // replaces (valid for the epochs before the new one's): artifacts of
    // rounds under way at the switch still verify against this entry.
    let peer = |p: &Party| {
        let current = pb::AuditPeerKey {
            role: p.role.to_pb() as i32,
            name: p.name.clone(),
            verifying_key: p
                .signing_key
                .map(|k| k.to_bytes().to_vec())
                .unwrap_or_default(),
            valid_from_epoch: p.key_epoch,
            valid_until_epoch: 0,
        };
        let previous = p.previous_key.map(|k| pb::AuditPeerKey {
            role: p.role.to_pb() as i32,
            name: p.name.clone(),
            verifying_key: k.to_bytes().to_vec(),
            valid_from_epoch: 0,
            valid_until_epoch: p.key_epoch.saturating_sub(1),
        });
        previous.into_iter().chain(std::iter::once(current))
    };
    let peers = std::iter::once(&ctx.directory.coordinator)
        .chain(&ctx.directory.helpers)
        .filter(|p| p.name != ctx.name)
        .flat_map(peer)
        .collect();
    let key = pb::AuditKey {
        node: ctx.name.clone(),
        role: ctx.role.to_pb() as i32,
        verifying_key: signer.key.verifying_key().to_bytes().to_vec(),
        // The epoch of this node's own key entry (coordinator or helper).
        epoch: std::iter::once(&ctx.directory.coordinator)
            .chain(&ctx.directory.helpers)
            .find(|p| p.name == ctx.name)
            .map_or(0, |p| p.key_epoch),
        at_ms: now().0,
        peers,
        previous_key: Vec::new(),
        possession: Vec::new(),
    };
    if let Some(at) = ctx.store.audit_last_checkpoint_ms().await? {
        ctx.metrics.audit_appended(0, Some(at));
    }
    if ctx
        .store
        .audit_register_key(&key, &signer, ctx.previous_signer.as_ref())
        .await?
    {
        ctx.metrics.audit_appended(1, None);
        tracing::info!(
            key_id = %sealroom_protocol::SignerExt::key_id(&*signer.key),
            "signing key entered into the audit log"
        );
    }
    Ok(())
}
