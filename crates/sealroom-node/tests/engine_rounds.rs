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
    let options = InitOptions {
        helpers: 3,
        clients,
        federation_id: "engine-rounds".into(),
        ..InitOptions::default()
    };
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

/// The plaintext twin: the element-wise maximum of the included clients'
/// quantized synthetic vectors.
fn plaintext_max(round: u64, included: &[u32], len: usize) -> Vec<i128> {
    let spec = SyntheticMax::spec();
    let mut max = vec![i128::MIN; len];
    for &c in included {
        let v = synthetic_vector(&format!("client-{c}"), round, len, spec.clip());
        let q = spec.quantize(&v).expect("finite");
        for (m, x) in max.iter_mut().zip(&q.values) {
            *m = (*m).max(i128::from(*x));
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_round_releases_only_the_verified_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path(), 4).await;
    let len = 8;
    let outcome = tokio::time::timeout(DEADLINE, fed.run_round(SYNTHETIC_MAX, len))
        .await
        .expect("round finishes in time")
        .expect("round runs");
    assert_eq!(
        outcome.status, "completed",
        "{}: {}",
        outcome.reason, outcome.detail
    );
    assert_eq!(outcome.included_clients.len(), 4);
    assert!(
        outcome.values.is_empty() && outcome.sum.is_empty(),
        "no sum is released"
    );
    let got = outputs(&outcome.outputs);
    assert_eq!(
        got,
        plaintext_max(outcome.round_id, &outcome.included_clients, len as usize)
    );
    // A second round works too (fresh epoch, fresh material).
    let next = tokio::time::timeout(DEADLINE, fed.run_round(SYNTHETIC_MAX, 3))
        .await
        .expect("second round in time")
        .expect("second round runs");
    assert_eq!(next.status, "completed", "{}", next.detail);
    assert_eq!(
        outputs(&next.outputs),
        plaintext_max(next.round_id, &next.included_clients, 3)
    );
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
