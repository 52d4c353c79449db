//! DP-FedAvg over real nodes (issue #15): coordinator, 3 helpers, 3 clients
//! on 127.0.0.1 with mutual TLS, each client with a durable privacy ledger.
//! A DP table training runs no moments or validation round, charges every
//! round to every client's budget before it shares, releases the clipped
//! sum plus binomial noise from the engine (checked against the plaintext
//! lattice values of the same uploads), and a training beyond a client's
//! budget is refused by the clients; under `require_dp` a training without
//! `dp` is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sealroom_analytics::budget::{Budget, ClientPrivacy, Ledger, PrivacyLedger};
use sealroom_analytics::query::DataSource;
use sealroom_analytics::service::catalog;
use sealroom_analytics::table_training::{self, RoundDp, TableTrainingInput};
use sealroom_analytics::train_spec::TrainingSpec;
use sealroom_analytics::training::TrainingError;
use sealroom_mpc::dp_fedavg::dp_clipped_sum_plain;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::InputSource;

use super::net_table_training::{first_round_uploads, rows, write_csv};

/// Each client's budget for the table.
const BUDGET_EPSILON: f64 = 45.0;

fn privacy(dir: &Path, client: usize, require_dp: bool) -> ClientPrivacy {
    ClientPrivacy {
        ledger: dir.join(format!("ledger-{client}.db")),
        budgets: BTreeMap::from([(
            "patients".to_string(),
            Budget::new(BUDGET_EPSILON, 1e-3).expect("budget"),
        )]),
        require_dp,
    }
}

struct Setup {
    dir: tempfile::TempDir,
    fed: LocalFederation,
    sources: Vec<DataSource>,
    names: Vec<String>,
}

async fn setup(require_dp: bool) -> Setup {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sources = Vec::new();
    for (i, seed) in [21u64, 22, 23].into_iter().enumerate() {
        let path = dir.path().join(format!("site-{i}.csv"));
        write_csv(&path, &rows(120, seed));
        sources.push(DataSource::Csv { path });
    }
    let inputs: Vec<Arc<dyn InputSource>> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let tables = BTreeMap::from([("patients".to_string(), source.clone())]);
            let ledger = Arc::new(PrivacyLedger::new(privacy(dir.path(), i, require_dp)));
            Arc::new(TableTrainingInput::new(format!("client-{i}"), tables).with_ledger(ledger))
                as Arc<dyn InputSource>
        })
        .collect();
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        min_clients: Some(2),
        upload_window_ms: 3000,
        aggregation_window_ms: 6000,
        ..InitOptions::default()
    };
    let (fed, _events) =
        LocalFederation::start(&dir.path().join("fed"), options, catalog(), inputs)
            .await
            .expect("federation starts");
    Setup {
        dir,
        fed,
        sources,
        names: (0..3).map(|i| format!("client-{i}")).collect(),
    }
}

/// 3 rounds of ε 10 and δ 10⁻⁵ each; public standardization (roughly the
/// generator's: no moments round runs under DP).
fn dp_spec() -> TrainingSpec {
    TrainingSpec::parse(
        r#"{"table": "patients", "label": "outcome", "features": ["age", "dose", "score"],
            "classes": ["healthy", "sick"], "model": "logistic", "rounds": 3,
            "validation": {"fraction": 0.0},
            "train": {"learning_rate": 0.2, "epochs": 1, "batch_size": 16, "l2": 0.0, "seed": 5},
            "dp": {"epsilon": 30.0, "delta": 3e-5, "clip_norm": 1.0,
                   "mean": [50.0, 2.0, 300.0], "std": [12.0, 1.0, 80.0]}}"#,
        "dp spec",
    )
    .expect("valid spec")
}

async fn spend(dir: &Path, client: usize) -> (f64, u64) {
    let ledger = Ledger::open(&privacy(dir, client, false).ledger)
        .await
        .expect("ledger");
    let spent = ledger.spent().await.expect("spent");
    let releases = ledger.releases(Some("patients")).await.expect("releases");
    ledger.close().await;
    assert!(
        releases
            .iter()
            .all(|r| r.mechanism == table_training::DP_FEDAVG_MECHANISM)
    );
    spent.first().map_or((0.0, 0), |s| (s.epsilon, s.releases))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dp_training_is_charged_noised_inside_the_engine_and_refused_over_budget() {
    let s = setup(false).await;
    let spec = dp_spec();
    let report = table_training::train(&s.fed, &spec, &s.names, None, |_| {})
        .await
        .expect("a DP training runs");
    assert_eq!(report.rounds.len(), 3);
    assert_eq!(report.moments_round_id, 0, "no moments round under DP");
    assert_eq!(report.training_rows, 0, "the row count is not released");
    for r in &report.rounds {
        assert_eq!(r.included, s.names, "round {}", r.round);
        assert!(r.validation.is_none() && r.rejected.is_empty());
    }
    // Every client charged every round, ε 10 each, before it shared.
    for c in 0..3 {
        let (epsilon, releases) = spend(s.dir.path(), c).await;
        assert_eq!(releases, 3, "client {c}");
        assert!((epsilon - 30.0).abs() < 1e-9, "client {c}: ε {epsilon}");
    }

    // Round 1's released sum is the plaintext lattice value of the same
    // uploads (recomputed from the signed parameters) plus one binomial
    // sample per parameter: within the noise's support and within 7σ (a
    // binomial exceeds that with probability below 10⁻¹¹ per parameter),
    // and not all zero (probability below 10⁻⁵ for these coins).
    let fedavg = spec.quantization.fedavg();
    let n_params = report.n_params;
    let round = RoundDp::calibrate(&fedavg, n_params, 10.0, 1e-5, 1.0).expect("calibrates");
    let uploads = first_round_uploads(&spec, &report, Some(round), &s.sources, &s.names);
    let step = fedavg.wire_spec().expect("wire spec").step();
    let dp = sealroom_mpc::dp_fedavg::DpClip {
        clip_sq: (1.0 / fedavg.delta_spec().expect("delta spec").step())
            .powi(2)
            .floor() as u128,
        shift: round.shift,
        coins: round.coins,
    };
    let lattice = dp_clipped_sum_plain(&uploads, &dp);
    let sums = &report.sums[0];
    assert_eq!(sums.len(), n_params + 1);
    assert_eq!(sums[n_params], 3.0 * step, "the denominator: three clients");
    let sigma = f64::from(round.coins).sqrt() / 2.0;
    let noise: Vec<f64> = lattice
        .iter()
        .zip(sums)
        .map(|(&t, &s)| s / step / 2f64.powi(round.shift as i32) - t as f64)
        .collect();
    for (j, n) in noise.iter().enumerate() {
        assert_eq!(n.fract(), 0.0, "parameter {j}: noise {n} is an integer");
        assert!(
            n.abs() <= 7.0 * sigma,
            "parameter {j}: noise {n} vs σ {sigma}"
        );
    }
    assert!(noise.iter().any(|&n| n != 0.0), "the release carries noise");

    // A second training of three rounds: its first round fits the budget
    // (40 of 45), its second does not (50): every client refuses it before
    // sharing, the round aborts saying why, and nothing more is charged.
    let refused = table_training::train(&s.fed, &spec, &s.names, None, |_| {})
        .await
        .expect_err("over budget");
    match &refused {
        TrainingError::Aborted { detail, .. } => {
            assert!(detail.contains("privacy budget exhausted"), "{detail}")
        }
        other => panic!("an over-budget round ran or failed otherwise: {other:?}"),
    }
    for c in 0..3 {
        let (epsilon, releases) = spend(s.dir.path(), c).await;
        assert_eq!(releases, 4, "client {c}");
        assert!((epsilon - 40.0).abs() < 1e-9, "client {c}: ε {epsilon}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_require_dp_a_training_without_dp_is_refused() {
    let s = setup(true).await;
    let plain = TrainingSpec::parse(
        r#"{"table": "patients", "label": "outcome", "features": ["age", "dose", "score"],
            "classes": ["healthy", "sick"], "model": "logistic", "rounds": 1}"#,
        "plain spec",
    )
    .expect("valid spec");
    let err = table_training::train(&s.fed, &plain, &s.names, None, |_| {})
        .await
        .expect_err("refused under require_dp");
    assert!(err.to_string().contains("require_dp"), "{err}");
    for c in 0..3 {
        assert_eq!(spend(s.dir.path(), c).await, (0.0, 0), "client {c}");
    }
}
