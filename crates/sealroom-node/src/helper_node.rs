//! The helper runtime: serves `HelperService` over mTLS and drives the
//! [`Helper`] state machine from one task, making each `Persist` action
//! durable in the store before any later action (receipt, report, answer)
//! leaves.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use sealroom_protocol::action::{Action, Message, Persist};
use sealroom_protocol::helper::{Helper, HelperConfig, HelperError, UPLOAD_OVERHEAD};
use sealroom_protocol::pb::archived_step::Input;
use sealroom_protocol::{Digest, PartyId, pb};
use sealroom_store::AuditKind;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::config::Role;
use crate::context::{NodeContext, instant_of, now};
use crate::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use crate::grpc::pb::helper_service_server::{HelperService, HelperServiceServer};
use crate::grpc::pb::{AnswerChunk, Empty, UploadChunk};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::record::{self, Step};
use crate::shutdown::Shutdown;
use crate::{NodeError, tls};

/// Rounds a helper keeps (older ones are pruned from memory and disk).
pub const KEEP_ROUNDS: usize = 16;

enum Event {
    Descriptor {
        envelope: pb::SignedEnvelope,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    Upload {
        from: PartyId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<pb::SignedEnvelope, Status>>,
    },
    Inclusion {
        envelope: pb::SignedEnvelope,
        reply: oneshot::Sender<Result<Vec<u8>, Status>>,
    },
}

/// A running helper.
#[derive(Debug)]
pub struct HelperHandle {
    /// The gRPC address it serves on.
    pub addr: SocketAddr,
    /// Ends with the server (after shutdown, or on a fatal store error).
    pub join: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// Starts a helper on `listener`, restoring its state from the store.
pub async fn spawn(
    ctx: NodeContext,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<HelperHandle, NodeError> {
    let config = helper_config(&ctx)?;
    crate::record::register_key(&ctx).await?;
    let state = ctx.store.helper_state().await?;
    let restored_rounds = state.rounds.len();
    let mut known = HashSet::new();
    let mut max_vector = 0usize;
    for r in &state.rounds {
        if let Ok(d) = sealroom_protocol::VerifiedDescriptor::verify(&r.descriptor, &config.trust) {
            known.insert(d.hash());
            max_vector = max_vector.max(d.vector_bytes());
        }
    }
    let helper = Helper::restore(config, state)?;
    tracing::info!(name = %ctx.name, restored_rounds, backend = ctx.store.backend(), "helper state restored");

    let addr = listener.local_addr()?;
    let max_upload = Arc::new(AtomicUsize::new(max_vector + UPLOAD_OVERHEAD));
    let (tx, rx) = mpsc::channel(256);
    let actor = Actor {
        ctx: ctx.clone(),
        helper,
        volume: HashMap::new(),
        known,
        max_upload: max_upload.clone(),
        shutdown: shutdown.clone(),
    };
    let actor_task = tokio::spawn(actor.run(rx));

    let service = HelperSvc {
        ctx: ctx.clone(),
        tx,
        max_upload,
    };
    let routes = tonic::service::Routes::new(
        HelperServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    let join = crate::server::serve(&ctx, listener, routes, actor_task, shutdown)?;
    Ok(HelperHandle { addr, join })
}

/// The helper state machine's configuration, from the node's context (also
/// what `sealroom replay` rebuilds it from).
pub fn helper_config(ctx: &NodeContext) -> Result<HelperConfig, NodeError> {
    let signing_key = ctx
        .signing_key
        .clone()
        .ok_or(NodeError::MissingSigningKey)?;
    Ok(HelperConfig {
        me: ctx.me,
        coordinator: ctx.directory.coordinator.id,
        signing_key,
        trust: ctx.directory.trust(),
        max_pending_uploads: 0,
    })
}

struct HelperSvc {
    ctx: NodeContext,
    tx: mpsc::Sender<Event>,
    max_upload: Arc<AtomicUsize>,
}

impl HelperSvc {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Status>>) -> Event,
    ) -> Result<T, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Status::unavailable("helper is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("helper is shutting down"))?
    }
}

#[tonic::async_trait]
impl HelperService for HelperSvc {
    async fn descriptor(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Empty>, Status> {
        self.ctx
            .authorize(&request, "Descriptor", &[Role::Coordinator])?;
        let envelope = request.into_inner();
        self.ask(|reply| Event::Descriptor { envelope, reply })
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<pb::SignedEnvelope>, Status> {
        let party = self.ctx.authorize(&request, "Upload", &[Role::Client])?;
        let limit = self.max_upload.load(Ordering::Relaxed);
        let mut stream = request.into_inner();
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if let Err(status) = grpc::append(&mut bytes, &chunk.data, limit) {
                self.ctx.metrics.upload(false, "too_large");
                return Err(status);
            }
        }
        self.ctx.metrics.bytes("in", "upload", bytes.len());
        let bytes = std::mem::take(&mut *bytes);
        let receipt = self
            .ask(|reply| Event::Upload {
                from: party.id,
                bytes,
                reply,
            })
            .await?;
        Ok(Response::new(receipt))
    }

    type InclusionStream = tokio_stream::Iter<std::vec::IntoIter<Result<AnswerChunk, Status>>>;

    async fn inclusion(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Self::InclusionStream>, Status> {
        self.ctx
            .authorize(&request, "Inclusion", &[Role::Coordinator])?;
        let envelope = request.into_inner();
        let answer = self
            .ask(|reply| Event::Inclusion { envelope, reply })
            .await?;
        self.ctx
            .metrics
            .bytes("out", "aggregate_share", answer.len());
        let chunks: Vec<Result<AnswerChunk, Status>> = grpc::split(&answer)
            .into_iter()
            .map(|data| Ok(AnswerChunk { data }))
            .collect();
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn publish(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Empty>, Status> {
        self.ctx
            .authorize(&request, "Publish", &[Role::Coordinator])?;
        let envelope = request.into_inner();
        tracing::info!(label = %envelope.label, "round outcome published");
        Ok(Response::new(Empty {}))
    }
}

struct Actor {
    ctx: NodeContext,
    helper: Helper,
    /// Per round: uploads accepted and payload bytes moved.
    volume: HashMap<u64, (usize, usize)>,
    known: HashSet<Digest>,
    max_upload: Arc<AtomicUsize>,
    shutdown: Shutdown,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Result<(), NodeError> {
        loop {
            let deadline = self.helper.next_deadline().map(instant_of);
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
                    let at = now();
                    let actions = self.helper.on_timer(at);
                    let rounds: BTreeSet<u64> = actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Send { message, .. } => record::round_of(message),
                            Action::Persist(_) => None,
                        })
                        .collect();
                    let steps = rounds
                        .into_iter()
                        .map(|r| Step::new(r, at, Input::Timer(true)).sent(&actions, true))
                        .collect();
                    let span = tracing::info_span!("helper.timer", role = "helper");
                    self.execute(actions, steps).instrument(span).await?;
                }
                () = self.shutdown.wait() => return Ok(()),
            }
        }
    }

    async fn handle(&mut self, event: Event) -> Result<(), NodeError> {
        match event {
            Event::Descriptor { envelope, reply } => {
                let at = now();
                let round_id = pb::RoundDescriptor::decode(envelope.body.as_slice())
                    .map(|d| d.round_id)
                    .unwrap_or(0);
                let span =
                    tracing::info_span!("helper.descriptor", round = round_id, role = "helper");
                match span.in_scope(|| self.helper.on_descriptor(at, &envelope)) {
                    Ok(actions) => {
                        let step = Step::new(round_id, at, Input::Descriptor(envelope.clone()))
                            .accepted(AuditKind::Descriptor, &envelope)
                            .sent(&actions, false);
                        if let Ok(d) = sealroom_protocol::VerifiedDescriptor::verify(
                            &envelope,
                            &self.ctx.directory.trust(),
                        ) {
                            tracing::info!(
                                round = d.round_id(),
                                task = d.task_name(),
                                clients = d.clients().len(),
                                "round accepted"
                            );
                            self.known.insert(d.hash());
                            self.max_upload
                                .fetch_max(d.vector_bytes() + UPLOAD_OVERHEAD, Ordering::Relaxed);
                        }
                        self.execute(actions, vec![step]).instrument(span).await?;
                        self.helper.prune(KEEP_ROUNDS);
                        if let Err(e) = self.ctx.store.prune_helper_rounds(KEEP_ROUNDS).await {
                            tracing::warn!(error = %e, "pruning old rounds failed");
                        }
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "descriptor refused");
                        let _ = reply.send(Err(Status::failed_precondition(e.to_string())));
                    }
                }
            }
            Event::Upload { from, bytes, reply } => {
                // Uploads that overtake their descriptor are not held: the
                // client is told to retry, so a receipt always answers its upload.
                let hash = pb::Upload::decode(bytes.as_slice())
                    .ok()
                    .and_then(|u| Digest::from_slice(&u.descriptor_hash));
                if hash.is_some_and(|h| !self.known.contains(&h)) {
                    let round = pb::Upload::decode(bytes.as_slice())
                        .map(|u| u.round_id)
                        .unwrap_or(0);
                    if self.helper.last_round().is_none_or(|last| round > last) {
                        self.ctx.metrics.upload(false, "round_not_yet_known");
                        let _ = reply.send(Err(Status::unavailable(
                            "round not yet known to this helper; retry",
                        )));
                        return Ok(());
                    }
                }
                let at = now();
                let header = pb::Upload::decode(bytes.as_slice())
                    .map(|u| (u.round_id, u.client_index))
                    .ok();
                let round_id = header.map(|(r, _)| r);
                let span = tracing::info_span!(
                    "helper.upload",
                    round = round_id.unwrap_or(0),
                    role = "helper"
                );
                let result = span.in_scope(|| self.helper.on_upload(at, from, &bytes));
                let len = bytes.len();
                let step = round_id.map(|r| {
                    Step::new(
                        r,
                        at,
                        Input::Upload(pb::ArchivedMessage {
                            from: from.0.to_vec(),
                            bytes,
                            ..Default::default()
                        }),
                    )
                });
                match result {
                    Ok(actions) => {
                        self.ctx.metrics.upload(true, "");
                        if let Some(r) = round_id {
                            let v = self.volume.entry(r).or_default();
                            v.0 += 1;
                            v.1 += len;
                        }
                        // The accepted upload is stored once, in the helper's
                        // uploads: the archive refers to it.
                        let step = step.map(|s| {
                            s.stored_upload(header.map_or(0, |(_, c)| c))
                                .sent(&actions, false)
                        });
                        let sent = self
                            .execute(actions, step.into_iter().collect())
                            .instrument(span)
                            .await?;
                        let _ =
                            reply.send(sent.receipt.ok_or_else(|| {
                                Status::internal("upload accepted without a receipt")
                            }));
                    }
                    Err(e) => {
                        let reason = upload_reason(&e);
                        self.ctx.metrics.upload(false, reason);
                        if VERIFICATION_FAILURES.contains(&reason) {
                            self.ctx.metrics.verification_failure("helper", reason);
                        }
                        tracing::info!(error = %e, "upload refused");
                        if let Some(step) = step {
                            record::record(&self.ctx, step.refused(&e)).await?;
                        }
                        let _ = reply.send(Err(status_of(&e)));
                    }
                }
            }
            Event::Inclusion { envelope, reply } => {
                let started = Instant::now();
                let at = now();
                let round_id = pb::InclusionSet::decode(envelope.body.as_slice())
                    .map(|i| i.round_id)
                    .ok();
                let span = tracing::info_span!(
                    "helper.inclusion",
                    round = round_id.unwrap_or(0),
                    role = "helper"
                );
                let step =
                    round_id.map(|r| Step::new(r, at, Input::InclusionSet(envelope.clone())));
                match span.in_scope(|| self.helper.on_inclusion_set(at, &envelope)) {
                    Ok(actions) => {
                        let step = step.map(|s| {
                            s.accepted(AuditKind::InclusionSet, &envelope)
                                .sent(&actions, false)
                                .ends_round()
                        });
                        // The answer record is durable before the answer leaves.
                        let sent = self
                            .execute(actions, step.into_iter().collect())
                            .instrument(span)
                            .await?;
                        self.ctx.metrics.answer_latency(started.elapsed());
                        if let Some(r) = round_id {
                            let (shares, bytes) = self.volume.remove(&r).unwrap_or_default();
                            let out = sent.answer.as_ref().map_or(0, Vec::len);
                            self.ctx
                                .metrics
                                .round_volume("helper", Some(shares), bytes + out);
                        }
                        let _ =
                            reply
                                .send(sent.answer.ok_or_else(|| {
                                    Status::internal("no aggregate share produced")
                                }));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "inclusion set refused");
                        if let Some(step) = step {
                            record::record(&self.ctx, step.refused(&e)).await?;
                        }
                        let _ = reply.send(Err(status_of(&e)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes the step's state durable, records it (archive and audit log),
    /// then sends: reports go to the coordinator, and the receipt and the
    /// aggregate share are handed back to the RPC that asked for them. A
    /// Persist or record that fails stops the helper (it must not send
    /// anything whose precondition is not durable).
    async fn execute(&mut self, actions: Vec<Action>, steps: Vec<Step>) -> Result<Sent, NodeError> {
        let mut sent = Sent::default();
        let persists: Vec<&Persist> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist(p) => Some(p),
                Action::Send { .. } => None,
            })
            .collect();
        let durable = match (persists.as_slice(), steps.len()) {
            // An accepted upload and its step: one transaction, one fsync.
            ([upload @ Persist::HelperUpload { .. }], 1) => {
                let step = steps.into_iter().next().expect("one step");
                record::apply_and_record(&self.ctx, upload, step).await
            }
            _ => {
                let mut result = Ok(());
                for p in &persists {
                    result = self.ctx.store.apply(p).await.map_err(NodeError::from);
                    if result.is_err() {
                        break;
                    }
                }
                match result {
                    Ok(()) => record::record_all(&self.ctx, steps).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = durable {
            tracing::error!(error = %e, "could not make helper state durable; stopping");
            return Err(e);
        }
        for p in &persists {
            if let Persist::HelperAnswer { round_id, .. } = p {
                self.ctx
                    .metrics
                    .round_finished("helper", "answered", "", Duration::ZERO);
                tracing::info!(round = round_id, "answer recorded");
            }
        }
        for action in actions {
            match action {
                Action::Persist(_) => {}
                Action::Send {
                    message: Message::Receipt(env),
                    ..
                } => sent.receipt = Some(env),
                Action::Send {
                    message: Message::AggregateShare(bytes),
                    ..
                } => sent.answer = Some(bytes.expose().to_vec()),
                Action::Send {
                    message: Message::Report(env),
                    ..
                } => {
                    let channel = tls::channel(
                        &self.ctx.tls,
                        self.ctx
                            .directory
                            .coordinator
                            .endpoint
                            .as_deref()
                            .unwrap_or_default(),
                    );
                    let shutdown = self.shutdown.clone();
                    tokio::spawn(async move { send_report(channel, env, shutdown).await });
                }
                Action::Send { message, .. } => {
                    tracing::debug!(
                        kind = message.kind(),
                        "message without a transport in this runtime dropped"
                    );
                }
            }
        }
        Ok(sent)
    }
}

/// What a step handed back to the RPC that caused it.
#[derive(Default)]
struct Sent {
    receipt: Option<pb::SignedEnvelope>,
    answer: Option<Vec<u8>>,
}

/// Upload refusals that mean the share itself did not verify (counted in
/// `sealroom_share_verification_failures_total`).
const VERIFICATION_FAILURES: [&str; 6] = [
    "malformed",
    "non_canonical",
    "wrong_length",
    "wrong_share_kind",
    "client_index_mismatch",
    "round_mismatch",
];

/// Sends a report, retrying transient failures for up to a minute.
async fn send_report(
    channel: Result<tonic::transport::Channel, tls::TlsError>,
    env: pb::SignedEnvelope,
    shutdown: Shutdown,
) {
    let channel = match channel {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no channel to the coordinator");
            return;
        }
    };
    let mut client =
        CoordinatorServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut request = Request::new(env.clone());
        request.set_timeout(Duration::from_secs(10));
        match client.report(request).await {
            Ok(_) => return,
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                ) && Instant::now() < give_up
                    && !shutdown.is_triggered() =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => {
                tracing::warn!(code = ?s.code(), message = s.message(), "coordinator refused the report");
                return;
            }
        }
    }
}

/// The metrics label for a refused upload.
pub fn upload_reason(e: &HelperError) -> &'static str {
    match e {
        HelperError::MalformedUpload { .. } => "malformed",
        HelperError::UnknownRound { .. } => "unknown_round",
        HelperError::RoundMismatch { .. } => "round_mismatch",
        HelperError::NotAParticipant { .. } => "not_a_participant",
        HelperError::ClientIndexMismatch { .. } => "client_index_mismatch",
        HelperError::Late { .. } => "late",
        HelperError::DuplicateUpload { .. } => "duplicate",
        HelperError::WrongShareKind { .. } => "wrong_share_kind",
        HelperError::ShareLength { .. } => "wrong_length",
        HelperError::NonCanonicalShare { .. } => "non_canonical",
        _ => "other",
    }
}

fn status_of(e: &HelperError) -> Status {
    let message = e.to_string();
    match e {
        HelperError::Descriptor(_) | HelperError::Envelope(_) => Status::permission_denied(message),
        HelperError::MalformedUpload { .. }
        | HelperError::ShareLength { .. }
        | HelperError::NonCanonicalShare { .. }
        | HelperError::WrongShareKind { .. }
        | HelperError::MalformedInclusionSet { .. }
        | HelperError::ClientIndexMismatch { .. }
        | HelperError::RoundMismatch { .. } => Status::invalid_argument(message),
        HelperError::NotAParticipant { .. } => Status::permission_denied(message),
        HelperError::DuplicateUpload { .. } | HelperError::AlreadyAnswered { .. } => {
            Status::already_exists(message)
        }
        _ => Status::failed_precondition(message),
    }
}
