//! The MPC engine between real helper nodes (issue #14): three helpers of a
//! local federation agree on their epoch keys, produce preprocessing
//! material and run programs over loopback mutual TLS (`EngineService`),
//! exactly as `sealroom bench --engine` does. A helper that tampers with
//! what it sends makes the honest ones abort and release nothing; a
//! client's certificate cannot open an engine stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sealroom_mpc::F127;
use sealroom_mpc::error::Abort;
use sealroom_mpc::machine::{Action, HelperIndex, Input, Machine, Millis, Step, UsageError};
use sealroom_mpc::material::{Batch, BatchId};
use sealroom_mpc::program::{Program, ProgramBuilder};
use sealroom_mpc::prss::EpochKeys;
use sealroom_mpc::session::{Outcome, Session, SessionConfig, SessionInputs};
use sealroom_node::engine::{self, Engine};
use sealroom_node::grpc::pb::EngineFrame;
use sealroom_node::grpc::pb::engine_service_client::EngineServiceClient;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{TaskCatalog, synthetic_inputs};
use sealroom_node::tls;

const DEADLINE: Duration = Duration::from_secs(120);

async fn federation(dir: &std::path::Path) -> LocalFederation {
    let inputs = synthetic_inputs(2);
    let options = InitOptions {
        helpers: 3,
        clients: 2,
        federation_id: "engine-test".into(),
        ..InitOptions::default()
    };
    LocalFederation::start(dir, options, TaskCatalog::with_builtins(), inputs)
        .await
        .expect("federation starts")
        .0
}

fn engines(fed: &LocalFederation) -> [Engine; 3] {
    [0, 1, 2].map(|i| fed.helper_engine(i).expect("three helpers run the engine"))
}

async fn agree(engines: &[Engine; 3], epoch: u64) -> [EpochKeys; 3] {
    let [a, b, c] = engines;
    let (ka, kb, kc) = tokio::join!(
        a.agree_keys(epoch),
        b.agree_keys(epoch),
        c.agree_keys(epoch)
    );
    [ka, kb, kc].map(|k| k.expect("engine runs").expect("keys agreed"))
}

async fn material(engines: &[Engine; 3], keys: &[EpochKeys; 3], program: &Program) -> [Batch; 3] {
    let id = BatchId(rand_id());
    let need = program.needs();
    let [a, b, c] = engines;
    let (x, y, z) = tokio::join!(
        a.preprocess(&keys[0], id, need, false),
        b.preprocess(&keys[1], id, need, false),
        c.preprocess(&keys[2], id, need, false)
    );
    [x, y, z].map(|o| o.expect("engine runs").expect("batch produced"))
}

fn rand_id() -> [u8; 16] {
    let seed = engine::os_seed().expect("os randomness");
    let mut id = [0u8; 16];
    id.copy_from_slice(&seed.expose_bytes()[..16]);
    id
}

/// x (helper 0) and y (helper 1), 8 values each: x·y, [x < y], MAX(x ‖ y),
/// MEDIAN(x ‖ y).
fn program() -> Program {
    let mut p = ProgramBuilder::new("engine-test", 1);
    let x = p.helper_input(HelperIndex::ALL[0], 0, 8);
    let y = p.helper_input(HelperIndex::ALL[1], 0, 8);
    let product = p.mul(x, y);
    let less = p.lt(x, y, 32);
    let both = p.concat(&[x, y]);
    let max = p.max(both, 32);
    let median = p.median(both, 32);
    for v in [product, less, max, median] {
        p.output(v);
    }
    p.build().expect("program builds")
}

const X: [i64; 8] = [5, -3, 1000, 0, 77, -50_000, 12, 9];
const Y: [i64; 8] = [6, -4, 999, 0, 1 << 20, 3, -12, 9];

fn inputs(helper: usize) -> SessionInputs {
    let values = match helper {
        0 => &X,
        1 => &Y,
        _ => return SessionInputs::default(),
    };
    SessionInputs {
        helper: BTreeMap::from([(0, values.iter().map(|&v| F127::from_i64(v)).collect())]),
        ..SessionInputs::default()
    }
}

fn expected() -> Vec<Vec<i128>> {
    let product = X.iter().zip(&Y).map(|(a, b)| i128::from(a * b)).collect();
    let less = X.iter().zip(&Y).map(|(a, b)| i128::from(a < b)).collect();
    let mut all: Vec<i64> = X.iter().chain(&Y).copied().collect();
    all.sort_unstable();
    let max = vec![i128::from(*all.last().expect("values"))];
    // 16 values: the lower median (rank 7), as `ops::median` documents.
    let median = vec![i128::from(all[(all.len() - 1) / 2])];
    vec![product, less, max, median]
}

fn signed(outcome: &Outcome) -> Vec<Vec<i128>> {
    match outcome {
        Outcome::Completed { outputs } => outputs.iter().map(|o| o.signed()).collect(),
        other => panic!("expected a completed session, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_helpers_compute_over_mutual_tls_and_match_plaintext() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fed = federation(dir.path()).await;
        let engines = engines(&fed);
        assert_eq!(
            engines.iter().map(|e| e.me().index()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let keys = agree(&engines, 1).await;
        let program = Arc::new(program());
        let [b0, b1, b2] = material(&engines, &keys, &program).await;
        let session = rand_session();
        let [e0, e1, e2] = &engines;
        let (o0, o1, o2) = tokio::join!(
            e0.compute(
                &keys[0],
                session,
                program.clone(),
                vec![b0],
                inputs(0),
                false
            ),
            e1.compute(
                &keys[1],
                session,
                program.clone(),
                vec![b1],
                inputs(1),
                false
            ),
            e2.compute(
                &keys[2],
                session,
                program.clone(),
                vec![b2],
                inputs(2),
                false
            )
        );
        for o in [o0, o1, o2] {
            let outcome = o.expect("engine runs").expect("session starts");
            assert_eq!(signed(&outcome), expected());
        }
        fed.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

fn rand_session() -> [u8; 32] {
    *engine::os_seed().expect("os randomness").expose_bytes()
}

/// A corrupted helper: its session, with one byte of one outgoing message
/// (to one peer only) flipped in the body, after the framing the receiver
/// checks first. The honest helpers must abort and release nothing.
struct Tamper {
    inner: Session,
    target: usize,
    sent: usize,
}

impl Machine for Tamper {
    type Outcome = Outcome;

    fn handle(self, now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)> {
        let Tamper {
            inner,
            target,
            mut sent,
        } = self;
        let rewrap = |inner| Tamper {
            inner,
            target,
            sent,
        };
        let tamper = |actions: Vec<Action>, sent: &mut usize| {
            actions
                .into_iter()
                .map(|a| match a {
                    Action::Send { to, mut msg } => {
                        if *sent == target {
                            assert!(
                                msg.len() > sealroom_mpc::wire::HEADER_BYTES,
                                "a body to flip"
                            );
                            let last = msg.len() - 1;
                            msg[last] ^= 1;
                        }
                        *sent += 1;
                        Action::Send { to, msg }
                    }
                    other => other,
                })
                .collect::<Vec<_>>()
        };
        match inner.handle(now, input) {
            Ok(Step::Continue(m, actions)) => {
                let actions = tamper(actions, &mut sent);
                Ok(Step::Continue(
                    Tamper {
                        inner: m,
                        target,
                        sent,
                    },
                    actions,
                ))
            }
            Ok(Step::Finish(o, actions)) => Ok(Step::Finish(o, tamper(actions, &mut sent))),
            Err((m, e)) => Err((rewrap(m), e)),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.inner.next_deadline()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_tampers_with_a_message_makes_the_honest_helpers_abort() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fed = federation(dir.path()).await;
        let engines = engines(&fed);
        let keys = agree(&engines, 1).await;
        let program = Arc::new(program());
        // Helper 2's messages: 0 and 1 are its hello to each peer, 2 and 3
        // its (empty: it has no input) input round, 4 its first opening to
        // helper 0, 7 a later round's to helper 1.
        for target in [4, 7] {
            // Pooled material, as in production: the honest helpers take
            // theirs from the pool, the corrupted one too.
            let id = produce_all(&engines, &keys, program.needs()).await;
            let session = rand_session();
            let config = SessionConfig {
                session_id: session,
                round_timeout_ms: engine::ROUND_TIMEOUT_MS,
            };
            let [e0, e1, e2] = &engines;
            let b2 = e2.take(1, session, &[id]).await.expect("pool");
            let corrupt = Tamper {
                inner: Session::new(
                    program.clone(),
                    &keys[2],
                    b2,
                    inputs(2),
                    config,
                    engine::os_seed().expect("os randomness"),
                )
                .expect("session starts"),
                target,
                sent: 0,
            };
            let max = corrupt.inner.max_inbound_bytes();
            let ids = [id];
            let (o0, o1, _) = tokio::join!(
                e0.compute_pooled(&keys[0], session, program.clone(), &ids, inputs(0)),
                e1.compute_pooled(&keys[1], session, program.clone(), &ids, inputs(1)),
                e2.run(session, max, corrupt)
            );
            for o in [o0, o1] {
                match o.expect("engine runs").expect("session starts") {
                    Outcome::Aborted(Abort { reason, .. }) => {
                        // Never a silent pass, never a release.
                        assert!(!reason.to_string().is_empty());
                    }
                    other => panic!("tampered message {target}: expected an abort, got {other:?}"),
                }
            }
        }
        // Each honest helper signed its evidence of both aborts into its
        // audit log (which verifies); the batches stay consumed.
        for h in 0..2 {
            assert_eq!(audit_kinds(&fed, h, "engine_abort").await, 2, "helper-{h}");
        }
        fed.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_open_an_engine_stream() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fed = federation(dir.path()).await;
        let helper = fed.summary.federation.helpers[0]
            .endpoint
            .clone()
            .expect("helper endpoint");
        let client = &fed.configs["client-0"];
        let channel = tls::channel_unpinned(&client.tls, &helper).expect("channel");
        let frame = EngineFrame {
            session: vec![7; 32],
            data: vec![1, 2, 3],
            end: true,
        };
        let status = EngineServiceClient::new(channel)
            .exchange(tokio_stream::iter(vec![frame]))
            .await
            .expect_err("a client may not talk to the engine");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        fed.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

async fn audit_kinds(fed: &LocalFederation, helper: usize, kind: &str) -> usize {
    let db = fed.configs[&format!("helper-{helper}")]
        .data_dir
        .join("sealroom.db");
    let store = sealroom_store::Store::open_sqlite(&db)
        .await
        .expect("store");
    let entries = store.audit_entries(None).await.expect("audit log");
    let (_, violations) = sealroom_store::verify_chain(&entries);
    assert!(violations.is_empty(), "helper-{helper}: {violations:?}");
    entries.iter().filter(|e| e.kind == kind).count()
}

async fn produce_all(
    engines: &[Engine; 3],
    keys: &[EpochKeys; 3],
    counts: sealroom_mpc::material::Counts,
) -> BatchId {
    let id = BatchId(rand_id());
    let [a, b, c] = engines;
    let (x, y, z) = tokio::join!(
        a.produce(&keys[0], id, counts),
        b.produce(&keys[1], id, counts),
        c.produce(&keys[2], id, counts)
    );
    for r in [x, y, z] {
        r.expect("engine runs")
            .expect("batch produced and attested");
    }
    id
}

async fn compute_pooled_all(
    engines: &[Engine; 3],
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    ids: &[BatchId],
) -> Vec<Result<Result<Outcome, sealroom_mpc::session::SessionError>, engine::EngineError>> {
    let session = rand_session();
    let [a, b, c] = engines;
    let (x, y, z) = tokio::join!(
        a.compute_pooled(&keys[0], session, program.clone(), ids, inputs(0)),
        b.compute_pooled(&keys[1], session, program.clone(), ids, inputs(1)),
        c.compute_pooled(&keys[2], session, program.clone(), ids, inputs(2))
    );
    vec![x, y, z]
}

/// The preprocessing pool: batches are produced by the three helpers,
/// attested by all three (each helper's audit log holds every signature),
/// stored durably, consumed once — a second use is refused before anything
/// runs, also after a restart — and keys and material survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_attested_durable_and_single_use() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut fed = federation(dir.path()).await;
        let engines = engines(&fed);
        let keys = agree(&engines, 1).await;
        assert!(
            matches!(
                engines[0].agree_keys(1).await,
                Err(engine::EngineError::EpochExists(1))
            ),
            "an epoch is agreed once"
        );
        let program = Arc::new(program());
        let first = produce_all(&engines, &keys, program.needs()).await;
        let second = produce_all(&engines, &keys, program.needs()).await;
        for h in 0..3 {
            assert_eq!(audit_kinds(&fed, h, "engine_batch").await, 6, "helper-{h}");
        }

        let ids = engines[0]
            .select(1, program.needs())
            .await
            .expect("pool covers it");
        assert_eq!(ids, vec![first], "oldest first, only what is needed");
        for o in compute_pooled_all(&engines, &keys, &program, &ids).await {
            assert_eq!(
                signed(&o.expect("engine runs").expect("session starts")),
                expected()
            );
        }
        // The same batch again: refused by every helper's store, nothing runs.
        for o in compute_pooled_all(&engines, &keys, &program, &ids).await {
            assert!(
                matches!(
                    o,
                    Err(engine::EngineError::Store(
                        sealroom_store::StoreError::EngineBatchUnavailable { .. }
                    ))
                ),
                "{o:?}"
            );
        }

        // Restart helper 0: its keys and its unconsumed batch come back; the
        // consumed one stays consumed.
        fed.stop_helper(0).await;
        fed.start_helper(0).await.expect("helper restarts");
        let engines = self::engines(&fed);
        let reloaded = engines[0]
            .epoch_keys(1)
            .await
            .expect("store")
            .expect("keys survive a restart");
        let [_, k1, k2] = keys;
        let keys = [reloaded, k1, k2];
        assert!(matches!(
            engines[0]
                .compute_pooled(&keys[0], rand_session(), program.clone(), &ids, inputs(0))
                .await,
            Err(engine::EngineError::Store(
                sealroom_store::StoreError::EngineBatchUnavailable { .. }
            ))
        ));
        let ids = engines[1]
            .select(1, program.needs())
            .await
            .expect("pool covers it");
        assert_eq!(ids, vec![second]);
        for o in compute_pooled_all(&engines, &keys, &program, &ids).await {
            assert_eq!(
                signed(&o.expect("engine runs").expect("session starts")),
                expected()
            );
        }
        for h in 0..3 {
            assert_eq!(audit_kinds(&fed, h, "engine_use").await, 2, "helper-{h}");
        }
        // A new epoch: the old one is retired on every helper, and material
        // left from it expires (the keys are gone, the batch is refused).
        let next = agree(&engines, 2).await;
        let leftover = produce_all(&engines, &keys, program.needs()).await;
        for e in &engines {
            assert_eq!(e.retire_epoch(1).await.expect("retired"), 1);
            assert!(e.epoch_keys(1).await.expect("store").is_none());
        }
        for o in compute_pooled_all(&engines, &keys, &program, &[leftover]).await {
            assert!(
                matches!(
                    &o,
                    Err(engine::EngineError::Store(
                        sealroom_store::StoreError::EngineBatchUnavailable { reason, .. }
                    )) if reason.contains("expired")
                ),
                "{o:?}"
            );
        }
        let fresh = produce_all(&engines, &next, program.needs()).await;
        for o in compute_pooled_all(&engines, &next, &program, &[fresh]).await {
            assert_eq!(
                signed(&o.expect("engine runs").expect("session starts")),
                expected()
            );
        }
        let metrics = fed.metrics["helper-1"].render();
        assert!(
            metrics.contains("sealroom_engine_material_total{kind=\"triples\",event=\"consumed\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("sealroom_engine_backlog{kind=\"triples\"} 0"),
            "{metrics}"
        );
        fed.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// A corrupted helper's side of the attestation exchange: it signs (with
/// its real key) a digest other than the batch's.
struct ForgedAttestation {
    envelope: Vec<u8>,
    me: HelperIndex,
    received: usize,
    started: bool,
}

impl Machine for ForgedAttestation {
    type Outcome = ();

    fn handle(mut self, _now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)> {
        match input {
            Input::Start if !self.started => {
                self.started = true;
                let actions = [self.me.next(), self.me.prev()]
                    .map(|to| Action::Send {
                        to,
                        msg: self.envelope.clone(),
                    })
                    .into();
                Ok(Step::Continue(self, actions))
            }
            Input::Inbound { .. } => {
                self.received += 1;
                if self.received == 2 {
                    Ok(Step::Finish((), Vec::new()))
                } else {
                    Ok(Step::Continue(self, Vec::new()))
                }
            }
            _ => Ok(Step::Continue(self, Vec::new())),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        None
    }
}

/// A helper that attests another digest than the batch's (or signs for
/// another helper) gets the batch discarded by the honest helpers: they
/// abort naming it, store nothing and log no attestation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_a_helper_attests_wrongly_is_discarded() {
    use prost::Message as _;
    use sealroom_protocol::pb;
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fed = federation(dir.path()).await;
        let engines = engines(&fed);
        let keys = agree(&engines, 1).await;
        let program = program();
        let counts = program.needs();
        let key = fed.configs["helper-2"]
            .signing_key
            .clone()
            .expect("helpers sign");
        let id = BatchId(rand_id());
        let [a, b, c] = &engines;
        let corrupt = async {
            let batch = c
                .preprocess(&keys[2], id, counts, false)
                .await
                .expect("engine runs")
                .expect("batch produced");
            let mut digest = batch.digest();
            digest[0] ^= 1;
            let forged = key.sign(&pb::EngineBatch {
                federation_id: "engine-test".into(),
                epoch: 1,
                batch_id: id.0.to_vec(),
                digest: digest.to_vec(),
                triples: counts.triples as u64,
                bits: counts.bits as u64,
                randoms: counts.randoms as u64,
                masks: counts.masks.iter().map(|&m| m as u64).collect(),
                helper: 2,
            });
            c.run(
                c.attestation_session(1, id),
                4096,
                ForgedAttestation {
                    envelope: forged.encode_to_vec(),
                    me: HelperIndex::ALL[2],
                    received: 0,
                    started: false,
                },
            )
            .await
            .expect("engine runs");
        };
        let (x, y, ()) = tokio::join!(
            a.produce(&keys[0], id, counts),
            b.produce(&keys[1], id, counts),
            corrupt
        );
        for r in [x, y] {
            match r.expect("engine runs") {
                Err(Abort {
                    reason: sealroom_mpc::error::AbortReason::ParameterMismatch { peer },
                    ..
                }) => assert_eq!(peer, HelperIndex::ALL[2]),
                other => panic!("expected the batch to be discarded, got {other:?}"),
            }
        }
        for (h, engine) in engines.iter().enumerate().take(2) {
            assert!(matches!(
                engine.select(1, counts).await,
                Err(engine::EngineError::Backlog { .. })
            ));
            assert_eq!(audit_kinds(&fed, h, "engine_batch").await, 0);
            assert_eq!(audit_kinds(&fed, h, "engine_abort").await, 1, "helper-{h}");
        }
        let metrics = fed.metrics["helper-0"].render();
        assert!(
            metrics.contains("sealroom_engine_sessions_total{protocol=\"preprocessing\",outcome=\"aborted\",reason=\"parameter_mismatch\"} 1"),
            "{metrics}"
        );
        fed.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
