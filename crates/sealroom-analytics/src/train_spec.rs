//! The training spec: what `sealroom train --spec FILE` (and Python's
//! `Admin.train`) trains on the clients' own tables. A JSON file, like the
//! query spec:
//!
//! ```json
//! {
//!   "table": "patients",
//!   "label": "outcome",
//!   "features": ["age", "bmi", "systolic_bp"],
//!   "classes": ["healthy", "sick"],
//!   "model": "logistic",
//!   "rounds": 30,
//!   "validation": { "fraction": 0.2, "seed": 7 },
//!   "early_stopping": { "patience": 5, "min_delta": 0.0 },
//!   "train": { "learning_rate": 0.1, "epochs": 1, "batch_size": 32, "l2": 0.0001, "seed": 1 },
//!   "quantization": { "bits": 16, "clip": 1.0, "max_weight": 4096 }
//! }
//! ```
//!
//! `model` is `"logistic"`, `"linear"` or `{"mlp": {"hidden": 16}}`. A
//! classifier needs `classes`, the declared domain of the label column:
//! each row's label (as text) must be one of them, and class `i` is the
//! `i`-th entry. A linear regression takes no `classes`; its label is a
//! number. Every field but `table`, `label`, `features`, `model` (and
//! `classes` for a classifier) has the default shown in [`TrainingSpec`]'s
//! fields. Unknown fields are refused, so a typo never silently falls back
//! to a default.
//!
//! The whole spec (without anything private) travels, signed, in every
//! round's descriptor, so each client sees exactly what it is asked to
//! compute from its table.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fl::{Defences, FedAvgSpec, ModelKind, TrainConfig};

/// Most feature columns a spec may name.
pub const MAX_FEATURES: usize = 10_000;
/// Most classes a label domain may declare.
pub const MAX_CLASSES: usize = 1024;
/// Most rounds a spec may ask for.
pub const MAX_ROUNDS: usize = 10_000;

/// A training on the clients' own tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// The clients' table (the `[data.<table>]` entry of each client's config).
    pub table: String,
    /// The label column.
    pub label: String,
    /// The feature columns, in the order of the model's inputs.
    pub features: Vec<String>,
    /// The label's declared domain (classifiers only): class `i` is
    /// `classes[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The model.
    pub model: ModelKind,
    /// FedAvg rounds at most (early stopping may end sooner). Default 20.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Each client's train/validation split of its rows.
    #[serde(default)]
    pub validation: ValidationSpec,
    /// Stop when the secure validation metric stops improving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Local training per round.
    #[serde(default)]
    pub train: TrainSettings,
    /// Quantization and weighting of the deltas.
    #[serde(default)]
    pub quantization: QuantSettings,
    /// Carry each client's quantization residual into its next update.
    #[serde(default)]
    pub error_feedback: bool,
    /// Seed of the initial model (the MLP's weights; public). Default 0.
    #[serde(default)]
    pub init_seed: u64,
    /// Input validity and robust aggregation inside the MPC engine (issue
    /// #15; three helpers in additive mode), e.g. `{"l2_bound": 5.0,
    /// "linf_bound": 1.0, "robust": {"kind": "clip", "norm": 0.5}}`: the
    /// helpers leave out every update whose delta has an L2 norm (or one
    /// element) above the bound, or a weight outside `0..=max_weight`, and
    /// clip (`clip`, needs `l2_bound`), trim (`trimmed_mean`, `median`) or
    /// Krum-select (`multi_krum`, needs `l2_bound`) the rest (see
    /// [`Defences`]). Default: none (FedAvg of every update).
    #[serde(default, skip_serializing_if = "Defences::is_none")]
    pub defences: Defences,
    /// Differentially private training (DP-FedAvg, issue #15), e.g.
    /// `{"epsilon": 8.0, "delta": 1e-6, "clip_norm": 1.0}`: every round
    /// clips each client's update to `clip_norm` and noises the sum inside
    /// the engine ([`DpTraining`]). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpTraining>,
}

/// The privacy of a differentially private training: the whole training —
/// every model it releases — is `(epsilon, delta)`-DP for one row of each
/// client's table, by basic composition of its rounds (each spends
/// `epsilon/rounds` and `delta/rounds`, charged to each client's budget
/// for the table before the client shares anything).
///
/// Under `dp` nothing else about the rows is released: there is no moments
/// round (the features are standardized with the public `mean` and `std`
/// given here — e.g. from a DP query — or used as stored), no validation
/// round (`validation.fraction` must be 0: evaluate on your own test rows)
/// and no `defences` (the clipping bounds every client's influence; the
/// engine zeroes an update above 256 times the clip norm without saying
/// so).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpTraining {
    /// ε of the whole training, in `(0, 100]`.
    pub epsilon: f64,
    /// δ of the whole training, in `[1e-12, 1e-3]`.
    pub delta: f64,
    /// The L2 norm every client's model delta is clipped to (in the
    /// model's units), positive.
    pub clip_norm: f64,
    /// Public feature means for standardization (with `std`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    /// Public feature standard deviations (with `mean`), each positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
}

/// The largest total ε a training may spend.
pub const MAX_TRAINING_EPSILON: f64 = 100.0;

fn default_rounds() -> usize {
    20
}

/// How each client splits its rows: a seeded shuffle of its row indices,
/// the first `floor(n · fraction)` rows validate, the rest train.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSpec {
    /// Fraction of each client's rows held out for validation, in
    /// `[0, 0.9]`; 0 disables validation (and early stopping). Default 0.2.
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// Seed of the shuffle (public). Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_fraction() -> f64 {
    0.2
}

impl Default for ValidationSpec {
    fn default() -> Self {
        ValidationSpec {
            fraction: default_fraction(),
            seed: 0,
        }
    }
}

/// Early stopping on the pooled validation metric, computed by a secure
/// sum after every round: validation loss (mean cross-entropy, or mean
/// squared error for a linear regression).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Rounds without an improvement of more than `min_delta` before the
    /// training stops; the best model so far is the result. At least 1.
    pub patience: usize,
    /// Smallest decrease of the validation loss that counts. Default 0.
    #[serde(default)]
    pub min_delta: f64,
}

/// Local mini-batch SGD per round (each client's shuffle seed is derived
/// from `seed`, the round and the client's name).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Step size. Default 0.1.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Local epochs per round. Default 1.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per mini-batch. Default 32.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// L2 penalty on the weights. Default 1e-4.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Seed of the shuffles (public). Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_learning_rate() -> f64 {
    0.1
}
fn default_epochs() -> usize {
    1
}
fn default_batch_size() -> usize {
    32
}
fn default_l2() -> f64 {
    1e-4
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            learning_rate: default_learning_rate(),
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            l2: default_l2(),
            seed: 0,
        }
    }
}

impl TrainSettings {
    /// As the model's training config.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            learning_rate: self.learning_rate,
            epochs: self.epochs,
            batch_size: self.batch_size,
            l2: self.l2,
            seed: self.seed,
        }
    }
}

/// How deltas are quantized and weighted (see [`FedAvgSpec`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantSettings {
    /// Signed bits per delta value. Default 16.
    #[serde(default = "default_bits")]
    pub bits: u8,
    /// Deltas are clipped to ±clip (counted). Default 1.0.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// A client's weight is min(its training rows, max_weight). Default 4096.
    #[serde(default = "default_max_weight")]
    pub max_weight: u32,
}

fn default_bits() -> u8 {
    16
}
fn default_clip() -> f64 {
    1.0
}
fn default_max_weight() -> u32 {
    4096
}

impl Default for QuantSettings {
    fn default() -> Self {
        QuantSettings {
            bits: default_bits(),
            clip: default_clip(),
            max_weight: default_max_weight(),
        }
    }
}

impl QuantSettings {
    /// As the FedAvg spec.
    pub fn fedavg(&self) -> FedAvgSpec {
        FedAvgSpec {
            bits: self.bits,
            delta_clip: self.clip,
            max_weight: self.max_weight,
        }
    }
}

/// Why a training spec was refused: names the file (when read from one)
/// and the field, never a data value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("{file}: cannot read the training spec: {why}")]
    Read {
        /// The spec file.
        file: String,
        /// The I/O error.
        why: String,
    },
    /// The text is not a training spec (bad JSON, a missing or unknown field).
    #[error("{file}: not a training spec (line {line}, column {column}): {why}")]
    Parse {
        /// The spec file (or `<spec>` for text).
        file: String,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What the decoder expected.
        why: String,
    },
    /// A field's value is unusable.
    #[error("{file}: field `{field}`: {why}")]
    Invalid {
        /// The spec file (or `<spec>`).
        file: String,
        /// The field, as written in the spec.
        field: String,
        /// What is wrong and what to do.
        why: String,
    },
}

impl TrainingSpec {
    /// Reads and validates a spec file.
    pub fn from_file(path: &Path) -> Result<TrainingSpec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            file: file.clone(),
            why: e.to_string(),
        })?;
        TrainingSpec::parse(&text, &file)
    }

    /// Parses and validates spec text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<TrainingSpec, SpecError> {
        let spec: TrainingSpec = serde_json::from_str(text).map_err(|e| SpecError::Parse {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            why: e.to_string(),
        })?;
        spec.validate(file)?;
        Ok(spec)
    }

    /// Number of model outputs: the classes, or 1 for a regression.
    pub fn n_outputs(&self) -> usize {
        match &self.classes {
            Some(classes) if !self.model.is_regression() => classes.len(),
            _ => 1,
        }
    }

    /// Checks every field; `file` names the spec in errors.
    pub fn validate(&self, file: &str) -> Result<(), SpecError> {
        let invalid = |field: &str, why: String| SpecError::Invalid {
            file: file.to_string(),
            field: field.to_string(),
            why,
        };
        if self.table.trim().is_empty() {
            return Err(invalid("table", "is empty".into()));
        }
        if self.label.trim().is_empty() {
            return Err(invalid("label", "is empty".into()));
        }
        if self.features.is_empty() {
            return Err(invalid("features", "names no column".into()));
        }
        if self.features.len() > MAX_FEATURES {
            return Err(invalid(
                "features",
                format!("{} columns; at most {MAX_FEATURES}", self.features.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, f) in self.features.iter().enumerate() {
            if f.trim().is_empty() {
                return Err(invalid(&format!("features[{i}]"), "is empty".into()));
            }
            if !seen.insert(f.to_lowercase()) {
                return Err(invalid(
                    &format!("features[{i}]"),
                    format!("column {f:?} is named twice"),
                ));
            }
            if f.eq_ignore_ascii_case(&self.label) {
                return Err(invalid(
                    &format!("features[{i}]"),
                    format!("column {f:?} is also the label"),
                ));
            }
        }
        match (&self.classes, self.model.is_regression()) {
            (Some(_), true) => {
                return Err(invalid(
                    "classes",
                    "a linear regression predicts a number; remove `classes` or choose \
                     \"logistic\" or an MLP"
                        .into(),
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "classes",
                    format!(
                        "a {} classifier needs the label's declared domain, e.g. \
                         \"classes\": [\"no\", \"yes\"]",
                        self.model
                    ),
                ));
            }
            (Some(classes), false) => {
                if classes.len() < 2 || classes.len() > MAX_CLASSES {
                    return Err(invalid(
                        "classes",
                        format!(
                            "declares {} classes; between 2 and {MAX_CLASSES} are needed",
                            classes.len()
                        ),
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, c) in classes.iter().enumerate() {
                    if !seen.insert(c.trim()) {
                        return Err(invalid(
                            &format!("classes[{i}]"),
                            format!("class {c:?} is declared twice"),
                        ));
                    }
                }
            }
            (None, true) => {}
        }
        if let ModelKind::Mlp { hidden } = self.model
            && !(1..=4096).contains(&hidden)
        {
            return Err(invalid(
                "model.mlp.hidden",
                format!("{hidden} hidden units; between 1 and 4096"),
            ));
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(invalid(
                "rounds",
                format!("{}; between 1 and {MAX_ROUNDS}", self.rounds),
            ));
        }
        let fraction = self.validation.fraction;
        if !(fraction.is_finite() && (0.0..=0.9).contains(&fraction)) {
            return Err(invalid(
                "validation.fraction",
                format!("{fraction}; between 0 and 0.9"),
            ));
        }
        if let Some(stop) = &self.early_stopping {
            if fraction == 0.0 {
                return Err(invalid(
                    "early_stopping",
                    "needs validation rows: set validation.fraction above 0".into(),
                ));
            }
            if stop.patience == 0 {
                return Err(invalid(
                    "early_stopping.patience",
                    "0; at least 1 round".into(),
                ));
            }
            if !(stop.min_delta.is_finite() && stop.min_delta >= 0.0) {
                return Err(invalid(
                    "early_stopping.min_delta",
                    format!("{}; a non-negative number", stop.min_delta),
                ));
            }
        }
        self.train
            .config()
            .check()
            .map_err(|e| invalid("train", e.to_string()))?;
        if !(2..=24).contains(&self.quantization.bits) {
            return Err(invalid(
                "quantization.bits",
                format!("{}; between 2 and 24", self.quantization.bits),
            ));
        }
        self.quantization
            .fedavg()
            .wire_spec()
            .map_err(|e| invalid("quantization", e.to_string()))?;
        let d = &self.defences;
        let field = match (d.robust, d.l2_bound) {
            (Some(_), _) => "defences.robust",
            (None, Some(_)) => "defences.l2_bound",
            _ => "defences.linf_bound",
        };
        d.aggregator(&self.quantization.fedavg())
            .map_err(|why| invalid(field, why))?;
        if let Some(dp) = &self.dp {
            self.validate_dp(dp, &invalid)?;
        }
        Ok(())
    }

    fn validate_dp(
        &self,
        dp: &DpTraining,
        invalid: &dyn Fn(&str, String) -> SpecError,
    ) -> Result<(), SpecError> {
        if !(dp.epsilon.is_finite() && dp.epsilon > 0.0 && dp.epsilon <= MAX_TRAINING_EPSILON) {
            return Err(invalid(
                "dp.epsilon",
                format!("{}; above 0 and at most {MAX_TRAINING_EPSILON}", dp.epsilon),
            ));
        }
        if !(1e-12..=1e-3).contains(&dp.delta) {
            return Err(invalid(
                "dp.delta",
                format!(
                    "{}; between 1e-12 and 1e-3 (binomial noise cannot give δ = 0)",
                    dp.delta
                ),
            ));
        }
        if !(dp.clip_norm.is_finite() && dp.clip_norm > 0.0) {
            return Err(invalid(
                "dp.clip_norm",
                format!("{}; a positive number", dp.clip_norm),
            ));
        }
        if self.validation.fraction != 0.0 {
            return Err(invalid(
                "validation.fraction",
                "must be 0 under dp: a validation round releases exact metrics of the rows; evaluate on your own test rows (--test)".into(),
            ));
        }
        if !self.defences.is_none() {
            return Err(invalid(
                "defences",
                "take none under dp: its clipping bounds every client's influence".into(),
            ));
        }
        let n = self.features.len();
        match (&dp.mean, &dp.std) {
            (None, None) => {}
            (Some(mean), Some(std)) => {
                if mean.len() != n || std.len() != n {
                    return Err(invalid(
                        "dp.mean",
                        format!(
                            "{} means and {} standard deviations for {n} features",
                            mean.len(),
                            std.len()
                        ),
                    ));
                }
                if let Some(i) = mean.iter().position(|m| !m.is_finite()) {
                    return Err(invalid(&format!("dp.mean[{i}]"), "is not finite".into()));
                }
                if let Some(i) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(invalid(&format!("dp.std[{i}]"), "must be positive".into()));
                }
            }
            _ => {
                return Err(invalid(
                    "dp.mean",
                    "give both mean and std, or neither (features as stored)".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"table": "t", "label": "y", "features": ["a", "b"],
        "classes": ["no", "yes"], "model": "logistic"}"#;

    #[test]
    fn defences_are_checked_naming_the_field() {
        let with = |defences: &str| {
            let text = MINIMAL.replace("}", &format!(", \"defences\": {{{defences}}}}}"));
            TrainingSpec::parse(&text, "s.json")
        };
        let spec = with(r#""l2_bound": 5.0, "robust": {"kind": "clip", "norm": 0.5}"#).unwrap();
        assert_eq!(
            spec.defences.robust,
            Some(crate::fl::RobustAggregation::Clip { norm: 0.5 })
        );
        assert_eq!(
            with(r#""linf_bound": 0.5"#).unwrap().defences.linf_bound,
            Some(0.5)
        );
        for (extra, field) in [
            (r#""l2_bound": -1.0"#, "`defences.l2_bound`"),
            (r#""linf_bound": 0.0"#, "`defences.linf_bound`"),
            (
                r#""robust": {"kind": "clip", "norm": 0.5}"#,
                "`defences.robust`",
            ),
            (
                r#""robust": {"kind": "median"}, "l2_bound": 5.0"#,
                "`defences.robust`",
            ),
            (
                r#""robust": {"kind": "trimmed_mean", "beta": 0.5}"#,
                "`defences.robust`",
            ),
            (r#""l2": 5.0"#, "unknown field"),
        ] {
            let err = with(extra).expect_err(extra).to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
    }

    #[test]
    fn minimal_spec_takes_the_defaults() {
        let spec = TrainingSpec::parse(MINIMAL, "s.json").unwrap();
        assert_eq!(spec.rounds, 20);
        assert_eq!(spec.validation.fraction, 0.2);
        assert_eq!(spec.quantization.bits, 16);
        assert_eq!(spec.n_outputs(), 2);
        let mlp = MINIMAL.replace("\"logistic\"", "{\"mlp\": {\"hidden\": 8}}");
        assert_eq!(
            TrainingSpec::parse(&mlp, "s.json").unwrap().model,
            ModelKind::Mlp { hidden: 8 }
        );
        let linear = r#"{"table": "t", "label": "y", "features": ["a"], "model": "linear"}"#;
        assert_eq!(
            TrainingSpec::parse(linear, "s.json").unwrap().n_outputs(),
            1
        );
    }

    /// A `dp` spec: the valid one parses; each misuse names its field.
    #[test]
    fn dp_specs_are_checked_and_name_the_field() {
        let dp = |extra: &str| {
            MINIMAL.replace(
                "}",
                &format!(", \"validation\": {{\"fraction\": 0}}, \"dp\": {{{extra}}}}}"),
            )
        };
        let ok =
            dp(r#""epsilon": 4, "delta": 1e-6, "clip_norm": 1.0, "mean": [0, 1], "std": [1, 2]"#);
        let spec = TrainingSpec::parse(&ok, "s.json").expect("a valid DP spec");
        assert_eq!(spec.dp.as_ref().map(|d| d.epsilon), Some(4.0));
        for (text, field) in [
            (
                dp(r#""epsilon": 0, "delta": 1e-6, "clip_norm": 1"#),
                "dp.epsilon",
            ),
            (
                dp(r#""epsilon": 1, "delta": 0, "clip_norm": 1"#),
                "dp.delta",
            ),
            (
                dp(r#""epsilon": 1, "delta": 1e-6, "clip_norm": -1"#),
                "dp.clip_norm",
            ),
            (
                dp(r#""epsilon": 1, "delta": 1e-6, "clip_norm": 1, "mean": [0, 1]"#),
                "give both mean and std",
            ),
            (
                dp(r#""epsilon": 1, "delta": 1e-6, "clip_norm": 1, "mean": [0], "std": [1]"#),
                "for 2 features",
            ),
            (
                dp(r#""epsilon": 1, "delta": 1e-6, "clip_norm": 1, "mean": [0, 1], "std": [1, 0]"#),
                "dp.std[1]",
            ),
            (
                dp(r#""epsilon": 1, "delta": 1e-6, "clip_norm": 1, "budget": 3"#),
                "unknown field",
            ),
            (
                MINIMAL.replace(
                    "}",
                    r#", "dp": {"epsilon": 1, "delta": 1e-6, "clip_norm": 1}}"#,
                ),
                "exact metrics",
            ),
            (
                ok.replacen("\"dp\"", r#""defences": {"l2_bound": 5.0}, "dp""#, 1),
                "take none under dp",
            ),
        ] {
            let err = TrainingSpec::parse(&text, "s.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    /// Malformed specs are refused with the file and the field, never a panic.
    #[test]
    fn malformed_specs_name_the_file_and_field() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1"),
            ("{", "line 1"),
            ("[]", "not a training spec"),
            ("{\"table\": 1}", "not a training spec"),
            (&MINIMAL.replace("\"model\"", "\"modle\""), "unknown field"),
            (&MINIMAL.replace("\"a\", \"b\"", ""), "features"),
            (&MINIMAL.replace("\"b\"", "\"A\""), "features[1]"),
            (&MINIMAL.replace("\"b\"", "\"y\""), "also the label"),
            (&MINIMAL.replace("\"no\", ", ""), "classes"),
            (&MINIMAL.replace("\"no\"", "\"yes\""), "classes[1]"),
            (
                &MINIMAL.replace("\"classes\": [\"no\", \"yes\"], ", ""),
                "needs the label's declared domain",
            ),
            (
                &MINIMAL.replace("\"logistic\"", "\"linear\""),
                "predicts a number",
            ),
            (
                &MINIMAL.replace("\"logistic\"", "\"svm\""),
                "unknown variant",
            ),
            (
                &MINIMAL.replace("\"logistic\"", "{\"mlp\": {\"hidden\": 0}}"),
                "model.mlp.hidden",
            ),
            (&MINIMAL.replace("}", ", \"rounds\": 0}"), "rounds"),
            (
                &MINIMAL.replace("}", ", \"validation\": {\"fraction\": 1.5}}"),
                "validation.fraction",
            ),
            (
                &MINIMAL.replace(
                    "}",
                    ", \"validation\": {\"fraction\": 0}, \"early_stopping\": {\"patience\": 2}}",
                ),
                "needs validation rows",
            ),
            (
                &MINIMAL.replace("}", ", \"early_stopping\": {\"patience\": 0}}"),
                "early_stopping.patience",
            ),
            (
                &MINIMAL.replace("}", ", \"train\": {\"learning_rate\": -1}}"),
                "train",
            ),
            (
                &MINIMAL.replace("}", ", \"train\": {\"batch_size\": 0}}"),
                "train",
            ),
            (
                &MINIMAL.replace("}", ", \"quantization\": {\"bits\": 40}}"),
                "quantization.bits",
            ),
            (
                &MINIMAL.replace("}", ", \"quantization\": {\"clip\": -1}}"),
                "quantization",
            ),
            (
                &MINIMAL.replace("}", ", \"quantization\": {\"max_weight\": 0}}"),
                "quantization",
            ),
        ];
        for (text, expected) in cases {
            let err = match TrainingSpec::parse(text, "bad.json") {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with("bad.json: "), "{text}: {err}");
            assert!(
                err.contains(expected),
                "{text}: {err} (expected {expected:?})"
            );
        }
        let missing = TrainingSpec::from_file(Path::new("/nonexistent/spec.json")).unwrap_err();
        assert!(matches!(missing, SpecError::Read { .. }), "{missing}");
    }
}
