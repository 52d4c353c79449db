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
    let directory = Directory::new(&config.federation)?;
    let signer = |k: &Option<sealroom_protocol::SigningKey>| {
        k.clone()
            .map(|k| Arc::new(k) as sealroom_protocol::SharedSigner)
    };
    Ok(NodeContext {
        federation: Arc::new(config.federation.clone()),
        registry: tls::Registry::of(&directory),
        directory: Arc::new(directory),
        name: config.name.clone(),
        role: config.role,
        me: config.id,
        tls: config.tls.clone(),
        signer: signer(&config.signing_key),
        previous_signer: signer(&config.previous_signing_key),
        store,
        metrics,
        archive_rounds: config.archive_rounds.max(1),
        accept_broken_audit_chain: false,
        key_updates: crate::context::key_updates(),
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
    // Any certificate federation.toml lets the coordinator present (two
    // during a certificate rotation).
    let expected = admin
        .federation
        .coordinator
        .certificates()
        .map(|c| {
            hex::decode(c)
                .ok()
                .and_then(|b| sealroom_protocol::PartyId::from_slice(&b))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            tonic::Status::invalid_argument(
                "the coordinator's certificate fingerprint is malformed",
            )
        })?;
    let channel = tls::pinned_channel(
        &admin.tls,
        &endpoint,
        tls::ServerPin::Certificates(expected),
    )
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

/// The most times [`run_round_excluding`] runs a round again.
pub const MAX_EXCLUSION_RERUNS: usize = 2;

/// A round run by [`run_round_excluding`].
#[derive(Debug)]
pub struct RerunOutcome {
    /// The outcome of the last round run; its client indices refer to
    /// `invited`.
    pub outcome: RoundOutcome,
    /// The clients the last round invited: the request's, without those
    /// left out.
    pub invited: Vec<String>,
    /// The clients left out because the helpers' sketch check excluded
    /// their uploads in an earlier attempt, in the order they were.
    pub left_out: Vec<String>,
}

/// Runs a round of `task` over `clients` (by name) and, when it aborts
/// because the helpers' sketch check excluded clients' uploads (an engine
/// round, before anything was opened: the abort record names them as a
/// majority of the helpers signed them), runs it again without them — a
/// fresh round with its own descriptor — at most [`MAX_EXCLUSION_RERUNS`]
/// times. One client with a malformed upload then cannot stop a training;
/// nothing is released twice, since the aborted round released nothing.
/// With `clients` empty (all of the federation's) nobody is left out.
pub async fn run_round_excluding<R: RoundRunner>(
    runner: &R,
    task: &TaskRequest,
    clients: Vec<String>,
) -> Result<RerunOutcome, tonic::Status> {
    let mut invited = clients;
    let mut left_out = Vec::new();
    let mut reruns = 0;
    loop {
        let outcome = runner.run_round(task, invited.clone()).await?;
        let excluded: Vec<usize> = outcome
            .excluded_clients
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i < invited.len())
            .collect();
        if outcome.status == "completed"
            || excluded.is_empty()
            || excluded.len() != outcome.excluded_clients.len()
            || reruns == MAX_EXCLUSION_RERUNS
        {
            return Ok(RerunOutcome {
                outcome,
                invited,
                left_out,
            });
        }
        reruns += 1;
        tracing::warn!(
            round = outcome.round_id,
            clients = ?excluded.iter().map(|&i| &invited[i]).collect::<Vec<_>>(),
            "the helpers' sketch check excluded these clients' uploads: running the round again without them"
        );
        let mut kept = Vec::with_capacity(invited.len());
        for (i, name) in invited.into_iter().enumerate() {
            if excluded.contains(&i) {
                left_out.push(name);
            } else {
                kept.push(name);
            }
        }
        invited = kept;
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
    /// The federation's ports, held until each node first binds its own.
    ports: PortBlock,
}

impl std::fmt::Debug for LocalFederation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFederation")
            .field("dir", &self.dir)
            .finish()
    }
}

/// A block of consecutive loopback ports, held open (bound) until each is
/// taken, so that nothing else on the machine can bind one in between.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    held: BTreeMap<u16, std::net::TcpListener>,
}

impl PortBlock {
    /// The first port of the block.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Hands over the bound listener of `port` (once), or `None` when the
    /// port is not in the block or was already taken.
    pub fn take(&mut self, port: u16) -> Option<std::net::TcpListener> {
        self.held.remove(&port)
    }

    /// Closes every port still held, for a child process to bind them.
    pub fn release(self) -> u16 {
        self.base
    }
}

/// The loopback ports blocks are taken from: below the kernel's ephemeral
/// range (`/proc/sys/net/ipv4/ip_local_port_range`), so that no outgoing
/// connection of this or another process is ever given a port of a block
/// between the check and the node's own bind. Falls back to above the
/// ephemeral range when too little room is left below it.
fn port_range(count: u16) -> (u32, u32) {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let floor = 10_000u32;
    if lo > floor + 8 * u32::from(count) {
        (floor, lo)
    } else {
        (hi + 1, 65_536)
    }
}

/// Reserves `count` consecutive free TCP ports on 127.0.0.1 by binding every
/// one of them. Blocks handed out by this process never overlap, and the
/// search starts at a random block so that concurrent processes rarely try
/// the same one (and, when they do, one of the two binds fails and it moves on).
pub fn reserve_port_block(count: u16) -> Result<PortBlock, NodeError> {
    static HANDED_OUT: std::sync::Mutex<Vec<(u32, u32)>> = std::sync::Mutex::new(Vec::new());
    let count = count.max(1);
    let (lo, hi) = port_range(count);
    let stride = u32::from(count);
    let slots = (hi - lo) / stride;
    if slots == 0 {
        return Err(NodeError::Config(format!(
            "no room for {count} consecutive loopback ports"
        )));
    }
    let mut start = [0u8; 4];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut start)
        .map_err(|e| NodeError::Randomness(e.to_string()))?;
    let start = u32::from_le_bytes(start) % slots;
    for i in 0..slots.min(400) {
        let base = lo + ((start + i) % slots) * stride;
        let end = base + stride;
        {
            let mut out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
            if out.iter().any(|&(b, e)| base < e && b < end) {
                continue;
            }
            out.push((base, end));
        }
        let mut held = BTreeMap::new();
        for port in base..end {
            // Checked above: end <= 65536, so every port fits in u16.
            let port = port as u16;
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    held.insert(port, l);
                }
                Err(_) => break,
            }
        }
        if held.len() == usize::from(count) {
            return Ok(PortBlock {
                base: base as u16,
                held,
            });
        }
    }
    Err(NodeError::Config(format!(
        "no block of {count} free loopback ports found"
    )))
}

/// Finds `count` consecutive free TCP ports on 127.0.0.1 for another
/// process to bind (see [`reserve_port_block`]; the ports are closed again
/// before this returns).
pub fn free_port_block(count: u16) -> Result<u16, NodeError> {
    Ok(reserve_port_block(count)?.release())
}

impl LocalFederation {
    /// Writes a federation into `dir` with `options` (its `base_port` is
    /// replaced by a free block), then starts every node. `inputs[i]` is
    /// client i's data; `catalog` the tasks the coordinator offers.
    pub async fn start(
        dir: &Path,
        options: InitOptions,
        catalog: TaskCatalog,
        inputs: Vec<Arc<dyn InputSource>>,
    ) -> Result<
        (
            LocalFederation,
            mpsc::UnboundedReceiver<(usize, ClientEvent)>,
        ),
        NodeError,
    > {
        Self::start_relayed(dir, options, catalog, inputs, |_| async { Ok(()) }).await
    }

    /// [`LocalFederation::start`] for a federation whose peers reach each
    /// serving node through a relay (`options.relay_port_offset` > 0):
    /// once the configs are written, `relay` is given every
    /// `(relay port, node listen address)` pair, the relay ports are free
    /// to bind on 127.0.0.1, and the nodes start only after `relay`
    /// returns (so their first connections already go through it).
    pub async fn start_relayed<F, Fut>(
        dir: &Path,
        mut options: InitOptions,
        catalog: TaskCatalog,
        inputs: Vec<Arc<dyn InputSource>>,
        relay: F,
    ) -> Result<
        (
            LocalFederation,
            mpsc::UnboundedReceiver<(usize, ClientEvent)>,
        ),
        NodeError,
    >
    where
        F: FnOnce(Vec<(u16, std::net::SocketAddr)>) -> Fut,
        Fut: std::future::Future<Output = Result<(), NodeError>>,
    {
        if inputs.len() != options.clients {
            return Err(NodeError::Config(format!(
                "{} inputs for {} clients",
                inputs.len(),
                options.clients
            )));
        }
        let span = 100 + options.helpers as u16 + options.clients as u16 + 2;
        let ports = reserve_port_block(span)?;
        options.base_port = ports.base();
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
            ports,
        };
        let mut relays = Vec::new();
        if options.relay_port_offset > 0 {
            for config in fed.configs.values() {
                if let Some(listen) = config.listen {
                    let port = listen.port() + options.relay_port_offset;
                    // Held with the block until now: free for the relay.
                    drop(fed.ports.take(port));
                    relays.push((port, listen));
                }
            }
        }
        relay(relays).await?;
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

    /// A listener on `addr`: the one reserved for it when the federation
    /// started (first start), else a new bind (a restart).
    async fn bind(&mut self, addr: std::net::SocketAddr) -> Result<TcpListener, NodeError> {
        if addr.ip().is_loopback()
            && let Some(held) = self.ports.take(addr.port())
        {
            held.set_nonblocking(true)?;
            return Ok(TcpListener::from_std(held)?);
        }
        Ok(TcpListener::bind(addr).await?)
    }

    async fn listener(&mut self, config: &NodeConfig) -> Result<TcpListener, NodeError> {
        let addr = config
            .listen
            .ok_or_else(|| NodeError::Config(format!("{} has no listen address", config.name)))?;
        self.bind(addr).await
    }

    /// Starts (or restarts) the coordinator.
    pub async fn start_coordinator(&mut self) -> Result<(), NodeError> {
        let config = self.config_of(Role::Coordinator, 0)?.clone();
        let metrics = self.metrics[&config.name].clone();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = open_context(&config, metrics.clone()).await?;
        if let Some(addr) = config.metrics_listen {
            let listener = self.bind(addr).await?;
            metrics.serve_on(listener, shutdown.clone())?;
        }
        let listener = self.listener(&config).await?;
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
        let listener = self.listener(&config).await?;
        let handle = helper_node::spawn(ctx, listener, self.catalog.clone(), shutdown).await?;
        self.helpers[index] = Slot {
            handle: Some(handle),
            trigger: Some(trigger),
        };
        Ok(())
    }

    /// Helper `index`'s MPC engine, while it runs (three-helper federations).
    pub fn helper_engine(&self, index: usize) -> Option<crate::engine::Engine> {
        self.helpers.get(index)?.handle.as_ref()?.engine.clone()
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
