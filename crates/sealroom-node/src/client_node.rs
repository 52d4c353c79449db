//! The client runtime: watches the coordinator for descriptors, computes its
//! input where its data lives, shares it, and uploads each share straight to
//! its helper over mTLS (the coordinator never relays shares).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rand::rngs::SysRng;
use sealroom_core::Seed;
use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::client::{Client, ClientConfig};
use sealroom_protocol::pb::archived_step::Input;
use sealroom_protocol::{PartyId, pb};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::Request;
use tonic::transport::Channel;

use crate::context::{NodeContext, instant_of, now};
use crate::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use crate::grpc::pb::helper_service_client::HelperServiceClient;
use crate::grpc::pb::{RoundEvent, UploadChunk, WatchRequest, round_event};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::record::{self, Step};
use crate::shutdown::Shutdown;
use crate::tasks::InputSource;
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
        /// Values clipped by quantization.
        clipped: usize,
    },
    /// This client did not take part in a round, and why.
    Skipped {
        /// Round id (0 if the descriptor did not verify).
        round_id: u64,
        /// Why.
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
    /// Ends at shutdown.
    pub join: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// Starts a client that contributes `input` to every round it is invited to.
/// Events are sent to `events` if given.
pub async fn spawn(
    ctx: NodeContext,
    input: Arc<dyn InputSource>,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    shutdown: Shutdown,
) -> Result<ClientHandle, NodeError> {
    let last_round = ctx.store.client_last_round().await?;
    let config = client_config(&ctx);
    let coordinator = tls::channel(
        &ctx.tls,
        ctx.directory
            .coordinator
            .endpoint
            .as_deref()
            .unwrap_or_default(),
    )?;
    let helpers = ctx
        .directory
        .helpers
        .iter()
        .map(|h| {
            let ch = tls::channel(&ctx.tls, h.endpoint.as_deref().unwrap_or_default())?;
            Ok((h.id, ch))
        })
        .collect::<Result<BTreeMap<PartyId, Channel>, NodeError>>()?;
    let mut runner = Runner {
        ctx,
        client: Client::new(config, last_round),
        input,
        helpers,
        events,
    };
    let join = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let mut watch = CoordinatorServiceClient::new(coordinator.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let after = runner.client.last_round().unwrap_or(0);
            let stream = tokio::select! {
                s = watch.watch(Request::new(WatchRequest { after_round: after })) => s,
                () = shutdown.wait() => return Ok(()),
            };
            match stream {
                Ok(response) => {
                    backoff = Duration::from_millis(100);
                    let mut stream = response.into_inner();
                    loop {
                        let next = tokio::select! {
                            n = stream.next() => n,
                            () = shutdown.wait() => return Ok(()),
                        };
                        match next {
                            Some(Ok(event)) => runner.on_event(event).await?,
                            Some(Err(s)) => {
                                tracing::info!(code = ?s.code(), "watch stream ended");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(s) => {
                    tracing::info!(code = ?s.code(), message = s.message(), "coordinator not reachable; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.wait() => return Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Ok(ClientHandle { join })
}

/// The client state machine's configuration, from the node's context (also
/// what `sealroom replay` rebuilds it from).
pub fn client_config(ctx: &NodeContext) -> ClientConfig {
    ClientConfig {
        me: ctx.me,
        trust: ctx.directory.trust(),
        helper_keys: ctx.directory.helper_keys(),
    }
}

/// An input vector as archived: packed little-endian f64.
pub fn pack_input(input: &[f64]) -> Vec<u8> {
    input.iter().flat_map(|v| v.to_le_bytes()).collect()
}

struct Runner {
    ctx: NodeContext,
    client: Client,
    input: Arc<dyn InputSource>,
    helpers: BTreeMap<PartyId, Channel>,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
}

impl Runner {
    fn emit(&self, event: ClientEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    async fn on_event(&mut self, event: RoundEvent) -> Result<(), NodeError> {
        match event.event {
            Some(round_event::Event::Descriptor(env)) => self.participate(env).await,
            Some(round_event::Event::Result(env)) | Some(round_event::Event::Abort(env)) => {
                let kind = if env.label.ends_with("result") {
                    "result"
                } else {
                    "abort"
                };
                let round_id = pb::RoundResult::decode(env.body.as_slice())
                    .map(|r| r.round_id)
                    .unwrap_or(0);
                tracing::info!(round = round_id, kind, "round outcome published");
                self.emit(ClientEvent::Outcome {
                    round_id,
                    kind: kind.into(),
                });
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn participate(&mut self, env: pb::SignedEnvelope) -> Result<(), NodeError> {
        let descriptor = match self.client.check_descriptor(&env) {
            Ok(d) => d,
            Err(e) => {
                // Replays of a round already taken part in are normal on reconnect.
                tracing::info!(error = %e, "descriptor not taken");
                self.emit(ClientEvent::Skipped {
                    round_id: 0,
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        let round_id = descriptor.round_id();
        let started = Instant::now();
        // Computing the input may train a model or query a database: it runs
        // on a blocking thread (where a source may also `block_on` async I/O).
        let source = self.input.clone();
        let task_descriptor = descriptor.clone();
        let computed = tokio::task::spawn_blocking(move || source.input(&task_descriptor))
            .await
            .unwrap_or_else(|e| Err(format!("the input computation failed: {e}")));
        let input = match computed {
            Ok(v) => v,
            Err(reason) => {
                tracing::warn!(round = round_id, %reason, "no input for this round; sitting it out");
                self.ctx
                    .metrics
                    .round_finished("client", "skipped", "no_input", started.elapsed());
                self.emit(ClientEvent::Skipped { round_id, reason });
                return Ok(());
            }
        };
        let mut seed = [0u8; 32];
        rand::TryRng::try_fill_bytes(&mut SysRng, &mut seed)
            .map_err(|e| NodeError::Randomness(e.to_string()))?;
        let randomness = Seed::from_bytes(seed);
        let at = now();
        let step = Step::new(
            round_id,
            at,
            Input::Participate(pb::ArchivedParticipation {
                descriptor: Some(env.clone()),
                input: pack_input(&input),
                seed: seed.to_vec(),
            }),
        );
        zeroize::Zeroize::zeroize(&mut seed);
        let span = tracing::info_span!("client.participate", round = round_id, role = "client");
        let participated =
            span.in_scope(|| self.client.participate(at, &env, &input, None, &randomness));
        let (mut round, actions) = match participated {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(round = round_id, error = %e, "cannot take part");
                record::record(&self.ctx, step.refused(&e)).await?;
                self.emit(ClientEvent::Skipped {
                    round_id,
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        let step = step.sent(&actions, false);
        let deadline = instant_of(descriptor.upload_deadline());
        let mut uploads = Vec::new();
        let persists: Vec<&sealroom_protocol::action::Persist> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist(p) => Some(p),
                Action::Send { .. } => None,
            })
            .collect();
        if let [persist] = persists.as_slice() {
            record::apply_and_record(&self.ctx, persist, step).await?;
        } else {
            for p in persists {
                self.ctx.store.apply(p).await?;
            }
            record::record(&self.ctx, step).await?;
        }
        for action in actions {
            if let Action::Send {
                to,
                message: Message::Upload(bytes),
            } = action
            {
                uploads.push((to, bytes));
            }
        }
        let total: usize = uploads.iter().map(|(_, b)| b.len()).sum();
        let tasks: Vec<_> = uploads
            .into_iter()
            .map(|(to, bytes)| {
                let channel = self.helpers.get(&to).cloned();
                let metrics = self.ctx.metrics.clone();
                tokio::spawn(async move {
                    let channel =
                        channel.ok_or_else(|| "helper not in the federation".to_string())?;
                    let receipt = upload(channel, &bytes, deadline).await?;
                    metrics.bytes("out", "upload", bytes.len());
                    Ok::<_, String>((to, receipt))
                })
            })
            .collect();
        let mut failure = None;
        for task in tasks {
            match task.await {
                Ok(Ok((from, receipt))) => {
                    let step = Step::new(
                        round_id,
                        now(),
                        Input::Receipt(pb::ArchivedMessage {
                            from: from.0.to_vec(),
                            bytes: receipt.encode_to_vec(),
                            ..Default::default()
                        }),
                    );
                    let step = match round.on_receipt(from, &receipt) {
                        Ok(()) => step,
                        Err(e) => {
                            self.ctx
                                .metrics
                                .verification_failure("client", "receipt_invalid");
                            failure = Some(e.to_string());
                            step.refused(&e)
                        }
                    };
                    record::record(&self.ctx, step).await?;
                }
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(e.to_string()),
            }
        }
        record::end_round(&self.ctx, round_id).await?;
        self.ctx.metrics.round_volume("client", None, total);
        match failure {
            None if round.all_receipts() => {
                tracing::info!(
                    round = round_id,
                    bytes = total,
                    clipped = round.clipped(),
                    "shares uploaded; every helper signed a receipt"
                );
                self.ctx
                    .metrics
                    .round_finished("client", "uploaded", "", started.elapsed());
                self.emit(ClientEvent::Uploaded {
                    round_id,
                    bytes: total,
                    clipped: round.clipped(),
                });
            }
            failure => {
                let reason = failure.unwrap_or_else(|| "missing receipts".into());
                tracing::warn!(round = round_id, %reason, "upload incomplete");
                self.ctx
                    .metrics
                    .round_finished("client", "upload_failed", "", started.elapsed());
                self.emit(ClientEvent::UploadFailed { round_id, reason });
            }
        }
        Ok(())
    }
}

/// Streams one upload to a helper, retrying while the helper does not know
/// the round yet or is unreachable, until the upload deadline.
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
            Err(s)
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
                    && tokio::time::Instant::now() + backoff < deadline =>
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
