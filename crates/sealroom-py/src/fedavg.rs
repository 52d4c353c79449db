//! FedAvg of flat vectors for frameworks: the client's encoding and the
//! server's application of the revealed sum, as `sealroom-analytics`
//! computes them (`encode_delta`, `apply_sum_to`).

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use sealroom_analytics::fl::Defences;
use sealroom_analytics::fl::{FedAvgSpec, apply_sum_to, encode_delta, encode_unweighted_delta};
use sealroom_core::RingKind;

use crate::errors;

pub(crate) fn spec(bits: u8, clip: f64, max_weight: u32) -> PyResult<FedAvgSpec> {
    let spec = FedAvgSpec {
        bits,
        delta_clip: clip,
        max_weight,
    };
    spec.wire_spec().map_err(|e| {
        errors::config(format!(
            "bits {bits}, clip {clip}, max_weight {max_weight}: {e}"
        ))
    })?;
    Ok(spec)
}

/// The wire vector of one client's update: its delta `local − global`,
/// quantized with `bits`/`clip`, times its weight `min(num_examples,
/// max_weight)` (unless `weighted` is false: a round with robust
/// aggregation, whose helpers clip or rank the unweighted deltas), then the
/// weight. Returns `(vector, clipped)`.
#[pyfunction]
#[pyo3(signature = (global_params, local_params, num_examples, bits, clip, max_weight, weighted = true))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_update<'py>(
    py: Python<'py>,
    global_params: PyReadonlyArray1<'py, f64>,
    local_params: PyReadonlyArray1<'py, f64>,
    num_examples: usize,
    bits: u8,
    clip: f64,
    max_weight: u32,
    weighted: bool,
) -> PyResult<(Bound<'py, PyArray1<f64>>, usize)> {
    let spec = spec(bits, clip, max_weight)?;
    let global = global_params.as_slice()?;
    let local = local_params.as_slice()?;
    let encode = if weighted {
        encode_delta
    } else {
        encode_unweighted_delta
    };
    let update = py
        .detach(|| encode(&spec, global, local, num_examples, None))
        .map_err(|e| {
            errors::error::<errors::DataError>(
                format!("encoding the update: {e}"),
                "encoding",
                None,
            )
        })?;
    Ok((update.values().to_vec().into_pyarray(py), update.clipped))
}

/// Applies a revealed sum to the global parameters: `global + sum[:n] / W`.
#[pyfunction]
#[pyo3(signature = (global_params, sum, bits, clip, max_weight))]
pub(crate) fn apply_sum<'py>(
    py: Python<'py>,
    global_params: PyReadonlyArray1<'py, f64>,
    sum: PyReadonlyArray1<'py, f64>,
    bits: u8,
    clip: f64,
    max_weight: u32,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let spec = spec(bits, clip, max_weight)?;
    let params = apply_sum_to(&spec, global_params.as_slice()?, sum.as_slice()?).map_err(|e| {
        errors::error::<errors::DataError>(
            format!("applying the sum: {e}"),
            "inconsistent_result",
            None,
        )
    })?;
    Ok(params.into_pyarray(py))
}

/// A framework's defences (`{"l2_bound": …, "linf_bound": …, "robust":
/// …}`, JSON), refused naming what is wrong.
pub(crate) fn defences(json: Option<&str>) -> PyResult<Defences> {
    json.map_or(Ok(Defences::default()), |text| {
        Defences::from_json(text).map_err(|e| errors::config(format!("defences: {e}")))
    })
}

/// The finest `(bits, step)` whose secure sum over `n_clients` fits a
/// 32-bit ring for deltas clipped at `clip` and weights up to `max_weight`
/// (4 bytes per parameter on the wire, the size of a float32 update).
#[pyfunction]
#[pyo3(signature = (n_clients, clip, max_weight))]
pub(crate) fn fedavg_spec(n_clients: usize, clip: f64, max_weight: u32) -> PyResult<(u8, f64)> {
    let spec = sealroom_analytics::vector_fedavg::spec_for_clients(
        RingKind::Z2_32,
        n_clients,
        clip,
        max_weight,
    )
    .map_err(|e| {
        errors::config(format!(
            "{n_clients} clients, clip {clip}, max_weight {max_weight}: {e}"
        ))
    })?;
    let step = spec
        .delta_spec()
        .map_err(|e| errors::config(e.to_string()))?
        .step();
    Ok((spec.bits, step))
}

/// The step of one quantized delta value for `bits` and `clip` (a power of
/// two): each client's delta is rounded to a multiple of it.
#[pyfunction]
#[pyo3(signature = (bits, clip))]
pub(crate) fn delta_step(bits: u8, clip: f64) -> PyResult<f64> {
    let spec = FedAvgSpec {
        bits,
        delta_clip: clip,
        max_weight: 1,
    };
    Ok(spec
        .delta_spec()
        .map_err(|e| errors::config(format!("bits {bits}, clip {clip}: {e}")))?
        .step())
}
