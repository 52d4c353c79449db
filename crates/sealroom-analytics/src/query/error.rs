//! The one error type of the query layer.
//!
//! Every variant says what went wrong and what to do about it. Messages name
//! queries, columns, paths and line numbers, never a value from a party's
//! rows: an error may travel to the coordinator's log.

use std::path::PathBuf;

/// Which secure-sum round a vector belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Phase 1: per-cell contributing clients and capped row counts.
    Counts,
    /// Phase 2: the encoded statistics of the released cells.
    Stats,
}

impl core::fmt::Display for Phase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Phase::Counts => "counts",
            Phase::Stats => "statistics",
        })
    }
}

/// Why a query could not be planned, evaluated or finished.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL text does not parse.
    #[error("cannot parse the query: {message}")]
    Parse {
        /// The parser's explanation (it quotes the query, never data).
        message: String,
    },
    /// The query uses a feature that joint analytics cannot offer (yet).
    #[error("{what} is not supported: {why}")]
    Unsupported {
        /// The construct that was refused.
        what: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// The query is well-formed SQL but makes no sense as written.
    #[error("invalid query: {what}: {why}")]
    Invalid {
        /// The offending part of the query or spec.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The privacy policy of a query is unusable or below a party's floor.
    #[error("privacy policy refused: {why}")]
    Policy {
        /// What is wrong with the policy.
        why: String,
    },
    /// A data file does not exist.
    #[error("data file {path} does not exist")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A data file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file is not well-formed.
    #[error("malformed CSV {path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the offending record.
        line: u64,
        /// What is wrong with it (never the record's content).
        reason: String,
    },
    /// The configured table does not exist in the database.
    #[error("table {table:?} not found in {location}")]
    TableNotFound {
        /// The configured table name.
        table: String,
        /// The database (a path, or a URL without its password).
        location: String,
    },
    /// The query names a column the party's table does not have.
    #[error("column {column:?} not found in {location} (its columns: {available})")]
    UnknownColumn {
        /// The column as written in the query.
        column: String,
        /// The data source.
        location: String,
        /// The table's column names, comma-separated.
        available: String,
    },
    /// A column name matches several columns that differ only in case.
    #[error("column {column:?} is ambiguous in {location}: quote it with the exact case")]
    AmbiguousColumn {
        /// The column as written in the query.
        column: String,
        /// The data source.
        location: String,
    },
    /// A column used as a number holds values that are not numbers.
    #[error(
        "column {column:?} in {location} is used as a number but holds non-numeric values{}",
        line.map(|l| format!(" (first at line {l})")).unwrap_or_default()
    )]
    ColumnNotNumeric {
        /// The column.
        column: String,
        /// The data source.
        location: String,
        /// For a CSV file, the first line holding a non-numeric value.
        line: Option<u64>,
    },
    /// The database refused or failed a statement.
    #[error("{operation} failed on {location}")]
    Source {
        /// What was being done (`"connect"`, `"phase-1 query"`, …).
        operation: &'static str,
        /// The data source (a path, or a URL without its password).
        location: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A local statistic is not finite or too large for the exact encoding
    /// (|value| · 2^20 must stay below 2^95).
    #[error(
        "local statistic {statistic} of cell {cell} is not finite or exceeds the exact encoding's range (2^75)"
    )]
    ValueOutOfRange {
        /// Which statistic (its description, not its value).
        statistic: String,
        /// The cell index.
        cell: usize,
    },
    /// A summed vector has the wrong length.
    #[error("{phase} sum holds {actual} values, the plan expects {expected}")]
    LengthMismatch {
        /// The round.
        phase: Phase,
        /// Length the plan expects.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// A summed vector holds a value no honest sum can produce.
    #[error("{phase} sum is malformed at index {index}: {reason}")]
    MalformedSum {
        /// The round.
        phase: Phase,
        /// Position of the first offending element.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The list of released cells is not one `released_cells` could produce.
    #[error("invalid released-cell list: {reason}")]
    InvalidRelease {
        /// What is wrong.
        reason: String,
    },
    /// Order-round parameters ([`super::OrderParams`]) are malformed or do
    /// not belong to this plan.
    #[error("invalid order-round parameters: {reason}")]
    InvalidOrderParams {
        /// What is wrong (never a value).
        reason: &'static str,
    },
    /// The order round returned another number of outputs than its
    /// parameters call for.
    #[error("the order round returned {actual} outputs, its parameters expect {expected}")]
    OrderOutputs {
        /// Outputs the parameters call for.
        expected: usize,
        /// Outputs received.
        actual: usize,
    },
    /// The order round's engine program cannot be built for these
    /// parameters (too large, or no client).
    #[error("the order-round program cannot be built: {reason}")]
    OrderProgram {
        /// Why.
        reason: String,
    },
    /// A differentially private round's engine program cannot be built
    /// (no client, too many).
    #[error("the DP round's program cannot be built: {reason}")]
    DpProgram {
        /// Why.
        reason: String,
    },
    /// A differentially private round returned another number of outputs
    /// than its noise plan calls for.
    #[error("the DP round returned {actual} outputs, its noise plan expects {expected}")]
    DpOutputs {
        /// Outputs the plan calls for.
        expected: usize,
        /// Outputs received.
        actual: usize,
    },
}

impl QueryError {
    pub(crate) fn unsupported(what: impl Into<String>, why: impl Into<String>) -> QueryError {
        QueryError::Unsupported {
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> QueryError {
        QueryError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
}
