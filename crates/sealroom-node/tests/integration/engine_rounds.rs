//! Engine rounds over real nodes (issue #14, `docs/mpc.md` "Engine
//! rounds"): the coordinator names an engine program in the signed
//! descriptor, clients upload seed-compressed additive shares with their
//! integrity sketch, the three helpers run the program among themselves
//! over mutual TLS for the signed inclusion set, and only the verified
//! outputs — identical in all three signed answers — reach the coordinator
//! and the admin.

use std::time::Duration;

use sealroom_node::config::Role;
use sealroom_node::init::InitOptions;

use sealroom_node::local::{LocalFederation, open_context};
use sealroom_node::metrics::Metrics;
use sealroom_node::replay::replay_with;
use sealroom_node::tasks::{
    SYNTHETIC_MAX, SyntheticMax, TaskCatalog, synthetic_inputs, synthetic_vector,
};
use sealroom_protocol::pb::archived_step::Input as ArchivedInput;
use sealroom_store::verify_chain;

const DEADLINE: Duration = Duration::from_secs(180);

async fn federation(dir: &std::path::Path, clients: usize) -> LocalFederation {
    federation_with(
        dir,
        InitOptions {
            helpers: 3,
            clients,
            federation_id: "engine-rounds".into(),
            ..InitOptions::default()
        },
    )
    .await
}

async fn federation_with(dir: &std::path::Path, options: InitOptions) -> LocalFederation {
    let clients = options.clients;
    LocalFederation::start(
        dir,
        options,
        TaskCatalog::with_builtins(),
        synthetic_inputs(clients),
    )
    .await
    .expect("federation starts")
    .0
}

fn outputs(bytes: &[u8]) -> Vec<i128> {
    assert_eq!(bytes.len() % 16, 0, "whole i128 outputs");
    bytes
        .chunks_exact(16)
        .map(|c| i128::from_le_bytes(c.try_into().expect("16 bytes")))
        .collect()
}

/// Client `c`'s quantized synthetic vector in `round` (the engine tasks'
/// 16-bit quantization).
fn quantized(round: u64, c: u32, len: usize) -> Vec<i128> {
    let spec = SyntheticMax::spec();
    let v = synthetic_vector(&format!("client-{c}"), round, len, spec.clip());
    let q = spec.quantize(&v).expect("finite");
    q.values.iter().map(|&x| i128::from(x)).collect()
}

/// The plaintext twin: the element-wise maximum of the included clients'
/// quantized synthetic vectors.
fn plaintext_max(round: u64, included: &[u32], len: usize) -> Vec<i128> {
    let mut max = vec![i128::MIN; len];
    for &c in included {
        for (m, x) in max.iter_mut().zip(quantized(round, c, len)) {
            *m = (*m).max(x);
        }
    }
    max
}

/// A round of `task` over `len` elements, which must complete in time.
async fn completed_round(
    fed: &LocalFederation,
    task: &str,
    len: u64,
) -> sealroom_node::grpc::pb::RoundOutcome {
    let outcome = tokio::time::timeout(DEADLINE, fed.run_round(task, len))
        .await
        .expect("round finishes in time")
        .expect("round runs");
    assert_eq!(
        outcome.status, "completed",
        "{}: {}",
        outcome.reason, outcome.detail
    );
    outcome
}

/// A `synthetic-noised` round (issue #15): the verified outputs are the
/// included clients' quantized sums plus one binomial sample each of
/// `SyntheticNoised::coins()` coins — within 8σ of the sums (a binomial
/// exceeds that with probability below 10⁻¹⁴) and not all equal to them
/// (probability below 10⁻⁹ over 16 elements for σ ≈ 4.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noised_round_releases_the_sum_plus_engine_noise() {
    use sealroom_node::tasks::{SYNTHETIC_NOISED, SyntheticNoised};
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path(), 3).await;
    let len = 16;
    let outcome = completed_round(&fed, SYNTHETIC_NOISED, len).await;
    let mut sum = vec![0i128; len as usize];
    for &c in &outcome.included_clients {
        for (s, x) in sum
            .iter_mut()
            .zip(quantized(outcome.round_id, c, len as usize))
        {
            *s += x;
        }
    }
    let noise: Vec<i128> = outputs(&outcome.outputs)
        .iter()
        .zip(&sum)
        .map(|(o, s)| o - s)
        .collect();
    let sigma = (SyntheticNoised::coins() as f64).sqrt() / 2.0;
    assert!(
        noise.iter().all(|n| (*n as f64).abs() <= 8.0 * sigma),
        "noise {noise:?} beyond 8σ = {}",
        8.0 * sigma
    );
    assert!(noise.iter().any(|n| *n != 0), "no noise was added");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_round_releases_only_the_verified_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path(), 4).await;
    // Completed, only the verified maximum of the four clients released.
    let outcome = max_round(&fed, 8).await;
    assert_eq!(outcome.included_clients.len(), 4);
    assert!(
        outcome.values.is_empty() && outcome.sum.is_empty(),
        "no sum is released"
    );
    // A second round works too (on pool material if the first round's
    // top-up finished, else preprocessed inline).
    let next = max_round(&fed, 3).await;
    // Every node's audit chain verifies, and every role replays both rounds
    // from its archive (a helper's archive holds the engine's result as the
    // input that produced its answer).
    let configs = fed.configs.clone();
    fed.shutdown().await;
    for config in configs.values().filter(|c| c.role != Role::Admin) {
        let ctx = open_context(config, Metrics::new()).await.expect("opens");
        let entries = ctx.store.audit_entries(None).await.expect("reads");
        let (_, violations) = verify_chain(&entries);
        assert_eq!(violations, Vec::new(), "{}", config.name);
        for round in [outcome.round_id, next.round_id] {
            let report = replay_with(&ctx, round)
                .await
                .unwrap_or_else(|e| panic!("{} round {round}: {e}", config.name));
            assert!(report.steps > 0);
            assert_eq!(report.divergence, None, "{}: {report}", config.name);
            let engine_inputs = ctx
                .store
                .archived_steps(round)
                .await
                .expect("reads")
                .into_iter()
                .filter(|(_, s)| matches!(s.input, Some(ArchivedInput::Engine(_))))
                .count();
            let expected = usize::from(config.role == Role::Helper);
            assert_eq!(engine_inputs, expected, "{} round {round}", config.name);
        }
    }
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const HELPERS: [&str; 3] = ["helper-0", "helper-1", "helper-2"];

/// Waits (boundedly) until every helper has produced `batches` pool batches
/// in all (the top-ups run after a round, in the background).
async fn wait_for_pool(fed: &LocalFederation, batches: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for helper in HELPERS {
        loop {
            let produced = metric(
                &fed.metrics[helper].render(),
                "sealroom_engine_sessions_total{protocol=\"preprocessing\",outcome=\"completed\"",
            );
            assert!(produced <= batches, "{helper} produced {produced} batches");
            if produced == batches {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{helper} produced {produced} of {batches} batches in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An engine round of `synthetic-max` over `len` elements: completed, its
/// outputs exactly the plaintext maximum of the included clients' vectors.
async fn max_round(fed: &LocalFederation, len: u64) -> sealroom_node::grpc::pb::RoundOutcome {
    let outcome = completed_round(fed, SYNTHETIC_MAX, len).await;
    assert_eq!(
        outputs(&outcome.outputs),
        plaintext_max(outcome.round_id, &outcome.included_clients, len as usize)
    );
    outcome
}

fn rounds_by_source(fed: &LocalFederation, helper: &str) -> (u64, u64) {
    let text = fed.metrics[helper].render();
    (
        metric(&text, "sealroom_engine_rounds_total{source=\"inline\"}"),
        metric(&text, "sealroom_engine_rounds_total{source=\"pool\"}"),
    )
}

/// Counts of `kind` entries in `config`'s audit log, after verifying it.
async fn audit_kinds(config: &sealroom_node::config::NodeConfig, kinds: &[&str]) -> Vec<usize> {
    let ctx = open_context(config, Metrics::new()).await.expect("opens");
    let entries = ctx.store.audit_entries(None).await.expect("reads");
    let (_, violations) = verify_chain(&entries);
    assert_eq!(violations, Vec::new(), "{}", config.name);
    kinds
        .iter()
        .map(|k| entries.iter().filter(|e| e.kind == *k).count())
        .collect()
}

/// The first engine round preprocesses inline; afterwards the helpers
/// produce attested batches ahead (two rounds' worth), and the next rounds
/// run on them: each consumes one batch, the pool is topped up again, and
/// every batch's three attestations and every use are in each helper's
/// audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rounds_run_from_the_attested_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path(), 3).await;
    max_round(&fed, 5).await;
    for h in HELPERS {
        assert_eq!(rounds_by_source(&fed, h), (1, 0), "{h}: a young pool");
    }
    // Key epoch 1 agreed, two batches of the round's need produced.
    wait_for_pool(&fed, 2).await;
    max_round(&fed, 5).await;
    // One batch consumed, one left: one more is produced.
    wait_for_pool(&fed, 3).await;
    max_round(&fed, 5).await;
    wait_for_pool(&fed, 4).await;
    for h in HELPERS {
        assert_eq!(
            rounds_by_source(&fed, h),
            (1, 2),
            "{h}: rounds 2 and 3 from the pool"
        );
        let text = fed.metrics[h].render();
        assert!(
            metric(&text, "sealroom_engine_backlog{kind=\"triples\"}")
                >= 2 * metric(&text, "sealroom_engine_round_need{kind=\"triples\"}"),
            "{h}: two rounds ahead"
        );
    }
    let configs = fed.configs.clone();
    fed.shutdown().await;
    for h in HELPERS {
        let config = &configs[h];
        assert_eq!(
            audit_kinds(config, &["engine_batch", "engine_use"]).await,
            vec![3 * 4, 2],
            "{h}: four batches attested by all three, two consumed"
        );
        let ctx = open_context(config, Metrics::new()).await.expect("opens");
        let epochs = ctx
            .store
            .engine_key_epochs(sealroom_node::engine::ROUND_EPOCH_BASE)
            .await
            .expect("epochs");
        assert_eq!(
            epochs.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![1],
            "{h}"
        );
        assert_eq!(
            ctx.store.engine_available(1).await.expect("pool").len(),
            2,
            "{h}: two batches left for the next rounds"
        );
    }
}

/// With a one-second key epoch, every round after the first still runs on
/// the pool, and the top-up after it agrees a new epoch, retires the old one
/// (its unused batch expires) and produces under the new keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_key_epoch_rotates_and_old_material_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        federation_id: "engine-rotation".into(),
        engine_key_epoch_s: 1,
        ..InitOptions::default()
    };
    let fed = federation_with(dir.path(), options).await;
    max_round(&fed, 4).await;
    wait_for_pool(&fed, 2).await;
    for expected in [4, 6] {
        // Older than its one-second lifetime when the next round opens.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        max_round(&fed, 4).await;
        wait_for_pool(&fed, expected).await;
    }
    for h in HELPERS {
        assert_eq!(rounds_by_source(&fed, h), (1, 2), "{h}");
    }
    let configs = fed.configs.clone();
    fed.shutdown().await;
    for h in HELPERS {
        let config = &configs[h];
        let ctx = open_context(config, Metrics::new()).await.expect("opens");
        let store = &ctx.store;
        let base = sealroom_node::engine::ROUND_EPOCH_BASE;
        let epochs = store.engine_key_epochs(base).await.expect("epochs");
        assert_eq!(
            epochs.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![3],
            "{h}"
        );
        assert_eq!(store.engine_highest_epoch(base).await.expect("highest"), 3);
        for retired in [1, 2] {
            assert!(
                store.engine_keys(retired).await.expect("keys").is_none(),
                "{h}: epoch {retired}'s keys are deleted"
            );
            assert!(
                store
                    .engine_available(retired)
                    .await
                    .expect("pool")
                    .is_empty(),
                "{h}: epoch {retired}'s unused batch expired"
            );
        }
        assert_eq!(
            store.engine_available(3).await.expect("pool").len(),
            2,
            "{h}"
        );
        drop(ctx);
        assert_eq!(
            audit_kinds(config, &["engine_batch", "engine_use"]).await,
            vec![3 * 6, 2],
            "{h}"
        );
    }
}
