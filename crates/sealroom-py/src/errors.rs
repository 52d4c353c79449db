//! The Python exceptions. Every one derives from `SealroomError` and
//! carries `reason`: the project's code for what went wrong (an abort
//! reason such as `not_enough_clients`, or `config`, `spec`, `data`,
//! `request_refused`, `cancelled`, `timeout`, …), so callers compare codes,
//! never message text. Messages name files, fields, columns and rounds;
//! never a value.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use sealroom_analytics::training::TrainingError;

create_exception!(
    _native,
    SealroomError,
    PyException,
    "Base of every sealroom error; `reason` holds its code."
);
create_exception!(
    _native,
    ConfigError,
    SealroomError,
    "A config, spec or argument was refused (before any round)."
);
create_exception!(
    _native,
    RequestRefused,
    SealroomError,
    "The coordinator refused or failed a request."
);
create_exception!(
    _native,
    RoundAborted,
    SealroomError,
    "A round aborted; `reason` is its abort code, `round_id` the round."
);
create_exception!(
    _native,
    DataError,
    SealroomError,
    "Local data or a result could not be used."
);
create_exception!(
    _native,
    Cancelled,
    SealroomError,
    "The operation was cancelled (KeyboardInterrupt, a signal, or close())."
);
create_exception!(
    _native,
    Timeout,
    SealroomError,
    "The operation did not finish within its timeout."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SealroomError", py.get_type::<SealroomError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("RequestRefused", py.get_type::<RequestRefused>())?;
    m.add("RoundAborted", py.get_type::<RoundAborted>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("Cancelled", py.get_type::<Cancelled>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    Ok(())
}

/// Builds `E(message)` with `reason` (and `round_id`, when known) set.
pub(crate) fn error<E: pyo3::PyTypeInfo>(
    message: impl Into<String>,
    reason: &str,
    round_id: Option<u64>,
) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let err = PyErr::new::<E, _>(message);
        let value = err.value(py);
        let _ = value.setattr("reason", reason);
        let _ = value.setattr("round_id", round_id);
        err
    })
}

/// A config or argument error.
pub(crate) fn config(message: impl Into<String>) -> PyErr {
    error::<ConfigError>(message, "config", None)
}

/// Maps a training or round error to its exception.
pub(crate) fn training(e: TrainingError) -> PyErr {
    match &e {
        TrainingError::Aborted {
            round_id, reason, ..
        } => error::<RoundAborted>(e.to_string(), reason, Some(*round_id)),
        TrainingError::Request(_) => {
            error::<RequestRefused>(e.to_string(), "request_refused", None)
        }
        TrainingError::Spec(_) => error::<ConfigError>(e.to_string(), "spec", None),
        TrainingError::Result { round_id, .. } => {
            error::<DataError>(e.to_string(), "inconsistent_result", Some(*round_id))
        }
        TrainingError::Fl(_) => error::<DataError>(e.to_string(), "training", None),
        _ => error::<SealroomError>(e.to_string(), "other", None),
    }
}
