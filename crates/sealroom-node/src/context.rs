//! What every node runtime needs: identity, keys, peers, storage, metrics.

use std::sync::Arc;

use sealroom_protocol::{PartyId, SigningKey};
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
    /// Signing key (coordinator and helpers).
    pub signing_key: Option<SigningKey>,
    /// Durable state.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    /// Rounds whose replay archive is kept.
    pub archive_rounds: usize,
}

impl NodeContext {
    /// Checks the TLS peer of a request: a registered party in one of `allowed`
    /// roles. Refusals are counted in `sealroom_requests_refused_total`.
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        allowed: &[Role],
    ) -> Result<Party, Status> {
        authorize(&self.directory, &self.metrics, request, rpc, allowed)
    }
}

/// See [`NodeContext::authorize`].
pub fn authorize<T>(
    directory: &Directory,
    metrics: &Metrics,
    request: &Request<T>,
    rpc: &str,
    allowed: &[Role],
) -> Result<Party, Status> {
    let Some(id) = peer_identity(request) else {
        metrics.request_refused(rpc, "no_identity");
        return Err(Status::unauthenticated("no verified client certificate"));
    };
    let Some(party) = directory.get(&id) else {
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
    Ok(party.clone())
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
