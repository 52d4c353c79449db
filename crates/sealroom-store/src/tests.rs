//! The store's tests. Every test body in the `on_both_backends!` list runs
//! twice: `sqlite::NAME` on a SQLite file in a temporary directory, and
//! `postgres::NAME` in a fresh PostgreSQL database of its own (created and
//! dropped around the test, so tests run in parallel) when
//! `SEALROOM_TEST_DATABASE_URL` names a server — e.g.
//! `postgres://postgres@127.0.0.1/postgres`. The PostgreSQL variants are
//! `#[ignore]`d (a fresh machine has no server): run them with
//! `cargo test -p sealroom-store -- --ignored postgres`, as `.ci/run` does;
//! run without the variable set, they fail, saying why.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, SeedableRng};
use sealroom_core::{QuantSpec, RingKind, Seed};
use sealroom_protocol::action::{Action, Message, Persist, SecretBytes};
use sealroom_protocol::client::{Client, ClientConfig};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::descriptor::DescriptorTrust;
use sealroom_protocol::helper::{Helper, HelperConfig, HelperError, HelperState};
use sealroom_protocol::machine::{ClientInput, Inbound, Input, Participation, Start, Step};
use sealroom_protocol::{Digest, Machine, Millis, PartyId, SigningKey, pb};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row as _};
use std::sync::Arc;

use crate::{Pool, SignedEnvelope, Store, StoreError, redact_url};

const POSTGRES_VAR: &str = "SEALROOM_TEST_DATABASE_URL";

/// Generates `sqlite::NAME` and `postgres::NAME` for each test body `NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set SEALROOM_TEST_DATABASE_URL and run with --ignored (.ci/run does)"]
                async fn $name() {
                    super::on_postgres(stringify!($name), super::$name).await;
                }
            )*
        }
    };
}

on_both_backends!(
    helper_restore_round_trip,
    state_survives_reopen,
    single_answer_rule_is_enforced,
    counters_only_increase,
    uploads_are_never_overwritten,
    coordinator_records_are_never_replaced,
    pruning_keeps_the_newest_rounds,
    corrupt_rows_are_typed_errors,
    concurrent_writers,
    audit_log_and_archive_round_trip,
    engine_pool_takes_each_batch_once,
);

/// The MPC engine's pool: a batch is stored once with its attestations in
/// the audit log, taken once (also after the store is reopened), all or
/// nothing; epoch keys are written once.
async fn engine_pool_takes_each_batch_once(db: TestDb) {
    use crate::audit::{AuditKind, AuditRecord, AuditSigner, verify_chain};
    use crate::engine::{PoolBatch, PoolCounts};
    use sealroom_protocol::action::SecretBytes;
    let store = db.open().await;
    let key = SigningKey::from_secret_bytes(&[9; 32]);
    let signer = AuditSigner {
        node: "helper-0".into(),
        key: Arc::new(key.clone()),
    };
    let entry = pb::AuditKey {
        node: "helper-0".into(),
        role: pb::PartyRole::Helper as i32,
        verifying_key: key.verifying_key().to_bytes().to_vec(),
        at_ms: 1,
        ..Default::default()
    };
    store
        .audit_register_key(&entry, &signer, None)
        .await
        .expect("key entry");

    store
        .engine_put_keys(3, &SecretBytes::new(vec![5; 64]))
        .await
        .expect("keys");
    assert!(matches!(
        store
            .engine_put_keys(3, &SecretBytes::new(vec![6; 64]))
            .await,
        Err(StoreError::EngineEpochExists { epoch: 3 })
    ));
    assert_eq!(
        store
            .engine_keys(3)
            .await
            .expect("read")
            .map(|k| k.expose().to_vec()),
        Some(vec![5; 64])
    );
    assert!(store.engine_keys(4).await.expect("read").is_none());
    store
        .engine_put_keys(1 << 62, &SecretBytes::new(vec![7; 64]))
        .await
        .expect("a round's keys");
    let epochs = store.engine_key_epochs(1 << 62).await.expect("epochs");
    assert_eq!(epochs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3]);
    assert!(epochs[0].1 > 0, "the time the keys were stored");
    assert_eq!(
        store.engine_highest_epoch(1 << 62).await.expect("highest"),
        3
    );
    assert_eq!(store.engine_highest_epoch(3).await.expect("highest"), 0);

    let batch = |id: u8, triples: u64| PoolBatch {
        id: [id; 16],
        epoch: 3,
        digest: [id; 32],
        counts: PoolCounts {
            triples,
            bits: 2,
            randoms: 0,
            masks: [1, 0, 4],
        },
    };
    let attest = |id: u8| {
        vec![AuditRecord {
            kind: AuditKind::EngineBatch,
            round_id: None,
            artifact: key.sign(&pb::EngineBatch {
                federation_id: "f".into(),
                epoch: 3,
                batch_id: vec![id; 16],
                digest: vec![id; 32],
                ..Default::default()
            }),
        }]
    };
    for (id, triples) in [(1u8, 10u64), (2, 20), (3, 30)] {
        store
            .engine_put_batch(
                &batch(id, triples),
                &SecretBytes::new(vec![id; 40]),
                &attest(id),
                Some(&signer),
            )
            .await
            .expect("batch stored");
    }
    assert!(matches!(
        store
            .engine_put_batch(
                &batch(1, 10),
                &SecretBytes::new(vec![0; 40]),
                &attest(1),
                Some(&signer)
            )
            .await,
        Err(StoreError::EngineBatchExists { .. })
    ));
    let backlog = store.engine_backlog(3).await.expect("backlog");
    assert_eq!(backlog.triples, 60);
    assert_eq!(backlog.masks, [3, 0, 12]);
    assert_eq!(
        store
            .engine_available(3)
            .await
            .expect("available")
            .iter()
            .map(|b| b.id[0])
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );

    let use_record = |session: u8| {
        vec![AuditRecord {
            kind: AuditKind::EngineUse,
            round_id: None,
            artifact: key.sign(&pb::EngineUse {
                federation_id: "f".into(),
                epoch: 3,
                session: vec![session; 32],
                ..Default::default()
            }),
        }]
    };
    let taken = store
        .engine_take_batches(
            3,
            &[[2; 16], [1; 16]],
            &[0xaa; 32],
            &use_record(0xaa),
            Some(&signer),
        )
        .await
        .expect("taken");
    assert_eq!(
        taken
            .iter()
            .map(|m| m.expose().to_vec())
            .collect::<Vec<_>>(),
        [vec![2; 40], vec![1; 40]]
    );
    // All or nothing: 3 is free but 1 is consumed, so 3 stays in the pool.
    let again = store
        .engine_take_batches(
            3,
            &[[3; 16], [1; 16]],
            &[0xbb; 32],
            &use_record(0xbb),
            Some(&signer),
        )
        .await;
    assert!(
        matches!(&again, Err(StoreError::EngineBatchUnavailable { reason, .. }) if reason.contains("already consumed")),
        "{again:?}"
    );
    // Unknown ids and other epochs' batches are refused too.
    assert!(matches!(
        store
            .engine_take_batches(3, &[[9; 16]], &[0xcc; 32], &use_record(0xcc), Some(&signer))
            .await,
        Err(StoreError::EngineBatchUnavailable { .. })
    ));
    assert!(matches!(
        store
            .engine_take_batches(4, &[[3; 16]], &[0xcc; 32], &use_record(0xcd), Some(&signer))
            .await,
        Err(StoreError::EngineBatchUnavailable { .. })
    ));

    // Across a reopen: consumed stays consumed, the rest stays available.
    drop(store);
    let store = db.open().await;
    assert!(matches!(
        store
            .engine_take_batches(3, &[[1; 16]], &[0xdd; 32], &use_record(0xdd), Some(&signer))
            .await,
        Err(StoreError::EngineBatchUnavailable { .. })
    ));
    assert_eq!(store.engine_backlog(3).await.expect("backlog").triples, 30);
    store
        .engine_take_batches(3, &[[3; 16]], &[0xee; 32], &use_record(0xee), Some(&signer))
        .await
        .expect("the untouched batch is still there");

    // Retiring the epoch expires what is left and forgets its keys.
    store
        .engine_put_batch(
            &batch(4, 5),
            &SecretBytes::new(vec![4; 40]),
            &attest(4),
            Some(&signer),
        )
        .await
        .expect("batch stored");
    assert_eq!(store.engine_retire_epoch(3).await.expect("retire"), 1);
    assert!(store.engine_keys(3).await.expect("read").is_none());
    // A retired epoch holds no keys but still counts as used (its batch
    // rows stay), so the next epoch is numbered above it.
    assert!(
        store
            .engine_key_epochs(1 << 62)
            .await
            .expect("epochs")
            .is_empty()
    );
    assert_eq!(
        store.engine_highest_epoch(1 << 62).await.expect("highest"),
        3
    );
    assert_eq!(
        store.engine_backlog(3).await.expect("backlog"),
        PoolCounts::default()
    );
    assert!(matches!(
        store
            .engine_take_batches(3, &[[4; 16]], &[0xef; 32], &use_record(0xef), Some(&signer))
            .await,
        Err(StoreError::EngineBatchUnavailable { .. })
    ));

    // The log holds the attestations and the two successful uses, and verifies.
    let entries = store.audit_entries(None).await.expect("entries");
    let kinds = |k: &str| entries.iter().filter(|e| e.kind == k).count();
    assert_eq!(kinds("engine_batch"), 4);
    assert_eq!(kinds("engine_use"), 2);
    let (_, violations) = verify_chain(&entries);
    assert!(violations.is_empty(), "{violations:?}");
}

/// The audit log chains, checkpoints and verifies on both backends; the
/// database refuses edits; the archive keeps steps in order and prunes by
/// round.
async fn audit_log_and_archive_round_trip(db: TestDb) {
    use crate::audit::{ArchiveWrite, AuditKind, AuditRecord, AuditSigner, CHECKPOINT_EVERY};
    let store = db.open().await;
    let key = SigningKey::from_secret_bytes(&[7; 32]);
    let signer = AuditSigner {
        node: "coordinator".into(),
        key: Arc::new(key.clone()),
    };
    let entry = pb::AuditKey {
        node: "coordinator".into(),
        role: pb::PartyRole::Coordinator as i32,
        verifying_key: key.verifying_key().to_bytes().to_vec(),
        ..Default::default()
    };
    assert!(
        store
            .audit_register_key(&entry, &signer, None)
            .await
            .expect("key")
    );
    let records: Vec<AuditRecord> = (1..=CHECKPOINT_EVERY + 5)
        .map(|r| AuditRecord {
            kind: AuditKind::Descriptor,
            round_id: Some(r),
            artifact: key.sign(&pb::RoundDescriptor {
                round_id: r,
                ..Default::default()
            }),
        })
        .collect();
    for round in 1..=3u64 {
        let step = pb::ArchivedStep {
            now_ms: round,
            input: Some(pb::archived_step::Input::Timer(true)),
            ..Default::default()
        };
        for _ in 0..2 {
            store
                .record(
                    Some(ArchiveWrite {
                        round_id: round,
                        role: "coordinator",
                        step: &step,
                    }),
                    &[],
                    None,
                    None,
                )
                .await
                .expect("archives");
        }
    }
    let appended = store
        .record(None, &records, Some(&signer), Some(9))
        .await
        .expect("appends");
    assert_eq!(
        appended.entries,
        CHECKPOINT_EVERY + 5 + 2,
        "the artifacts, a periodic checkpoint and the round's"
    );
    let entries = store.audit_entries(None).await.expect("reads");
    let (summary, violations) = crate::verify_chain(&entries);
    assert_eq!(violations, Vec::new());
    assert_eq!(summary.by_kind["checkpoint"], 2);
    assert_eq!(summary.unsigned_tail, 0);
    assert_eq!(
        store.audit_gaps(&entries).await.expect("checks"),
        Vec::<String>::new()
    );
    assert!(
        store
            .audit_last_checkpoint_ms()
            .await
            .expect("reads")
            .is_some()
    );
    let refused = match &store.pool {
        Pool::Sqlite(pool) => sqlx::query("DELETE FROM audit_log")
            .execute(pool)
            .await
            .err(),
        Pool::Postgres(pool) => sqlx::query("DELETE FROM audit_log")
            .execute(pool)
            .await
            .err(),
    };
    assert!(
        refused
            .expect("append-only")
            .to_string()
            .contains("append-only")
    );

    let steps = store.archived_steps(2).await.expect("reads");
    assert_eq!(steps.len(), 2);
    assert!(
        steps
            .iter()
            .all(|(role, s)| role == "coordinator" && s.now_ms == 2)
    );
    assert_eq!(store.prune_archive(1).await.expect("prunes"), 4);
    assert_eq!(store.archived_rounds().await.expect("lists"), vec![3]);

    // A persist and its step commit together or not at all.
    let before = store.audit_entries(None).await.expect("reads").len();
    let step = pb::ArchivedStep {
        now_ms: 1,
        input: Some(pb::archived_step::Input::Timer(true)),
        ..Default::default()
    };
    let receipt = AuditRecord {
        kind: AuditKind::Receipt,
        round_id: Some(40),
        artifact: key.sign(&pb::Receipt {
            round_id: 40,
            ..Default::default()
        }),
    };
    let upload = Persist::HelperUpload {
        round_id: 40,
        client_index: 0,
        upload: SecretBytes::new(vec![1, 2, 3]),
    };
    let write = ArchiveWrite {
        round_id: 40,
        role: "helper",
        step: &step,
    };
    let err = store
        .commit(
            &[&upload],
            Some(write),
            std::slice::from_ref(&receipt),
            Some(&signer),
            None,
        )
        .await
        .expect_err("round 40 is not stored");
    assert!(
        matches!(err, StoreError::UnknownRound { round: 40 }),
        "{err}"
    );
    assert_eq!(
        store.audit_entries(None).await.expect("reads").len(),
        before
    );
    assert!(store.archived_steps(40).await.expect("reads").is_empty());
    // A client's round counter and its step: one transaction, and a counter
    // that does not increase takes the step down with it.
    let client_round = Persist::ClientRound { round_id: 41 };
    store
        .commit(
            &[&client_round],
            Some(ArchiveWrite {
                round_id: 41,
                role: "client",
                step: &step,
            }),
            &[],
            None,
            None,
        )
        .await
        .expect("records");
    let err = store
        .commit(
            &[&client_round],
            Some(ArchiveWrite {
                round_id: 41,
                role: "client",
                step: &step,
            }),
            &[],
            None,
            None,
        )
        .await
        .expect_err("not increasing");
    assert!(
        matches!(err, StoreError::RoundNotIncreasing { .. }),
        "{err}"
    );
    assert_eq!(store.archived_steps(41).await.expect("reads").len(), 1);

    // A group commit: several steps in one transaction, each as a commit of
    // its own would leave it (archive rows, audit entries, the chain), or
    // none of them when one fails.
    let descriptor_of = |round: u64| AuditRecord {
        kind: AuditKind::Descriptor,
        round_id: Some(round),
        // Not one of the descriptors above (a logged artifact is not
        // appended again).
        artifact: key.sign(&pb::RoundDescriptor {
            round_id: round,
            federation_id: "group commit".into(),
            ..Default::default()
        }),
    };
    fn step_write<'a>(
        persist: &'a Persist,
        step: &'a pb::ArchivedStep,
        audit: AuditRecord,
    ) -> crate::StepWrite<'a> {
        crate::StepWrite {
            persists: vec![persist],
            archive: Some(ArchiveWrite {
                round_id: persist.round_id(),
                role: "client",
                step,
            }),
            audit: vec![audit],
            end_of_round: None,
        }
    }
    let round_42 = Persist::ClientRound { round_id: 42 };
    let round_43 = Persist::ClientRound { round_id: 43 };
    let before = store.audit_entries(None).await.expect("reads").len();
    let appended = store
        .commit_steps(
            &[
                step_write(&round_42, &step, descriptor_of(42)),
                step_write(&round_43, &step, descriptor_of(43)),
            ],
            Some(&signer),
        )
        .await
        .expect("both commit");
    assert_eq!(appended.entries, 2);
    let entries = store.audit_entries(None).await.expect("reads");
    assert_eq!(entries.len(), before + 2);
    assert_eq!(
        entries[before..]
            .iter()
            .map(|e| e.round_id)
            .collect::<Vec<_>>(),
        vec![Some(42), Some(43)],
        "in the order given"
    );
    let (_, violations) = crate::verify_chain(&entries);
    assert_eq!(
        violations,
        Vec::new(),
        "the chain verifies across a group commit"
    );
    for round in [42, 43] {
        assert_eq!(store.archived_steps(round).await.expect("reads").len(), 1);
    }
    // One failing step (an upload to a round never stored) takes the whole
    // group down: round 44's counter and archive row are not written.
    let round_44 = Persist::ClientRound { round_id: 44 };
    let err = store
        .commit_steps(
            &[
                step_write(&round_44, &step, descriptor_of(44)),
                step_write(&upload, &step, descriptor_of(40)),
            ],
            Some(&signer),
        )
        .await
        .expect_err("round 40 is not stored");
    assert!(
        matches!(err, StoreError::UnknownRound { round: 40 }),
        "{err}"
    );
    assert!(store.archived_steps(44).await.expect("reads").is_empty());
    assert_eq!(
        store.audit_entries(None).await.expect("reads").len(),
        before + 2
    );
    store
        .commit(&[&round_44], None, &[], None, None)
        .await
        .expect("round 44's counter was not raised by the failed group");
    store.close().await;
}

/// Where a test's store lives; opening it again reopens the same state.
struct TestDb {
    location: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn open(&self) -> Store {
        Store::open(&self.location).await.expect("store opens")
    }
}

async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    // A parent that does not exist yet: opening creates it.
    let path = dir.path().join("node-data").join("state.db");
    body(TestDb {
        location: format!("sqlite://{}", path.display()),
        _dir: Some(dir),
    })
    .await;
}

async fn on_postgres<F, Fut>(test: &str, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin) = std::env::var(POSTGRES_VAR).ok().filter(|v| !v.is_empty()) else {
        panic!(
            "postgres::{test} needs a PostgreSQL server: set {POSTGRES_VAR} (e.g. \
             postgres://postgres@127.0.0.1/postgres); .ci/run starts one"
        );
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let short: String = test.chars().take(30).collect();
    let name = format!(
        "sealroom_test_{short}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    admin_sql(&admin, format!("CREATE DATABASE {name}")).await;
    let db = TestDb {
        location: with_database(&admin, &name),
        _dir: None,
    };
    // Run the body as its own task so a failing assertion still lets the
    // database be dropped; then fail with the body's panic.
    let outcome = tokio::spawn(body(db)).await;
    admin_sql(
        &admin,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Runs one statement on the admin database. `sql` is built from a test name
/// and counters only (no outside input).
async fn admin_sql(admin: &str, sql: String) {
    let mut conn = PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_VAR}: {e}"));
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("admin statement runs");
    conn.close().await.expect("admin connection closes");
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

// ---------------------------------------------------------------------------
// Fixtures.

/// A stand-in descriptor envelope for `round_id` (the store reads only the
/// round id from it; signatures are the protocol's business).
fn descriptor(round_id: u64) -> SignedEnvelope {
    SignedEnvelope {
        label: "sealroom/v1/descriptor".into(),
        body: pb::RoundDescriptor {
            round_id,
            nonce: vec![7; 32],
            ..Default::default()
        }
        .encode_to_vec(),
        key_id: vec![1; 32],
        signature: vec![2; 64],
    }
}

fn envelope(label: &str, tag: u8) -> SignedEnvelope {
    SignedEnvelope {
        label: label.into(),
        body: vec![tag; 12],
        key_id: vec![3; 32],
        signature: vec![tag; 64],
    }
}

fn upload_bytes(round: u64, client: u32) -> SecretBytes {
    SecretBytes::new(format!("share of client {client} in round {round}").into_bytes())
}

async fn apply(store: &Store, persist: Persist) -> Result<(), StoreError> {
    store.apply(&persist).await
}

async fn helper_round(store: &Store, round: u64) -> Result<(), StoreError> {
    apply(
        store,
        Persist::HelperRound {
            round_id: round,
            descriptor: descriptor(round),
        },
    )
    .await
}

async fn upload(store: &Store, round: u64, client: u32) -> Result<(), StoreError> {
    apply(
        store,
        Persist::HelperUpload {
            round_id: round,
            client_index: client,
            upload: upload_bytes(round, client),
        },
    )
    .await
}

async fn answer(store: &Store, round: u64, hash: u8) -> Result<(), StoreError> {
    apply(
        store,
        Persist::HelperAnswer {
            round_id: round,
            inclusion_hash: Digest([hash; 32]),
        },
    )
    .await
}

/// (round id, client indices, answered) of each stored helper round.
fn summary(state: &HelperState) -> Vec<(u64, Vec<u32>, Option<Digest>)> {
    state
        .rounds
        .iter()
        .map(|r| {
            let round = pb::RoundDescriptor::decode(r.descriptor.body.as_slice())
                .expect("descriptor decodes")
                .round_id;
            for (client, bytes) in &r.uploads {
                assert!(bytes.ct_eq(&upload_bytes(round, *client)), "upload intact");
            }
            (
                round,
                r.uploads.iter().map(|(c, _)| *c).collect(),
                r.answered,
            )
        })
        .collect()
}

/// Runs a statement with one bytes parameter, bypassing the store's API.
async fn raw_execute(store: &Store, sql: &'static str, bytes: Vec<u8>) {
    with_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(bytes)
            .execute(pool)
            .await
            .expect("raw statement runs");
    })
}

async fn raw_count(store: &Store, sql: &'static str) -> i64 {
    with_pool!(store, |pool| {
        sqlx::query(sql)
            .fetch_one(pool)
            .await
            .expect("raw query runs")
            .try_get::<i64, _>(0)
            .expect("a count")
    })
}

// ---------------------------------------------------------------------------
// A real round.

const FEDERATION: &str = "store-test-federation";
const START: Millis = Millis(1_700_000_000_000);
const WINDOW_MS: u64 = 10_000;

struct RealRun {
    helper_config: HelperConfig,
    coordinator_key: SigningKey,
    coordinator_id: PartyId,
    descriptor_hash: Digest,
    round_id: u64,
    inclusion_set: SignedEnvelope,
    result: SignedEnvelope,
}

fn party(rng: &mut ChaCha20Rng) -> PartyId {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    PartyId(id)
}

/// One additive round (3 clients, 2 helpers) through the protocol's state
/// machines over an in-memory network. The persist actions of the
/// coordinator, helper 0 and client 0 go to `store` (they use different
/// tables), each applied before the step's later actions are executed — the
/// ordering contract of `sealroom_protocol::action`. The other parties'
/// persist actions are dropped.
async fn run_real_round(store: &Store) -> RealRun {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let coordinator_key = SigningKey::generate(&mut rng);
    let coordinator_id = party(&mut rng);
    let trust = DescriptorTrust::single(FEDERATION, coordinator_key.verifying_key());
    let mut helpers = Vec::new();
    let mut helper_keys = Vec::new();
    for _ in 0..2 {
        let key = SigningKey::generate(&mut rng);
        let config = HelperConfig {
            me: party(&mut rng),
            coordinator: coordinator_id,
            signer: Arc::new(key.clone()),
            trust: trust.clone(),
        };
        helper_keys.push((config.me, key.verifying_key().into()));
        helpers.push((Helper::new(config.clone()), config));
    }
    let client_ids: Vec<PartyId> = (0..3).map(|_| party(&mut rng)).collect();
    let mut clients: Vec<Client> = client_ids
        .iter()
        .map(|&me| {
            let config = ClientConfig {
                me,
                coordinator: coordinator_id,
                trust: trust.clone(),
                helper_keys: helper_keys.iter().copied().collect(),
            };
            Client::new(config, None)
        })
        .collect();
    let next_round = store.coordinator_next_round_id().await.expect("reads");
    let mut coordinator = Coordinator::new(
        CoordinatorConfig {
            federation_id: FEDERATION.into(),
            signer: Arc::new(coordinator_key.clone()),
            epoch: 0,
            helpers: helper_keys,
            threshold: None,
            min_clients: 2,
            upload_window_ms: WINDOW_MS,
            aggregation_window_ms: WINDOW_MS,
            allow_unverified: false,
        },
        next_round,
    );
    let task = Task {
        engine: None,
        name: "store-test".into(),
        vector_len: 4,
        ring: RingKind::Z2_64,
        spec: QuantSpec::new(16, 8.0, 24).expect("valid spec"),
        params: Vec::new(),
        min_clients: None,
    };
    let step = coordinator
        .handle(
            START,
            Input::Start(Start {
                task,
                clients: client_ids.clone(),
                nonce: [9; 32],
            }),
        )
        .expect("round starts");
    let round = coordinator.round().expect("started");
    let (descriptor_hash, round_id) = (round.descriptor().hash(), round.descriptor().round_id());
    let mut inclusion_set = None;
    let mut outcome = None;

    let mut queue = VecDeque::new();
    execute(store, coordinator_id, step.actions, true, &mut queue).await;
    let after = START.plus(WINDOW_MS);
    for now in [START, after] {
        if now == after {
            for (helper, config) in &mut helpers {
                let step = helper.handle(now, Input::Timer).expect("timer");
                execute(store, config.me, step.actions, false, &mut queue).await;
            }
            let step = coordinator.handle(now, Input::Timer).expect("timer");
            execute(store, coordinator_id, step.actions, true, &mut queue).await;
        }
        while let Some((from, to, message)) = queue.pop_front() {
            if let Message::InclusionSet(env) = &message {
                inclusion_set.get_or_insert_with(|| env.clone());
            }
            let Some(msg) = Inbound::from_message(message) else {
                continue;
            };
            let input = Input::Inbound { from, msg };
            let (step, persist_here): (Step, bool) = if to == coordinator_id {
                let step = coordinator.handle(now, input).expect("coordinator accepts");
                if let Some(o) = &step.outcome {
                    outcome = Some(o.clone());
                }
                (step, true)
            } else if let Some(h) = helpers.iter().position(|(_, c)| c.me == to) {
                let step = helpers[h].0.handle(now, input).expect("helper accepts");
                (step, h == 0)
            } else {
                let c = client_ids
                    .iter()
                    .position(|id| *id == to)
                    .expect("a client");
                let step = clients[c].handle(now, input).expect("client accepts");
                match step.round {
                    Some(round) if !step.actions.is_empty() => {
                        let input = [0.5, -1.0, 2.0, 0.25];
                        let step = clients[c]
                            .handle(
                                now,
                                Input::Participate(Participation {
                                    round,
                                    input: Ok(ClientInput::new(input.to_vec())),
                                    randomness: Seed::random(&mut rng),
                                }),
                            )
                            .expect("client takes part");
                        (step, c == 0)
                    }
                    _ => (step, false),
                }
            };
            execute(store, to, step.actions, persist_here, &mut queue).await;
        }
    }
    let Some(Outcome::Completed(summary)) = outcome else {
        panic!("the round completes: {outcome:?}");
    };
    RealRun {
        helper_config: helpers[0].1.clone(),
        coordinator_key,
        coordinator_id,
        descriptor_hash,
        round_id,
        inclusion_set: inclusion_set.expect("decided"),
        result: summary.result.clone(),
    }
}

/// Executes a step's actions in order: persist (if this party's state lives
/// in `store`) before queueing any later send.
async fn execute(
    store: &Store,
    from: PartyId,
    actions: Vec<Action>,
    persist_here: bool,
    queue: &mut VecDeque<(PartyId, PartyId, Message)>,
) {
    for action in actions {
        match action {
            Action::Persist(p) if persist_here => {
                store.apply(&p).await.expect("persisted");
            }
            Action::Send { to, message, .. } => queue.push_back((from, to, message)),
            _ => {}
        }
    }
}

/// Hands a helper the coordinator's inclusion set.
fn inclusion(
    helper: &mut Helper,
    coordinator: PartyId,
    set: &SignedEnvelope,
) -> Result<Step, HelperError> {
    helper
        .handle(
            START,
            Input::Inbound {
                from: coordinator,
                msg: Inbound::InclusionSet(set.clone()),
            },
        )
        .map_err(|r| match *r.error {
            sealroom_protocol::machine::ProtocolError::Helper(e) => e,
            other => panic!("not a helper's refusal: {other}"),
        })
}

// ---------------------------------------------------------------------------
// Test bodies, run on both backends.

async fn helper_restore_round_trip(db: TestDb) {
    let store = db.open().await;
    let run = run_real_round(&store).await;
    store
        .record_outcome(run.round_id, "result", &run.result)
        .await
        .expect("outcome recorded");
    store.close().await;
    drop(store);

    let store = db.open().await;
    let state = store.helper_state().await.expect("helper state");
    assert_eq!(state.rounds.len(), 1);
    assert_eq!(state.rounds[0].uploads.len(), 3);
    assert!(state.rounds[0].answered.is_some());

    let mut restored =
        Helper::restore(run.helper_config.clone(), state.clone(), START).expect("helper restores");
    assert_eq!(restored.last_round(), Some(run.round_id));
    // The differencing attack after a restart: a second, smaller set.
    let second = run.coordinator_key.sign(&pb::InclusionSet {
        descriptor_hash: run.descriptor_hash.0.to_vec(),
        round_id: run.round_id,
        clients: vec![0, 1],
        helpers: vec![0, 1],
    });
    assert_eq!(
        inclusion(&mut restored, run.coordinator_id, &second).unwrap_err(),
        HelperError::AlreadyAnswered {
            round: run.round_id,
            same_set: false
        }
    );
    let stored_set = store
        .coordinator_inclusion(run.round_id)
        .await
        .expect("reads")
        .expect("inclusion set stored");
    assert_eq!(stored_set, run.inclusion_set);
    // The very set it answered is answered again (the same sum): a lost
    // answer does not lose the round.
    assert!(inclusion(&mut restored, run.coordinator_id, &stored_set).is_ok());
    // The stored answer is what refuses: without it the same helper answers.
    let mut forgetful = state;
    forgetful.rounds[0].answered = None;
    let mut careless = Helper::restore(run.helper_config, forgetful, START).expect("restores");
    assert!(inclusion(&mut careless, run.coordinator_id, &second).is_ok());

    assert_eq!(store.coordinator_next_round_id().await.ok(), Some(2));
    assert_eq!(store.client_last_round().await.ok(), Some(Some(1)));
    let (kind, record) = store
        .outcome(run.round_id)
        .await
        .expect("reads")
        .expect("outcome stored");
    assert_eq!((kind.as_str(), record), ("result", run.result));
}

async fn state_survives_reopen(db: TestDb) {
    let store = db.open().await;
    helper_round(&store, 1).await.expect("round 1");
    upload(&store, 1, 2).await.expect("upload");
    upload(&store, 1, 0).await.expect("upload");
    answer(&store, 1, 0xa1).await.expect("answer");
    helper_round(&store, 2).await.expect("round 2");
    upload(&store, 2, 1).await.expect("upload");
    apply(&store, Persist::ClientRound { round_id: 5 })
        .await
        .expect("client round");
    apply(&store, Persist::CoordinatorRound { round_id: 3 })
        .await
        .expect("coordinator round");
    let set = envelope("sealroom/v1/inclusion-set", 4);
    apply(
        &store,
        Persist::CoordinatorInclusion {
            round_id: 3,
            inclusion_set: set.clone(),
        },
    )
    .await
    .expect("inclusion");
    let abort = envelope("sealroom/v1/abort", 5);
    store
        .record_outcome(3, "abort", &abort)
        .await
        .expect("outcome");
    let before = summary(&store.helper_state().await.expect("state"));
    store.close().await;
    drop(store);

    let store = db.open().await;
    let after = summary(&store.helper_state().await.expect("state"));
    assert_eq!(before, after);
    assert_eq!(
        after,
        vec![
            (1, vec![0, 2], Some(Digest([0xa1; 32]))),
            (2, vec![1], None)
        ]
    );
    assert_eq!(
        store.helper_state().await.expect("state").rounds[0].descriptor,
        descriptor(1)
    );
    assert_eq!(store.client_last_round().await.ok(), Some(Some(5)));
    assert_eq!(store.coordinator_next_round_id().await.ok(), Some(4));
    assert_eq!(store.coordinator_inclusion(3).await.ok(), Some(Some(set)));
    assert_eq!(
        store.outcome(3).await.ok(),
        Some(Some(("abort".to_owned(), abort)))
    );
    // Reopening re-runs the migrations harmlessly.
    store.close().await;
    let again = db.open().await;
    assert_eq!(summary(&again.helper_state().await.expect("state")), before);
}

async fn single_answer_rule_is_enforced(db: TestDb) {
    let store = db.open().await;
    helper_round(&store, 1).await.expect("round");
    answer(&store, 1, 0xa1).await.expect("first answer");
    // The same answer again (a retried write) is accepted.
    answer(&store, 1, 0xa1).await.expect("same answer");
    assert!(matches!(
        answer(&store, 1, 0xb2).await,
        Err(StoreError::AnswerConflict { round: 1 })
    ));
    assert!(matches!(
        answer(&store, 9, 0xa1).await,
        Err(StoreError::UnknownRound { round: 9 })
    ));
    store.close().await;
    let store = db.open().await;
    assert!(matches!(
        answer(&store, 1, 0xb2).await,
        Err(StoreError::AnswerConflict { round: 1 })
    ));
    let state = store.helper_state().await.expect("state");
    assert_eq!(state.rounds[0].answered, Some(Digest([0xa1; 32])));
}

async fn counters_only_increase(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.client_last_round().await.ok(), Some(None));
    assert_eq!(store.coordinator_next_round_id().await.ok(), Some(1));

    let client = |round_id| Persist::ClientRound { round_id };
    apply(&store, client(3)).await.expect("first");
    for stale in [3, 2, 0] {
        assert!(matches!(
            apply(&store, client(stale)).await,
            Err(StoreError::RoundNotIncreasing { role: "client", round, last: 3 }) if round == stale
        ));
    }
    apply(&store, client(4)).await.expect("increasing");
    assert_eq!(store.client_last_round().await.ok(), Some(Some(4)));

    let coordinator = |round_id| Persist::CoordinatorRound { round_id };
    apply(&store, coordinator(1)).await.expect("first");
    assert_eq!(store.coordinator_next_round_id().await.ok(), Some(2));
    assert!(matches!(
        apply(&store, coordinator(1)).await,
        Err(StoreError::RoundNotIncreasing {
            role: "coordinator",
            round: 1,
            last: 1
        })
    ));
    let max = i64::MAX.unsigned_abs();
    apply(&store, coordinator(max))
        .await
        .expect("i64::MAX fits");
    assert_eq!(store.coordinator_next_round_id().await.ok(), Some(max + 1));
    for too_big in [max + 1, u64::MAX] {
        assert!(matches!(
            apply(&store, coordinator(too_big)).await,
            Err(StoreError::RoundIdOutOfRange { round }) if round == too_big
        ));
        assert!(matches!(
            apply(&store, client(too_big)).await,
            Err(StoreError::RoundIdOutOfRange { .. })
        ));
        assert!(matches!(
            helper_round(&store, too_big).await,
            Err(StoreError::RoundIdOutOfRange { .. })
        ));
    }
    // The client counter is separate from the coordinator's.
    assert_eq!(store.client_last_round().await.ok(), Some(Some(4)));

    helper_round(&store, 5).await.expect("helper round");
    for stale in [5, 4] {
        assert!(matches!(
            helper_round(&store, stale).await,
            Err(StoreError::RoundNotIncreasing { role: "helper", round, last: 5 }) if round == stale
        ));
    }
    let garbage = SignedEnvelope {
        body: vec![0xff, 0xff],
        ..descriptor(6)
    };
    assert!(matches!(
        apply(
            &store,
            Persist::HelperRound {
                round_id: 6,
                descriptor: garbage
            }
        )
        .await,
        Err(StoreError::MalformedDescriptor { .. })
    ));
    assert_eq!(
        summary(&store.helper_state().await.expect("state")).len(),
        1
    );
}

async fn uploads_are_never_overwritten(db: TestDb) {
    let store = db.open().await;
    assert!(matches!(
        upload(&store, 1, 0).await,
        Err(StoreError::UnknownRound { round: 1 })
    ));
    helper_round(&store, 1).await.expect("round");
    upload(&store, 1, 0).await.expect("upload");
    upload(&store, 1, u32::MAX).await.expect("largest index");
    let other = Persist::HelperUpload {
        round_id: 1,
        client_index: 0,
        upload: SecretBytes::new(b"a different share".to_vec()),
    };
    assert!(matches!(
        apply(&store, other).await,
        Err(StoreError::DuplicateUpload {
            round: 1,
            client: 0
        })
    ));
    // The first upload is intact (`summary` checks the bytes).
    assert_eq!(
        summary(&store.helper_state().await.expect("state")),
        vec![(1, vec![0, u32::MAX], None)]
    );
}

async fn coordinator_records_are_never_replaced(db: TestDb) {
    let store = db.open().await;
    let first = envelope("sealroom/v1/inclusion-set", 1);
    let inclusion = |inclusion_set| Persist::CoordinatorInclusion {
        round_id: 1,
        inclusion_set,
    };
    apply(&store, inclusion(first.clone()))
        .await
        .expect("first");
    apply(&store, inclusion(first.clone()))
        .await
        .expect("same set again");
    assert!(matches!(
        apply(&store, inclusion(envelope("sealroom/v1/inclusion-set", 2))).await,
        Err(StoreError::InclusionConflict { round: 1 })
    ));
    assert_eq!(store.coordinator_inclusion(1).await.ok(), Some(Some(first)));
    assert_eq!(store.coordinator_inclusion(2).await.ok(), Some(None));

    let result = envelope("sealroom/v1/result", 3);
    store
        .record_outcome(1, "result", &result)
        .await
        .expect("recorded");
    store
        .record_outcome(1, "result", &result)
        .await
        .expect("same record again");
    assert!(matches!(
        store.record_outcome(1, "abort", &result).await,
        Err(StoreError::OutcomeConflict { round: 1, existing }) if existing == "result"
    ));
    assert!(matches!(
        store
            .record_outcome(1, "result", &envelope("sealroom/v1/result", 4))
            .await,
        Err(StoreError::OutcomeConflict { round: 1, .. })
    ));
    assert!(matches!(
        store.record_outcome(2, "success", &result).await,
        Err(StoreError::InvalidOutcomeKind { kind }) if kind == "success"
    ));
    assert_eq!(
        store.outcome(1).await.ok(),
        Some(Some(("result".to_owned(), result.clone())))
    );
    assert_eq!(store.outcome(2).await.ok(), Some(None));
    assert!(matches!(
        store.outcome(u64::MAX).await,
        Err(StoreError::RoundIdOutOfRange { .. })
    ));
    assert!(matches!(
        store.coordinator_inclusion(u64::MAX).await,
        Err(StoreError::RoundIdOutOfRange { .. })
    ));
    assert!(matches!(
        store.record_outcome(u64::MAX, "abort", &result).await,
        Err(StoreError::RoundIdOutOfRange { .. })
    ));
}

async fn pruning_keeps_the_newest_rounds(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.prune_helper_rounds(0).await.ok(), Some(0));
    for round in 1..=4 {
        helper_round(&store, round).await.expect("round");
        for client in 0..3 {
            upload(&store, round, client).await.expect("upload");
        }
    }
    assert_eq!(store.prune_helper_rounds(10).await.ok(), Some(0));
    assert_eq!(store.prune_helper_rounds(usize::MAX).await.ok(), Some(0));
    assert_eq!(store.prune_helper_rounds(2).await.ok(), Some(2));
    let rounds: Vec<u64> = summary(&store.helper_state().await.expect("state"))
        .into_iter()
        .map(|(round, clients, _)| {
            assert_eq!(clients, vec![0, 1, 2]);
            round
        })
        .collect();
    assert_eq!(rounds, vec![3, 4]);
    // A restarting helper reads every round but the uploads of the newest
    // only (it restores the older ones closed).
    let restore = summary(&store.helper_restore_state().await.expect("state"));
    assert_eq!(
        restore
            .iter()
            .map(|(round, clients, _)| (*round, clients.clone()))
            .collect::<Vec<_>>(),
        vec![(3, vec![]), (4, vec![0, 1, 2])]
    );
    assert_eq!(
        raw_count(
            &store,
            "SELECT COUNT(*) FROM helper_uploads WHERE round_id <= 2"
        )
        .await,
        0
    );
    // The helper's round counter survives pruning: old rounds stay refused.
    assert!(matches!(
        helper_round(&store, 2).await,
        Err(StoreError::RoundNotIncreasing {
            role: "helper",
            round: 2,
            last: 4
        })
    ));
    assert_eq!(store.prune_helper_rounds(0).await.ok(), Some(2));
    assert!(store.helper_state().await.expect("state").rounds.is_empty());
    assert_eq!(
        raw_count(&store, "SELECT COUNT(*) FROM helper_uploads").await,
        0
    );
    assert!(matches!(
        helper_round(&store, 4).await,
        Err(StoreError::RoundNotIncreasing { last: 4, .. })
    ));
    helper_round(&store, 5).await.expect("a newer round");
}

async fn corrupt_rows_are_typed_errors(db: TestDb) {
    let store = db.open().await;
    helper_round(&store, 1).await.expect("round");
    upload(&store, 1, 0).await.expect("upload");
    let set = envelope("sealroom/v1/inclusion-set", 1);
    apply(
        &store,
        Persist::CoordinatorInclusion {
            round_id: 1,
            inclusion_set: set,
        },
    )
    .await
    .expect("inclusion");
    store
        .record_outcome(1, "result", &envelope("sealroom/v1/result", 2))
        .await
        .expect("outcome");

    let set_descriptor = "UPDATE helper_rounds SET descriptor = $1 WHERE round_id = 1";
    let cases: [(&str, Vec<u8>); 3] = [
        ("bytes that are no envelope", vec![0xff; 5]),
        (
            "an envelope whose body is no descriptor",
            SignedEnvelope {
                body: vec![0xff; 3],
                ..descriptor(1)
            }
            .encode_to_vec(),
        ),
        ("another round's descriptor", descriptor(2).encode_to_vec()),
    ];
    for (what, bytes) in cases {
        raw_execute(&store, set_descriptor, bytes).await;
        match store.helper_state().await {
            Err(StoreError::CorruptRow {
                table: "helper_rounds",
                key,
                ..
            }) => assert_eq!(key, "round_id = 1", "{what}"),
            other => panic!("{what}: expected a corrupt row, got {other:?}"),
        }
    }
    raw_execute(&store, set_descriptor, descriptor(1).encode_to_vec()).await;
    assert_eq!(
        summary(&store.helper_state().await.expect("repaired")),
        vec![(1, vec![0], None)]
    );

    raw_execute(
        &store,
        "UPDATE coordinator_inclusions SET inclusion_set = $1 WHERE round_id = 1",
        vec![0x0a, 0xff],
    )
    .await;
    assert!(matches!(
        store.coordinator_inclusion(1).await,
        Err(StoreError::CorruptRow {
            table: "coordinator_inclusions",
            ..
        })
    ));
    raw_execute(
        &store,
        "UPDATE coordinator_outcomes SET record = $1 WHERE round_id = 1",
        vec![0x12, 0x80],
    )
    .await;
    assert!(matches!(
        store.outcome(1).await,
        Err(StoreError::CorruptRow {
            table: "coordinator_outcomes",
            ..
        })
    ));
    // A record that decodes but differs from the one being recorded is a
    // conflict, never an overwrite of the damaged row.
    assert!(matches!(
        store
            .record_outcome(1, "result", &envelope("sealroom/v1/result", 2))
            .await,
        Err(StoreError::OutcomeConflict { .. })
    ));
}

async fn concurrent_writers(db: TestDb) {
    let store = db.open().await;
    helper_round(&store, 1).await.expect("round");
    // Two tasks upload 40 shares each into the same round at once.
    let tasks: Vec<_> = (0..2u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40u32 {
                    upload(&store, 1, 2 * i + task).await.expect("upload");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let clients: Vec<u32> = (0..80).collect();
    assert_eq!(
        summary(&store.helper_state().await.expect("state")),
        vec![(1, clients, None)]
    );

    // Racing writers of the same record: exactly one wins each race.
    for race in 0..5u8 {
        let round = 10 + u64::from(race);
        helper_round(&store, round).await.expect("round");
        let (a, b) = (store.clone(), store.clone());
        let (first, second) = tokio::join!(
            tokio::spawn(async move { answer(&a, round, 0xa1).await }),
            tokio::spawn(async move { answer(&b, round, 0xb2).await }),
        );
        let outcomes = [first.expect("task"), second.expect("task")];
        let won: Vec<_> = outcomes.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "one answer recorded: {outcomes:?}");
        assert!(
            outcomes.iter().any(
                |r| matches!(r, Err(StoreError::AnswerConflict { round: got }) if *got == round)
            ),
            "{outcomes:?}"
        );

        let (a, b) = (store.clone(), store.clone());
        let (first, second) = tokio::join!(
            tokio::spawn(async move { upload(&a, round, 7).await }),
            tokio::spawn(async move { upload(&b, round, 7).await }),
        );
        let outcomes = [first.expect("task"), second.expect("task")];
        assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            outcomes
                .iter()
                .any(|r| matches!(r, Err(StoreError::DuplicateUpload { client: 7, .. })))
        );
    }
    let state = store.helper_state().await.expect("state");
    assert!(state.rounds[1..].iter().all(|r| r.answered.is_some()));

    // Interleaved counters: the highest always wins; refusals are typed.
    let tasks: Vec<_> = (0..2u64)
        .map(|parity| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25u64 {
                    let round_id = 2 * i + parity + 1;
                    match apply(&store, Persist::ClientRound { round_id }).await {
                        Ok(()) | Err(StoreError::RoundNotIncreasing { .. }) => {}
                        Err(e) => panic!("unexpected: {e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(store.client_last_round().await.ok(), Some(Some(50)));
}

// ---------------------------------------------------------------------------
// Backend-specific tests.

#[tokio::test]
async fn open_accepts_paths_and_sqlite_urls() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bare = dir.path().join("a/b/bare.db");
    let store = Store::open(bare.to_str().expect("utf-8 path"))
        .await
        .expect("bare path");
    assert_eq!(store.backend(), "sqlite");
    assert!(bare.exists());
    for (i, prefix) in ["sqlite://", "sqlite:"].into_iter().enumerate() {
        let path = dir.path().join(format!("url-{i}/state.db"));
        let store = Store::open(&format!("{prefix}{}", path.display()))
            .await
            .expect("sqlite URL");
        assert_eq!(store.backend(), "sqlite");
        assert!(path.exists(), "{prefix}");
    }
    let store = Store::open_sqlite(&dir.path().join("direct/state.db"))
        .await
        .expect("open_sqlite");
    assert!(format!("{store:?}").contains("sqlite"));
}

#[tokio::test]
async fn open_refuses_what_is_not_a_durable_store() {
    assert!(matches!(
        Store::open("mysql://user@host/db").await,
        Err(StoreError::UnsupportedScheme { scheme }) if scheme == "mysql"
    ));
    for location in ["", ":memory:", "sqlite://", "sqlite::memory:"] {
        assert!(
            matches!(
                Store::open(location).await,
                Err(StoreError::InvalidLocation { .. })
            ),
            "{location:?}"
        );
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("writes");
    assert!(matches!(
        Store::open_sqlite(&file.join("state.db")).await,
        Err(StoreError::CreateDir { .. })
    ));
    std::fs::write(dir.path().join("junk.db"), vec![0x42; 8192]).expect("writes");
    assert!(matches!(
        Store::open_sqlite(&dir.path().join("junk.db")).await,
        Err(StoreError::Open { .. } | StoreError::Migrate { .. })
    ));
}

#[tokio::test]
async fn sqlite_runs_with_durable_settings() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open_sqlite(&dir.path().join("state.db"))
        .await
        .expect("opens");
    let Pool::Sqlite(pool) = &store.pool else {
        panic!("a SQLite store");
    };
    let pragma = async |name: &'static str| -> String {
        let row = sqlx::query(name)
            .fetch_one(pool)
            .await
            .expect("pragma runs");
        match row.try_get::<String, _>(0) {
            Ok(text) => text,
            Err(_) => row.try_get::<i64, _>(0).expect("a number").to_string(),
        }
    };
    assert_eq!(pragma("PRAGMA journal_mode").await, "wal");
    assert_eq!(pragma("PRAGMA synchronous").await, "2", "FULL");
    assert_eq!(pragma("PRAGMA foreign_keys").await, "1");
    assert_eq!(pragma("PRAGMA secure_delete").await, "1");
    assert_ne!(pragma("PRAGMA busy_timeout").await, "0");
}

#[tokio::test]
async fn postgres_passwords_never_reach_errors_or_logs() {
    assert_eq!(
        redact_url("postgres://alice:s3cret@db.example:5432/sealroom?sslmode=require&password=x"),
        "postgres://alice:***@db.example:5432/sealroom?…"
    );
    assert_eq!(
        redact_url("postgresql://db.example/sealroom"),
        "postgresql://db.example/sealroom"
    );
    assert_eq!(
        redact_url("postgres://bob@127.0.0.1"),
        "postgres://bob@127.0.0.1"
    );
    // A URL that does not parse fails at once, without a connection attempt
    // (an unreachable server would be retried for the pool's acquire timeout).
    let err = Store::open("postgres://alice:s3cret@127.0.0.1:no-port/sealroom")
        .await
        .expect_err("unparsable URL");
    assert!(matches!(
        err,
        StoreError::Open {
            backend: "postgres",
            ..
        }
    ));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn test_database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1/postgres", "t1"),
        "postgres://postgres@127.0.0.1/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5433?sslmode=disable", "t2"),
        "postgres://u:p@h:5433/t2?sslmode=disable"
    );
}
