//! Who is who in a federation: identities (certificate fingerprints), roles,
//! names, endpoints and signing keys, from `federation.toml`.

use std::collections::BTreeMap;

use sealroom_protocol::descriptor::{DescriptorTrust, TrustedKey};
use sealroom_protocol::{PartyId, PartyKeys, VerifyingKey};

use crate::config::{FederationSpec, PartySpec, Role};

/// One known party.
#[derive(Clone, Debug)]
pub struct Party {
    /// Its identity: the fingerprint of the certificate it joined with,
    /// named by every round and log, stable across certificate rotations.
    pub id: PartyId,
    /// The fingerprints of the certificates it may present at a TLS
    /// handshake: the one it presents now (its identity until its first
    /// certificate rotation) and, during a rotation, the one replaced.
    pub certificates: Vec<PartyId>,
    /// Its role.
    pub role: Role,
    /// Its unique name.
    pub name: String,
    /// Where it serves, if it does.
    pub endpoint: Option<String>,
    /// Its signing key, if it signs.
    pub signing_key: Option<VerifyingKey>,
    /// The epoch from which `signing_key` signs (the count of its
    /// rotations; for the coordinator also the descriptors' key epoch).
    pub key_epoch: u64,
    /// During a rotation: the key `signing_key` replaces — for the
    /// coordinator trusted for the epochs before `key_epoch`, for a helper
    /// trusted beside the new one until the rotation is retired.
    pub previous_key: Option<VerifyingKey>,
}

impl Party {
    /// The keys this party's signatures are checked against (its signing
    /// key, and the one it replaces during a rotation), if it signs.
    pub fn keys(&self) -> Option<PartyKeys> {
        self.signing_key.map(|current| PartyKeys {
            current,
            previous: self.previous_key,
        })
    }
}

/// The federation's parties, indexed by identity.
#[derive(Clone, Debug)]
pub struct Directory {
    /// The federation id.
    pub federation_id: String,
    /// The coordinator.
    pub coordinator: Party,
    /// Helpers in helper-index order.
    pub helpers: Vec<Party>,
    /// Clients in declaration order.
    pub clients: Vec<Party>,
    /// The federation's `min_clients`: this node refuses rounds below it.
    pub min_clients: usize,
    /// Shares needed to reconstruct (the helper count in additive mode).
    pub threshold: usize,
    by_id: BTreeMap<PartyId, Party>,
    /// Certificate fingerprint → identity.
    by_certificate: BTreeMap<PartyId, PartyId>,
}

/// A federation file whose identities or keys do not parse.
#[derive(Debug, thiserror::Error)]
#[error("federation: {role} {name:?}: {reason}")]
pub struct DirectoryError {
    /// Role of the party.
    pub role: &'static str,
    /// Name of the party.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

fn party(spec: &PartySpec, role: Role, needs_key: bool) -> Result<Party, DirectoryError> {
    let err = |reason: String| DirectoryError {
        role: role.as_str(),
        name: spec.name.clone(),
        reason,
    };
    let bytes = hex::decode(&spec.fingerprint).map_err(|e| err(format!("fingerprint: {e}")))?;
    let id =
        PartyId::from_slice(&bytes).ok_or_else(|| err("fingerprint is not 32 bytes".into()))?;
    let certificates = spec
        .certificates()
        .map(|hexcert| {
            hex::decode(hexcert)
                .ok()
                .and_then(|b| PartyId::from_slice(&b))
                .ok_or_else(|| err("certificate is not 32 bytes of hex".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signing_key = match &spec.signing_key {
        Some(hexkey) => {
            let bytes: [u8; 32] = hex::decode(hexkey)
                .map_err(|e| err(format!("signing_key: {e}")))?
                .try_into()
                .map_err(|_| err("signing_key is not 32 bytes".into()))?;
            Some(VerifyingKey::from_bytes(&bytes).map_err(|e| err(format!("signing_key: {e}")))?)
        }
        None if needs_key => return Err(err("signing_key is missing".into())),
        None => None,
    };
    let previous_key = match &spec.previous_signing_key {
        Some(hexkey) => {
            let bytes: [u8; 32] = hex::decode(hexkey)
                .map_err(|e| err(format!("previous_signing_key: {e}")))?
                .try_into()
                .map_err(|_| err("previous_signing_key is not 32 bytes".into()))?;
            Some(
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| err(format!("previous_signing_key: {e}")))?,
            )
        }
        None => None,
    };
    if previous_key.is_some() && spec.key_epoch == 0 {
        return Err(err(
            "previous_signing_key needs key_epoch ≥ 1 (the epoch the new key signs from)".into(),
        ));
    }
    Ok(Party {
        id,
        certificates,
        role,
        name: spec.name.clone(),
        endpoint: spec.endpoint.clone(),
        signing_key,
        key_epoch: spec.key_epoch,
        previous_key,
    })
}

impl Directory {
    /// Builds the directory from a federation spec.
    pub fn new(spec: &FederationSpec) -> Result<Directory, DirectoryError> {
        let coordinator = party(&spec.coordinator, Role::Coordinator, true)?;
        let helpers: Vec<Party> = spec
            .helpers
            .iter()
            .map(|h| party(h, Role::Helper, true))
            .collect::<Result<_, _>>()?;
        let clients: Vec<Party> = spec
            .clients
            .iter()
            .map(|c| party(c, Role::Client, false))
            .collect::<Result<_, _>>()?;
        let admins: Vec<Party> = spec
            .admins
            .iter()
            .map(|a| party(a, Role::Admin, false))
            .collect::<Result<_, _>>()?;
        let mut by_id = BTreeMap::new();
        let mut by_certificate = BTreeMap::new();
        for p in std::iter::once(&coordinator)
            .chain(&helpers)
            .chain(&clients)
            .chain(&admins)
        {
            if by_id.insert(p.id, p.clone()).is_some() {
                return Err(DirectoryError {
                    role: p.role.as_str(),
                    name: p.name.clone(),
                    reason: "fingerprint is used by another party".into(),
                });
            }
            for cert in &p.certificates {
                if by_certificate.insert(*cert, p.id).is_some() {
                    return Err(DirectoryError {
                        role: p.role.as_str(),
                        name: p.name.clone(),
                        reason: "certificate is used by another party".into(),
                    });
                }
            }
        }
        Ok(Directory {
            min_clients: spec.min_clients,
            threshold: match spec.mode {
                crate::config::ModeSpec::Threshold => spec.threshold.unwrap_or(spec.helpers.len()),
                crate::config::ModeSpec::Additive => spec.helpers.len(),
            },
            federation_id: spec.federation_id.clone(),
            coordinator,
            helpers,
            clients,
            by_id,
            by_certificate,
        })
    }

    /// Every party (coordinator, helpers, clients, admins).
    pub fn parties(&self) -> impl Iterator<Item = &Party> {
        self.by_id.values()
    }

    /// The party with this identity.
    pub fn get(&self, id: &PartyId) -> Option<&Party> {
        self.by_id.get(id)
    }

    /// The party that may present the certificate with this fingerprint.
    pub fn by_certificate(&self, certificate: &PartyId) -> Option<&Party> {
        self.by_id.get(self.by_certificate.get(certificate)?)
    }

    /// The party with this name.
    pub fn by_name(&self, name: &str) -> Option<&Party> {
        self.by_id.values().find(|p| p.name == name)
    }

    /// Descriptor trust: this federation, the coordinator's key (from its
    /// `key_epoch` on) and, during a rotation, the key it replaces (for the
    /// epochs before), and the federation's `min_clients` as this node's own
    /// floor.
    pub fn trust(&self) -> DescriptorTrust {
        let mut trust = DescriptorTrust::single(
            self.federation_id.clone(),
            self.coordinator
                .signing_key
                .expect("coordinator key is required by Directory::new"),
        );
        trust.coordinator_keys[0].valid_from_epoch = self.coordinator.key_epoch;
        if let Some(previous) = self.coordinator.previous_key {
            // Directory::new refuses a previous key without key_epoch ≥ 1.
            trust.coordinator_keys.push(TrustedKey {
                key: previous,
                valid_from_epoch: 0,
                valid_until_epoch: Some(self.coordinator.key_epoch.saturating_sub(1)),
            });
        }
        trust.min_clients_floor = self.min_clients;
        trust.pinned_helpers = Some((self.helpers.iter().map(|h| h.id).collect(), self.threshold));
        trust
    }

    /// The keys release evidence is checked against (coordinator trust and
    /// every helper's key).
    pub fn keys(&self) -> sealroom_protocol::evidence::FederationKeys {
        sealroom_protocol::evidence::FederationKeys {
            trust: self.trust(),
            helper_keys: self.helper_keys(),
        }
    }

    /// Helpers' signing keys by identity (two for a helper whose key
    /// rotation is under way).
    pub fn helper_keys(&self) -> BTreeMap<PartyId, PartyKeys> {
        self.helpers
            .iter()
            .map(|h| {
                (
                    h.id,
                    h.keys()
                        .expect("helper keys are required by Directory::new"),
                )
            })
            .collect()
    }
}

/// A round outcome record (result or abort) verified against the
/// coordinator's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedOutcome {
    /// The round.
    pub round_id: u64,
    /// `"result"` or `"abort"`.
    pub kind: &'static str,
}

/// Checks that `envelope` is a result or abort record signed by this
/// federation's coordinator (before anything of it is logged or believed).
pub fn verify_outcome(
    directory: &Directory,
    envelope: &sealroom_protocol::pb::SignedEnvelope,
) -> Result<VerifiedOutcome, sealroom_protocol::envelope::EnvelopeError> {
    use sealroom_protocol::envelope::{EnvelopeError, SignedMessage as _};
    use sealroom_protocol::pb;
    // The coordinator's key, or during a rotation the one it replaces (an
    // outcome of a round that began before the switch).
    let claimed = sealroom_protocol::ids::Digest::from_slice(&envelope.key_id)
        .ok_or(EnvelopeError::MalformedKeyId)?;
    let key = std::iter::once(directory.coordinator.signing_key)
        .chain(std::iter::once(directory.coordinator.previous_key))
        .flatten()
        .find(|k| k.key_id() == claimed)
        .ok_or(EnvelopeError::UnknownKey { key_id: claimed })?;
    if envelope.label == pb::RoundResult::LABEL {
        let v = key.verify::<pb::RoundResult>(envelope)?;
        Ok(VerifiedOutcome {
            round_id: v.message().round_id,
            kind: "result",
        })
    } else {
        let v = key.verify::<pb::AbortRecord>(envelope)?;
        Ok(VerifiedOutcome {
            round_id: v.message().round_id,
            kind: "abort",
        })
    }
}
