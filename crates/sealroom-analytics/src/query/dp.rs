//! Differentially private queries (issue #15): one engine round whose every
//! released value carries binomial noise generated inside the MPC engine.
//!
//! # The release
//!
//! A query whose spec carries [`DpSpec`] `{ epsilon, delta }` runs as a
//! single round of the [`DP_PROGRAM`] engine program instead of the counts
//! and statistics rounds. Every client sends, for **every** cell of the
//! declared domains, its row count, its count of adjusted rows and each
//! local statistic, each rounded to a lattice (below)
//! and carried exactly as one integer. The helpers sum the clients' values
//! in the engine, add to each one binomial sample from jointly generated
//! random bits ([`sealroom_mpc::noise`]), and open only the noised values,
//! after the MAC check, to the coordinator. A cell is released when its
//! **noised** row count reaches `min_rows`, and every published value is
//! computed from noised sums: nothing anyone sees depends on the
//! data except through the noised values, so the whole release — including
//! which cells are suppressed — is post-processing of a differentially
//! private output. (Without DP, the counts round reveals each failing cell's
//! capped row count to the coordinator; here nothing of the kind exists.)
//!
//! **Client threshold.** `min_clients` holds for the round: the engine
//! round needs at least `min_clients` included clients, as every round
//! does. It is *not* applied per cell: an exact per-cell client count is not
//! differentially private (one row can be a client's only row in a cell),
//! and a noised one is meaningless at federation sizes (its noise, like
//! every value's, is tens of units). Under DP a cell that one client
//! dominates is protected row by row, not by the count of organisations.
//!
//! # The guarantee
//!
//! Privacy unit: **one row of one client's table** (adding or removing a
//! row). Each row falls in exactly one cell, so it moves only that cell's
//! values; cells compose in parallel. Within a cell, a row moves each of the
//! `k = 2 + statistics` values by at most its sensitivity `Δ_s`: 1 for the
//! row count and the adjusted count and for every
//! count statistic, and `max |term|` over the declared bounds for a sum of
//! a term (the product of its factors; `bounds.rs` computes it by interval
//! arithmetic). Each value gets `(ε/k, δ/k)`, and basic composition (Dwork
//! & Roth, *The Algorithmic Foundations of Differential Privacy*, 2014,
//! Theorem 3.16) makes the cell's release — and so the query's —
//! `(ε, δ)`-DP.
//!
//! **Lattice.** A client rounds its local value `v` of a statistic to the
//! lattice of step `γ_s = Δ_s · (1 + 2⁻¹⁶)`: `q = ⌊v/γ_s + ½⌋` (the margin
//! absorbs the databases' floating-point summation error, so a row moves
//! `v` by less than one step; `γ_s = 1` exactly for counts, which are
//! integers). `⌊a + ½⌋ − ⌊b + ½⌋ ≤ ⌈|a − b|⌉`, so one row moves a client's
//! `q` — and the sum over clients — by at most one lattice step. The
//! released value is `Σ_c q_c + N`, `N = Bin(n_s, ½) − n_s/2`, and the
//! published estimate `γ_s · (Σ_c q_c + N)`; the rounding adds at most
//! `γ_s/2` per client, far below the noise for any useful ε.
//!
//! **Accounting.** For integer sensitivity 1 the mechanism is a pair of
//! binomial distributions shifted by one, and its exact `δ(ε)` is the
//! hockey-stick divergence `Σ_k max(0, P(k) − e^ε P(k−1))`, `P` the
//! Bin(n, ½) probabilities (Balle & Wang, *Improving the Gaussian Mechanism
//! for Differential Privacy*, ICML 2018, §3: `(ε, δ)`-DP holds exactly when
//! this divergence is at most δ for every neighbouring pair; the shift by −1
//! gives the same value by the symmetry of Bin(n, ½)).
//! [`sealroom_mpc::noise::binomial_delta`] computes it in the log domain and
//! [`coins_for`] picks the smallest even
//! `n` with `δ(ε/k) ≤ δ/k`. Tests check it against the closed form of small
//! cases and against Dwork et al. 2006's sufficient condition.
//!
//! # Budgets
//!
//! Every client charges `(ε, δ)` to the queried table in its durable
//! ledger (`crate::budget`) before it shares anything, and refuses a query
//! that would exceed the table's budget (`joint.rs`).
//!
//! # Not covered
//!
//! MIN, MAX, MEDIAN and PERCENTILE_CONT (they need other mechanisms) are
//! refused under DP. Noise makes row counts non-integers and can make a
//! variance's sums inconsistent; the published values are post-processed
//! (variances clamped at 0, cells with a noised count below 1 NULL) and
//! never re-identify anything, but they are estimates: the result says so.

use serde::{Deserialize, Serialize};

use sealroom_mpc::noise::coins_for;
use sealroom_mpc::program::{Program, ProgramBuilder};

use super::bounds;
use super::error::QueryError;
use super::finish::{assemble, evaluate};
use super::result::{Cell, PrivacyNote, QueryResult, SuppressReason};
use super::source::LocalTable;
use super::spec::{Policy, QueryPlan};
use super::{MAX_CLIENTS, WireVector};

/// The engine program of a differentially private query round.
pub const DP_PROGRAM: &str = "sql-dp";
/// Its version.
pub const DP_PROGRAM_VERSION: u32 = 1;
/// The mechanism, as ledgers and results name it.
pub const MECHANISM: &str = "binomial noise from shared random bits (Dwork et al. 2006), exact δ by hockey-stick divergence";

/// The smallest ε a query may ask for.
pub const MIN_EPSILON: f64 = 0.01;
/// The largest ε a query may ask for.
pub const MAX_EPSILON: f64 = 20.0;
/// The smallest δ a query may ask for (δ = 0 is impossible with binomial
/// noise, whose support is bounded).
pub const MIN_DELTA: f64 = 1e-12;
/// The largest δ a query may ask for.
pub const MAX_DELTA: f64 = 1e-3;
/// The most random bits the noise of one query round may take (each costs
/// about 100 bytes of preprocessed material per helper).
pub const MAX_NOISE_BITS: u64 = 1 << 21;
/// The lattice margin over a sensitivity: `γ = Δ · (1 + 2⁻¹⁶)`.
const LATTICE_MARGIN: f64 = 1.0 + 1.0 / 65_536.0;
/// A client's lattice value is clamped to ±2^50 (the upload ring's range;
/// clamping only shrinks a row's influence).
const LATTICE_LIMIT: f64 = (1u64 << 50) as f64;

/// The privacy parameters of a differentially private query: the whole
/// release is `(epsilon, delta)`-DP for one row of a client's table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSpec {
    /// ε, in [`MIN_EPSILON`, `MAX_EPSILON`].
    pub epsilon: f64,
    /// δ, in [`MIN_DELTA`, `MAX_DELTA`].
    pub delta: f64,
}

impl DpSpec {
    /// Checks the parameters' ranges.
    pub fn check(&self) -> Result<(), QueryError> {
        if !(MIN_EPSILON..=MAX_EPSILON).contains(&self.epsilon) {
            return Err(QueryError::invalid(
                "dp.epsilon",
                format!("must be between {MIN_EPSILON} and {MAX_EPSILON}"),
            ));
        }
        if !(MIN_DELTA..=MAX_DELTA).contains(&self.delta) {
            return Err(QueryError::invalid(
                "dp.delta",
                format!(
                    "must be between {MIN_DELTA:e} and {MAX_DELTA:e} (binomial noise cannot give δ = 0)"
                ),
            ));
        }
        Ok(())
    }
}

/// How one per-cell value is noised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatNoise {
    /// The largest change one row makes to the exact value (real units).
    pub sensitivity: f64,
    /// The lattice step γ (real units per released unit).
    pub step: f64,
    /// Coins of its binomial noise (even).
    pub coins: u64,
}

impl StatNoise {
    /// The standard deviation of its noise, in real units.
    pub fn stddev(&self) -> f64 {
        self.step * (self.coins as f64).sqrt() / 2.0
    }
}

/// The noise of a DP query: per cell, the row count, the adjusted count
/// and each statistic, in that order (the layout of a client's local cell
/// values).
#[derive(Clone, Debug, PartialEq)]
pub struct NoisePlan {
    /// The query's parameters.
    pub dp: DpSpec,
    /// Cells (all of the declared domains).
    pub cells: usize,
    /// The per-cell values' noise.
    pub values: Vec<StatNoise>,
}

impl NoisePlan {
    /// Values per cell.
    pub fn per_cell(&self) -> usize {
        self.values.len()
    }

    /// Length of a client's vector and of the outputs.
    pub fn len(&self) -> usize {
        self.cells * self.per_cell()
    }

    /// Always false (a plan has at least the two counts per cell).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Random bits the round's noise takes.
    pub fn bits(&self) -> u64 {
        self.cells as u64 * self.values.iter().map(|v| v.coins).sum::<u64>()
    }
}

/// The noise of `plan` under `dp`, or why the query cannot run under DP.
pub fn noise_plan(plan: &QueryPlan, dp: &DpSpec) -> Result<NoisePlan, QueryError> {
    dp.check()?;
    if !plan.order.is_empty() {
        return Err(QueryError::unsupported(
            "MIN, MAX, MEDIAN and PERCENTILE_CONT with differential privacy",
            "they need other mechanisms than additive noise; drop `dp` or these items",
        ));
    }
    let k = 2 + plan.stats.len();
    let (eps, delta) = (dp.epsilon / k as f64, dp.delta / k as f64);
    let coins = coins_for(eps, delta).ok_or_else(|| {
        QueryError::invalid(
            "dp",
            format!(
                "ε = {} and δ = {:e} split over the {k} values of a cell need more than 2^24 coins per value; ask for a larger ε or δ",
                dp.epsilon, dp.delta
            ),
        )
    })?;
    let count = StatNoise {
        sensitivity: 1.0,
        step: 1.0,
        coins,
    };
    let mut values = vec![count; 2];
    for s in &plan.stats {
        if s.factors.is_empty() {
            values.push(count);
            continue;
        }
        let term = bounds::term(&s.factors, &plan.bounds, &s.label)?;
        let sensitivity = term.interval.magnitude();
        if !(sensitivity.is_finite() && sensitivity > 0.0) {
            return Err(QueryError::invalid(
                s.label.clone(),
                "its declared bounds give it no positive finite sensitivity",
            ));
        }
        values.push(StatNoise {
            sensitivity,
            step: sensitivity * LATTICE_MARGIN,
            coins,
        });
    }
    let noise = NoisePlan {
        dp: *dp,
        cells: plan.cells(),
        values,
    };
    if noise.bits() > MAX_NOISE_BITS {
        return Err(QueryError::invalid(
            "dp",
            format!(
                "its noise needs {} random bits ({} cells × {k} values × {coins} coins), more than the {MAX_NOISE_BITS} one round generates; ask for a larger ε or δ, fewer GROUP BY values or fewer aggregates",
                noise.bits(),
                noise.cells
            ),
        ));
    }
    Ok(noise)
}

/// A client's vector for a DP round: per cell of the domains, its row
/// count, adjusted count and statistics, each rounded to its lattice
/// (`⌊v/γ + ½⌋`, clamped to ±2^50).
pub async fn local_noised(
    plan: &QueryPlan,
    table: &LocalTable,
    noise: &NoisePlan,
) -> Result<WireVector, QueryError> {
    let local = table.evaluate(plan, true).await?;
    let mut wire = WireVector::new(Vec::with_capacity(noise.len()));
    let out = wire.values_mut();
    for cell in 0..noise.cells {
        // [rows, adjusted, statistics…], or nothing for a cell without rows.
        let values = local.get(cell).unwrap_or(&[]);
        for (i, stat) in noise.values.iter().enumerate() {
            out.push(lattice(values.get(i).copied().unwrap_or(0.0), stat.step));
        }
    }
    Ok(wire)
}

/// `⌊v/γ + ½⌋`, clamped to ±2^50 (NaN → 0).
fn lattice(v: f64, step: f64) -> f64 {
    let q = (v / step + 0.5).floor();
    if q.is_nan() {
        0.0
    } else {
        q.clamp(-LATTICE_LIMIT, LATTICE_LIMIT)
    }
}

/// The quantization of a DP round's uploads: integers over ±2^51 in 53
/// signed bits (every lattice value is carried exactly).
pub fn dp_wire_spec() -> sealroom_core::QuantSpec {
    match sealroom_core::QuantSpec::new(0, (1u64 << 51) as f64, 53) {
        Ok(spec) => spec,
        Err(_) => unreachable!("step 1 over ±2^51 fits 53 bits"),
    }
}

/// The engine program of a DP round over `clients` clients whose uploads
/// live in Z_2^`ring_bits`: sums the clients' vectors, adds one binomial
/// sample per value and outputs the noised sums (lattice units), after the
/// MAC check.
pub fn noised_program(
    noise: &NoisePlan,
    clients: usize,
    ring_bits: u32,
) -> Result<Program, QueryError> {
    let refuse = |reason: String| QueryError::DpProgram { reason };
    if clients == 0 || clients > MAX_CLIENTS as usize {
        return Err(refuse(format!("it needs 1 to {MAX_CLIENTS} clients")));
    }
    let (cells, k, len) = (noise.cells, noise.per_cell(), noise.len());
    let mut b = ProgramBuilder::new(DP_PROGRAM, DP_PROGRAM_VERSION);
    let x = b.client_inputs(clients, len, ring_bits);
    let sum = b.client_sum(x, clients, len);
    // Noise per value kind (all cells at once), then reordered to the
    // vector's cell-major layout.
    let parts: Vec<_> = noise
        .values
        .iter()
        .map(|v| b.binomial_noise(cells, v.coins as usize))
        .collect();
    let kind_major = b.concat(&parts);
    let idx: Vec<u32> = (0..cells)
        .flat_map(|cell| (0..k).map(move |s| (s * cells + cell) as u32))
        .collect();
    let noise_vec = b.gather(kind_major, &idx);
    let noised = b.add(sum, noise_vec);
    b.output(noised);
    b.build()
        .map_err(|e| refuse(format!("the DP program does not build: {e}")))
}

/// The published result of a DP round over `clients` included clients
/// from its `outputs` (noised lattice sums, cell-major): `min_rows` on the
/// noised row counts, values from the noised statistics.
pub fn finish_noised(
    plan: &QueryPlan,
    noise: &NoisePlan,
    outputs: &[i128],
    policy: &Policy,
    clients: usize,
) -> Result<QueryResult, QueryError> {
    let policy = Policy::new(policy.min_rows, policy.min_clients)?;
    if outputs.len() != noise.len() || noise.cells != plan.cells() {
        return Err(QueryError::DpOutputs {
            expected: noise.len(),
            actual: outputs.len(),
        });
    }
    let width_out = plan.columns().len();
    let cells = outputs.chunks_exact(noise.per_cell()).map(|values| {
        let scaled: Vec<f64> = values
            .iter()
            .zip(&noise.values)
            .map(|(&q, v)| q as f64 * v.step)
            .collect();
        let (rows, adjusted) = (values[0], values[1]);
        if rows < i128::from(policy.min_rows) {
            let reason = SuppressReason::TooFewRows {
                min_rows: policy.min_rows,
            };
            (vec![Cell::Suppressed { reason }; width_out], None)
        } else {
            (
                plan.outputs
                    .iter()
                    .flat_map(|o| evaluate(&o.agg, scaled[0], clients as f64, &scaled[2..], &[]))
                    .collect(),
                Some(u64::try_from(adjusted.max(0)).unwrap_or(u64::MAX)),
            )
        }
    });
    let privacy = PrivacyNote {
        epsilon: noise.dp.epsilon,
        delta: noise.dp.delta,
        mechanism: MECHANISM.into(),
    };
    Ok(assemble(plan, cells, Some(privacy)))
}

/// The noiseless twin of a DP round (demos and tests only: it sees every
/// party's vectors): the exact lattice sums the engine adds noise to.
pub async fn noised_plain(
    plan: &QueryPlan,
    sources: &[&LocalTable],
    noise: &NoisePlan,
) -> Result<Vec<i128>, QueryError> {
    let mut sums = vec![0i128; noise.len()];
    for table in sources {
        let v = local_noised(plan, table, noise).await?;
        for (s, &x) in sums.iter_mut().zip(v.expose_values()) {
            *s += x as i128;
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lattice_rounding_moves_by_at_most_one_step_per_row() {
        let step = 120.0 * LATTICE_MARGIN;
        for (a, b) in [
            (0.0, 120.0),
            (59.9, 179.9),
            (-60.0, 60.0),
            (1e9, 1e9 + 120.0),
        ] {
            assert!((lattice(a, step) - lattice(b, step)).abs() <= 1.0);
        }
        assert_eq!(lattice(f64::NAN, 1.0), 0.0);
        assert_eq!(lattice(1e300, 1.0), LATTICE_LIMIT);
    }
}
