//! Federated training on the clients' own tables, from a
//! [`TrainingSpec`]: the round tasks, what a client computes for them, and
//! the driver.
//!
//! A training is a sequence of ordinary secure-aggregation rounds whose
//! signed descriptors carry the task parameters (the spec's columns, the
//! global model, the standardization), so each client sees exactly what it
//! computes before it computes anything:
//!
//! 1. one [`TABLE_MOMENTS_TASK`] round: every client contributes the count,
//!    sums and sums of squares of its *training* rows (after its
//!    train/validation split); their secure sum gives the pooled mean and
//!    standard deviation that standardize every client's features;
//! 2. per training round, one [`TABLE_FEDAVG_TASK`] round (FedAvg of
//!    quantized, weighted deltas, as in [`crate::training`]: the secure model
//!    equals the plaintext FedAvg of the same updates bit for bit), then, if
//!    the spec holds out validation rows, one [`TABLE_VALIDATE_TASK`] round:
//!    every client evaluates the new global model on its validation rows and
//!    contributes `[rows, correct predictions, summed loss]`. The pooled
//!    validation loss drives early stopping; the best model is the result.
//!
//! Moments and validation statistics travel in the query layer's exact
//! fixed-point limbs ([`crate::query::encode`]): 2^−20 resolution, values up
//! to 2^75, exact sums over up to 1024 clients.
//!
//! **What a training reveals**, to the coordinator and every client: the
//! pooled feature moments (hence the standardization), after every round
//! the new global model, the revealed sum (the weighted average delta and
//! the total capped weight Σw), and the pooled validation rows, correct
//! predictions and loss. Never one client's rows, statistics or update.
//!
//! **Under `dp`** (DP-FedAvg, [`RoundDp`]; docs/privacy-contract.md (l2))
//! no moments or validation round runs (the spec's public standardization
//! is used), every FedAvg round runs the engine's `dp-clipped-sum`
//! program, and each client checks the round's noise against the `(ε, δ)`
//! it is asked to charge, then charges it to its table's budget before it
//! shares: the released models are post-processing of the noised sums.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ndarray::Array1;
use sealroom_core::quant::ErrorFeedback;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::{InputError, InputSource, TaskCatalog, TaskDef, TaskPlanner, TaskShape};
use sealroom_protocol::VerifiedDescriptor;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use sealroom_mpc::dp_fedavg::DpClip;

use crate::budget::PrivacyLedger;
use crate::fl::{
    Defences, FedAvgSpec, FlError, Model, ModelKind, Standardizer, TrainConfig, derive_seed,
    encode_delta, encode_unweighted_delta,
};
use crate::query::DataSource;
use crate::query::encode::{LIMBS, from_fixed, from_limbs};
use crate::round::{completed_round, completed_round_excluding};
use crate::table_data::{Columns, Labels, TableError, TableRows, read_rows};
use crate::train_spec::{TrainingSpec, ValidationSpec};
use crate::training::{Aggregate, Aggregator, TrainingError};

/// The feature-moments round of a table training.
pub const TABLE_MOMENTS_TASK: &str = "table-moments";
/// A FedAvg round of a table training.
pub const TABLE_FEDAVG_TASK: &str = "table-fedavg";
/// A validation round of a table training.
pub const TABLE_VALIDATE_TASK: &str = "table-validate";
/// The tasks a client's [`TableTrainingInput`] answers.
pub const TASKS: [&str; 3] = [TABLE_MOMENTS_TASK, TABLE_FEDAVG_TASK, TABLE_VALIDATE_TASK];

/// What every round of a table training reads at the clients: the table,
/// its columns, the label domain and the split. Public, signed into each
/// descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableData {
    /// The clients' table.
    pub table: String,
    /// The label column.
    pub label: String,
    /// The feature columns.
    pub features: Vec<String>,
    /// The label's declared domain (classifiers).
    pub classes: Option<Vec<String>>,
    /// The train/validation split.
    pub validation: ValidationSpec,
}

impl TableData {
    /// The data part of a spec.
    pub fn of(spec: &TrainingSpec) -> TableData {
        TableData {
            table: spec.table.clone(),
            label: spec.label.clone(),
            features: spec.features.clone(),
            classes: spec.classes.clone(),
            validation: spec.validation,
        }
    }

    fn columns(&self) -> Columns<'_> {
        Columns {
            label: &self.label,
            features: &self.features,
            classes: self.classes.as_deref(),
        }
    }

    fn n_outputs(&self) -> usize {
        self.classes.as_ref().map_or(1, Vec::len)
    }
}

/// Parameters of a [`TABLE_MOMENTS_TASK`] round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MomentsParams {
    /// What to read.
    pub data: TableData,
}

/// Parameters of a [`TABLE_FEDAVG_TASK`] round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedAvgParams {
    /// What to read.
    pub data: TableData,
    /// Training round, from 1.
    pub training_round: u64,
    /// The model.
    pub model: ModelKind,
    /// The global model's parameters this round starts from.
    pub global: Vec<f64>,
    /// Feature standardization (from the moments round).
    pub mean: Vec<f64>,
    /// Feature standardization (from the moments round).
    pub std: Vec<f64>,
    /// Local training; each client derives its shuffle seed from this seed,
    /// the round and its name.
    pub train: TrainConfig,
    /// Quantization and weighting of the deltas.
    pub fedavg: FedAvgSpec,
    /// Whether clients carry their quantization residual between rounds.
    pub error_feedback: bool,
    /// Input validity and robust aggregation inside the engine (the
    /// spec's `defences`); under `robust` clients upload their unweighted
    /// quantized delta.
    #[serde(default, skip_serializing_if = "Defences::is_none")]
    pub defences: Defences,
    /// DP-FedAvg: the round clips, sums and noises inside the engine, and
    /// each client charges the round's `(ε, δ)` to its table's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<RoundDp>,
}

/// One DP-FedAvg round's privacy and noise, signed: each client checks that
/// the noise gives the `(ε, δ)` it is asked to charge
/// ([`sealroom_mpc::noise::binomial_vector_delta`]) before it computes
/// anything, and the helpers build the program from the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundDp {
    /// ε this round spends.
    pub epsilon: f64,
    /// δ this round spends.
    pub delta: f64,
    /// The L2 clip norm, in the model's units.
    pub clip_norm: f64,
    /// The noised sum's lattice: multiples of `2^shift` delta quanta.
    pub shift: u32,
    /// Coins of each coordinate's binomial noise.
    pub coins: u32,
}

/// The mechanism, as ledgers name it.
pub const DP_FEDAVG_MECHANISM: &str = "DP-FedAvg: clipping and binomial noise from shared random bits inside the engine (McMahan et al. 2018; Dwork et al. 2006)";

/// The lattice's rounding may add at most a quarter of the clipping's
/// sensitivity: `2^shift ≤ C/(2√d)` quanta.
fn lattice_shift(clip_quanta: f64, d: usize) -> u32 {
    let room = clip_quanta / (2.0 * (d as f64).sqrt());
    if room < 2.0 {
        0
    } else {
        (room.log2().floor() as u32).min(sealroom_mpc::dp_fedavg::MAX_SHIFT)
    }
}

impl RoundDp {
    /// Calibrates a round of `d` parameters that spends `(epsilon, delta)`
    /// with updates clipped to `clip_norm`: the lattice, then the fewest
    /// coins whose noise gives `(epsilon, delta)`.
    pub fn calibrate(
        fedavg: &FedAvgSpec,
        d: usize,
        epsilon: f64,
        delta: f64,
        clip_norm: f64,
    ) -> Result<RoundDp, String> {
        let clip_sq = crate::training::quanta_sq(fedavg, clip_norm, "dp.clip_norm")?;
        let shift = lattice_shift((clip_sq as f64).sqrt(), d);
        let probe = DpClip {
            clip_sq,
            shift,
            coins: 2,
        };
        // 2^24 coins per sample, 2^26 random bits per round.
        let max_coins = (sealroom_mpc::dp_fedavg::MAX_NOISE_BITS / d.max(1) as u64)
            .min(sealroom_mpc::noise::MAX_COINS as u64);
        let coins = sealroom_mpc::noise::coins_for_vector(
            epsilon,
            delta,
            probe.sensitivity_sq(d),
            max_coins,
        )
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| {
            format!(
                "ε {epsilon} and δ {delta:e} per round need more binomial noise than a round may hold for {d} parameters (at most {max_coins} coins each: 2^24 per sample, 2^26 random bits per round): raise ε, train fewer rounds or a smaller model"
            )
        })?;
        let dp = RoundDp {
            epsilon,
            delta,
            clip_norm,
            shift,
            coins,
        };
        dp.clip(fedavg, d)?;
        Ok(dp)
    }

    /// The engine's parameters, checked for `d` parameters.
    pub(crate) fn clip(&self, fedavg: &FedAvgSpec, d: usize) -> Result<DpClip, String> {
        let dp = DpClip {
            clip_sq: crate::training::quanta_sq(fedavg, self.clip_norm, "dp.clip_norm")?,
            shift: self.shift,
            coins: self.coins,
        };
        dp.check(d).map_err(|e| e.to_string())?;
        Ok(dp)
    }

    /// Checks that the noise makes the round `(ε, δ)`-DP, as a client does
    /// before it charges its budget: `Err` names what does not hold.
    pub fn verify(&self, fedavg: &FedAvgSpec, d: usize) -> Result<(), String> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && (1e-14..1.0).contains(&self.delta)) {
            return Err(format!(
                "ε {} and δ {} are not a valid privacy level",
                self.epsilon, self.delta
            ));
        }
        let dp = self.clip(fedavg, d)?;
        let bound = sealroom_mpc::noise::binomial_vector_delta(
            u64::from(dp.coins),
            dp.sensitivity_sq(d),
            self.epsilon,
        );
        if bound > self.delta {
            return Err(format!(
                "the round's noise ({} coins per parameter) gives δ ≤ {bound:e} at ε {}, not the δ {:e} it charges",
                dp.coins, self.epsilon, self.delta
            ));
        }
        Ok(())
    }
}

/// The DP release of a [`TABLE_FEDAVG_TASK`] round's parameters, as every
/// taking-part client charged it (`crate::joint::dp_release`): `None`
/// without `dp`, `Some(Err)` for parameters no client would accept.
pub fn dp_release(params: &[u8]) -> Option<Result<crate::joint::DpRelease, String>> {
    let p: FedAvgParams = match parse(params, "table FedAvg") {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let dp = p.dp?;
    // A training's rounds share their noise parameters: the accountant runs
    // once per distinct parameters in a listing.
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, Result<(), String>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let key = format!(
        "{} {} {}",
        serde_json::to_string(&dp).unwrap_or_default(),
        serde_json::to_string(&p.fedavg).unwrap_or_default(),
        p.global.len()
    );
    let verdict = LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((k, v)) if *k == key => v.clone(),
            _ => {
                let v = dp.verify(&p.fedavg, p.global.len());
                *last = Some((key, v.clone()));
                v
            }
        }
    });
    Some(verdict.map(|()| crate::joint::DpRelease {
        table: p.data.table.clone(),
        mechanism: DP_FEDAVG_MECHANISM.into(),
        epsilon: dp.epsilon,
        delta: dp.delta,
    }))
}

impl FedAvgParams {
    /// What the helpers compute, from the signed parameters.
    pub(crate) fn aggregator(&self) -> Result<Aggregator, String> {
        match &self.dp {
            None => self.defences.aggregator(&self.fedavg),
            Some(_) if !self.defences.is_none() => {
                Err("a DP round takes no defences: its clipping bounds every update".into())
            }
            Some(dp) => Ok(Aggregator::Dp(dp.clip(&self.fedavg, self.global.len())?)),
        }
    }
}

/// Parameters of a [`TABLE_VALIDATE_TASK`] round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateParams {
    /// What to read.
    pub data: TableData,
    /// The model.
    pub model: ModelKind,
    /// The parameters to evaluate.
    pub params: Vec<f64>,
    /// Feature standardization.
    pub mean: Vec<f64>,
    /// Feature standardization.
    pub std: Vec<f64>,
}

/// Statistics per validation contribution: rows, correct, summed loss.
const VALIDATION_STATS: usize = 3;

fn moments_len(n_features: usize) -> usize {
    LIMBS * (1 + 2 * n_features)
}

fn parse<T: for<'de> Deserialize<'de>>(params: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(params).map_err(|e| format!("malformed {what} parameters: {e}"))
}

fn check_data(data: &TableData) -> Result<(), String> {
    if data.features.is_empty() || data.features.len() > crate::train_spec::MAX_FEATURES {
        return Err(format!(
            "{} features is outside 1..={}",
            data.features.len(),
            crate::train_spec::MAX_FEATURES
        ));
    }
    if let Some(classes) = &data.classes
        && !(2..=crate::train_spec::MAX_CLASSES).contains(&classes.len())
    {
        return Err(format!("{} classes is outside 2..=1024", classes.len()));
    }
    Ok(())
}

fn check_model(data: &TableData, model: ModelKind, params: &[f64]) -> Result<(), String> {
    if model.is_regression() != data.classes.is_none() {
        return Err(format!(
            "a {model} model does not match a label {}",
            if data.classes.is_some() {
                "with classes"
            } else {
                "without classes"
            }
        ));
    }
    let n = model.n_params(data.features.len(), data.n_outputs());
    if params.len() != n {
        return Err(format!(
            "the model has {} parameters; a {model} with {} features and {} outputs has {n}",
            params.len(),
            data.features.len(),
            data.n_outputs()
        ));
    }
    Ok(())
}

struct Planner(&'static str);

impl TaskPlanner for Planner {
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        match self.0 {
            TABLE_MOMENTS_TASK => {
                let p: MomentsParams = parse(params, "table moments")?;
                check_data(&p.data)?;
                Ok(TaskShape {
                    engine: None,
                    vector_len: moments_len(p.data.features.len()) as u64,
                    spec: crate::query::wire_spec(),
                })
            }
            TABLE_VALIDATE_TASK => {
                let p: ValidateParams = parse(params, "table validation")?;
                check_data(&p.data)?;
                check_model(&p.data, p.model, &p.params)?;
                Ok(TaskShape {
                    engine: None,
                    vector_len: (LIMBS * VALIDATION_STATS) as u64,
                    spec: crate::query::wire_spec(),
                })
            }
            _ => {
                let p: FedAvgParams = parse(params, "table FedAvg")?;
                check_data(&p.data)?;
                p.train.check().map_err(|e| e.to_string())?;
                check_model(&p.data, p.model, &p.global)?;
                let spec = p.fedavg.wire_spec().map_err(|e| e.to_string())?;
                let engine = p.aggregator()?.program_name().map(str::to_string);
                Ok(TaskShape {
                    engine,
                    vector_len: FedAvgSpec::wire_len(p.global.len()) as u64,
                    spec,
                })
            }
        }
    }
}

/// Registers the table-training tasks with a coordinator's catalog.
pub fn register_tasks(catalog: &mut TaskCatalog) {
    for (task, wide) in [
        (TABLE_MOMENTS_TASK, true),
        (TABLE_FEDAVG_TASK, false),
        (TABLE_VALIDATE_TASK, true),
    ] {
        catalog.register(TaskDef {
            engine: None,
            name: task.into(),
            default_len: 0,
            fixed_len: true,
            spec: None,
            wide,
            planner: Some(Arc::new(Planner(task))),
            followup: None,
        });
    }
}

// ---------------------------------------------------------------------------
// The client's side.

/// Why a client cannot contribute to a table-training round. Names tables,
/// columns and rows; never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableInputError {
    /// The round's parameters do not decode.
    #[error("{0}")]
    Parameters(String),
    /// This client's config has no such table.
    #[error("this client has no table {0:?} (add [data.{0}] to its config)")]
    NoTable(String),
    /// The table could not be read.
    #[error("table {table:?}: {source}")]
    Table {
        /// The table.
        table: String,
        /// Why.
        source: TableError,
    },
    /// Training or encoding failed.
    #[error("table {table:?}: {source}")]
    Training {
        /// The table.
        table: String,
        /// Why.
        source: FlError,
    },
    /// The task is not a table-training task.
    #[error("not a table-training task: {0:?}")]
    NotMyTask(String),
}

/// A client's input for the table-training tasks.
pub struct TableTrainingInput {
    client: String,
    tables: BTreeMap<String, DataSource>,
    cache: Mutex<Option<Cached>>,
    feedback: Mutex<BTreeMap<String, ErrorFeedback>>,
    privacy: Option<Arc<PrivacyLedger>>,
    /// The last DP round verified: its noise and quantization (as JSON)
    /// and `d` — everything the bound depends on.
    verified_dp: Mutex<Option<(String, usize)>>,
}

struct Cached {
    key: String,
    train: TableRows,
    validation: TableRows,
}

impl std::fmt::Debug for TableTrainingInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableTrainingInput")
            .field("client", &self.client)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TableTrainingInput {
    /// Client `client`'s tables, by name (its config's `[data.*]`).
    pub fn new(client: impl Into<String>, tables: BTreeMap<String, DataSource>) -> Self {
        TableTrainingInput {
            client: client.into(),
            tables,
            cache: Mutex::new(None),
            feedback: Mutex::new(BTreeMap::new()),
            privacy: None,
            verified_dp: Mutex::new(None),
        }
    }

    /// Gives the client its privacy ledger: it then takes part in DP
    /// trainings (charging each round to the table's budget) and, when the
    /// federation requires DP, in no other table training.
    pub fn with_ledger(mut self, ledger: Arc<PrivacyLedger>) -> Self {
        self.privacy = Some(ledger);
        self
    }

    /// Checks a DP round's noise against the `(ε, δ)` it charges (the
    /// accountant runs once per distinct parameters).
    fn verify_dp(&self, p: &FedAvgParams, dp: &RoundDp) -> Result<(), TableInputError> {
        let key = (
            format!(
                "{} {}",
                serde_json::to_string(dp).unwrap_or_default(),
                serde_json::to_string(&p.fedavg).unwrap_or_default()
            ),
            p.global.len(),
        );
        if self
            .verified_dp
            .lock()
            .is_ok_and(|v| v.as_ref() == Some(&key))
        {
            return Ok(());
        }
        dp.verify(&p.fedavg, p.global.len())
            .map_err(TableInputError::Parameters)?;
        if let Ok(mut v) = self.verified_dp.lock() {
            *v = Some(key);
        }
        Ok(())
    }

    /// The vector this client contributes to a round of `task`.
    pub fn contribution(
        &self,
        task: &str,
        params: &[u8],
    ) -> Result<Zeroizing<Vec<f64>>, TableInputError> {
        match task {
            TABLE_MOMENTS_TASK => {
                let p: MomentsParams =
                    parse(params, "moments").map_err(TableInputError::Parameters)?;
                self.moments(&p)
            }
            TABLE_FEDAVG_TASK => {
                let p: FedAvgParams =
                    parse(params, "FedAvg").map_err(TableInputError::Parameters)?;
                self.fedavg(&p)
            }
            TABLE_VALIDATE_TASK => {
                let p: ValidateParams =
                    parse(params, "validation").map_err(TableInputError::Parameters)?;
                self.validate(&p)
            }
            other => Err(TableInputError::NotMyTask(other.to_string())),
        }
    }

    /// The (train, validation) rows of `data`, read once per training.
    fn rows(&self, data: &TableData) -> Result<(TableRows, TableRows), TableInputError> {
        let key = serde_json::to_string(data).unwrap_or_default();
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.as_ref()
            && c.key == key
        {
            return Ok((c.train.clone(), c.validation.clone()));
        }
        let source = self
            .tables
            .get(&data.table)
            .ok_or_else(|| TableInputError::NoTable(data.table.clone()))?;
        let read = read_rows(source, data.columns());
        let rows = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(read),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| TableInputError::Parameters(format!("starting a runtime: {e}")))?
                .block_on(read),
        }
        .map_err(|source| TableInputError::Table {
            table: data.table.clone(),
            source,
        })?;
        let (train, validation) = rows
            .split(data.validation.fraction, data.validation.seed)
            .map_err(|source| TableInputError::Training {
                table: data.table.clone(),
                source,
            })?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(Cached {
                key,
                train: train.clone(),
                validation: validation.clone(),
            });
        }
        Ok((train, validation))
    }

    fn training_error(table: &str) -> impl Fn(FlError) -> TableInputError + '_ {
        move |source| TableInputError::Training {
            table: table.to_string(),
            source,
        }
    }

    fn moments(&self, p: &MomentsParams) -> Result<Zeroizing<Vec<f64>>, TableInputError> {
        let (train, _) = self.rows(&p.data)?;
        let x = &train.x;
        let mut stats = Zeroizing::new(Vec::with_capacity(1 + 2 * x.ncols()));
        stats.push(x.nrows() as f64);
        stats.extend(x.sum_axis(ndarray::Axis(0)).iter());
        stats.extend(x.mapv(|v| v * v).sum_axis(ndarray::Axis(0)).iter());
        Ok(encode_limbs(&stats))
    }

    fn standardized(&self, rows: &mut TableRows, mean: &[f64], std: &[f64]) -> Result<(), FlError> {
        let standardizer =
            Standardizer::from_mean_std(Array1::from(mean.to_vec()), Array1::from(std.to_vec()))?;
        standardizer.apply(&mut rows.x)
    }

    fn fedavg(&self, p: &FedAvgParams) -> Result<Zeroizing<Vec<f64>>, TableInputError> {
        let table = p.data.table.as_str();
        let err = Self::training_error(table);
        check_model(&p.data, p.model, &p.global).map_err(TableInputError::Parameters)?;
        let rows = self.rows(&p.data);
        // Under DP a client without training rows contributes a zero update
        // rather than sitting out: its participation would otherwise tell
        // whether its table is empty, which one row changes.
        if p.dp.is_some() {
            let empty = match &rows {
                Ok((train, _)) => train.n_rows() == 0,
                Err(TableInputError::Table {
                    source: TableError::RowCount { rows: 0, .. },
                    ..
                }) => true,
                Err(_) => false,
            };
            if empty {
                tracing::info!(
                    round = p.training_round,
                    "DP FedAvg: no training rows, a zero update"
                );
                return Ok(Zeroizing::new(vec![
                    0.0;
                    FedAvgSpec::wire_len(p.global.len())
                ]));
            }
        }
        let (mut train, _) = rows?;
        self.standardized(&mut train, &p.mean, &p.std)
            .map_err(&err)?;
        let global = Model::from_params(
            p.model,
            p.data.features.len(),
            p.data.n_outputs(),
            p.global.clone(),
        )
        .map_err(&err)?;
        let config = TrainConfig {
            seed: derive_seed(
                p.train.seed,
                "table training",
                &[p.training_round, name_seed(&self.client)],
            ),
            ..p.train
        };
        let local = match &train.labels {
            Labels::Classes(y) => global.train_local(&train.x, y, &config),
            Labels::Values(y) => global.train_local_regression(&train.x, y, &config),
        }
        .map_err(&err)?;
        // Robust aggregation clips or ranks the unweighted deltas.
        let encode = if p.defences.robust.is_some() || p.dp.is_some() {
            encode_unweighted_delta
        } else {
            encode_delta
        };
        let update = if p.error_feedback {
            let mut feedback = self.feedback.lock().map_err(|_| {
                TableInputError::Parameters("the error-feedback state is poisoned".into())
            })?;
            let residual = feedback
                .entry(table.to_string())
                .or_insert_with(|| ErrorFeedback::new(global.n_params()));
            if residual.len() != global.n_params() {
                *residual = ErrorFeedback::new(global.n_params());
            }
            encode(
                &p.fedavg,
                global.params(),
                local.params(),
                train.n_rows(),
                Some(residual),
            )
        } else {
            encode(
                &p.fedavg,
                global.params(),
                local.params(),
                train.n_rows(),
                None,
            )
        }
        .map_err(&err)?;
        // Counts only (never a value).
        tracing::info!(
            round = p.training_round,
            clipped = update.clipped,
            weight_capped = update.weight_capped,
            "table FedAvg update encoded"
        );
        Ok(Zeroizing::new(update.values().to_vec()))
    }

    fn validate(&self, p: &ValidateParams) -> Result<Zeroizing<Vec<f64>>, TableInputError> {
        let err = Self::training_error(&p.data.table);
        check_model(&p.data, p.model, &p.params).map_err(TableInputError::Parameters)?;
        let (_, mut validation) = self.rows(&p.data)?;
        let stats = if validation.n_rows() == 0 {
            Zeroizing::new(vec![0.0; VALIDATION_STATS])
        } else {
            self.standardized(&mut validation, &p.mean, &p.std)
                .map_err(&err)?;
            let model = Model::from_params(
                p.model,
                p.data.features.len(),
                p.data.n_outputs(),
                p.params.clone(),
            )
            .map_err(&err)?;
            let m = evaluate(&model, &validation).map_err(&err)?;
            Zeroizing::new(vec![m.rows as f64, m.correct as f64, m.loss_sum])
        };
        Ok(encode_limbs(&stats))
    }
}

impl TableInputError {
    /// The typed reason the coordinator is told (a table or column name
    /// from the spec at most; the full error stays in this client's log).
    fn sit_out(&self) -> InputError {
        use sealroom_protocol::pb::SitOutReason as R;
        let (reason, subject) = match self {
            TableInputError::Parameters(_) => (R::InvalidParameters, ""),
            TableInputError::NoTable(table) => (R::NoSuchTable, table.as_str()),
            TableInputError::Table {
                source: TableError::MissingColumn { column, .. },
                ..
            } => (R::NoSuchColumn, column.as_str()),
            TableInputError::Table {
                source: TableError::BadValue { column, .. },
                ..
            } => (R::DataUnavailable, column.as_str()),
            TableInputError::Table { table, .. } => (R::DataUnavailable, table.as_str()),
            TableInputError::Training { .. } => (R::InputFailed, ""),
            TableInputError::NotMyTask(task) => (R::UnsupportedTask, task.as_str()),
        };
        InputError::new(reason, subject, self.to_string())
    }
}

impl InputSource for TableTrainingInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        let task = descriptor.task_name();
        // A FedAvg round's parameters are parsed once: for the DP check and
        // for the update.
        let fedavg = if task == TABLE_FEDAVG_TASK {
            let p: FedAvgParams = parse(descriptor.task_params(), "FedAvg")
                .map_err(|e| TableInputError::Parameters(e).sit_out())?;
            Some(p)
        } else {
            None
        };
        let dp = match fedavg.as_ref().and_then(|p| Some((p, p.dp?))) {
            Some((p, dp)) => {
                self.verify_dp(p, &dp).map_err(|e| e.sit_out())?;
                Some((p.data.table.clone(), dp))
            }
            None => None,
        };
        if dp.is_none() && self.privacy.as_ref().is_some_and(|l| l.require_dp()) {
            // The subject reaches the admin in the abort's detail.
            return Err(InputError::new(
                sealroom_protocol::pb::SitOutReason::BelowClientFloor,
                "require_dp",
                "this federation requires differential privacy ([privacy] require_dp): a table training must carry `dp` in its spec (and then runs no moments or validation round)",
            ));
        }
        let values = match &fedavg {
            Some(p) => self.fedavg(p),
            None => self.contribution(task, descriptor.task_params()),
        }
        .map_err(|e| e.sit_out())?;
        // The last step before the vector leaves for the secret-sharing: a
        // DP round is charged to the table's budget (durably) or refused.
        if let Some((table, dp)) = dp {
            let ledger = self
                .privacy
                .as_ref()
                .ok_or_else(|| PrivacyLedger::no_ledger(&table))?;
            let charge = ledger.charge(
                descriptor,
                &table,
                DP_FEDAVG_MECHANISM,
                dp.epsilon,
                dp.delta,
            );
            // Called on a blocking thread of the node's runtime (see
            // InputSource).
            let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                InputError::new(
                    sealroom_protocol::pb::SitOutReason::InputFailed,
                    &table,
                    "a DP training needs the node's async runtime",
                )
            })?;
            handle.block_on(charge)?;
        }
        Ok(values.to_vec())
    }
}

fn name_seed(name: &str) -> u64 {
    let hash = blake3::hash(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// Each statistic as four limbs, saturated to the encoding's range: a value
/// that is not finite or reaches 2^75 is replaced by the nearest
/// representable one, so whether a client contributes never depends on its
/// rows (issue #12, finding 4).
fn encode_limbs(stats: &[f64]) -> Zeroizing<Vec<f64>> {
    let mut out = Zeroizing::new(Vec::with_capacity(stats.len() * LIMBS));
    for &v in stats {
        crate::query::encode::push_saturating(&mut out, v);
    }
    out
}

fn decode_limbs(sum: &[f64], round_id: u64) -> Result<Vec<f64>, TrainingError> {
    if !sum.len().is_multiple_of(LIMBS) {
        return Err(TrainingError::Result {
            round_id,
            detail: format!("{} values is not a whole number of limbs", sum.len()),
        });
    }
    sum.chunks_exact(LIMBS)
        .map(|chunk| {
            let mut ints = [0i64; LIMBS];
            for (i, &v) in ints.iter_mut().zip(chunk) {
                if !(v.is_finite() && v.fract() == 0.0 && v.abs() < 2f64.powi(62)) {
                    return Err(TrainingError::Result {
                        round_id,
                        detail: "a limb of the sum is not an integer".into(),
                    });
                }
                *i = v as i64;
            }
            Ok(from_fixed(from_limbs(ints)))
        })
        .collect()
}

/// A model's counts on some rows: what a validation round sums.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Evaluation {
    rows: usize,
    correct: usize,
    loss_sum: f64,
}

fn evaluate(model: &Model, rows: &TableRows) -> Result<Evaluation, FlError> {
    let n = rows.n_rows();
    match &rows.labels {
        Labels::Classes(y) => {
            let accuracy = model.accuracy(&rows.x, y)?;
            let loss = model.loss(&rows.x, y)?;
            Ok(Evaluation {
                rows: n,
                correct: (accuracy * n as f64).round() as usize,
                loss_sum: loss * n as f64,
            })
        }
        Labels::Values(y) => Ok(Evaluation {
            rows: n,
            correct: 0,
            loss_sum: model.mse(&rows.x, y)? * n as f64,
        }),
    }
}

// ---------------------------------------------------------------------------
// The driver.

/// A model's metrics on pooled rows: validation (from a secure sum) or the
/// admin's own test rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: u64,
    /// Fraction of rows predicted right (classifiers).
    pub accuracy: Option<f64>,
    /// Mean cross-entropy (classifiers) or mean squared error (regression).
    pub loss: f64,
}

/// One FedAvg round of a table training, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TableRound {
    /// Training round, from 1.
    pub round: usize,
    /// The federation's round id of the FedAvg round.
    pub round_id: u64,
    /// Clients whose updates the secure sum includes.
    pub included: Vec<String>,
    /// Clients whose upload failed the helpers' sketch check in an earlier
    /// attempt at this round (engine rounds): the round ran again without
    /// them, and the training goes on without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// With an L2 or L∞ bound: the included clients whose update the
    /// helpers left out inside the engine (beyond a bound, or a weight out
    /// of range).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
    /// Per rejected client, the checks its update failed (`"l2"`,
    /// `"linf"`, `"weight"`): all the round reveals about it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_checks: BTreeMap<String, Vec<String>>,
    /// Total weight (training rows, capped per client) of the updates
    /// averaged; with a trimmed mean or median (unweighted), the number of
    /// values averaged per parameter; with multi-Krum, the updates selected.
    pub total_weight: u64,
    /// FedAvg round latency at the coordinator, ms.
    pub duration_ms: u64,
    /// Pooled validation metrics of the new model (secure sum).
    pub validation: Option<Metrics>,
    /// The validation round's id.
    pub validation_round_id: Option<u64>,
    /// Metrics on the admin's test rows, if it gave any.
    pub test: Option<Metrics>,
}

/// A finished table training.
#[derive(Clone, Debug, Serialize)]
pub struct TableTrainingReport {
    /// The spec trained.
    pub spec: TrainingSpec,
    /// Model parameters.
    pub n_params: usize,
    /// Pooled training rows (from the moments round).
    pub training_rows: u64,
    /// Standardization: pooled feature means.
    pub mean: Vec<f64>,
    /// Standardization: pooled feature standard deviations.
    pub std: Vec<f64>,
    /// Metrics of the initial model.
    pub initial_validation: Option<Metrics>,
    /// Test metrics of the initial model.
    pub initial_test: Option<Metrics>,
    /// Every FedAvg round run.
    pub rounds: Vec<TableRound>,
    /// The round whose model is the result (0: the initial model): the
    /// lowest validation loss, or the last round without validation.
    pub best_round: usize,
    /// Whether early stopping ended the training before `spec.rounds`.
    pub stopped_early: bool,
    /// The moments round's id.
    pub moments_round_id: u64,
    /// Parameters of the initial model and after each round (`rounds + 1`
    /// vectors): exported, not printed.
    #[serde(skip)]
    pub history: Vec<Vec<f64>>,
    /// The revealed sum of each FedAvg round (`n_params + 1` values; with
    /// robust aggregation, its numerator and denominator in the same form,
    /// [`crate::model_export`]): exported, not printed.
    #[serde(skip)]
    pub sums: Vec<Vec<f64>>,
}

impl TableTrainingReport {
    /// The resulting model (that of [`TableTrainingReport::best_round`]).
    pub fn model(&self) -> Result<Model, FlError> {
        let params = self
            .history
            .get(self.best_round)
            .cloned()
            .ok_or(FlError::Empty {
                what: "model history",
            })?;
        Model::from_params(
            self.spec.model,
            self.spec.features.len(),
            self.spec.n_outputs(),
            params,
        )
    }

    /// The standardization the model expects.
    pub fn standardizer(&self) -> Result<Standardizer, FlError> {
        Standardizer::from_mean_std(
            Array1::from(self.mean.clone()),
            Array1::from(self.std.clone()),
        )
    }
}

/// Reads the admin's own test rows (e.g. a held-out CSV file) for the
/// report; never sent anywhere.
pub async fn read_test_rows(
    source: &DataSource,
    spec: &TrainingSpec,
) -> Result<TableRows, TableError> {
    read_rows(
        source,
        Columns {
            label: &spec.label,
            features: &spec.features,
            classes: spec.classes.as_deref(),
        },
    )
    .await
}

/// Metrics of `model` on raw (unstandardized) `rows`.
pub fn test_metrics(
    model: &Model,
    standardizer: &Standardizer,
    rows: &TableRows,
) -> Result<Metrics, FlError> {
    let mut rows = rows.clone();
    standardizer.apply(&mut rows.x)?;
    let e = evaluate(model, &rows)?;
    Ok(metrics_of(
        e.rows as f64,
        e.correct as f64,
        e.loss_sum,
        model.kind(),
    ))
}

fn metrics_of(rows: f64, correct: f64, loss_sum: f64, kind: ModelKind) -> Metrics {
    let n = rows.max(1.0);
    Metrics {
        rows: rows as u64,
        accuracy: (!kind.is_regression()).then_some(correct / n),
        loss: loss_sum / n,
    }
}

/// Runs a table training over `clients` (by name): the moments round, then
/// up to `spec.rounds` FedAvg rounds (each followed by a validation round
/// when the spec holds out rows), calling `on_round` after each. `test`
/// rows, if given, are the admin's own and only evaluate the models.
pub async fn train<R: RoundRunner>(
    runner: &R,
    spec: &TrainingSpec,
    clients: &[String],
    test: Option<&TableRows>,
    mut on_round: impl FnMut(&TableRound),
) -> Result<TableTrainingReport, TrainingError> {
    spec.validate("<spec>")
        .map_err(|e| TrainingError::Spec(e.to_string()))?;
    // Shrinks when an engine round leaves a client out (below).
    let mut clients = clients.to_vec();
    let data = TableData::of(spec);
    let n_features = data.features.len();
    let n_outputs = data.n_outputs();
    // Under DP no moments round runs: it would release exact sums of the
    // rows. The spec's public standardization (or none) is used instead.
    let (moments_round_id, count, mean, std) = match &spec.dp {
        Some(dp) => {
            let (mean, std) = match (&dp.mean, &dp.std) {
                (Some(m), Some(s)) => (m.clone(), s.clone()),
                _ => (vec![0.0; n_features], vec![1.0; n_features]),
            };
            (0, 0.0, mean, std)
        }
        None => {
            let moments = completed_round(
                runner,
                TABLE_MOMENTS_TASK,
                &MomentsParams { data: data.clone() },
                &clients,
                0,
            )
            .await?;
            let stats = decode_limbs(&moments.values, moments.round_id)?;
            if stats.len() != 1 + 2 * n_features {
                return Err(TrainingError::Result {
                    round_id: moments.round_id,
                    detail: format!("{} moments for {n_features} features", stats.len()),
                });
            }
            let count = stats[0];
            if !(count >= 1.0 && count.fract() == 0.0) {
                return Err(TrainingError::Fl(FlError::Empty {
                    what: "pooled training set",
                }));
            }
            let standardizer = Standardizer::from_moments(
                count as usize,
                &Array1::from(stats[1..=n_features].to_vec()),
                &Array1::from(stats[1 + n_features..].to_vec()),
            )?;
            (
                moments.round_id,
                count,
                standardizer.mean.to_vec(),
                standardizer.std.to_vec(),
            )
        }
    };
    let standardizer =
        Standardizer::from_mean_std(Array1::from(mean.clone()), Array1::from(std.clone()))?;
    let mut global = Model::new(spec.model, n_features, n_outputs, spec.init_seed)?;
    let validating = spec.validation.fraction > 0.0;
    let fedavg = spec.quantization.fedavg();
    let n_params = global.n_params();
    // Each round spends ε/rounds and δ/rounds (basic composition).
    let round_dp = spec
        .dp
        .as_ref()
        .map(|dp| {
            let rounds = spec.rounds as f64;
            RoundDp::calibrate(
                &fedavg,
                n_params,
                dp.epsilon / rounds,
                dp.delta / rounds,
                dp.clip_norm,
            )
        })
        .transpose()
        .map_err(TrainingError::Spec)?;

    let validate = async |params: &[f64],
                          clients: &[String]|
           -> Result<Option<(Metrics, u64)>, TrainingError> {
        if !validating {
            return Ok(None);
        }
        let outcome = completed_round(
            runner,
            TABLE_VALIDATE_TASK,
            &ValidateParams {
                data: data.clone(),
                model: spec.model,
                params: params.to_vec(),
                mean: mean.clone(),
                std: std.clone(),
            },
            clients,
            0,
        )
        .await?;
        let v = decode_limbs(&outcome.values, outcome.round_id)?;
        if v.len() != VALIDATION_STATS {
            return Err(TrainingError::Result {
                round_id: outcome.round_id,
                detail: format!("{} validation statistics, expected 3", v.len()),
            });
        }
        Ok(Some((
            metrics_of(v[0], v[1], v[2], spec.model),
            outcome.round_id,
        )))
    };
    let test_of = |model: &Model| -> Result<Option<Metrics>, TrainingError> {
        match test {
            Some(rows) => Ok(Some(test_metrics(model, &standardizer, rows)?)),
            None => Ok(None),
        }
    };

    let initial_validation = validate(global.params(), &clients).await?.map(|(m, _)| m);
    let initial_test = test_of(&global)?;
    let mut history = vec![global.params().to_vec()];
    let mut sums = Vec::new();
    let mut rounds = Vec::new();
    let mut best = (0usize, initial_validation.map_or(f64::INFINITY, |m| m.loss));
    let mut stopped_early = false;
    for round in 1..=spec.rounds {
        let params = FedAvgParams {
            data: data.clone(),
            training_round: round as u64,
            model: spec.model,
            global: global.params().to_vec(),
            mean: mean.clone(),
            std: std.clone(),
            train: spec.train.config(),
            fedavg,
            error_feedback: spec.error_feedback,
            defences: spec.defences,
            dp: round_dp,
        };
        let aggregator = params.aggregator().map_err(TrainingError::Spec)?;
        // A client whose upload fails the engine's sketch check is left
        // out (the round runs again without it) for the rest of the training.
        let (outcome, left_out) =
            completed_round_excluding(runner, TABLE_FEDAVG_TASK, &params, &mut clients).await?;
        let included: Vec<String> = outcome
            .included_clients
            .iter()
            .map(|&i| clients.get(i as usize).cloned())
            .collect::<Option<_>>()
            .ok_or_else(|| TrainingError::Result {
                round_id: outcome.round_id,
                detail: "an included client index is outside the invited list".into(),
            })?;
        let aggregate = Aggregate::of(&fedavg, aggregator, &outcome, &included, n_params)?;
        let next = aggregate.apply_to(&fedavg, global.params())?;
        global = Model::from_params(spec.model, n_features, n_outputs, next)?;
        history.push(global.params().to_vec());
        sums.push(aggregate.as_sum(&fedavg)?);
        let validation = validate(global.params(), &clients).await?;
        let report = TableRound {
            round,
            round_id: outcome.round_id,
            included,
            left_out,
            rejected: aggregate.rejected,
            rejected_checks: aggregate.rejected_checks,
            total_weight: aggregate.total_weight,
            duration_ms: outcome.duration_ms,
            validation: validation.map(|(m, _)| m),
            validation_round_id: validation.map(|(_, id)| id),
            test: test_of(&global)?,
        };
        on_round(&report);
        rounds.push(report);
        match validation {
            Some((m, _)) => {
                let min_delta = spec.early_stopping.map_or(0.0, |s| s.min_delta);
                if m.loss < best.1 - min_delta {
                    best = (round, m.loss);
                } else if let Some(stop) = spec.early_stopping
                    && round - best.0 >= stop.patience
                {
                    stopped_early = round < spec.rounds;
                    break;
                }
            }
            None => best = (round, f64::INFINITY),
        }
    }
    Ok(TableTrainingReport {
        spec: spec.clone(),
        n_params: global.n_params(),
        training_rows: count as u64,
        mean,
        std,
        initial_validation,
        initial_test,
        rounds,
        best_round: best.0,
        stopped_early,
        moments_round_id,
        history,
        sums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::RobustAggregation;

    #[test]
    fn limbs_round_trip_exactly() {
        let stats = [3.0, -1.25, 1e12, 0.0];
        let wire = encode_limbs(&stats);
        assert_eq!(wire.len(), 4 * LIMBS);
        let back = decode_limbs(&wire, 1).unwrap();
        assert_eq!(back, stats.to_vec());
        // Non-finite or out-of-range statistics saturate instead of failing.
        assert_eq!(decode_limbs(&encode_limbs(&[f64::NAN]), 1).unwrap(), [0.0]);
        let huge = decode_limbs(&encode_limbs(&[f64::INFINITY, -1e300]), 1).unwrap();
        assert!(huge[0] > 3e22 && huge[1] < -3e22, "{huge:?}");
        assert!(decode_limbs(&[0.5; LIMBS], 1).is_err());
        assert!(decode_limbs(&[0.0; LIMBS + 1], 1).is_err());
    }

    /// Round-1 parameters of a logistic model on two features.
    fn fedavg_fixture(data: TableData) -> FedAvgParams {
        FedAvgParams {
            data,
            training_round: 1,
            model: ModelKind::Logistic,
            global: vec![0.0; 6],
            mean: vec![0.0; 2],
            std: vec![1.0; 2],
            train: crate::train_spec::TrainSettings::default().config(),
            fedavg: crate::train_spec::QuantSettings::default().fedavg(),
            error_feedback: false,
            defences: Defences::default(),
            dp: None,
        }
    }

    /// Under DP an empty table contributes a zero update (participation
    /// would otherwise reveal emptiness, which one row changes); without DP
    /// it sits out naming the table.
    #[test]
    fn an_empty_table_contributes_zero_under_dp_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.csv");
        std::fs::write(&path, "a,b,y\n").expect("write");
        let tables = BTreeMap::from([("t".to_string(), DataSource::Csv { path })]);
        let client = TableTrainingInput::new("c", tables);
        let data = TableData {
            table: "t".into(),
            label: "y".into(),
            features: vec!["a".into(), "b".into()],
            classes: Some(vec!["n".into(), "y".into()]),
            validation: ValidationSpec {
                fraction: 0.0,
                seed: 0,
            },
        };
        let plain = fedavg_fixture(data);
        let fedavg = plain.fedavg;
        let bytes = |p: &FedAvgParams| serde_json::to_vec(p).expect("params");
        let err = client
            .contribution(TABLE_FEDAVG_TASK, &bytes(&plain))
            .unwrap_err();
        assert!(matches!(err, TableInputError::Table { .. }), "{err}");
        let dp = FedAvgParams {
            dp: Some(RoundDp::calibrate(&fedavg, 6, 1.0, 1e-6, 0.5).expect("calibrates")),
            ..plain
        };
        let zero = client
            .contribution(TABLE_FEDAVG_TASK, &bytes(&dp))
            .expect("a zero update");
        assert_eq!(zero.len(), FedAvgSpec::wire_len(6));
        assert!(zero.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn planner_checks_shapes() {
        let data = TableData {
            table: "t".into(),
            label: "y".into(),
            features: vec!["a".into(), "b".into()],
            classes: Some(vec!["n".into(), "y".into()]),
            validation: ValidationSpec::default(),
        };
        let fedavg = fedavg_fixture(data.clone());
        let plan = |task, p: &[u8]| Planner(task).plan(p);
        let shape = plan(TABLE_FEDAVG_TASK, &serde_json::to_vec(&fedavg).unwrap()).unwrap();
        assert_eq!(shape.vector_len, 7);
        assert_eq!(shape.engine, None);
        // The defences choose the engine program; a clip without its hard
        // bound is refused when the round is planned.
        for (l2_bound, robust, program) in [
            (Some(5.0), None, "weighted-norm-bounded-sum"),
            (
                Some(5.0),
                Some(RobustAggregation::Clip { norm: 0.5 }),
                "clipped-weighted-sum",
            ),
            (None, Some(RobustAggregation::Median), "trimmed-sum"),
        ] {
            let p = FedAvgParams {
                defences: Defences {
                    l2_bound,
                    robust,
                    linf_bound: None,
                },
                ..fedavg.clone()
            };
            let shape = plan(TABLE_FEDAVG_TASK, &serde_json::to_vec(&p).unwrap()).unwrap();
            assert_eq!(shape.engine.as_deref(), Some(program), "{robust:?}");
        }
        let unbounded_clip = FedAvgParams {
            defences: Defences {
                robust: Some(RobustAggregation::Clip { norm: 0.5 }),
                ..Defences::default()
            },
            ..fedavg.clone()
        };
        let err = plan(
            TABLE_FEDAVG_TASK,
            &serde_json::to_vec(&unbounded_clip).unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("l2_bound"), "{err}");
        // DP: the planner picks the DP program; a client accepts the
        // calibrated noise and refuses a round that charges the same (ε, δ)
        // with less noise (a coordinator lowering the noise).
        let round = RoundDp::calibrate(&fedavg.fedavg, 6, 1.0, 1e-6, 0.5).expect("calibrates");
        let dp = FedAvgParams {
            dp: Some(round),
            ..fedavg.clone()
        };
        let shape = plan(TABLE_FEDAVG_TASK, &serde_json::to_vec(&dp).unwrap()).unwrap();
        assert_eq!(shape.engine.as_deref(), Some("dp-clipped-sum"));
        round
            .verify(&fedavg.fedavg, 6)
            .expect("the calibrated noise passes");
        let weaker = RoundDp {
            coins: round.coins / 2 / 2 * 2,
            ..round
        };
        let err = weaker.verify(&fedavg.fedavg, 6).unwrap_err();
        assert!(err.contains("not the δ"), "{err}");
        // A round whose noise the engine cannot hold is refused, saying what
        // to change.
        let err = RoundDp::calibrate(&fedavg.fedavg, 1000, 1.0, 1e-6, 1.0).unwrap_err();
        assert!(
            err.contains("2^26 random bits") && err.contains("raise ε"),
            "{err}"
        );
        // A client's cache of verified noise covers the quantization too: the
        // same noise under a finer delta step (a larger clip in quanta, so a
        // larger sensitivity) is checked again, and refused.
        let client = TableTrainingInput::new("c", BTreeMap::new());
        client.verify_dp(&dp, &round).expect("verified");
        client.verify_dp(&dp, &round).expect("cached");
        let finer = FedAvgParams {
            fedavg: FedAvgSpec {
                bits: dp.fedavg.bits + 6,
                ..dp.fedavg
            },
            ..dp.clone()
        };
        assert!(
            client.verify_dp(&finer, &round).is_err(),
            "a finer quantization under the same noise is refused"
        );
        // The audit lists what each client charged, and refuses the rest.
        let release = dp_release(&serde_json::to_vec(&dp).unwrap())
            .expect("a DP round")
            .expect("a valid release");
        assert_eq!((release.table.as_str(), release.epsilon), ("t", 1.0));
        let weakened = FedAvgParams {
            dp: Some(weaker),
            ..fedavg.clone()
        };
        assert!(dp_release(&serde_json::to_vec(&weakened).unwrap()).is_some_and(|r| r.is_err()));
        assert!(dp_release(&serde_json::to_vec(&fedavg).unwrap()).is_none());
        assert!(round.shift >= 3, "lattice shift {}", round.shift);
        let finer = RoundDp {
            shift: round.shift - 3,
            ..round
        };
        assert!(
            finer.verify(&fedavg.fedavg, 6).is_err(),
            "a finer lattice needs more noise"
        );
        let with_defences = FedAvgParams {
            defences: Defences {
                l2_bound: Some(5.0),
                ..Defences::default()
            },
            ..dp
        };
        let err = plan(
            TABLE_FEDAVG_TASK,
            &serde_json::to_vec(&with_defences).unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("no defences"), "{err}");
        let wrong = FedAvgParams {
            global: vec![0.0; 5],
            ..fedavg.clone()
        };
        assert!(plan(TABLE_FEDAVG_TASK, &serde_json::to_vec(&wrong).unwrap()).is_err());
        let linear_with_classes = FedAvgParams {
            model: ModelKind::Linear,
            global: vec![0.0; 3],
            ..fedavg
        };
        assert!(
            plan(
                TABLE_FEDAVG_TASK,
                &serde_json::to_vec(&linear_with_classes).unwrap()
            )
            .is_err()
        );
        let moments = MomentsParams { data };
        let shape = plan(TABLE_MOMENTS_TASK, &serde_json::to_vec(&moments).unwrap()).unwrap();
        assert_eq!(shape.vector_len, (LIMBS * 5) as u64);
        for task in TASKS {
            for junk in [&b""[..], b"{}", b"[1]", b"{\"data\": 1}"] {
                assert!(plan(task, junk).is_err(), "{task}");
            }
        }
    }
}
