//! Pinned test vectors: the exact bytes of a signed envelope, a round
//! descriptor, its hash and key id, and a result's sum digest, from fixed
//! keys and fields. Any change to the wire encoding, the signing labels or
//! domain separation, or a digest context breaks them: such a change needs
//! a new protocol version, not an edit of these constants.

use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::descriptor::{DescriptorParams, DescriptorTrust, VerifiedDescriptor};
use sealroom_protocol::envelope::SigningKey;
use sealroom_protocol::ids::{Digest, contexts};
use sealroom_protocol::{Millis, PartyId, pb};

fn key() -> SigningKey {
    SigningKey::from_secret_bytes(&[0x42; 32])
}

fn descriptor() -> VerifiedDescriptor {
    DescriptorParams {
        engine: None,
        share_bits: None,
        federation_id: "vectors".into(),
        round_id: 7,
        epoch: 1,
        task_name: "synthetic".into(),
        task_params: b"{}".to_vec(),
        vector_len: 4,
        ring: RingKind::Fp61,
        spec: QuantSpec::new(16, 8.0, 24).expect("a valid spec"),
        threshold: Some(2),
        clients: (1..=3u8).map(|i| PartyId([i; 32])).collect(),
        helpers: (0x11..=0x13u8).map(|i| PartyId([i; 32])).collect(),
        min_clients: 2,
        issued_at: Millis(1_700_000_000_000),
        upload_window_ms: 5_000,
        aggregation_window_ms: 5_000,
        nonce: [0x5e; 32],
    }
    .sign(&key())
    .expect("the fixed descriptor is valid")
}

#[test]
fn key_id_is_pinned() {
    assert_eq!(
        hex::encode(key().verifying_key().key_id().0),
        PINNED_KEY_ID,
        "the key id derivation changed"
    );
}

#[test]
fn a_signed_envelope_is_pinned() {
    let receipt = pb::Receipt {
        descriptor_hash: vec![0xaa; 32],
        round_id: 7,
        helper_index: 2,
        client_index: 1,
        upload_digest: vec![0xbb; 32],
    };
    let envelope = key().sign(&receipt);
    assert_eq!(envelope.label, "sealroom/v1/receipt");
    assert_eq!(hex::encode(&envelope.body), PINNED_RECEIPT_BODY);
    assert_eq!(hex::encode(&envelope.signature), PINNED_RECEIPT_SIGNATURE);
    // The signature is plain Ed25519 over the layout protocol.md §1
    // documents, checked here with ed25519-dalek directly.
    let mut signed = b"sealroom-signature-v1\0sealroom/v1/receipt\0".to_vec();
    signed.extend_from_slice(&envelope.body);
    let public = ed25519_dalek::VerifyingKey::from_bytes(&key().verifying_key().to_bytes())
        .expect("a valid key");
    let signature = ed25519_dalek::Signature::from_slice(&envelope.signature).expect("64 bytes");
    public
        .verify_strict(&signed, &signature)
        .expect("the documented layout is what is signed");
    // It verifies, and a flipped bit does not.
    key()
        .verifying_key()
        .verify::<pb::Receipt>(&envelope)
        .expect("the pinned envelope verifies");
    let mut flipped = envelope.clone();
    flipped.body[0] ^= 1;
    assert!(
        key()
            .verifying_key()
            .verify::<pb::Receipt>(&flipped)
            .is_err()
    );
}

#[test]
fn a_descriptor_and_its_hash_are_pinned() {
    let d = descriptor();
    assert_eq!(hex::encode(&d.envelope().body), PINNED_DESCRIPTOR_BODY);
    assert_eq!(
        hex::encode(&d.envelope().signature),
        PINNED_DESCRIPTOR_SIGNATURE
    );
    assert_eq!(hex::encode(d.hash().0), PINNED_DESCRIPTOR_HASH);
    // A receiver verifies the pinned bytes.
    let trust = DescriptorTrust::single("vectors", key().verifying_key());
    let again = VerifiedDescriptor::verify(d.envelope(), &trust).expect("verifies");
    assert_eq!(again.hash(), d.hash());
    assert_eq!(
        hex::encode(Digest::of(contexts::INCLUSION, b"inclusion").0),
        PINNED_INCLUSION_DIGEST
    );
}

#[test]
fn a_result_sum_digest_is_pinned() {
    assert_eq!(
        hex::encode(sealroom_protocol::coordinator::sum_digest(&[1, -2, 3, i64::MIN]).0),
        PINNED_SUM_DIGEST
    );
}

const PINNED_KEY_ID: &str = "513991c30dd0ecef9d1d2445dbc2317c97676881a2c230c139afae0c0eed998e";
const PINNED_RECEIPT_BODY: &str = "0a20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1007180220012a20bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const PINNED_RECEIPT_SIGNATURE: &str = "eb520b8d47fe489e52ba67b1f279bcde8b3c37bf24d5da4f0cfdbc25cab70ac3178620ecf0a557be04ca770aecb41c5a0f5cd9e1c8de0abb95ead17ef9337f0c";
const PINNED_DESCRIPTOR_BODY: &str = "08011207766563746f7273180720012a220a0973796e74686574696310041803220d082011000000000000204018182a027b7d30023a2001010101010101010101010101010101010101010101010101010101010101013a2002020202020202020202020202020202020202020202020202020202020202023a200303030303030303030303030303030303030303030303030303030303030303422011111111111111111111111111111111111111111111111111111111111111114220121212121212121212121212121212121212121212121212121212121212121242201313131313131313131313131313131313131313131313131313131313131313480250025880d095ffbc3160882768882772205e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e7a20513991c30dd0ecef9d1d2445dbc2317c97676881a2c230c139afae0c0eed998e";
const PINNED_DESCRIPTOR_SIGNATURE: &str = "ae40846ec4d00655b8153727a7c1d4c7786c88bdb04fc900a597fa84d18e969d139250429738337d090ff225996a1342f675eb83e91f0bd01c1be21891c3a30d";
const PINNED_DESCRIPTOR_HASH: &str =
    "594233f2945467545996a3ba9e8bafd7762ae11428309b3415e114032f9dafb5";
const PINNED_INCLUSION_DIGEST: &str =
    "62d99a2d5bc1ffeb6e8d04352de89184606f579fcf1d8a22e4a71bf6336d3ecc";
const PINNED_SUM_DIGEST: &str = "577cfc369009c37bb534d42d1b1b1bb83a174d0c1db35075da7c6d00dab1151a";
