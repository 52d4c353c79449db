//! `Client`: a client node run from Python. Its input for a framework's
//! vector FedAvg rounds comes from a Python callable returning a numpy
//! array; its tables (the config's `[data.*]`) answer queries and table
//! trainings as `sealroom node` would. `Client.contribute` answers exactly
//! one round with a node of its own (start, answer, stop); a framework that
//! contributes every round hands its updates to a resident client instead
//! (`resident`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use sealroom_analytics::service;
use sealroom_analytics::vector_fedavg::{VECTOR_FEDAVG_TASK, VectorFedAvgParams};
use sealroom_node::client_node::{self, ClientEvent};
use sealroom_node::config::{NodeConfig, Role};
use sealroom_node::local::open_context;
use sealroom_node::metrics::Metrics;
use sealroom_node::shutdown::{self, ShutdownTrigger};
use sealroom_node::tasks::InputSource;
use sealroom_protocol::VerifiedDescriptor;
use serde_json::json;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::admin::load;
use crate::errors::{self, DataError, SealroomError};
use crate::fedavg;
use crate::runtime::{runtime, wait};

/// Why this client cannot contribute a framework round's vector. Never
/// carries a value; the single adapter below turns it into the typed
/// reason the coordinator is told.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("not a vector FedAvg round")]
    NotMyTask,
    #[error("malformed vector FedAvg parameters: {0}")]
    Parameters(String),
    #[error(
        "the round is not the one this update was encoded for (run, round, length or quantization differ)"
    )]
    OtherRound,
    #[error("this update was already contributed")]
    AlreadyUsed,
    #[error("the Python input raised {0}")]
    Python(String),
    #[error("the Python input returned {actual} values; the round needs {expected}")]
    Length { expected: usize, actual: usize },
}

impl InputError {
    /// The typed reason the coordinator is told; the full text stays in
    /// this client's log (an exception's type, never its message).
    fn sit_out(&self) -> sealroom_node::tasks::InputError {
        use sealroom_protocol::pb::SitOutReason as R;
        let reason = match self {
            InputError::NotMyTask => R::UnsupportedTask,
            InputError::Parameters(_) | InputError::OtherRound => R::InvalidParameters,
            InputError::AlreadyUsed | InputError::Python(_) | InputError::Length { .. } => {
                R::InputFailed
            }
        };
        sealroom_node::tasks::InputError::new(reason, "", self.to_string())
    }
}

fn params_of(descriptor: &VerifiedDescriptor) -> Result<VectorFedAvgParams, InputError> {
    if descriptor.task_name() != VECTOR_FEDAVG_TASK {
        return Err(InputError::NotMyTask);
    }
    serde_json::from_slice(descriptor.task_params())
        .map_err(|e| InputError::Parameters(e.to_string()))
}

/// A round's vector from a Python callable: `input(round)` with `round` a
/// dict (`round_id`, `task`, `params`, `vector_len`) returns a 1-D array
/// of floats.
struct PyInput {
    callable: Py<PyAny>,
}

impl PyInput {
    fn vector(&self, descriptor: &VerifiedDescriptor) -> Result<Zeroizing<Vec<f64>>, InputError> {
        let params = params_of(descriptor)?;
        let expected = descriptor.vector_len();
        Python::attach(|py| {
            let err = |e: PyErr| {
                InputError::Python(
                    e.get_type(py)
                        .name()
                        .map_or("an exception".into(), |n| n.to_string()),
                )
            };
            let round = pyo3::types::PyDict::new(py);
            round
                .set_item("round_id", descriptor.round_id())
                .map_err(err)?;
            round.set_item("task", VECTOR_FEDAVG_TASK).map_err(err)?;
            round.set_item("run", params.run.as_str()).map_err(err)?;
            round.set_item("round", params.round).map_err(err)?;
            round.set_item("n_params", params.n_params).map_err(err)?;
            round.set_item("bits", params.fedavg.bits).map_err(err)?;
            round
                .set_item("clip", params.fedavg.delta_clip)
                .map_err(err)?;
            round
                .set_item("max_weight", params.fedavg.max_weight)
                .map_err(err)?;
            round.set_item("vector_len", expected).map_err(err)?;
            // The round's defences (JSON; `None` without): with robust
            // aggregation the update is encoded unweighted.
            let defences = params.defences;
            let defences = (defences != Default::default())
                .then(|| serde_json::to_string(&defences))
                .transpose()
                .map_err(|e| InputError::Parameters(e.to_string()))?;
            round.set_item("defences", defences).map_err(err)?;
            let out = self.callable.call1(py, (round,)).map_err(err)?;
            let array: PyReadonlyArray1<'_, f64> = out.extract(py).map_err(err)?;
            let values = Zeroizing::new(array.as_slice().map_err(|e| err(e.into()))?.to_vec());
            if values.len() != expected {
                return Err(InputError::Length {
                    expected,
                    actual: values.len(),
                });
            }
            Ok(values)
        })
    }
}

/// The single adapter from the typed input error to the node's contract.
impl InputSource for PyInput {
    fn input(
        &self,
        descriptor: &VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        self.vector(descriptor)
            .map(|v| v.to_vec())
            .map_err(|e| e.sit_out())
    }
}

/// One encoded update for exactly one round (`Client.contribute`).
struct OneShot {
    expected: VectorFedAvgParams,
    vector: Mutex<Option<Zeroizing<Vec<f64>>>>,
    round_id: AtomicU64,
}

impl OneShot {
    fn vector(&self, descriptor: &VerifiedDescriptor) -> Result<Zeroizing<Vec<f64>>, InputError> {
        let params = params_of(descriptor)?;
        if params != self.expected {
            return Err(InputError::OtherRound);
        }
        let vector = self
            .vector
            .lock()
            .ok()
            .and_then(|mut v| v.take())
            .ok_or(InputError::AlreadyUsed)?;
        self.round_id.store(descriptor.round_id(), Ordering::SeqCst);
        Ok(vector)
    }
}

impl InputSource for OneShot {
    fn input(
        &self,
        descriptor: &VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        self.vector(descriptor)
            .map(|v| v.to_vec())
            .map_err(|e| e.sit_out())
    }
}

struct Running {
    trigger: ShutdownTrigger,
    join: tokio::task::JoinHandle<Result<(), sealroom_node::NodeError>>,
}

/// A client node run from Python.
#[pyclass(module = "sealroom._native")]
pub struct Client {
    config: NodeConfig,
    input: Option<Py<PyAny>>,
    running: Option<Running>,
    events: Option<mpsc::UnboundedReceiver<ClientEvent>>,
}

fn event_json(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Uploaded { round_id, bytes } => {
            json!({"kind": "uploaded", "round_id": round_id, "bytes": bytes})
        }
        ClientEvent::Skipped { round_id, reason } => {
            json!({"kind": "skipped", "round_id": round_id, "reason": reason})
        }
        ClientEvent::UploadFailed { round_id, reason } => {
            json!({"kind": "upload_failed", "round_id": round_id, "reason": reason})
        }
        ClientEvent::Outcome { round_id, kind } => {
            json!({"kind": "outcome", "round_id": round_id, "outcome": kind})
        }
    }
    .to_string()
}

/// The client name a client config gives (what the federation lists).
#[pyfunction]
pub(crate) fn client_name(config: PathBuf) -> PyResult<String> {
    Ok(load(&config, Role::Client, "a client")?.name)
}

#[pymethods]
impl Client {
    /// Loads a client config; `input`, if given, is called for every
    /// vector FedAvg round with a dict describing the round and returns
    /// the round's vector (a 1-D float64 array).
    #[new]
    #[pyo3(signature = (config, input = None))]
    fn new(config: PathBuf, input: Option<Py<PyAny>>) -> PyResult<Client> {
        Ok(Client {
            config: load(&config, Role::Client, "Client")?,
            input,
            running: None,
            events: None,
        })
    }

    /// This client's name in the federation.
    #[getter]
    fn name(&self) -> String {
        self.config.name.clone()
    }

    /// Whether the node is running.
    #[getter]
    fn running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.join.is_finished())
    }

    /// Starts the node: it watches the coordinator and takes part in every
    /// round it is invited to, until `stop()`.
    #[pyo3(signature = (timeout = None))]
    fn start(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        if self.running() {
            return Err(errors::config("the client is already running"));
        }
        let mut extra: Vec<(String, Arc<dyn InputSource>)> = Vec::new();
        if let Some(callable) = &self.input {
            extra.push((
                VECTOR_FEDAVG_TASK.into(),
                Arc::new(PyInput {
                    callable: callable.clone_ref(py),
                }),
            ));
        }
        let input = service::client_input(&self.config, extra)
            .map_err(|e| errors::config(e.to_string()))?;
        let config = self.config.clone();
        let (trigger, shutdown) = shutdown::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = wait(py, timeout, async move {
            let ctx = open_context(&config, Metrics::new()).await?;
            client_node::spawn(ctx, input, Some(tx), shutdown).await
        })?
        .map_err(|e| errors::error::<SealroomError>(e.to_string(), "node", None))?;
        self.running = Some(Running {
            trigger,
            join: handle.join,
        });
        self.events = Some(rx);
        Ok(())
    }

    /// The next event as JSON (`uploaded`, `skipped`, `upload_failed`,
    /// `outcome`), or `None` after `timeout` seconds.
    #[pyo3(signature = (timeout = 1.0))]
    fn next_event(&mut self, py: Python<'_>, timeout: f64) -> PyResult<Option<String>> {
        let Some(mut rx) = self.events.take() else {
            return Err(errors::config("the client was not started"));
        };
        let result = wait(py, None, async move {
            let event = tokio::time::timeout(Duration::from_secs_f64(timeout.max(0.0)), rx.recv())
                .await
                .ok()
                .flatten();
            (rx, event)
        });
        match result {
            Ok((rx, event)) => {
                self.events = Some(rx);
                Ok(event.as_ref().map(event_json))
            }
            Err(e) => Err(e),
        }
    }

    /// Stops the node and waits for it to end.
    #[pyo3(signature = (timeout = 10.0))]
    fn stop(&mut self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        if let Some(running) = self.running.take() {
            running.trigger.trigger();
            let _ = wait(py, Some(timeout.max(0.1)), async move {
                let _ = running.join.await;
            });
        }
        Ok(())
    }

    /// Contributes one encoded update (from `encode_update`) to the vector
    /// FedAvg round of framework run `run`, round `round`, quantized with
    /// `bits`/`clip`/`max_weight`: starts this client's node, answers that
    /// round only, and stops. Returns the bytes uploaded. Raises
    /// `RoundAborted`-free errors: `DataError` (reason `skipped` or
    /// `upload_failed`) naming why, or `Timeout`.
    #[pyo3(signature = (update, run, round, bits, clip, max_weight, timeout = 60.0, defences = None))]
    #[allow(clippy::too_many_arguments)]
    fn contribute(
        &self,
        py: Python<'_>,
        update: PyReadonlyArray1<'_, f64>,
        run: String,
        round: u64,
        bits: u8,
        clip: f64,
        max_weight: u32,
        timeout: f64,
        defences: Option<String>,
    ) -> PyResult<usize> {
        if self.running() {
            return Err(errors::config(
                "contribute() starts its own node; stop() the running one first",
            ));
        }
        let vector = Zeroizing::new(update.as_slice()?.to_vec());
        let n_params = vector
            .len()
            .checked_sub(1)
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                errors::config(
                    "an encoded update has the parameters and the weight: at least 2 values",
                )
            })?;
        let one_shot = Arc::new(OneShot {
            expected: VectorFedAvgParams {
                run,
                round,
                n_params,
                fedavg: fedavg::spec(bits, clip, max_weight)?,
                defences: fedavg::defences(defences.as_deref())?,
            },
            vector: Mutex::new(Some(vector)),
            round_id: AtomicU64::new(0),
        });
        let input: Arc<dyn InputSource> = one_shot.clone();
        let config = self.config.clone();
        let result = wait(py, Some(timeout), async move {
            let ctx = open_context(&config, Metrics::new())
                .await
                .map_err(|e| (e.to_string(), "node"))?;
            let (trigger, shutdown) = shutdown::channel();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let handle = client_node::spawn(ctx, input, Some(tx), shutdown)
                .await
                .map_err(|e| (e.to_string(), "node"))?;
            let mut outcome = Err(("the node stopped before the round".to_string(), "node"));
            while let Some(event) = rx.recv().await {
                let mine = |id: &u64| *id != 0 && *id == one_shot.round_id.load(Ordering::SeqCst);
                match event {
                    ClientEvent::Uploaded {
                        round_id, bytes, ..
                    } if mine(&round_id) => {
                        outcome = Ok(bytes);
                        break;
                    }
                    ClientEvent::Skipped { round_id, reason } if mine(&round_id) => {
                        outcome = Err((reason, "skipped"));
                        break;
                    }
                    ClientEvent::UploadFailed { round_id, reason } if mine(&round_id) => {
                        outcome = Err((reason, "upload_failed"));
                        break;
                    }
                    _ => {}
                }
            }
            trigger.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(5), handle.join).await;
            outcome
        })?;
        result.map_err(|(message, reason)| errors::error::<DataError>(message, reason, None))
    }

    fn __repr__(&self) -> String {
        format!(
            "Client({:?}, running={})",
            self.config.name,
            self.running.is_some()
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.trigger.trigger();
            if let Ok(rt) = runtime() {
                rt.spawn(async move {
                    let _ = running.join.await;
                });
            }
        }
    }
}
