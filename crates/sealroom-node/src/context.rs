//! What every node runtime needs: identity, keys, peers, storage, metrics.

use std::sync::Arc;

use sealroom_protocol::{PartyId, SharedSigner};
use sealroom_store::Store;
use tonic::{Request, Status};

use crate::config::{FederationSpec, Role};
use crate::directory::{Directory, Party};
use crate::metrics::Metrics;
use crate::tls::{TlsMaterial, peer_identity};

/// A node's runtime context.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The shared federation spec.
    pub federation: Arc<FederationSpec>,
    /// Parties by identity.
    pub directory: Arc<Directory>,
    /// This node's name.
    pub name: String,
    /// This node's role.
    pub role: Role,
    /// This node's identity (its certificate's fingerprint).
    pub me: PartyId,
    /// TLS material.
    pub tls: TlsMaterial,
    /// The signer (coordinator and helpers): a key file's key, or an HSM.
    pub signer: Option<SharedSigner>,
    /// The signer of the key `signer` replaces, during a rotation.
    pub previous_signer: Option<SharedSigner>,
    /// The identities allowed to complete a TLS handshake with this node.
    pub registry: crate::tls::Registry,
    /// Durable state.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    /// Rounds whose replay archive is kept.
    pub archive_rounds: usize,
    /// Start even if the audit log does not verify, recording the decision
    /// in the log (`sealroom node --accept-broken-audit-chain`).
    pub accept_broken_audit_chain: bool,
    /// Keys a reload changed while the node runs (a coordinator key
    /// rotation, see [`crate::reload`]): the role's driver applies each one
    /// to its state machine and its audit log.
    pub key_updates: KeyUpdates,
}

/// A change of keys taking effect while a node runs.
#[derive(Clone, Debug)]
pub struct KeyUpdate {
    /// The reloaded federation (the coordinator's keys and their epochs).
    pub directory: Arc<Directory>,
    /// The coordinator's own new signer and the one it replaces (only on
    /// the coordinator, when its key rotated).
    pub signers: Option<(SharedSigner, SharedSigner)>,
}

/// Where reloads publish [`KeyUpdate`]s.
pub type KeyUpdates = Arc<tokio::sync::watch::Sender<Option<KeyUpdate>>>;

/// A publisher with nothing published yet.
pub fn key_updates() -> KeyUpdates {
    Arc::new(tokio::sync::watch::Sender::new(None))
}

impl NodeContext {
    /// The signer of this node's audit checkpoints, if it signs.
    pub fn audit_signer(&self) -> Option<sealroom_store::AuditSigner> {
        self.signer.as_ref().map(|key| sealroom_store::AuditSigner {
            node: self.name.clone(),
            key: key.clone(),
        })
    }

    /// The federation as last (re)loaded: the registry's, which a SIGHUP
    /// reload replaces, else the one the node started with.
    pub fn live_directory(&self) -> Arc<Directory> {
        self.registry
            .directory()
            .unwrap_or_else(|| self.directory.clone())
    }

    /// The signer, for roles that must sign.
    pub fn require_signer(&self) -> Result<SharedSigner, crate::NodeError> {
        self.signer
            .clone()
            .ok_or(crate::NodeError::MissingSigningKey)
    }

    /// Checks the TLS peer of a request: a registered party in one of `allowed`
    /// roles. Refusals are counted in `sealroom_requests_refused_total`.
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        allowed: &[Role],
    ) -> Result<Party, Status> {
        authorize(&self.registry, &self.metrics, request, rpc, allowed)
    }
}

/// See [`NodeContext::authorize`].
pub fn authorize<T>(
    registry: &crate::tls::Registry,
    metrics: &Metrics,
    request: &Request<T>,
    rpc: &str,
    allowed: &[Role],
) -> Result<Party, Status> {
    let Some(id) = peer_identity(request) else {
        metrics.request_refused(rpc, "no_identity");
        return Err(Status::unauthenticated("no verified client certificate"));
    };
    let Some(party) = registry.party(&id) else {
        metrics.request_refused(rpc, "unknown_peer");
        tracing::warn!(peer = %id, rpc, "request from a certificate not registered in this federation");
        return Err(Status::permission_denied(
            "certificate is not registered in this federation",
        ));
    };
    if !allowed.contains(&party.role) {
        metrics.request_refused(rpc, "wrong_role");
        tracing::warn!(peer = %party.name, role = party.role.as_str(), rpc, "request refused: wrong role");
        return Err(Status::permission_denied(format!(
            "{} {:?} may not call {rpc}",
            party.role.as_str(),
            party.name
        )));
    }
    Ok(party)
}

/// The current time as the protocol sees it.
pub fn now() -> sealroom_protocol::Millis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    sealroom_protocol::Millis(since.as_millis() as u64)
}

/// A tokio instant for a protocol deadline.
pub fn instant_of(deadline: sealroom_protocol::Millis) -> tokio::time::Instant {
    let now = now();
    tokio::time::Instant::now() + std::time::Duration::from_millis(deadline.0.saturating_sub(now.0))
}

/// 32 bytes from the OS generator (a descriptor's nonce).
pub fn random_nonce() -> Result<[u8; 32], crate::NodeError> {
    let mut nonce = [0u8; 32];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut nonce)
        .map_err(|e| crate::NodeError::Randomness(e.to_string()))?;
    Ok(nonce)
}
