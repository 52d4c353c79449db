//! FedAvg of quantized model deltas, encoded so that one secure sum yields
//! the weighted average exactly (see the `fl` module doc for why).
//!
//! A client calls [`encode_update`] and hands [`EncodedUpdate::values`] to
//! the secure layer, which quantizes them with [`FedAvgSpec::wire_spec`]
//! (exactly, as they lie on its grid) and sums them. Whoever holds the
//! revealed sum calls [`apply_sum`]. [`plaintext_fedavg`] is the plaintext
//! twin used by simulations and tests: it sums the same integers the secure
//! layer sums and so produces the same model bit for bit.

use core::fmt;

use sealroom_core::quant::ErrorFeedback;
use sealroom_core::{QuantSpec, RingKind, RoundEncoding, fits};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::FlError;
use super::model::Model;

/// Widest signed value an exact `f64` sum can carry (`2^53` magnitude).
const MAX_WIRE_BITS: u32 = 53;

/// How deltas are quantized and weighted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FedAvgSpec {
    /// Signed width of one quantized delta value (8, 12 or 16 in practice).
    pub bits: u8,
    /// Delta values are clipped to `±delta_clip` before quantizing (clipping
    /// is counted in [`EncodedUpdate::clipped`]).
    pub delta_clip: f64,
    /// A client's weight is `min(n_samples, max_weight)`: capping bounds the
    /// wire width and one client's influence on the average.
    pub max_weight: u32,
}

impl FedAvgSpec {
    /// The spec of one delta value: the finest scale at which `±delta_clip`
    /// fits `bits` signed bits ([`QuantSpec::for_bits`]).
    pub fn delta_spec(&self) -> Result<QuantSpec, FlError> {
        Ok(QuantSpec::for_bits(self.bits, self.delta_clip)?)
    }

    /// The spec of one wire value: the delta spec's scale, with a clip of
    /// `max_weight · max_abs · step` so that every weighted quantized delta
    /// (and the weight itself) lies on its grid, and the fewest bits that
    /// hold it. Refused when that needs more than 53 bits.
    pub fn wire_spec(&self) -> Result<QuantSpec, FlError> {
        if self.max_weight == 0 {
            return Err(FlError::InvalidParameter {
                name: "max_weight",
                value: 0.0,
                expected: "at least 1",
            });
        }
        let delta = self.delta_spec()?;
        let max_abs = delta.max_abs();
        let wire_max = u128::from(self.max_weight) * u128::from(max_abs);
        // Magnitude bits plus the sign bit: 2^(bits−1) − 1 ≥ wire_max.
        let bits_needed = 128 - wire_max.leading_zeros() + 1;
        if bits_needed > MAX_WIRE_BITS {
            return Err(FlError::WireTooWide {
                max_weight: self.max_weight,
                max_abs,
                bits_needed,
                limit: MAX_WIRE_BITS,
            });
        }
        // wire_max < 2^52 and step is a power of two: the clip is exact.
        let clip = wire_max as f64 * delta.step();
        Ok(QuantSpec::new(delta.scale_bits(), clip, bits_needed as u8)?)
    }

    /// The checked encoding of a secure round of up to `n_clients` updates
    /// in `ring` (refused if their sum could overflow or lose exactness).
    pub fn round_encoding(&self, ring: RingKind, n_clients: u64) -> Result<RoundEncoding, FlError> {
        Ok(fits(ring, n_clients, self.wire_spec()?)?)
    }

    /// Values on the wire for a model of `n_params` parameters: one per
    /// parameter plus the weight.
    pub fn wire_len(n_params: usize) -> usize {
        n_params + 1
    }

    fn check(&self) -> Result<(QuantSpec, QuantSpec), FlError> {
        Ok((self.delta_spec()?, self.wire_spec()?))
    }
}

/// Robust aggregation of FedAvg updates, computed by the helpers inside
/// the MPC engine on the unweighted quantized deltas
/// ([`sealroom_mpc::robust`]); chosen per training and signed in every
/// round's descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RobustAggregation {
    /// Each update is scaled by `min(1, norm/‖Δ‖)` (to about 4.4 % below
    /// `norm`, never above) before the weighted average; needs a hard
    /// `l2_bound ≥ norm` (updates above it are left out).
    Clip {
        /// The clip norm, in parameter units.
        norm: f64,
    },
    /// Per parameter, the unweighted mean of the clients' values after
    /// dropping the `⌊beta·n⌋` smallest and largest (Yin et al., ICML 2018).
    TrimmedMean {
        /// Fraction trimmed at each end, in `[0, 0.5)`.
        beta: f64,
    },
    /// Per parameter, the median of the clients' values (the mean of the
    /// two middle values for an even cohort).
    Median,
    /// Multi-Krum (Blanchard et al., NeurIPS 2017): the mean of the
    /// `selected` updates whose summed squared distances to their `n −
    /// byzantine − 2` nearest others are lowest (`selected = 1`: Krum).
    /// Needs a hard `l2_bound`; unweighted.
    MultiKrum {
        /// Byzantine clients tolerated (`n > 2·byzantine + 2`).
        byzantine: usize,
        /// Updates averaged, at least 1.
        selected: usize,
    },
}

/// The input checks and robust aggregation of a FedAvg round (issue #15),
/// chosen per training and signed into every round's parameters; the
/// helpers apply them inside the MPC engine (`crate::training`). JSON:
/// `{"l2_bound": 5.0, "linf_bound": 1.0, "robust": {"kind": "clip",
/// "norm": 0.5}}`, every field optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defences {
    /// The helpers leave out every update whose delta has an L2 norm above
    /// this bound (parameter units, exact on the quantized integers) or a
    /// weight outside `0..=max_weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_bound: Option<f64>,
    /// The helpers leave out every update with one delta element above this
    /// bound in absolute value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linf_bound: Option<f64>,
    /// Robust aggregation; clients then upload their **unweighted** delta
    /// ([`encode_unweighted_delta`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust: Option<RobustAggregation>,
}

impl Defences {
    /// Whether it checks nothing and aggregates plainly.
    pub fn is_none(&self) -> bool {
        *self == Defences::default()
    }

    /// Parses the JSON form, naming what is wrong.
    pub fn from_json(text: &str) -> Result<Defences, String> {
        serde_json::from_str(text).map_err(|e| format!("not a defences object: {e}"))
    }
}

impl RobustAggregation {
    /// Values dropped at each end for a cohort of `clients` (0 for clipping).
    pub fn trim(&self, clients: usize) -> usize {
        match *self {
            RobustAggregation::Clip { .. } | RobustAggregation::MultiKrum { .. } => 0,
            RobustAggregation::TrimmedMean { beta } => (beta * clients as f64).floor() as usize,
            RobustAggregation::Median => clients.saturating_sub(1) / 2,
        }
    }

    /// Refuses parameters outside their range.
    pub fn check(&self) -> Result<(), FlError> {
        match *self {
            RobustAggregation::Clip { norm } if !(norm.is_finite() && norm > 0.0) => {
                Err(FlError::InvalidParameter {
                    name: "clip norm",
                    value: norm,
                    expected: "positive and finite",
                })
            }
            RobustAggregation::TrimmedMean { beta } if !(0.0..0.5).contains(&beta) => {
                Err(FlError::InvalidParameter {
                    name: "trimmed-mean beta",
                    value: beta,
                    expected: "in [0, 0.5)",
                })
            }
            RobustAggregation::MultiKrum { selected: 0, .. } => Err(FlError::InvalidParameter {
                name: "multi-Krum selected",
                value: 0.0,
                expected: "at least 1",
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for RobustAggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RobustAggregation::Clip { norm } => write!(f, "clipping to L2 norm {norm}"),
            RobustAggregation::TrimmedMean { beta } => write!(f, "trimmed mean (beta {beta})"),
            RobustAggregation::Median => f.write_str("coordinate-wise median"),
            RobustAggregation::MultiKrum {
                byzantine,
                selected,
            } => write!(f, "multi-Krum (f {byzantine}, m {selected})"),
        }
    }
}

/// One client's update, ready for the secure sum.
///
/// `values` derive from private data: zeroized on drop, never printed.
pub struct EncodedUpdate {
    values: Vec<f64>,
    /// Delta values that lay outside `±delta_clip` and were clipped.
    pub clipped: usize,
    /// The weight `min(n_samples, max_weight)`.
    pub weight: u32,
    /// Whether `n_samples` exceeded `max_weight` (the weight was capped).
    pub weight_capped: bool,
}

impl EncodedUpdate {
    /// The wire vector: `w·q_k·step` for each parameter `k`, then `w·step`.
    /// Every value lies exactly on the grid of [`FedAvgSpec::wire_spec`].
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

impl fmt::Debug for EncodedUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncodedUpdate(len={}, clipped={}, weight={}, weight_capped={}, <redacted>)",
            self.values.len(),
            self.clipped,
            self.weight,
            self.weight_capped
        )
    }
}

impl Drop for EncodedUpdate {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}

/// Encodes a client's update: quantizes `Δ = local − global` (plus the
/// carried residual when `feedback` is given) with the delta spec to `q`,
/// and returns the wire vector `[w·q_0·step, …, w·q_{n−1}·step, w·step]`
/// with `w = min(n_samples, max_weight)`.
///
/// The residual must have been created for `global.n_params()` values
/// (`ErrorFeedback::new(n)`); it is updated only on success.
pub fn encode_update(
    spec: &FedAvgSpec,
    global: &Model,
    local: &Model,
    n_samples: usize,
    feedback: Option<&mut ErrorFeedback>,
) -> Result<EncodedUpdate, FlError> {
    check_same_shape(global, local)?;
    encode_delta(spec, global.params(), local.params(), n_samples, feedback)
}

/// [`encode_update`] for flat parameter vectors of any model (what a
/// framework such as Flower hands over): `global` is the model the round
/// started from, `local` the client's trained parameters in the same layout.
pub fn encode_delta(
    spec: &FedAvgSpec,
    global: &[f64],
    local: &[f64],
    n_samples: usize,
    feedback: Option<&mut ErrorFeedback>,
) -> Result<EncodedUpdate, FlError> {
    encode(spec, global, local, n_samples, feedback, true)
}

/// [`encode_unweighted_update`] for flat parameter vectors (a table
/// training's model, a framework's).
pub fn encode_unweighted_delta(
    spec: &FedAvgSpec,
    global: &[f64],
    local: &[f64],
    n_samples: usize,
    feedback: Option<&mut ErrorFeedback>,
) -> Result<EncodedUpdate, FlError> {
    encode(spec, global, local, n_samples, feedback, false)
}

/// [`encode_update`] for robust aggregation inside the engine (clipping,
/// trimmed mean, median): the wire vector `[q_0·step, …, q_{n−1}·step,
/// w·step]` carries the **unweighted** quantized delta, which the helpers
/// clip or rank before they weight it. Same wire spec, same length.
pub fn encode_unweighted_update(
    spec: &FedAvgSpec,
    global: &Model,
    local: &Model,
    n_samples: usize,
    feedback: Option<&mut ErrorFeedback>,
) -> Result<EncodedUpdate, FlError> {
    check_same_shape(global, local)?;
    encode(
        spec,
        global.params(),
        local.params(),
        n_samples,
        feedback,
        false,
    )
}

fn encode(
    spec: &FedAvgSpec,
    global: &[f64],
    local: &[f64],
    n_samples: usize,
    feedback: Option<&mut ErrorFeedback>,
    weighted: bool,
) -> Result<EncodedUpdate, FlError> {
    let (delta_spec, _) = spec.check()?;
    if local.len() != global.len() {
        return Err(FlError::ShapeMismatch {
            what: "local parameters vs global parameters",
            expected: global.len(),
            actual: local.len(),
        });
    }
    if global.is_empty() {
        return Err(FlError::Empty {
            what: "parameter vector",
        });
    }
    if let Some(index) = global.iter().position(|g| !g.is_finite()) {
        return Err(FlError::NonFinite {
            what: "global parameters",
            index,
        });
    }
    if n_samples == 0 {
        return Err(FlError::ZeroWeight);
    }
    let delta: Zeroizing<Vec<f64>> =
        Zeroizing::new(local.iter().zip(global).map(|(l, g)| l - g).collect());
    if let Some(index) = delta.iter().position(|d| !d.is_finite()) {
        return Err(FlError::NonFiniteDelta { index });
    }
    let quantized = match feedback {
        Some(residual) => residual.quantize(&delta_spec, &delta)?,
        None => delta_spec.quantize(&delta)?,
    };
    let weight_capped = n_samples > spec.max_weight as usize;
    let weight = if weight_capped {
        spec.max_weight
    } else {
        // n_samples ≤ max_weight, a u32.
        n_samples as u32
    };
    let w = i64::from(weight);
    let factor = if weighted { w } else { 1 };
    let step = delta_spec.step();
    let mut values = Vec::with_capacity(FedAvgSpec::wire_len(quantized.values.len()));
    // |w·q| ≤ max_weight·max_abs < 2^52 (checked by wire_spec): exact in
    // i64 and in f64, and scaling by the power of two `step` is exact.
    values.extend(quantized.values.iter().map(|&q| (factor * q) as f64 * step));
    values.push(w as f64 * step);
    Ok(EncodedUpdate {
        values,
        clipped: quantized.clipped,
        weight,
        weight_capped,
    })
}

/// Applies a revealed sum of wire vectors to the global model.
///
/// With `W = sum[n] / step` (the total weight, which must be a positive
/// integer), each parameter becomes `global[k] + sum[k] / W` — one division
/// (the weighted average delta, rounded once) and one addition, in that
/// order, so the result depends only on the sum. The sum must have
/// `n_params + 1` values, each a whole number of quanta no larger than
/// `W · max_abs` (what honest updates can produce).
pub fn apply_sum(spec: &FedAvgSpec, global: &Model, sum: &[f64]) -> Result<Model, FlError> {
    let params = apply_sum_to(spec, global.params(), sum)?;
    Model::from_params(
        global.kind(),
        global.n_features(),
        global.n_classes(),
        params,
    )
}

/// [`apply_sum`] for a flat parameter vector: `global[k] + sum[k] / W`
/// with `W = sum[n] / step`, after the same checks.
pub fn apply_sum_to(spec: &FedAvgSpec, global: &[f64], sum: &[f64]) -> Result<Vec<f64>, FlError> {
    let (delta_spec, _) = spec.check()?;
    let n = global.len();
    if sum.len() != FedAvgSpec::wire_len(n) {
        return Err(FlError::ShapeMismatch {
            what: "values in the sum vs model parameters + 1",
            expected: FedAvgSpec::wire_len(n),
            actual: sum.len(),
        });
    }
    let step = delta_spec.step();
    let quanta = sum[n] / step;
    if !(quanta.is_finite() && quanta >= 1.0 && quanta.fract() == 0.0 && quanta <= 2f64.powi(53)) {
        return Err(FlError::InvalidTotalWeight { quanta });
    }
    let total_weight = quanta;
    let bound = (quanta as u128) * u128::from(delta_spec.max_abs());
    for (index, &s) in sum[..n].iter().enumerate() {
        let q = s / step;
        if !(q.is_finite() && q.fract() == 0.0 && (q.abs() as u128) <= bound) {
            return Err(FlError::InconsistentSum { index });
        }
    }
    finite(
        global
            .iter()
            .zip(&sum[..n])
            .map(|(g, s)| g + s / total_weight)
            .collect(),
    )
}

/// `params`, if every one is finite.
fn finite(params: Vec<f64>) -> Result<Vec<f64>, FlError> {
    match params.iter().position(|p| !p.is_finite()) {
        Some(index) => Err(FlError::NonFinite {
            what: "aggregated parameters",
            index,
        }),
        None => Ok(params),
    }
}

/// Applies a robust aggregate to a flat parameter vector: each parameter
/// becomes `global[k] + (numer[k]·step) / denom` — the integer numerator
/// (quanta, or 2^−16 quanta after clipping) converted once, one
/// multiplication by the power of two `step`, one division, one addition.
/// The secure path and its plaintext twin call this on the same integers
/// and so agree bit for bit.
pub fn apply_robust_to(
    spec: &FedAvgSpec,
    global: &[f64],
    numer: &[i128],
    denom: u128,
) -> Result<Vec<f64>, FlError> {
    let (delta_spec, _) = spec.check()?;
    if numer.len() != global.len() {
        return Err(FlError::ShapeMismatch {
            what: "values in the robust aggregate vs model parameters",
            expected: global.len(),
            actual: numer.len(),
        });
    }
    if denom == 0 {
        return Err(FlError::InvalidTotalWeight { quanta: 0.0 });
    }
    let step = delta_spec.step();
    let denom = denom as f64;
    finite(
        global
            .iter()
            .zip(numer)
            .map(|(g, &n)| g + (n as f64 * step) / denom)
            .collect(),
    )
}

/// The integers the secure layer sees for `updates` (each value divided by
/// the wire step: exact, as the values lie on the wire grid), for the
/// plaintext twins of the engine's robust programs. Tests and simulations
/// only.
pub fn wire_integers(
    spec: &FedAvgSpec,
    n_params: usize,
    updates: &[EncodedUpdate],
) -> Result<Zeroizing<Vec<Vec<i64>>>, FlError> {
    let (_, wire) = spec.check()?;
    let len = FedAvgSpec::wire_len(n_params);
    let ints: Result<Vec<Vec<i64>>, FlError> = updates
        .iter()
        .map(|u| {
            if u.values.len() != len {
                return Err(FlError::ShapeMismatch {
                    what: "values in an update vs model parameters + 1",
                    expected: len,
                    actual: u.values.len(),
                });
            }
            Ok(wire.quantize(&u.values)?.values.clone())
        })
        .collect();
    Ok(Zeroizing::new(ints?))
}

/// The plaintext twin of a secure FedAvg round: quantizes each update's
/// values with the wire spec exactly as the secure layer does (they are on
/// its grid, so this recovers `w·q_k`), sums the integers in `i128`, maps the
/// sum back with the wire spec (`Σ as f64 · step`) and calls [`apply_sum`].
/// A secure round over the same updates gives the same model bit for bit.
pub fn plaintext_fedavg(
    spec: &FedAvgSpec,
    global: &Model,
    updates: &[EncodedUpdate],
) -> Result<Model, FlError> {
    let sum = plaintext_sum(spec, global.n_params(), updates)?;
    apply_sum(spec, global, &sum)
}

/// The sum a secure round of `updates` (for a model of `n_params`
/// parameters) reveals, computed in the clear from the same integers: what
/// [`plaintext_fedavg`] applies. For tests and simulations only.
pub fn plaintext_sum(
    spec: &FedAvgSpec,
    n_params: usize,
    updates: &[EncodedUpdate],
) -> Result<Vec<f64>, FlError> {
    let (_, wire) = spec.check()?;
    if updates.is_empty() {
        return Err(FlError::Empty { what: "update set" });
    }
    let len = FedAvgSpec::wire_len(n_params);
    let mut acc = Zeroizing::new(vec![0i128; len]);
    for update in updates {
        if update.values.len() != len {
            return Err(FlError::ShapeMismatch {
                what: "values in an update vs model parameters + 1",
                expected: len,
                actual: update.values.len(),
            });
        }
        let quantized = wire.quantize(&update.values)?;
        for (a, &q) in acc.iter_mut().zip(&quantized.values) {
            *a += i128::from(q);
        }
    }
    let limit = 1i128 << 53;
    let mut sum = Vec::with_capacity(len);
    for (index, &a) in acc.iter().enumerate() {
        if a.abs() > limit {
            return Err(FlError::SumOverflow {
                n_updates: updates.len(),
                index,
            });
        }
        // |a| ≤ 2^53 fits i64 and converts to f64 exactly.
        sum.push(wire.dequantize(a as i64));
    }
    Ok(sum)
}

/// Unquantized FedAvg in `f64` (McMahan et al., 2017), the baseline that a
/// quantized round approximates: `global + Σ n_i·(local_i − global) / Σ n_i`
/// with uncapped weights, accumulated in client order.
pub fn unquantized_fedavg(global: &Model, locals: &[(Model, usize)]) -> Result<Model, FlError> {
    if locals.is_empty() {
        return Err(FlError::Empty { what: "update set" });
    }
    let mut weighted = Zeroizing::new(vec![0.0; global.n_params()]);
    let mut total = 0.0;
    for (local, n_samples) in locals {
        check_same_shape(global, local)?;
        if *n_samples == 0 {
            return Err(FlError::ZeroWeight);
        }
        let w = *n_samples as f64;
        for ((acc, l), g) in weighted.iter_mut().zip(local.params()).zip(global.params()) {
            *acc += w * (l - g);
        }
        total += w;
    }
    let params = global
        .params()
        .iter()
        .zip(weighted.iter())
        .map(|(g, d)| g + d / total)
        .collect();
    Model::from_params(
        global.kind(),
        global.n_features(),
        global.n_classes(),
        params,
    )
}

fn check_same_shape(global: &Model, local: &Model) -> Result<(), FlError> {
    if local.kind() != global.kind()
        || local.n_features() != global.n_features()
        || local.n_classes() != global.n_classes()
    {
        return Err(FlError::ShapeMismatch {
            what: "local model parameters vs global model (kind and shape must match)",
            expected: global.n_params(),
            actual: local.n_params(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::model::ModelKind;

    fn spec(bits: u8) -> FedAvgSpec {
        FedAvgSpec {
            bits,
            delta_clip: 1.0,
            max_weight: 1000,
        }
    }

    fn model(params: Vec<f64>) -> Model {
        Model::from_params(ModelKind::Logistic, 1, 2, params).unwrap()
    }

    #[test]
    fn wire_spec_holds_every_weighted_delta() {
        for bits in [8, 12, 16] {
            let s = spec(bits);
            let (delta, wire) = (s.delta_spec().unwrap(), s.wire_spec().unwrap());
            assert_eq!(wire.scale_bits(), delta.scale_bits());
            assert_eq!(wire.max_abs(), 1000 * delta.max_abs());
            // Fewest bits: one less could not hold the largest value.
            assert!(QuantSpec::new(wire.scale_bits(), wire.clip(), wire.bits() - 1).is_err());
        }
        let too_wide = FedAvgSpec {
            bits: 40,
            delta_clip: 1.0,
            max_weight: u32::MAX,
        };
        assert!(matches!(
            too_wide.wire_spec(),
            Err(FlError::WireTooWide {
                bits_needed: 71,
                ..
            })
        ));
        assert!(spec(1).wire_spec().is_err());
    }

    #[test]
    fn encoding_weights_and_caps() {
        let s = FedAvgSpec {
            bits: 8,
            delta_clip: 1.0,
            max_weight: 10,
        };
        let step = s.delta_spec().unwrap().step(); // 1/64
        let global = model(vec![0.0; 4]);
        let local = model(vec![0.5, -2.0, 1.0 / 64.0, 0.0]);
        let u = encode_update(&s, &global, &local, 25, None).unwrap();
        assert_eq!((u.weight, u.weight_capped, u.clipped), (10, true, 1));
        assert_eq!(
            u.values(),
            &[320.0 * step, -640.0 * step, 10.0 * step, 0.0, 10.0 * step]
        );
        let u = encode_update(&s, &global, &local, 3, None).unwrap();
        assert_eq!((u.weight, u.weight_capped), (3, false));
        assert!(!format!("{u:?}").contains("0.5"));
        assert_eq!(
            encode_update(&s, &global, &local, 0, None).unwrap_err(),
            FlError::ZeroWeight
        );
    }

    #[test]
    fn apply_sum_refuses_inconsistent_sums() {
        let s = spec(8);
        let step = s.delta_spec().unwrap().step();
        let global = model(vec![0.0; 4]);
        let ok = [64.0 * step, 0.0, 0.0, 0.0, 2.0 * step];
        let m = apply_sum(&s, &global, &ok).unwrap();
        assert_eq!(m.params()[0], 0.5);
        assert!(matches!(
            apply_sum(&s, &global, &ok[..4]),
            Err(FlError::ShapeMismatch { .. })
        ));
        for bad_count in [0.0, 1.5 * step, -step, f64::NAN] {
            let mut sum = ok;
            sum[4] = bad_count;
            assert!(matches!(
                apply_sum(&s, &global, &sum),
                Err(FlError::InvalidTotalWeight { .. })
            ));
        }
        let mut off_grid = ok;
        off_grid[1] = 0.5 * step;
        assert_eq!(
            apply_sum(&s, &global, &off_grid).unwrap_err(),
            FlError::InconsistentSum { index: 1 }
        );
        let mut too_big = ok;
        too_big[2] = 2.0 * 64.0 * step + step; // beyond W · max_abs
        assert_eq!(
            apply_sum(&s, &global, &too_big).unwrap_err(),
            FlError::InconsistentSum { index: 2 }
        );
    }

    #[test]
    fn twin_averages_by_weight() {
        let s = spec(16);
        let global = model(vec![1.0; 4]);
        let a = encode_update(&s, &global, &model(vec![1.5; 4]), 3, None).unwrap();
        let b = encode_update(&s, &global, &model(vec![0.5; 4]), 1, None).unwrap();
        let m = plaintext_fedavg(&s, &global, &[a, b]).unwrap();
        // (3·0.5 + 1·(−0.5)) / 4 = 0.25, exactly representable.
        assert!(m.params().iter().all(|&p| p == 1.25), "{:?}", m.params());
        let plain = unquantized_fedavg(
            &global,
            &[(model(vec![1.5; 4]), 3), (model(vec![0.5; 4]), 1)],
        )
        .unwrap();
        assert!(plain.params().iter().all(|&p| p == 1.25));
        assert!(plaintext_fedavg(&s, &global, &[]).is_err());
    }
}
