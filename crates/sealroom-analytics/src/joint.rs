//! Joint-analytics queries over the networked federation: the round task,
//! what a client computes for it, and the two-phase driver.
//!
//! A query runs as two secure-aggregation rounds of [`QUERY_TASK`], whose
//! signed descriptors carry the [`QuerySpec`] and the phase:
//!
//! 1. **counts** over the invited clients: per cell, whether the client has
//!    rows in it and its row count capped at `min_rows`
//!    ([`crate::query::local_counts`]); the driver decides which cells are
//!    released ([`crate::query::released_cells`]);
//! 2. **stats** over exactly the clients included in phase 1, with
//!    `min_clients` raised to their number, so a client that drops out
//!    aborts the round rather than shrinking a released cell below the
//!    threshold: only the released cells' statistics are computed and summed.
//!
//! Each client checks the spec's thresholds against its own floor before it
//! computes anything, and evaluates its part where its data lives (CSV,
//! SQLite or PostgreSQL) with the database's own SQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_node::grpc::pb::RoundOutcome;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::{InputSource, TaskCatalog, TaskDef, TaskPlanner, TaskShape};
use sealroom_protocol::VerifiedDescriptor;
use serde::{Deserialize, Serialize};

use crate::query::{
    DataSource, LocalTable, Policy, QueryError, QueryPlan, QueryResult, QuerySpec, counts_len,
    finish, local_counts, local_stats, plan, released_cells, stats_len, wire_spec,
};
use crate::round::{RoundFailure, completed_round};

/// The task of both query phases.
pub const QUERY_TASK: &str = "query";

/// Which phase a query round computes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
pub enum QueryPhase {
    /// Per-cell contributor flags and capped row counts.
    Counts,
    /// The released cells' statistics.
    Stats {
        /// The released cells, ascending.
        released: Vec<usize>,
        /// The counts round these cells were released by.
        counts_round: u64,
    },
}

/// Parameters of a [`QUERY_TASK`] round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// The query and its suppression policy.
    pub spec: QuerySpec,
    /// The phase.
    pub phase: QueryPhase,
}

fn parse_params(params: &[u8]) -> Result<(QueryParams, QueryPlan), String> {
    let p: QueryParams =
        serde_json::from_slice(params).map_err(|e| format!("malformed query parameters: {e}"))?;
    let plan = plan(&p.spec).map_err(|e| e.to_string())?;
    Ok((p, plan))
}

struct QueryPlanner;

impl TaskPlanner for QueryPlanner {
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        let (p, plan) = parse_params(params)?;
        let vector_len = match &p.phase {
            QueryPhase::Counts => counts_len(&plan),
            QueryPhase::Stats { released, .. } => {
                if released.is_empty() {
                    return Err("a stats round needs at least one released cell".into());
                }
                stats_len(&plan, released)
            }
        };
        Ok(TaskShape {
            vector_len: vector_len as u64,
            spec: wire_spec(),
        })
    }
}

/// Registers the query task with a coordinator's catalog.
pub fn register_tasks(catalog: &mut TaskCatalog) {
    catalog.register(TaskDef {
        name: QUERY_TASK.into(),
        default_len: 0,
        fixed_len: true,
        spec: None,
        wide: true,
        planner: Some(Arc::new(QueryPlanner)),
    });
}

/// A client's input for queries: its tables by name, and its own floor
/// under the suppression thresholds (a query asking for less is refused).
#[derive(Debug)]
pub struct QueryInput {
    tables: BTreeMap<String, DataSource>,
    floor: Policy,
}

impl QueryInput {
    /// A client holding `tables`, refusing queries whose thresholds are
    /// below `floor`.
    pub fn new(tables: BTreeMap<String, DataSource>, floor: Policy) -> Self {
        QueryInput { tables, floor }
    }

    async fn compute(&self, params: &[u8]) -> Result<Vec<f64>, String> {
        let (p, plan) = parse_params(params)?;
        if p.spec.min_rows < self.floor.min_rows || p.spec.min_clients < self.floor.min_clients {
            return Err(format!(
                "the query's suppression thresholds (min_rows {}, min_clients {}) are below this client's floor (min_rows {}, min_clients {})",
                p.spec.min_rows, p.spec.min_clients, self.floor.min_rows, self.floor.min_clients
            ));
        }
        let source = self
            .tables
            .get(plan.table())
            .ok_or_else(|| format!("this client has no table {:?}", plan.table()))?;
        let table = LocalTable::open(source).await.map_err(|e| e.to_string())?;
        let policy = Policy::new(p.spec.min_rows, p.spec.min_clients).map_err(|e| e.to_string())?;
        let wire = match &p.phase {
            QueryPhase::Counts => local_counts(&plan, &table, &policy).await,
            QueryPhase::Stats { released, .. } => local_stats(&plan, &table, released).await,
        }
        .map_err(|e| e.to_string())?;
        Ok(wire.expose_values().to_vec())
    }
}

impl InputSource for QueryInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, String> {
        if descriptor.task_name() != QUERY_TASK {
            return Err(format!("not a query task: {:?}", descriptor.task_name()));
        }
        // Called on a blocking thread of the node's runtime (see InputSource).
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "queries need the node's async runtime".to_string())?;
        handle.block_on(self.compute(descriptor.task_params()))
    }
}

/// A finished query as the driver saw it.
#[derive(Clone, Debug, Serialize)]
pub struct QueryRun {
    /// The released (and suppressed) result.
    pub result: QueryResult,
    /// The counts round.
    pub counts_round: u64,
    /// The stats round (`None` when no cell was released).
    pub stats_round: Option<u64>,
    /// The clients whose rows the result covers.
    pub included: Vec<String>,
    /// Latency of each round, ms.
    pub durations_ms: Vec<u64>,
}

/// Why a query did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryRunError {
    /// The query or its result was refused.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The coordinator refused the round (a message saying why).
    #[error("query refused: {0}")]
    Request(String),
    /// A round aborted (its signed evidence is in the coordinator's store).
    #[error("query round {round_id} aborted ({reason}): {detail}")]
    Aborted {
        /// Round id.
        round_id: u64,
        /// Abort reason.
        reason: String,
        /// Detail.
        detail: String,
    },
}

impl From<RoundFailure> for QueryRunError {
    fn from(f: RoundFailure) -> Self {
        match f {
            RoundFailure::Request(message) => QueryRunError::Request(message),
            RoundFailure::Aborted {
                round_id,
                reason,
                detail,
            } => QueryRunError::Aborted {
                round_id,
                reason,
                detail,
            },
        }
    }
}

async fn query_round<R: RoundRunner>(
    runner: &R,
    params: &QueryParams,
    clients: &[String],
    min_clients: usize,
) -> Result<RoundOutcome, QueryRunError> {
    Ok(completed_round(runner, QUERY_TASK, params, clients, min_clients).await?)
}

/// Runs `spec` over `clients` (by name, at least one): the counts round,
/// then the stats round over the clients phase 1 included.
pub async fn run_query<R: RoundRunner>(
    runner: &R,
    spec: &QuerySpec,
    clients: &[String],
) -> Result<QueryRun, QueryRunError> {
    if clients.is_empty() {
        return Err(QueryRunError::Request(
            "name the clients to ask (the included ones are reported by name)".into(),
        ));
    }
    let plan = plan(spec)?;
    let policy = Policy::new(spec.min_rows, spec.min_clients)?;
    let counts_params = QueryParams {
        spec: spec.clone(),
        phase: QueryPhase::Counts,
    };
    let counts = query_round(runner, &counts_params, clients, 0).await?;
    let included: Vec<String> = counts
        .included_clients
        .iter()
        .filter_map(|&i| clients.get(i as usize).cloned())
        .collect();
    if included.len() != counts.included_clients.len() {
        return Err(QueryRunError::Request(
            "the coordinator named an included client outside the invited list".into(),
        ));
    }
    let released = released_cells(&plan, &counts.values, &policy)?;
    if released.is_empty() {
        let result = finish(&plan, &counts.values, &released, &[], &policy)?;
        return Ok(QueryRun {
            result,
            counts_round: counts.round_id,
            stats_round: None,
            included,
            durations_ms: vec![counts.duration_ms],
        });
    }
    let stats_params = QueryParams {
        spec: spec.clone(),
        phase: QueryPhase::Stats {
            released: released.clone(),
            counts_round: counts.round_id,
        },
    };
    let stats = query_round(runner, &stats_params, &included, included.len()).await?;
    let result = finish(&plan, &counts.values, &released, &stats.values, &policy)?;
    Ok(QueryRun {
        result,
        counts_round: counts.round_id,
        stats_round: Some(stats.round_id),
        included,
        durations_ms: vec![counts.duration_ms, stats.duration_ms],
    })
}
