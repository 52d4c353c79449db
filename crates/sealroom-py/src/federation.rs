//! `LocalFederation`: a whole federation on loopback, written by the same
//! code as `sealroom init` and speaking real mutual TLS, for tests, demos
//! and benchmarks. The coordinator and helpers run in this process; the
//! clients' configs are left for `Client` objects (or Flower's mods) to run.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use sealroom_analytics::service;
use sealroom_node::config::Role;
use sealroom_node::init::InitOptions;
use sealroom_node::local;
use sealroom_node::tasks::InputSource;
use sealroom_protocol::VerifiedDescriptor;

use crate::errors::{self, SealroomError};
use crate::runtime::{runtime, wait};

/// The clients' slot while the federation starts: they are stopped at once,
/// so this never answers a round.
struct NoInput;

impl InputSource for NoInput {
    fn input(&self, d: &VerifiedDescriptor) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        Err(sealroom_node::tasks::InputError::new(
            sealroom_protocol::pb::SitOutReason::UnsupportedTask,
            d.task_name(),
            "this client is run from Python",
        ))
    }
}

/// A coordinator and helpers on 127.0.0.1 (see the module doc).
#[pyclass(module = "sealroom._native")]
pub struct LocalFederation {
    inner: Option<local::LocalFederation>,
    dir: PathBuf,
}

#[pymethods]
impl LocalFederation {
    /// Writes a federation of `clients` clients and `helpers` helpers into
    /// `dir` and starts its coordinator and helpers. `upload_window_ms`
    /// bounds how long a round waits for uploads.
    #[new]
    #[pyo3(signature = (dir, clients = 3, helpers = 3, min_clients = None, upload_window_ms = 30_000, aggregation_window_ms = 10_000, timeout = 120.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        clients: usize,
        helpers: usize,
        min_clients: Option<usize>,
        upload_window_ms: u64,
        aggregation_window_ms: u64,
        timeout: f64,
    ) -> PyResult<LocalFederation> {
        if clients < 2 || !(2..=16).contains(&helpers) {
            return Err(errors::config(
                "a federation needs at least 2 clients and 2 to 16 helpers",
            ));
        }
        let options = InitOptions {
            helpers,
            clients,
            min_clients,
            upload_window_ms,
            aggregation_window_ms,
            ..InitOptions::default()
        };
        let inputs: Vec<Arc<dyn InputSource>> =
            (0..clients).map(|_| Arc::new(NoInput) as _).collect();
        let path = dir.clone();
        let fed = wait(py, Some(timeout), async move {
            let (mut fed, _events) =
                local::LocalFederation::start(&path, options, service::catalog(), inputs).await?;
            for i in 0..clients {
                fed.stop_client(i).await;
            }
            Ok::<_, sealroom_node::NodeError>(fed)
        })?
        .map_err(|e| errors::error::<SealroomError>(e.to_string(), "node", None))?;
        Ok(LocalFederation {
            inner: Some(fed),
            dir,
        })
    }

    /// The federation directory.
    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The admin identity's config file.
    #[getter]
    fn admin_config(&self) -> PyResult<PathBuf> {
        self.config_of(Role::Admin, 0)
    }

    /// Client `index`'s config file.
    fn client_config(&self, index: usize) -> PyResult<PathBuf> {
        self.config_of(Role::Client, index)
    }

    /// The coordinator's config file (for audit verification).
    #[getter]
    fn coordinator_config(&self) -> PyResult<PathBuf> {
        self.config_of(Role::Coordinator, 0)
    }

    /// Stops the coordinator and helpers.
    #[pyo3(signature = (timeout = 30.0))]
    fn close(&mut self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        if let Some(fed) = self.inner.take() {
            wait(py, Some(timeout), async move { fed.shutdown().await })?;
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("LocalFederation({:?})", self.dir.display().to_string())
    }
}

impl LocalFederation {
    fn config_of(&self, role: Role, index: usize) -> PyResult<PathBuf> {
        let fed = self
            .inner
            .as_ref()
            .ok_or_else(|| errors::config("the federation is closed"))?;
        fed.summary
            .nodes
            .iter()
            .filter(|n| n.role == role)
            .nth(index)
            .map(|n| n.config.clone())
            .ok_or_else(|| errors::config(format!("no {} #{index}", role.as_str())))
    }
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        if let Some(fed) = self.inner.take()
            && let Ok(rt) = runtime()
        {
            rt.spawn(async move { fed.shutdown().await });
        }
    }
}
