//! Tampering with a stored audit log — an edited, deleted, reordered or
//! inserted entry, with or without recomputed hashes — is detected, and the
//! first bad entry is named. The database itself refuses edits until its
//! triggers are dropped.

use prost::Message as _;
use sealroom_protocol::{SigningKey, pb};
use sealroom_store::{AuditKind, AuditRecord, AuditSigner, Store, verify_chain};
use sqlx::SqlitePool;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_secret_bytes(&[byte; 32])
}

/// A coordinator's log: its key entry, then 3 rounds of descriptor, report,
/// inclusion set and result, each ending with a checkpoint.
async fn log(dir: &std::path::Path) -> (Store, SqlitePool) {
    let path = dir.join("sealroom.db");
    let store = Store::open_sqlite(&path).await.expect("opens");
    let coordinator = key(1);
    let helper = key(2);
    let signer = AuditSigner {
        node: "coordinator".into(),
        key: std::sync::Arc::new(coordinator.clone()),
    };
    let entry = pb::AuditKey {
        node: "coordinator".into(),
        role: pb::PartyRole::Coordinator as i32,
        verifying_key: coordinator.verifying_key().to_bytes().to_vec(),
        epoch: 0,
        at_ms: 1,
        peers: vec![pb::AuditPeerKey {
            role: pb::PartyRole::Helper as i32,
            name: "helper-0".into(),
            verifying_key: helper.verifying_key().to_bytes().to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(
        store
            .audit_register_key(&entry, &signer, None)
            .await
            .expect("key")
    );
    assert!(
        !store
            .audit_register_key(&entry, &signer, None)
            .await
            .expect("key"),
        "the same key is entered once"
    );
    for round in 1..=3u64 {
        let records = vec![
            AuditRecord {
                kind: AuditKind::Descriptor,
                round_id: Some(round),
                artifact: coordinator.sign(&pb::RoundDescriptor {
                    round_id: round,
                    ..Default::default()
                }),
            },
            AuditRecord {
                kind: AuditKind::Report,
                round_id: Some(round),
                artifact: helper.sign(&pb::HelperReport {
                    round_id: round,
                    received: vec![0, 1, 2],
                    ..Default::default()
                }),
            },
            AuditRecord {
                kind: AuditKind::InclusionSet,
                round_id: Some(round),
                artifact: coordinator.sign(&pb::InclusionSet {
                    round_id: round,
                    clients: vec![0, 1, 2],
                    ..Default::default()
                }),
            },
            AuditRecord {
                kind: AuditKind::Result,
                round_id: Some(round),
                artifact: coordinator.sign(&pb::RoundResult {
                    round_id: round,
                    ..Default::default()
                }),
            },
        ];
        let appended = store
            .record(None, &records, Some(&signer), Some(round))
            .await
            .expect("appends");
        assert_eq!(appended.entries, 5, "four artifacts and a checkpoint");
    }
    let pool = SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    (store, pool)
}

async fn drop_triggers(pool: &SqlitePool) {
    for t in ["audit_log_no_update", "audit_log_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {t}")))
            .execute(pool)
            .await
            .expect("drops");
    }
}

async fn first_violation(store: &Store) -> (u64, String) {
    let entries = store.audit_entries(None).await.expect("reads");
    let (_, violations) = verify_chain(&entries);
    let v = violations.first().expect("tampering is detected");
    (v.seq, v.reason.clone())
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _pool) = log(dir.path()).await;
    let entries = store.audit_entries(None).await.expect("reads");
    assert_eq!(entries.len(), 16);
    let (summary, violations) = verify_chain(&entries);
    assert_eq!(violations, Vec::new());
    assert_eq!(summary.rounds.len(), 3);
    assert_eq!(summary.by_kind["checkpoint"], 3);
    assert_eq!(summary.unsigned_tail, 0);
    assert_eq!(summary.keys.len(), 2);
    assert_eq!(store.audit_entries(Some(2)).await.expect("reads").len(), 5);
}

#[tokio::test]
async fn the_database_refuses_edits_and_deletions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, pool) = log(dir.path()).await;
    let err = sqlx::query("UPDATE audit_log SET at_ms = 0 WHERE seq = 3")
        .execute(&pool)
        .await
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&pool)
        .await
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn an_edited_entry_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    sqlx::query("UPDATE audit_log SET at_ms = at_ms + 1 WHERE seq = 7")
        .execute(&pool)
        .await
        .expect("edits");
    let (seq, reason) = first_violation(&store).await;
    assert_eq!(seq, 7);
    assert!(reason.contains("edited"), "{reason}");
}

/// `verify_chain` does not stop at the first violation: an edit, a deletion
/// and another edit further on are each named once, with their entry, and
/// every entry is counted as checked.
#[tokio::test]
async fn every_bad_entry_is_named_and_every_entry_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    for statement in [
        "UPDATE audit_log SET at_ms = at_ms + 1 WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 7",
        "UPDATE audit_log SET at_ms = at_ms + 1 WHERE seq = 12",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("tampers");
    }
    let entries = store.audit_entries(None).await.expect("reads");
    let (summary, violations) = verify_chain(&entries);
    let named: Vec<u64> = violations.iter().map(|v| v.seq).collect();
    assert_eq!(named, vec![2, 7, 12], "{violations:#?}");
    assert!(violations[0].reason.contains("edited"), "{violations:#?}");
    assert!(violations[1].reason.contains("deleted"), "{violations:#?}");
    assert!(violations[2].reason.contains("edited"), "{violations:#?}");
    assert_eq!(summary.entries, 15, "all 16 entries but the deleted one");
    assert_eq!(summary.rounds.len(), 3);
}

#[tokio::test]
async fn an_edit_with_recomputed_hashes_breaks_the_next_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    // Swap round 2's result for one naming other clients, signed by an
    // outsider, and recompute every hash after it as a careful forger would.
    let forged = key(9).sign(&pb::RoundResult {
        round_id: 2,
        included_clients: vec![0],
        ..Default::default()
    });
    let mut entries = store.audit_entries(None).await.expect("reads");
    let at = entries
        .iter()
        .position(|e| e.kind == "result" && e.round_id == Some(2));
    let at = at.expect("round 2 has a result");
    entries[at].artifact = forged.encode_to_vec();
    rechain(&pool, &mut entries, at).await;
    let (seq, reason) = first_violation(&store).await;
    assert_eq!(seq, entries[at].seq);
    assert!(reason.contains("no key entry names"), "{reason}");

    // The same with a timestamp edit: the artifact still verifies, the
    // following checkpoint's signature covers the old hash.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (store2, pool2) = log(dir2.path()).await;
    drop_triggers(&pool2).await;
    let mut entries2 = store2.audit_entries(None).await.expect("reads");
    entries2[at].at_ms += 1000;
    rechain(&pool2, &mut entries2, at).await;
    let (seq, reason) = first_violation(&store2).await;
    assert_eq!(seq, entries2[at].seq + 1, "the checkpoint after it");
    assert!(reason.contains("checkpoint"), "{reason}");
}

/// Rewrites entries from `from` on with recomputed hashes.
async fn rechain(pool: &SqlitePool, entries: &mut [sealroom_store::AuditEntry], from: usize) {
    for i in from..entries.len() {
        let prev = if i == 0 { [0; 32] } else { entries[i - 1].hash };
        let e = &mut entries[i];
        e.prev_hash = prev;
        e.hash = sealroom_store::audit::entry_hash(
            e.seq,
            e.at_ms,
            &e.kind,
            e.round_id,
            &e.artifact,
            &e.prev_hash,
        );
        sqlx::query(
            "UPDATE audit_log SET at_ms = $1, artifact = $2, prev_hash = $3, hash = $4 WHERE seq = $5",
        )
        .bind(e.at_ms as i64)
        .bind(e.artifact.clone())
        .bind(e.prev_hash.to_vec())
        .bind(e.hash.to_vec())
        .bind(e.seq as i64)
        .execute(pool)
        .await
        .expect("rewrites");
    }
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(&pool)
        .await
        .expect("deletes");
    let (seq, reason) = first_violation(&store).await;
    assert_eq!(seq, 5);
    assert!(reason.contains("deleted"), "{reason}");
}

#[tokio::test]
async fn reordered_entries_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    // Swap entries 3 and 4 (everything but their sequence numbers).
    sqlx::query("UPDATE audit_log SET seq = 1000 WHERE seq = 3")
        .execute(&pool)
        .await
        .expect("moves");
    sqlx::query("UPDATE audit_log SET seq = 3 WHERE seq = 4")
        .execute(&pool)
        .await
        .expect("moves");
    sqlx::query("UPDATE audit_log SET seq = 4 WHERE seq = 1000")
        .execute(&pool)
        .await
        .expect("moves");
    let (seq, reason) = first_violation(&store).await;
    assert_eq!(seq, 3);
    assert!(reason.contains("does not link"), "{reason}");
}

#[tokio::test]
async fn inserted_entries_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    drop_triggers(&pool).await;
    // In the middle: make room at 6 and copy entry 2 there.
    sqlx::query("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 6")
        .execute(&pool)
        .await
        .expect("shifts");
    sqlx::query("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 106")
        .execute(&pool)
        .await
        .expect("shifts");
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, kind, round_id, artifact, prev_hash, hash) \
         SELECT 6, at_ms, kind, round_id, artifact, prev_hash, hash FROM audit_log WHERE seq = 2",
    )
    .execute(&pool)
    .await
    .expect("inserts");
    let (seq, reason) = first_violation(&store).await;
    assert_eq!(seq, 6);
    assert!(reason.contains("does not link"), "{reason}");

    // At the end, with a correct hash: a replayed artifact is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    let entries = store.audit_entries(None).await.expect("reads");
    let last = entries.last().expect("entries");
    let copy = &entries[1];
    let seq = last.seq + 1;
    let hash = sealroom_store::audit::entry_hash(
        seq,
        copy.at_ms,
        &copy.kind,
        copy.round_id,
        &copy.artifact,
        &last.hash,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, kind, round_id, artifact, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seq as i64)
    .bind(copy.at_ms as i64)
    .bind(copy.kind.clone())
    .bind(copy.round_id.map(|r| r as i64))
    .bind(copy.artifact.clone())
    .bind(last.hash.to_vec())
    .bind(hash.to_vec())
    .execute(&pool)
    .await
    .expect("inserts");
    let (bad, reason) = first_violation(&store).await;
    assert_eq!(bad, seq);
    assert!(reason.contains("repeats an artifact"), "{reason}");
}

/// Issue #13, finding 1: a helper that reported in a round and restarted
/// before answering sends the same signed report again, and the coordinator
/// (or the helper, redoing the step) records it again. The log must not hold
/// it twice, or `audit verify` calls an ordinary restart tampering.
#[tokio::test]
async fn a_report_re_sent_after_a_restart_is_logged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    pool.close().await;
    store.close().await;
    // The restart: a new process opens the same database.
    let store = Store::open_sqlite(&dir.path().join("sealroom.db"))
        .await
        .expect("reopens");
    let signer = AuditSigner {
        node: "coordinator".into(),
        key: std::sync::Arc::new(key(1)),
    };
    let resent = AuditRecord {
        kind: AuditKind::Report,
        round_id: Some(3),
        artifact: key(2).sign(&pb::HelperReport {
            round_id: 3,
            received: vec![0, 1, 2],
            ..Default::default()
        }),
    };
    let appended = store
        .record(None, &[resent], Some(&signer), None)
        .await
        .expect("records");
    assert_eq!(appended.entries, 0, "the same signed bytes are not news");
    let entries = store.audit_entries(None).await.expect("reads");
    assert_eq!(entries.len(), 16);
    let (_, violations) = verify_chain(&entries);
    assert_eq!(violations, Vec::new());
}

/// Issue #13, finding 1: the verifier's size limit is the protocol's own. A
/// signed record with a body of exactly `MAX_SIGNED_BODY` bytes — the most
/// any party signs or accepts — verifies in a log; one byte more is refused,
/// as every verifier of the federation refuses it.
#[tokio::test]
async fn the_largest_record_the_protocol_allows_verifies() {
    use sealroom_protocol::envelope::MAX_SIGNED_BODY;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _pool) = log(dir.path()).await;
    let signer = AuditSigner {
        node: "coordinator".into(),
        key: std::sync::Arc::new(key(1)),
    };
    let abort_of = |round: u64, body: usize| {
        let mut record = pb::AbortRecord {
            round_id: round,
            ..Default::default()
        };
        // A detail of d bytes costs a tag, a 4-byte length and d.
        record.detail = "x".repeat(body - record.encoded_len() - 5);
        assert_eq!(record.encoded_len(), body);
        AuditRecord {
            kind: AuditKind::Abort,
            round_id: Some(round),
            artifact: key(1).sign(&record),
        }
    };
    store
        .record(
            None,
            &[abort_of(4, MAX_SIGNED_BODY)],
            Some(&signer),
            Some(4),
        )
        .await
        .expect("appends");
    let entries = store.audit_entries(None).await.expect("reads");
    let (summary, violations) = verify_chain(&entries);
    assert_eq!(violations, Vec::new());
    assert_eq!(summary.aborts.values().sum::<u64>(), 1);

    store
        .record(
            None,
            &[abort_of(5, MAX_SIGNED_BODY + 1)],
            Some(&signer),
            Some(5),
        )
        .await
        .expect("appends");
    let entries = store.audit_entries(None).await.expect("reads");
    let (_, violations) = verify_chain(&entries);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].reason.contains("exceeds"), "{violations:?}");
}

#[tokio::test]
async fn a_log_cut_short_after_its_last_checkpoint_is_caught_by_the_cross_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pool) = log(dir.path()).await;
    let entries = store.audit_entries(None).await.expect("reads");
    let result = entries
        .iter()
        .find(|e| e.kind == "result" && e.round_id == Some(3))
        .expect("round 3 has a result");
    let envelope = pb::SignedEnvelope::decode(result.artifact.as_slice()).expect("decodes");
    store
        .record_outcome(3, "result", &envelope)
        .await
        .expect("stores the outcome");
    assert_eq!(
        store.audit_gaps(&entries).await.expect("checks"),
        Vec::<String>::new()
    );

    // Drop round 3's five entries: the shorter chain still verifies on its own…
    drop_triggers(&pool).await;
    sqlx::query("DELETE FROM audit_log WHERE round_id = 3")
        .execute(&pool)
        .await
        .expect("deletes");
    let entries = store.audit_entries(None).await.expect("reads");
    assert_eq!(verify_chain(&entries).1, Vec::new());
    // …but the stored outcome names the round the log no longer has.
    let gaps = store.audit_gaps(&entries).await.expect("checks");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].starts_with("round 3:"), "{gaps:?}");

    // An outcome from before the log's first round (a node upgraded from a
    // version without the audit log) is not a gap.
    let old = pb::SignedEnvelope {
        label: "sealroom/v1/result".into(),
        ..Default::default()
    };
    store
        .record_outcome(0, "result", &old)
        .await
        .expect("stores the outcome");
    let gaps = store.audit_gaps(&entries).await.expect("checks");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
}

/// A coordinator whose key rotates while a round is under way: the round's
/// later artifacts, still signed by the replaced key, verify (the rotation
/// entry is signed by that key and keeps it valid for the rounds the log
/// named before it); the replaced key signing a round begun after the
/// rotation does not.
#[tokio::test]
async fn a_rotation_keeps_the_old_key_for_rounds_under_way_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("sealroom.db"))
        .await
        .expect("opens");
    let (old, new) = (key(1), key(3));
    let signer = |k: &SigningKey| AuditSigner {
        node: "coordinator".into(),
        key: std::sync::Arc::new(k.clone()),
    };
    let entry = |k: &SigningKey, epoch: u64| pb::AuditKey {
        node: "coordinator".into(),
        role: pb::PartyRole::Coordinator as i32,
        verifying_key: k.verifying_key().to_bytes().to_vec(),
        epoch,
        at_ms: 1,
        ..Default::default()
    };
    let descriptor = |k: &SigningKey, round: u64| AuditRecord {
        kind: AuditKind::Descriptor,
        round_id: Some(round),
        artifact: k.sign(&pb::RoundDescriptor {
            round_id: round,
            ..Default::default()
        }),
    };
    let result = |k: &SigningKey, round: u64| AuditRecord {
        kind: AuditKind::Result,
        round_id: Some(round),
        artifact: k.sign(&pb::RoundResult {
            round_id: round,
            ..Default::default()
        }),
    };
    store
        .audit_register_key(&entry(&old, 0), &signer(&old), None)
        .await
        .expect("key");
    store
        .record(None, &[descriptor(&old, 1)], Some(&signer(&old)), None)
        .await
        .expect("appends");
    // The switch: the new key entered, signed by the old one.
    assert!(
        store
            .audit_register_key(&entry(&new, 1), &signer(&new), Some(&signer(&old).key))
            .await
            .expect("rotates")
    );
    // Round 1 ends under the old key; round 2 is the new key's.
    store
        .record(
            None,
            &[result(&old, 1), descriptor(&new, 2), result(&new, 2)],
            Some(&signer(&new)),
            None,
        )
        .await
        .expect("appends");
    let entries = store.audit_entries(None).await.expect("reads");
    let (_, violations) = verify_chain(&entries);
    assert_eq!(violations, Vec::new());

    // The old key signing round 3, begun after the rotation: refused.
    store
        .record(None, &[descriptor(&old, 3)], Some(&signer(&new)), None)
        .await
        .expect("appends");
    let entries = store.audit_entries(None).await.expect("reads");
    let (_, violations) = verify_chain(&entries);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].reason.contains("no key entry names"),
        "{violations:?}"
    );
}
