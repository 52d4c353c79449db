//! The red-team suite's audit finding (issue #12, finding 7): with access
//! to a node's database, an attacker appended a self-signed key entry and
//! entries signed with that new key, and `sealroom audit verify` (without
//! `--federation`) passed. A key entry after the first must be signed by
//! the key it replaces, and `verify --config` pins the keys of the node's
//! own `federation.toml`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::sealroom;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs};
use sealroom_protocol::{SigningKey, pb};
use sealroom_store::{AuditKind, AuditRecord, AuditSigner, Store};

#[test]
fn a_self_signed_key_entry_cannot_take_over_an_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = runtime.block_on(async {
        let inputs = synthetic_inputs(3);
        let options = InitOptions {
            helpers: 3,
            clients: 3,
            min_clients: Some(3),
            upload_window_ms: 2000,
            aggregation_window_ms: 2000,
            ..InitOptions::default()
        };
        let (fed, _events) =
            LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
                .await
                .expect("federation starts");
        let outcome = tokio::time::timeout(Duration::from_secs(30), fed.run_round(SYNTHETIC, 8))
            .await
            .expect("in time")
            .expect("runs");
        assert_eq!(outcome.status, "completed", "{}", outcome.detail);
        let config = fed.configs["helper-0"].clone();
        fed.shutdown().await;

        // The attacker: a fresh key, entered as the node's key, then a
        // forged result in the chain, checkpointed with the fresh key.
        let store = Store::open(&config.data_dir.join("sealroom.db").display().to_string())
            .await
            .expect("store opens");
        let forger = SigningKey::from_secret_bytes(&[42u8; 32]);
        let signer = AuditSigner {
            node: config.name.clone(),
            key: Arc::new(forger.clone()),
        };
        // The store itself refuses to enter a key that the log's key did
        // not sign...
        let key = pb::AuditKey {
            node: config.name.clone(),
            role: pb::PartyRole::Helper as i32,
            verifying_key: forger.verifying_key().to_bytes().to_vec(),
            epoch: 0,
            at_ms: 1,
            // It names itself as the coordinator, too, so that what it
            // forges in the coordinator's name verifies.
            peers: vec![pb::AuditPeerKey {
                role: pb::PartyRole::Coordinator as i32,
                name: "coordinator".into(),
                verifying_key: forger.verifying_key().to_bytes().to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(
            store.audit_register_key(&key, &signer, None).await.is_err(),
            "a key rotation without the previous key is refused"
        );
        // ...so the attacker, with file access, appends the self-signed key
        // entry as raw rows (the store computes the hashes as the attacker
        // would).
        store
            .record(
                None,
                &[AuditRecord {
                    kind: AuditKind::Key,
                    round_id: None,
                    artifact: forger.sign(&key),
                }],
                Some(&signer),
                None,
            )
            .await
            .expect("appends");
        let forged = pb::RoundResult {
            descriptor_hash: vec![0; 32],
            round_id: outcome.round_id,
            inclusion_hash: vec![0; 32],
            included_clients: vec![0],
            answering_helpers: vec![0],
            sum_digest: vec![0; 32],
            sum_length: 1,
            unverified: false,
        };
        store
            .record(
                None,
                &[AuditRecord {
                    kind: AuditKind::Result,
                    round_id: Some(outcome.round_id),
                    artifact: forger.sign(&forged),
                }],
                Some(&signer),
                Some(outcome.round_id),
            )
            .await
            .expect("appends");
        store.close().await;
        config
    });
    let verified = sealroom()
        .args(["audit", "verify", "--config"])
        .arg(&config.file)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&verified.stdout);
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(
        !verified.status.success(),
        "a log taken over by a self-signed key verified:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("TAMPERED") || stderr.contains("TAMPERED"),
        "{stdout}\n{stderr}"
    );
}
