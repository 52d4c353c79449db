//! The helper's transport: `HelperService` over mTLS in front of the one
//! [`driver`](crate::driver), and where a helper's messages go. Receipts and
//! aggregate shares answer the RPC that caused them; reports go to the
//! coordinator (re-sent, byte for byte, after a restart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealroom_protocol::action::{Action, Message, SecretBytes};
use sealroom_protocol::descriptor::EngineRef;
use sealroom_protocol::helper::{Helper, HelperConfig, UPLOAD_OVERHEAD};
use sealroom_protocol::machine::{
    EngineOutcome, EngineResult, Inbound, Input, Refusal, RefusalCode, Step,
};
use sealroom_protocol::{PartyId, pb};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Role;
use crate::context::{NodeContext, now};
use crate::driver::{self, Driver, Requests, Router};
use crate::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use crate::grpc::pb::helper_service_server::{HelperService, HelperServiceServer};
use crate::grpc::pb::{AnswerChunk, Empty, UploadChunk};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::shutdown::Shutdown;
use crate::tasks::TaskCatalog;
use crate::{NodeError, tls};

/// A running helper.
#[derive(Debug)]
pub struct HelperHandle {
    /// The gRPC address it serves on.
    pub addr: SocketAddr,
    /// Ends with the server (after shutdown, or when the helper cannot go on).
    pub join: tokio::task::JoinHandle<Result<(), NodeError>>,
    /// The MPC engine, in a federation of exactly three helpers.
    pub engine: Option<crate::engine::Engine>,
}

/// Starts a helper on `listener`, restoring its state from the store.
pub async fn spawn(
    ctx: NodeContext,
    listener: TcpListener,
    programs: TaskCatalog,
    shutdown: Shutdown,
) -> Result<HelperHandle, NodeError> {
    let config = helper_config(&ctx)?;
    crate::audit_keys::check_chain(&ctx).await?;
    crate::audit_keys::register_key(&ctx).await?;
    let state = ctx.store.helper_restore_state().await?;
    let restored_rounds = state.rounds.len();
    let helper = Helper::restore(config, state, now())?;
    ctx.metrics.share_memory(helper.bytes_in_memory());
    let left_out = helper.left_out();
    let restored_rounds = restored_rounds - left_out;
    tracing::info!(name = %ctx.name, restored_rounds, backend = ctx.store.backend(), "helper state restored");
    if left_out > 0 {
        tracing::warn!(
            left_out,
            "stored rounds signed by a coordinator key this federation no longer trusts (retired \
             after a rotation) were left out: they take no more input and are never answered"
        );
    }

    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(driver::REQUEST_QUEUE);
    let router = HelperRouter {
        ctx: ctx.clone(),
        shutdown: shutdown.clone(),
    };
    // Reports sent before a restart go out again: the same signed bytes (the
    // coordinator takes a repeat as no news, and nothing is logged twice).
    for (round, report) in helper.outstanding_reports(now()) {
        tracing::info!(round, "re-sending the report of an unanswered round");
        router.send_report(report);
    }
    let actor = tokio::spawn(driver::run(
        Driver::new(ctx.clone(), helper),
        router,
        rx,
        shutdown.clone(),
    ));
    // The engine's protocols are for three helpers; other federations serve
    // no EngineService (a call gets UNIMPLEMENTED) and run no engine rounds.
    let engine = match crate::engine::Engine::new(&ctx) {
        Ok(engine) => Some(engine),
        Err(crate::engine::EngineError::HelperCount(_)) => None,
        Err(e) => return Err(NodeError::Config(e.to_string())),
    };
    let service = HelperSvc {
        ctx: ctx.clone(),
        tx,
        engine: engine.clone(),
        programs: Arc::new(programs),
    };
    let mut routes = tonic::service::Routes::new(
        HelperServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    if let Some(engine) = &engine {
        routes = routes.add_service(engine.service());
    }
    let join = crate::server::serve(&ctx, listener, routes, actor, shutdown)?;
    Ok(HelperHandle { addr, join, engine })
}

/// The helper state machine's configuration, from the node's context (also
/// what `sealroom replay` rebuilds it from).
pub fn helper_config(ctx: &NodeContext) -> Result<HelperConfig, NodeError> {
    Ok(HelperConfig {
        me: ctx.me,
        coordinator: ctx.directory.coordinator.id,
        signer: ctx.require_signer()?,
        trust: ctx.directory.trust(),
    })
}

type HelperRequests = Requests<Helper, ()>;

/// Where a helper's messages go.
struct HelperRouter {
    ctx: NodeContext,
    shutdown: Shutdown,
}

impl Router<Helper> for HelperRouter {
    type Tag = ();

    fn route(&mut self, _driver: &Driver<Helper>, step: &Step, (): ()) -> Vec<(Input, ())> {
        for action in &step.actions {
            if let Action::Send {
                message: Message::Report(env),
                ..
            } = action
            {
                self.send_report(env.clone());
            }
            // Receipts and aggregate shares answer the RPC that caused them.
        }
        Vec::new()
    }
}

impl HelperRouter {
    /// Sends a report to the coordinator, retrying transient failures for up
    /// to a minute.
    fn send_report(&self, env: pb::SignedEnvelope) {
        let channel = tls::channel_to(&self.ctx, &self.ctx.directory.coordinator);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
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
                            tonic::Code::Unavailable
                                | tonic::Code::DeadlineExceeded
                                | tonic::Code::Unknown
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
        });
    }
}

struct HelperSvc {
    ctx: NodeContext,
    tx: HelperRequests,
    engine: Option<crate::engine::Engine>,
    programs: Arc<TaskCatalog>,
}

impl HelperSvc {
    async fn feed(&self, from: PartyId, msg: Inbound) -> Result<Step, Status> {
        self.feed_counted(from, msg, |_| ()).await
    }

    /// Like `feed`, telling `refused` the refusal's code first (for metrics).
    async fn feed_counted(
        &self,
        from: PartyId,
        msg: Inbound,
        refused: impl FnOnce(&Refusal),
    ) -> Result<Step, Status> {
        match driver::ask(&self.tx, Input::Inbound { from, msg }, ()).await? {
            Ok(step) => Ok(step),
            Err(refusal) => {
                refused(&refusal);
                Err(status_of(&refusal))
            }
        }
    }
}

/// Refusals that mean a share itself did not verify (counted in
/// `sealroom_share_verification_failures_total`).
const VERIFICATION_FAILURES: [RefusalCode; 5] = [
    RefusalCode::Malformed,
    RefusalCode::NonCanonical,
    RefusalCode::ShareLength,
    RefusalCode::WrongShareKind,
    RefusalCode::RoundMismatch,
];

#[tonic::async_trait]
impl HelperService for HelperSvc {
    async fn descriptor(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Empty>, Status> {
        let party = self
            .ctx
            .authorize(&request, "Descriptor", &[Role::Coordinator])?;
        let step = self
            .feed(party.id, Inbound::Descriptor(request.into_inner()))
            .await?;
        if let Some(round) = step.round {
            tracing::info!(round, "round accepted");
        }
        Ok(Response::new(Empty {}))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<pb::SignedEnvelope>, Status> {
        let party = self.ctx.authorize(&request, "Upload", &[Role::Client])?;
        let from = party.id;
        // The exact bound on what this client owes this helper in an open
        // round; with none, no more than a seed upload is read before the
        // state machine is asked.
        let expected =
            driver::inspect(&self.tx, move |d| d.machine().expected_upload_bytes(&from)).await?;
        let limit = expected.unwrap_or(UPLOAD_OVERHEAD);
        let mut stream = request.into_inner();
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            // Sized once, at the first chunk, from the verified round (never
            // from the peer): a growing buffer would hold up to twice the
            // upload while it reallocates, and leave unwiped copies of the
            // share behind.
            if bytes.capacity() == 0 {
                bytes.reserve_exact(limit);
            }
            if let Err(status) = grpc::append(&mut bytes, &chunk.data, limit) {
                self.ctx.metrics.upload(false, "too_large");
                return Err(if expected.is_none() {
                    Status::unavailable("round not yet known to this helper; retry")
                } else {
                    status
                });
            }
        }
        self.ctx.metrics.bytes("in", "upload", bytes.len());
        let upload = SecretBytes::new(std::mem::take(&mut *bytes));
        let metrics = self.ctx.metrics.clone();
        let step = self
            .feed_counted(from, Inbound::Upload(upload), |refusal| {
                metrics.upload(false, refusal.code_name());
                if VERIFICATION_FAILURES.contains(&refusal.code) {
                    metrics.verification_failure("helper", refusal.code_name());
                }
            })
            .await?;
        self.ctx.metrics.upload(true, "");
        reply(&step, from, |m| match m {
            Message::Receipt(env) => Some(env.clone()),
            _ => None,
        })
        .map(Response::new)
        .ok_or_else(|| Status::internal("upload accepted without a receipt"))
    }

    type InclusionStream = tokio_stream::Iter<std::vec::IntoIter<Result<AnswerChunk, Status>>>;

    async fn inclusion(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<Self::InclusionStream>, Status> {
        let party = self
            .ctx
            .authorize(&request, "Inclusion", &[Role::Coordinator])?;
        let started = Instant::now();
        let mut step = self
            .feed(party.id, Inbound::InclusionSet(request.into_inner()))
            .await?;
        if let Some(job) = step.actions.iter().find_map(|a| match a {
            Action::Engine(job) => Some(job.clone()),
            _ => None,
        }) {
            let result = self.run_engine(&job).await?;
            step = self.feed_engine(result).await?;
        }
        let answer = reply(&step, party.id, |m| match m {
            Message::AggregateShare(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .ok_or_else(|| Status::internal("no aggregate share produced"))?;
        self.ctx.metrics.answer_latency(started.elapsed());
        self.ctx
            .metrics
            .bytes("out", "aggregate_share", answer.len());
        let chunks: Vec<Result<AnswerChunk, Status>> = grpc::split(answer.expose())
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
        let round = crate::directory::verify_outcome(&self.ctx.live_directory(), &envelope)
            .map_err(|e| Status::invalid_argument(format!("published record refused: {e}")))?;
        tracing::info!(
            round = round.round_id,
            kind = round.kind,
            "round outcome published"
        );
        Ok(Response::new(Empty {}))
    }
}

impl HelperSvc {
    /// Runs an engine round's program (the state machine recorded the
    /// inclusion set as this round's one answer first). A program this
    /// helper cannot build, or an engine that cannot run, is still answered:
    /// as a signed failure, so the round aborts with the reason instead of
    /// waiting for its deadline.
    async fn run_engine(
        &self,
        job: &sealroom_protocol::action::EngineJob,
    ) -> Result<EngineResult, Status> {
        let d = &job.descriptor;
        let round = d.round_id();
        let failed = |code: &str, detail: String| EngineResult {
            round,
            program_hash: [0; 32],
            outcome: EngineOutcome::Failed {
                code: code.into(),
                detail,
                excluded: Vec::new(),
            },
        };
        let Some(engine) = &self.engine else {
            return Ok(failed(
                "no_engine",
                "this helper runs no MPC engine (it needs a federation of exactly three helpers)"
                    .into(),
            ));
        };
        let engine_ref = d.engine().cloned().unwrap_or(EngineRef {
            program: String::new(),
            version: 0,
        });
        let Some(builder) = self.programs.program(&engine_ref) else {
            return Ok(failed(
                "unknown_program",
                format!(
                    "this helper has no engine program {:?} version {}",
                    engine_ref.program, engine_ref.version
                ),
            ));
        };
        let keys = self.ctx.live_directory().keys();
        let program = match builder.program(d, &keys, job.uploads.len()) {
            Ok(p) => p,
            Err(e) => return Ok(failed("program_refused", e)),
        };
        tracing::info!(
            round,
            program = %engine_ref.program,
            clients = job.uploads.len(),
            "running the round's engine program"
        );
        match engine.run_round(job, program).await {
            Ok(result) => {
                if let EngineOutcome::Failed { code, .. } = &result.outcome {
                    tracing::warn!(round, code = %code, "the round's engine program released nothing");
                }
                Ok(result)
            }
            Err(e) => {
                tracing::error!(round, error = %e, "the engine could not run the round's program");
                Ok(failed("engine_error", e.to_string()))
            }
        }
    }

    async fn feed_engine(&self, result: EngineResult) -> Result<Step, Status> {
        match driver::ask(&self.tx, Input::Engine(result), ()).await? {
            Ok(step) => Ok(step),
            Err(refusal) => Err(status_of(&refusal)),
        }
    }
}

/// The message of `step` addressed to `to` that `pick` selects.
fn reply<T>(step: &Step, to: PartyId, pick: impl Fn(&Message) -> Option<T>) -> Option<T> {
    step.actions.iter().find_map(|a| match a {
        Action::Send {
            to: recipient,
            message,
            ..
        } if *recipient == to => pick(message),
        _ => None,
    })
}

/// The gRPC status of a refusal.
pub fn status_of(refusal: &Refusal) -> Status {
    let message = refusal.to_string();
    match refusal.code {
        RefusalCode::RoundNotYetKnown => Status::unavailable(message),
        RefusalCode::Malformed
        | RefusalCode::ShareLength
        | RefusalCode::NonCanonical
        | RefusalCode::WrongShareKind
        | RefusalCode::InclusionInvalid
        | RefusalCode::RoundMismatch
        | RefusalCode::InputInvalid => Status::invalid_argument(message),
        RefusalCode::NotAParticipant
        | RefusalCode::WrongSender
        | RefusalCode::UntrustedKey
        | RefusalCode::BadSignature
        | RefusalCode::DescriptorInvalid
        | RefusalCode::UnknownHelper => Status::permission_denied(message),
        RefusalCode::Duplicate | RefusalCode::AlreadyAnswered | RefusalCode::Conflicting => {
            Status::already_exists(message)
        }
        RefusalCode::RoundRunning => Status::failed_precondition(message),
        RefusalCode::None
        | RefusalCode::Replayed
        | RefusalCode::UnknownRound
        | RefusalCode::Late
        | RefusalCode::NotReported
        | RefusalCode::NotSelected
        | RefusalCode::TooLate
        | RefusalCode::Unexpected
        | RefusalCode::SharingFailed
        | RefusalCode::ReceiptMismatch
        | RefusalCode::RoundRefused
        | RefusalCode::SigningFailed
        | RefusalCode::NoRound => Status::failed_precondition(message),
    }
}
