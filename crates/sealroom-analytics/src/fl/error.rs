//! The one error type of federated learning.

use sealroom_core::QuantError;

/// Why a data, training or aggregation request was refused.
///
/// Every variant says what to change; none carries a data value, a model
/// parameter or a delta.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FlError {
    /// A data set name that is not one of the bundled data sets.
    #[error("unknown data set `{name}`; choose one of: {choices}")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        choices: &'static str,
    },
    /// Two inputs that must agree in size do not.
    #[error("{what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// What was compared (e.g. "rows of x vs labels").
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size supplied.
        actual: usize,
    },
    /// A class label is not below the number of classes.
    #[error("label {label} at row {row} is not below the number of classes {n_classes}")]
    LabelOutOfRange {
        /// Row of the offending label.
        row: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// An operation needs at least one row (or client, or class).
    #[error("{what} is empty; at least one is needed")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A numeric setting outside its valid range.
    #[error("{name} = {value} is invalid; it must be {expected}")]
    InvalidParameter {
        /// The setting's name, as in the config struct.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// An input value is NaN or infinite.
    #[error("{what}: the value at index {index} is not finite (NaN or infinity)")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Position of the first offending value.
        index: usize,
    },
    /// The data cannot give every client its minimum number of rows.
    #[error(
        "{n_rows} rows cannot give each of {n_clients} clients at least {min_rows} rows; lower n_clients or min_rows"
    )]
    NotEnoughRows {
        /// Rows available.
        n_rows: usize,
        /// Clients requested.
        n_clients: usize,
        /// Minimum rows per client requested.
        min_rows: usize,
    },
    /// Local training produced a NaN or infinite parameter.
    #[error(
        "local training diverged: the model delta at index {index} is not finite; lower the learning rate"
    )]
    NonFiniteDelta {
        /// Position of the first non-finite delta value.
        index: usize,
    },
    /// A client without training rows has no update to send.
    #[error("a client with 0 training samples cannot send a weighted update")]
    ZeroWeight,
    /// The weights and quantized deltas cannot share one exact wire encoding.
    #[error(
        "weights up to {max_weight} times quantized deltas up to {max_abs} need {bits_needed} signed bits on the wire, beyond the {limit} an f64 sum represents exactly; lower max_weight or bits"
    )]
    WireTooWide {
        /// The weight cap.
        max_weight: u32,
        /// Largest quantized delta magnitude.
        max_abs: u64,
        /// Signed bits one wire value needs.
        bits_needed: u32,
        /// Largest width allowed.
        limit: u32,
    },
    /// The count slot of a sum is not a positive whole number of quanta.
    #[error(
        "the total weight in the sum's last slot is {quanta} quanta, not a positive integer; the sum was not produced by this FedAvg spec"
    )]
    InvalidTotalWeight {
        /// The count slot divided by the step.
        quanta: f64,
    },
    /// A sum value that is not on the wire grid or exceeds what the total
    /// weight allows.
    #[error(
        "sum value at index {index} is not a whole number of quanta within total weight × max delta; the sum was not produced by this FedAvg spec"
    )]
    InconsistentSum {
        /// Position of the first offending value.
        index: usize,
    },
    /// The plaintext sum of the updates exceeds the range an f64 holds
    /// exactly (the secure layer's headroom check refuses such rounds).
    #[error(
        "the sum of {n_updates} updates exceeds 2^53 quanta at index {index}; use fewer clients or a lower max_weight"
    )]
    SumOverflow {
        /// Updates summed.
        n_updates: usize,
        /// Position of the first overflowing value.
        index: usize,
    },
    /// An operation for one kind of model was asked of another (e.g. class
    /// predictions from a linear regression).
    #[error("a {kind} model cannot do this; it needs {needs}")]
    WrongModelKind {
        /// The model's kind.
        kind: String,
        /// What the operation needs.
        needs: &'static str,
    },
    /// A quantization spec or value was refused by `sealroom-core`.
    #[error("quantization refused: {0}")]
    Quantization(#[from] QuantError),
}
