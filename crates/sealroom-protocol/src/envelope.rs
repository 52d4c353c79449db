//! Signed envelopes: Ed25519 signatures over the exact encoded body of a
//! message, domain-separated by a label per message type.
//!
//! The signed bytes are `"sealroom-signature-v1" 0 label 0 body`, so a
//! signature made for one message type never verifies as another, and a
//! verifier checks the bytes it will decode — not a re-encoding. Verification
//! uses `verify_strict` (no small-order keys, canonical signatures), and
//! returns a [`Verified`] value that no other code path can construct.

use core::fmt;

use ed25519_dalek::{Signature, Signer as _};
use prost::Message;
use rand::CryptoRng;
use zeroize::ZeroizeOnDrop;

use crate::ids::{Digest, contexts};
use crate::pb;

/// Prefix of every signed byte string.
const SIGNATURE_PREFIX: &[u8] = b"sealroom-signature-v1";

/// Largest envelope body the protocol decodes (descriptors with many
/// participants are the largest signed messages: 32 bytes per party).
pub const MAX_SIGNED_BODY: usize = 4 << 20;

/// A message type that travels signed, with its domain-separation label.
pub trait SignedMessage: Message + Default {
    /// The label, e.g. `"sealroom/v1/descriptor"`.
    const LABEL: &'static str;
}

macro_rules! signed {
    ($t:ty, $label:literal) => {
        impl SignedMessage for $t {
            const LABEL: &'static str = $label;
        }
    };
}
signed!(pb::RoundDescriptor, "sealroom/v1/descriptor");
signed!(pb::Receipt, "sealroom/v1/receipt");
signed!(pb::HelperReport, "sealroom/v1/helper-report");
signed!(pb::InclusionSet, "sealroom/v1/inclusion-set");
signed!(pb::AggregateShareHeader, "sealroom/v1/aggregate-share");
signed!(pb::RoundResult, "sealroom/v1/result");
signed!(pb::AbortRecord, "sealroom/v1/abort");
signed!(pb::AuditCheckpoint, "sealroom/v1/audit-checkpoint");
signed!(pb::AuditKey, "sealroom/v1/audit-key");
signed!(pb::AuditOverride, "sealroom/v1/audit-override");
signed!(pb::EngineBatch, "sealroom/v1/engine-batch");
signed!(pb::EngineUse, "sealroom/v1/engine-use");
signed!(pb::EngineAbort, "sealroom/v1/engine-abort");

/// The id of a verifying key: BLAKE3 (derive-key mode) of its 32 bytes.
pub type KeyId = Digest;

/// A node's Ed25519 signing key. Zeroized on drop (the dalek key inside wipes
/// itself); `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl ZeroizeOnDrop for SigningKey {}

impl SigningKey {
    /// A fresh key from a cryptographic RNG (the OS generator in production).
    pub fn generate<G: CryptoRng + ?Sized>(rng: &mut G) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(rng))
    }

    /// Restores a key from its 32 secret bytes (read from a 0600 key file).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(bytes))
    }

    /// The secret bytes, for writing the key file only.
    pub fn expose_secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `message` into an envelope.
    pub fn sign<M: SignedMessage>(&self, message: &M) -> pb::SignedEnvelope {
        let body = message.encode_to_vec();
        let signature = self.0.sign(&signed_bytes(M::LABEL, &body));
        pb::SignedEnvelope {
            label: M::LABEL.to_string(),
            body,
            key_id: self.verifying_key().key_id().0.to_vec(),
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// Something that signs with one Ed25519 key. The state machines and the
/// audit log sign only through this trait, so a hardware security module or
/// a cloud KMS can hold a key without touching the protocol: [`SigningKey`]
/// (a key read from a 0600 file) is one implementation.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The public half of the key this signer uses.
    fn verifying_key(&self) -> VerifyingKey;

    /// Ed25519 signature over `message` (the domain-separated bytes
    /// [`SignerExt::sign`] builds). A signer that cannot sign (an HSM that is
    /// unreachable) says why; it never returns a signature by another key.
    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], SignerError>;
}

/// Why a [`Signer`] could not sign.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the signer of key {key_id} could not sign: {reason}")]
pub struct SignerError {
    /// The key it should have signed with.
    pub key_id: KeyId,
    /// What went wrong (never key material).
    pub reason: String,
}

/// Signing protocol messages with any [`Signer`].
pub trait SignerExt: Signer {
    /// Signs `message` into an envelope (label, key id, signature).
    fn sign<M: SignedMessage>(&self, message: &M) -> Result<pb::SignedEnvelope, SignerError> {
        let body = message.encode_to_vec();
        let signature = self.sign_raw(&signed_bytes(M::LABEL, &body))?;
        Ok(pb::SignedEnvelope {
            label: M::LABEL.to_string(),
            body,
            key_id: self.verifying_key().key_id().0.to_vec(),
            signature: signature.to_vec(),
        })
    }

    /// This signer's key id.
    fn key_id(&self) -> KeyId {
        self.verifying_key().key_id()
    }
}

impl<S: Signer + ?Sized> SignerExt for S {}

/// A shared signer, as configs hold it.
pub type SharedSigner = std::sync::Arc<dyn Signer>;

impl Signer for SigningKey {
    fn verifying_key(&self) -> VerifyingKey {
        SigningKey::verifying_key(self)
    }

    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        Ok(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(key_id={}, <redacted>)",
            self.verifying_key().key_id()
        )
    }
}

/// A public Ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses a public key, refusing encodings that are not curve points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<VerifyingKey, EnvelopeError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(VerifyingKey)
            .map_err(|_| EnvelopeError::InvalidPublicKey)
    }

    /// The 32 public bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        Digest::of(contexts::KEY_ID, &self.0.to_bytes())
    }

    /// Verifies a raw Ed25519 signature over `message` (strict: no
    /// small-order keys, canonical signatures). For the few signatures that
    /// are not over an envelope (a key's proof of possession of itself).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), EnvelopeError> {
        let signature = Signature::from_bytes(signature);
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| EnvelopeError::BadSignature { label: "raw" })
    }

    /// Verifies `envelope` as an `M` signed by this key, and decodes it.
    pub fn verify<M: SignedMessage>(
        &self,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Verified<M>, EnvelopeError> {
        if envelope.label != M::LABEL {
            return Err(EnvelopeError::WrongLabel {
                expected: M::LABEL,
                actual: truncate(&envelope.label),
            });
        }
        if envelope.body.len() > MAX_SIGNED_BODY {
            return Err(EnvelopeError::TooLarge {
                bytes: envelope.body.len(),
                max: MAX_SIGNED_BODY,
            });
        }
        let key_id = Digest::from_slice(&envelope.key_id).ok_or(EnvelopeError::MalformedKeyId)?;
        if key_id != self.key_id() {
            return Err(EnvelopeError::UnknownKey { key_id });
        }
        let signature = Signature::from_slice(&envelope.signature)
            .map_err(|_| EnvelopeError::MalformedSignature)?;
        self.0
            .verify_strict(&signed_bytes(M::LABEL, &envelope.body), &signature)
            .map_err(|_| EnvelopeError::BadSignature { label: M::LABEL })?;
        let message = M::decode(envelope.body.as_slice()).map_err(|e| EnvelopeError::Decode {
            label: M::LABEL,
            reason: e.to_string(),
        })?;
        Ok(Verified {
            message,
            envelope: envelope.clone(),
        })
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey(key_id={})", self.key_id())
    }
}

/// The keys a signing party is trusted under: its current key and, while a
/// live rotation is under way (issue #13), the key it replaces. A signed
/// message names its key by id; [`PartyKeys::verify`] checks it against
/// whichever of the two it names and refuses any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartyKeys {
    /// The key the party signs with from its switch on.
    pub current: VerifyingKey,
    /// The key it replaces, until the rotation is retired.
    pub previous: Option<VerifyingKey>,
}

impl PartyKeys {
    /// One key, no rotation under way.
    pub fn single(key: VerifyingKey) -> PartyKeys {
        PartyKeys {
            current: key,
            previous: None,
        }
    }

    /// Every key in force, current first.
    pub fn all(&self) -> impl Iterator<Item = VerifyingKey> + '_ {
        std::iter::once(self.current).chain(self.previous)
    }

    /// Whether `key` is one of them.
    pub fn contains(&self, key: &VerifyingKey) -> bool {
        self.all().any(|k| k == *key)
    }

    /// Verifies `envelope` as an `M` signed by one of these keys (the one
    /// its key id names), and decodes it.
    pub fn verify<M: SignedMessage>(
        &self,
        envelope: &pb::SignedEnvelope,
    ) -> Result<Verified<M>, EnvelopeError> {
        let claimed = Digest::from_slice(&envelope.key_id);
        let key = self
            .previous
            .filter(|k| Some(k.key_id()) == claimed)
            .unwrap_or(self.current);
        key.verify(envelope)
    }
}

impl From<VerifyingKey> for PartyKeys {
    fn from(key: VerifyingKey) -> PartyKeys {
        PartyKeys::single(key)
    }
}

/// A message whose signature has been checked; only [`VerifyingKey::verify`]
/// makes one.
#[derive(Clone, Debug)]
pub struct Verified<M> {
    message: M,
    envelope: pb::SignedEnvelope,
}

impl<M> Verified<M> {
    /// The decoded message.
    pub fn message(&self) -> &M {
        &self.message
    }

    /// The envelope it came in (for forwarding and the audit log).
    pub fn envelope(&self) -> &pb::SignedEnvelope {
        &self.envelope
    }

    /// BLAKE3 of the signed body under `context`.
    pub fn body_digest(&self, context: &str) -> Digest {
        Digest::of(context, &self.envelope.body)
    }
}

/// The key id an envelope claims, without verifying anything (to pick which
/// trusted key to verify it with).
pub fn claimed_key_id(envelope: &pb::SignedEnvelope) -> Result<KeyId, EnvelopeError> {
    Digest::from_slice(&envelope.key_id).ok_or(EnvelopeError::MalformedKeyId)
}

/// Decodes a top-level message from untrusted bytes with a size limit.
pub fn decode_limited<M: Message + Default>(bytes: &[u8], max: usize) -> Result<M, EnvelopeError> {
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge {
            bytes: bytes.len(),
            max,
        });
    }
    M::decode(bytes).map_err(|e| EnvelopeError::Decode {
        label: "message",
        reason: e.to_string(),
    })
}

fn signed_bytes(label: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_PREFIX.len() + label.len() + body.len() + 2);
    out.extend_from_slice(SIGNATURE_PREFIX);
    out.push(0);
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Why an envelope was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope is for another message type.
    #[error("expected a {expected} envelope, got label {actual:?}")]
    WrongLabel {
        /// Label required.
        expected: &'static str,
        /// Label supplied (truncated).
        actual: String,
    },
    /// The key id is not 32 bytes.
    #[error("envelope key id is not 32 bytes")]
    MalformedKeyId,
    /// Signed by a key this verifier does not trust.
    #[error("envelope is signed by unknown key {key_id}")]
    UnknownKey {
        /// The key id claimed.
        key_id: KeyId,
    },
    /// The signature is not 64 bytes.
    #[error("envelope signature is not 64 bytes")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("signature on {label} does not verify")]
    BadSignature {
        /// The message type.
        label: &'static str,
    },
    /// The body does not decode as the labelled message type.
    #[error("{label} does not decode: {reason}")]
    Decode {
        /// The message type.
        label: &'static str,
        /// The decoder's account.
        reason: String,
    },
    /// A message larger than allowed.
    #[error("message of {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size supplied.
        bytes: usize,
        /// Limit.
        max: usize,
    },
    /// Bytes that are not an Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    fn key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn receipt() -> pb::Receipt {
        pb::Receipt {
            round_id: 7,
            helper_index: 1,
            client_index: 2,
            ..Default::default()
        }
    }

    #[test]
    fn sign_then_verify() {
        let k = key(1);
        let env = k.sign(&receipt());
        let v = k
            .verifying_key()
            .verify::<pb::Receipt>(&env)
            .expect("valid");
        assert_eq!(v.message(), &receipt());
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(1);
        let mut env = k.sign(&receipt());
        env.body.push(0);
        assert_eq!(
            k.verifying_key().verify::<pb::Receipt>(&env).err(),
            Some(EnvelopeError::BadSignature {
                label: "sealroom/v1/receipt"
            })
        );
    }

    #[test]
    fn a_signature_for_one_type_does_not_verify_as_another() {
        let k = key(1);
        let mut env = k.sign(&receipt());
        assert!(matches!(
            k.verifying_key().verify::<pb::HelperReport>(&env),
            Err(EnvelopeError::WrongLabel { .. })
        ));
        // Relabelling breaks the signature, since the label is signed.
        env.label = "sealroom/v1/helper-report".into();
        assert!(matches!(
            k.verifying_key().verify::<pb::HelperReport>(&env),
            Err(EnvelopeError::BadSignature { .. })
        ));
    }

    #[test]
    fn party_keys_take_either_key_of_a_rotation_and_nothing_else() {
        let (old, new, other) = (key(1), key(2), key(3));
        let rotating = PartyKeys {
            current: new.verifying_key(),
            previous: Some(old.verifying_key()),
        };
        assert!(
            rotating
                .verify::<pb::Receipt>(&old.sign(&receipt()))
                .is_ok()
        );
        assert!(
            rotating
                .verify::<pb::Receipt>(&new.sign(&receipt()))
                .is_ok()
        );
        assert!(matches!(
            rotating.verify::<pb::Receipt>(&other.sign(&receipt())),
            Err(EnvelopeError::UnknownKey { .. })
        ));
        // Retired: the old key is refused.
        let retired = PartyKeys::single(new.verifying_key());
        assert!(matches!(
            retired.verify::<pb::Receipt>(&old.sign(&receipt())),
            Err(EnvelopeError::UnknownKey { .. })
        ));
        // A key id naming the previous key with another key's signature.
        let mut forged = other.sign(&receipt());
        forged.key_id = old.verifying_key().key_id().0.to_vec();
        assert!(matches!(
            rotating.verify::<pb::Receipt>(&forged),
            Err(EnvelopeError::BadSignature { .. })
        ));
        assert!(rotating.contains(&old.verifying_key()));
        assert!(!retired.contains(&old.verifying_key()));
    }

    #[test]
    fn wrong_key_and_malformed_fields() {
        let env = key(1).sign(&receipt());
        assert!(matches!(
            key(2).verifying_key().verify::<pb::Receipt>(&env),
            Err(EnvelopeError::UnknownKey { .. })
        ));
        let mut forged = env.clone();
        forged.key_id = key(2).verifying_key().key_id().0.to_vec();
        assert!(matches!(
            key(2).verifying_key().verify::<pb::Receipt>(&forged),
            Err(EnvelopeError::BadSignature { .. })
        ));
        let mut short = env.clone();
        short.signature.truncate(10);
        assert_eq!(
            key(1).verifying_key().verify::<pb::Receipt>(&short).err(),
            Some(EnvelopeError::MalformedSignature)
        );
        let mut bad_id = env;
        bad_id.key_id = vec![1, 2, 3];
        assert_eq!(
            key(1).verifying_key().verify::<pb::Receipt>(&bad_id).err(),
            Some(EnvelopeError::MalformedKeyId)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = key(3);
        let secret = hex::encode(*k.expose_secret_bytes());
        let text = format!("{k:?}");
        assert!(!text.contains(&secret[..16]), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn decode_limited_refuses_oversized_and_garbage() {
        assert!(matches!(
            decode_limited::<pb::Upload>(&[0; 100], 10),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_limited::<pb::Upload>(&[0xff, 0xff, 0xff], 10),
            Err(EnvelopeError::Decode { .. })
        ));
    }
}
