//! Pinned test vectors of the audit log's encoding (docs/protocol.md §10):
//! an entry's chain hash, recomputed here with `blake3` directly over the
//! documented byte layout, and the exact bytes of a signed checkpoint and of
//! a signed override, from fixed keys and fields. A change to the layout, a
//! context string or a label breaks them, and with them every independent
//! verifier written from the document: such a change needs a new entry
//! format, not an edit of these constants.

use prost::Message as _;
use sealroom_protocol::{SigningKey, pb};
use sealroom_store::audit::{entry_hash, possession_message};
use sealroom_store::{AuditEntry, verify_chain};

fn key() -> SigningKey {
    SigningKey::from_secret_bytes(&[0x42; 32])
}

/// The documented layout, written out independently of the store's code.
fn documented_hash(
    seq: u64,
    at_ms: u64,
    kind: &str,
    round: Option<u64>,
    artifact: &[u8],
    prev: &[u8; 32],
) -> [u8; 32] {
    let mut input = Vec::new();
    input.extend_from_slice(&seq.to_le_bytes());
    input.extend_from_slice(&at_ms.to_le_bytes());
    input.extend_from_slice(&(kind.len() as u64).to_le_bytes());
    input.extend_from_slice(kind.as_bytes());
    match round {
        None => input.push(0),
        Some(r) => {
            input.push(1);
            input.extend_from_slice(&r.to_le_bytes());
        }
    }
    input.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    input.extend_from_slice(artifact);
    input.extend_from_slice(prev);
    blake3::derive_key("sealroom 2026-11 audit entry v1", &input)
}

#[test]
fn an_entry_hash_is_pinned() {
    let artifact = [0xa5u8; 5];
    let prev = [0x11u8; 32];
    let with_round = entry_hash(3, 1_700_000_000_123, "report", Some(7), &artifact, &prev);
    assert_eq!(
        with_round,
        documented_hash(3, 1_700_000_000_123, "report", Some(7), &artifact, &prev),
        "the chain hash is not the documented layout"
    );
    assert_eq!(hex::encode(with_round), PINNED_HASH_WITH_ROUND);
    let without = entry_hash(0, 1_700_000_000_000, "key", None, &artifact, &[0; 32]);
    assert_eq!(
        without,
        documented_hash(0, 1_700_000_000_000, "key", None, &artifact, &[0; 32])
    );
    assert_eq!(hex::encode(without), PINNED_HASH_WITHOUT_ROUND);
}

#[test]
fn the_possession_message_is_the_documented_concatenation() {
    let message = possession_message(&[1; 32], &[2; 32]);
    let mut expected = b"sealroom audit key possession v1".to_vec();
    expected.extend_from_slice(&[1; 32]);
    expected.extend_from_slice(&[2; 32]);
    assert_eq!(message, expected);
}

/// A two-entry log built by hand from the document: the key entry that
/// introduces the node's key, then a checkpoint over it. Its bytes are
/// pinned and it verifies.
#[test]
fn a_key_entry_and_a_checkpoint_are_pinned_and_verify() {
    let key_entry = key().sign(&pb::AuditKey {
        node: "helper-0".into(),
        role: pb::PartyRole::Helper as i32,
        verifying_key: key().verifying_key().to_bytes().to_vec(),
        epoch: 0,
        at_ms: 1_700_000_000_000,
        ..Default::default()
    });
    assert_eq!(key_entry.label, "sealroom/v1/audit-key");
    let key_bytes = key_entry.encode_to_vec();
    assert_eq!(hex::encode(&key_bytes), PINNED_KEY_ENTRY);
    let first = entry(0, 1_700_000_000_000, "key", None, key_bytes, [0; 32]);

    let checkpoint = key().sign(&pb::AuditCheckpoint {
        seq: 0,
        head_hash: first.hash.to_vec(),
        at_ms: 1_700_000_000_001,
        node: "helper-0".into(),
        round_id: 0,
    });
    assert_eq!(checkpoint.label, "sealroom/v1/audit-checkpoint");
    let checkpoint_bytes = checkpoint.encode_to_vec();
    assert_eq!(hex::encode(&checkpoint_bytes), PINNED_CHECKPOINT);
    let second = entry(
        1,
        1_700_000_000_001,
        "checkpoint",
        None,
        checkpoint_bytes,
        first.hash,
    );
    let (summary, violations) = verify_chain(&[first.clone(), second.clone()]);
    assert_eq!(violations, Vec::new());
    assert_eq!(summary.entries, 2);
    assert_eq!(summary.last_checkpoint, Some(1));

    // An override naming entry 0 as bad, after the checkpoint.
    let over = key().sign(&pb::AuditOverride {
        node: "helper-0".into(),
        at_ms: 1_700_000_000_002,
        broken: vec![pb::AuditOverrideEntry {
            seq: 0,
            reason: "its contents do not match its hash (the entry was edited)".into(),
        }],
        entries: 2,
        head_hash: second.hash.to_vec(),
    });
    assert_eq!(over.label, "sealroom/v1/audit-override");
    let over_bytes = over.encode_to_vec();
    assert_eq!(hex::encode(&over_bytes), PINNED_OVERRIDE);
    let third = entry(
        2,
        1_700_000_000_002,
        "override",
        None,
        over_bytes,
        second.hash,
    );
    // Entry 0 edited (its time) after the fact: named, and acknowledged by
    // the override that names it.
    let mut edited = first;
    edited.at_ms += 1;
    let (summary, violations) = verify_chain(&[edited, second, third]);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].seq, 0);
    assert_eq!(violations[0].acknowledged_by, Some(2));
    assert_eq!(summary.overrides.len(), 1);
    assert_eq!(summary.overrides[0].broken, vec![0]);
}

fn entry(
    seq: u64,
    at_ms: u64,
    kind: &str,
    round_id: Option<u64>,
    artifact: Vec<u8>,
    prev_hash: [u8; 32],
) -> AuditEntry {
    let hash = documented_hash(seq, at_ms, kind, round_id, &artifact, &prev_hash);
    AuditEntry {
        seq,
        at_ms,
        kind: kind.into(),
        round_id,
        artifact,
        prev_hash,
        hash,
    }
}

const PINNED_HASH_WITH_ROUND: &str =
    "09305db977e74abe92c749a1d0990adb518a8d9369b89966a266d51f0d32a084";
const PINNED_HASH_WITHOUT_ROUND: &str =
    "00da131dd332f2ff67e87cf67c9e22584644efd262f33cedee2ce172eb789b89";
const PINNED_KEY_ENTRY: &str = "0a157365616c726f6f6d2f76312f61756469742d6b657912350a0868656c7065722d3010021a202152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db122880d095ffbc311a20513991c30dd0ecef9d1d2445dbc2317c97676881a2c230c139afae0c0eed998e22408b22895f066866522613cddcf808341cc799b073cef9205f36e40e2336ede2717ba6ab2dd14e5091f1e1048d66451c493998ff9684d1bb243da37ff2efefff02";
const PINNED_CHECKPOINT: &str = "0a1c7365616c726f6f6d2f76312f61756469742d636865636b706f696e7412331220351a31a816b601468a9fe079fef96a70b10be373ee87c07d5df3bf84647cbf451881d095ffbc31220868656c7065722d301a20513991c30dd0ecef9d1d2445dbc2317c97676881a2c230c139afae0c0eed998e224020c4366483d4062050bdfba077b53b3d9628847713843717c0d6ce316abb57834b553691f4981aa7793e33a4c13445c3e4b8eb09d659d4c97bef8826f6e6fa0a";
const PINNED_OVERRIDE: &str = "0a1a7365616c726f6f6d2f76312f61756469742d6f7665727269646512720a0868656c7065722d301082d095ffbc311a3b123969747320636f6e74656e747320646f206e6f74206d61746368206974732068617368202874686520656e74727920776173206564697465642920022a20643fa6edab31a1e795af1aef93f22837e4ebab2bf9eabd63279e8bac00317ebf1a20513991c30dd0ecef9d1d2445dbc2317c97676881a2c230c139afae0c0eed998e2240e7f7c5af42a6b1771e5d5286610fd418fdb5864bc99dde7ccc743ac7a10ce27b3856e8c3dbede341e1f934eb4d5856afc91f7a4b5ff4396e2f30c5e97037640d";
