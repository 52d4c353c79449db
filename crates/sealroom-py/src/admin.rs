//! `Admin`: the operator's identity, from Python.

use std::collections::BTreeMap;
use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use sealroom_analytics::joint::{QueryRunError, run_query};
use sealroom_analytics::query::{DataSource, QuerySpec};
use sealroom_analytics::table_training;
use sealroom_analytics::train_spec::TrainingSpec;
use sealroom_analytics::vector_fedavg::{self, VectorFedAvgParams};
use sealroom_analytics::{model_export, query};
use sealroom_node::config::{NodeConfig, Role, load_node_config};
use sealroom_node::local::RoundRunner as _;
use sealroom_node::tasks::TaskRequest;
use serde_json::json;

use crate::errors::{self, DataError, RequestRefused, RoundAborted};
use crate::fedavg;
use crate::runtime::wait;

/// `(sum, included client names, round id, total weight)` of a vector round.
type VectorRoundResult<'py> = (
    Bound<'py, PyArray1<f64>>,
    Vec<String>,
    u64,
    u64,
    BTreeMap<String, Vec<String>>,
);

/// An admin identity: starts rounds, trains, asks joint queries, runs the
/// vector FedAvg rounds of a framework, verifies audit logs.
#[pyclass(module = "sealroom._native", frozen)]
pub struct Admin {
    config: NodeConfig,
}

/// Loads a node config, refusing another role than `role`.
pub(crate) fn load(path: &std::path::Path, role: Role, what: &str) -> PyResult<NodeConfig> {
    let config = load_node_config(path).map_err(|e| errors::config(e.to_string()))?;
    if config.role != role {
        return Err(errors::config(format!(
            "{}: {what} needs a {} identity (role = \"{}\"), not a {}",
            path.display(),
            role.as_str(),
            role.as_str(),
            config.role.as_str()
        )));
    }
    Ok(config)
}

fn clients_or_all(config: &NodeConfig, clients: Option<Vec<String>>) -> Vec<String> {
    match clients {
        Some(c) if !c.is_empty() => c,
        _ => config
            .federation
            .clients
            .iter()
            .map(|c| c.name.clone())
            .collect(),
    }
}

fn query_error(e: QueryRunError) -> PyErr {
    match &e {
        QueryRunError::Aborted {
            round_id, reason, ..
        } => errors::error::<RoundAborted>(e.to_string(), reason, Some(*round_id)),
        QueryRunError::Request(_) => {
            errors::error::<RequestRefused>(e.to_string(), "request_refused", None)
        }
        QueryRunError::Query(_) => {
            errors::error::<errors::ConfigError>(e.to_string(), "query", None)
        }
        _ => errors::error::<errors::SealroomError>(e.to_string(), "other", None),
    }
}

#[pymethods]
impl Admin {
    /// Loads an admin config (`admin.toml` from `sealroom init`).
    #[new]
    fn new(config: PathBuf) -> PyResult<Admin> {
        Ok(Admin {
            config: load(&config, Role::Admin, "Admin")?,
        })
    }

    /// The federation's client names, in directory order.
    #[getter]
    fn clients(&self) -> Vec<String> {
        clients_or_all(&self.config, None)
    }

    /// The federation's `min_clients`.
    #[getter]
    fn min_clients(&self) -> usize {
        self.config.federation.min_clients
    }

    /// Runs one round of `task` (e.g. `synthetic`, with `dim` values) and
    /// returns its outcome as JSON (aborted rounds included: `status`
    /// says which).
    #[pyo3(signature = (task = "synthetic".to_string(), dim = 0, clients = None, timeout = None))]
    fn start_round(
        &self,
        py: Python<'_>,
        task: String,
        dim: u64,
        clients: Option<Vec<String>>,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let config = self.config.clone();
        let clients = clients.unwrap_or_default();
        let outcome = wait(py, timeout, async move {
            let request = TaskRequest {
                name: task,
                vector_len: dim,
                ..TaskRequest::default()
            };
            config.run_round(&request, clients).await
        })?
        .map_err(|s| {
            errors::error::<RequestRefused>(s.message().to_string(), "request_refused", None)
        })?;
        Ok(json!({
            "round_id": outcome.round_id,
            "status": outcome.status,
            "reason": outcome.reason,
            "detail": outcome.detail,
            "included_clients": outcome.included_clients,
            "values": outcome.values,
            "duration_ms": outcome.duration_ms,
        })
        .to_string())
    }

    /// Trains on the clients' own tables from a training spec (JSON text);
    /// returns the report as JSON. `test` is a CSV of the admin's own
    /// held-out rows; `export` a directory for the model.
    #[pyo3(signature = (spec, clients = None, test = None, export = None, timeout = None))]
    fn train(
        &self,
        py: Python<'_>,
        spec: String,
        clients: Option<Vec<String>>,
        test: Option<PathBuf>,
        export: Option<PathBuf>,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let spec = TrainingSpec::parse(&spec, "<spec>")
            .map_err(|e| errors::error::<errors::ConfigError>(e.to_string(), "spec", None))?;
        let clients = clients_or_all(&self.config, clients);
        let config = self.config.clone();
        let spec_run = spec.clone();
        let report = wait(py, timeout, async move {
            let test = match &test {
                Some(path) => Some(
                    table_training::read_test_rows(
                        &DataSource::Csv { path: path.clone() },
                        &spec_run,
                    )
                    .await
                    .map_err(|e| {
                        errors::error::<DataError>(format!("test rows: {e}"), "data", None)
                    })?,
                ),
                None => None,
            };
            table_training::train(&config, &spec_run, &clients, test.as_ref(), |_| {})
                .await
                .map_err(errors::training)
        })??;
        if let Some(dir) = &export {
            model_export::write(&report, dir)
                .map_err(|e| errors::error::<DataError>(e.to_string(), "export", None))?;
        }
        serde_json::to_string(&report)
            .map_err(|e| errors::error::<DataError>(e.to_string(), "export", None))
    }

    /// Asks a joint SQL question (a query spec as JSON text: `sql`,
    /// `domains`, `min_rows`, `min_clients`); returns the run as JSON.
    #[pyo3(signature = (spec, clients = None, timeout = None))]
    fn query(
        &self,
        py: Python<'_>,
        spec: String,
        clients: Option<Vec<String>>,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let spec: QuerySpec = serde_json::from_str(&spec).map_err(|e| {
            errors::error::<errors::ConfigError>(format!("query spec: {e}"), "query", None)
        })?;
        query::plan(&spec)
            .map_err(|e| errors::error::<errors::ConfigError>(e.to_string(), "query", None))?;
        let clients = clients_or_all(&self.config, clients);
        let config = self.config.clone();
        let run = wait(py, timeout, async move {
            run_query(&config, &spec, &clients).await
        })?
        .map_err(query_error)?;
        serde_json::to_string(&run)
            .map_err(|e| errors::error::<DataError>(e.to_string(), "query", None))
    }

    /// One vector FedAvg round of a framework: `clients` (by name) each
    /// contribute their encoded update; returns `(sum, included, round_id,
    /// total_weight, rejected)`, the sum to apply with `apply_sum`.
    /// `defences` (JSON, `sealroom_analytics::fl::Defences`) checks every update inside the
    /// engine and/or aggregates robustly; `rejected` names each included
    /// client whose update the helpers left out, with the checks it failed.
    #[pyo3(signature = (run, round, n_params, bits, clip, max_weight, clients, timeout = None, defences = None))]
    #[allow(clippy::too_many_arguments)]
    fn fedavg_round<'py>(
        &self,
        py: Python<'py>,
        run: String,
        round: u64,
        n_params: usize,
        bits: u8,
        clip: f64,
        max_weight: u32,
        clients: Vec<String>,
        timeout: Option<f64>,
        defences: Option<String>,
    ) -> PyResult<VectorRoundResult<'py>> {
        let params = VectorFedAvgParams {
            run,
            round,
            n_params,
            fedavg: fedavg::spec(bits, clip, max_weight)?,
            defences: fedavg::defences(defences.as_deref())?,
        };
        let config = self.config.clone();
        let invited = clients.clone();
        let result = wait(py, timeout, async move {
            vector_fedavg::run_round(&config, &params, &invited).await
        })?
        .map_err(errors::training)?;
        let included = result
            .included
            .iter()
            .filter_map(|&i| clients.get(i).cloned())
            .collect();
        Ok((
            result.sum.into_pyarray(py),
            included,
            result.round_id,
            result.total_weight,
            result.rejected,
        ))
    }

    /// Verifies a coordinator's or helper's audit log (its node config):
    /// the hash chain, every signature, no gaps. Returns a summary as JSON;
    /// raises `DataError` (reason `audit_tampered`) naming the first bad
    /// entry.
    #[pyo3(signature = (node_config, timeout = None))]
    fn verify_audit(
        &self,
        py: Python<'_>,
        node_config: PathBuf,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let node = load_node_config(&node_config).map_err(|e| errors::config(e.to_string()))?;
        let result = wait(py, timeout, async move {
            let store = match &node.database {
                Some(url) => sealroom_store::Store::open(url).await,
                None => {
                    sealroom_store::Store::open_sqlite(&node.data_dir.join("sealroom.db")).await
                }
            }
            .map_err(|e| e.to_string())?;
            let entries = store.audit_entries(None).await.map_err(|e| e.to_string())?;
            let gaps = store.audit_gaps(&entries).await.map_err(|e| e.to_string());
            store.close().await;
            Ok::<_, String>((entries, gaps))
        })?
        .map_err(|e| errors::error::<DataError>(e, "store", None))?;
        let (entries, gaps) = result;
        if entries.is_empty() {
            return Err(errors::error::<DataError>(
                "the audit log is empty (is this a coordinator's or helper's config?)",
                "audit_empty",
                None,
            ));
        }
        let (summary, violations) = sealroom_store::verify_chain(&entries);
        if let Some(v) = violations.first() {
            return Err(errors::error::<DataError>(
                format!(
                    "TAMPERED: {v} ({} bad entries of {} checked)",
                    violations.len(),
                    summary.entries
                ),
                "audit_tampered",
                None,
            ));
        }
        let gaps = gaps.map_err(|e| errors::error::<DataError>(e, "store", None))?;
        if let Some(first) = gaps.first() {
            return Err(errors::error::<DataError>(
                format!("TAMPERED: the log was cut short: {first}"),
                "audit_tampered",
                None,
            ));
        }
        Ok(json!({
            "verified": true,
            "entries": summary.entries,
            "rounds": summary.rounds.len(),
            "by_kind": summary.by_kind,
            "aborts": summary.aborts,
            "last_checkpoint": summary.last_checkpoint,
            "unsigned_tail": summary.unsigned_tail,
        })
        .to_string())
    }

    fn __repr__(&self) -> String {
        format!("Admin({:?})", self.config.file.display().to_string())
    }
}
