//! Deterministic replay (DESIGN.md §6): re-runs one node's state machine
//! for one round from that node's own round archive and checks that every
//! message it sent — descriptors, uploads, receipts, reports, inclusion sets,
//! aggregate shares, results, aborts — and every refusal is reproduced byte
//! for byte (compared by BLAKE3 digest).
//!
//! Replay reads only this node's archive: a helper replays with its own
//! shares, a client with its own input and seed, the coordinator with the
//! aggregate shares it received (whose combination is the round's released
//! aggregate). It never combines two helpers' shares of an input, so it
//! cannot reveal one.

use core::fmt;

use sealroom_protocol::client::Client;
use sealroom_protocol::coordinator::Coordinator;
use sealroom_protocol::helper::Helper;
use sealroom_protocol::machine::{Input, Machine, code_name};
use sealroom_protocol::{Millis, pb};

use crate::NodeError;
use crate::config::{NodeConfig, Role};
use crate::context::NodeContext;
use crate::metrics::Metrics;
use crate::record::{self, outputs};

/// What a replay found.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// Round replayed.
    pub round: u64,
    /// Role of the node.
    pub role: Role,
    /// Node name.
    pub name: String,
    /// Steps replayed.
    pub steps: usize,
    /// Outputs compared.
    pub outputs: usize,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
}

/// Where a replay first differed from the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Step index (from 0).
    pub step: usize,
    /// What the step consumed.
    pub input: &'static str,
    /// What differed.
    pub detail: String,
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.divergence {
            None => write!(
                f,
                "replay of round {} as {} {}: {} steps, {} outputs, identical",
                self.round,
                self.role.as_str(),
                self.name,
                self.steps,
                self.outputs
            ),
            Some(d) => write!(
                f,
                "replay of round {} as {} {} DIVERGES at step {} ({}): {}",
                self.round,
                self.role.as_str(),
                self.name,
                d.step,
                d.input,
                d.detail
            ),
        }
    }
}

/// Why a replay could not run (as opposed to running and diverging).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The node could not be opened.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Nothing is archived for the round.
    #[error(
        "no archive for round {round} in this node's store (archived rounds: {available}); archives older than the newest `archive_rounds` are pruned"
    )]
    NoArchive {
        /// Round asked for.
        round: u64,
        /// Rounds there are.
        available: String,
    },
    /// An archived step is unusable.
    #[error("archived step {step} of round {round}: {reason}")]
    BadStep {
        /// Round.
        round: u64,
        /// Step index.
        step: usize,
        /// What is wrong.
        reason: String,
    },
    /// This role keeps no archive.
    #[error("a node of role {0} runs no protocol state machine")]
    NoStateMachine(&'static str),
}

/// Opens `config`'s store and replays `round`.
pub async fn replay(config: &NodeConfig, round: u64) -> Result<ReplayReport, ReplayError> {
    let ctx = crate::local::open_context(config, Metrics::new()).await?;
    let result = replay_with(&ctx, round).await;
    ctx.store.close().await;
    result
}

/// Replays `round` with an open context.
pub async fn replay_with(ctx: &NodeContext, round: u64) -> Result<ReplayReport, ReplayError> {
    let steps = ctx
        .store
        .archived_steps(round)
        .await
        .map_err(NodeError::from)?;
    if steps.is_empty() {
        let rounds = ctx.store.archived_rounds().await.map_err(NodeError::from)?;
        let available = match (rounds.first(), rounds.last()) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "none".into(),
        };
        return Err(ReplayError::NoArchive { round, available });
    }
    let steps: Vec<pb::ArchivedStep> = steps.into_iter().map(|(_, s)| s).collect();
    match ctx.role {
        Role::Coordinator => {
            let config = crate::coordinator_node::coordinator_config(ctx)?;
            run(ctx, round, &steps, Coordinator::new(config, round)).await
        }
        Role::Helper => {
            let config = crate::helper_node::helper_config(ctx)?;
            run(ctx, round, &steps, Helper::new(config)).await
        }
        Role::Client => {
            let config = crate::client_node::client_config(ctx);
            run(ctx, round, &steps, Client::new(config, None)).await
        }
        Role::Admin => Err(ReplayError::NoStateMachine(ctx.role.as_str())),
    }
}

/// Feeds every archived input of `round` to a fresh `machine` and compares
/// what it sends with what was archived. Refused inputs changed nothing
/// and were recorded by digest only: they are skipped.
async fn run<M: Machine>(
    ctx: &NodeContext,
    round: u64,
    steps: &[pb::ArchivedStep],
    mut machine: M,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport {
        round,
        role: ctx.role,
        name: ctx.name.clone(),
        steps: 0,
        outputs: 0,
        divergence: None,
    };
    for (index, step) in steps.iter().enumerate() {
        let bad = |reason: String| ReplayError::BadStep {
            round,
            step: index,
            reason,
        };
        // A helper's accepted upload is read from its stored uploads.
        let stored = match &step.input {
            Some(pb::archived_step::Input::Inbound(m)) if m.stored => ctx
                .store
                .helper_upload(round, m.client_index)
                .await
                .map_err(NodeError::from)?,
            _ => None,
        };
        let Some(input) = record::input_of(step, stored).map_err(|e| bad(e.0))? else {
            continue;
        };
        let name = input_name(&input);
        let replayed = match machine.handle(Millis(step.now_ms), input) {
            Ok(s) => outputs(&s.actions, round),
            Err(refusal) => {
                report.divergence = Some(Divergence {
                    step: index,
                    input: name,
                    detail: format!(
                        "recorded accepted, replay refused ({}: {refusal})",
                        code_name(refusal.code)
                    ),
                });
                break;
            }
        };
        report.steps += 1;
        report.outputs += step.outputs.len();
        if let Some(detail) = compare(&step.outputs, &replayed) {
            report.divergence = Some(Divergence {
                step: index,
                input: name,
                detail,
            });
            break;
        }
    }
    Ok(report)
}

fn input_name(input: &Input) -> &'static str {
    input.name()
}

fn short(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn describe(o: &pb::ArchivedOutput) -> String {
    format!(
        "{} to {}… (digest {}…)",
        record::kind_name(o.kind),
        short(&o.to),
        short(&o.digest)
    )
}

/// The first difference between what was archived and what the replay
/// produced, if any.
fn compare(archived: &[pb::ArchivedOutput], replayed: &[pb::ArchivedOutput]) -> Option<String> {
    for (i, pair) in archived.iter().zip(replayed).enumerate() {
        if pair.0 != pair.1 {
            return Some(format!(
                "output {i}: recorded {}, replayed {}",
                describe(pair.0),
                describe(pair.1)
            ));
        }
    }
    if archived.len() != replayed.len() {
        return Some(format!(
            "recorded {} outputs, replay produced {}",
            archived.len(),
            replayed.len()
        ));
    }
    None
}
