//! Public post-processing at the coordinator: which cells pass the release
//! thresholds, and the result computed from the summed statistics.
//!
//! All inputs here are sums over clients; nothing depends on one client's
//! vector. Sums are checked element by element against what honest clients
//! can produce, and the phase-2 row and client counts are re-checked against
//! the thresholds (the data may have changed between the rounds).

use super::MAX_CLIENTS;
use super::aggregate::{Aggregate, Moments, PairKind, Spread};
use super::encode::{FRAC_BITS, LIMBS, from_fixed, from_limbs, integers};
use super::error::{Phase, QueryError};
use super::ols::solve_spd;
use super::result::{
    Cell, ColumnBounds, GroupKey, NullReason, PrivacyNote, QueryResult, ResultRow, SuppressReason,
};
use super::spec::{Policy, QueryPlan};

/// Length of a phase-1 (counts) vector: two elements per cell.
pub fn counts_len(plan: &QueryPlan) -> usize {
    2 * plan.cells()
}

/// Length of a phase-2 (statistics) vector for `released` cells: per cell,
/// the row count, the contributed flag and every statistic, four limbs each.
pub fn stats_len(plan: &QueryPlan, released: &[usize]) -> usize {
    released.len() * per_cell(plan)
}

pub(crate) fn per_cell(plan: &QueryPlan) -> usize {
    // Rows, contributed, adjusted, the statistics, and per order item its
    // two hidden sums (values taken, clients over L).
    (plan.stats.len() + 3 + 2 * plan.order.len()) * LIMBS
}

/// The cells whose summed counts pass both thresholds: at least
/// `policy.min_clients` contributing clients and at least `policy.min_rows`
/// rows (Σ min(rᵢ, K) ≥ K exactly when Σ rᵢ ≥ K).
pub fn released_cells(
    plan: &QueryPlan,
    counts_sum: &[f64],
    policy: &Policy,
) -> Result<Vec<usize>, QueryError> {
    let policy = Policy::new(policy.min_rows, policy.min_clients)?;
    let counts = decode_counts(plan, counts_sum, &policy)?;
    Ok(passing(&counts, &policy))
}

fn passing(counts: &[(i64, i64)], policy: &Policy) -> Vec<usize> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, (clients, rows))| threshold(policy, *clients, *rows).is_none())
        .map(|(cell, _)| cell)
        .collect()
}

/// Computes the result from the two sums. `released` must be exactly what
/// [`released_cells`] returns for `counts_sum` (anything else is refused);
/// the other cells are suppressed, with the threshold they failed.
pub fn finish(
    plan: &QueryPlan,
    counts_sum: &[f64],
    released: &[usize],
    stats_sum: &[f64],
    policy: &Policy,
) -> Result<QueryResult, QueryError> {
    let policy = Policy::new(policy.min_rows, policy.min_clients)?;
    let counts = decode_counts(plan, counts_sum, &policy)?;
    let expected = passing(&counts, &policy);
    if released != expected {
        check_released(plan, released)?;
        let cell = released
            .iter()
            .find(|c| !expected.contains(c))
            .map(|c| format!("cell {c} is listed as released but fails the thresholds"))
            .or_else(|| {
                expected
                    .iter()
                    .find(|c| !released.contains(c))
                    .map(|c| format!("cell {c} passes the thresholds but is not listed"))
            })
            .unwrap_or_default();
        return Err(QueryError::InvalidRelease { reason: cell });
    }
    let decoded = decode_stats(plan, released, stats_sum)?;

    let mut next = released.iter().zip(decoded).peekable();
    let width_out = plan.columns().len();
    let cells = counts.iter().enumerate().map(|(cell, &(clients, rows))| {
        match next.next_if(|(c, _)| **c == cell) {
            Some((_, d)) => {
                // Float-to-integer casts saturate; counts beyond i64 pass anyway.
                match threshold(&policy, d.clients as i64, d.rows as i64) {
                    Some(reason) => (vec![Cell::Suppressed { reason }; width_out], None),
                    None => (
                        plan.outputs
                            .iter()
                            .flat_map(|o| evaluate(&o.agg, d.rows, d.clients, &d.stats, &d.order))
                            .collect(),
                        Some(u64::try_from(d.adjusted).unwrap_or(u64::MAX)),
                    ),
                }
            }
            None => {
                // Not released: `released` equals the passing cells (checked
                // above), so a threshold failed.
                let reason =
                    threshold(&policy, clients, rows).unwrap_or(SuppressReason::TooFewRows {
                        min_rows: policy.min_rows,
                    });
                (vec![Cell::Suppressed { reason }; width_out], None)
            }
        }
    });
    Ok(assemble(plan, cells, None))
}

/// The published result of `plan` from each cell's values and adjusted
/// count, in cell order: group keys, columns and the declared bounds (each
/// client clamped to them), and the DP guarantee if the values are noised.
pub(crate) fn assemble(
    plan: &QueryPlan,
    cells: impl Iterator<Item = (Vec<Cell>, Option<u64>)>,
    privacy: Option<PrivacyNote>,
) -> QueryResult {
    let rows = cells
        .enumerate()
        .map(|(cell, (cells, adjusted))| ResultRow {
            group: plan
                .cell_labels(cell)
                .into_iter()
                .map(|l| l.map_or(GroupKey::Other, GroupKey::value))
                .collect(),
            cells,
            adjusted,
        })
        .collect();
    QueryResult {
        group_columns: plan.group_columns(),
        columns: plan.columns(),
        rows,
        bounds: plan
            .bounds()
            .into_iter()
            .map(|(column, b)| ColumnBounds {
                column,
                lo: b.lo,
                hi: b.hi,
            })
            .collect(),
        privacy,
    }
}

/// One released cell's decoded phase-2 sums.
pub(crate) struct CellSums {
    pub(crate) rows: f64,
    pub(crate) clients: f64,
    pub(crate) adjusted: i128,
    pub(crate) stats: Vec<f64>,
    /// Per order item: `(Σ min(cᵢ, L), clients with cᵢ > L)`.
    pub(crate) order: Vec<(u64, u64)>,
}

/// Decodes the phase-2 sum of `released` cells, checking every count.
pub(crate) fn decode_stats(
    plan: &QueryPlan,
    released: &[usize],
    stats_sum: &[f64],
) -> Result<Vec<CellSums>, QueryError> {
    let ints = integers(stats_sum, Phase::Stats, stats_len(plan, released))?;
    let width = per_cell(plan);
    let n_stats = plan.stats.len();
    let mut decoded = Vec::with_capacity(released.len());
    for (i, chunk) in ints.chunks_exact(width).enumerate() {
        let values: Vec<i128> = chunk
            .chunks_exact(LIMBS)
            .map(|l| from_limbs([l[0], l[1], l[2], l[3]]))
            .collect();
        let base = i * width;
        let rows = whole(values[0], base)?;
        let clients = whole(values[1], base + LIMBS)?;
        if clients > i128::from(MAX_CLIENTS) || rows < clients {
            return Err(QueryError::MalformedSum {
                phase: Phase::Stats,
                index: base,
                reason: "row and client counts are inconsistent",
            });
        }
        let adjusted = whole(values[2], base + 2 * LIMBS)?;
        let stats: Vec<f64> = values[3..3 + n_stats]
            .iter()
            .map(|&q| from_fixed(q))
            .collect();
        let max_values = clients * i128::from(plan.max_rows_per_client);
        let mut order = Vec::with_capacity(plan.order.len());
        for (j, pair) in values[3 + n_stats..].chunks_exact(2).enumerate() {
            let index = base + (3 + n_stats + 2 * j) * LIMBS;
            let taken = whole(pair[0], index)?;
            let over = whole(pair[1], index + LIMBS)?;
            if taken > max_values || over > clients {
                return Err(QueryError::MalformedSum {
                    phase: Phase::Stats,
                    index,
                    reason: "order-round counts are inconsistent with the client count",
                });
            }
            // Both are at most 1024 · 1024 (checked just above).
            order.push((taken as u64, over as u64));
        }
        decoded.push(CellSums {
            rows: rows as f64,
            clients: clients as f64,
            adjusted,
            stats,
            order,
        });
    }
    Ok(decoded)
}

/// The failed threshold of a cell with these summed counts, if any.
pub(crate) fn threshold(policy: &Policy, clients: i64, rows: i64) -> Option<SuppressReason> {
    if clients < i64::from(policy.min_clients) {
        Some(SuppressReason::TooFewClients {
            min_clients: policy.min_clients,
        })
    } else if rows < policy.min_rows as i64 {
        Some(SuppressReason::TooFewRows {
            min_rows: policy.min_rows,
        })
    } else {
        None
    }
}

/// Per cell (contributing clients, capped rows), checked for consistency:
/// every contributing client adds 1 to 2^24 capped rows.
fn decode_counts(
    plan: &QueryPlan,
    counts_sum: &[f64],
    policy: &Policy,
) -> Result<Vec<(i64, i64)>, QueryError> {
    let ints = integers(counts_sum, Phase::Counts, counts_len(plan))?;
    let cap = policy.min_rows as i64;
    ints.chunks_exact(2)
        .enumerate()
        .map(|(cell, pair)| {
            let (clients, rows) = (pair[0], pair[1]);
            let consistent = (0..=i64::from(MAX_CLIENTS)).contains(&clients)
                && rows >= clients
                && rows <= clients * cap;
            if consistent {
                Ok((clients, rows))
            } else {
                Err(QueryError::MalformedSum {
                    phase: Phase::Counts,
                    index: 2 * cell,
                    reason: "client and capped row counts are inconsistent",
                })
            }
        })
        .collect()
}

/// Released cells must be distinct, in increasing order and exist.
pub(crate) fn check_released(plan: &QueryPlan, released: &[usize]) -> Result<(), QueryError> {
    if !released.windows(2).all(|w| w[0] < w[1]) {
        return Err(QueryError::InvalidRelease {
            reason: "cells must be listed once each, in increasing order".into(),
        });
    }
    if released.last().is_some_and(|&c| c >= plan.cells()) {
        return Err(QueryError::InvalidRelease {
            reason: format!("the plan has only {} cells", plan.cells()),
        });
    }
    Ok(())
}

/// A fixed-point sum that must be a non-negative whole number (a count).
fn whole(q: i128, index: usize) -> Result<i128, QueryError> {
    if q < 0 || q % (1 << FRAC_BITS) != 0 {
        return Err(QueryError::MalformedSum {
            phase: Phase::Stats,
            index,
            reason: "a count is negative or fractional",
        });
    }
    Ok(q >> FRAC_BITS)
}

/// Absolute error bound of one summed statistic: each client rounds to the
/// nearest 2^−20, so the sum is off by at most `clients · 2^−21` (doubled
/// for the local floating-point sums).
fn resolution(clients: f64) -> f64 {
    clients * f64::powi(2.0, -(FRAC_BITS as i32))
}

/// The centred sum of squares `Σ(x − x̄)² = Σx² − (Σx)²/n`, or `None` when it
/// is indistinguishable from zero at the encoding's resolution.
fn centred(sxx: f64, sx: f64, n: f64, err: f64) -> Option<f64> {
    let c = sxx - sx * (sx / n);
    let noise = err * (1.0 + 2.0 * (sx / n).abs()) * 2.0 + 1e-13 * sxx.abs();
    (c > noise).then_some(c)
}

pub(crate) fn evaluate(
    agg: &Aggregate,
    rows: f64,
    clients: f64,
    s: &[f64],
    order: &[(u64, u64)],
) -> Vec<Cell> {
    let value = Cell::Value;
    let null = |reason| Cell::Null { reason };
    let err = resolution(clients);
    match agg {
        Aggregate::CountRows => vec![value(rows)],
        Aggregate::Count { n } => vec![value(s[*n])],
        Aggregate::Sum { n, s: i } => vec![if s[*n] > 0.0 {
            value(s[*i])
        } else {
            null(NullReason::NoValues)
        }],
        Aggregate::Avg { n, s: i } => vec![if s[*n] > 0.0 {
            value(s[*i] / s[*n])
        } else {
            null(NullReason::NoValues)
        }],
        Aggregate::Spread { kind, n, s: i, s2 } => {
            let (n, sum, sum2) = (s[*n], s[*i], s[*s2]);
            let m2 = (sum2 - sum * (sum / n)).max(0.0);
            let samp = matches!(kind, Spread::VarSamp | Spread::StddevSamp);
            let cell = if n < 1.0 {
                null(NullReason::NoValues)
            } else if samp && n < 2.0 {
                null(NullReason::TooFewValues)
            } else {
                let var = if samp { m2 / (n - 1.0) } else { m2 / n };
                value(match kind {
                    Spread::VarSamp | Spread::VarPop => var,
                    Spread::StddevSamp | Spread::StddevPop => var.sqrt(),
                })
            };
            vec![cell]
        }
        Aggregate::Histogram { buckets, .. } => buckets.iter().map(|&b| value(s[b])).collect(),
        Aggregate::Pair { kind, m } => vec![pair(*kind, m, s, err)],
        Aggregate::Ols {
            regressors,
            n,
            sy,
            syy,
            sx,
            sxx,
            sxy,
        } => ols(
            regressors.len(),
            s[*n],
            s[*sy],
            s[*syy],
            sx,
            sxx,
            sxy,
            s,
            err,
        ),
        // The value comes from the order round (`order::finish_order`); here
        // only what the phase-2 counts decide.
        Aggregate::Order { item } => vec![null(match order.get(*item) {
            Some(&(_, over)) if over > 0 => NullReason::TooManyRowsPerClient,
            Some(&(0, _)) => NullReason::NoValues,
            _ => NullReason::OrderPending,
        })],
    }
}

fn pair(kind: PairKind, m: &Moments, s: &[f64], err: f64) -> Cell {
    let null = |reason| Cell::Null { reason };
    let n = s[m.n];
    if kind == PairKind::Count {
        return Cell::Value(n);
    }
    if n < 1.0 {
        return null(NullReason::NoValues);
    }
    let (sx, sy, sxy) = (s[m.sx], s[m.sy], s[m.sxy]);
    let cxx = centred(s[m.sxx], sx, n, err);
    let cyy = centred(s[m.syy], sy, n, err);
    let cxy = sxy - sx * (sy / n);
    let v = match kind {
        PairKind::Count => Some(n),
        PairKind::CovarPop => Some(cxy / n),
        PairKind::CovarSamp if n < 2.0 => return null(NullReason::TooFewValues),
        PairKind::CovarSamp => Some(cxy / (n - 1.0)),
        PairKind::Slope => cxx.map(|cxx| cxy / cxx),
        PairKind::Intercept => cxx.map(|cxx| (sy - (cxy / cxx) * sx) / n),
        PairKind::R2 => match (cxx, cyy) {
            (None, _) => None,
            (Some(_), None) => Some(1.0),
            (Some(cxx), Some(cyy)) => Some((cxy * cxy) / (cxx * cyy)),
        },
        PairKind::Corr => cxx.zip(cyy).map(|(cxx, cyy)| cxy / (cxx * cyy).sqrt()),
    };
    v.map_or(null(NullReason::ZeroVariance), Cell::Value)
}

#[allow(clippy::too_many_arguments)]
fn ols(
    k: usize,
    n: f64,
    sy: f64,
    syy: f64,
    sx: &[usize],
    sxx: &[usize],
    sxy: &[usize],
    s: &[f64],
    err: f64,
) -> Vec<Cell> {
    let p = k + 1;
    let mut cells = Vec::with_capacity(p + 2);
    if n < 1.0 {
        cells.extend(std::iter::repeat_n(
            Cell::Null {
                reason: NullReason::NoValues,
            },
            p + 1,
        ));
        cells.push(Cell::Value(n));
        return cells;
    }
    let mut a = vec![0.0; p * p];
    a[0] = n;
    for i in 0..k {
        a[i + 1] = s[sx[i]];
        a[(i + 1) * p] = s[sx[i]];
    }
    let mut t = sxx.iter();
    for i in 0..k {
        for j in i..k {
            // `sxx` holds the upper triangle row by row: k(k+1)/2 entries.
            let v = t.next().map_or(0.0, |&idx| s[idx]);
            a[(i + 1) * p + (j + 1)] = v;
            a[(j + 1) * p + (i + 1)] = v;
        }
    }
    let mut b = vec![sy];
    b.extend(sxy.iter().map(|&i| s[i]));
    match solve_spd(&a, &b, err) {
        Ok(beta) => {
            cells.extend(beta.iter().map(|&v| Cell::Value(v)));
            let fitted: f64 = beta.iter().zip(&b).map(|(x, y)| x * y).sum();
            let sse = (syy - fitted).max(0.0);
            cells.push(match centred(syy, sy, n, err) {
                Some(sst) => Cell::Value(1.0 - sse / sst),
                None => Cell::Null {
                    reason: NullReason::ZeroVariance,
                },
            });
        }
        Err(_) => cells.extend(std::iter::repeat_n(
            Cell::Null {
                reason: NullReason::Singular,
            },
            p + 1,
        )),
    }
    cells.push(Cell::Value(n));
    cells
}
