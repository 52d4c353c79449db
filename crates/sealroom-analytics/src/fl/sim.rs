//! In-process FedAvg simulation over a non-IID split, and the centralized
//! baseline it is compared with. Pure: no I/O, no threads, no clock.
//!
//! The quantized mode runs exactly what a secure deployment computes
//! ([`encode_update`] at each client, [`plaintext_fedavg`] for the sum), so
//! its accuracy is the accuracy a secure run would reach, bit for bit.
//! Features are standardized with a [`Standardizer`] built from the sum of
//! every client's [`FeatureMoments`] — the statistics a secure sum would
//! deliver — never from pooled rows.

use ndarray::Array2;
use sealroom_core::quant::ErrorFeedback;
use serde::{Deserialize, Serialize};

use super::FlError;
use super::data::{Dataset, DatasetKind, FeatureMoments, Standardizer, load, train_test_split};
use super::fedavg::{FedAvgSpec, encode_update, plaintext_fedavg, unquantized_fedavg};
use super::model::{Model, ModelKind, TrainConfig};
use super::split::{derive_seed, dirichlet_split};

/// How the clients' updates are combined each round.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Aggregation {
    /// Unquantized FedAvg in `f64` with uncapped weights: the reference a
    /// quantized round approximates.
    Plain,
    /// Quantized deltas through the secure-aggregation encoding.
    Quantized {
        /// Bits, clip and weight cap.
        spec: FedAvgSpec,
        /// Whether each client carries its quantization residual into the
        /// next round.
        error_feedback: bool,
    },
}

/// One simulation's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The public data set.
    pub dataset: DatasetKind,
    /// The model trained.
    pub model: ModelKind,
    /// Clients (silos) the training split is partitioned across.
    pub n_clients: usize,
    /// FedAvg rounds (at least 1); every client takes part in every round.
    pub rounds: usize,
    /// Each client's local training per round; its `seed` is combined with
    /// the simulation seed, the round and the client index.
    pub local: TrainConfig,
    /// How updates are combined.
    pub aggregation: Aggregation,
    /// Dirichlet concentration of the label skew (small = more non-IID).
    pub alpha: f64,
    /// Fewest training rows per client (see [`super::dirichlet_split`]).
    pub min_rows: usize,
    /// Fraction of each class held out for testing.
    pub test_fraction: f64,
    /// Standardize features from the pooled moments.
    pub standardize: bool,
    /// Seed of the public random choices: split, partition, initialization.
    pub seed: u64,
}

impl SimConfig {
    /// Settings that train well on the bundled data: 10 clients, α = 0.5,
    /// 30 rounds of one local epoch (batch 16, learning rate 0.05, L2 1e-4),
    /// unquantized FedAvg, 25% of each class held out, standardized features.
    pub fn new(dataset: DatasetKind, model: ModelKind) -> SimConfig {
        SimConfig {
            dataset,
            model,
            n_clients: 10,
            rounds: 30,
            local: TrainConfig {
                learning_rate: 0.05,
                epochs: 1,
                batch_size: 16,
                l2: 1e-4,
                seed: 0,
            },
            aggregation: Aggregation::Plain,
            alpha: 0.5,
            min_rows: 10,
            test_fraction: 0.25,
            standardize: true,
            seed: 42,
        }
    }
}

/// Whether a report comes from federated or pooled training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// FedAvg across the clients ([`simulate`]).
    Federated,
    /// One model on the pooled training split ([`centralized`]).
    Centralized,
}

/// The state after one round.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RoundReport {
    /// Round number, from 1.
    pub round: usize,
    /// Accuracy of the global model on the test split.
    pub test_accuracy: f64,
    /// Mean cross-entropy of the global model on the test split.
    pub test_loss: f64,
    /// Delta values clipped this round, summed over clients.
    pub clipped: usize,
    /// Clients whose weight was capped at `max_weight` this round.
    pub weights_capped: usize,
}

/// What a simulation measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// The settings run.
    pub config: SimConfig,
    /// Federated or centralized.
    pub setting: Setting,
    /// Model parameters (the wire vector has one more value).
    pub n_params: usize,
    /// Rows in the training split.
    pub train_rows: usize,
    /// Rows in the test split.
    pub test_rows: usize,
    /// Training rows per client (one entry when centralized).
    pub client_rows: Vec<usize>,
    /// Mean total-variation distance between each client's label
    /// distribution and the pooled one: 0 for IID, near 1 when each client
    /// holds a single class.
    pub label_skew: f64,
    /// Test metrics of the initial model.
    pub initial_accuracy: f64,
    /// One entry per round.
    pub rounds: Vec<RoundReport>,
}

impl SimReport {
    /// Test accuracy after the last round.
    pub fn final_accuracy(&self) -> f64 {
        self.rounds
            .last()
            .map_or(self.initial_accuracy, |r| r.test_accuracy)
    }

    /// Delta values clipped over all rounds and clients.
    pub fn total_clipped(&self) -> usize {
        self.rounds.iter().map(|r| r.clipped).sum()
    }
}

/// Runs FedAvg in process: split, partition non-IID, standardize from the
/// summed moments, then `rounds` rounds in which every client trains
/// locally from the global model and the updates are aggregated as
/// `config.aggregation` says.
pub fn simulate(config: &SimConfig) -> Result<SimReport, FlError> {
    let prepared = prepare(config)?;
    let Prepared { clients, test, .. } = &prepared;
    let mut global = initial_model(config, test)?;
    let initial_accuracy = global.accuracy(&test.x, &test.y)?;
    let mut feedback: Vec<ErrorFeedback> = match config.aggregation {
        Aggregation::Quantized {
            error_feedback: true,
            ..
        } => (0..clients.len())
            .map(|_| ErrorFeedback::new(global.n_params()))
            .collect(),
        _ => Vec::new(),
    };
    let mut rounds = Vec::with_capacity(config.rounds);
    for round in 0..config.rounds {
        let mut locals = Vec::with_capacity(clients.len());
        for (index, client) in clients.iter().enumerate() {
            let local = TrainConfig {
                seed: derive_seed(
                    config.local.seed,
                    "local",
                    &[config.seed, round as u64, index as u64],
                ),
                ..config.local
            };
            locals.push((
                global.train_local(&client.x, &client.y, &local)?,
                client.n_rows(),
            ));
        }
        let (next, clipped, weights_capped) = match config.aggregation {
            Aggregation::Plain => (unquantized_fedavg(&global, &locals)?, 0, 0),
            Aggregation::Quantized { spec, .. } => {
                let mut updates = Vec::with_capacity(locals.len());
                for (index, (local, n_samples)) in locals.iter().enumerate() {
                    updates.push(encode_update(
                        &spec,
                        &global,
                        local,
                        *n_samples,
                        feedback.get_mut(index),
                    )?);
                }
                let clipped = updates.iter().map(|u| u.clipped).sum();
                let capped = updates.iter().filter(|u| u.weight_capped).count();
                (plaintext_fedavg(&spec, &global, &updates)?, clipped, capped)
            }
        };
        global = next;
        rounds.push(RoundReport {
            round: round + 1,
            test_accuracy: global.accuracy(&test.x, &test.y)?,
            test_loss: global.loss(&test.x, &test.y)?,
            clipped,
            weights_capped,
        });
    }
    Ok(prepared.report(
        config,
        Setting::Federated,
        global.n_params(),
        initial_accuracy,
        rounds,
    ))
}

/// The centralized baseline: the same split, standardization and initial
/// model, trained on the pooled training rows for `rounds` periods of
/// `local.epochs` epochs each (the same number of passes over each row as
/// the federated run), with a report after each period.
pub fn centralized(config: &SimConfig) -> Result<SimReport, FlError> {
    let prepared = prepare(config)?;
    let Prepared { train, test, .. } = &prepared;
    let mut model = initial_model(config, test)?;
    let initial_accuracy = model.accuracy(&test.x, &test.y)?;
    let mut rounds = Vec::with_capacity(config.rounds);
    for round in 0..config.rounds {
        let local = TrainConfig {
            seed: derive_seed(config.local.seed, "central", &[config.seed, round as u64]),
            ..config.local
        };
        model = model.train_local(&train.x, &train.y, &local)?;
        rounds.push(RoundReport {
            round: round + 1,
            test_accuracy: model.accuracy(&test.x, &test.y)?,
            test_loss: model.loss(&test.x, &test.y)?,
            clipped: 0,
            weights_capped: 0,
        });
    }
    let mut report = prepared.report(
        config,
        Setting::Centralized,
        model.n_params(),
        initial_accuracy,
        rounds,
    );
    report.client_rows = vec![report.train_rows];
    Ok(report)
}

/// The data of one simulation, split and standardized.
struct Prepared {
    /// The whole training split (standardized), for the centralized run.
    train: Dataset,
    test: Dataset,
    clients: Vec<Dataset>,
}

impl Prepared {
    fn report(
        &self,
        config: &SimConfig,
        setting: Setting,
        n_params: usize,
        initial_accuracy: f64,
        rounds: Vec<RoundReport>,
    ) -> SimReport {
        SimReport {
            config: *config,
            setting,
            n_params,
            train_rows: self.train.n_rows(),
            test_rows: self.test.n_rows(),
            client_rows: self.clients.iter().map(Dataset::n_rows).collect(),
            label_skew: label_skew(&self.train, &self.clients),
            initial_accuracy,
            rounds,
        }
    }
}

fn prepare(config: &SimConfig) -> Result<Prepared, FlError> {
    if config.rounds == 0 {
        return Err(FlError::InvalidParameter {
            name: "rounds",
            value: 0.0,
            expected: "at least 1",
        });
    }
    let data = load(config.dataset);
    let (mut train, mut test) = train_test_split(
        &data,
        config.test_fraction,
        derive_seed(config.seed, "test split", &[]),
    )?;
    let parts = dirichlet_split(
        &train.y,
        train.n_classes,
        config.n_clients,
        config.alpha,
        config.min_rows.max(1),
        derive_seed(config.seed, "dirichlet", &[]),
    )?;
    let mut clients = parts
        .iter()
        .map(|rows| train.select(rows))
        .collect::<Result<Vec<_>, _>>()?;
    if config.standardize {
        // What a secure sum of the clients' moments would reveal.
        let mut moments = FeatureMoments::of(&Array2::zeros((0, train.n_features())));
        for client in &clients {
            moments.add(&FeatureMoments::of(&client.x))?;
        }
        let standardizer =
            Standardizer::from_moments(moments.count, &moments.sums, &moments.sums_of_squares)?;
        for dataset in clients.iter_mut().chain([&mut train, &mut test]) {
            standardizer.apply(&mut dataset.x)?;
        }
    }
    Ok(Prepared {
        train,
        test,
        clients,
    })
}

fn initial_model(config: &SimConfig, test: &Dataset) -> Result<Model, FlError> {
    Model::new(
        config.model,
        test.n_features(),
        test.n_classes,
        derive_seed(config.seed, "init", &[]),
    )
}

/// Mean total-variation distance between client and pooled label shares.
fn label_skew(train: &Dataset, clients: &[Dataset]) -> f64 {
    let shares = |d: &Dataset| -> Vec<f64> {
        let n = d.n_rows().max(1) as f64;
        d.class_counts().iter().map(|&c| c as f64 / n).collect()
    };
    let pooled = shares(train);
    let total: f64 = clients
        .iter()
        .map(|c| {
            0.5 * shares(c)
                .iter()
                .zip(&pooled)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
        })
        .sum();
    total / clients.len().max(1) as f64
}
