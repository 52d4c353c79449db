//! Resident clients: one long-lived client node per client identity on
//! this host, serving every framework round of that identity (the Flower
//! mod's path, [`resident_contribute`]).
//!
//! A framework hands in one encoded update per round. The first process on
//! the host that does so for an identity becomes its **host**: it holds an
//! exclusive lock on `resident.lock` in the client's data directory and
//! runs the client node on the shared runtime — store opened once, mutual
//! TLS connections kept, watching the coordinator — whose input for vector
//! FedAvg rounds is a [`Mailbox`]. When a round's descriptor arrives the
//! node asks the mailbox for that (run, round)'s update, waiting for it if
//! the framework has not handed it in yet. Other processes (a simulation's
//! Ray workers serve different Flower nodes over time) hand their update to
//! the host over a Unix socket beside the lock, readable by this user only,
//! and checked against the peer's uid. When the host process ends the OS
//! releases the lock and the next process to contribute takes over.
//!
//! The node is the same as `sealroom node`'s: its `[data.*]` tables answer
//! queries and table trainings; dropouts, sit-outs and inclusion follow
//! the protocol's rules. An update never leaves this host except as shares
//! to the helpers, and never appears in an error or a log line.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use sealroom_analytics::fl::Defences;
use sealroom_analytics::service;
use sealroom_analytics::vector_fedavg::{MAX_PARAMS, VECTOR_FEDAVG_TASK, VectorFedAvgParams};
use sealroom_node::client_node::{self, ClientEvent};
use sealroom_node::config::{NodeConfig, Role};
use sealroom_node::local::open_context;
use sealroom_node::metrics::Metrics;
use sealroom_node::shutdown::{self, Shutdown, ShutdownTrigger};
use sealroom_node::tasks::InputSource;
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::pb::SitOutReason;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::admin::load;
use crate::errors::{self, DataError, SealroomError};
use crate::fedavg;
use crate::runtime;

/// Hands this client's encoded update (from `encode_update`; `None`: sit
/// this round out) to the vector FedAvg round of framework run `run`,
/// round `round`, through this identity's resident node, starting it (or
/// finding the process that hosts it) on first use. With `wait`, returns
/// once every helper has signed a receipt for the shares, with the bytes
/// uploaded; without, returns -1 as soon as the update is handed in (the
/// round's inclusion set decides, as always, whether it counts).
#[pyfunction]
#[pyo3(signature = (config, update, run, round, bits, clip, max_weight, wait = true, timeout = 60.0, defences = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn resident_contribute(
    py: Python<'_>,
    config: PathBuf,
    update: Option<PyReadonlyArray1<'_, f64>>,
    run: String,
    round: u64,
    bits: u8,
    clip: f64,
    max_weight: u32,
    wait: bool,
    timeout: f64,
    defences: Option<String>,
) -> PyResult<i64> {
    let config = cached_config(&config)?;
    let fedavg = fedavg::spec(bits, clip, max_weight)?;
    let defences = fedavg::defences(defences.as_deref())?;
    let parcel = match update {
        Some(update) => {
            let vector = Zeroizing::new(update.as_slice()?.to_vec());
            let n_params = check_len(vector.len()).map_err(errors::config)?;
            Parcel::Update {
                expected: VectorFedAvgParams {
                    run,
                    round,
                    n_params,
                    fedavg,
                    defences,
                },
                vector,
            }
        }
        None => Parcel::SitOut { run, round },
    };
    let reply = runtime::wait(py, Some(timeout), contribute(config, parcel, wait))?;
    match reply {
        Ok(Reply::Uploaded { bytes }) => Ok(i64::try_from(bytes).unwrap_or(i64::MAX)),
        Ok(Reply::Accepted) => Ok(-1),
        Ok(Reply::Failed { code, message }) => {
            Err(errors::error::<DataError>(message, code.as_str(), None))
        }
        Err(e) => Err(to_py(e)),
    }
}

/// Starts this identity's resident node in this process if no process on
/// the host runs it yet (what a framework calls before its first round, so
/// that the first round does not wait for the node to start).
#[pyfunction]
#[pyo3(signature = (config, timeout = 60.0))]
pub(crate) fn resident_start(py: Python<'_>, config: PathBuf, timeout: f64) -> PyResult<()> {
    let config = cached_config(&config)?;
    match runtime::wait(py, Some(timeout), async move {
        route(&config).await.map(|_| ())
    })? {
        Ok(()) => Ok(()),
        Err(e) => Err(to_py(e)),
    }
}

/// The names of the client identities whose resident node this process
/// hosts (the others it contributes for are hosted by another process).
#[pyfunction]
pub(crate) fn resident_hosts(py: Python<'_>) -> PyResult<Vec<String>> {
    runtime::wait(py, Some(10.0), async {
        HOSTED
            .lock()
            .await
            .values()
            .filter(|h| !h.join.is_finished())
            .map(|h| h.name.clone())
            .collect()
    })
}

/// Stops this process's resident node for `config` (all of them when
/// `None`) and waits up to `timeout` seconds for each to end; its lock is
/// released, so the next process to contribute for that identity hosts it.
#[pyfunction]
#[pyo3(signature = (config = None, timeout = 10.0))]
pub(crate) fn resident_stop(py: Python<'_>, config: Option<PathBuf>, timeout: f64) -> PyResult<()> {
    let file = match config {
        Some(path) => Some(cached_config(&path)?.file.clone()),
        None => None,
    };
    runtime::wait(py, Some(timeout.max(0.1)), async move {
        let stopped: Vec<Host> = {
            let mut hosted = HOSTED.lock().await;
            match &file {
                Some(file) => hosted.remove(file).into_iter().collect(),
                None => std::mem::take(&mut *hosted).into_values().collect(),
            }
        };
        for host in stopped {
            host.trigger.trigger();
            let _ = host.join.await;
            // This process still holds the lock (released when `host` drops).
            let _ = std::fs::remove_file(&host.socket);
        }
    })
}

fn to_py(e: ResidentError) -> PyErr {
    match e {
        ResidentError::Config(message) => errors::config(message),
        e @ (ResidentError::Node(_) | ResidentError::Host(_)) => {
            errors::error::<SealroomError>(e.to_string(), e.code(), None)
        }
    }
}

/// Why a resident contribution could not be made (before the round).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum ResidentError {
    /// The client's config cannot run a resident node.
    #[error("{0}")]
    Config(String),
    /// This client's node did not start.
    #[error("starting this client's node: {0}")]
    Node(String),
    /// The process hosting this client's node cannot be reached.
    #[error("the process hosting this client's node: {0}")]
    Host(String),
}

impl ResidentError {
    fn code(&self) -> &'static str {
        match self {
            ResidentError::Config(_) => "config",
            ResidentError::Node(_) => "node",
            ResidentError::Host(_) => "resident_host",
        }
    }
}

/// How a round went for the update handed in (what the host answers).
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Every helper signed a receipt for the shares.
    Uploaded { bytes: usize },
    /// Handed in; the caller did not wait for the upload.
    Accepted,
    /// The update did not go into the round, and why.
    Failed { code: FailureCode, message: String },
}

/// Why an update did not go into its round.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum FailureCode {
    /// The client sat the round out (its own account in the message).
    Skipped,
    /// A helper did not acknowledge the shares.
    UploadFailed,
    /// An update for this round was already handed in.
    AlreadyContributed,
    /// The node never asked for it (it stopped, or the round was over).
    NotAsked,
    /// The host refused the request as malformed.
    BadRequest,
}

impl FailureCode {
    fn as_str(self) -> &'static str {
        match self {
            FailureCode::Skipped => "skipped",
            FailureCode::UploadFailed => "upload_failed",
            FailureCode::AlreadyContributed => "already_contributed",
            FailureCode::NotAsked => "not_asked",
            FailureCode::BadRequest => "bad_request",
        }
    }
}

/// The update's length: parameters plus the weight.
fn check_len(len: usize) -> Result<usize, String> {
    len.checked_sub(1)
        .filter(|&n| n > 0 && n <= MAX_PARAMS)
        .ok_or_else(|| {
            format!(
                "an encoded update has the parameters (1 to {MAX_PARAMS}) and the weight, not {len} values"
            )
        })
}

/// What a framework hands in for one of its rounds.
enum Parcel {
    Update {
        expected: VectorFedAvgParams,
        vector: Zeroizing<Vec<f64>>,
    },
    SitOut {
        run: String,
        round: u64,
    },
}

impl Parcel {
    fn key(&self) -> RoundKey {
        match self {
            Parcel::Update { expected, .. } => (expected.run.clone(), expected.round),
            Parcel::SitOut { run, round } => (run.clone(), *round),
        }
    }
}

/// A framework round: (run, round).
type RoundKey = (String, u64);

/// Updates handed in and not yet asked for (or the other way round) that
/// one identity keeps at most; older ones are dropped.
const KEPT: usize = 16;

/// The resident node's input for vector FedAvg rounds.
#[derive(Default)]
struct Mailbox {
    slots: Mutex<Slots>,
    delivered: Condvar,
}

#[derive(Default)]
struct Slots {
    /// Handed in, waiting for the node to ask.
    letters: BTreeMap<RoundKey, Letter>,
    /// Rounds already handed to the node (a second update is refused).
    used: VecDeque<RoundKey>,
    /// Rounds the node stopped asking about before an update came (late or
    /// superseded): an update that comes now is refused at once.
    closed: VecDeque<RoundKey>,
    /// Per round id: who waits for the outcome.
    waiting: BTreeMap<u64, oneshot::Sender<Reply>>,
    /// The newest round id the node asked about: an older question is
    /// superseded (the node has moved on).
    newest_asked: u64,
}

struct Letter {
    parcel: Parcel,
    reply: Option<oneshot::Sender<Reply>>,
}

/// Why the mailbox has no vector for a round. Never carries a value.
#[derive(Debug, thiserror::Error)]
enum MailboxError {
    #[error("not a vector FedAvg round")]
    NotMyTask,
    #[error("malformed vector FedAvg parameters")]
    Parameters,
    #[error("the update handed in was encoded for other parameters (length or quantization)")]
    OtherParameters,
    #[error("the framework sat this round out")]
    SatOut,
    #[error("a newer round was asked for before this one's update came")]
    Superseded,
    #[error("no update came before the upload deadline")]
    Late,
    #[error("the mailbox is unusable (a thread panicked holding it)")]
    Poisoned,
}

impl MailboxError {
    /// The typed reason the coordinator is told. A superseded or late
    /// question is refused by the client machine before any notice leaves
    /// (it no longer asks about that round, or its window is over), so a
    /// round is never sat out just because the update was slow to come.
    fn sit_out(&self) -> sealroom_node::tasks::InputError {
        let reason = match self {
            MailboxError::NotMyTask => SitOutReason::UnsupportedTask,
            MailboxError::Parameters | MailboxError::OtherParameters => {
                SitOutReason::InvalidParameters
            }
            MailboxError::SatOut
            | MailboxError::Superseded
            | MailboxError::Late
            | MailboxError::Poisoned => SitOutReason::InputFailed,
        };
        sealroom_node::tasks::InputError::new(reason, "", self.to_string())
    }
}

impl Mailbox {
    /// Hands a parcel in; `reply` learns how the round went.
    fn deliver(&self, parcel: Parcel, reply: Option<oneshot::Sender<Reply>>) -> Result<(), Reply> {
        let key = parcel.key();
        let mut slots = self.slots.lock().map_err(|_| Reply::Failed {
            code: FailureCode::NotAsked,
            message: MailboxError::Poisoned.to_string(),
        })?;
        if slots.closed.contains(&key) {
            return Err(Reply::Failed {
                code: FailureCode::NotAsked,
                message: format!(
                    "run {:?} round {}: the round's upload window closed (or a newer round began) \
                     before this update came",
                    key.0, key.1
                ),
            });
        }
        if slots.used.contains(&key) || slots.letters.contains_key(&key) {
            return Err(Reply::Failed {
                code: FailureCode::AlreadyContributed,
                message: format!(
                    "run {:?} round {}: an update for this round was already handed in",
                    key.0, key.1
                ),
            });
        }
        slots.letters.insert(key, Letter { parcel, reply });
        while slots.letters.len() > KEPT {
            // The oldest round never asked for: its waiter learns it.
            slots.letters.pop_first();
        }
        drop(slots);
        self.delivered.notify_all();
        Ok(())
    }

    /// The update for the round `descriptor` describes, waiting until it
    /// is handed in, a newer round is asked about, or the upload deadline.
    fn take(&self, descriptor: &VerifiedDescriptor) -> Result<Zeroizing<Vec<f64>>, MailboxError> {
        if descriptor.task_name() != VECTOR_FEDAVG_TASK {
            return Err(MailboxError::NotMyTask);
        }
        let params: VectorFedAvgParams = serde_json::from_slice(descriptor.task_params())
            .map_err(|_| MailboxError::Parameters)?;
        let round_id = descriptor.round_id();
        let deadline = UNIX_EPOCH + Duration::from_millis(descriptor.upload_deadline().0);
        let key = (params.run.clone(), params.round);
        let mut slots = self.slots.lock().map_err(|_| MailboxError::Poisoned)?;
        if round_id > slots.newest_asked {
            slots.newest_asked = round_id;
            self.delivered.notify_all();
        }
        loop {
            if let Some(Letter { parcel, reply }) = slots.letters.remove(&key) {
                remember(&mut slots.used, key);
                if let Some(reply) = reply {
                    slots.waiting.insert(round_id, reply);
                    while slots.waiting.len() > KEPT {
                        slots.waiting.pop_first();
                    }
                }
                return match parcel {
                    Parcel::Update { expected, vector } if expected == params => Ok(vector),
                    Parcel::Update { .. } => Err(MailboxError::OtherParameters),
                    Parcel::SitOut { .. } => Err(MailboxError::SatOut),
                };
            }
            if slots.newest_asked > round_id {
                remember(&mut slots.closed, key);
                return Err(MailboxError::Superseded);
            }
            let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                remember(&mut slots.closed, key);
                return Err(MailboxError::Late);
            };
            slots = self
                .delivered
                .wait_timeout(slots, left)
                .map_err(|_| MailboxError::Poisoned)?
                .0;
        }
    }

    /// Tells whoever waits for `round_id` how it went.
    fn resolve(&self, round_id: u64, reply: Reply) {
        let waiter = self
            .slots
            .lock()
            .ok()
            .and_then(|mut s| s.waiting.remove(&round_id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(reply);
        }
    }
}

/// Adds a round to a bounded list of rounds.
fn remember(list: &mut VecDeque<RoundKey>, key: RoundKey) {
    list.push_back(key);
    while list.len() > KEPT {
        list.pop_front();
    }
}

/// The single adapter from the mailbox to the node's input contract.
impl InputSource for Mailbox {
    fn input(
        &self,
        descriptor: &VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        self.take(descriptor)
            .map(|v| v.to_vec())
            .map_err(|e| e.sit_out())
    }
}

/// This process's resident nodes, by canonical config path.
static HOSTED: tokio::sync::Mutex<BTreeMap<PathBuf, Host>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// Client configs already read, by the path given.
static CONFIGS: Mutex<BTreeMap<PathBuf, Arc<NodeConfig>>> = Mutex::new(BTreeMap::new());

fn cached_config(path: &Path) -> PyResult<Arc<NodeConfig>> {
    if let Some(config) = CONFIGS.lock().ok().and_then(|c| c.get(path).cloned()) {
        return Ok(config);
    }
    let config = Arc::new(load(path, Role::Client, "a resident client")?);
    if let Ok(mut configs) = CONFIGS.lock() {
        configs.insert(path.to_path_buf(), config.clone());
    }
    Ok(config)
}

/// A resident node this process hosts.
struct Host {
    name: String,
    socket: PathBuf,
    mailbox: Arc<Mailbox>,
    join: tokio::task::JoinHandle<Result<(), sealroom_node::NodeError>>,
    /// Stops the node and the socket server (also when the host is dropped).
    trigger: ShutdownTrigger,
    /// Held for the node's life: the other processes' sign to use the socket.
    _lock: File,
}

/// Where this identity's update goes.
enum Route {
    Here(Arc<Mailbox>),
    There(PathBuf),
}

/// How long a process waits for another to start hosting an identity.
const CONNECT_ATTEMPTS: u32 = 250;
const CONNECT_PAUSE: Duration = Duration::from_millis(20);

async fn contribute(
    config: Arc<NodeConfig>,
    parcel: Parcel,
    wait: bool,
) -> Result<Reply, ResidentError> {
    let mut attempt = 0;
    loop {
        match route(&config).await? {
            Route::Here(mailbox) => return Ok(hand_in(&mailbox, parcel, wait).await),
            Route::There(socket) => match UnixStream::connect(&socket).await {
                Ok(stream) => return exchange(stream, &parcel, wait).await,
                // The host is still binding its socket, or has just ended
                // (then its lock is free and the next route takes it).
                Err(e) if attempt < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, "resident host not reachable yet");
                    tokio::time::sleep(CONNECT_PAUSE).await;
                }
                Err(e) => return Err(ResidentError::Host(format!("{}: {e}", socket.display()))),
            },
        }
    }
}

/// Hands a parcel to a mailbox of this process and, with `wait`, waits
/// for the round's outcome.
async fn hand_in(mailbox: &Mailbox, parcel: Parcel, wait: bool) -> Reply {
    let (tx, rx) = if wait {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    if let Err(refused) = mailbox.deliver(parcel, tx) {
        return refused;
    }
    match rx {
        None => Reply::Accepted,
        Some(rx) => rx.await.unwrap_or_else(|_| Reply::Failed {
            code: FailureCode::NotAsked,
            message: "the node never asked for this update (it stopped, or the round was not \
                      offered to this client)"
                .into(),
        }),
    }
}

async fn route(config: &NodeConfig) -> Result<Route, ResidentError> {
    let mut hosted = HOSTED.lock().await;
    if let Some(host) = hosted.get(&config.file) {
        if !host.join.is_finished() {
            return Ok(Route::Here(host.mailbox.clone()));
        }
        tracing::warn!(client = %config.name, "the resident node ended; starting it again");
        hosted.remove(&config.file);
    }
    let paths = Paths::of(config)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .map_err(|e| ResidentError::Config(format!("{}: {e}", paths.lock.display())))?;
    match lock.try_lock() {
        Ok(()) => {
            let host = Host::start(config, lock, &paths.socket).await?;
            let mailbox = host.mailbox.clone();
            hosted.insert(config.file.clone(), host);
            Ok(Route::Here(mailbox))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(Route::There(paths.socket)),
        Err(std::fs::TryLockError::Error(e)) => Err(ResidentError::Host(format!(
            "locking {}: {e}",
            paths.lock.display()
        ))),
    }
}

impl Host {
    async fn start(config: &NodeConfig, lock: File, socket: &Path) -> Result<Host, ResidentError> {
        let mailbox = Arc::new(Mailbox::default());
        let vector: Arc<dyn InputSource> = mailbox.clone();
        let input = service::client_input(config, vec![(VECTOR_FEDAVG_TASK.into(), vector)])
            .map_err(|e| ResidentError::Config(e.to_string()))?;
        // A socket left by a host that ended: this process holds the lock.
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .map_err(|e| ResidentError::Host(format!("binding {}: {e}", socket.display())))?;
        restrict(socket)?;
        // The socket was made by this process: its owner is this user.
        let uid = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(socket)
                .map(|m| m.uid())
                .map_err(|e| ResidentError::Host(format!("{}: {e}", socket.display())))?
        };
        let ctx = open_context(config, Metrics::new())
            .await
            .map_err(|e| ResidentError::Node(e.to_string()))?;
        let (trigger, shutdown) = shutdown::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = client_node::spawn(ctx, input, Some(tx), shutdown.clone())
            .await
            .map_err(|e| ResidentError::Node(e.to_string()))?;
        tokio::spawn(dispatch(rx, mailbox.clone()));
        tokio::spawn(serve(listener, uid, mailbox.clone(), shutdown));
        tracing::info!(client = %config.name, "resident client node started");
        Ok(Host {
            name: config.name.clone(),
            socket: socket.to_path_buf(),
            mailbox,
            join: handle.join,
            trigger,
            _lock: lock,
        })
    }
}

/// Routes the node's events to whoever waits for that round.
async fn dispatch(mut events: mpsc::UnboundedReceiver<ClientEvent>, mailbox: Arc<Mailbox>) {
    while let Some(event) = events.recv().await {
        let (round_id, reply) = match event {
            ClientEvent::Uploaded { round_id, bytes } => (round_id, Reply::Uploaded { bytes }),
            ClientEvent::Skipped { round_id, reason } => (
                round_id,
                Reply::Failed {
                    code: FailureCode::Skipped,
                    message: reason,
                },
            ),
            ClientEvent::UploadFailed { round_id, reason } => (
                round_id,
                Reply::Failed {
                    code: FailureCode::UploadFailed,
                    message: reason,
                },
            ),
            ClientEvent::Outcome { .. } => continue,
        };
        mailbox.resolve(round_id, reply);
    }
}

/// The lock and socket of an identity's resident node.
struct Paths {
    lock: PathBuf,
    socket: PathBuf,
}

/// The longest socket path `sockaddr_un` takes on every Unix.
const MAX_SOCKET_PATH: usize = 100;

impl Paths {
    fn of(config: &NodeConfig) -> Result<Paths, ResidentError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| ResidentError::Config(format!("{}: {e}", dir.display())))?;
        let socket = dir.join("resident.sock");
        let socket = if socket.as_os_str().len() <= MAX_SOCKET_PATH {
            socket
        } else {
            short_socket_path(dir)?
        };
        Ok(Paths {
            lock: dir.join("resident.lock"),
            socket,
        })
    }
}

/// A socket path for a data directory whose own path is too long: in a
/// directory of this user's only, named by a hash of the data directory.
fn short_socket_path(data_dir: &Path) -> Result<PathBuf, ResidentError> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};

    let uid = own_uid().map_err(ResidentError::Host)?;
    let dir = std::env::temp_dir().join(format!("sealroom-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ResidentError::Host(format!("{}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| ResidentError::Host(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(ResidentError::Host(format!(
            "{} is not a directory of this user's only",
            dir.display()
        )));
    }
    let mut hasher = std::hash::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    Ok(dir.join(format!("{:016x}.sock", hasher.finish())))
}

fn own_uid() -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("this process's user: {e}"))
}

fn restrict(socket: &Path) -> Result<(), ResidentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ResidentError::Host(format!("{}: {e}", socket.display())))
}

// ---------------------------------------------------------------- the socket

/// What another process asks the host (the update follows it as f64s).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    run: String,
    round: u64,
    /// `None`: sit the round out.
    fedavg: Option<sealroom_analytics::fl::FedAvgSpec>,
    /// The round's input checks and robust aggregation.
    #[serde(default)]
    defences: Defences,
    wait: bool,
}

/// The largest request header the host reads.
const MAX_HEADER: u32 = 4096;
/// The largest reply a caller reads (a reply names a reason, never a value).
const MAX_REPLY: u32 = 1 << 16;

/// Serves other processes of user `uid` that contribute for this identity.
async fn serve(listener: UnixListener, uid: u32, mailbox: Arc<Mailbox>, shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.wait() => return,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "resident socket: accept failed");
                tokio::time::sleep(CONNECT_PAUSE).await;
                continue;
            }
        };
        let same_user = stream.peer_cred().is_ok_and(|peer| peer.uid() == uid);
        if !same_user {
            tracing::warn!("resident socket: a peer of another user refused");
            continue;
        }
        let mailbox = mailbox.clone();
        tokio::spawn(async move {
            let reply = match read_request(&mut stream).await {
                Ok((parcel, wait)) => hand_in(&mailbox, parcel, wait).await,
                Err(message) => Reply::Failed {
                    code: FailureCode::BadRequest,
                    message,
                },
            };
            if let Err(e) = write_frame(&mut stream, &reply).await {
                tracing::info!(error = %e, "resident socket: the caller left before the reply");
            }
        });
    }
}

/// Sends a parcel to the host and reads its reply.
async fn exchange(
    mut stream: UnixStream,
    parcel: &Parcel,
    wait: bool,
) -> Result<Reply, ResidentError> {
    let host = |e: std::io::Error| ResidentError::Host(e.to_string());
    let (request, values): (Request, &[f64]) = match parcel {
        Parcel::Update { expected, vector } => (
            Request {
                run: expected.run.clone(),
                round: expected.round,
                fedavg: Some(expected.fedavg),
                defences: expected.defences,
                wait,
            },
            vector.as_slice(),
        ),
        Parcel::SitOut { run, round } => (
            Request {
                run: run.clone(),
                round: *round,
                fedavg: None,
                defences: Defences::default(),
                wait,
            },
            &[],
        ),
    };
    write_frame(&mut stream, &request).await.map_err(host)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(8 + 8 * values.len()));
    bytes.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    stream.write_all(&bytes).await.map_err(host)?;
    drop(bytes);
    let len = stream.read_u32_le().await.map_err(host)?;
    if len > MAX_REPLY {
        return Err(ResidentError::Host(format!("a reply of {len} bytes")));
    }
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).await.map_err(host)?;
    serde_json::from_slice(&frame)
        .map_err(|e| ResidentError::Host(format!("a malformed reply: {e}")))
}

/// Reads a request and its update; every length is checked before any
/// allocation it sizes.
async fn read_request(stream: &mut UnixStream) -> Result<(Parcel, bool), String> {
    let io = |e: std::io::Error| format!("reading the request: {e}");
    let len = stream.read_u32_le().await.map_err(io)?;
    if len > MAX_HEADER {
        return Err(format!(
            "a request header of {len} bytes (at most {MAX_HEADER})"
        ));
    }
    let mut header = vec![0u8; len as usize];
    stream.read_exact(&mut header).await.map_err(io)?;
    let request: Request =
        serde_json::from_slice(&header).map_err(|e| format!("a malformed request: {e}"))?;
    let count = stream.read_u64_le().await.map_err(io)?;
    let count = usize::try_from(count).map_err(|_| format!("an update of {count} values"))?;
    let parcel = match request.fedavg {
        None if count == 0 => Parcel::SitOut {
            run: request.run,
            round: request.round,
        },
        None => return Err("a sit-out carries no update".into()),
        Some(fedavg) => {
            fedavg
                .wire_spec()
                .map_err(|e| format!("the quantization: {e}"))?;
            let n_params = check_len(count)?;
            let mut bytes = Zeroizing::new(vec![0u8; 8 * count]);
            stream.read_exact(&mut bytes).await.map_err(io)?;
            let vector = Zeroizing::new(
                bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b)
                    })
                    .collect::<Vec<f64>>(),
            );
            Parcel::Update {
                expected: VectorFedAvgParams {
                    run: request.run,
                    round: request.round,
                    n_params,
                    fedavg,
                    defences: request.defences,
                },
                vector,
            }
        }
    };
    Ok((parcel, request.wait))
}

async fn write_frame<T: Serialize>(stream: &mut UnixStream, value: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    stream.write_u32_le(len).await?;
    stream.write_all(&body).await
}
