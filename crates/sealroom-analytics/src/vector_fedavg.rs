//! FedAvg of flat parameter vectors for training frameworks (Flower,
//! PyTorch loops): the framework trains, sealroom averages.
//!
//! The framework's server asks the coordinator for a [`VECTOR_FEDAVG_TASK`]
//! round over the clients it selected; each client hands its trained
//! parameters, the parameters the round started from and its sample count
//! to [`crate::fl::encode_delta`], and the resulting wire vector goes
//! through one secure sum exactly as in [`crate::training`]. The server
//! applies the revealed sum with [`crate::fl::apply_sum_to`]: the weighted
//! average of the quantized deltas, the weight of a client being
//! `min(num_examples, max_weight)` (as `max_weight` in Flower's SecAgg+).
//!
//! The descriptor carries no parameters (a framework ships the global model
//! itself); it names the framework's run and round so that a client can
//! refuse to answer a round it did not train for.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_core::RingKind;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::{TaskCatalog, TaskDef, TaskPlanner, TaskShape};
use serde::{Deserialize, Serialize};

use crate::fl::{Defences, FedAvgSpec, FlError};
use crate::round::completed_round;
use crate::training::{Aggregate, Aggregator, TrainingError};

/// The task of a framework's FedAvg round.
pub const VECTOR_FEDAVG_TASK: &str = "vector-fedavg";

/// Most parameters one round may carry (a 64 Mi-element vector).
pub const MAX_PARAMS: usize = 1 << 26;

/// Parameters of a [`VECTOR_FEDAVG_TASK`] round, signed into its descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFedAvgParams {
    /// The framework's run (e.g. Flower's run id), so rounds of two runs
    /// cannot be confused.
    pub run: String,
    /// The framework's round number.
    pub round: u64,
    /// Parameters of the model (the wire vector has one more value, the weight).
    pub n_params: usize,
    /// Quantization and weighting of the deltas.
    pub fedavg: FedAvgSpec,
    /// Input validity and robust aggregation inside the engine (issue
    /// #15); under `robust` clients upload their unweighted delta.
    #[serde(default, skip_serializing_if = "Defences::is_none")]
    pub defences: Defences,
}

impl VectorFedAvgParams {
    /// What the helpers compute, checked against the quantization.
    pub(crate) fn aggregator(&self) -> Result<Aggregator, String> {
        self.defences.aggregator(&self.fedavg)
    }
}

struct VectorPlanner;

impl TaskPlanner for VectorPlanner {
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        let p: VectorFedAvgParams = serde_json::from_slice(params)
            .map_err(|e| format!("malformed vector FedAvg parameters: {e}"))?;
        if p.n_params == 0 || p.n_params > MAX_PARAMS {
            return Err(format!(
                "{} parameters is outside 1..={MAX_PARAMS}",
                p.n_params
            ));
        }
        if p.run.len() > 256 {
            return Err("the run name is longer than 256 bytes".into());
        }
        let spec = p.fedavg.wire_spec().map_err(|e| e.to_string())?;
        let engine = p.aggregator()?.program_name().map(str::to_string);
        Ok(TaskShape {
            engine,
            vector_len: FedAvgSpec::wire_len(p.n_params) as u64,
            spec,
        })
    }
}

/// Registers [`VECTOR_FEDAVG_TASK`] with a coordinator's catalog.
pub fn register_tasks(catalog: &mut TaskCatalog) {
    catalog.register(TaskDef {
        engine: None,
        name: VECTOR_FEDAVG_TASK.into(),
        default_len: 0,
        fixed_len: true,
        spec: None,
        wide: false,
        planner: Some(Arc::new(VectorPlanner)),
        followup: None,
    });
}

/// The finest FedAvg spec (most bits per delta, up to 24) whose secure sum
/// over `n_clients` updates fits `ring` for deltas clipped at `±clip` and
/// weights capped at `max_weight`; Z_2^32 keeps the upload at 4 bytes per
/// parameter, the size of a float32 update.
pub fn spec_for_clients(
    ring: RingKind,
    n_clients: usize,
    clip: f64,
    max_weight: u32,
) -> Result<FedAvgSpec, FlError> {
    let n = (n_clients.max(1)) as u64;
    let mut last_error = None;
    for bits in (4..=24u8).rev() {
        let spec = FedAvgSpec {
            bits,
            delta_clip: clip,
            max_weight,
        };
        match spec.round_encoding(ring, n) {
            Ok(_) => return Ok(spec),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or(FlError::Empty {
        what: "quantization choices",
    }))
}

/// What a [`VECTOR_FEDAVG_TASK`] round revealed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VectorRound {
    /// The federation's round id.
    pub round_id: u64,
    /// Indices (in the request's client list) of the included clients
    /// (those whose update the round took; see `rejected`).
    pub included: Vec<usize>,
    /// With an L2 or L∞ bound: the included clients (by name) whose update
    /// the helpers left out inside the engine, with the checks it failed
    /// (`"l2"`, `"linf"`, `"weight"`): all the round reveals about it.
    pub rejected: BTreeMap<String, Vec<String>>,
    /// The revealed sum: `n_params` weighted quantized deltas, then the
    /// total weight, each times the step; with robust aggregation, its
    /// numerator and denominator in the same form. Either way
    /// [`crate::fl::apply_sum_to`] gives the new parameters.
    pub sum: Vec<f64>,
    /// Total weight of the updates averaged (capped sample counts); with a
    /// trimmed mean or median the values averaged per parameter, with
    /// multi-Krum the updates selected.
    pub total_weight: u64,
    /// Round latency at the coordinator, ms.
    pub duration_ms: u64,
}

/// Runs one [`VECTOR_FEDAVG_TASK`] round over `clients` (by name) and
/// returns its revealed sum. The caller applies it with
/// [`crate::fl::apply_sum_to`].
pub async fn run_round<R: RoundRunner>(
    runner: &R,
    params: &VectorFedAvgParams,
    clients: &[String],
) -> Result<VectorRound, TrainingError> {
    let aggregator = params.aggregator().map_err(TrainingError::Request)?;
    let outcome = completed_round(runner, VECTOR_FEDAVG_TASK, params, clients, 0).await?;
    let round_id = outcome.round_id;
    let included: Vec<usize> = outcome
        .included_clients
        .iter()
        .map(|&i| i as usize)
        .collect();
    let names = included
        .iter()
        .map(|&i| clients.get(i).cloned())
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| TrainingError::Result {
            round_id,
            detail: "an included client index is outside the invited list".into(),
        })?;
    let aggregate = Aggregate::of(
        &params.fedavg,
        aggregator,
        &outcome,
        &names,
        params.n_params,
    )?;
    let sum = aggregate.as_sum(&params.fedavg)?;
    if sum.len() != FedAvgSpec::wire_len(params.n_params) {
        return Err(TrainingError::Result {
            round_id,
            detail: format!(
                "the sum has {} values, the round asked for {}",
                sum.len(),
                FedAvgSpec::wire_len(params.n_params)
            ),
        });
    }
    Ok(VectorRound {
        round_id,
        included,
        rejected: aggregate.rejected_checks,
        sum,
        total_weight: aggregate.total_weight,
        duration_ms: outcome.duration_ms,
    })
}

/// The quantization step of a spec's wire values (what the sum's values
/// are multiples of).
pub fn wire_step(spec: &FedAvgSpec) -> Result<f64, FlError> {
    Ok(spec.wire_spec()?.step())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::RobustAggregation;

    #[test]
    fn spec_for_clients_keeps_z2_32_and_uses_the_headroom() {
        let ten = spec_for_clients(RingKind::Z2_32, 10, 1.0, 1000).unwrap();
        let hundred = spec_for_clients(RingKind::Z2_32, 100, 1.0, 1000).unwrap();
        assert!(ten.bits > hundred.bits, "{ten:?} {hundred:?}");
        for (spec, n) in [(ten, 10), (hundred, 100)] {
            spec.round_encoding(RingKind::Z2_32, n).unwrap();
            let finer = FedAvgSpec {
                bits: spec.bits + 1,
                ..spec
            };
            assert!(finer.round_encoding(RingKind::Z2_32, n).is_err());
        }
        assert!(spec_for_clients(RingKind::Z2_32, 10, f64::NAN, 1000).is_err());
    }

    /// A round of 10 parameters at 12 bits, without defences.
    fn ten_params() -> VectorFedAvgParams {
        VectorFedAvgParams {
            run: "r".into(),
            round: 1,
            n_params: 10,
            fedavg: FedAvgSpec {
                bits: 12,
                delta_clip: 1.0,
                max_weight: 1000,
            },
            defences: Defences::default(),
        }
    }

    #[test]
    fn planner_refuses_bad_parameters() {
        let ok = ten_params();
        let shape = VectorPlanner
            .plan(&serde_json::to_vec(&ok).unwrap())
            .unwrap();
        assert_eq!(shape.vector_len, 11);
        for bad in [
            VectorFedAvgParams {
                n_params: 0,
                ..ok.clone()
            },
            VectorFedAvgParams {
                n_params: MAX_PARAMS + 1,
                ..ok.clone()
            },
            VectorFedAvgParams {
                fedavg: FedAvgSpec {
                    max_weight: 0,
                    ..ok.fedavg
                },
                ..ok.clone()
            },
        ] {
            assert!(
                VectorPlanner
                    .plan(&serde_json::to_vec(&bad).unwrap())
                    .is_err()
            );
        }
        for junk in [&b"{"[..], b"[]", b"{\"run\":1}", b""] {
            assert!(VectorPlanner.plan(junk).is_err());
        }
    }

    #[test]
    fn defences_choose_the_engine_program_or_are_refused() {
        let plain = ten_params();
        let plan = |d: &str| {
            let p = VectorFedAvgParams {
                defences: Defences::from_json(d).expect("defences"),
                ..plain.clone()
            };
            VectorPlanner.plan(&serde_json::to_vec(&p).unwrap())
        };
        assert_eq!(plan("{}").unwrap().engine, None);
        assert_eq!(
            plan(r#"{"l2_bound": 5.0}"#).unwrap().engine.as_deref(),
            Some("weighted-norm-bounded-sum")
        );
        assert_eq!(
            plan(r#"{"l2_bound": 5.0, "robust": {"kind": "clip", "norm": 0.5}}"#)
                .unwrap()
                .engine
                .as_deref(),
            Some("clipped-weighted-sum")
        );
        let err = plan(r#"{"robust": {"kind": "clip", "norm": 0.5}}"#).unwrap_err();
        assert!(err.contains("l2_bound"), "{err}");
        assert!(Defences::from_json(r#"{"l2": 5.0}"#).is_err());
        assert!(Defences::from_json(r#"{"robust": {"kind": "mean"}}"#).is_err());
        let d = Defences::from_json(r#"{"robust": {"kind": "median"}}"#).unwrap();
        assert_eq!(d.robust, Some(RobustAggregation::Median));
        // Unset defences leave the signed parameters as before (no keys).
        let json = String::from_utf8(serde_json::to_vec(&plain).unwrap()).unwrap();
        assert!(
            !json.contains("bound") && !json.contains("robust"),
            "{json}"
        );
    }
}
