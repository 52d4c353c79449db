//! The coordinator runtime: serves `CoordinatorService` (watch, reports,
//! admin) over mTLS, pushes descriptors and inclusion sets to the helpers,
//! and drives one [`CoordinatorRound`] at a time from a single task.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::action::{Action, Message, Persist};
use sealroom_protocol::coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorRound, Outcome,
};
use sealroom_protocol::pb::archived_step::Input;
use sealroom_protocol::{PartyId, pb};
use sealroom_store::AuditKind;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::config::{ModeSpec, Role};
use crate::context::{NodeContext, instant_of, now};
use crate::grpc::pb::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};
use crate::grpc::pb::helper_service_client::HelperServiceClient;
use crate::grpc::pb::{
    Empty, RoundEvent, RoundOutcome, StartRoundRequest, WatchRequest, round_event,
};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::record::{self, Step};
use crate::shutdown::Shutdown;
use crate::tasks::{TaskCatalog, TaskRequest};
use crate::{NodeError, tls};

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

enum Event {
    Start {
        request: StartRoundRequest,
        reply: oneshot::Sender<Result<RoundOutcome, Status>>,
    },
    Report {
        from: PartyId,
        envelope: pb::SignedEnvelope,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    Answer {
        from: PartyId,
        bytes: Vec<u8>,
    },
}

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
    let ring = match q.ring.as_str() {
        "z2_32" => RingKind::Z2_32,
        "z2_64" => RingKind::Z2_64,
        "fp61" => RingKind::Fp61,
        other => return Err(NodeError::Config(format!("unknown ring {other:?}"))),
    };
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
    crate::record::register_key(&ctx).await?;
    tracing::info!(name = %ctx.name, next_round, backend = ctx.store.backend(), "coordinator starting");
    let helpers = ctx
        .directory
        .helpers
        .iter()
        .map(|h| {
            let channel = tls::channel(&ctx.tls, h.endpoint.as_deref().unwrap_or_default())?;
            Ok((
                h.id,
                HelperServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ))
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    spawn_actor(
        ctx, listener, catalog, schedule, shutdown, config, next_round, helpers,
    )
}

/// The coordinator state machine's configuration, from the node's context
/// (also what `sealroom replay` rebuilds it from).
pub fn coordinator_config(ctx: &NodeContext) -> Result<CoordinatorConfig, NodeError> {
    let signing_key = ctx
        .signing_key
        .clone()
        .ok_or(NodeError::MissingSigningKey)?;
    let spec = &ctx.federation;
    Ok(CoordinatorConfig {
        federation_id: spec.federation_id.clone(),
        signing_key,
        epoch: 0,
        helpers: ctx
            .directory
            .helpers
            .iter()
            .map(|h| (h.id, h.signing_key.expect("helpers have keys")))
            .collect(),
        threshold: match spec.mode {
            ModeSpec::Additive => None,
            ModeSpec::Threshold => spec.threshold,
        },
        min_clients: spec.min_clients,
        upload_window_ms: spec.upload_window_ms,
        aggregation_window_ms: spec.aggregation_window_ms,
    })
}

#[allow(clippy::too_many_arguments)]
fn spawn_actor(
    ctx: NodeContext,
    listener: TcpListener,
    catalog: TaskCatalog,
    schedule: Option<Schedule>,
    shutdown: Shutdown,
    config: CoordinatorConfig,
    next_round: u64,
    helpers: Vec<(PartyId, HelperServiceClient<Channel>)>,
) -> Result<CoordinatorHandle, NodeError> {
    let (events, _) = broadcast::channel(64);
    let current = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel(256);
    let actor = Actor {
        ctx: ctx.clone(),
        coordinator: Coordinator::new(config, next_round),
        catalog,
        active: None,
        events: events.clone(),
        current: current.clone(),
        helpers,
        tx: tx.clone(),
        encoding: federation_encoding(&ctx)?,
        shutdown: shutdown.clone(),
    };
    let actor_task = tokio::spawn(actor.run(rx));
    if let Some(schedule) = schedule {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { run_schedule(schedule, tx, shutdown).await });
    }

    let addr = listener.local_addr()?;
    let service = CoordinatorSvc {
        ctx: ctx.clone(),
        shutdown: shutdown.clone(),
        tx,
        events,
        current,
    };
    let routes = tonic::service::Routes::new(
        CoordinatorServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            // Round outcomes for admins are the large replies; what the
            // other parties decode stays under their own 8 MiB limit.
            .max_encoding_message_size(grpc::MAX_OUTCOME_BYTES),
    );
    let join = crate::server::serve(&ctx, listener, routes, actor_task, shutdown)?;
    Ok(CoordinatorHandle { addr, join })
}

async fn run_schedule(schedule: Schedule, tx: mpsc::Sender<Event>, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(schedule.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.wait() => return,
        }
        let (reply, rx) = oneshot::channel();
        let request = StartRoundRequest {
            task: schedule.task.clone(),
            vector_length: schedule.vector_length,
            clients: Vec::new(),
            params: Vec::new(),
            min_clients: 0,
        };
        if tx.send(Event::Start { request, reply }).await.is_err() {
            return;
        }
        match rx.await {
            Ok(Ok(outcome)) => {
                tracing::info!(round = outcome.round_id, status = %outcome.status, "scheduled round finished")
            }
            Ok(Err(status)) => {
                tracing::warn!(message = status.message(), "scheduled round not run")
            }
            Err(_) => return,
        }
    }
}

struct CoordinatorSvc {
    ctx: NodeContext,
    shutdown: Shutdown,
    tx: mpsc::Sender<Event>,
    events: broadcast::Sender<RoundEvent>,
    current: Arc<Mutex<Option<RoundEvent>>>,
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
        tracing::info!(peer = %party.name, "watcher connected");
        let mut receiver = self.events.subscribe();
        let first = self.current.lock().expect("current round lock").clone();
        // Each watcher gets its own forwarding task, which ends at shutdown so
        // that open watch streams do not hold a stopping coordinator up.
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if let Some(event) = first
                && tx.send(Ok(event)).await.is_err()
            {
                return;
            }
            loop {
                let event = tokio::select! {
                    e = receiver.recv() => e,
                    () = shutdown.wait() => return,
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
        let envelope = request.into_inner();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Event::Report {
                from: party.id,
                envelope,
                reply,
            })
            .await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))??;
        Ok(Response::new(Empty {}))
    }

    async fn start_round(
        &self,
        request: Request<StartRoundRequest>,
    ) -> Result<Response<RoundOutcome>, Status> {
        let party = self.ctx.authorize(&request, "StartRound", &[Role::Admin])?;
        let request = request.into_inner();
        tracing::info!(admin = %party.name, task = %request.task, "round requested");
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Event::Start { request, reply })
            .await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))?;
        let outcome = rx
            .await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))??;
        Ok(Response::new(outcome))
    }
}

struct Active {
    round: CoordinatorRound,
    started: Instant,
    waiters: Vec<oneshot::Sender<Result<RoundOutcome, Status>>>,
    /// Aggregate shares received, and their bytes.
    answers: usize,
    answer_bytes: usize,
}

/// The ring's name in configs and archives.
pub fn ring_name(ring: RingKind) -> &'static str {
    match ring {
        RingKind::Z2_32 => "z2_32",
        RingKind::Z2_64 => "z2_64",
        RingKind::Fp61 => "fp61",
        _ => "unsupported",
    }
}

/// The archived form of `Coordinator::start_round`'s inputs.
fn archived_start(
    round_id: u64,
    task: &sealroom_protocol::coordinator::Task,
    clients: &[PartyId],
    nonce: &[u8; 32],
) -> pb::ArchivedStart {
    pb::ArchivedStart {
        round_id,
        task_name: task.name.clone(),
        vector_len: task.vector_len,
        ring: ring_name(task.ring).into(),
        scale_bits: i32::from(task.spec.scale_bits()),
        clip: task.spec.clip(),
        bits: u32::from(task.spec.bits()),
        params: task.params.clone(),
        min_clients: task.min_clients.map_or(0, |m| m as u32),
        clients: clients.iter().map(|c| c.0.to_vec()).collect(),
        nonce: nonce.to_vec(),
    }
}

struct Actor {
    ctx: NodeContext,
    coordinator: Coordinator,
    catalog: TaskCatalog,
    active: Option<Active>,
    events: broadcast::Sender<RoundEvent>,
    current: Arc<Mutex<Option<RoundEvent>>>,
    helpers: Vec<(PartyId, HelperServiceClient<Channel>)>,
    tx: mpsc::Sender<Event>,
    encoding: (RingKind, QuantSpec),
    shutdown: Shutdown,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Result<(), NodeError> {
        loop {
            let deadline = self
                .active
                .as_ref()
                .and_then(|a| a.round.next_deadline())
                .map(instant_of);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await?,
                    None => return Ok(()),
                },
                () = sleep => {
                    if let Some(active) = self.active.as_mut() {
                        let at = now();
                        let round_id = active.round.descriptor().round_id();
                        let span = tracing::info_span!("coordinator.timer", round = round_id, role = "coordinator");
                        let actions = span.in_scope(|| active.round.on_timer(at));
                        let step = Step::new(round_id, at, Input::Timer(true)).sent(&actions, false);
                        self.execute(actions, Some(step)).instrument(span).await?;
                    }
                }
                () = self.shutdown.wait() => return Ok(()),
            }
            self.finish_if_done().await?;
        }
    }

    async fn handle(&mut self, event: Event) -> Result<(), NodeError> {
        match event {
            Event::Start { request, reply } => {
                if let Some(active) = &self.active {
                    let _ = reply.send(Err(Status::failed_precondition(format!(
                        "round {} is still running",
                        active.round.descriptor().round_id()
                    ))));
                    return Ok(());
                }
                let clients: Result<Vec<PartyId>, Status> = if request.clients.is_empty() {
                    Ok(self.ctx.directory.clients.iter().map(|c| c.id).collect())
                } else {
                    request
                        .clients
                        .iter()
                        .map(|name| match self.ctx.directory.by_name(name) {
                            Some(p) if p.role == Role::Client => Ok(p.id),
                            _ => Err(Status::invalid_argument(format!(
                                "{name:?} is not a client of this federation"
                            ))),
                        })
                        .collect()
                };
                let clients = match clients {
                    Ok(c) => c,
                    Err(s) => {
                        let _ = reply.send(Err(s));
                        return Ok(());
                    }
                };
                let (ring, spec) = self.encoding;
                let task_request = TaskRequest {
                    name: request.task.clone(),
                    vector_len: request.vector_length,
                    params: request.params.clone(),
                    min_clients: request.min_clients as usize,
                };
                let task = match self.catalog.task(&task_request, clients.len(), ring, spec) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = reply.send(Err(Status::invalid_argument(e)));
                        return Ok(());
                    }
                };
                let mut nonce = [0u8; 32];
                if let Err(e) = rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut nonce) {
                    let _ = reply.send(Err(Status::internal(format!("OS randomness failed: {e}"))));
                    return Ok(());
                }
                let at = now();
                let round_id = self.coordinator.next_round_id();
                let start = archived_start(round_id, &task, &clients, &nonce);
                let span = tracing::info_span!(
                    "coordinator.start_round",
                    round = round_id,
                    role = "coordinator"
                );
                let started =
                    span.in_scope(|| self.coordinator.start_round(at, task, clients, nonce));
                match started {
                    Ok((round, actions)) => {
                        let step =
                            Step::new(round_id, at, Input::Start(start)).sent(&actions, false);
                        let d = round.descriptor();
                        tracing::info!(
                            round = d.round_id(),
                            task = d.task_name(),
                            clients = d.clients().len(),
                            vector_len = d.vector_len(),
                            "round started"
                        );
                        self.active = Some(Active {
                            round,
                            started: Instant::now(),
                            waiters: vec![reply],
                            answers: 0,
                            answer_bytes: 0,
                        });
                        self.execute(actions, Some(step)).instrument(span).await?;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Status::invalid_argument(e.to_string())));
                    }
                }
            }
            Event::Report {
                from,
                envelope,
                reply,
            } => {
                let Some(active) = self.active.as_mut() else {
                    let _ = reply.send(Err(Status::failed_precondition("no round is running")));
                    return Ok(());
                };
                let at = now();
                let round_id = active.round.descriptor().round_id();
                let span = tracing::info_span!(
                    "coordinator.report",
                    round = round_id,
                    role = "coordinator"
                );
                let step = Step::new(
                    round_id,
                    at,
                    Input::Report(pb::ArchivedMessage {
                        from: from.0.to_vec(),
                        bytes: envelope.encode_to_vec(),
                        ..Default::default()
                    }),
                );
                match span.in_scope(|| active.round.on_report(at, from, &envelope)) {
                    Ok(actions) => {
                        let step = step
                            .accepted(AuditKind::Report, &envelope)
                            .sent(&actions, false);
                        self.execute(actions, Some(step)).instrument(span).await?;
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "report refused");
                        if is_invalid(&e) {
                            self.ctx
                                .metrics
                                .verification_failure("coordinator", "report_invalid");
                        }
                        record::record(&self.ctx, step.refused(&e)).await?;
                        let _ = reply.send(Err(Status::failed_precondition(e.to_string())));
                    }
                }
            }
            Event::Answer { from, bytes } => {
                if let Some(active) = self.active.as_mut() {
                    let at = now();
                    let round_id = active.round.descriptor().round_id();
                    active.answers += 1;
                    active.answer_bytes += bytes.len();
                    let span = tracing::info_span!(
                        "coordinator.aggregate",
                        round = round_id,
                        role = "coordinator"
                    );
                    let result = span.in_scope(|| active.round.on_aggregate(at, from, &bytes));
                    let step = Step::new(
                        round_id,
                        at,
                        Input::AggregateShare(pb::ArchivedMessage {
                            from: from.0.to_vec(),
                            bytes,
                            ..Default::default()
                        }),
                    );
                    match result {
                        Ok(actions) => {
                            let step = step.sent(&actions, false);
                            self.execute(actions, Some(step)).instrument(span).await?
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "aggregate share refused");
                            if is_invalid(&e) {
                                self.ctx
                                    .metrics
                                    .verification_failure("coordinator", "aggregate_share_invalid");
                            }
                            record::record(&self.ctx, step.refused(&e)).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes the step's state durable, records it (archive and audit log),
    /// and only then sends what it produced.
    async fn execute(&mut self, actions: Vec<Action>, step: Option<Step>) -> Result<(), NodeError> {
        let persists: Vec<&Persist> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist(p) => Some(p),
                Action::Send { .. } => None,
            })
            .collect();
        match (persists.as_slice(), step) {
            ([persist], Some(step)) => record::apply_and_record(&self.ctx, persist, step).await?,
            (_, step) => {
                for p in &persists {
                    self.ctx.store.apply(p).await?;
                }
                if let Some(step) = step {
                    record::record(&self.ctx, step).await?;
                }
            }
        }
        for p in &persists {
            if let Persist::CoordinatorInclusion { round_id, .. } = p {
                tracing::info!(round = round_id, "inclusion set signed");
            }
        }
        let mut descriptor_pushes = Vec::new();
        let mut broadcast: Option<RoundEvent> = None;
        for action in actions {
            match action {
                Action::Persist(_) => {}
                Action::Send { to, message } => {
                    let helper = self
                        .helpers
                        .iter()
                        .find(|(id, _)| *id == to)
                        .map(|(_, c)| c.clone());
                    match (message, helper) {
                        (Message::Descriptor(env), Some(client)) => {
                            descriptor_pushes.push((client, (*env).clone()))
                        }
                        (Message::Descriptor(env), None) => {
                            broadcast.get_or_insert_with(|| RoundEvent {
                                event: Some(round_event::Event::Descriptor((*env).clone())),
                            });
                        }
                        (Message::InclusionSet(env), Some(client)) => {
                            self.ask_for_answer(to, client, env)
                        }
                        (Message::Result(env), Some(client))
                        | (Message::Abort(env), Some(client)) => {
                            tokio::spawn(async move {
                                let mut c = client;
                                let mut request = Request::new((*env).clone());
                                request.set_timeout(Duration::from_secs(5));
                                let _ = c.publish(request).await;
                            });
                        }
                        (Message::Result(env), None) => {
                            broadcast.get_or_insert_with(|| RoundEvent {
                                event: Some(round_event::Event::Result((*env).clone())),
                            });
                        }
                        (Message::Abort(env), None) => {
                            broadcast.get_or_insert_with(|| RoundEvent {
                                event: Some(round_event::Event::Abort((*env).clone())),
                            });
                        }
                        (other, _) => {
                            tracing::debug!(kind = other.kind(), "unroutable message dropped")
                        }
                    }
                }
            }
        }
        if descriptor_pushes.is_empty() {
            if let Some(event) = broadcast {
                self.publish(event);
            }
            return Ok(());
        }
        // Helpers learn of the round before clients do, so uploads do not
        // overtake descriptors. A helper that is down must not hold the
        // clients back: they hear of the round once every helper has taken
        // the descriptor, or after a short grace period, whichever is first.
        let events = self.events.clone();
        let current = self.current.clone();
        let grace =
            Duration::from_millis((self.ctx.federation.upload_window_ms / 4).clamp(100, 2_000));
        tokio::spawn(async move {
            let pushes = descriptor_pushes.into_iter().map(|(mut client, env)| async move {
                let mut request = Request::new(env);
                request.set_timeout(Duration::from_secs(5));
                if let Err(s) = client.descriptor(request).await {
                    tracing::warn!(code = ?s.code(), message = s.message(), "a helper did not take the descriptor");
                }
            });
            let _ = tokio::time::timeout(grace, futures_join_all(pushes)).await;
            if let Some(event) = broadcast {
                *current.lock().expect("current round lock") = Some(event.clone());
                let _ = events.send(event);
            }
        });
        Ok(())
    }

    fn publish(&self, event: RoundEvent) {
        if matches!(event.event, Some(round_event::Event::Descriptor(_))) {
            *self.current.lock().expect("current round lock") = Some(event.clone());
        } else {
            *self.current.lock().expect("current round lock") = None;
        }
        let _ = self.events.send(event);
    }

    fn ask_for_answer(
        &self,
        helper: PartyId,
        mut client: HelperServiceClient<Channel>,
        env: pb::SignedEnvelope,
    ) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        let limit = active.round.descriptor().vector_bytes() + 4096;
        let deadline = active.round.descriptor().aggregation_deadline();
        let tx = self.tx.clone();
        let metrics = self.ctx.metrics.clone();
        tokio::spawn(async move {
            let wait = instant_of(deadline).saturating_duration_since(tokio::time::Instant::now());
            let mut request = Request::new(env);
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
                    let _ = tx
                        .send(Event::Answer {
                            from: helper,
                            bytes,
                        })
                        .await;
                }
                Err(s) => {
                    tracing::warn!(code = ?s.code(), message = s.message(), "helper did not answer")
                }
            }
        });
    }

    async fn finish_if_done(&mut self) -> Result<(), NodeError> {
        if self
            .active
            .as_ref()
            .is_none_or(|a| a.round.outcome().is_none())
        {
            return Ok(());
        }
        let active = self.active.take().expect("checked above");
        let duration = active.started.elapsed();
        let invited = active.round.descriptor().clients().len();
        let reconstructing = active.round.inclusion_set().is_some();
        let round_id = active.round.descriptor().round_id();
        self.ctx
            .metrics
            .round_volume("coordinator", Some(active.answers), active.answer_bytes);
        let outcome = match active.round.into_outcome() {
            Ok(o) => o,
            Err(_) => return Ok(()),
        };
        if reconstructing {
            self.ctx
                .metrics
                .reconstruction(matches!(outcome, Outcome::Completed(_)));
        }
        if let Outcome::Aborted(a) = &outcome
            && a.reason == pb::AbortReason::InconsistentShares
        {
            self.ctx
                .metrics
                .verification_failure("coordinator", "inconsistent_shares");
        }
        let message = match &outcome {
            Outcome::Completed(s) => {
                self.ctx
                    .store
                    .record_outcome(s.round_id, "result", &s.result)
                    .await?;
                self.ctx
                    .metrics
                    .round_finished("coordinator", "completed", "", duration);
                self.ctx.metrics.clients_dropped(invited - s.included.len());
                tracing::info!(
                    round = s.round_id,
                    included = s.included.len(),
                    invited,
                    ms = duration.as_millis() as u64,
                    "round completed"
                );
                RoundOutcome {
                    round_id: s.round_id,
                    status: "completed".into(),
                    reason: String::new(),
                    detail: String::new(),
                    included_clients: s.included.clone(),
                    values: s.values.clone(),
                    record: Some(s.result.clone()),
                    duration_ms: duration.as_millis() as u64,
                }
            }
            Outcome::Aborted(a) => {
                self.ctx
                    .store
                    .record_outcome(a.round_id, "abort", &a.record)
                    .await?;
                let reason = a
                    .reason
                    .as_str_name()
                    .trim_start_matches("ABORT_REASON_")
                    .to_lowercase();
                self.ctx
                    .metrics
                    .round_finished("coordinator", "aborted", &reason, duration);
                tracing::warn!(round = a.round_id, reason = %reason, detail = %a.detail, "round aborted");
                RoundOutcome {
                    round_id: a.round_id,
                    status: "aborted".into(),
                    reason,
                    detail: a.detail.clone(),
                    included_clients: Vec::new(),
                    values: Vec::new(),
                    record: Some(a.record.clone()),
                    duration_ms: duration.as_millis() as u64,
                }
            }
        };
        record::end_round(&self.ctx, round_id).await?;
        for waiter in active.waiters {
            let _ = waiter.send(Ok(message.clone()));
        }
        Ok(())
    }
}

/// Whether a refusal means the peer sent something that does not verify
/// (rather than something late or unexpected).
fn is_invalid(e: &CoordinatorError) -> bool {
    matches!(
        e,
        CoordinatorError::Envelope(_)
            | CoordinatorError::MalformedMessage { .. }
            | CoordinatorError::WrongRound { .. }
            | CoordinatorError::ConflictingReport { .. }
    )
}

/// Runs futures concurrently and waits for all (a tiny join_all).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}
