//! The audit-log verifier on stored rows an insider may have written
//! (`sealroom audit verify`): arbitrary entries, with arbitrary artifacts and
//! hashes that are sometimes correct, are judged — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_store::audit::{AuditEntry, entry_hash, verify_chain};

/// One stored row: sequence skew, time, kind, round, artifact, and whether
/// its hash is the right one.
type Row = (u8, u64, u8, Option<u64>, Vec<u8>, bool);

fuzz_target!(|rows: Vec<Row>| {
    const KINDS: [&str; 9] = [
        "key",
        "descriptor",
        "receipt",
        "report",
        "inclusion_set",
        "result",
        "abort",
        "checkpoint",
        "bogus",
    ];
    let mut prev = [0u8; 32];
    let mut entries = Vec::new();
    for (i, (seq_skew, at_ms, kind, round_id, artifact, honest)) in rows.into_iter().enumerate() {
        let seq = i as u64 + u64::from(seq_skew % 3 == 0 && seq_skew > 200);
        let kind = KINDS[usize::from(kind) % KINDS.len()].to_string();
        let hash = if honest {
            entry_hash(seq, at_ms, &kind, round_id, &artifact, &prev)
        } else {
            [seq_skew; 32]
        };
        entries.push(AuditEntry {
            seq,
            at_ms,
            kind,
            round_id,
            artifact,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    let _ = verify_chain(&entries);
});
