//! Federated learning over the networked federation: the round tasks, what a
//! client computes for them, and the driver that runs a training.
//!
//! A training is a sequence of secure-aggregation rounds, each an ordinary
//! sealroom round whose signed descriptor carries the task parameters:
//!
//! 1. one [`MOMENTS_TASK`] round: every client contributes the count, sums
//!    and sums of squares of its training features; their secure sum gives
//!    the pooled mean and standard deviation used to standardize features
//!    (only those aggregates are revealed);
//! 2. `rounds` × [`FEDAVG_TASK`]: the descriptor carries the global model,
//!    the local training settings and the [`FedAvgSpec`]; each client trains
//!    locally from the global model and contributes its quantized, weighted
//!    delta and its weight as one vector ([`super::fl::encode_update`]); the
//!    driver applies the secure sum ([`super::fl::apply_sum`]).
//!
//! Everything a client does is a deterministic function of the signed
//! parameters and its own rows, so a plaintext FedAvg of the same quantized
//! updates gives the very same model, bit for bit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ndarray::Array2;
use sealroom_core::QuantSpec;
use sealroom_core::quant::ErrorFeedback;
use sealroom_mpc::dp_fedavg::{DP_CLIPPED_SUM, DP_CLIPPED_SUM_VERSION, DpClip, dp_clipped_sum};
use sealroom_mpc::krum::{
    KrumParams, MULTI_KRUM, MULTI_KRUM_VERSION, multi_krum, multi_krum_plain,
};
use sealroom_mpc::program::Program;
use sealroom_mpc::robust::{
    CLIPPED_SUM, CLIPPED_SUM_VERSION, ClipBounds, TRIMMED_SUM, TRIMMED_SUM_VERSION,
    clipped_weighted_sum, clipped_weighted_sum_plain, trimmed_sum, trimmed_sum_plain,
};
use sealroom_mpc::validity::{
    UpdateBounds, WEIGHTED_NORM_BOUNDED_SUM, WEIGHTED_NORM_BOUNDED_SUM_VERSION,
    weighted_norm_bounded_sum,
};
use sealroom_node::grpc::pb::RoundOutcome;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::{
    EngineProgram, InputError, InputSource, TaskCatalog, TaskDef, TaskPlanner, TaskShape,
};
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::evidence::FederationKeys;
use sealroom_protocol::pb::SitOutReason;
use serde::{Deserialize, Serialize};

use crate::fl::{
    Dataset, DatasetKind, Defences, EncodedUpdate, FeatureMoments, FedAvgSpec, FlError, Model,
    ModelKind, RobustAggregation, Standardizer, TrainConfig, derive_seed, dirichlet_split,
    encode_unweighted_update, encode_update, load, train_test_split,
};
use crate::round::{RoundFailure, completed_round, completed_round_excluding};

/// The task of a FedAvg round.
pub const FEDAVG_TASK: &str = "fedavg";
/// The task of the feature-moments round that precedes a training.
pub const MOMENTS_TASK: &str = "feature-moments";

/// How the bundled data sets are split between a test set and the clients:
/// public, so every client derives its own part and the driver the test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// The data set.
    pub dataset: DatasetKind,
    /// Fraction of each class held out for testing.
    pub test_fraction: f64,
    /// Dirichlet concentration of the clients' label skew (small = non-IID).
    pub alpha: f64,
    /// Fewest training rows per client.
    pub min_rows: usize,
    /// Seed of the split (public).
    pub seed: u64,
}

impl SplitSpec {
    /// The held-out test split and the training split.
    pub fn train_test(&self) -> Result<(Dataset, Dataset), FlError> {
        let data = load(self.dataset);
        let (train, test) = train_test_split(
            &data,
            self.test_fraction,
            derive_seed(self.seed, "test split", &[]),
        )?;
        Ok((train, test))
    }

    /// Part `part` of `parts` of the training split (unstandardized).
    pub fn client_part(&self, part: usize, parts: usize) -> Result<Dataset, FlError> {
        let (train, _) = self.train_test()?;
        let split = dirichlet_split(
            &train.y,
            train.n_classes,
            parts,
            self.alpha,
            self.min_rows.max(1),
            derive_seed(self.seed, "dirichlet", &[]),
        )?;
        let rows = split.get(part).ok_or(FlError::ShapeMismatch {
            what: "client part (must be below the number of parts)",
            expected: parts,
            actual: part,
        })?;
        train.select(rows)
    }
}

/// Parameters of a [`MOMENTS_TASK`] round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MomentsParams {
    /// The clients' table holding the training data.
    pub table: String,
    /// How the data is split.
    pub split: SplitSpec,
    /// Features of the data set (fixes the vector length).
    pub n_features: usize,
}

/// The quantization of the moments round: sums of up to 2^31 at 16
/// fractional bits (49-bit values, so up to 16 clients sum exactly in f64).
pub fn moments_spec() -> QuantSpec {
    QuantSpec::new(16, 2_147_483_647.0, 49).expect("a valid fixed spec: 2^31·2^16 < 2^48")
}

/// Parameters of a [`FEDAVG_TASK`] round: everything a client needs to
/// compute its update, signed by the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedAvgParams {
    /// The clients' table holding the training data.
    pub table: String,
    /// How the data is split.
    pub split: SplitSpec,
    /// Training round, from 1.
    pub training_round: u64,
    /// The model kind.
    pub model: ModelKind,
    /// Features.
    pub n_features: usize,
    /// Classes.
    pub n_classes: usize,
    /// The global model's parameters this round starts from.
    pub global: Vec<f64>,
    /// Feature standardization (from the moments round).
    pub mean: Vec<f64>,
    /// Feature standardization (from the moments round).
    pub std: Vec<f64>,
    /// Local training; the seed is combined with the round and client part.
    pub train: TrainConfig,
    /// Quantization and weighting of the deltas.
    pub fedavg: FedAvgSpec,
    /// Whether clients carry their quantization residual between rounds.
    pub error_feedback: bool,
    /// Input validity (issue #15): when set, the round is an engine round
    /// in which the helpers leave out every update whose unweighted delta
    /// has an L2 norm above this bound (in parameter units, exact on the
    /// quantized integers) or whose weight is outside `0..=max_weight`
    /// ([`sealroom_mpc::validity::weighted_norm_bounded_sum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_bound: Option<f64>,
    /// Input validity: when set, the helpers also leave out every update
    /// with one delta element above this bound in absolute value (in
    /// parameter units, exact on the quantized integers). Either bound
    /// makes the round an engine round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linf_bound: Option<f64>,
    /// Robust aggregation inside the engine (clipping, trimmed mean,
    /// median): clients then upload their unweighted quantized delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust: Option<RobustAggregation>,
}

/// What the helpers compute in a FedAvg round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Aggregator {
    /// The plain secure sum of weighted updates.
    Sum,
    /// The sum of the weighted updates within the bounds.
    Bounded(UpdateBounds),
    /// The clipped weighted sum of the updates within the hard bounds.
    Clipped(ClipBounds),
    /// The coordinate-wise trimmed sum (trimmed mean or median).
    Trimmed(RobustAggregation),
    /// The sum of the updates multi-Krum selects.
    Krum(KrumParams),
    /// DP-FedAvg: the clipped sum on a lattice, noised.
    Dp(DpClip),
}

impl FedAvgParams {
    /// What the helpers compute, from the signed parameters.
    fn aggregator(&self) -> Result<Aggregator, String> {
        Defences {
            l2_bound: self.l2_bound,
            linf_bound: self.linf_bound,
            robust: self.robust,
        }
        .aggregator(&self.fedavg)
    }
}

/// The engine programs of the defences, shared by the bundled-data, table
/// and framework trainings, so each runs the same programs.
impl Defences {
    /// What the helpers compute, with `fedavg`'s quantization.
    pub(crate) fn aggregator(&self, fedavg: &FedAvgSpec) -> Result<Aggregator, String> {
        let Some(robust) = self.robust else {
            return Ok(self
                .bounds(fedavg)?
                .map_or(Aggregator::Sum, Aggregator::Bounded));
        };
        robust.check().map_err(|e| e.to_string())?;
        match robust {
            RobustAggregation::Clip { norm } => {
                let l2 = self.l2_bound.ok_or(
                    "clipping needs an l2_bound (at least the clip norm): updates above it are \
                     left out, those between the clip norm and it are scaled down",
                )?;
                let bounds = ClipBounds {
                    clip_sq: quanta_sq(fedavg, norm, "the clip norm")?,
                    l2_sq: quanta_sq(fedavg, l2, "l2_bound")?,
                    linf_sq: self
                        .linf_bound
                        .map(|b| quanta_sq(fedavg, b, "linf_bound"))
                        .transpose()?,
                    max_weight: fedavg.max_weight,
                };
                bounds.check().map_err(|e| e.to_string())?;
                Ok(Aggregator::Clipped(bounds))
            }
            RobustAggregation::MultiKrum {
                byzantine,
                selected,
            } => {
                if self.linf_bound.is_some() {
                    return Err(format!("{robust} takes no linf_bound"));
                }
                let l2 = self.l2_bound.ok_or(
                    "multi-Krum needs an l2_bound: updates above it enter the selection as zero",
                )?;
                let l2_sq = quanta_sq(fedavg, l2, "l2_bound")?;
                if l2_sq >= 1 << 50 {
                    return Err("l2_bound must be below 2^25 delta steps for multi-Krum".into());
                }
                Ok(Aggregator::Krum(KrumParams {
                    byzantine,
                    selected,
                    l2_sq,
                }))
            }
            RobustAggregation::TrimmedMean { .. } | RobustAggregation::Median => {
                if self.l2_bound.is_some() || self.linf_bound.is_some() {
                    return Err(format!(
                        "the {robust} takes no l2_bound or linf_bound: it is robust by ranks"
                    ));
                }
                Ok(Aggregator::Trimmed(robust))
            }
        }
    }

    /// The engine's bounds, if the round checks any.
    fn bounds(&self, fedavg: &FedAvgSpec) -> Result<Option<UpdateBounds>, String> {
        if self.l2_bound.is_none() && self.linf_bound.is_none() {
            return Ok(None);
        }
        Ok(Some(UpdateBounds {
            l2_sq: self
                .l2_bound
                .map(|b| quanta_sq(fedavg, b, "l2_bound"))
                .transpose()?,
            linf_sq: self
                .linf_bound
                .map(|b| quanta_sq(fedavg, b, "linf_bound"))
                .transpose()?,
            max_weight: fedavg.max_weight,
        }))
    }
}

/// A bound in delta quanta of `fedavg`, squared: `⌊(bound / step)²⌋`.
pub(crate) fn quanta_sq(fedavg: &FedAvgSpec, bound: f64, what: &str) -> Result<u128, String> {
    let step = fedavg.delta_spec().map_err(|e| e.to_string())?.step();
    let q = bound / step;
    if !(bound.is_finite() && bound > 0.0 && q * q < 2f64.powi(80)) {
        return Err(format!(
            "{what} {bound} must be positive and below 2^40 delta steps"
        ));
    }
    Ok((q * q).floor() as u128)
}

/// The engine programs of FedAvg rounds, one per [`Aggregator`] that runs
/// in the engine: each builds its program from the signed parameters and
/// refuses a round whose parameters choose another.
struct FedAvgEngine {
    name: &'static str,
    version: u32,
}

impl FedAvgEngine {
    const ALL: [FedAvgEngine; 5] = [
        FedAvgEngine {
            name: DP_CLIPPED_SUM,
            version: DP_CLIPPED_SUM_VERSION,
        },
        FedAvgEngine {
            name: WEIGHTED_NORM_BOUNDED_SUM,
            version: WEIGHTED_NORM_BOUNDED_SUM_VERSION,
        },
        FedAvgEngine {
            name: CLIPPED_SUM,
            version: CLIPPED_SUM_VERSION,
        },
        FedAvgEngine {
            name: TRIMMED_SUM,
            version: TRIMMED_SUM_VERSION,
        },
        FedAvgEngine {
            name: MULTI_KRUM,
            version: MULTI_KRUM_VERSION,
        },
    ];
}

impl Aggregator {
    /// The engine program this aggregator runs, if any.
    pub(crate) fn program_name(&self) -> Option<&'static str> {
        match self {
            Aggregator::Sum => None,
            Aggregator::Bounded(_) => Some(WEIGHTED_NORM_BOUNDED_SUM),
            Aggregator::Clipped(_) => Some(CLIPPED_SUM),
            Aggregator::Trimmed(_) => Some(TRIMMED_SUM),
            Aggregator::Krum(_) => Some(MULTI_KRUM),
            Aggregator::Dp(_) => Some(DP_CLIPPED_SUM),
        }
    }

    /// Its program for `clients` uploads of `len` elements.
    fn program(&self, clients: usize, len: usize) -> Result<Program, String> {
        match *self {
            Aggregator::Sum => Err(sealroom_mpc::program::ProgramError::Unsupported(
                "a plain FedAvg round runs no engine program",
            )),
            Aggregator::Bounded(bounds) => weighted_norm_bounded_sum(clients, len, bounds),
            Aggregator::Clipped(bounds) => clipped_weighted_sum(clients, len, bounds),
            Aggregator::Trimmed(robust) => {
                trimmed_sum(clients, len, len.saturating_sub(1), robust.trim(clients))
            }
            Aggregator::Krum(params) => multi_krum(clients, len, params),
            Aggregator::Dp(dp) => dp_clipped_sum(clients, len, dp),
        }
        .map_err(|e| e.to_string())
    }
}

impl EngineProgram for FedAvgEngine {
    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        _keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        let aggregator = fedavg_aggregator(descriptor)?;
        if aggregator.program_name() != Some(self.name) {
            return Err(format!(
                "the round's parameters choose {:?}, not {}",
                aggregator.program_name(),
                self.name
            ));
        }
        aggregator.program(clients, descriptor.vector_len())
    }
}

/// What the helpers compute in a FedAvg engine round over Z_2^32, from its
/// signed parameters (a bundled-data, a table or a framework's training).
fn fedavg_aggregator(descriptor: &VerifiedDescriptor) -> Result<Aggregator, String> {
    let task = descriptor.task_name();
    use crate::table_training::TABLE_FEDAVG_TASK;
    use crate::vector_fedavg::VECTOR_FEDAVG_TASK;
    if ![FEDAVG_TASK, TABLE_FEDAVG_TASK, VECTOR_FEDAVG_TASK].contains(&task) {
        return Err(format!("not a FedAvg round: {task:?}"));
    }
    sealroom_node::tasks::require_z32(descriptor)?;
    let params = descriptor.task_params();
    match task {
        FEDAVG_TASK => parse::<FedAvgParams>(params, "FedAvg")?.aggregator(),
        TABLE_FEDAVG_TASK => {
            parse::<crate::table_training::FedAvgParams>(params, "table FedAvg")?.aggregator()
        }
        _ => {
            parse::<crate::vector_fedavg::VectorFedAvgParams>(params, "vector FedAvg")?.aggregator()
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(params: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(params).map_err(|e| format!("malformed {what} parameters: {e}"))
}

struct MomentsPlanner;

impl TaskPlanner for MomentsPlanner {
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        let p: MomentsParams = parse(params, "moments")?;
        if p.n_features == 0 || p.n_features > 10_000 {
            return Err(format!("{} features is outside 1..=10000", p.n_features));
        }
        Ok(TaskShape {
            engine: None,
            vector_len: 1 + 2 * p.n_features as u64,
            spec: moments_spec(),
        })
    }
}

struct FedAvgPlanner;

impl TaskPlanner for FedAvgPlanner {
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        let p: FedAvgParams = parse(params, "FedAvg")?;
        p.train.check().map_err(|e| e.to_string())?;
        let n_params = p.model.n_params(p.n_features, p.n_classes);
        if p.global.len() != n_params {
            return Err(format!(
                "the global model has {} parameters; a {} with {} features and {} classes has {n_params}",
                p.global.len(),
                p.model,
                p.n_features,
                p.n_classes
            ));
        }
        let spec = p.fedavg.wire_spec().map_err(|e| e.to_string())?;
        let engine = p.aggregator()?.program_name().map(str::to_string);
        Ok(TaskShape {
            engine,
            vector_len: FedAvgSpec::wire_len(n_params) as u64,
            spec,
        })
    }
}

/// Registers the training tasks with a coordinator's catalog.
pub fn register_tasks(catalog: &mut TaskCatalog) {
    for engine in FedAvgEngine::ALL {
        catalog.register_program(Arc::new(engine));
    }
    catalog.register(TaskDef {
        engine: None,
        name: MOMENTS_TASK.into(),
        default_len: 0,
        fixed_len: true,
        spec: None,
        wide: true,
        planner: Some(Arc::new(MomentsPlanner)),
        followup: None,
    });
    catalog.register(TaskDef {
        engine: None,
        name: FEDAVG_TASK.into(),
        default_len: 0,
        fixed_len: true,
        spec: None,
        wide: false,
        planner: Some(Arc::new(FedAvgPlanner)),
        followup: None,
    });
}

/// Where a client's training data lives: part `part` of `parts` of a
/// bundled data set (the demo's silos).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingData {
    /// The data set.
    pub dataset: DatasetKind,
    /// This client's part.
    pub part: usize,
    /// Number of parts.
    pub parts: usize,
}

/// Records, for demos and tests only, the update each client fed into the
/// secure layer, so a plaintext FedAvg of the very same updates can be
/// compared with the secure result. A real deployment has no tap.
#[derive(Clone, Default)]
pub struct UpdateTap {
    updates: Arc<Mutex<BTreeMap<(u64, String), EncodedUpdate>>>,
}

impl std::fmt::Debug for UpdateTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpdateTap(<redacted>)")
    }
}

impl UpdateTap {
    fn record(&self, round_id: u64, client: &str, update: EncodedUpdate) {
        if let Ok(mut map) = self.updates.lock() {
            map.insert((round_id, client.to_string()), update);
        }
    }

    /// Removes and returns the updates recorded for `round_id` from `clients`
    /// (in the given order); `None` if one is missing.
    pub fn take(&self, round_id: u64, clients: &[String]) -> Option<Vec<EncodedUpdate>> {
        let mut map = self.updates.lock().ok()?;
        let out: Option<Vec<EncodedUpdate>> = clients
            .iter()
            .map(|c| map.remove(&(round_id, c.clone())))
            .collect();
        map.retain(|(r, _), _| *r > round_id);
        out
    }
}

/// A client's input for the training tasks.
pub struct TrainingInput {
    client: String,
    tables: BTreeMap<String, TrainingData>,
    feedback: Mutex<BTreeMap<String, ErrorFeedback>>,
    tap: Option<UpdateTap>,
}

impl std::fmt::Debug for TrainingInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingInput")
            .field("client", &self.client)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TrainingInput {
    /// Client `client`'s training tables, by name.
    pub fn new(client: impl Into<String>, tables: BTreeMap<String, TrainingData>) -> Self {
        TrainingInput {
            client: client.into(),
            tables,
            feedback: Mutex::new(BTreeMap::new()),
            tap: None,
        }
    }

    /// Records every update in `tap` (demos and tests only).
    pub fn with_tap(mut self, tap: UpdateTap) -> Self {
        self.tap = Some(tap);
        self
    }

    fn local_rows(&self, table: &str, split: &SplitSpec) -> Result<Dataset, InputError> {
        let data = self.tables.get(table).ok_or_else(|| {
            InputError::new(
                SitOutReason::NoSuchTable,
                table,
                format!("this client has no training table {table:?}"),
            )
        })?;
        if data.dataset != split.dataset {
            return Err(InputError::new(
                SitOutReason::InvalidParameters,
                table,
                format!(
                    "table {table:?} holds the {} data set, the round trains on {}",
                    data.dataset, split.dataset
                ),
            ));
        }
        split
            .client_part(data.part, data.parts)
            .map_err(|e| failed(format!("table {table:?}: {e}")))
    }

    fn moments(&self, params: &MomentsParams) -> Result<Vec<f64>, InputError> {
        let rows = self.local_rows(&params.table, &params.split)?;
        if rows.n_features() != params.n_features {
            return Err(InputError::new(
                SitOutReason::InvalidParameters,
                &params.table,
                format!(
                    "table {:?} has {} features, the round expects {}",
                    params.table,
                    rows.n_features(),
                    params.n_features
                ),
            ));
        }
        let m = FeatureMoments::of(&rows.x);
        let mut v = Vec::with_capacity(1 + 2 * params.n_features);
        v.push(m.count as f64);
        v.extend(m.sums.iter());
        v.extend(m.sums_of_squares.iter());
        Ok(v)
    }

    fn fedavg(&self, round_id: u64, p: &FedAvgParams) -> Result<Vec<f64>, InputError> {
        let mut rows = self.local_rows(&p.table, &p.split)?;
        let invalid = |e: String| InputError::new(SitOutReason::InvalidParameters, "", e);
        let standardizer = Standardizer::from_mean_std(p.mean.clone().into(), p.std.clone().into())
            .map_err(|e| invalid(format!("standardization: {e}")))?;
        standardizer
            .apply(&mut rows.x)
            .map_err(|e| failed(format!("standardization: {e}")))?;
        let global = Model::from_params(p.model, p.n_features, p.n_classes, p.global.clone())
            .map_err(|e| invalid(format!("global model: {e}")))?;
        let part = self.tables.get(&p.table).map_or(0, |d| d.part as u64);
        let train = TrainConfig {
            seed: derive_seed(p.train.seed, "local training", &[p.training_round, part]),
            ..p.train
        };
        let local = global
            .train_local(&rows.x, &rows.y, &train)
            .map_err(|e| failed(format!("local training: {e}")))?;
        // Robust aggregation clips or ranks the unweighted deltas.
        let encode = if p.robust.is_some() {
            encode_unweighted_update
        } else {
            encode_update
        };
        let update = if p.error_feedback {
            let mut feedback = self
                .feedback
                .lock()
                .map_err(|_| failed("the error-feedback state is poisoned".to_string()))?;
            let residual = feedback
                .entry(p.table.clone())
                .or_insert_with(|| ErrorFeedback::new(global.n_params()));
            if residual.len() != global.n_params() {
                *residual = ErrorFeedback::new(global.n_params());
            }
            encode(&p.fedavg, &global, &local, rows.n_rows(), Some(residual))
        } else {
            encode(&p.fedavg, &global, &local, rows.n_rows(), None)
        }
        .map_err(|e| failed(format!("encoding the update: {e}")))?;
        let values = update.values().to_vec();
        // How many of its values were clipped is a statistic of this
        // client's data: it is not logged (the tap below is a demo's).
        tracing::info!(round = round_id, "FedAvg update encoded");
        if let Some(tap) = &self.tap {
            tap.record(round_id, &self.client, update);
        }
        Ok(values)
    }
}

impl InputSource for TrainingInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        let invalid = |e: String| InputError::new(SitOutReason::InvalidParameters, "", e);
        match descriptor.task_name() {
            MOMENTS_TASK => {
                self.moments(&parse(descriptor.task_params(), "moments").map_err(invalid)?)
            }
            FEDAVG_TASK => self.fedavg(
                descriptor.round_id(),
                &parse(descriptor.task_params(), "FedAvg").map_err(invalid)?,
            ),
            other => Err(InputError::new(
                SitOutReason::UnsupportedTask,
                other,
                format!("not a training task: {other:?}"),
            )),
        }
    }
}

/// This client's own computation failed (the reason it gives says no more).
fn failed(detail: String) -> InputError {
    InputError::new(SitOutReason::InputFailed, "", detail)
}

/// The pooled standardization from the secure sum of the moments vectors.
pub fn standardizer_from_sum(sum: &[f64], n_features: usize) -> Result<Standardizer, FlError> {
    if sum.len() != 1 + 2 * n_features {
        return Err(FlError::ShapeMismatch {
            what: "moments sum length",
            expected: 1 + 2 * n_features,
            actual: sum.len(),
        });
    }
    let count = sum[0];
    if !(count >= 1.0 && count.fract() == 0.0) {
        return Err(FlError::Empty {
            what: "pooled training set",
        });
    }
    Standardizer::from_moments(
        count as usize,
        &ndarray::Array1::from(sum[1..=n_features].to_vec()),
        &ndarray::Array1::from(sum[1 + n_features..].to_vec()),
    )
}

/// Test accuracy and loss of `model` on standardized `x`.
pub fn evaluate(model: &Model, x: &Array2<f64>, y: &ndarray::Array1<usize>) -> (f64, f64) {
    (
        model.accuracy(x, y).unwrap_or(f64::NAN),
        model.loss(x, y).unwrap_or(f64::NAN),
    )
}

/// What a training runs: the data, the model and the rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingPlan {
    /// The clients' table holding the training data.
    pub table: String,
    /// How the data is split (the driver evaluates on its test part).
    pub split: SplitSpec,
    /// The model.
    pub model: ModelKind,
    /// FedAvg rounds.
    pub rounds: usize,
    /// Local training per round.
    pub train: TrainConfig,
    /// Quantization and weighting of the deltas.
    pub fedavg: FedAvgSpec,
    /// Error feedback on the quantization residual.
    pub error_feedback: bool,
    /// Seed of the initial model (public).
    pub init_seed: u64,
    /// The clients invited, by name (all of the federation's when empty).
    pub clients: Vec<String>,
    /// Input validity: the L2 bound of an update's delta (see
    /// [`FedAvgParams::l2_bound`]); `None` sums every update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_bound: Option<f64>,
    /// Input validity: the L∞ bound of an update's delta (see
    /// [`FedAvgParams::linf_bound`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linf_bound: Option<f64>,
    /// Robust aggregation inside the engine (see
    /// [`FedAvgParams::robust`]); `None` averages every (valid) update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust: Option<RobustAggregation>,
}

/// One FedAvg round as the driver saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainingRound {
    /// Training round, from 1.
    pub round: usize,
    /// The federation's round id.
    pub round_id: u64,
    /// Clients whose updates the secure sum includes.
    pub included: Vec<String>,
    /// Clients whose upload failed the helpers' sketch check in an earlier
    /// attempt at this round (engine rounds): the round ran again without
    /// them, and the training goes on without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// With an L2 or L∞ bound: the included clients whose update the
    /// helpers left out of the sum (beyond a bound, or a weight out of
    /// range).
    pub rejected: Vec<String>,
    /// Per rejected client, the checks its update failed (`"l2"`,
    /// `"linf"`, `"weight"`): all the round reveals about it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_checks: BTreeMap<String, Vec<String>>,
    /// Total weight (samples, capped per client) of the updates averaged;
    /// with a trimmed mean or median (unweighted), the number of values
    /// averaged per parameter.
    pub total_weight: u64,
    /// Test accuracy of the new global model.
    pub accuracy: f64,
    /// Test loss of the new global model.
    pub loss: f64,
    /// Round latency at the coordinator, ms.
    pub duration_ms: u64,
    /// Whether a plaintext FedAvg of the same quantized updates gave the
    /// same model bit for bit (`None` without a tap).
    pub plaintext_identical: Option<bool>,
    /// Delta values clipped to the round's clip, summed over the included
    /// clients (known to the demo's tap only; each client logs its own).
    pub clipped: Option<usize>,
}

/// A finished training.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingReport {
    /// The plan run.
    pub plan: TrainingPlan,
    /// Model parameters.
    pub n_params: usize,
    /// Test accuracy and loss of the initial model.
    pub initial: (f64, f64),
    /// Every round.
    pub rounds: Vec<TrainingRound>,
    /// The moments round's latency, ms.
    pub moments_ms: u64,
    /// The final global model's parameters.
    #[serde(skip)]
    pub model: Option<Model>,
}

/// Why a training stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingError {
    /// The data, model or encoding was refused.
    #[error(transparent)]
    Fl(#[from] FlError),
    /// The coordinator refused or failed a request.
    #[error("round request refused: {0}")]
    Request(String),
    /// A round aborted (its signed evidence is in the coordinator's store).
    #[error("round {round_id} aborted ({reason}): {detail}")]
    Aborted {
        /// Round id.
        round_id: u64,
        /// Abort reason.
        reason: String,
        /// Detail.
        detail: String,
    },
    /// The training spec was refused.
    #[error("training spec: {0}")]
    Spec(String),
    /// The secure result does not have the shape the round asked for.
    #[error("round {round_id}: {detail}")]
    Result {
        /// Round id.
        round_id: u64,
        /// What was wrong.
        detail: String,
    },
}

impl From<RoundFailure> for TrainingError {
    fn from(f: RoundFailure) -> Self {
        match f {
            RoundFailure::Request(message) => TrainingError::Request(message),
            RoundFailure::Aborted {
                round_id,
                reason,
                detail,
            } => TrainingError::Aborted {
                round_id,
                reason,
                detail,
            },
        }
    }
}

async fn run<R: RoundRunner>(
    runner: &R,
    task: &str,
    params: &impl Serialize,
    clients: &[String],
) -> Result<RoundOutcome, TrainingError> {
    Ok(completed_round(runner, task, params, clients, 0).await?)
}

/// A training in progress: the driver's side. [`Trainer::start`] runs the
/// moments round; each [`Trainer::round`] one FedAvg round.
#[derive(Debug)]
pub struct Trainer {
    plan: TrainingPlan,
    invited: Vec<String>,
    standardizer: Standardizer,
    test: Dataset,
    global: Model,
    initial: (f64, f64),
    rounds: Vec<TrainingRound>,
    moments_ms: u64,
}

impl Trainer {
    /// Runs the moments round over `plan.clients` (or, when empty, over
    /// `clients`: the federation's client names in directory order, which
    /// name the included indices).
    pub async fn start<R: RoundRunner>(
        runner: &R,
        plan: &TrainingPlan,
        clients: &[String],
    ) -> Result<Trainer, TrainingError> {
        let invited: Vec<String> = if plan.clients.is_empty() {
            clients.to_vec()
        } else {
            plan.clients.clone()
        };
        let (_, mut test) = plan.split.train_test()?;
        let n_features = test.n_features();
        let moments = run(
            runner,
            MOMENTS_TASK,
            &MomentsParams {
                table: plan.table.clone(),
                split: plan.split,
                n_features,
            },
            &invited,
        )
        .await?;
        let standardizer = standardizer_from_sum(&moments.values, n_features)?;
        standardizer.apply(&mut test.x)?;
        let global = Model::new(plan.model, n_features, test.n_classes, plan.init_seed)?;
        let initial = evaluate(&global, &test.x, &test.y);
        Ok(Trainer {
            plan: plan.clone(),
            invited,
            standardizer,
            test,
            global,
            initial,
            rounds: Vec::new(),
            moments_ms: moments.duration_ms,
        })
    }

    /// The current global model.
    pub fn global(&self) -> &Model {
        &self.global
    }

    /// The pooled standardization the moments round revealed.
    pub fn standardizer(&self) -> &Standardizer {
        &self.standardizer
    }

    /// Test accuracy and loss of the initial model.
    pub fn initial(&self) -> (f64, f64) {
        self.initial
    }

    /// Runs the next FedAvg round. With a `tap`, the secure model is also
    /// compared with a plaintext FedAvg of the same updates.
    pub async fn round<R: RoundRunner>(
        &mut self,
        runner: &R,
        tap: Option<&UpdateTap>,
    ) -> Result<TrainingRound, TrainingError> {
        let round = self.rounds.len() + 1;
        let params = FedAvgParams {
            table: self.plan.table.clone(),
            split: self.plan.split,
            training_round: round as u64,
            model: self.plan.model,
            n_features: self.global.n_features(),
            n_classes: self.global.n_classes(),
            global: self.global.params().to_vec(),
            mean: self.standardizer.mean.to_vec(),
            std: self.standardizer.std.to_vec(),
            train: self.plan.train,
            fedavg: self.plan.fedavg,
            error_feedback: self.plan.error_feedback,
            l2_bound: self.plan.l2_bound,
            linf_bound: self.plan.linf_bound,
            robust: self.plan.robust,
        };
        // A client whose upload fails the engine's sketch check is left out
        // (the round runs again without it) for the rest of the training.
        let (outcome, left_out) =
            completed_round_excluding(runner, FEDAVG_TASK, &params, &mut self.invited).await?;
        let included: Vec<String> = outcome
            .included_clients
            .iter()
            .map(|&i| self.invited.get(i as usize).cloned())
            .collect::<Option<_>>()
            .ok_or_else(|| TrainingError::Result {
                round_id: outcome.round_id,
                detail: "an included client index is outside the invited list".into(),
            })?;
        let spec = self.plan.fedavg;
        let round_id = outcome.round_id;
        let aggregator = params
            .aggregator()
            .map_err(|detail| TrainingError::Result { round_id, detail })?;
        let aggregate = Aggregate::of(
            &spec,
            aggregator,
            &outcome,
            &included,
            self.global.n_params(),
        )?;
        let next = aggregate.apply(&spec, &self.global)?;
        let mut clipped = None;
        let plaintext_identical = match tap {
            Some(tap) => Some(match tap.take(round_id, &included) {
                Some(updates) => {
                    clipped = Some(updates.iter().map(|u| u.clipped).sum());
                    let twin = twin_model(&spec, aggregator, &self.global, &updates)?;
                    twin.params().len() == next.params().len()
                        && twin
                            .params()
                            .iter()
                            .zip(next.params())
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                }
                None => false,
            }),
            None => None,
        };
        let Aggregate {
            rejected,
            rejected_checks,
            total_weight,
            ..
        } = aggregate;
        self.global = next;
        let (accuracy, loss) = evaluate(&self.global, &self.test.x, &self.test.y);
        let report = TrainingRound {
            round,
            round_id: outcome.round_id,
            included,
            left_out,
            rejected,
            rejected_checks,
            total_weight,
            accuracy,
            loss,
            duration_ms: outcome.duration_ms,
            plaintext_identical,
            clipped,
        };
        self.rounds.push(report.clone());
        Ok(report)
    }

    /// The report of the rounds run so far.
    pub fn report(&self) -> TrainingReport {
        TrainingReport {
            plan: self.plan.clone(),
            n_params: self.global.n_params(),
            initial: self.initial,
            rounds: self.rounds.clone(),
            moments_ms: self.moments_ms,
            model: Some(self.global.clone()),
        }
    }
}

/// Per rejected client, the checks its update failed.
type FailedChecks = BTreeMap<String, Vec<String>>;

/// A FedAvg round's revealed aggregate, as the driver applies it.
pub(crate) struct Aggregate {
    /// The wire sum ([`crate::fl::apply_sum`]) or a robust numerator and
    /// denominator ([`crate::fl::apply_robust_to`]).
    values: AggregateValues,
    pub(crate) rejected: Vec<String>,
    pub(crate) rejected_checks: FailedChecks,
    pub(crate) total_weight: u64,
}

enum AggregateValues {
    Sum(Vec<f64>),
    Robust { numer: Vec<i128>, denom: u128 },
}

impl Aggregate {
    /// Reads a completed round's outputs for `aggregator` over a model of
    /// `n_params` parameters.
    pub(crate) fn of(
        spec: &FedAvgSpec,
        aggregator: Aggregator,
        outcome: &RoundOutcome,
        included: &[String],
        n_params: usize,
    ) -> Result<Aggregate, TrainingError> {
        let round_id = outcome.round_id;
        let bad = |detail: String| TrainingError::Result { round_id, detail };
        let wire = spec.wire_spec()?;
        let dequantize = |sums: &[i128]| {
            sums.iter()
                .map(|&q| {
                    i64::try_from(q)
                        .map(|q| wire.dequantize(q))
                        .map_err(|_| bad("an engine output does not fit 64 bits".into()))
                })
                .collect::<Result<Vec<f64>, _>>()
        };
        let weight_of = |values: &[f64]| values.last().map_or(0.0, |w| w / wire.step()) as u64;
        Ok(match aggregator {
            Aggregator::Sum => Aggregate {
                total_weight: weight_of(&outcome.values),
                values: AggregateValues::Sum(outcome.values.clone()),
                rejected: Vec::new(),
                rejected_checks: BTreeMap::new(),
            },
            Aggregator::Bounded(bounds) => {
                let (sums, rejected, rejected_checks) =
                    engine_verdicts(outcome, included, &bounds.checks())?;
                let values = dequantize(&sums)?;
                Aggregate {
                    total_weight: weight_of(&values),
                    values: AggregateValues::Sum(values),
                    rejected,
                    rejected_checks,
                }
            }
            Aggregator::Clipped(bounds) => {
                let (mut sums, rejected, rejected_checks) =
                    engine_verdicts(outcome, included, &bounds.checks())?;
                if sums.len() != n_params + 1 {
                    return Err(bad(format!(
                        "{} clipped sums for {n_params} parameters and the weight",
                        sums.len()
                    )));
                }
                let weight = sums.pop().unwrap_or(0);
                let weight = u64::try_from(weight)
                    .map_err(|_| bad(format!("total weight {weight} is negative")))?;
                Aggregate {
                    values: AggregateValues::Robust {
                        numer: sums,
                        denom: u128::from(weight) << SCALE_BITS,
                    },
                    rejected,
                    rejected_checks,
                    total_weight: weight,
                }
            }
            Aggregator::Krum(params) => {
                let (sums, rejected, rejected_checks) =
                    engine_verdicts(outcome, included, &["l2"])?;
                if sums.len() != n_params {
                    return Err(bad(format!(
                        "{} multi-Krum sums for {n_params} parameters",
                        sums.len()
                    )));
                }
                Aggregate {
                    values: AggregateValues::Robust {
                        numer: sums,
                        denom: params.selected as u128,
                    },
                    // Beyond the hard bound: entered the selection as zero.
                    rejected,
                    rejected_checks,
                    total_weight: params.selected as u64,
                }
            }
            Aggregator::Dp(dp) => {
                let noised = sealroom_protocol::machine::unpack_outputs(&outcome.outputs)
                    .ok_or_else(|| bad("the engine outputs are not whole 16-byte values".into()))?;
                if noised.len() != n_params {
                    return Err(bad(format!(
                        "{} noised sums for {n_params} parameters",
                        noised.len()
                    )));
                }
                // Lattice units of 2^shift quanta; the denominator is the
                // number of clients in the round (public).
                let n = included.len() as u64;
                Aggregate {
                    values: AggregateValues::Robust {
                        numer: noised.iter().map(|&v| v << dp.shift).collect(),
                        denom: u128::from(n),
                    },
                    rejected: Vec::new(),
                    rejected_checks: BTreeMap::new(),
                    total_weight: n,
                }
            }
            Aggregator::Trimmed(robust) => {
                let sums = sealroom_protocol::machine::unpack_outputs(&outcome.outputs)
                    .ok_or_else(|| bad("the engine outputs are not whole 16-byte values".into()))?;
                if sums.len() != n_params {
                    return Err(bad(format!(
                        "{} trimmed sums for {n_params} parameters",
                        sums.len()
                    )));
                }
                let n = included.len();
                let kept = (n - 2 * robust.trim(n).min(n / 2)) as u64;
                Aggregate {
                    values: AggregateValues::Robust {
                        numer: sums,
                        denom: u128::from(kept),
                    },
                    rejected: Vec::new(),
                    rejected_checks: BTreeMap::new(),
                    total_weight: kept,
                }
            }
        })
    }

    /// The next global model.
    fn apply(&self, spec: &FedAvgSpec, global: &Model) -> Result<Model, TrainingError> {
        Ok(Model::from_params(
            global.kind(),
            global.n_features(),
            global.n_classes(),
            self.apply_to(spec, global.params())?,
        )?)
    }

    /// The next global parameters.
    pub(crate) fn apply_to(&self, spec: &FedAvgSpec, global: &[f64]) -> Result<Vec<f64>, FlError> {
        match &self.values {
            AggregateValues::Sum(sum) => crate::fl::apply_sum_to(spec, global, sum),
            AggregateValues::Robust { numer, denom } => {
                crate::fl::apply_robust_to(spec, global, numer, *denom)
            }
        }
    }

    /// The aggregate in the form of a revealed sum, `[s_0, …, s_{n−1}, W·step]`
    /// with `global[k] + s_k / W` the next parameter, bit for bit as
    /// [`Aggregate::apply_to`] computes it (what a model export records).
    pub(crate) fn as_sum(&self, spec: &FedAvgSpec) -> Result<Vec<f64>, FlError> {
        match &self.values {
            AggregateValues::Sum(sum) => Ok(sum.clone()),
            AggregateValues::Robust { numer, denom } => {
                let step = spec.delta_spec()?.step();
                // `n as f64 * step` and `denom as f64` are what apply_robust_to
                // computes; scaling by the power of two `step` and back is exact.
                let mut sum: Vec<f64> = numer.iter().map(|&n| n as f64 * step).collect();
                sum.push(*denom as f64 * step);
                Ok(sum)
            }
        }
    }
}

/// Fractional bits of the engine's clipping factor.
const SCALE_BITS: u32 = sealroom_mpc::robust::SCALE_BITS;

/// The plaintext twin of a FedAvg round over `updates` (the included
/// clients' uploads, from the demo's tap): the same integers through the
/// engine program's plaintext reference, applied the same way.
fn twin_model(
    spec: &FedAvgSpec,
    aggregator: Aggregator,
    global: &Model,
    updates: &[EncodedUpdate],
) -> Result<Model, TrainingError> {
    let n_params = global.n_params();
    let robust = |numer: Vec<i128>, denom: u128| -> Result<Model, TrainingError> {
        Ok(Model::from_params(
            global.kind(),
            global.n_features(),
            global.n_classes(),
            crate::fl::apply_robust_to(spec, global.params(), &numer, denom)?,
        )?)
    };
    match aggregator {
        Aggregator::Dp(_) => Err(TrainingError::Spec(
            "a DP round's model carries noise nobody knows: it has no plaintext twin".into(),
        )),
        Aggregator::Sum => Ok(crate::fl::plaintext_fedavg(spec, global, updates)?),
        Aggregator::Bounded(bounds) => {
            let ints = crate::fl::wire_integers(spec, n_params, updates)?;
            let mut sum = vec![0i128; n_params + 1];
            for u in ints.iter().filter(|u| bounded_ok(u, &bounds)) {
                for (s, &q) in sum.iter_mut().zip(u) {
                    *s += i128::from(q);
                }
            }
            // |Σ| ≤ clients · 2^31: fits i64.
            let wire = spec.wire_spec()?;
            let sum: Vec<f64> = sum.iter().map(|&q| wire.dequantize(q as i64)).collect();
            Ok(crate::fl::apply_sum(spec, global, &sum)?)
        }
        Aggregator::Clipped(bounds) => {
            let ints = crate::fl::wire_integers(spec, n_params, updates)?;
            let (mut out, _, _) = clipped_weighted_sum_plain(&ints, &bounds);
            let weight = out.pop().unwrap_or(0).max(0) as u128;
            robust(out, weight << SCALE_BITS)
        }
        Aggregator::Krum(params) => {
            let ints = crate::fl::wire_integers(spec, n_params, updates)?;
            let (sums, _, _) = multi_krum_plain(&ints, &params);
            robust(sums, params.selected as u128)
        }
        Aggregator::Trimmed(r) => {
            let ints = crate::fl::wire_integers(spec, n_params, updates)?;
            let n = ints.len();
            let trim = r.trim(n).min(n / 2);
            robust(
                trimmed_sum_plain(&ints, n_params, trim),
                (n - 2 * trim) as u128,
            )
        }
    }
}

/// Whether a weighted update `[w·q…, w]` passes `bounds` (plaintext).
fn bounded_ok(u: &[i64], bounds: &UpdateBounds) -> bool {
    let Some((&w, wq)) = u.split_last() else {
        return false;
    };
    let w2 = (i128::from(w) * i128::from(w)) as u128;
    let sq = |v: i64| (i128::from(v) * i128::from(v)) as u128;
    let l2 = bounds
        .l2_sq
        .is_none_or(|b| wq.iter().map(|&v| sq(v)).sum::<u128>() <= w2 * b);
    let linf = bounds
        .linf_sq
        .is_none_or(|b| wq.iter().all(|&v| sq(v) <= w2 * b));
    l2 && linf && (0..=i64::from(bounds.max_weight)).contains(&w)
}

/// An engine round's outputs (the sums over the updates within the
/// bounds, one verdict per included client, then each client's verdict per
/// check in `checks` order): returns the sums as signed integers, the
/// rejected clients and the checks each failed. A verdict that is not a
/// bit, or that contradicts its checks, is an error (the helpers signed the
/// same outputs).
fn engine_verdicts(
    outcome: &RoundOutcome,
    included: &[String],
    checks: &[&str],
) -> Result<(Vec<i128>, Vec<String>, FailedChecks), TrainingError> {
    let round_id = outcome.round_id;
    let bad = |detail: String| TrainingError::Result { round_id, detail };
    let outputs = sealroom_protocol::machine::unpack_outputs(&outcome.outputs)
        .ok_or_else(|| bad("the engine outputs are not whole 16-byte values".into()))?;
    // The sums, one verdict per client, then each check's per client.
    let n = outputs
        .len()
        .checked_sub(included.len() * (1 + checks.len()))
        .ok_or_else(|| bad("fewer engine outputs than the clients' verdicts".into()))?;
    let per_check = &outputs[n + included.len()..];
    let mut rejected = Vec::new();
    let mut failed_checks = BTreeMap::new();
    for (c, (name, &verdict)) in included.iter().zip(&outputs[n..]).enumerate() {
        let mut failed = Vec::new();
        for (k, check) in checks.iter().enumerate() {
            match per_check.get(c * checks.len() + k) {
                Some(1) => {}
                Some(0) => failed.push((*check).to_string()),
                other => return Err(bad(format!("check verdict {other:?} is not a bit"))),
            }
        }
        match (verdict, failed.is_empty()) {
            (1, true) => {}
            (0, false) => {
                rejected.push(name.clone());
                failed_checks.insert(name.clone(), failed);
            }
            _ => {
                return Err(bad(format!(
                    "{name}'s verdict {verdict} does not match its checks"
                )));
            }
        }
    }
    Ok((outputs[..n].to_vec(), rejected, failed_checks))
}

/// Runs a whole training: [`Trainer::start`], then `plan.rounds` rounds,
/// calling `on_round` after each.
pub async fn train<R: RoundRunner>(
    runner: &R,
    plan: &TrainingPlan,
    clients: &[String],
    tap: Option<&UpdateTap>,
    mut on_round: impl FnMut(&TrainingRound),
) -> Result<TrainingReport, TrainingError> {
    let mut trainer = Trainer::start(runner, plan, clients).await?;
    for _ in 0..plan.rounds {
        let round = trainer.round(runner, tap).await?;
        on_round(&round);
    }
    Ok(trainer.report())
}
