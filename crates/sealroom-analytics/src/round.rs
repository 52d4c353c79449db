//! One completed round of a task with parameters: what the training and
//! query drivers share.

use sealroom_node::grpc::pb::RoundOutcome;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::TaskRequest;
use serde::Serialize;

/// Why a round gave no result.
pub(crate) enum RoundFailure {
    /// The coordinator refused or failed the request.
    Request(String),
    /// The round aborted (its signed evidence is in the coordinator's store).
    Aborted {
        round_id: u64,
        reason: String,
        detail: String,
    },
}

/// Runs a round of `task` with `params` (as JSON) over `clients`, raising
/// `min_clients` when non-zero, and returns its outcome if it completed.
pub(crate) async fn completed_round<R: RoundRunner>(
    runner: &R,
    task: &str,
    params: &impl Serialize,
    clients: &[String],
    min_clients: usize,
) -> Result<RoundOutcome, RoundFailure> {
    let outcome = runner
        .run_round(&request(task, params, min_clients)?, clients.to_vec())
        .await
        .map_err(|s| RoundFailure::Request(s.message().to_string()))?;
    completed(outcome)
}

/// [`completed_round`] for an engine round, run again without the clients
/// whose uploads the helpers' sketch check excluded
/// ([`sealroom_node::local::run_round_excluding`]): `clients` loses them,
/// and they are returned (by name) with the outcome, whose client indices
/// refer to the shortened `clients`.
pub(crate) async fn completed_round_excluding<R: RoundRunner>(
    runner: &R,
    task: &str,
    params: &impl Serialize,
    clients: &mut Vec<String>,
) -> Result<(RoundOutcome, Vec<String>), RoundFailure> {
    let rerun = sealroom_node::local::run_round_excluding(
        runner,
        &request(task, params, 0)?,
        clients.clone(),
    )
    .await
    .map_err(|s| RoundFailure::Request(s.message().to_string()))?;
    *clients = rerun.invited;
    Ok((completed(rerun.outcome)?, rerun.left_out))
}

fn request(
    task: &str,
    params: &impl Serialize,
    min_clients: usize,
) -> Result<TaskRequest, RoundFailure> {
    Ok(TaskRequest {
        name: task.into(),
        vector_len: 0,
        params: serde_json::to_vec(params).map_err(|e| RoundFailure::Request(e.to_string()))?,
        min_clients,
    })
}

/// The outcome, if the round completed.
fn completed(outcome: RoundOutcome) -> Result<RoundOutcome, RoundFailure> {
    if outcome.status != "completed" {
        return Err(RoundFailure::Aborted {
            round_id: outcome.round_id,
            reason: outcome.reason,
            detail: outcome.detail,
        });
    }
    Ok(outcome)
}
