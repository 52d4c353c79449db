//! The in-process FedAvg simulation: it learns, it is reproducible, and the
//! quantized mode tracks unquantized FedAvg.

use sealroom_analytics::fl::{
    Aggregation, DatasetKind, FedAvgSpec, FlError, ModelKind, Setting, SimConfig, SimReport,
    centralized, simulate,
};

fn quick(dataset: DatasetKind, model: ModelKind) -> SimConfig {
    SimConfig {
        rounds: 8,
        n_clients: 5,
        ..SimConfig::new(dataset, model)
    }
}

fn quantized(bits: u8, error_feedback: bool) -> Aggregation {
    Aggregation::Quantized {
        spec: FedAvgSpec {
            bits,
            delta_clip: 0.25,
            max_weight: 4096,
        },
        error_feedback,
    }
}

fn accuracies(report: &SimReport) -> Vec<u64> {
    report
        .rounds
        .iter()
        .map(|r| r.test_accuracy.to_bits())
        .collect()
}

#[test]
fn federated_iris_learns_under_label_skew() {
    for model in [ModelKind::Logistic, ModelKind::Mlp { hidden: 8 }] {
        let config = SimConfig {
            aggregation: quantized(12, true),
            ..quick(DatasetKind::Iris, model)
        };
        let report = simulate(&config).unwrap();
        assert_eq!(report.setting, Setting::Federated);
        assert_eq!(report.rounds.len(), 8);
        assert_eq!(report.client_rows.iter().sum::<usize>(), report.train_rows);
        assert!(report.label_skew > 0.1, "non-IID: {}", report.label_skew);
        // Chance is 1/3.
        assert!(
            report.final_accuracy() >= 0.8,
            "{model}: {:?}",
            report.rounds
        );
        let first = report.rounds[0].test_loss;
        let last = report.rounds[7].test_loss;
        assert!(last < first, "{model}: loss {first} -> {last}");
    }
}

#[test]
fn simulation_is_reproducible() {
    let config = SimConfig {
        aggregation: quantized(8, true),
        ..quick(DatasetKind::Wine, ModelKind::Logistic)
    };
    let a = simulate(&config).unwrap();
    let b = simulate(&config).unwrap();
    assert_eq!(accuracies(&a), accuracies(&b));
    assert_eq!(a, b);
    let other = simulate(&SimConfig { seed: 7, ..config }).unwrap();
    assert_ne!(a.client_rows, other.client_rows);
    // Reports serialize (for the benchmark and sweep tools).
    let json = serde_json::to_string(&a).unwrap();
    assert!(json.contains("\"test_accuracy\""));
}

#[test]
fn sixteen_bit_fedavg_tracks_unquantized_fedavg() {
    let base = quick(DatasetKind::Wine, ModelKind::Logistic);
    let plain = simulate(&base).unwrap();
    let fine = simulate(&SimConfig {
        aggregation: quantized(16, false),
        ..base
    })
    .unwrap();
    for (p, q) in plain.rounds.iter().zip(&fine.rounds) {
        assert!(
            (p.test_accuracy - q.test_accuracy).abs() <= 0.02,
            "round {}: {} vs {}",
            p.round,
            p.test_accuracy,
            q.test_accuracy
        );
    }
    let majority = 0.43;
    assert!(
        plain.final_accuracy() > majority + 0.08,
        "{}",
        plain.final_accuracy()
    );
}

#[test]
fn centralized_baseline_learns() {
    let config = quick(DatasetKind::Wine, ModelKind::Logistic);
    let report = centralized(&config).unwrap();
    assert_eq!(report.setting, Setting::Centralized);
    assert_eq!(report.client_rows, vec![report.train_rows]);
    assert!(
        report.final_accuracy() > 0.52,
        "{}",
        report.final_accuracy()
    );
    assert_eq!(report.total_clipped(), 0);
}

#[test]
fn bad_settings_are_refused() {
    let base = quick(DatasetKind::Iris, ModelKind::Logistic);
    assert!(matches!(
        simulate(&SimConfig { rounds: 0, ..base }),
        Err(FlError::InvalidParameter { name: "rounds", .. })
    ));
    assert!(matches!(
        simulate(&SimConfig {
            n_clients: 20,
            min_rows: 10,
            ..base
        }),
        Err(FlError::NotEnoughRows { .. })
    ));
    assert!(
        simulate(&SimConfig {
            aggregation: quantized(60, false),
            ..base
        })
        .is_err()
    );
}
