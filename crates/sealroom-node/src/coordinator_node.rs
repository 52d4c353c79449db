//! The coordinator's transport: `CoordinatorService` (watch, reports,
//! sit-out notices, admin) over mTLS in front of the one
//! [`driver`](crate::driver), and where the coordinator's messages go:
//! descriptors and inclusion sets to the helpers (re-offered until each
//! takes them or the round's window closes, so a helper that restarts mid-
//! round rejoins it), descriptors and outcomes to watchers, the outcome to
//! the admin who asked. A task that runs in phases (a query's counts, then
//! stats) gets its later phases from the task's own follow-up, never from
//! the admin.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::action::{Action, Message};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorConfig, Outcome, Task};
use sealroom_protocol::machine::{Inbound, Input, Refusal, Start, Step};
use sealroom_protocol::{Millis, PartyId, pb};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::{ModeSpec, Role};
use crate::context::{NodeContext, instant_of, now};
use crate::driver::{self, Driver, Requests, Router};
use crate::grpc::pb::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};
use crate::grpc::pb::helper_service_client::HelperServiceClient;
use crate::grpc::pb::{
    Empty, OutcomeStatus, RoundEvent, RoundOutcome, SitOutNotice, StartRoundRequest, WatchRequest,
    round_event,
};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::helper_node::status_of;
use crate::shutdown::Shutdown;
use crate::tasks::{FinishedRound, TaskCatalog, TaskRequest};
use crate::{NodeError, tls};

/// Watch streams one party may hold open at once.
pub const WATCHERS_PER_PARTY: usize = 4;

/// Rounds started on a timer by the coordinator itself.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Time between round starts.
    pub every: Duration,
    /// Task to run.
    pub task: String,
    /// Vector length (0: the task's default).
    pub vector_length: u64,
}

/// Who waits for a request's outcome: the admin's RPC.
pub type Waiter = oneshot::Sender<Result<RoundOutcome, Status>>;

/// What a round start carries: the waiting admin and the request's earlier
/// phases.
#[derive(Default)]
pub struct StartTag {
    waiter: Option<Waiter>,
    earlier: Vec<RoundOutcome>,
}

type CoordinatorRequests = Requests<Coordinator, StartTag>;

/// A running coordinator.
#[derive(Debug)]
pub struct CoordinatorHandle {
    /// The gRPC address it serves on.
    pub addr: SocketAddr,
    /// Ends with the server.
    pub join: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// The ring and default quantization of the federation's rounds.
pub fn federation_encoding(ctx: &NodeContext) -> Result<(RingKind, QuantSpec), NodeError> {
    let q = &ctx.federation.quantization;
    let ring = q
        .ring_kind()
        .ok_or_else(|| NodeError::Config(format!("unknown ring {:?}", q.ring)))?;
    let spec = QuantSpec::new(q.scale_bits, q.clip, q.bits)
        .map_err(|e| NodeError::Config(e.to_string()))?;
    Ok((ring, spec))
}

/// Starts the coordinator on `listener`. Round ids continue after the last
/// one the store recorded.
pub async fn spawn(
    ctx: NodeContext,
    listener: TcpListener,
    catalog: TaskCatalog,
    schedule: Option<Schedule>,
    shutdown: Shutdown,
) -> Result<CoordinatorHandle, NodeError> {
    let config = coordinator_config(&ctx)?;
    let next_round = ctx.store.coordinator_next_round_id().await?;
    crate::audit_keys::check_chain(&ctx).await?;
    crate::audit_keys::register_key(&ctx).await?;
    tracing::info!(name = %ctx.name, next_round, backend = ctx.store.backend(), "coordinator starting");
    let helpers = ctx
        .directory
        .helpers
        .iter()
        .map(|h| {
            let channel = tls::channel_to(&ctx, h)?;
            Ok((
                h.id,
                HelperServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ))
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let encoding = federation_encoding(&ctx)?;
    let (events, _) = broadcast::channel(64);
    let current = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel(driver::REQUEST_QUEUE);
    let router = CoordinatorRouter {
        ctx: ctx.clone(),
        catalog: catalog.clone(),
        helpers,
        events: events.clone(),
        current: current.clone(),
        tx: tx.clone(),
        encoding,
        running: None,
    };
    let actor = tokio::spawn(driver::run(
        Driver::new(ctx.clone(), Coordinator::new(config, next_round)),
        router,
        rx,
        shutdown.clone(),
    ));
    let service = CoordinatorSvc {
        ctx: ctx.clone(),
        shutdown: shutdown.clone(),
        tx: tx.clone(),
        events,
        current,
        watchers: Arc::default(),
        catalog,
        encoding,
    };
    if let Some(schedule) = schedule {
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { run_schedule(schedule, service, shutdown).await });
    }
    let addr = listener.local_addr()?;
    let routes = tonic::service::Routes::new(
        CoordinatorServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            // Round outcomes for admins are the large replies.
            .max_encoding_message_size(grpc::MAX_OUTCOME_BYTES),
    );
    let join = crate::server::serve(&ctx, listener, routes, actor, shutdown)?;
    Ok(CoordinatorHandle { addr, join })
}

/// The coordinator state machine's configuration, from the node's context
/// (also what `sealroom replay` rebuilds it from).
pub fn coordinator_config(ctx: &NodeContext) -> Result<CoordinatorConfig, NodeError> {
    let spec = &ctx.federation;
    Ok(CoordinatorConfig {
        federation_id: spec.federation_id.clone(),
        signer: ctx.require_signer()?,
        // The epoch of the key this node signs with (its federation entry's
        // key_epoch: 0 until the first rotation).
        epoch: ctx.directory.coordinator.key_epoch,
        helpers: ctx
            .directory
            .helpers
            .iter()
            .map(|h| {
                h.keys().map(|k| (h.id, k)).ok_or_else(|| {
                    NodeError::Config(format!("helper {} has no signing key", h.name))
                })
            })
            .collect::<Result<_, _>>()?,
        threshold: match spec.mode {
            ModeSpec::Additive => None,
            ModeSpec::Threshold => spec.threshold,
        },
        min_clients: spec.min_clients,
        upload_window_ms: spec.upload_window_ms,
        aggregation_window_ms: spec.aggregation_window_ms,
        allow_unverified: spec.allow_unverified_threshold_release,
    })
}

async fn run_schedule(schedule: Schedule, service: CoordinatorSvc, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(schedule.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.wait() => return,
        }
        let request = StartRoundRequest {
            task: schedule.task.clone(),
            vector_length: schedule.vector_length,
            ..StartRoundRequest::default()
        };
        match service.run(request).await {
            Ok(outcome) => {
                tracing::info!(round = outcome.round_id, status = %outcome.status, "scheduled round finished")
            }
            Err(status) => tracing::warn!(message = status.message(), "scheduled round not run"),
        }
    }
}

/// Where the coordinator's messages go.
struct CoordinatorRouter {
    ctx: NodeContext,
    catalog: TaskCatalog,
    helpers: Vec<(PartyId, HelperServiceClient<Channel>)>,
    events: broadcast::Sender<RoundEvent>,
    current: Arc<Mutex<Option<RoundEvent>>>,
    tx: CoordinatorRequests,
    encoding: (RingKind, QuantSpec),
    /// The round under way: who waits for it.
    running: Option<Running>,
}

struct Running {
    round: u64,
    started: Instant,
    tag: StartTag,
    task: String,
    params: Vec<u8>,
    clients: Vec<PartyId>,
}

impl Router<Coordinator> for CoordinatorRouter {
    type Tag = StartTag;

    fn route(
        &mut self,
        driver: &Driver<Coordinator>,
        step: &Step,
        tag: StartTag,
    ) -> Vec<(Input, StartTag)> {
        let machine = driver.machine();
        let mut tag = Some(tag);
        if let (Some(round), Some(r)) = (step.round, machine.round())
            && self.running.as_ref().is_none_or(|run| run.round != round)
            && r.descriptor().round_id() == round
        {
            let d = r.descriptor();
            tracing::info!(
                round,
                task = d.task_name(),
                clients = d.clients().len(),
                vector_len = d.vector_len(),
                "round started"
            );
            self.running = Some(Running {
                round,
                started: Instant::now(),
                tag: tag.take().unwrap_or_default(),
                task: d.task_name().to_string(),
                params: d.task_params().to_vec(),
                clients: d.clients().to_vec(),
            });
        }
        let deadlines = machine.round().map(|r| {
            (
                r.descriptor().upload_deadline(),
                r.descriptor().aggregation_deadline(),
                // An engine round's answer carries 16-byte outputs.
                if r.descriptor().engine().is_some() {
                    (r.descriptor().vector_len()
                        + sealroom_protocol::coordinator::ENGINE_EXTRA_OUTPUTS)
                        * 16
                } else {
                    r.descriptor().vector_bytes()
                },
            )
        });
        let mut descriptor_pushes = Vec::new();
        let mut broadcast: Option<RoundEvent> = None;
        for action in &step.actions {
            let Action::Send { to, message, .. } = action else {
                continue;
            };
            let helper = self
                .helpers
                .iter()
                .find(|(id, _)| id == to)
                .map(|(_, c)| c.clone());
            match (message, helper) {
                (Message::Descriptor(env), Some(client)) => {
                    descriptor_pushes.push((client, (**env).clone()))
                }
                (Message::Descriptor(env), None) => {
                    broadcast.get_or_insert_with(|| RoundEvent {
                        event: Some(round_event::Event::Descriptor((**env).clone())),
                    });
                }
                (Message::InclusionSet(env), Some(client)) => {
                    if let Some((_, aggregation_deadline, bytes)) = deadlines {
                        self.ask_for_answer(*to, client, env.clone(), aggregation_deadline, bytes);
                    }
                }
                (Message::Result(env) | Message::Abort(env), Some(client)) => {
                    let env = (**env).clone();
                    tokio::spawn(async move {
                        let mut c = client;
                        let mut request = Request::new(env);
                        request.set_timeout(Duration::from_secs(5));
                        let _ = c.publish(request).await;
                    });
                }
                (Message::Result(env), None) => {
                    broadcast.get_or_insert_with(|| RoundEvent {
                        event: Some(round_event::Event::Result((**env).clone())),
                    });
                }
                (Message::Abort(env), None) => {
                    broadcast.get_or_insert_with(|| RoundEvent {
                        event: Some(round_event::Event::Abort((**env).clone())),
                    });
                }
                (other, _) => {
                    tracing::debug!(kind = %other.kind(), "unroutable message dropped")
                }
            }
        }
        if !descriptor_pushes.is_empty() {
            let upload_deadline = deadlines.map_or(now(), |d| d.0);
            self.push_descriptor(descriptor_pushes, broadcast.take(), upload_deadline);
        } else if let Some(event) = broadcast {
            self.publish(event);
        }
        if let Some(tag) = tag
            && let Some(waiter) = tag.waiter
        {
            // An input that carried a waiter but started no round: nothing to wait for.
            let _ = waiter.send(Err(Status::internal("the request started no round")));
        }
        match &step.outcome {
            Some(outcome) => self.finished(outcome),
            None => Vec::new(),
        }
    }

    fn refused(&mut self, refusal: &Refusal, tag: StartTag) {
        if let Some(waiter) = tag.waiter {
            let _ = waiter.send(Err(status_of(refusal)));
        }
    }
}

impl CoordinatorRouter {
    /// Helpers learn of the round before clients do, so uploads rarely
    /// overtake descriptors. A helper that is down must not hold the
    /// clients back: they hear of the round once every helper has taken the
    /// descriptor, or after a short grace period. A helper that could not
    /// take it is offered it again until the upload window closes (so a
    /// helper restarting mid-window rejoins the round).
    fn push_descriptor(
        &self,
        pushes: Vec<(HelperServiceClient<Channel>, pb::SignedEnvelope)>,
        event: Option<RoundEvent>,
        upload_deadline: Millis,
    ) {
        let events = self.events.clone();
        let current = self.current.clone();
        let grace =
            Duration::from_millis((self.ctx.federation.upload_window_ms / 4).clamp(100, 2_000));
        let until = instant_of(upload_deadline);
        tokio::spawn(async move {
            let (taken_tx, mut taken_rx) = mpsc::channel::<()>(pushes.len().max(1));
            let helpers = pushes.len();
            for (mut client, env) in pushes {
                let taken_tx = taken_tx.clone();
                tokio::spawn(async move {
                    let mut backoff = Duration::from_millis(100);
                    loop {
                        let mut request = Request::new(env.clone());
                        request.set_timeout(Duration::from_secs(5));
                        match client.descriptor(request).await {
                            Ok(_) => {
                                let _ = taken_tx.send(()).await;
                                return;
                            }
                            Err(s)
                                if retryable(&s)
                                    && tokio::time::Instant::now() + backoff < until =>
                            {
                                tracing::info!(code = ?s.code(), "a helper did not take the descriptor; offering it again");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(2));
                            }
                            Err(s) => {
                                tracing::warn!(code = ?s.code(), message = s.message(), "a helper did not take the descriptor");
                                return;
                            }
                        }
                    }
                });
            }
            drop(taken_tx);
            let all = async {
                for _ in 0..helpers {
                    if taken_rx.recv().await.is_none() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(grace, all).await;
            if let Some(event) = event {
                *current.lock().expect("current round lock") = Some(event.clone());
                let _ = events.send(event);
            }
        });
    }

    fn publish(&self, event: RoundEvent) {
        let mut current = self.current.lock().expect("current round lock");
        *current =
            matches!(event.event, Some(round_event::Event::Descriptor(_))).then(|| event.clone());
        let _ = self.events.send(event);
    }

    /// Asks a helper for its answer, again after a failure until the
    /// aggregation deadline (a helper that restarts gets the inclusion set
    /// again and answers it, the same answer if it had already). The answer
    /// comes back to the actor as an input.
    fn ask_for_answer(
        &self,
        helper: PartyId,
        mut client: HelperServiceClient<Channel>,
        env: pb::SignedEnvelope,
        deadline: Millis,
        vector_bytes: usize,
    ) {
        let limit = vector_bytes + 4096;
        let tx = self.tx.clone();
        let metrics = self.ctx.metrics.clone();
        let until = instant_of(deadline);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let wait = until.saturating_duration_since(tokio::time::Instant::now());
                let mut request = Request::new(env.clone());
                request.set_timeout(wait.max(Duration::from_millis(100)));
                let result = async {
                    let mut stream = client.inclusion(request).await?.into_inner();
                    let mut bytes = Vec::new();
                    while let Some(chunk) = stream.next().await {
                        grpc::append(&mut bytes, &chunk?.data, limit)?;
                    }
                    Ok::<_, Status>(bytes)
                }
                .await;
                match result {
                    Ok(bytes) => {
                        metrics.bytes("in", "aggregate_share", bytes.len());
                        let input = Input::Inbound {
                            from: helper,
                            msg: Inbound::AggregateShare(
                                sealroom_protocol::action::SecretBytes::new(bytes),
                            ),
                        };
                        let _ = tx
                            .send(driver::Request::Input {
                                input,
                                reply: None,
                                tag: StartTag::default(),
                            })
                            .await;
                        return;
                    }
                    Err(s) if retryable(&s) && tokio::time::Instant::now() + backoff < until => {
                        tracing::info!(code = ?s.code(), "a helper did not answer; asking again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(s) => {
                        tracing::warn!(code = ?s.code(), message = s.message(), "helper did not answer");
                        return;
                    }
                }
            }
        });
    }

    /// A round ended: its record is stored, the admin told, and a task that
    /// runs in phases goes on with its next phase.
    fn finished(&mut self, outcome: &Outcome) -> Vec<(Input, StartTag)> {
        let Some(running) = self.running.take() else {
            return Vec::new();
        };
        let duration = running.started.elapsed();
        let round_id = outcome.round_id();
        let mut message = outcome_message(outcome, duration);
        let store = self.ctx.store.clone();
        let (kind, record) = match outcome {
            Outcome::Completed(s) => ("result", s.result.clone()),
            Outcome::Aborted(a) => ("abort", a.record.clone()),
        };
        tokio::spawn(async move {
            if let Err(e) = store.record_outcome(round_id, kind, &record).await {
                tracing::error!(error = %e, round = round_id, "could not store the round's outcome");
            }
        });
        self.metrics(outcome, running.clients.len(), duration);
        let mut tag = running.tag;
        let next = match outcome {
            Outcome::Completed(summary) => self
                .catalog
                .followup(&running.task)
                .map(|f| {
                    f.next(&FinishedRound {
                        params: &running.params,
                        clients: &running.clients,
                        summary,
                    })
                })
                .transpose(),
            Outcome::Aborted(_) => Ok(None),
        };
        match next {
            Ok(Some(Some(next))) => {
                match self
                    .catalog
                    .next_phase(&running.task, &next, self.encoding.0)
                {
                    Ok(task) => {
                        tracing::info!(round = round_id, task = %running.task, "starting the task's next phase");
                        tag.earlier.push(message);
                        let nonce = match crate::context::random_nonce() {
                            Ok(n) => n,
                            Err(e) => {
                                if let Some(w) = tag.waiter {
                                    let _ = w.send(Err(Status::internal(e.to_string())));
                                }
                                return Vec::new();
                            }
                        };
                        let input = Input::Start(Start {
                            task,
                            clients: next.clients,
                            nonce,
                        });
                        return vec![(input, tag)];
                    }
                    Err(e) => message.detail = format!("the next phase could not be planned: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => message.detail = format!("the next phase could not be planned: {e}"),
        }
        if let Some(waiter) = tag.waiter {
            message.earlier = tag.earlier;
            let _ = waiter.send(Ok(message));
        }
        Vec::new()
    }

    fn metrics(&self, outcome: &Outcome, invited: usize, duration: Duration) {
        let metrics = &self.ctx.metrics;
        match outcome {
            Outcome::Completed(s) => {
                metrics.reconstruction(true);
                metrics.round_finished("coordinator", "completed", "", duration);
                metrics.clients_dropped(invited.saturating_sub(s.included.len()));
                tracing::info!(
                    round = s.round_id,
                    included = s.included.len(),
                    invited,
                    ms = duration.as_millis() as u64,
                    unverified = s.unverified,
                    "round completed"
                );
            }
            Outcome::Aborted(a) => {
                let reason = reason_name(a.reason);
                if a.reason == pb::AbortReason::InconsistentShares {
                    metrics.verification_failure("coordinator", "inconsistent_shares");
                }
                if matches!(
                    a.reason,
                    pb::AbortReason::InconsistentShares
                        | pb::AbortReason::ReconstructionFailed
                        | pb::AbortReason::HelperMissing
                        | pb::AbortReason::Unverifiable
                ) {
                    metrics.reconstruction(false);
                }
                metrics.round_finished("coordinator", "aborted", &reason, duration);
                tracing::warn!(round = a.round_id, reason = %reason, detail = %a.detail, "round aborted");
            }
        }
    }
}

/// Whether a transport failure may pass (the peer restarting, a timeout).
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
    )
}

/// "not_enough_clients".
pub fn reason_name(reason: pb::AbortReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("ABORT_REASON_")
        .to_lowercase()
}

/// What the admin is told of a round.
fn outcome_message(outcome: &Outcome, duration: Duration) -> RoundOutcome {
    match outcome {
        Outcome::Completed(s) => RoundOutcome {
            round_id: s.round_id,
            status: "completed".into(),
            outcome_status: OutcomeStatus::Completed as i32,
            included_clients: s.included.clone(),
            values: s.values.clone(),
            record: Some(s.result.clone()),
            duration_ms: duration.as_millis() as u64,
            sat_out: s.sat_out.clone(),
            unverified: s.unverified,
            sum: s.sum.iter().flat_map(|v| v.to_le_bytes()).collect(),
            outputs: sealroom_protocol::machine::pack_outputs(&s.outputs),
            ..RoundOutcome::default()
        },
        Outcome::Aborted(a) => RoundOutcome {
            round_id: a.round_id,
            status: "aborted".into(),
            outcome_status: OutcomeStatus::Aborted as i32,
            reason: reason_name(a.reason),
            abort_reason: a.reason as i32,
            detail: a.detail.clone(),
            record: Some(a.record.clone()),
            duration_ms: duration.as_millis() as u64,
            sat_out: a.sat_out.clone(),
            excluded_clients: a.excluded_clients.clone(),
            ..RoundOutcome::default()
        },
    }
}

#[derive(Clone)]
struct CoordinatorSvc {
    ctx: NodeContext,
    shutdown: Shutdown,
    tx: CoordinatorRequests,
    events: broadcast::Sender<RoundEvent>,
    current: Arc<Mutex<Option<RoundEvent>>>,
    /// Open watch streams per party.
    watchers: Arc<Mutex<std::collections::HashMap<PartyId, usize>>>,
    catalog: TaskCatalog,
    encoding: (RingKind, QuantSpec),
}

impl CoordinatorSvc {
    async fn feed(&self, from: PartyId, msg: Inbound) -> Result<Step, Status> {
        match driver::ask(&self.tx, Input::Inbound { from, msg }, StartTag::default()).await? {
            Ok(step) => Ok(step),
            Err(refusal) => Err(status_of(&refusal)),
        }
    }

    /// Runs a round (and its later phases) for an admin request.
    async fn run(&self, request: StartRoundRequest) -> Result<RoundOutcome, Status> {
        // The clients as of the last reload of federation.toml (a removed
        // client is in no new round).
        let directory = self
            .ctx
            .registry
            .directory()
            .unwrap_or_else(|| self.ctx.directory.clone());
        let clients: Vec<PartyId> = if request.clients.is_empty() {
            directory.clients.iter().map(|c| c.id).collect()
        } else {
            request
                .clients
                .iter()
                .map(|name| match directory.by_name(name) {
                    Some(p) if p.role == Role::Client => Ok(p.id),
                    _ => Err(Status::invalid_argument(format!(
                        "{name:?} is not a client of this federation"
                    ))),
                })
                .collect::<Result<_, _>>()?
        };
        let (ring, spec) = self.encoding;
        let task_request = TaskRequest {
            name: request.task.clone(),
            vector_len: request.vector_length,
            params: request.params.clone(),
            min_clients: request.min_clients as usize,
        };
        let task: Task = self
            .catalog
            .task(&task_request, clients.len(), ring, spec)
            .map_err(Status::invalid_argument)?;
        let nonce = crate::context::random_nonce().map_err(|e| Status::internal(e.to_string()))?;
        let (waiter, outcome) = oneshot::channel();
        self.tx
            .send(driver::Request::Input {
                input: Input::Start(Start {
                    task,
                    clients,
                    nonce,
                }),
                reply: None,
                tag: StartTag {
                    waiter: Some(waiter),
                    earlier: Vec::new(),
                },
            })
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?;
        outcome
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?
    }
}

/// A watch stream's slot: released when the stream ends.
struct WatchSlot {
    watchers: Arc<Mutex<std::collections::HashMap<PartyId, usize>>>,
    party: PartyId,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        if let Some(n) = watchers.get_mut(&self.party) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                watchers.remove(&self.party);
            }
        }
    }
}

#[tonic::async_trait]
impl CoordinatorService for CoordinatorSvc {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<RoundEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let party = self.ctx.authorize(
            &request,
            "Watch",
            &[Role::Client, Role::Helper, Role::Admin],
        )?;
        let slot = {
            let mut watchers = self.watchers.lock().expect("watchers lock");
            let open = watchers.entry(party.id).or_default();
            if *open >= WATCHERS_PER_PARTY {
                self.ctx
                    .metrics
                    .request_refused("Watch", "too_many_watchers");
                return Err(Status::resource_exhausted(format!(
                    "{} already has {WATCHERS_PER_PARTY} watch streams open",
                    party.name
                )));
            }
            *open += 1;
            WatchSlot {
                watchers: self.watchers.clone(),
                party: party.id,
            }
        };
        tracing::info!(peer = %party.name, "watcher connected");
        let mut receiver = self.events.subscribe();
        let first = self.current.lock().expect("current round lock").clone();
        // Each watcher gets its own forwarding task, which ends at shutdown so
        // that open watch streams do not hold a stopping coordinator up.
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(event) = first
                && tx.send(Ok(event)).await.is_err()
            {
                return;
            }
            loop {
                let event = tokio::select! {
                    e = receiver.recv() => e,
                    () = shutdown.wait() => return,
                    () = tx.closed() => return,
                };
                match event {
                    Ok(event) => {
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a slow watcher missed round events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Empty>, Status> {
        let party = self.ctx.authorize(&request, "Report", &[Role::Helper])?;
        self.feed(party.id, Inbound::Report(request.into_inner()))
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn sit_out(&self, request: Request<SitOutNotice>) -> Result<Response<Empty>, Status> {
        let party = self.ctx.authorize(&request, "SitOut", &[Role::Client])?;
        self.feed(party.id, Inbound::SitOut(request.into_inner().notice))
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn start_round(
        &self,
        request: Request<StartRoundRequest>,
    ) -> Result<Response<RoundOutcome>, Status> {
        let party = self.ctx.authorize(&request, "StartRound", &[Role::Admin])?;
        let request = request.into_inner();
        tracing::info!(admin = %party.name, task = %request.task, "round requested");
        Ok(Response::new(self.run(request).await?))
    }
}
