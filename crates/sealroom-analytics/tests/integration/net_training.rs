//! Federated learning over real nodes: a coordinator, helpers and clients on
//! 127.0.0.1 with mutual TLS, each FedAvg round a secure-aggregation round.
//! Every round's secure model must equal a plaintext FedAvg of the very same
//! quantized updates, bit for bit — with every client, and with one dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, RobustAggregation, TrainConfig};
use sealroom_analytics::training::{
    FEDAVG_TASK, SplitSpec, Trainer, TrainingData, TrainingInput, TrainingPlan, UpdateTap,
    register_tasks,
};
use sealroom_mpc::krum::{KrumParams, multi_krum_plain};
use sealroom_mpc::robust::{ClipBounds, clipped_weighted_sum_plain, trimmed_sum_plain};
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputSource, TaskCatalog};

const CLIENTS: usize = 4;

fn plan(model: ModelKind, bits: u8, error_feedback: bool) -> TrainingPlan {
    TrainingPlan {
        l2_bound: None,
        linf_bound: None,
        robust: None,
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
    start_with(threshold, tap, false).await
}

/// A client that trains honestly, then replaces its update by one that
/// claims weight 1 and moves every parameter by ±`.1` delta clips (a
/// scaled model-replacement update, bypassing the encoder's clipping: a
/// malicious client shares whatever it likes). With `.1` half the honest
/// clients' total weight, the sum stays within what the driver's
/// consistency check accepts and the model moves by about half the clip
/// per parameter each round.
struct Replacer(TrainingInput, f64);

impl InputSource for Replacer {
    fn input(
        &self,
        descriptor: &sealroom_protocol::VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        let honest = self.0.input(descriptor)?;
        if descriptor.task_name() != FEDAVG_TASK {
            return Ok(honest);
        }
        let p: sealroom_analytics::training::FedAvgParams =
            serde_json::from_slice(descriptor.task_params()).expect("FedAvg parameters");
        Ok(evil_update(&p.fedavg, honest.len() - 1, self.1))
    }
}

/// The replacement update for `n` parameters: `±scale` delta clips per
/// parameter, weight 1.
fn evil_update(fedavg: &FedAvgSpec, n: usize, scale: f64) -> Vec<f64> {
    // One delta quantum is one wire step; the delta clip is its max_abs.
    let step = fedavg.wire_spec().expect("wire spec").step();
    let clip_quanta = fedavg.delta_spec().expect("delta spec").max_abs() as f64;
    let shift = scale * clip_quanta * step;
    let mut evil: Vec<f64> = (0..n)
        .map(|j| if j % 2 == 0 { shift } else { -shift })
        .collect();
    evil.push(step);
    evil
}

/// The honest clients' total weight (their training rows: the split is
/// public and deterministic).
fn honest_weight() -> f64 {
    let split = plan(ModelKind::Logistic, 12, false).split;
    (0..CLIENTS - 1)
        .map(|i| split.client_part(i, CLIENTS).expect("part").x.nrows() as f64)
        .sum()
}

async fn start_with(
    threshold: Option<usize>,
    tap: &UpdateTap,
    last_replaces: bool,
) -> (tempfile::TempDir, LocalFederation) {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let honest_weight = honest_weight();
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
            let input = TrainingInput::new(format!("client-{i}"), tables).with_tap(tap.clone());
            if last_replaces && i == CLIENTS - 1 {
                Arc::new(Replacer(input, honest_weight / 2.0)) as Arc<dyn InputSource>
            } else {
                Arc::new(input) as Arc<dyn InputSource>
            }
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

async fn rounds_match_plaintext(
    threshold: Option<usize>,
    model: ModelKind,
    bits: u8,
    max_weight: u32,
) {
    let tap = UpdateTap::default();
    let (_dir, mut fed) = start(threshold, &tap).await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("client-{i}")).collect();
    let mut plan = plan(model, bits, true);
    plan.fedavg.max_weight = max_weight;
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
    rounds_match_plaintext(None, ModelKind::Logistic, 12, 4096).await;
}

/// Bandwidth below plaintext (issue #17): 8-bit deltas with uniform weights
/// are summed from shares narrowed to 10 bits (4 clients × 127 fits 10
/// signed bits; the coordinator picks the width, docs/protocol.md "Narrow
/// shares"), and the model is still plaintext FedAvg bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_8_bit_fedavg_is_bit_identical_to_plaintext() {
    let spec = FedAvgSpec {
        bits: 8,
        delta_clip: 1.0,
        max_weight: 1,
    };
    let encoding = spec
        .round_encoding(sealroom_core::RingKind::Z2_32, CLIENTS as u64)
        .expect("fits");
    assert_eq!(encoding.narrowest().share_bits(), Some(10));
    rounds_match_plaintext(None, ModelKind::Logistic, 8, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_mlp_fedavg_is_bit_identical_to_plaintext_with_a_dropout() {
    rounds_match_plaintext(Some(2), ModelKind::Mlp { hidden: 8 }, 8, 4096).await;
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

/// Input validity (issue #15) over real nodes: one client of four sends a
/// model-replacement update. Without a bound it wrecks the global model;
/// with `l2_bound` the helpers leave it out inside the engine, the report
/// names it, and the new model is exactly the plaintext FedAvg of the three
/// honest updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_replacement_update_is_left_out_inside_the_engine() {
    let tap = UpdateTap::default();
    let (_dir, fed) = start_with(None, &tap, true).await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("client-{i}")).collect();
    let honest = &names[..CLIENTS - 1];

    let mut open = plan(ModelKind::Logistic, 12, false);
    open.rounds = 1;
    let mut trainer = Trainer::start(&fed, &open, &names).await.expect("moments");
    let (initial, _) = trainer.initial();
    let start = trainer.global().clone();
    let poisoned = trainer.round(&fed, None).await.expect("a sum round");
    assert_eq!(poisoned.included, names);
    assert!(poisoned.rejected.is_empty());
    let updates = tap.take(poisoned.round_id, honest).expect("honest updates");
    let honest_only = sealroom_analytics::fl::plaintext_fedavg(&open.fedavg, &start, &updates)
        .expect("plaintext FedAvg");
    let moved = honest_only
        .params()
        .iter()
        .zip(trainer.global().params())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 0.1,
        "without a bound the replacement moves the model (by {moved} at most per parameter)"
    );

    // An L2 bound, an L∞ bound, both: the update is left out, the report
    // names each bound it failed, and the new model is exactly the honest
    // clients' plaintext FedAvg.
    for (l2, linf, failed) in [
        (Some(10.0), None, vec!["l2"]),
        (None, Some(1.0), vec!["linf"]),
        (Some(10.0), Some(1.0), vec!["l2", "linf"]),
    ] {
        let mut bounded = open.clone();
        bounded.l2_bound = l2;
        bounded.linf_bound = linf;
        let mut trainer = Trainer::start(&fed, &bounded, &names)
            .await
            .expect("moments");
        let before = trainer.global().clone();
        let round = trainer.round(&fed, None).await.expect("an engine round");
        assert_eq!(round.included, names, "the attacker uploaded");
        assert_eq!(round.rejected, vec![names[CLIENTS - 1].clone()]);
        assert_eq!(
            round.rejected_checks[&names[CLIENTS - 1]],
            failed,
            "the report says which bound the update failed"
        );
        let updates = tap.take(round.round_id, honest).expect("honest updates");
        let twin = sealroom_analytics::fl::plaintext_fedavg(&bounded.fedavg, &before, &updates)
            .expect("plaintext FedAvg");
        assert!(
            twin.params()
                .iter()
                .zip(trainer.global().params())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "l2 {l2:?}, linf {linf:?}: the model is the honest clients' FedAvg, bit for bit"
        );
        eprintln!(
            "l2 {l2:?}, linf {linf:?}: test accuracy after one round {} (without a bound {}, initial {initial})",
            round.accuracy, poisoned.accuracy
        );
    }

    // Robust aggregation inside the engine, against the plaintext twin of
    // the same integers (the honest clients' tapped uploads and the
    // attacker's known one): clipping with the attacker below the hard
    // bound (scaled down to the clip norm), clipping with it above (left
    // out, "l2"), the trimmed mean (its values trimmed) and multi-Krum (it
    // is never selected).
    let wire = open.fedavg.wire_spec().expect("wire spec");
    let n_params = trainer.global().n_params();
    let evil = wire
        .quantize(&evil_update(&open.fedavg, n_params, honest_weight() / 2.0))
        .expect("on the grid")
        .values
        .clone();
    let evil_norm = evil[..n_params]
        .iter()
        .map(|&q| (q as f64 * wire.step()).powi(2))
        .sum::<f64>()
        .sqrt();
    for (robust, l2, attacker_kept) in [
        (
            RobustAggregation::Clip { norm: 0.1 },
            Some(evil_norm * 1.01),
            true,
        ),
        (
            RobustAggregation::Clip { norm: 0.1 },
            Some(evil_norm * 0.99),
            false,
        ),
        (RobustAggregation::TrimmedMean { beta: 0.25 }, None, true),
        (
            RobustAggregation::MultiKrum {
                byzantine: 0,
                selected: 3,
            },
            Some(evil_norm * 1.01),
            true,
        ),
    ] {
        let mut robust_plan = open.clone();
        robust_plan.robust = Some(robust);
        robust_plan.l2_bound = l2;
        let mut trainer = Trainer::start(&fed, &robust_plan, &names)
            .await
            .expect("moments");
        let before = trainer.global().clone();
        let round = trainer.round(&fed, None).await.expect("a robust round");
        assert_eq!(round.included, names, "{robust}: the attacker uploaded");
        let updates = tap.take(round.round_id, honest).expect("honest updates");
        let mut ints = sealroom_analytics::fl::wire_integers(&open.fedavg, n_params, &updates)
            .expect("wire integers")
            .to_vec();
        ints.push(evil.clone());
        let (numer, denom) = match robust {
            RobustAggregation::Clip { norm } => {
                assert_eq!(
                    round.rejected.is_empty(),
                    attacker_kept,
                    "{robust}, l2 {l2:?}"
                );
                if !attacker_kept {
                    assert_eq!(round.rejected_checks[&names[CLIENTS - 1]], vec!["l2"]);
                }
                let q = |b: f64| ((b / wire.step()).powi(2)).floor() as u128;
                let bounds = ClipBounds {
                    clip_sq: q(norm),
                    l2_sq: q(l2.expect("a hard bound")),
                    linf_sq: None,
                    max_weight: open.fedavg.max_weight,
                };
                let (mut out, verdicts, _) = clipped_weighted_sum_plain(&ints, &bounds);
                assert_eq!(verdicts, vec![true, true, true, attacker_kept]);
                let w = out.pop().expect("the weight") as u128;
                (out, w << 16)
            }
            RobustAggregation::MultiKrum { selected, .. } => {
                let q = |b: f64| ((b / wire.step()).powi(2)).floor() as u128;
                let params = KrumParams {
                    byzantine: 0,
                    selected,
                    l2_sq: q(l2.expect("a hard bound")),
                };
                let (sums, _, chosen) = multi_krum_plain(&ints, &params);
                assert_eq!(chosen, vec![0, 1, 2], "the attacker is never selected");
                (sums, selected as u128)
            }
            _ => (trimmed_sum_plain(&ints, n_params, 1), 2),
        };
        let twin =
            sealroom_analytics::fl::apply_robust_to(&open.fedavg, before.params(), &numer, denom)
                .expect("twin");
        assert!(
            twin.iter()
                .zip(trainer.global().params())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{robust}, l2 {l2:?}: the model is the plaintext twin's, bit for bit"
        );
        eprintln!(
            "{robust}, l2 {l2:?}: test accuracy after one round {} (without a defence {}, initial {initial})",
            round.accuracy, poisoned.accuracy
        );
    }
    fed.shutdown().await;
}
