//! # sealroom-py
//!
//! The native half of the `sealroom` Python package (`python/`), built by
//! maturin: pyo3 classes over the Rust library crates, never a second
//! implementation of anything.
//!
//! * [`admin`]: `Admin` — rounds, trainings, queries, vector FedAvg rounds
//!   for frameworks, audit verification, as an admin identity.
//! * [`client`]: `Client` — a client node whose input for framework rounds
//!   comes from a Python callable, and one-shot contributions.
//! * `resident`: one long-lived client node per client identity on this
//!   host, fed one update per framework round (the Flower mod's path).
//! * [`federation`]: `LocalFederation` — a coordinator and helpers on
//!   loopback for tests, demos and benchmarks.
//! * [`errors`]: the exception hierarchy; every exception carries the
//!   project's typed reason code in `reason`.
//!
//! Long operations run on one shared tokio runtime; the calling thread
//! releases the GIL while it waits, and wakes every 50 ms to let Python
//! deliver signals: Ctrl-C (or any exception a signal handler raises)
//! cancels the operation, as does its `timeout`.
//!
//! This crate must never put an input, a share, a model update or a local
//! statistic into an exception, a log line or a `repr`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod errors;
mod fedavg;
pub mod federation;
mod resident;
mod runtime;

use pyo3::prelude::*;

/// The native module, `sealroom._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<admin::Admin>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<federation::LocalFederation>()?;
    m.add_function(wrap_pyfunction!(fedavg::encode_update, m)?)?;
    m.add_function(wrap_pyfunction!(fedavg::apply_sum, m)?)?;
    m.add_function(wrap_pyfunction!(fedavg::fedavg_spec, m)?)?;
    m.add_function(wrap_pyfunction!(fedavg::delta_step, m)?)?;
    m.add_function(wrap_pyfunction!(client::client_name, m)?)?;
    m.add_function(wrap_pyfunction!(resident::resident_contribute, m)?)?;
    m.add_function(wrap_pyfunction!(resident::resident_start, m)?)?;
    m.add_function(wrap_pyfunction!(resident::resident_hosts, m)?)?;
    m.add_function(wrap_pyfunction!(resident::resident_stop, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
