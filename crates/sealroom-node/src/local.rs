//! Running nodes from their config files, and a whole federation in one
//! process on loopback (for the demo, tests and benchmarks) — made by the same
//! code as `sealroom init` and speaking real mutual TLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::Request;

use crate::client_node::{self, ClientEvent, ClientHandle};
use crate::config::{NodeConfig, Role, load_node_config};
use crate::context::NodeContext;
use crate::coordinator_node::{self, CoordinatorHandle};
use crate::directory::Directory;
use crate::grpc::MAX_OUTCOME_BYTES;
use crate::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use crate::grpc::pb::{RoundOutcome, StartRoundRequest};
use crate::helper_node::{self, HelperHandle};
use crate::init::{InitOptions, InitSummary, init_federation};
use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::tasks::{InputSource, TaskCatalog, TaskRequest};
use crate::{NodeError, tls};

/// Opens a node's store and builds its runtime context.
pub async fn open_context(config: &NodeConfig, metrics: Metrics) -> Result<NodeContext, NodeError> {
    if let Some(not_after) = config.tls.not_after_unix() {
        metrics.certificate_expiry(not_after);
    }
    let store = match &config.database {
        Some(url) => sealroom_store::Store::open(url).await?,
        None => {
            std::fs::create_dir_all(&config.data_dir)?;
            sealroom_store::Store::open_sqlite(&config.data_dir.join("sealroom.db")).await?
        }
    };
    Ok(NodeContext {
        federation: Arc::new(config.federation.clone()),
        directory: Arc::new(Directory::new(&config.federation)?),
        name: config.name.clone(),
        role: config.role,
        me: config.id,
        tls: config.tls.clone(),
        signing_key: config.signing_key.clone(),
        store,
        metrics,
        archive_rounds: config.archive_rounds.max(1),
    })
}

/// Asks the coordinator (as an admin) to run a round and waits for its outcome.
pub async fn start_round(
    admin: &NodeConfig,
    task: &str,
    vector_length: u64,
    clients: Vec<String>,
) -> Result<RoundOutcome, tonic::Status> {
    let request = TaskRequest {
        name: task.into(),
        vector_len: vector_length,
        ..TaskRequest::default()
    };
    request_round(admin, &request, clients).await
}

/// Asks the coordinator (as an admin) to run a round of `task` (with its
/// parameters) over `clients` (all when empty), and waits for its outcome.
pub async fn request_round(
    admin: &NodeConfig,
    task: &TaskRequest,
    clients: Vec<String>,
) -> Result<RoundOutcome, tonic::Status> {
    let endpoint = admin
        .federation
        .coordinator
        .endpoint
        .clone()
        .ok_or_else(|| {
            tonic::Status::invalid_argument("the federation lists no coordinator endpoint")
        })?;
    let channel = tls::channel(&admin.tls, &endpoint)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let mut client =
        CoordinatorServiceClient::new(channel).max_decoding_message_size(MAX_OUTCOME_BYTES);
    let window = admin.federation.upload_window_ms + admin.federation.aggregation_window_ms;
    let mut request = Request::new(StartRoundRequest {
        task: task.name.clone(),
        vector_length: task.vector_len,
        clients,
        params: task.params.clone(),
        min_clients: u32::try_from(task.min_clients).unwrap_or(u32::MAX),
    });
    request.set_timeout(Duration::from_millis(window + 30_000));
    Ok(client.start_round(request).await?.into_inner())
}

/// Something that can have the coordinator run rounds: an admin identity
/// (over the network) or a [`LocalFederation`]. Drivers of multi-round work
/// (a training, a two-phase query) are generic over it.
pub trait RoundRunner: Sync {
    /// Runs a round of `task` over `clients` (all when empty) and waits for
    /// its outcome.
    fn run_round(
        &self,
        task: &TaskRequest,
        clients: Vec<String>,
    ) -> impl std::future::Future<Output = Result<RoundOutcome, tonic::Status>> + Send;
}

impl RoundRunner for NodeConfig {
    async fn run_round(
        &self,
        task: &TaskRequest,
        clients: Vec<String>,
    ) -> Result<RoundOutcome, tonic::Status> {
        request_round(self, task, clients).await
    }
}

impl RoundRunner for LocalFederation {
    async fn run_round(
        &self,
        task: &TaskRequest,
        clients: Vec<String>,
    ) -> Result<RoundOutcome, tonic::Status> {
        self.request_round(task, clients).await
    }
}

/// A node of a local federation that can be stopped and started again.
struct Slot<H> {
    handle: Option<H>,
    trigger: Option<ShutdownTrigger>,
}

/// A whole federation in this process: coordinator, helpers and clients as
/// separate tasks talking gRPC over loopback with mutual TLS.
pub struct LocalFederation {
    /// Where `init` wrote the federation.
    pub dir: PathBuf,
    /// What `init` made.
    pub summary: InitSummary,
    /// Each node's loaded config, by name.
    pub configs: BTreeMap<String, NodeConfig>,
    /// Each node's metrics, by name.
    pub metrics: BTreeMap<String, Metrics>,
    catalog: TaskCatalog,
    coordinator: Slot<CoordinatorHandle>,
    helpers: Vec<Slot<HelperHandle>>,
    clients: Vec<Slot<ClientHandle>>,
    inputs: Vec<Arc<dyn InputSource>>,
    events: mpsc::UnboundedSender<(usize, ClientEvent)>,
}

impl std::fmt::Debug for LocalFederation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFederation")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Finds `count` consecutive free TCP ports on 127.0.0.1 (checked by binding).
pub fn free_port_block(count: u16) -> Result<u16, NodeError> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut start = [0u8; 4];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut start)
        .map_err(|e| NodeError::Randomness(e.to_string()))?;
    let start = u32::from_le_bytes(start);
    for _ in 0..200u32 {
        // Random start, then strides that never revisit a block this process handed out.
        let slot =
            start.wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % 130;
        let base = 20_000 + (slot * 300) as u16;
        let all_free =
            (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    Err(NodeError::Config(
        "no block of free loopback ports found".into(),
    ))
}

impl LocalFederation {
    /// Writes a federation into `dir` with `options` (its `base_port` is
    /// replaced by a free block), then starts every node. `inputs[i]` is
    /// client i's data; `catalog` the tasks the coordinator offers.
    pub async fn start(
        dir: &Path,
        mut options: InitOptions,
        catalog: TaskCatalog,
        inputs: Vec<Arc<dyn InputSource>>,
    ) -> Result<
        (
            LocalFederation,
            mpsc::UnboundedReceiver<(usize, ClientEvent)>,
        ),
        NodeError,
    > {
        if inputs.len() != options.clients {
            return Err(NodeError::Config(format!(
                "{} inputs for {} clients",
                inputs.len(),
                options.clients
            )));
        }
        let span = 100 + options.helpers as u16 + options.clients as u16 + 2;
        options.base_port = free_port_block(span)?;
        let summary =
            init_federation(dir, &options).map_err(|e| NodeError::Config(e.to_string()))?;
        let mut configs = BTreeMap::new();
        for node in &summary.nodes {
            let config =
                load_node_config(&node.config).map_err(|e| NodeError::Config(e.to_string()))?;
            configs.insert(node.name.clone(), config);
        }
        let (events, rx) = mpsc::unbounded_channel();
        let metrics = configs
            .keys()
            .map(|n| (n.clone(), Metrics::new()))
            .collect();
        let mut fed = LocalFederation {
            dir: dir.to_path_buf(),
            summary,
            configs,
            metrics,
            catalog,
            coordinator: Slot {
                handle: None,
                trigger: None,
            },
            helpers: (0..options.helpers)
                .map(|_| Slot {
                    handle: None,
                    trigger: None,
                })
                .collect(),
            clients: (0..options.clients)
                .map(|_| Slot {
                    handle: None,
                    trigger: None,
                })
                .collect(),
            inputs,
            events,
        };
        for h in 0..options.helpers {
            fed.start_helper(h).await?;
        }
        fed.start_coordinator().await?;
        for c in 0..options.clients {
            fed.start_client(c).await?;
        }
        Ok((fed, rx))
    }

    fn config_of(&self, role: Role, index: usize) -> Result<&NodeConfig, NodeError> {
        self.summary
            .nodes
            .iter()
            .filter(|n| n.role == role)
            .nth(index)
            .and_then(|n| self.configs.get(&n.name))
            .ok_or_else(|| NodeError::Config(format!("no {} #{index}", role.as_str())))
    }

    async fn listener(config: &NodeConfig) -> Result<TcpListener, NodeError> {
        let addr = config
            .listen
            .ok_or_else(|| NodeError::Config(format!("{} has no listen address", config.name)))?;
        Ok(TcpListener::bind(addr).await?)
    }

    /// Starts (or restarts) the coordinator.
    pub async fn start_coordinator(&mut self) -> Result<(), NodeError> {
        let config = self.config_of(Role::Coordinator, 0)?.clone();
        let metrics = self.metrics[&config.name].clone();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = open_context(&config, metrics.clone()).await?;
        if let Some(addr) = config.metrics_listen {
            metrics.serve(addr, shutdown.clone()).await?;
        }
        let listener = Self::listener(&config).await?;
        let handle =
            coordinator_node::spawn(ctx, listener, self.catalog.clone(), None, shutdown).await?;
        self.coordinator = Slot {
            handle: Some(handle),
            trigger: Some(trigger),
        };
        Ok(())
    }

    /// Stops the coordinator and waits for it to end.
    pub async fn stop_coordinator(&mut self) {
        stop(&mut self.coordinator, |h| h.join).await;
    }

    /// Starts (or restarts) helper `index`, restoring its durable state.
    pub async fn start_helper(&mut self, index: usize) -> Result<(), NodeError> {
        let config = self.config_of(Role::Helper, index)?.clone();
        let metrics = self.metrics[&config.name].clone();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = open_context(&config, metrics).await?;
        let listener = Self::listener(&config).await?;
        let handle = helper_node::spawn(ctx, listener, shutdown).await?;
        self.helpers[index] = Slot {
            handle: Some(handle),
            trigger: Some(trigger),
        };
        Ok(())
    }

    /// Stops helper `index` (as if killed) and waits for it to end.
    pub async fn stop_helper(&mut self, index: usize) {
        stop(&mut self.helpers[index], |h| h.join).await;
    }

    /// Starts (or restarts) client `index`.
    pub async fn start_client(&mut self, index: usize) -> Result<(), NodeError> {
        let config = self.config_of(Role::Client, index)?.clone();
        let metrics = self.metrics[&config.name].clone();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = open_context(&config, metrics).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forward = self.events.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let _ = forward.send((index, e));
            }
        });
        let handle =
            client_node::spawn(ctx, self.inputs[index].clone(), Some(tx), shutdown).await?;
        self.clients[index] = Slot {
            handle: Some(handle),
            trigger: Some(trigger),
        };
        Ok(())
    }

    /// Stops client `index` (it drops out) and waits for it to end.
    pub async fn stop_client(&mut self, index: usize) {
        stop(&mut self.clients[index], |h| h.join).await;
    }

    /// The operator identity's config (for [`start_round`]).
    pub fn admin(&self) -> Result<&NodeConfig, NodeError> {
        self.config_of(Role::Admin, 0)
    }

    /// Runs one round of `task` through the admin API and waits for its outcome.
    pub async fn run_round(
        &self,
        task: &str,
        vector_length: u64,
    ) -> Result<RoundOutcome, tonic::Status> {
        let admin = self
            .admin()
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        start_round(admin, task, vector_length, Vec::new()).await
    }

    /// Runs one round of `task` over `clients` (all when empty) and waits
    /// for its outcome.
    pub async fn request_round(
        &self,
        task: &TaskRequest,
        clients: Vec<String>,
    ) -> Result<RoundOutcome, tonic::Status> {
        let admin = self
            .admin()
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        request_round(admin, task, clients).await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.clients.len() {
            self.stop_client(i).await;
        }
        self.stop_coordinator().await;
        for i in 0..self.helpers.len() {
            self.stop_helper(i).await;
        }
    }
}

async fn stop<H>(
    slot: &mut Slot<H>,
    join: impl FnOnce(H) -> tokio::task::JoinHandle<Result<(), NodeError>>,
) {
    if let Some(trigger) = slot.trigger.take() {
        trigger.trigger();
    }
    if let Some(handle) = slot.handle.take() {
        let task = join(handle);
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
}

/// Waits until every node of a shutdown group has stopped (helper for CLI use).
pub async fn wait(shutdown: &Shutdown) {
    shutdown.wait().await;
}
