//! Joint-analytics queries over the networked federation: the round task,
//! what a client computes for it, and the two-phase driver.
//!
//! A query runs as two secure-aggregation rounds of [`QUERY_TASK`], whose
//! signed descriptors carry the [`QuerySpec`] and the phase:
//!
//! 1. **counts** over the invited clients: per cell, whether the client has
//!    rows in it and its row count capped at `min_rows`
//!    ([`crate::query::local_counts`]). This is the only phase an admin can
//!    ask for.
//! 2. **stats**, started by the *coordinator* itself when the counts round
//!    completes ([`QueryFollowup`]): it derives the released cells
//!    ([`crate::query::released_cells`]) from the counts sum it
//!    reconstructed, and invites exactly the clients included in phase 1,
//!    with `min_clients` raised to their number, so a client that drops out
//!    aborts the round rather than shrinking a released cell below the
//!    threshold. Only the released cells' statistics are computed and summed.
//!
//! The stats round's parameters carry the counts round's release evidence
//! (its signed descriptor, inclusion set and result, and the helpers'
//! signed answers: [`sealroom_protocol::evidence`]). Every client re-derives
//! the counts sum from the helpers' signatures and refuses a stats round
//! whose spec, cells, client list or `min_clients` differ from what that
//! counts round implies, so neither an admin nor the coordinator can choose
//! which cells are released (issue #12, finding 3). A consequence: the
//! clients of a stats round learn the counts round's aggregate (per cell,
//! the number of contributing clients and the capped row count), the same
//! thing the coordinator and the admin learn.
//!
//! A query whose spec carries `dp` runs instead as **one** engine round,
//! [`QueryPhase::Noised`]: every cell's statistics summed and noised inside
//! the MPC engine ([`crate::query::dp`]); each client refuses any other
//! phase of such a spec, checks the round's quantization and length against
//! the noise plan, and charges the query's `(ε, δ)` to its table's budget
//! ([`crate::budget`]) before it shares.
//!
//! Each client checks the spec's thresholds against its own floor before it
//! computes anything, and evaluates its part where its data lives (CSV,
//! SQLite or PostgreSQL) with the database's own SQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;
use sealroom_core::QuantSpec;
use sealroom_mpc::program::Program;
use sealroom_node::grpc::pb::RoundOutcome;
use sealroom_node::local::RoundRunner;
use sealroom_node::tasks::{
    EngineProgram, FinishedRound, Followup, InputError, InputSource, NextRound, TaskCatalog,
    TaskDef, TaskPlanner, TaskShape,
};
use sealroom_protocol::descriptor::MAX_TASK_PARAMS;
use sealroom_protocol::evidence::{self, FederationKeys, VerifiedRelease};
use sealroom_protocol::machine::unpack_outputs;
use sealroom_protocol::pb::SitOutReason;
use sealroom_protocol::{PartyId, VerifiedDescriptor};
use serde::{Deserialize, Serialize};

use crate::budget::{ClientPrivacy, PrivacyLedger};
use crate::query::dp::{
    DP_PROGRAM, DP_PROGRAM_VERSION, NoisePlan, dp_wire_spec, finish_noised, local_noised,
    noise_plan, noised_program,
};
use crate::query::{
    DataSource, LocalTable, ORDER_PROGRAM, ORDER_PROGRAM_VERSION, OrderParams, Policy, QueryError,
    QueryPlan, QueryResult, QuerySpec, counts_len, finish, finish_order, has_order, local_counts,
    local_order, local_stats, order_len, order_params, order_program, plan, released_cells,
    stats_len, wire_spec,
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
    /// The released cells' statistics. Only the coordinator starts this
    /// phase, from a counts round it ran; an admin asking for it is refused.
    Stats {
        /// The released cells, ascending.
        released: Vec<usize>,
        /// The counts round these cells were released by.
        counts_round: u64,
        /// That round's release evidence (an encoded
        /// `sealroom.v1.ReleaseEvidence`, base64): every client re-derives
        /// `released` from it.
        evidence: String,
    },
    /// The order statistics (MIN, MAX, MEDIAN, PERCENTILE_CONT) of the
    /// released cells: an engine round ([`ORDER_PROGRAM`]). Only the
    /// coordinator starts it, from the stats round it ran.
    Order {
        /// The released cells of the counts round, ascending.
        released: Vec<usize>,
        /// The stats round the order counts come from.
        stats_round: u64,
        /// That round's release evidence (an encoded
        /// `sealroom.v1.ReleaseEvidence`, base64): every client and helper
        /// re-derives `order` from it.
        evidence: String,
        /// The order round's parameters ([`OrderParams::to_bytes`], base64).
        order: String,
    },
    /// The only round of a differentially private query (its spec carries
    /// `dp`): every cell's counts and statistics, summed and noised inside
    /// the MPC engine ([`DP_PROGRAM`], see [`crate::query::dp`]). An admin
    /// asks for it directly.
    Noised,
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
    /// What an admin may ask for: the counts phase of an exact query, or
    /// the noised phase of a differentially private one.
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
        let (p, plan) = parse_params(params)?;
        match (&p.phase, &p.spec.dp) {
            (QueryPhase::Counts, None) => Ok(TaskShape {
                engine: None,
                vector_len: counts_len(&plan) as u64,
                spec: wire_spec(),
            }),
            (QueryPhase::Noised, Some(dp)) => {
                let noise = noise_plan(&plan, dp).map_err(|e| e.to_string())?;
                Ok(TaskShape {
                    engine: Some(DP_PROGRAM.into()),
                    vector_len: noise.len() as u64,
                    spec: dp_wire_spec(),
                })
            }
            (QueryPhase::Counts, Some(_)) => Err(
                "this query carries differential-privacy parameters: ask for the noised phase".into(),
            ),
            (QueryPhase::Noised, None) => Err(
                "the noised phase is for queries with differential-privacy parameters (`dp`)".into(),
            ),
            (QueryPhase::Stats { .. } | QueryPhase::Order { .. }, _) => Err(
                "the stats and order phases are started by the coordinator from the rounds it ran; ask for the counts phase"
                    .into(),
            ),
        }
    }
}

/// The coordinator's side of the two phases: when a counts round completes,
/// the stats round over its included clients and released cells, with its
/// release evidence.
pub struct QueryFollowup;

impl Followup for QueryFollowup {
    fn next(&self, finished: &FinishedRound<'_>) -> Result<Option<NextRound>, String> {
        let (p, plan) = parse_params(finished.params)?;
        if let QueryPhase::Stats { released, .. } = &p.phase {
            return order_round(finished, &p.spec, &plan, released);
        }
        if !matches!(p.phase, QueryPhase::Counts) {
            return Ok(None);
        }
        let policy = p.spec.policy().map_err(|e| e.to_string())?;
        let summary = finished.summary;
        let released =
            released_cells(&plan, &summary.values, &policy).map_err(|e| e.to_string())?;
        if released.is_empty() {
            return Ok(None);
        }
        let clients = included_parties(finished)?;
        let evidence =
            base64::engine::general_purpose::STANDARD.encode(summary.evidence().encode_to_vec());
        let params = serde_json::to_vec(&QueryParams {
            spec: p.spec.clone(),
            phase: QueryPhase::Stats {
                released: released.clone(),
                counts_round: summary.round_id,
                evidence,
            },
        })
        .map_err(|e| e.to_string())?;
        if params.len() > MAX_TASK_PARAMS {
            return Err(format!(
                "the stats round's parameters with the counts round's evidence take {} bytes, more than the {MAX_TASK_PARAMS} a descriptor carries; declare fewer GROUP BY domain values",
                params.len()
            ));
        }
        Ok(Some(NextRound {
            engine: None,
            params,
            vector_len: stats_len(&plan, &released) as u64,
            spec: wire_spec(),
            min_clients: clients.len(),
            clients,
        }))
    }
}

/// The parties a finished round included, in client-index order: the
/// clients of its next phase.
fn included_parties(finished: &FinishedRound<'_>) -> Result<Vec<PartyId>, String> {
    finished
        .summary
        .included
        .iter()
        .map(|&i| {
            finished
                .clients
                .get(i as usize)
                .copied()
                .ok_or_else(|| format!("included client {i} is not in the round"))
        })
        .collect()
}

/// The order round after a stats round, when the query has order items
/// that some released cell needs: over the stats round's clients (all of
/// them, as for the stats round), with its release evidence.
fn order_round(
    finished: &FinishedRound<'_>,
    spec: &QuerySpec,
    plan: &QueryPlan,
    released: &[usize],
) -> Result<Option<NextRound>, String> {
    if !has_order(plan) {
        return Ok(None);
    }
    let summary = finished.summary;
    let policy = spec.policy().map_err(|e| e.to_string())?;
    let order =
        order_params(plan, &policy, released, &summary.values).map_err(|e| e.to_string())?;
    let len = order_len(plan, &order);
    if len == 0 {
        return Ok(None);
    }
    let clients = included_parties(finished)?;
    // Refuse here, with the reason, what the helpers would refuse later.
    order_program(plan, &order, clients.len()).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let params = serde_json::to_vec(&QueryParams {
        spec: spec.clone(),
        phase: QueryPhase::Order {
            released: released.to_vec(),
            stats_round: summary.round_id,
            evidence: b64.encode(summary.evidence().encode_to_vec()),
            order: b64.encode(order.to_bytes()),
        },
    })
    .map_err(|e| e.to_string())?;
    if params.len() > MAX_TASK_PARAMS {
        return Err(format!(
            "the order round's parameters with the stats round's evidence take {} bytes, more than the {MAX_TASK_PARAMS} a descriptor carries; declare fewer GROUP BY domain values",
            params.len()
        ));
    }
    Ok(Some(NextRound {
        engine: Some(ORDER_PROGRAM.into()),
        params,
        vector_len: len as u64,
        spec: order_spec(),
        min_clients: clients.len(),
        clients,
    }))
}

/// A differentially private release as its signed descriptor states it:
/// what every client the descriptor lists charges to its table's budget
/// (its ledger, [`crate::budget`]) if it takes part. A node's audit log
/// holds every descriptor, signed by the coordinator, so the log is a
/// public record of every release the federation asked for
/// (`sealroom audit budget --config coordinator.toml`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DpRelease {
    /// The queried table.
    pub table: String,
    /// The mechanism, as each client's ledger records it.
    pub mechanism: String,
    /// The release's ε.
    pub epsilon: f64,
    /// The release's δ.
    pub delta: f64,
}

/// The DP release a round's task asks for: `None` for a round that is not
/// the noised phase of a query or a DP table-training round, `Some(Err)`
/// (with the reason) for parameters no client would accept: they do not
/// parse, plan, or carry a valid `(ε, δ)` (for a training: noise that
/// gives it), so no client charged anything for them.
pub fn dp_release(task: &sealroom_protocol::pb::Task) -> Option<Result<DpRelease, String>> {
    if task.name == crate::table_training::TABLE_FEDAVG_TASK {
        return crate::table_training::dp_release(&task.params);
    }
    if task.name != QUERY_TASK {
        return None;
    }
    let params: QueryParams = match serde_json::from_slice(&task.params) {
        Ok(p) => p,
        Err(e) => return Some(Err(format!("query parameters: {e}"))),
    };
    let (QueryPhase::Noised, Some(dp)) = (&params.phase, &params.spec.dp) else {
        return None;
    };
    Some(
        dp.check()
            .and_then(|()| plan(&params.spec))
            .map(|plan| DpRelease {
                table: plan.table().to_string(),
                mechanism: crate::query::dp::MECHANISM.into(),
                epsilon: dp.epsilon,
                delta: dp.delta,
            })
            .map_err(|e| e.to_string()),
    )
}

/// The order round's quantization: step 1 over ±2^51, so every element of
/// an order vector (integers below 2^51 in magnitude) is carried exactly.
pub fn order_spec() -> QuantSpec {
    QuantSpec::new(0, (1u64 << 51) as f64, 53).expect("step 1 over ±2^51 fits 53 bits")
}

/// The engine program of an order round, as each helper builds it: from
/// the signed descriptor's parameters, after re-deriving them from the
/// stats round's evidence exactly as the clients do.
pub struct SqlOrderProgram;

impl EngineProgram for SqlOrderProgram {
    fn name(&self) -> &str {
        ORDER_PROGRAM
    }

    fn version(&self) -> u32 {
        ORDER_PROGRAM_VERSION
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        if descriptor.task_name() != QUERY_TASK {
            return Err(format!("not a query round: {:?}", descriptor.task_name()));
        }
        let (p, plan) = parse_params(descriptor.task_params())?;
        let QueryPhase::Order {
            released,
            stats_round,
            evidence,
            order,
        } = &p.phase
        else {
            return Err("not an order round".into());
        };
        let order = check_order_round(
            descriptor,
            keys,
            &p.spec,
            &plan,
            released,
            *stats_round,
            evidence,
            order,
        )?;
        order_program(&plan, &order, clients).map_err(|e| e.to_string())
    }
}

/// The engine program of a differentially private query round, as each
/// helper builds it from the signed descriptor: the noise comes from the
/// spec's `dp` and plan, and the round's quantization must be exactly
/// [`dp_wire_spec`] (a coarser or scaled encoding would change what one
/// row can move, and with it the guarantee).
pub struct SqlDpProgram;

impl EngineProgram for SqlDpProgram {
    fn name(&self) -> &str {
        DP_PROGRAM
    }

    fn version(&self) -> u32 {
        DP_PROGRAM_VERSION
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        _keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        let noise = check_noised_round(descriptor)?;
        let bits = sealroom_node::tasks::upload_bits(descriptor)?;
        noised_program(&noise, clients, bits).map_err(|e| e.to_string())
    }
}

/// A client's and each helper's check of a DP round's descriptor: a query
/// round of the noised phase whose spec carries `dp`, whose vector length
/// is its noise plan's and whose quantization is [`dp_wire_spec`]. Returns
/// the noise plan.
fn check_noised_round(descriptor: &VerifiedDescriptor) -> Result<NoisePlan, String> {
    if descriptor.task_name() != QUERY_TASK {
        return Err(format!("not a query round: {:?}", descriptor.task_name()));
    }
    let (p, plan) = parse_params(descriptor.task_params())?;
    let (QueryPhase::Noised, Some(dp)) = (&p.phase, &p.spec.dp) else {
        return Err("not a differentially private query round".into());
    };
    let noise = noise_plan(&plan, dp).map_err(|e| e.to_string())?;
    if descriptor.vector_len() != noise.len() {
        return Err(format!(
            "the round's vector length {} is not its noise plan's {}",
            descriptor.vector_len(),
            noise.len()
        ));
    }
    if descriptor.encoding().spec() != dp_wire_spec() {
        return Err(
            "the round's quantization is not the DP encoding (integers, step 1): one row could move a sum by more than the noise is calibrated for"
                .into(),
        );
    }
    Ok(noise)
}

/// Registers the query task with a coordinator's catalog.
pub fn register_tasks(catalog: &mut TaskCatalog) {
    catalog.register_program(Arc::new(SqlOrderProgram));
    catalog.register_program(Arc::new(SqlDpProgram));
    catalog.register(TaskDef {
        engine: None,
        name: QUERY_TASK.into(),
        default_len: 0,
        fixed_len: true,
        spec: None,
        wide: true,
        planner: Some(Arc::new(QueryPlanner)),
        followup: Some(Arc::new(QueryFollowup)),
    });
}

/// A client's input for queries: its tables by name, its own floor under
/// the suppression thresholds (a query asking for less is refused) and,
/// for differentially private queries, its privacy budgets and ledger.
#[derive(Debug)]
pub struct QueryInput {
    tables: BTreeMap<String, DataSource>,
    floor: Policy,
    privacy: Option<Arc<PrivacyLedger>>,
}

impl QueryInput {
    /// A client holding `tables`, refusing queries whose thresholds are
    /// below `floor`. It answers no differentially private query until
    /// [`QueryInput::with_privacy`] gives it budgets and a ledger.
    pub fn new(tables: BTreeMap<String, DataSource>, floor: Policy) -> Self {
        QueryInput {
            tables,
            floor,
            privacy: None,
        }
    }

    /// Budgets per table, the ledger file, and whether the federation
    /// requires every query to be differentially private.
    pub fn with_privacy(self, privacy: ClientPrivacy) -> Self {
        self.with_ledger(Arc::new(PrivacyLedger::new(privacy)))
    }

    /// The same, sharing a ledger with the node's other inputs (table
    /// trainings charge the same budgets).
    pub fn with_ledger(mut self, ledger: Arc<PrivacyLedger>) -> Self {
        self.privacy = Some(ledger);
        self
    }

    async fn compute(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: Option<&FederationKeys>,
    ) -> Result<Vec<f64>, InputError> {
        let (p, plan) = parse_params(descriptor.task_params())
            .map_err(|e| InputError::new(SitOutReason::InvalidParameters, "", e))?;
        if p.spec.min_rows < self.floor.min_rows || p.spec.min_clients < self.floor.min_clients {
            return Err(InputError::new(
                SitOutReason::BelowClientFloor,
                "",
                format!(
                    "the query's suppression thresholds (min_rows {}, min_clients {}) are below this client's floor (min_rows {}, min_clients {})",
                    p.spec.min_rows,
                    p.spec.min_clients,
                    self.floor.min_rows,
                    self.floor.min_clients
                ),
            ));
        }
        if p.spec.dp.is_none() && self.privacy.as_ref().is_some_and(|p| p.require_dp()) {
            // The subject reaches the admin in the abort's detail.
            return Err(InputError::new(
                SitOutReason::BelowClientFloor,
                "require_dp",
                "this federation requires differential privacy ([privacy] require_dp): the query carries no `dp` parameters; ask again with --dp-epsilon and --dp-delta",
            ));
        }
        // A spec with `dp` is answered only in its noised round: an exact
        // counts, stats or order round of it would release what the noise
        // is there to hide.
        if p.spec.dp.is_some() && p.phase != QueryPhase::Noised {
            return Err(invalid(
                "not a differentially private query round, although the query carries `dp`: this client answers it only with engine noise".into(),
            ));
        }
        let mut order_params_checked = None;
        let mut noise_checked = None;
        match &p.phase {
            QueryPhase::Counts => {}
            QueryPhase::Noised => {
                noise_checked = Some(check_noised_round(descriptor).map_err(invalid)?);
            }
            QueryPhase::Stats {
                released,
                counts_round,
                evidence,
            } => {
                let keys = keys.ok_or_else(|| {
                    invalid("a stats round is checked against its counts round, which needs the federation's keys".into())
                })?;
                check_stats_round(
                    descriptor,
                    keys,
                    &p.spec,
                    &plan,
                    released,
                    *counts_round,
                    evidence,
                )
                .map_err(invalid)?;
            }
            QueryPhase::Order {
                released,
                stats_round,
                evidence,
                order,
            } => {
                let keys = keys.ok_or_else(|| {
                    invalid("an order round is checked against its stats round, which needs the federation's keys".into())
                })?;
                order_params_checked = Some(
                    check_order_round(
                        descriptor,
                        keys,
                        &p.spec,
                        &plan,
                        released,
                        *stats_round,
                        evidence,
                        order,
                    )
                    .map_err(invalid)?,
                );
            }
        }
        let source = self.tables.get(plan.table()).ok_or_else(|| {
            InputError::new(
                SitOutReason::NoSuchTable,
                plan.table(),
                format!("this client has no table {:?}", plan.table()),
            )
        })?;
        let table = LocalTable::open(source)
            .await
            .map_err(|e| query_error(&e, plan.table()))?;
        let policy = Policy::new(p.spec.min_rows, p.spec.min_clients)
            .map_err(|e| InputError::new(SitOutReason::InvalidParameters, "", e.to_string()))?;
        let wire = match (&p.phase, &order_params_checked) {
            (QueryPhase::Counts, _) => local_counts(&plan, &table, &policy).await,
            (QueryPhase::Stats { released, .. }, _) => local_stats(&plan, &table, released).await,
            (QueryPhase::Order { .. }, Some(order)) => local_order(&plan, &table, order).await,
            (QueryPhase::Order { .. }, None) => {
                return Err(invalid(
                    "an order round's parameters were not checked".into(),
                ));
            }
            (QueryPhase::Noised, _) => match &noise_checked {
                Some(noise) => local_noised(&plan, &table, noise).await,
                None => {
                    return Err(invalid(
                        "a noised round's parameters were not checked".into(),
                    ));
                }
            },
        }
        .map_err(|e| query_error(&e, plan.table()))?;
        // The last step before the vector leaves for the secret-sharing: a
        // DP round is charged to the table's budget (durably) or refused.
        if let (QueryPhase::Noised, Some(dp)) = (&p.phase, &p.spec.dp) {
            let Some(ledger) = &self.privacy else {
                return Err(PrivacyLedger::no_ledger(plan.table()));
            };
            ledger
                .charge(
                    descriptor,
                    plan.table(),
                    crate::query::dp::MECHANISM,
                    dp.epsilon,
                    dp.delta,
                )
                .await?;
        }
        Ok(wire.expose_values().to_vec())
    }
}

impl QueryInput {
    fn input_in(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: Option<&FederationKeys>,
    ) -> Result<Vec<f64>, InputError> {
        if descriptor.task_name() != QUERY_TASK {
            return Err(InputError::new(
                SitOutReason::UnsupportedTask,
                descriptor.task_name(),
                format!("not a query task: {:?}", descriptor.task_name()),
            ));
        }
        // Called on a blocking thread of the node's runtime (see InputSource).
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            InputError::new(
                SitOutReason::InputFailed,
                "",
                "queries need the node's async runtime",
            )
        })?;
        handle.block_on(self.compute(descriptor, keys))
    }
}

impl InputSource for QueryInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        self.input_in(descriptor, None)
    }

    fn input_with_keys(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: &FederationKeys,
    ) -> Result<Vec<f64>, InputError> {
        self.input_in(descriptor, Some(keys))
    }
}

fn invalid(detail: String) -> InputError {
    InputError::new(SitOutReason::InvalidParameters, "", detail)
}

/// The earlier round of this query (`phase`: "counts" or "stats") whose
/// release evidence `encoded` carries, verified under the federation's
/// keys: issued as round `round`, before `descriptor`, of the query task.
/// Also checks that `descriptor` invites exactly the clients that round
/// included, in order, and needs every one of them. Returns the verified
/// release and the earlier round's parameters.
fn earlier_round(
    descriptor: &VerifiedDescriptor,
    keys: &FederationKeys,
    encoded: &str,
    round: u64,
    phase: &str,
) -> Result<(VerifiedRelease, QueryParams), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the {phase} round's evidence is not base64: {e}"))?;
    let evidence = evidence::decode(&bytes).map_err(|e| e.to_string())?;
    let release = evidence::verify(keys, &evidence).map_err(|e| e.to_string())?;
    let earlier = &release.descriptor;
    if earlier.round_id() != round || earlier.round_id() >= descriptor.round_id() {
        return Err(format!(
            "the evidence is of round {}, not of an earlier {phase} round {round}",
            earlier.round_id()
        ));
    }
    if earlier.task_name() != QUERY_TASK {
        return Err("the evidence is of another task".into());
    }
    let (params, _) = parse_params(earlier.task_params())?;
    let included: Vec<_> = release
        .included
        .iter()
        .filter_map(|&i| earlier.clients().get(i as usize).copied())
        .collect();
    if descriptor.clients() != included.as_slice() {
        return Err(format!(
            "this round's clients are not those the {phase} round included"
        ));
    }
    if descriptor.min_clients() != included.len() {
        return Err(format!(
            "this round's min_clients is {}, not every one of the {} clients the {phase} round included",
            descriptor.min_clients(),
            included.len()
        ));
    }
    Ok((release, params))
}

/// A client's check of a stats round (`descriptor`) against the counts
/// round whose evidence it carries: the evidence verifies under the
/// federation's keys; that round was a counts round of the same spec, issued
/// before this one; this round invites exactly the clients that round
/// included, in order, and needs every one of them; and its released cells
/// are exactly those the re-derived counts sum passes.
fn check_stats_round(
    descriptor: &VerifiedDescriptor,
    keys: &FederationKeys,
    spec: &QuerySpec,
    plan: &QueryPlan,
    released: &[usize],
    counts_round: u64,
    encoded: &str,
) -> Result<(), String> {
    let (counts, earlier_params) =
        earlier_round(descriptor, keys, encoded, counts_round, "counts")?;
    if earlier_params.phase != QueryPhase::Counts || &earlier_params.spec != spec {
        return Err("the evidence is not a counts round of this query".into());
    }
    let policy = spec.policy().map_err(|e| e.to_string())?;
    let expected = released_cells(plan, &counts.values, &policy).map_err(|e| e.to_string())?;
    if expected != released {
        return Err("this round's released cells are not those the counts round passes".into());
    }
    Ok(())
}

/// A client's (and each helper's) check of an order round against the
/// stats round whose evidence it carries: the evidence verifies under the
/// federation's keys; that round was a stats round of the same spec and
/// released cells, issued before this one; this round invites exactly the
/// clients that round included, in order, and needs every one of them; its
/// order parameters are exactly those the re-derived stats sum gives, and
/// its vector length theirs. (Every client of the order round was a client
/// of that stats round, where it checked the released cells against the
/// counts round.) Returns the checked parameters.
#[allow(clippy::too_many_arguments)]
fn check_order_round(
    descriptor: &VerifiedDescriptor,
    keys: &FederationKeys,
    spec: &QuerySpec,
    plan: &QueryPlan,
    released: &[usize],
    stats_round: u64,
    encoded: &str,
    order: &str,
) -> Result<OrderParams, String> {
    let (stats, earlier_params) = earlier_round(descriptor, keys, encoded, stats_round, "stats")?;
    match &earlier_params.phase {
        QueryPhase::Stats {
            released: earlier_released,
            ..
        } if &earlier_params.spec == spec && earlier_released.as_slice() == released => {}
        _ => return Err("the evidence is not a stats round of this query and these cells".into()),
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let claimed = b64
        .decode(order)
        .map_err(|e| format!("the order parameters are not base64: {e}"))
        .and_then(|b| OrderParams::from_bytes(&b).map_err(|e| e.to_string()))?;
    let policy = spec.policy().map_err(|e| e.to_string())?;
    let expected =
        order_params(plan, &policy, released, &stats.values).map_err(|e| e.to_string())?;
    if claimed != expected {
        return Err("this round's order parameters are not those the stats round gives".into());
    }
    if descriptor.vector_len() != order_len(plan, &expected) {
        return Err("this round's vector length is not its order parameters' length".into());
    }
    Ok(expected)
}

/// The typed reason a query error gives the coordinator (the full error
/// stays in this client's log: it may name local files and lines).
fn query_error(e: &QueryError, table: &str) -> InputError {
    let (reason, subject) = match e {
        QueryError::UnknownColumn { column, .. } | QueryError::AmbiguousColumn { column, .. } => {
            (SitOutReason::NoSuchColumn, column.as_str())
        }
        QueryError::ColumnNotNumeric { column, .. } => {
            (SitOutReason::DataUnavailable, column.as_str())
        }
        QueryError::Io { .. }
        | QueryError::Source { .. }
        | QueryError::Malformed { .. }
        | QueryError::NotFound { .. } => (SitOutReason::DataUnavailable, table),
        QueryError::TableNotFound { .. } => (SitOutReason::NoSuchTable, table),
        _ => (SitOutReason::InputFailed, ""),
    };
    InputError::new(reason, subject, e.to_string())
}

/// A finished query as the driver saw it.
#[derive(Clone, Debug, Serialize)]
pub struct QueryRun {
    /// The released (and suppressed) result.
    pub result: QueryResult,
    /// The counts round (for a differentially private query: its only,
    /// noised round).
    pub counts_round: u64,
    /// The stats round (`None` when no cell was released).
    pub stats_round: Option<u64>,
    /// The order round (MIN/MAX/MEDIAN/PERCENTILE_CONT; `None` when the
    /// query has none or no released cell needs it).
    pub order_round: Option<u64>,
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

/// A differentially private query: one noised engine round; the result is
/// computed from its noised outputs (the same function every party could
/// apply to them).
async fn run_noised<R: RoundRunner>(
    runner: &R,
    spec: &QuerySpec,
    plan: &QueryPlan,
    policy: &Policy,
    dp: &crate::query::dp::DpSpec,
    clients: &[String],
) -> Result<QueryRun, QueryRunError> {
    let noise = noise_plan(plan, dp)?;
    let params = QueryParams {
        spec: spec.clone(),
        phase: QueryPhase::Noised,
    };
    let round = completed_round(runner, QUERY_TASK, &params, clients, 0).await?;
    if !round.earlier.is_empty() {
        return Err(QueryRunError::Request(
            "the coordinator answered phases a differentially private query does not have".into(),
        ));
    }
    let included: Vec<String> = round
        .included_clients
        .iter()
        .filter_map(|&i| clients.get(i as usize).cloned())
        .collect();
    if included.len() != round.included_clients.len() {
        return Err(QueryRunError::Request(
            "the coordinator named an included client outside the invited list".into(),
        ));
    }
    let outputs = unpack_outputs(&round.outputs).ok_or_else(|| {
        QueryRunError::Request(format!(
            "DP round {}'s outputs are not whole 16-byte values",
            round.round_id
        ))
    })?;
    let result = finish_noised(plan, &noise, &outputs, policy, included.len())?;
    Ok(QueryRun {
        result,
        counts_round: round.round_id,
        stats_round: None,
        order_round: None,
        included,
        durations_ms: vec![round.duration_ms],
    })
}

/// Runs `spec` over `clients` (by name, at least one): asks for the counts
/// round; the coordinator runs the stats round over the clients it included
/// when any cell passes, and answers both outcomes. The admin re-derives the
/// released cells from the counts sum (the same function every client and
/// the coordinator apply) and finishes the result.
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
    if let Some(dp) = &spec.dp {
        return run_noised(runner, spec, &plan, &policy, dp, clients).await;
    }
    let counts_params = QueryParams {
        spec: spec.clone(),
        phase: QueryPhase::Counts,
    };
    let last = completed_round(runner, QUERY_TASK, &counts_params, clients, 0).await?;
    // The rounds of this request, in order: counts, then (if any cell
    // passed) stats, then (if the query has order items some released cell
    // needs) the order round. Each earlier one completed, or there would be
    // no later one.
    let mut rounds: Vec<RoundOutcome> = last.earlier.clone();
    rounds.push(last);
    if rounds.len() > 3
        || rounds[..rounds.len() - 1]
            .iter()
            .any(|r| r.status != "completed")
    {
        return Err(QueryRunError::Request(
            "the coordinator answered phases this query does not have".into(),
        ));
    }
    let counts = &rounds[0];
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
    let (stats, order) = (rounds.get(1), rounds.get(2));
    let durations_ms = rounds.iter().map(|r| r.duration_ms).collect();
    let Some(stats) = stats else {
        if !released.is_empty() {
            return Err(QueryRunError::Request(if counts.detail.is_empty() {
                format!(
                    "cells passed the thresholds in counts round {} but the coordinator ran no stats round",
                    counts.round_id
                )
            } else {
                counts.detail.clone()
            }));
        }
        let result = finish(&plan, &counts.values, &released, &[], &policy)?;
        return Ok(QueryRun {
            result,
            counts_round: counts.round_id,
            stats_round: None,
            order_round: None,
            included,
            durations_ms,
        });
    };
    if released.is_empty() {
        return Err(QueryRunError::Request(format!(
            "the coordinator ran stats round {} although no cell passed the thresholds",
            stats.round_id
        )));
    }
    let mut result = finish(&plan, &counts.values, &released, &stats.values, &policy)?;
    // The order round's parameters, re-derived from the stats sum (the same
    // function every client and helper applies).
    let needed = if has_order(&plan) {
        let params = order_params(&plan, &policy, &released, &stats.values)?;
        (order_len(&plan, &params) > 0).then_some(params)
    } else {
        None
    };
    let order_round = match (needed, order) {
        (None, None) => None,
        (Some(params), Some(order)) => {
            let outputs = unpack_outputs(&order.outputs).ok_or_else(|| {
                QueryRunError::Request(format!(
                    "order round {}'s outputs are not whole 16-byte values",
                    order.round_id
                ))
            })?;
            finish_order(&plan, &params, &outputs, &mut result)?;
            Some(order.round_id)
        }
        (Some(_), None) => {
            return Err(QueryRunError::Request(if stats.detail.is_empty() {
                format!(
                    "released cells need MIN/MAX/MEDIAN/PERCENTILE_CONT but the coordinator ran no order round after stats round {}",
                    stats.round_id
                )
            } else {
                stats.detail.clone()
            }));
        }
        (None, Some(order)) => {
            return Err(QueryRunError::Request(format!(
                "the coordinator ran order round {} that this query does not need",
                order.round_id
            )));
        }
    };
    Ok(QueryRun {
        result,
        counts_round: counts.round_id,
        stats_round: Some(stats.round_id),
        order_round,
        included,
        durations_ms,
    })
}
