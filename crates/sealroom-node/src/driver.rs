//! The one driver every role runs (STYLE.md §2): it feeds a role's state
//! machine one input at a time, makes each accepted step durable — the
//! step's state, its replay-archive row and its audit entries in one
//! transaction — *before* anything the step sent leaves, records refusals
//! (by digest, under the node's own round, rate-limited, never fatally),
//! prunes by the node's own rounds, and hands the step to the role's
//! [`Router`], the only role-specific part: where messages go.
//!
//! [`run`] is the actor loop around it: requests from the RPC services and
//! the router's own tasks, the machine's timer, and shutdown. Inputs a role
//! marks batchable (a helper's uploads) that are already waiting when the
//! loop takes one are fed together and their steps made durable in one
//! transaction — a group commit: one fsync for many uploads — and only then
//! is anything they produced sent or answered. If the driver
//! cannot make a step durable (or the signer fails), the loop ends with the
//! error and the node's server stops with it: a node never keeps serving
//! "shutting down" while alive, and a supervisor restarts it.

use std::collections::BTreeMap;
use std::time::Instant;

use sealroom_protocol::action::Action;
use sealroom_protocol::machine::{Input, Machine, Refusal, RefusalCode, Step};
use sealroom_protocol::{Millis, Role};
use sealroom_store::{ArchiveWrite, StepWrite};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::NodeError;
use crate::context::{KeyUpdate, NodeContext, instant_of, now};
use crate::record::{self, Archived};
use crate::shutdown::Shutdown;

/// Refusals archived per round at most (more are counted, not recorded).
pub const MAX_RECORDED_REFUSALS_PER_ROUND: u32 = 64;

/// Batchable inputs fed and committed together at most (a group commit).
pub const MAX_BATCH: usize = 64;

/// A role's state machine, as the node runs it.
pub trait NodeMachine: Machine + Send + 'static {
    /// The role.
    const ROLE: Role;

    /// Forgets all but the newest `keep` rounds held in memory.
    fn prune(&mut self, _keep: usize) {}

    /// Whether `input` may be fed in a batch with other waiting batchable
    /// inputs and committed with them in one transaction: only inputs
    /// whose steps the router routes from the step alone, never from the
    /// machine's state (which is, by then, that after the whole batch).
    fn batchable(_input: &Input) -> bool {
        false
    }

    /// Bytes of secret material the machine holds in memory, for the
    /// helper's `sealroom_helper_share_memory_bytes` gauge (`None` for the
    /// other roles).
    fn memory_bytes(&self) -> Option<usize> {
        None
    }

    /// Takes the keys of a reloaded federation (a coordinator's or a
    /// helper's key rotation or retirement; on the rotating node itself, its
    /// new signer).
    fn rekey(&mut self, update: &KeyUpdate);
}

impl NodeMachine for sealroom_protocol::helper::Helper {
    const ROLE: Role = Role::Helper;
    fn prune(&mut self, keep: usize) {
        sealroom_protocol::helper::Helper::prune(self, keep);
    }
    fn memory_bytes(&self) -> Option<usize> {
        Some(self.bytes_in_memory())
    }
    /// Uploads: their receipts answer their RPCs, and a report goes to the
    /// coordinator as the step says.
    fn batchable(input: &Input) -> bool {
        matches!(
            input,
            Input::Inbound {
                msg: sealroom_protocol::machine::Inbound::Upload(_),
                ..
            }
        )
    }
    fn rekey(&mut self, update: &KeyUpdate) {
        self.set_trust(update.directory.trust());
        if let Some((signer, _)) = &update.signers {
            self.set_signer(signer.clone());
        }
    }
}

impl NodeMachine for sealroom_protocol::coordinator::Coordinator {
    const ROLE: Role = Role::Coordinator;
    fn rekey(&mut self, update: &KeyUpdate) {
        self.set_helper_keys(&update.directory.helper_keys());
        if let Some((signer, _)) = &update.signers {
            self.set_signer(signer.clone(), update.directory.coordinator.key_epoch);
        }
    }
}

impl NodeMachine for sealroom_protocol::client::Client {
    const ROLE: Role = Role::Client;
    fn rekey(&mut self, update: &KeyUpdate) {
        self.set_trust(update.directory.trust());
        self.set_helper_keys(update.directory.helper_keys());
    }
}

/// An input the machine accepted, its step not yet durable.
struct Taken {
    archived: Archived,
    at: Millis,
    name: &'static str,
    span: tracing::Span,
    started: Instant,
}

/// Drives one state machine against the node's store.
pub struct Driver<M> {
    ctx: NodeContext,
    machine: M,
    /// Refusals recorded per round (to bound what a peer can make us write).
    recorded_refusals: BTreeMap<u64, u32>,
}

impl<M: NodeMachine> Driver<M> {
    /// A driver of `machine` for the node `ctx`.
    pub fn new(ctx: NodeContext, machine: M) -> Driver<M> {
        Driver {
            ctx,
            machine,
            recorded_refusals: BTreeMap::new(),
        }
    }

    /// The state machine (read only: inputs go through [`Driver::handle`]).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The node's context.
    pub fn ctx(&self) -> &NodeContext {
        &self.ctx
    }

    /// Applies a reload's new keys: the machine's trust in the coordinator's
    /// and helpers' keys (and, on the rotating node, its new signer), this
    /// driver's signer for audit checkpoints, and a key entry in the audit
    /// log — the node's new key signed by the one it replaces, or a peer
    /// list with the rotated party's keys.
    pub async fn apply_keys(&mut self, update: KeyUpdate) -> Result<(), NodeError> {
        self.ctx.directory = update.directory.clone();
        if let Some((signer, previous)) = &update.signers {
            self.ctx.signer = Some(signer.clone());
            self.ctx.previous_signer = Some(previous.clone());
        }
        self.machine.rekey(&update);
        crate::audit_keys::register_key(&self.ctx).await?;
        let rotating: Vec<&str> = std::iter::once(&update.directory.coordinator)
            .chain(&update.directory.helpers)
            .filter(|p| p.previous_key.is_some())
            .map(|p| p.name.as_str())
            .collect();
        tracing::info!(
            coordinator_key_epoch = update.directory.coordinator.key_epoch,
            own_key_switched = update.signers.is_some(),
            previous_keys_trusted_for = ?rotating,
            "keys reloaded"
        );
        Ok(())
    }

    /// When the machine's timer is next due.
    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.machine.next_deadline().map(instant_of)
    }

    /// Consumes one input. An accepted step is durable when this returns
    /// `Ok(Ok(step))`: its actions may then be executed (messages sent). A
    /// refusal is `Ok(Err(refusal))`. `Err` means the node cannot go on (its
    /// store or signer failed) and must stop.
    pub async fn handle(&mut self, input: Input) -> Result<Result<Step, Refusal>, NodeError> {
        self.handle_at(now(), input).await
    }

    /// [`Driver::handle`] at a given time (the node passes its wall clock;
    /// tests and fuzz targets a fixed one, so that the production path runs
    /// against fixed rounds).
    pub async fn handle_at(
        &mut self,
        at: Millis,
        input: Input,
    ) -> Result<Result<Step, Refusal>, NodeError> {
        let mut outcomes = self.handle_batch_at(vec![(at, input)]).await?;
        Ok(outcomes.pop().expect("one outcome per input"))
    }

    /// Feeds `inputs` in order, then makes every accepted step durable in
    /// one transaction (a group commit), in the same order: the outcome of
    /// each, as [`Driver::handle`] gives it. Nothing a step produced may
    /// leave before this returns. `Err` as for [`Driver::handle`]: none of
    /// the steps is then durable, and the node stops.
    pub async fn handle_batch(
        &mut self,
        inputs: Vec<Input>,
    ) -> Result<Vec<Result<Step, Refusal>>, NodeError> {
        let at = now();
        self.handle_batch_at(inputs.into_iter().map(|i| (at, i)).collect())
            .await
    }

    async fn handle_batch_at(
        &mut self,
        inputs: Vec<(Millis, Input)>,
    ) -> Result<Vec<Result<Step, Refusal>>, NodeError> {
        let role = M::ROLE.as_str();
        let mut taken = Vec::with_capacity(inputs.len());
        let mut outcomes = Vec::with_capacity(inputs.len());
        for (at, input) in inputs {
            let archived = record::archived_input(&input);
            let name = input.name();
            let span = step_span(M::ROLE, name);
            let started = Instant::now();
            match span.in_scope(|| self.machine.handle(at, input)) {
                Ok(step) => {
                    if let Some(round) = step.round {
                        span.record("round", round);
                    }
                    taken.push(Taken {
                        archived,
                        at,
                        name,
                        span,
                        started,
                    });
                    outcomes.push(Ok(step));
                }
                Err(refusal) if refusal.code == RefusalCode::SigningFailed => {
                    tracing::error!(error = %refusal, "the signer failed; stopping");
                    return Err(NodeError::Signer(refusal.to_string()));
                }
                Err(refusal) => {
                    self.ctx
                        .metrics
                        .step(role, name, refusal.code_name(), started.elapsed());
                    self.record_refusal(&archived, at, &refusal)
                        .instrument(span)
                        .await;
                    outcomes.push(Err(refusal));
                }
            }
        }
        if taken.is_empty() {
            return Ok(outcomes);
        }
        let steps: Vec<&Step> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let span = taken[0].span.clone();
        self.commit(&taken, &steps).instrument(span).await?;
        for t in &taken {
            self.ctx
                .metrics
                .step(role, t.name, "accepted", t.started.elapsed());
        }
        if let Some(bytes) = self.machine.memory_bytes() {
            self.ctx.metrics.share_memory(bytes);
        }
        Ok(outcomes)
    }

    /// Makes accepted steps durable in one transaction: per step and per
    /// round it touches, that round's state, archive row and audit entries.
    async fn commit(&mut self, taken: &[Taken], steps: &[&Step]) -> Result<(), NodeError> {
        let signer = self.ctx.audit_signer();
        let role = M::ROLE.as_str();
        // One archive row per step and round it touches (the writes borrow them).
        let archives: Vec<(&Step, u64, _)> = taken
            .iter()
            .zip(steps)
            .flat_map(|(t, &step)| {
                step.rounds().into_iter().map(move |round| {
                    let row =
                        record::archived_step(&t.archived, round, t.at.0, &step.actions, None);
                    (step, round, row)
                })
            })
            .collect();
        let writes: Vec<StepWrite> = archives
            .iter()
            .map(|(step, round, archive)| StepWrite {
                persists: step
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Persist(p) if p.round_id() == *round => Some(p),
                        _ => None,
                    })
                    .collect(),
                archive: Some(ArchiveWrite {
                    round_id: *round,
                    role,
                    step: archive,
                }),
                // Nodes that sign keep an audit log; clients keep none.
                audit: if signer.is_some() {
                    record::audit_records(&step.accepted, &step.actions, *round)
                } else {
                    Vec::new()
                },
                end_of_round: (step.ends_round && step.round == Some(*round)).then_some(*round),
            })
            .collect();
        if !writes.is_empty() {
            let appended = self
                .ctx
                .store
                .commit_steps(&writes, signer.as_ref())
                .await
                .inspect_err(|e| {
                    tracing::error!(error = %e, steps = steps.len(), "could not make a step durable; stopping");
                })?;
            self.ctx
                .metrics
                .audit_appended(appended.entries, appended.checkpoint_at_ms);
            self.ctx.metrics.commit_steps(steps.len());
        }
        if steps.iter().any(|s| s.ends_round) {
            self.prune().await;
        }
        Ok(())
    }

    /// Keeps the newest rounds only, by the node's own rounds: what the
    /// machine verified, never what a peer claimed.
    async fn prune(&mut self) {
        let keep = self.ctx.archive_rounds;
        self.machine.prune(keep);
        if let Err(e) = self.ctx.store.prune_archive(keep).await {
            tracing::warn!(error = %e, "pruning old round archives failed");
        }
        if M::ROLE == Role::Helper
            && let Err(e) = self.ctx.store.prune_helper_rounds(keep).await
        {
            tracing::warn!(error = %e, "pruning old helper rounds failed");
        }
        while self.recorded_refusals.len() > keep {
            self.recorded_refusals.pop_first();
        }
    }

    /// Records a refusal under the round it was matched to (never under a
    /// round a peer merely claimed), by the input's digest, at most
    /// [`MAX_RECORDED_REFUSALS_PER_ROUND`] times per round. Failing to record
    /// it is logged, never fatal.
    async fn record_refusal(&mut self, archived: &Archived, at: Millis, refusal: &Refusal) {
        self.ctx
            .metrics
            .refused(M::ROLE.as_str(), refusal.code_name());
        let Some(round) = refusal.round else {
            return;
        };
        let count = self.recorded_refusals.entry(round).or_default();
        if *count >= MAX_RECORDED_REFUSALS_PER_ROUND {
            return;
        }
        *count += 1;
        let step = record::archived_step(archived, round, at.0, &[], Some(refusal.code));
        let written = self
            .ctx
            .store
            .record(
                Some(ArchiveWrite {
                    round_id: round,
                    role: M::ROLE.as_str(),
                    step: &step,
                }),
                &[],
                None,
                None,
            )
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, round, "could not record a refusal in the archive");
        }
    }
}

/// The span of one step, named `<role>.<step>` (what operators see in
/// their traces), with the role and, once known, the round.
fn step_span(role: Role, input: &'static str) -> tracing::Span {
    macro_rules! span {
        ($name:literal, $role:literal) => {
            tracing::info_span!($name, role = $role, round = tracing::field::Empty)
        };
    }
    match (role, input) {
        (Role::Coordinator, "start") => span!("coordinator.start_round", "coordinator"),
        (Role::Coordinator, "report") => span!("coordinator.report", "coordinator"),
        (Role::Coordinator, "aggregate_share") => span!("coordinator.aggregate", "coordinator"),
        (Role::Coordinator, "sit_out") => span!("coordinator.sit_out", "coordinator"),
        (Role::Coordinator, _) => span!("coordinator.timer", "coordinator"),
        (Role::Helper, "descriptor") => span!("helper.descriptor", "helper"),
        (Role::Helper, "upload") => span!("helper.upload", "helper"),
        (Role::Helper, "inclusion_set") => span!("helper.inclusion", "helper"),
        (Role::Helper, _) => span!("helper.timer", "helper"),
        (Role::Client, "descriptor") => span!("client.descriptor", "client"),
        (Role::Client, "participate") => span!("client.participate", "client"),
        (Role::Client, "receipt") => span!("client.receipt", "client"),
        (Role::Client, _) => span!("client.step", "client"),
        (Role::Admin, _) => span!("admin.step", "admin"),
    }
}

/// Where a role's messages go: the role-specific half of the node.
pub trait Router<M: NodeMachine>: Send + 'static {
    /// What a request carries besides its input (a waiter, or nothing);
    /// timer steps carry the default.
    type Tag: Send + Default + 'static;

    /// Executes what an accepted, durable step produced (sends, input
    /// computations, an outcome). Returns inputs to feed the machine next
    /// (a follow-up round).
    fn route(&mut self, driver: &Driver<M>, step: &Step, tag: Self::Tag)
    -> Vec<(Input, Self::Tag)>;

    /// A refused input's tag (to answer whoever waits on it).
    fn refused(&mut self, _refusal: &Refusal, _tag: Self::Tag) {}
}

/// A request to the actor.
pub enum Request<M: NodeMachine, T> {
    /// Feed `input`; answer the step (or refusal) on `reply`.
    Input {
        /// The input.
        input: Input,
        /// Who wants the step back (an RPC waiting for its reply).
        reply: Option<oneshot::Sender<Result<Step, Refusal>>>,
        /// The router's extra.
        tag: T,
    },
    /// Look at the machine (an RPC sizing its buffer, a re-offer).
    Inspect(Inspector<M>),
}

/// A look at the driver, run on the actor's task.
pub type Inspector<M> = Box<dyn FnOnce(&Driver<M>) + Send>;

/// The sending half of an actor's request channel.
pub type Requests<M, T> = mpsc::Sender<Request<M, T>>;

/// Requests an actor holds at most before senders wait.
pub const REQUEST_QUEUE: usize = 1024;

/// Feeds `input` to the actor behind `tx` and waits for its step.
pub async fn ask<M: NodeMachine, T: Send + 'static>(
    tx: &Requests<M, T>,
    input: Input,
    tag: T,
) -> Result<Result<Step, Refusal>, tonic::Status> {
    let (reply, rx) = oneshot::channel();
    tx.send(Request::Input {
        input,
        reply: Some(reply),
        tag,
    })
    .await
    .map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())
}

/// Looks at the actor's machine.
pub async fn inspect<M: NodeMachine, T: Send + 'static, R: Send + 'static>(
    tx: &Requests<M, T>,
    look: impl FnOnce(&Driver<M>) -> R + Send + 'static,
) -> Result<R, tonic::Status> {
    let (reply, rx) = oneshot::channel();
    tx.send(Request::Inspect(Box::new(move |d| {
        let _ = reply.send(look(d));
    })))
    .await
    .map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())
}

fn stopped() -> tonic::Status {
    tonic::Status::unavailable("the node is stopping")
}

/// The actor loop: requests, the machine's timer, shutdown. Ends `Ok` at
/// shutdown, `Err` when the node cannot go on.
pub async fn run<M: NodeMachine, R: Router<M>>(
    mut driver: Driver<M>,
    mut router: R,
    mut rx: mpsc::Receiver<Request<M, R::Tag>>,
    shutdown: Shutdown,
) -> Result<(), NodeError> {
    let mut queue: std::collections::VecDeque<(Input, R::Tag)> = Default::default();
    let mut keys = driver.ctx.key_updates.subscribe();
    loop {
        if let Some((input, tag)) = queue.pop_front() {
            feed(&mut driver, &mut router, input, None, tag, &mut queue).await?;
            continue;
        }
        let deadline = driver.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = rx.recv() => match request {
                Some(Request::Input { input, reply, tag }) if M::batchable(&input) => {
                    // A group commit of what is already waiting.
                    let mut batch = vec![(input, reply, tag)];
                    let mut after = None;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Request::Input { input, reply, tag }) if M::batchable(&input) => {
                                batch.push((input, reply, tag));
                            }
                            Ok(other) => {
                                after = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    feed_batch(&mut driver, &mut router, batch, &mut queue).await?;
                    match after {
                        Some(Request::Input { input, reply, tag }) => {
                            feed(&mut driver, &mut router, input, reply, tag, &mut queue).await?;
                        }
                        Some(Request::Inspect(look)) => look(&driver),
                        None => {}
                    }
                }
                Some(Request::Input { input, reply, tag }) => {
                    feed(&mut driver, &mut router, input, reply, tag, &mut queue).await?;
                }
                Some(Request::Inspect(look)) => look(&driver),
                None => return Ok(()),
            },
            () = sleep => {
                let step = driver.handle(Input::Timer).await?;
                if let Ok(step) = step {
                    let next = router.route(&driver, &step, R::Tag::default());
                    queue.extend(next);
                }
            }
            changed = keys.changed() => {
                // The sender lives in the driver's own context: never closed.
                if changed.is_ok() {
                    let update = keys.borrow_and_update().clone();
                    if let Some(update) = update {
                        driver.apply_keys(update).await?;
                    }
                }
            }
            () = shutdown.wait() => return Ok(()),
        }
    }
}

type Waiter = Option<oneshot::Sender<Result<Step, Refusal>>>;

/// Feeds a batch of inputs, made durable together, then routes and answers
/// each step in order.
async fn feed_batch<M: NodeMachine, R: Router<M>>(
    driver: &mut Driver<M>,
    router: &mut R,
    batch: Vec<(Input, Waiter, R::Tag)>,
    queue: &mut std::collections::VecDeque<(Input, R::Tag)>,
) -> Result<(), NodeError> {
    let (inputs, waiters): (Vec<Input>, Vec<(Waiter, R::Tag)>) = batch
        .into_iter()
        .map(|(input, reply, tag)| (input, (reply, tag)))
        .unzip();
    let outcomes = driver.handle_batch(inputs).await?;
    for (outcome, (reply, tag)) in outcomes.into_iter().zip(waiters) {
        answer(driver, router, outcome, reply, tag, queue);
    }
    Ok(())
}

/// Routes an accepted step (or tells the router of a refusal) and answers
/// whoever waits for it.
fn answer<M: NodeMachine, R: Router<M>>(
    driver: &Driver<M>,
    router: &mut R,
    outcome: Result<Step, Refusal>,
    reply: Waiter,
    tag: R::Tag,
    queue: &mut std::collections::VecDeque<(Input, R::Tag)>,
) {
    match outcome {
        Ok(step) => {
            let next = router.route(driver, &step, tag);
            queue.extend(next);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(step));
            }
        }
        Err(refusal) => {
            router.refused(&refusal, tag);
            if let Some(reply) = reply {
                let _ = reply.send(Err(refusal));
            }
        }
    }
}

async fn feed<M: NodeMachine, R: Router<M>>(
    driver: &mut Driver<M>,
    router: &mut R,
    input: Input,
    reply: Waiter,
    tag: R::Tag,
    queue: &mut std::collections::VecDeque<(Input, R::Tag)>,
) -> Result<(), NodeError> {
    let outcome = driver.handle(input).await?;
    answer(driver, router, outcome, reply, tag, queue);
    Ok(())
}
