//! The client's transport: it watches the coordinator for descriptors,
//! feeds them to the one [`driver`](crate::driver), computes its input where
//! its data lives when the state machine asks, and uploads each share
//! straight to its helper over mTLS (the coordinator never relays shares).
//! When it sits a round out, the coordinator is told the typed reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use sealroom_core::Seed;
use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::client::{Client, ClientConfig};
use sealroom_protocol::machine::{
    ClientInput, Inbound, Input, Participation, Refusal, RefusalCode, Step,
};
use sealroom_protocol::{PartyId, pb};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::Request;
use tonic::transport::Channel;

use crate::context::{NodeContext, instant_of};
use crate::driver::{self, Driver, Requests, Router};
use crate::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use crate::grpc::pb::helper_service_client::HelperServiceClient;
use crate::grpc::pb::{SitOutNotice, UploadChunk, WatchRequest, round_event};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::shutdown::Shutdown;
use crate::tasks::{InputError, InputSource};
use crate::{NodeError, tls};

/// What happened to one of this client's rounds (for demos and tests).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// Shares were uploaded and every helper signed a receipt.
    Uploaded {
        /// Round id.
        round_id: u64,
        /// Bytes uploaded in total.
        bytes: usize,
    },
    /// This client did not take part in a round, and why.
    Skipped {
        /// Round id (0 if the descriptor did not verify).
        round_id: u64,
        /// Why (this client's own account, which may name local files).
        reason: String,
    },
    /// Some helper did not acknowledge the upload.
    UploadFailed {
        /// Round id.
        round_id: u64,
        /// Why.
        reason: String,
    },
    /// The coordinator published a round's outcome.
    Outcome {
        /// Round id.
        round_id: u64,
        /// "result" or "abort".
        kind: String,
    },
}

/// A running client.
#[derive(Debug)]
pub struct ClientHandle {
    /// Ends at shutdown (or when the client cannot go on).
    pub join: tokio::task::JoinHandle<Result<(), NodeError>>,
}

type ClientRequests = Requests<Client, ()>;

/// Starts a client that contributes its input to every round it is invited
/// to. Events are sent to `events` if given.
pub async fn spawn(
    ctx: NodeContext,
    input: Arc<dyn InputSource>,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    shutdown: Shutdown,
) -> Result<ClientHandle, NodeError> {
    let last_round = ctx.store.client_last_round().await?;
    let config = client_config(&ctx);
    let coordinator = tls::channel_to(&ctx, &ctx.directory.coordinator)?;
    let helpers = ctx
        .directory
        .helpers
        .iter()
        .map(|h| Ok((h.id, tls::channel_to(&ctx, h)?)))
        .collect::<Result<BTreeMap<PartyId, Channel>, NodeError>>()?;
    let (tx, rx) = mpsc::channel(driver::REQUEST_QUEUE);
    let router = ClientRouter {
        ctx: ctx.clone(),
        input,
        helpers,
        coordinator: coordinator.clone(),
        events: events.clone(),
        tx: tx.clone(),
        uploads: BTreeMap::new(),
    };
    let actor = tokio::spawn(driver::run(
        Driver::new(ctx.clone(), Client::new(config, last_round)),
        router,
        rx,
        shutdown.clone(),
    ));
    let watch = tokio::spawn(watch(ctx, coordinator, tx, events, shutdown.clone()));
    let join = tokio::spawn(async move {
        let result = actor.await;
        watch.abort();
        match result {
            Ok(r) => r,
            Err(e) => Err(NodeError::Transport(format!(
                "the client's actor failed: {e}"
            ))),
        }
    });
    Ok(ClientHandle { join })
}

/// The client state machine's configuration, from the node's context (also
/// what `sealroom replay` rebuilds it from).
pub fn client_config(ctx: &NodeContext) -> ClientConfig {
    ClientConfig {
        me: ctx.me,
        coordinator: ctx.directory.coordinator.id,
        trust: ctx.directory.trust(),
        helper_keys: ctx.directory.helper_keys(),
    }
}

/// Follows the coordinator's round events, reconnecting with backoff.
async fn watch(
    ctx: NodeContext,
    coordinator: Channel,
    tx: ClientRequests,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    shutdown: Shutdown,
) {
    let coordinator_id = ctx.directory.coordinator.id;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let mut client = CoordinatorServiceClient::new(coordinator.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let stream = tokio::select! {
            s = client.watch(Request::new(WatchRequest { after_round: 0 })) => s,
            () = shutdown.wait() => return,
        };
        match stream {
            Ok(response) => {
                backoff = Duration::from_millis(100);
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        n = stream.next() => n,
                        () = shutdown.wait() => return,
                    };
                    let event = match next {
                        Some(Ok(event)) => event,
                        Some(Err(s)) => {
                            tracing::info!(code = ?s.code(), "watch stream ended");
                            break;
                        }
                        None => break,
                    };
                    match event.event {
                        Some(round_event::Event::Descriptor(env)) => {
                            let input = Input::Inbound {
                                from: coordinator_id,
                                msg: Inbound::Descriptor(env),
                            };
                            let request = driver::Request::Input {
                                input,
                                reply: None,
                                tag: (),
                            };
                            if tx.send(request).await.is_err() {
                                return;
                            }
                        }
                        Some(round_event::Event::Result(env) | round_event::Event::Abort(env)) => {
                            match crate::directory::verify_outcome(&ctx.live_directory(), &env) {
                                Ok(outcome) => {
                                    tracing::info!(
                                        round = outcome.round_id,
                                        kind = outcome.kind,
                                        "round outcome published"
                                    );
                                    if let Some(events) = &events {
                                        let _ = events.send(ClientEvent::Outcome {
                                            round_id: outcome.round_id,
                                            kind: outcome.kind.into(),
                                        });
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "a published outcome does not verify")
                                }
                            }
                        }
                        None => {}
                    }
                }
            }
            Err(s) => {
                tracing::info!(code = ?s.code(), message = s.message(), "coordinator not reachable; retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.wait() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Where a client's messages go, and its input computations.
struct ClientRouter {
    ctx: NodeContext,
    input: Arc<dyn InputSource>,
    helpers: BTreeMap<PartyId, Channel>,
    coordinator: Channel,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    tx: ClientRequests,
    /// Per round: bytes uploaded, when the input was asked for, and the
    /// upload deadline.
    uploads: BTreeMap<u64, Upload>,
}

struct Upload {
    bytes: usize,
    asked: Instant,
    deadline: tokio::time::Instant,
}

impl ClientRouter {
    fn emit(&self, event: ClientEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}

impl Router<Client> for ClientRouter {
    type Tag = ();

    fn route(&mut self, driver: &Driver<Client>, step: &Step, (): ()) -> Vec<(Input, ())> {
        let round = step.round.unwrap_or(0);
        for action in &step.actions {
            match action {
                Action::Compute(descriptor) => {
                    self.uploads.insert(
                        round,
                        Upload {
                            bytes: 0,
                            asked: Instant::now(),
                            deadline: instant_of(descriptor.upload_deadline()),
                        },
                    );
                    while self.uploads.len() > 4 {
                        self.uploads.pop_first();
                    }
                    self.compute(descriptor.as_ref().clone());
                }
                Action::Send {
                    to,
                    message: Message::Upload(bytes),
                    ..
                } => {
                    let deadline = match self.uploads.get_mut(&round) {
                        Some(entry) => {
                            entry.bytes += bytes.len();
                            entry.deadline
                        }
                        None => {
                            tokio::time::Instant::now()
                                + Duration::from_millis(self.ctx.federation.upload_window_ms)
                        }
                    };
                    self.upload(round, *to, bytes.clone(), deadline);
                }
                Action::Send {
                    message: Message::SitOut(notice),
                    ..
                } => self.sit_out(notice.clone()),
                Action::Send { .. } | Action::Persist(_) | Action::Engine(_) => {}
            }
        }
        if step.ends_round {
            let (bytes, started) = self
                .uploads
                .remove(&round)
                .map_or((0, Instant::now()), |u| (u.bytes, u.asked));
            let took_part = driver
                .machine()
                .current_round()
                .is_some_and(|r| r.round_id() == round && r.all_receipts());
            if took_part {
                tracing::info!(
                    round,
                    bytes,
                    "shares uploaded; every helper signed a receipt"
                );
                self.ctx
                    .metrics
                    .round_finished("client", "uploaded", "", started.elapsed());
                self.ctx.metrics.round_volume("client", None, bytes);
                self.emit(ClientEvent::Uploaded {
                    round_id: round,
                    bytes,
                });
            }
        }
        Vec::new()
    }

    fn refused(&mut self, refusal: &Refusal, (): ()) {
        match refusal.code {
            // Descriptors of rounds already taken part in come again on
            // every reconnect: nothing to report.
            RefusalCode::Replayed => {}
            RefusalCode::ReceiptMismatch | RefusalCode::BadSignature if refusal.round.is_some() => {
                self.ctx
                    .metrics
                    .verification_failure("client", "receipt_invalid");
                self.emit(ClientEvent::UploadFailed {
                    round_id: refusal.round.unwrap_or(0),
                    reason: refusal.to_string(),
                });
            }
            _ => {
                tracing::info!(error = %refusal, "input refused");
                self.emit(ClientEvent::Skipped {
                    round_id: refusal.round.unwrap_or(0),
                    reason: refusal.to_string(),
                });
            }
        }
    }
}

impl ClientRouter {
    /// Computes this client's input on a blocking thread (it may train a
    /// model or query a database) and hands it back as `Participate`.
    fn compute(&self, descriptor: sealroom_protocol::VerifiedDescriptor) {
        let source = self.input.clone();
        let keys = self.ctx.live_directory().keys();
        let tx = self.tx.clone();
        let events = self.events.clone();
        let metrics = self.ctx.metrics.clone();
        let round = descriptor.round_id();
        tokio::spawn(async move {
            let started = Instant::now();
            let computed =
                tokio::task::spawn_blocking(move || source.input_with_keys(&descriptor, &keys))
                    .await
                    .unwrap_or_else(|e| {
                        Err(InputError::new(
                            pb::SitOutReason::InputFailed,
                            "",
                            format!("the input computation failed: {e}"),
                        ))
                    });
            let input = match computed {
                Ok(values) => Ok(ClientInput::new(values)),
                Err(e) => {
                    tracing::warn!(round, reason = %e.detail, "no input for this round; sitting it out");
                    metrics.round_finished("client", "skipped", "no_input", started.elapsed());
                    if let Some(events) = &events {
                        let _ = events.send(ClientEvent::Skipped {
                            round_id: round,
                            reason: e.detail.clone(),
                        });
                    }
                    Err(e.sit_out)
                }
            };
            let mut seed = [0u8; 32];
            if let Err(e) = rand::TryRng::try_fill_bytes(&mut SysRng, &mut seed) {
                tracing::error!(error = %e, "OS randomness failed; this round is skipped");
                return;
            }
            let randomness = Seed::from_bytes(seed);
            zeroize::Zeroize::zeroize(&mut seed);
            let request = driver::Request::Input {
                input: Input::Participate(Participation {
                    round,
                    input,
                    randomness,
                }),
                reply: None,
                tag: (),
            };
            let _ = tx.send(request).await;
        });
    }

    /// Streams one upload to a helper, retrying while the helper does not
    /// know the round yet or is unreachable, until the upload deadline; the
    /// receipt comes back to the actor as an input.
    fn upload(&self, round: u64, to: PartyId, bytes: SecretBytes, deadline: tokio::time::Instant) {
        let Some(channel) = self.helpers.get(&to).cloned() else {
            tracing::error!(helper = %to, "a helper not in the federation");
            return;
        };
        let tx = self.tx.clone();
        let events = self.events.clone();
        let metrics = self.ctx.metrics.clone();
        tokio::spawn(async move {
            match upload(channel, &bytes, deadline).await {
                Ok(receipt) => {
                    metrics.bytes("out", "upload", bytes.len());
                    let request = driver::Request::Input {
                        input: Input::Inbound {
                            from: to,
                            msg: Inbound::Receipt(receipt),
                        },
                        reply: None,
                        tag: (),
                    };
                    let _ = tx.send(request).await;
                }
                Err(reason) => {
                    tracing::warn!(helper = %to, %reason, "upload incomplete");
                    metrics.round_finished("client", "upload_failed", "", Duration::ZERO);
                    if let Some(events) = &events {
                        let _ = events.send(ClientEvent::UploadFailed {
                            round_id: round,
                            reason,
                        });
                    }
                }
            }
        });
    }

    /// Tells the coordinator why this client sits the round out.
    fn sit_out(&self, notice: Vec<u8>) {
        let channel = self.coordinator.clone();
        tokio::spawn(async move {
            let mut client = CoordinatorServiceClient::new(channel);
            let mut request = Request::new(SitOutNotice { notice });
            request.set_timeout(Duration::from_secs(5));
            if let Err(s) = client.sit_out(request).await {
                tracing::info!(code = ?s.code(), message = s.message(), "the coordinator did not take the sit-out notice");
            }
        });
    }
}

async fn upload(
    channel: Channel,
    bytes: &SecretBytes,
    deadline: tokio::time::Instant,
) -> Result<pb::SignedEnvelope, String> {
    let mut client = HelperServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut backoff = Duration::from_millis(50);
    loop {
        let chunks: Vec<UploadChunk> = grpc::split(bytes.expose())
            .into_iter()
            .map(|data| UploadChunk { data })
            .collect();
        let mut request = Request::new(tokio_stream::iter(chunks));
        request.set_timeout(
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(10)),
        );
        match client.upload(request).await {
            Ok(receipt) => return Ok(receipt.into_inner()),
            // Transport failures (the helper restarting, a connection
            // closed under the request — a retired certificate, say — or
            // cancelled with it) are retried within the upload window; a
            // share the helper already holds is then refused as a
            // duplicate, which leaves the round as it was.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) && tokio::time::Instant::now() + backoff < deadline =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(s) => {
                return Err(format!(
                    "helper refused the upload: {} ({:?})",
                    s.message(),
                    s.code()
                ));
            }
        }
    }
}
