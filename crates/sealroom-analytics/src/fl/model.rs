//! The models: multinomial logistic (softmax) regression and a one-hidden-
//! layer perceptron, both with a softmax output and mean cross-entropy loss,
//! and linear regression (one output, half mean squared error), all trained
//! locally by mini-batch SGD.
//!
//! A model is one flat parameter vector, so a FedAvg delta is a plain
//! vector. Layout (matrices row-major, `F` features, `C` classes, `H`
//! hidden units):
//!
//! * logistic: `W` (F×C), then `b` (C); logits `= x·W + b`;
//! * linear: `W` (F×1), then `b` (1); prediction `= x·W + b` (the model's
//!   "classes" are its one output, `C = 1`);
//! * MLP: `W1` (F×H), `b1` (H), `W2` (H×C), `b2` (C);
//!   logits `= tanh(x·W1 + b1)·W2 + b2`.
//!
//! Training minimizes `mean cross-entropy + (l2/2)·‖weights‖²` (linear
//! regression: `½·mean (ŷ − y)² + (l2/2)·‖weights‖²`; biases are not
//! penalized). The same inputs give the same model bit for bit: the
//! shuffle comes from ChaCha20 seeded with [`TrainConfig::seed`], and every
//! floating-point operation runs in a fixed order.

use core::fmt;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::FlError;
use super::data::check_labels;
use super::split::{SplitRng, shuffle};

/// Which model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Multinomial logistic regression (softmax regression).
    Logistic,
    /// One hidden layer of `hidden` tanh units, softmax output.
    Mlp {
        /// Hidden units (at least 1).
        hidden: usize,
    },
    /// Linear regression: one real output, squared-error loss.
    Linear,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelKind::Logistic => f.write_str("logistic"),
            ModelKind::Mlp { hidden } => write!(f, "mlp(hidden={hidden})"),
            ModelKind::Linear => f.write_str("linear"),
        }
    }
}

impl ModelKind {
    /// Whether the model predicts a real value (linear regression) rather
    /// than a class.
    pub fn is_regression(self) -> bool {
        match self {
            ModelKind::Linear => true,
            ModelKind::Logistic | ModelKind::Mlp { .. } => false,
        }
    }

    /// Length of the flat parameter vector for `n_features` inputs and
    /// `n_classes` outputs (see the module doc for the layout; a linear
    /// regression has one output).
    pub fn n_params(self, n_features: usize, n_classes: usize) -> usize {
        match self {
            ModelKind::Logistic | ModelKind::Linear => n_features * n_classes + n_classes,
            ModelKind::Mlp { hidden } => {
                n_features * hidden + hidden + hidden * n_classes + n_classes
            }
        }
    }
}

/// Local training settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// SGD step size (positive).
    pub learning_rate: f64,
    /// Passes over the local data (0 returns the model unchanged; at most
    /// [`MAX_EPOCHS`]).
    pub epochs: usize,
    /// Rows per mini-batch (at least 1; the last batch may be smaller).
    pub batch_size: usize,
    /// L2 penalty on the weights (not the biases); 0 disables it.
    pub l2: f64,
    /// Seed of the shuffle (public: it decides the batch order only).
    pub seed: u64,
}

/// The most passes over its data a round may ask of a client: the
/// coordinator refuses more (an admin must not be able to keep every
/// client's CPU busy indefinitely), and so does each client.
pub const MAX_EPOCHS: usize = 1_000;

impl TrainConfig {
    /// Checks every setting: the coordinator's planner before a round is
    /// issued, and each client before it trains.
    pub fn check(&self) -> Result<(), FlError> {
        if self.epochs > MAX_EPOCHS {
            return Err(FlError::InvalidParameter {
                name: "epochs",
                value: self.epochs as f64,
                expected: "at most 1000 (MAX_EPOCHS)",
            });
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(FlError::InvalidParameter {
                name: "learning_rate",
                value: self.learning_rate,
                expected: "positive and finite",
            });
        }
        if self.batch_size == 0 {
            return Err(FlError::InvalidParameter {
                name: "batch_size",
                value: 0.0,
                expected: "at least 1",
            });
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(FlError::InvalidParameter {
                name: "l2",
                value: self.l2,
                expected: "non-negative and finite",
            });
        }
        Ok(())
    }
}

/// A model: its kind, its shape and one flat parameter vector.
///
/// A model trained locally reveals something about the data it saw, so the
/// parameters are zeroized on drop and `Debug` prints only the shape.
#[derive(Clone)]
pub struct Model {
    kind: ModelKind,
    n_features: usize,
    n_classes: usize,
    params: Vec<f64>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Model({}, features={}, classes={}, params={}, <redacted>)",
            self.kind,
            self.n_features,
            self.n_classes,
            self.params.len()
        )
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.params.zeroize();
    }
}

impl Model {
    /// A fresh model: logistic regression starts at zero; the MLP's weights
    /// are drawn uniformly from ±√(6 / (fan_in + fan_out)) (Glorot & Bengio,
    /// 2010) with a ChaCha20 stream seeded by `seed`, biases zero.
    pub fn new(
        kind: ModelKind,
        n_features: usize,
        n_classes: usize,
        seed: u64,
    ) -> Result<Model, FlError> {
        check_shape(kind, n_features, n_classes)?;
        let mut params = vec![0.0; kind.n_params(n_features, n_classes)];
        if let ModelKind::Mlp { hidden } = kind {
            let mut rng = SplitRng::new(seed);
            let w1_len = n_features * hidden;
            let w2_start = w1_len + hidden;
            let w2_len = hidden * n_classes;
            let limit1 = (6.0 / (n_features + hidden) as f64).sqrt();
            let limit2 = (6.0 / (hidden + n_classes) as f64).sqrt();
            for p in &mut params[..w1_len] {
                *p = (2.0 * rng.open01() - 1.0) * limit1;
            }
            for p in &mut params[w2_start..w2_start + w2_len] {
                *p = (2.0 * rng.open01() - 1.0) * limit2;
            }
        }
        Ok(Model {
            kind,
            n_features,
            n_classes,
            params,
        })
    }

    /// A model with the given parameters (layout as in the module doc); the
    /// length must match and every value must be finite.
    pub fn from_params(
        kind: ModelKind,
        n_features: usize,
        n_classes: usize,
        params: Vec<f64>,
    ) -> Result<Model, FlError> {
        check_shape(kind, n_features, n_classes)?;
        let expected = kind.n_params(n_features, n_classes);
        if params.len() != expected {
            return Err(FlError::ShapeMismatch {
                what: "parameters for this model shape",
                expected,
                actual: params.len(),
            });
        }
        if let Some(index) = params.iter().position(|p| !p.is_finite()) {
            return Err(FlError::NonFinite {
                what: "model parameters",
                index,
            });
        }
        Ok(Model {
            kind,
            n_features,
            n_classes,
            params,
        })
    }

    /// The model kind.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The flat parameter vector (layout in the module doc).
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// Length of the flat parameter vector.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }

    /// Class probabilities, one row per row of `x`.
    pub fn predict_proba(&self, x: &Array2<f64>) -> Result<Array2<f64>, FlError> {
        self.check_classifier()?;
        self.check_features(x)?;
        let mut logits = self.forward(&self.params, x.view()).logits;
        for mut row in logits.rows_mut() {
            let lse = log_sum_exp(row.view());
            row.mapv_inplace(|z| (z - lse).exp());
        }
        Ok(logits)
    }

    /// The most probable class of each row (the lowest index on ties).
    pub fn predict(&self, x: &Array2<f64>) -> Result<Array1<usize>, FlError> {
        self.check_classifier()?;
        self.check_features(x)?;
        let logits = self.forward(&self.params, x.view()).logits;
        Ok(logits.rows().into_iter().map(argmax).collect())
    }

    /// Fraction of rows whose predicted class equals `y`.
    pub fn accuracy(&self, x: &Array2<f64>, y: &Array1<usize>) -> Result<f64, FlError> {
        self.check_data(x, y)?;
        if y.is_empty() {
            return Err(FlError::Empty {
                what: "evaluation data",
            });
        }
        let predicted = self.predict(x)?;
        let correct = predicted.iter().zip(y).filter(|(p, t)| p == t).count();
        Ok(correct as f64 / y.len() as f64)
    }

    /// Mean cross-entropy of the labels `y` under the model (no L2 term),
    /// computed with a stable log-softmax.
    pub fn loss(&self, x: &Array2<f64>, y: &Array1<usize>) -> Result<f64, FlError> {
        self.check_data(x, y)?;
        if y.is_empty() {
            return Err(FlError::Empty {
                what: "evaluation data",
            });
        }
        let logits = self.forward(&self.params, x.view()).logits;
        let total: f64 = logits
            .rows()
            .into_iter()
            .zip(y)
            .map(|(row, &label)| log_sum_exp(row) - row[label])
            .sum();
        Ok(total / y.len() as f64)
    }

    /// Trains a copy of this model on `(x, y)` by mini-batch SGD: each epoch
    /// shuffles the rows (ChaCha20 seeded by `config.seed`, continuing across
    /// epochs), then steps `params −= learning_rate · ∇` per batch.
    /// Deterministic bit for bit for the same inputs.
    pub fn train_local(
        &self,
        x: &Array2<f64>,
        y: &Array1<usize>,
        config: &TrainConfig,
    ) -> Result<Model, FlError> {
        self.check_classifier()?;
        self.check_data(x, y)?;
        let labels = y.to_vec();
        self.train_on(x, Targets::Classes(&labels), config)
    }

    /// [`Model::train_local`] for a linear regression: real targets `y`.
    pub fn train_local_regression(
        &self,
        x: &Array2<f64>,
        y: &Array1<f64>,
        config: &TrainConfig,
    ) -> Result<Model, FlError> {
        self.check_regression(x, y)?;
        let values = y.to_vec();
        self.train_on(x, Targets::Values(&values), config)
    }

    /// Predictions of a linear regression, one per row of `x`.
    pub fn predict_values(&self, x: &Array2<f64>) -> Result<Array1<f64>, FlError> {
        if !self.kind.is_regression() {
            return Err(FlError::WrongModelKind {
                kind: self.kind.to_string(),
                needs: "a regression model (linear)",
            });
        }
        self.check_features(x)?;
        let out = self.forward(&self.params, x.view()).logits;
        Ok(out.column(0).to_owned())
    }

    /// Mean squared error of a linear regression on `(x, y)`.
    pub fn mse(&self, x: &Array2<f64>, y: &Array1<f64>) -> Result<f64, FlError> {
        self.check_regression(x, y)?;
        let predicted = self.predict_values(x)?;
        let total: f64 = predicted
            .iter()
            .zip(y)
            .map(|(p, t)| (p - t) * (p - t))
            .sum();
        Ok(total / y.len() as f64)
    }

    fn check_classifier(&self) -> Result<(), FlError> {
        if self.kind.is_regression() {
            return Err(FlError::WrongModelKind {
                kind: self.kind.to_string(),
                needs: "a classifier (logistic or mlp)",
            });
        }
        Ok(())
    }

    fn check_regression(&self, x: &Array2<f64>, y: &Array1<f64>) -> Result<(), FlError> {
        if !self.kind.is_regression() {
            return Err(FlError::WrongModelKind {
                kind: self.kind.to_string(),
                needs: "a regression model (linear)",
            });
        }
        self.check_features(x)?;
        if y.len() != x.nrows() {
            return Err(FlError::ShapeMismatch {
                what: "targets vs rows of x",
                expected: x.nrows(),
                actual: y.len(),
            });
        }
        if y.is_empty() {
            return Err(FlError::Empty {
                what: "regression data",
            });
        }
        if let Some(index) = y.iter().position(|v| !v.is_finite()) {
            return Err(FlError::NonFinite {
                what: "regression targets",
                index,
            });
        }
        Ok(())
    }

    fn train_on(
        &self,
        x: &Array2<f64>,
        y: Targets<'_>,
        config: &TrainConfig,
    ) -> Result<Model, FlError> {
        config.check()?;
        if y.is_empty() {
            return Err(FlError::Empty {
                what: "local training data",
            });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(FlError::NonFinite {
                what: "training features (row-major)",
                index,
            });
        }
        let mut trained = self.clone();
        let mut rng = SplitRng::new(config.seed);
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        for _ in 0..config.epochs {
            shuffle(&mut rng, &mut order);
            for batch in order.chunks(config.batch_size) {
                let xb = x.select(Axis(0), batch);
                let yb = y.select(batch);
                let (_, grad) = trained.objective(&trained.params, xb.view(), yb.view(), config.l2);
                for (p, g) in trained.params.iter_mut().zip(&grad) {
                    *p -= config.learning_rate * g;
                }
            }
        }
        Ok(trained)
    }

    fn check_features(&self, x: &Array2<f64>) -> Result<(), FlError> {
        if x.ncols() != self.n_features {
            return Err(FlError::ShapeMismatch {
                what: "columns of x vs model features",
                expected: self.n_features,
                actual: x.ncols(),
            });
        }
        Ok(())
    }

    fn check_data(&self, x: &Array2<f64>, y: &Array1<usize>) -> Result<(), FlError> {
        self.check_classifier()?;
        self.check_features(x)?;
        check_labels(x, y, self.n_classes)
    }

    /// Logits (and, for the MLP, the hidden activations) for `params`.
    fn forward(&self, params: &[f64], x: ArrayView2<'_, f64>) -> Forward {
        let (f, c) = (self.n_features, self.n_classes);
        match self.kind {
            ModelKind::Logistic | ModelKind::Linear => {
                let (w, b) = (matrix(params, 0, f, c), vector(params, f * c, c));
                Forward {
                    logits: x.dot(&w) + b,
                    hidden: None,
                }
            }
            ModelKind::Mlp { hidden: h } => {
                let w1 = matrix(params, 0, f, h);
                let b1 = vector(params, f * h, h);
                let w2 = matrix(params, f * h + h, h, c);
                let b2 = vector(params, f * h + h + h * c, c);
                let hidden = (x.dot(&w1) + b1).mapv_into(f64::tanh);
                Forward {
                    logits: hidden.dot(&w2) + b2,
                    hidden: Some(hidden),
                }
            }
        }
    }

    /// The training objective on a batch and its gradient (same layout as
    /// the parameters): `mean CE + (l2/2)·‖weights‖²`.
    fn objective(
        &self,
        params: &[f64],
        x: ArrayView2<'_, f64>,
        y: Targets<'_>,
        l2: f64,
    ) -> (f64, Vec<f64>) {
        let (f, c) = (self.n_features, self.n_classes);
        let m = y.len() as f64;
        let Forward { logits, hidden } = self.forward(params, x);
        let mut dlogits = logits;
        let mut ce = 0.0;
        match y {
            // dL/dlogits = (softmax − onehot) / m, and the mean cross-entropy.
            Targets::Classes(labels) => {
                for (mut row, &label) in dlogits.rows_mut().into_iter().zip(labels) {
                    let lse = log_sum_exp(row.view());
                    ce += lse - row[label];
                    row.mapv_inplace(|z| (z - lse).exp() / m);
                    row[label] -= 1.0 / m;
                }
            }
            // dL/dŷ = (ŷ − y) / m, and half the summed squared error.
            Targets::Values(values) => {
                for (mut row, &target) in dlogits.rows_mut().into_iter().zip(values) {
                    let residual = row[0] - target;
                    ce += 0.5 * residual * residual;
                    row[0] = residual / m;
                }
            }
        }
        let mut grad = Vec::with_capacity(params.len());
        let mut penalty = 0.0;
        match (self.kind, hidden) {
            (ModelKind::Mlp { hidden: h }, Some(act)) => {
                let w1 = matrix(params, 0, f, h);
                let w2 = matrix(params, f * h + h, h, c);
                let gw2 = act.t().dot(&dlogits) + &(&w2 * l2);
                let gb2 = dlogits.sum_axis(Axis(0));
                // Back through tanh: d/dz tanh(z) = 1 − tanh(z)².
                let dz1 = dlogits.dot(&w2.t()) * act.mapv(|a| 1.0 - a * a);
                let gw1 = x.t().dot(&dz1) + &(&w1 * l2);
                let gb1 = dz1.sum_axis(Axis(0));
                penalty += w1.iter().chain(w2.iter()).map(|w| w * w).sum::<f64>();
                grad.extend(gw1.iter().chain(&gb1).chain(&gw2).chain(&gb2));
            }
            _ => {
                let w = matrix(params, 0, f, c);
                let gw = x.t().dot(&dlogits) + &(&w * l2);
                let gb = dlogits.sum_axis(Axis(0));
                penalty += w.iter().map(|w| w * w).sum::<f64>();
                grad.extend(gw.iter().chain(&gb));
            }
        }
        (ce / m + 0.5 * l2 * penalty, grad)
    }
}

struct Forward {
    logits: Array2<f64>,
    hidden: Option<Array2<f64>>,
}

/// What a batch is trained towards: class labels or real values.
#[derive(Clone, Copy)]
enum Targets<'a> {
    Classes(&'a [usize]),
    Values(&'a [f64]),
}

/// The targets of a batch, owned.
enum OwnedTargets {
    Classes(Vec<usize>),
    Values(Vec<f64>),
}

impl OwnedTargets {
    fn view(&self) -> Targets<'_> {
        match self {
            OwnedTargets::Classes(v) => Targets::Classes(v),
            OwnedTargets::Values(v) => Targets::Values(v),
        }
    }
}

impl Targets<'_> {
    fn len(&self) -> usize {
        match self {
            Targets::Classes(v) => v.len(),
            Targets::Values(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn select(&self, rows: &[usize]) -> OwnedTargets {
        match self {
            Targets::Classes(v) => OwnedTargets::Classes(rows.iter().map(|&r| v[r]).collect()),
            Targets::Values(v) => OwnedTargets::Values(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

fn check_shape(kind: ModelKind, n_features: usize, n_classes: usize) -> Result<(), FlError> {
    if n_features == 0 {
        return Err(FlError::Empty { what: "features" });
    }
    if kind.is_regression() {
        if n_classes != 1 {
            return Err(FlError::InvalidParameter {
                name: "n_classes",
                value: n_classes as f64,
                expected: "1 (the one output of a linear regression)",
            });
        }
    } else if n_classes < 2 {
        return Err(FlError::InvalidParameter {
            name: "n_classes",
            value: n_classes as f64,
            expected: "at least 2",
        });
    }
    if kind == (ModelKind::Mlp { hidden: 0 }) {
        return Err(FlError::InvalidParameter {
            name: "hidden",
            value: 0.0,
            expected: "at least 1",
        });
    }
    Ok(())
}

/// The `rows × cols` row-major matrix starting at `offset` of the params.
fn matrix(params: &[f64], offset: usize, rows: usize, cols: usize) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((rows, cols), &params[offset..offset + rows * cols])
        .expect("the parameter length is checked against the layout when the model is built")
}

/// The `len` values starting at `offset` of the params.
fn vector(params: &[f64], offset: usize, len: usize) -> ArrayView1<'_, f64> {
    ArrayView1::from(&params[offset..offset + len])
}

/// `ln Σ exp(z)`, shifted by the maximum so that it cannot overflow.
fn log_sum_exp(z: ArrayView1<'_, f64>) -> f64 {
    let max = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    if !max.is_finite() {
        return max;
    }
    max + z.fold(0.0, |s, &v| s + (v - max).exp()).ln()
}

fn argmax(z: ArrayView1<'_, f64>) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_data(
        rows: usize,
        features: usize,
        classes: usize,
        seed: u64,
    ) -> (Array2<f64>, Vec<usize>) {
        let mut rng = SplitRng::new(seed);
        let x = Array2::from_shape_fn((rows, features), |_| rng.normal());
        let y = (0..rows).map(|_| rng.below(classes)).collect();
        (x, y)
    }

    /// Central finite differences of the objective agree with the analytic
    /// gradient for every parameter, for both models, with L2 on.
    #[test]
    fn gradients_match_finite_differences() {
        let (x, y) = toy_data(9, 3, 4, 1);
        for kind in [ModelKind::Logistic, ModelKind::Mlp { hidden: 5 }] {
            let mut model = Model::new(kind, 3, 4, 2).unwrap();
            // Move off the zero start so the logistic check is not trivial.
            let mut rng = SplitRng::new(3);
            for p in &mut model.params {
                *p += 0.5 * rng.normal();
            }
            let l2 = 0.3;
            let (_, grad) = model.objective(&model.params, x.view(), Targets::Classes(&y), l2);
            assert_eq!(grad.len(), model.n_params());
            let eps = 1e-6;
            for i in 0..model.n_params() {
                let mut plus = model.params.clone();
                plus[i] += eps;
                let mut minus = model.params.clone();
                minus[i] -= eps;
                let numeric = (model.objective(&plus, x.view(), Targets::Classes(&y), l2).0
                    - model
                        .objective(&minus, x.view(), Targets::Classes(&y), l2)
                        .0)
                    / (2.0 * eps);
                let err = (numeric - grad[i]).abs() / (1e-8 + numeric.abs() + grad[i].abs());
                assert!(
                    err < 1e-6,
                    "{kind} param {i}: numeric {numeric}, analytic {}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn linear_gradients_match_finite_differences_and_fit_a_line() {
        let mut rng = SplitRng::new(5);
        let x = Array2::from_shape_fn((12, 3), |_| rng.normal());
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 2.0 * r[0] - r[1] + 0.5 + 0.01 * rng.normal())
            .collect();
        let mut model = Model::new(ModelKind::Linear, 3, 1, 0).unwrap();
        for p in &mut model.params {
            *p += 0.3 * rng.normal();
        }
        let l2 = 0.2;
        let (_, grad) = model.objective(&model.params, x.view(), Targets::Values(&y), l2);
        let eps = 1e-6;
        for i in 0..model.n_params() {
            let mut plus = model.params.clone();
            plus[i] += eps;
            let mut minus = model.params.clone();
            minus[i] -= eps;
            let numeric = (model.objective(&plus, x.view(), Targets::Values(&y), l2).0
                - model.objective(&minus, x.view(), Targets::Values(&y), l2).0)
                / (2.0 * eps);
            let err = (numeric - grad[i]).abs() / (1e-8 + numeric.abs() + grad[i].abs());
            assert!(
                err < 1e-6,
                "param {i}: numeric {numeric}, analytic {}",
                grad[i]
            );
        }
        let config = TrainConfig {
            learning_rate: 0.1,
            epochs: 200,
            batch_size: 4,
            l2: 0.0,
            seed: 1,
        };
        let fitted = Model::new(ModelKind::Linear, 3, 1, 0)
            .unwrap()
            .train_local_regression(&x, &Array1::from(y.clone()), &config)
            .unwrap();
        let p = fitted.params();
        assert!(
            (p[0] - 2.0).abs() < 0.05 && (p[1] + 1.0).abs() < 0.05,
            "{p:?}"
        );
        assert!((p[3] - 0.5).abs() < 0.05, "{p:?}");
        assert!(fitted.mse(&x, &Array1::from(y)).unwrap() < 1e-3);
        assert!(matches!(
            fitted.predict(&x),
            Err(FlError::WrongModelKind { .. })
        ));
        assert!(Model::new(ModelKind::Linear, 3, 2, 0).is_err());
    }

    #[test]
    fn probabilities_are_normalized_and_stable_for_huge_logits() {
        let mut params = vec![0.0; ModelKind::Logistic.n_params(2, 3)];
        params[0] = 1e300; // x0 · W[0,0]: an enormous logit
        let model = Model::from_params(ModelKind::Logistic, 2, 3, params).unwrap();
        let x = ndarray::array![[1.0, 0.0], [-1.0, 2.0], [0.0, 0.0]];
        let p = model.predict_proba(&x).unwrap();
        for row in p.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-12, "{row}");
        }
        let loss = model.loss(&x, &ndarray::array![0, 1, 2]).unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        assert_eq!(model.predict(&x).unwrap(), ndarray::array![0, 1, 0]);
    }

    #[test]
    fn logistic_starts_at_uniform_loss() {
        let (x, y) = toy_data(20, 3, 4, 9);
        let model = Model::new(ModelKind::Logistic, 3, 4, 0).unwrap();
        let loss = model.loss(&x, &Array1::from(y)).unwrap();
        assert!((loss - 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Model::new(ModelKind::Mlp { hidden: 0 }, 3, 2, 0).is_err());
        assert!(Model::new(ModelKind::Logistic, 3, 1, 0).is_err());
        assert!(Model::from_params(ModelKind::Logistic, 2, 2, vec![0.0; 5]).is_err());
        assert!(Model::from_params(ModelKind::Logistic, 2, 2, vec![f64::NAN; 6]).is_err());
        let model = Model::new(ModelKind::Logistic, 2, 2, 0).unwrap();
        let x = Array2::zeros((3, 3));
        assert!(model.predict(&x).is_err());
        let x = Array2::zeros((3, 2));
        assert!(matches!(
            model.accuracy(&x, &ndarray::array![0, 2, 1]),
            Err(FlError::LabelOutOfRange { row: 1, .. })
        ));
        assert!(!format!("{model:?}").contains("0.0"));
    }
}
