//! Joint analytics (DESIGN.md §8): local computation where the data lives →
//! secure sum → public post-processing, with small-cell suppression.
//!
//! # How a query runs
//!
//! 1. The coordinator publishes a [`QuerySpec`] (SQL, GROUP BY domains,
//!    `min_rows`, `min_clients`) in the signed round descriptor. Each client
//!    checks the policy against its own floor ([`Policy::check_floor`]) and
//!    [`plan`]s it: a whitelisted SQL subset, refused with a reason otherwise.
//! 2. **Counts round.** Each client evaluates one statement on its own
//!    database ([`LocalTable`]: CSV, SQLite or PostgreSQL) and sends, per cell,
//!    `[contributed, min(rows, min_rows)]` ([`local_counts`]).
//! 3. The coordinator computes [`released_cells`] from the secure sum: cells
//!    with at least `min_clients` contributing clients and `min_rows` rows,
//!    and starts the statistics round with that round's release evidence,
//!    from which every client re-derives the same list
//!    (`crate::joint::QueryFollowup`).
//! 4. **Statistics round.** Each client sends, for the released cells only,
//!    its row count, contributed flag, adjusted-row count and local
//!    statistics (sums of values, squares, products, bucket counts), each
//!    encoded exactly in four 24-bit limbs of 2^−20 fixed point
//!    ([`local_stats`], see [`encode`]). Columns used as numbers are clamped
//!    to their declared bounds ([`bounds`]), so this never fails on a row.
//! 5. [`finish`] decodes the sum, re-checks the thresholds on the phase-2
//!    counts and computes the published [`QueryResult`]: averages, variances,
//!    histograms, regressions and OLS coefficients (solved publicly).
//! 6. **Order round**, only for a plan with MIN/MAX/MEDIAN/PERCENTILE_CONT
//!    ([`has_order`]): phase 2 also carries, per released cell and item, how
//!    many values the round would take and how many clients hold more than
//!    L; [`order_params`] turns that into the round's parameters, each
//!    client uploads [`local_order`], the helpers run [`order_program`] on
//!    the MPC engine, and [`finish_order`] fills those items in (see
//!    `order.rs`).
//!
//! [`plaintext`] is the twin of this flow that sums the same vectors in
//! process, for demos and tests: it shares every function above (and
//! evaluates the order program's function with [`order_plain`]), so the
//! secure result equals it bit for bit.
//!
//! # Supported SQL
//!
//! `SELECT items FROM table [WHERE condition] [GROUP BY col [, col]]`, where
//! `table` is a logical name each party maps to its own [`DataSource`], and
//! each item is a GROUP BY column or one of `COUNT(*)`, `COUNT(e)`, `SUM`,
//! `AVG`, `VAR_SAMP`/`VARIANCE`, `VAR_POP`, `STDDEV`/`STDDEV_SAMP`,
//! `STDDEV_POP`, `HISTOGRAM(e, edge, …)`, `REGR_SLOPE`, `REGR_INTERCEPT`,
//! `REGR_COUNT`, `REGR_R2`, `CORR`, `COVAR_SAMP`, `COVAR_POP` (all `(y, x)`),
//! `OLS(y, x1, …, xk)`, and — through the order round — `MIN(e)`, `MAX(e)`,
//! `MEDIAN(e)` and `PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY e)` (p a
//! literal in [0, 1]), each optionally `AS alias`. `e` is a column or
//! arithmetic over columns and numeric literals; WHERE adds comparisons,
//! AND/OR/NOT, `IN (literals)`, `BETWEEN`, `IS [NOT] NULL` and `LIKE
//! 'pattern'` (case-sensitive, no escape character, on every backend). A
//! GROUP BY column needs a declared domain: a row falls in the cell of the
//! domain value equal to the column's text form (`CAST(col AS TEXT)`, so
//! prefer text or integer columns), or in the "(other)" cell. Joins,
//! subqueries, MODE/PERCENTILE_DISC, DISTINCT, HAVING, ORDER BY/LIMIT and
//! window functions are refused with the reason and what to do instead.
//!
//! # Precision
//!
//! Each client rounds each local statistic to a multiple of 2^−20, so a
//! summed statistic is off by at most `clients · 2^−21` from the exact
//! pooled sum (plus the databases' own floating-point summation error).
//! Derived values amplify that absolute error: a variance by about
//! `2·|mean|/(n − 1)`, OLS coefficients by the conditioning of XᵀX. Values
//! of order one (standardised features) therefore carry relative errors of
//! about 1e−6 in their sums; salaries, counts and other large values far
//! less.
//!
//! # What is revealed
//!
//! The published result holds the aggregates of released cells only, with
//! the number of rows adjusted to their bounds per released cell. The
//! counts round reveals, to whoever reconstructs its sum (the coordinator,
//! the admin, and the clients of the statistics round), for every cell:
//! the number of contributing clients and the row count capped per client at
//! `min_rows`. For a cell that passes, this says only that it passes; **for a
//! cell that fails the threshold, the coordinator learns its (capped) row
//! count and the number of clients with rows in it — never any of its
//! values.** This residual leak is the price of deciding suppression without
//! the MPC engine. The "(other)" cell of a GROUP BY column holds every value
//! outside the declared domain (and NULL) and never names them. Thresholds
//! do not stop differencing: two released queries whose WHERE clauses differ
//! by one row reveal that row's contribution. A query with differential
//! privacy ([`dp`]) does: one engine round, noise generated inside the MPC
//! engine, every client charging its table's budget before it answers.
//!
//! # Never
//!
//! This module never logs or formats a local statistic or a row value; the
//! vectors it hands to the network ([`WireVector`]) are zeroized on drop and
//! print as `<redacted>`, and errors name columns, paths and lines only.

mod aggregate;
pub mod bounds;
pub mod encode;
mod error;
mod expr;
mod finish;
mod ols;
mod order;
mod policy;
mod result;
mod source;
mod spec;
mod sql;

mod csv_file;
pub mod dp;

pub use encode::{WireVector, wire_spec};
pub use error::{Phase, QueryError};
pub use finish::{counts_len, finish, released_cells, stats_len};
pub use order::{
    DEFAULT_MAX_ROWS_PER_CLIENT, MAX_ORDER_COMPARISONS, MAX_ORDER_ELEMENTS, MAX_ORDER_ITEMS,
    MAX_ROWS_PER_CLIENT_LIMIT, ORDER_BITS, ORDER_PROGRAM, ORDER_PROGRAM_VERSION, OrderCell,
    OrderCount, OrderParams, SENTINEL, finish_order, has_order, local_order, order_comparisons,
    order_len, order_params, order_plain, order_program,
};
pub use result::{
    Cell, ColumnBounds, GroupKey, NullReason, PrivacyNote, QueryResult, ResultRow, SuppressReason,
};
pub use source::{DataSource, LocalTable};
pub use spec::{
    MAX_CELLS, MAX_DOMAIN, MAX_OPERATORS, MAX_VECTOR_LEN, Policy, QueryPlan, QuerySpec, plan,
};

use encode::push_saturating;
use finish::check_released;
use zeroize::Zeroize as _;

/// The most clients one query round may sum.
pub const MAX_CLIENTS: u32 = 1024;
/// The largest `min_rows`: capped row counts must fit one wire element.
pub const MAX_MIN_ROWS: u64 = (1 << encode::LIMB_BITS) - 1;

/// Phase 1 at one client: per cell, `[contributed, min(rows, min_rows)]`
/// where `contributed` is 1 if this client has at least one row in the cell.
pub async fn local_counts(
    plan: &QueryPlan,
    table: &LocalTable,
    policy: &Policy,
) -> Result<WireVector, QueryError> {
    let policy = Policy::new(policy.min_rows, policy.min_clients)?;
    let local = table.evaluate(plan, false).await?;
    let mut out = vec![0.0; counts_len(plan)];
    for (cell, slot) in out.chunks_exact_mut(2).enumerate() {
        let rows = local
            .get(cell)
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        if rows > 0.0 {
            slot[0] = 1.0;
            slot[1] = rows.min(policy.min_rows as f64);
        }
    }
    Ok(WireVector::new(out))
}

/// Phase 2 at one client: for each released cell, in order, the row count,
/// the contributed flag, the adjusted-row count and every statistic of the
/// plan, each as four limbs of its 2^−20 fixed-point value.
///
/// Total: once the data source answered, nothing about the rows can make it
/// fail. Values were clamped to their declared bounds by the database; a
/// local sum that still leaves the encoding's range saturates, and every
/// clamped row and saturated sum is counted in the cell's adjusted-row
/// count (released under the same thresholds as the statistics).
pub async fn local_stats(
    plan: &QueryPlan,
    table: &LocalTable,
    released: &[usize],
) -> Result<WireVector, QueryError> {
    check_released(plan, released)?;
    let local = table.evaluate(plan, true).await?;
    let zeros = vec![0.0; 2 + plan.stats.len()];
    // Built in place so that an early return zeroizes what was written.
    let mut wire = WireVector::new(Vec::with_capacity(stats_len(plan, released)));
    let out = wire.values_mut();
    let mut stats = Vec::with_capacity(plan.stats.len() * encode::LIMBS);
    for &cell in released {
        let values = local.get(cell).unwrap_or(&zeros);
        let (rows, adjusted, values) = match values {
            [rows, adjusted, rest @ ..] => (*rows, *adjusted, rest),
            _ => (0.0, 0.0, &[][..]),
        };
        stats.clear();
        let saturated = values
            .iter()
            .filter(|&&v| push_saturating(&mut stats, v))
            .count();
        let mut counted = 0;
        for v in [
            rows,
            if rows > 0.0 { 1.0 } else { 0.0 },
            adjusted + saturated as f64,
        ] {
            counted += usize::from(push_saturating(out, v));
        }
        out.extend_from_slice(&stats);
        // Per order item: min(c, L) and [c > L], c = this client's number of
        // non-NULL values of the item's expression in the cell.
        let l = f64::from(plan.max_rows_per_client);
        for item in &plan.order {
            let c = values.get(item.count).copied().unwrap_or(0.0);
            for v in [c.min(l), if c > l { 1.0 } else { 0.0 }] {
                counted += usize::from(push_saturating(out, v));
            }
        }
        debug_assert_eq!(counted, 0, "counts are far below the encoding's range");
    }
    stats.zeroize();
    Ok(wire)
}

/// The plaintext twin of a secure query, for demos and tests only: evaluates
/// both phases at every source in process and sums the vectors in the clear,
/// through the same functions the secure flow uses. Never use it across
/// parties: it sees every party's vectors.
pub async fn plaintext(
    plan: &QueryPlan,
    sources: &[&LocalTable],
    policy: &Policy,
) -> Result<QueryResult, QueryError> {
    let mut counts = vec![0.0; counts_len(plan)];
    for table in sources {
        add(&mut counts, &local_counts(plan, table, policy).await?);
    }
    let released = released_cells(plan, &counts, policy)?;
    let mut stats = vec![0.0; stats_len(plan, &released)];
    for table in sources {
        add(&mut stats, &local_stats(plan, table, &released).await?);
    }
    let mut result = finish(plan, &counts, &released, &stats, policy)?;
    if has_order(plan) {
        let params = order::order_params_with(plan, policy, &released, &stats)?;
        let mut inputs = zeroize::Zeroizing::new(Vec::with_capacity(sources.len()));
        if order_len(plan, &params) > 0 {
            for table in sources {
                inputs.push(order::integers_of(
                    &local_order(plan, table, &params).await?,
                ));
            }
        }
        let outputs = order_plain(plan, &params, &inputs)?;
        finish_order(plan, &params, &outputs, &mut result)?;
    }
    Ok(result)
}

/// Element-wise sum; exact, since every element is an integer below 2^34.
fn add(total: &mut [f64], part: &WireVector) {
    for (t, v) in total.iter_mut().zip(part.expose_values()) {
        *t += v;
    }
}
