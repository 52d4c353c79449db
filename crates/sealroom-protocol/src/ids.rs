//! Identities, digests and time as the protocol sees them.

use core::fmt;

/// A party's identity: the SHA-256 fingerprint of its X.509 certificate in the
/// federation PKI (computed by the network layer from the authenticated TLS
/// peer; the protocol only compares them).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartyId(pub [u8; 32]);

impl PartyId {
    /// Parses a 32-byte identity from the wire.
    pub fn from_slice(bytes: &[u8]) -> Option<PartyId> {
        Some(PartyId(bytes.try_into().ok()?))
    }

    /// Full lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PartyId {
    /// The first 8 bytes in hex, enough to tell parties apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyId({self})")
    }
}

/// A 32-byte BLAKE3 digest (descriptor hashes, inclusion-set hashes, key ids).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parses a 32-byte digest from the wire.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        Some(Digest(bytes.try_into().ok()?))
    }

    /// BLAKE3 of `data` under a derive-key context, so digests of different
    /// kinds of object can never collide by construction.
    pub fn of(context: &str, data: &[u8]) -> Digest {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(data);
        Digest(*hasher.finalize().as_bytes())
    }

    /// Full lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Derive-key contexts of the protocol's digests.
pub mod contexts {
    /// Hash of a round descriptor's encoded body.
    pub const DESCRIPTOR: &str = "sealroom 2026-11 descriptor hash v1";
    /// Hash of an inclusion set's encoded body.
    pub const INCLUSION: &str = "sealroom 2026-11 inclusion-set hash v1";
    /// Digest of an encoded upload, in receipts.
    pub const UPLOAD: &str = "sealroom 2026-11 upload digest v1";
    /// Digest of an aggregate share vector.
    pub const AGGREGATE: &str = "sealroom 2026-11 aggregate-share digest v1";
    /// Key id of an Ed25519 verifying key.
    pub const KEY_ID: &str = "sealroom 2026-11 ed25519 key id v1";
}

/// A point in time: milliseconds since the Unix epoch, as the caller's clock
/// reports it. The protocol never reads a clock itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// The roles of a federation's parties: the three of a round and the
/// admins who ask for rounds. In config files: `"coordinator"`,
/// `"helper"`, `"client"`, `"admin"`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Issues descriptors, decides inclusion sets, publishes outcomes.
    Coordinator,
    /// Holds shares and answers with aggregate shares.
    Helper,
    /// Holds private data and shares its input.
    Client,
    /// Asks the coordinator for rounds.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Helper, Role::Client, Role::Admin];

    /// The name in configs, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Helper => "helper",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The wire form.
    pub fn to_pb(self) -> crate::pb::PartyRole {
        match self {
            Role::Coordinator => crate::pb::PartyRole::Coordinator,
            Role::Helper => crate::pb::PartyRole::Helper,
            Role::Client => crate::pb::PartyRole::Client,
            Role::Admin => crate::pb::PartyRole::Admin,
        }
    }

    /// Parses the wire form (`None` for an unknown or unspecified role).
    pub fn from_pb(role: i32) -> Option<Role> {
        match crate::pb::PartyRole::try_from(role) {
            Ok(crate::pb::PartyRole::Coordinator) => Some(Role::Coordinator),
            Ok(crate::pb::PartyRole::Helper) => Some(Role::Helper),
            Ok(crate::pb::PartyRole::Client) => Some(Role::Client),
            Ok(crate::pb::PartyRole::Admin) => Some(Role::Admin),
            Ok(crate::pb::PartyRole::Unspecified) | Err(_) => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::parse(s).ok_or_else(|| {
            format!("unknown role {s:?} (expected coordinator, helper, client or admin)")
        })
    }
}
