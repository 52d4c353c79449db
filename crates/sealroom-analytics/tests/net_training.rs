//! Federated learning over real nodes: a coordinator, helpers and clients on
//! 127.0.0.1 with mutual TLS, each FedAvg round a secure-aggregation round.
//! Every round's secure model must equal a plaintext FedAvg of the very same
//! quantized updates, bit for bit — with every client, and with one dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, TrainConfig};
use sealroom_analytics::training::{
    SplitSpec, Trainer, TrainingData, TrainingInput, TrainingPlan, UpdateTap, register_tasks,
};
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputSource, TaskCatalog};

const CLIENTS: usize = 4;

fn plan(model: ModelKind, bits: u8, error_feedback: bool) -> TrainingPlan {
    TrainingPlan {
        table: "wine".into(),
        split: SplitSpec {
            dataset: DatasetKind::Wine,
            test_fraction: 0.25,
            alpha: 0.5,
            min_rows: 10,
            seed: 7,
        },
        model,
        rounds: 2,
        train: TrainConfig {
            learning_rate: 0.05,
            epochs: 1,
            batch_size: 16,
            l2: 1e-4,
            seed: 1,
        },
        fedavg: FedAvgSpec {
            bits,
            delta_clip: 1.0,
            max_weight: 4096,
        },
        error_feedback,
        init_seed: 3,
        clients: Vec::new(),
    }
}

async fn start(threshold: Option<usize>, tap: &UpdateTap) -> (tempfile::TempDir, LocalFederation) {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs: Vec<Arc<dyn InputSource>> = (0..CLIENTS)
        .map(|i| {
            let tables = BTreeMap::from([(
                "wine".to_string(),
                TrainingData {
                    dataset: DatasetKind::Wine,
                    part: i,
                    parts: CLIENTS,
                },
            )]);
            Arc::new(TrainingInput::new(format!("client-{i}"), tables).with_tap(tap.clone()))
                as Arc<dyn InputSource>
        })
        .collect();
    let mut catalog = TaskCatalog::with_builtins();
    register_tasks(&mut catalog);
    let options = InitOptions {
        helpers: 3,
        clients: CLIENTS,
        threshold,
        min_clients: Some(2),
        upload_window_ms: 1500,
        aggregation_window_ms: 4000,
        ..InitOptions::default()
    };
    let (fed, _events) = LocalFederation::start(dir.path(), options, catalog, inputs)
        .await
        .expect("federation starts");
    (dir, fed)
}

async fn rounds_match_plaintext(threshold: Option<usize>, model: ModelKind, bits: u8) {
    let tap = UpdateTap::default();
    let (_dir, mut fed) = start(threshold, &tap).await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("client-{i}")).collect();
    let plan = plan(model, bits, true);
    let mut trainer = Trainer::start(&fed, &plan, &names)
        .await
        .expect("moments round");
    let (initial_accuracy, _) = trainer.initial();

    let first = trainer.round(&fed, Some(&tap)).await.expect("round 1");
    assert_eq!(first.included, names, "every client is included");
    assert_eq!(
        first.plaintext_identical,
        Some(true),
        "round 1 bit-identical"
    );
    assert!(first.total_weight > 0);

    // Client 3 drops out: the next round proceeds without it.
    fed.stop_client(CLIENTS - 1).await;
    let second = trainer.round(&fed, Some(&tap)).await.expect("round 2");
    assert_eq!(second.included, names[..CLIENTS - 1].to_vec());
    assert_eq!(
        second.plaintext_identical,
        Some(true),
        "round 2 bit-identical"
    );
    assert!(second.total_weight < first.total_weight);
    assert!(
        second.accuracy > initial_accuracy,
        "training moved the model: {initial_accuracy} -> {}",
        second.accuracy
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additive_fedavg_is_bit_identical_to_plaintext_with_a_dropout() {
    rounds_match_plaintext(None, ModelKind::Logistic, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_mlp_fedavg_is_bit_identical_to_plaintext_with_a_dropout() {
    rounds_match_plaintext(Some(2), ModelKind::Mlp { hidden: 8 }, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_table_sits_out_and_min_clients_holds() {
    let tap = UpdateTap::default();
    let (_dir, fed) = start(None, &tap).await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("client-{i}")).collect();
    let mut plan = plan(ModelKind::Logistic, 12, false);
    plan.table = "no-such-table".into();
    let err = Trainer::start(&fed, &plan, &names)
        .await
        .expect_err("no client has the table");
    let text = err.to_string();
    assert!(text.contains("aborted"), "{text}");
    assert!(text.contains("not_enough_clients"), "{text}");
    fed.shutdown().await;
}
