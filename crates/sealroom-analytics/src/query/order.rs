//! The order round: `MIN`, `MAX`, `MEDIAN` and `PERCENTILE_CONT` computed by
//! the MPC engine (`sealroom-mpc`, docs/mpc.md) over the clients' values,
//! opening only the requested statistic of each released cell.
//!
//! # Three phases
//!
//! 1. **Counts** and 2. **statistics** run as for every query. A plan with
//!    order items adds, per released cell and item, two hidden sums to the
//!    statistics vector: `values = Σᵢ min(cᵢ, L)` and `over = #{i : cᵢ > L}`,
//!    where `cᵢ` is client i's number of non-NULL values of the item's
//!    expression in the cell and `L` = [`QueryPlan::max_rows_per_client`].
//!    A cell with `over > 0` gets NULL for the item
//!    ([`NullReason::TooManyRowsPerClient`]: the round would miss values),
//!    one with `values = 0` gets NULL ([`NullReason::NoValues`]); the
//!    others are *active* and go to phase 3.
//! 3. **Order** (one engine round, [`order_program`]). Each client uploads
//!    one integer vector ([`local_order`]); for every active (cell, item),
//!    cell-major then item order:
//!    * `MIN`: 1 element, its smallest value in the cell, or `+S` if none;
//!    * `MAX`: 1 element, its largest value, or `−S` if none;
//!    * `MEDIAN`, `PERCENTILE_CONT(p)`: `L` elements, its non-NULL values
//!      (the `L` smallest; all of them, as `cᵢ ≤ L` in an active cell)
//!      padded with `+S` — none when an earlier percentile item of the cell
//!      has the same expression: the round sorts those values once and
//!      reads every such item's ranks from that sort ([`order_len`]).
//!
//!    Values are clamped to the declared bounds (as in every phase) and
//!    encoded in fixed point: `q = round_ties_even(v · 2^F)`, with `F` per
//!    item the largest in `0..=32` such that the expression's range times
//!    `2^F` stays within `2^48` (the planner refuses a wider range). The
//!    sentinel is `S = 2^50`. Every element is an integer below `2^51` in
//!    magnitude, exact in an `f64` and in a step-1 quantization.
//!
//! # The program
//!
//! `client_inputs(n, len, 64)`, then for every active (cell, item), over the
//! `n·w` elements the clients uploaded for it (`w` = 1 or `L`):
//! * `MIN`/`MAX`: the engine's tournament (`⌈log₂ n⌉` comparison layers);
//!   only the extreme is opened;
//! * percentiles: Batcher's odd–even merge sort (K. E. Batcher, "Sorting
//!   networks and their applications", AFIPS 1968, in `sealroom_mpc::ops`),
//!   padding sorts last; with `N = values` (public since phase 2), the
//!   public ranks `lo = ⌊p(N−1)⌋`, `hi = ⌈p(N−1)⌉` and the public weight
//!   `G = round((p(N−1) − lo) · 2^32)`, it opens only
//!   `a·(2^32 − G) + b·G` for the elements `a`, `b` of ranks `lo`, `hi` —
//!   the percentile (PostgreSQL's `percentile_cont`: linear interpolation
//!   between the closest ranks), not the two neighbours.
//!
//! Comparisons run at `k` = [`ORDER_BITS`] = 52 bits (values and sentinels
//! lie in `(−2^51, 2^51)`; `k + κ + 2 = 94 < 127`). Nothing else is opened:
//! the engine's only other openings are its masked comparison openings and
//! MAC checks (docs/mpc.md). Name and version: `"sql-order"`, 2 (version 1
//! sorted the same column once per percentile item).
//!
//! # Precision
//!
//! A published MIN/MAX is the fixed-point value of the exact (clamped)
//! extreme: off by at most `2^−(F+1)`. A percentile is off by at most
//! `2^−(F+1) + |b − a| · 2^−33` from PostgreSQL's value over the clamped
//! values (plus one rounding to `f64`).
//!
//! # What is revealed
//!
//! Besides the published cells: to whoever reconstructs the statistics sum,
//! per released cell and item, `values` and `over` (a cell's count of
//! values capped per client at `L`, and how many clients exceed `L`). The
//! order round opens one number per active (cell, item). A client that
//! sends values outside the bounds (only a malicious one can) can move the
//! statistics of the cells it contributes to — as it can by lying about its
//! rows — and a decoded value outside the bounds is published as NULL
//! ([`NullReason::OrderInconsistent`]). Such out-of-range inputs (up to
//! `2^63`) also weaken the statistical masking of the comparisons that
//! involve them from `2^−40` to about `2^−29` (the engine does not
//! range-check client inputs).
//!
//! # Never
//!
//! No value, quantized value or client vector is logged or formatted:
//! client vectors are [`WireVector`]s and intermediate buffers are zeroized.

use sealroom_mpc::F127;
use sealroom_mpc::ops::batcher_layers;
use sealroom_mpc::program::{Program, ProgramBuilder};
use zeroize::{Zeroize as _, Zeroizing};

use super::MAX_CLIENTS;
use super::aggregate::Aggregate;
use super::bounds::{self, Bounds, Interval};
use super::encode::WireVector;
use super::error::QueryError;
use super::expr::Expr;
use super::finish::{check_released, decode_stats, threshold};
use super::result::{Cell, NullReason, QueryResult};
use super::source::{LocalCells, LocalTable};
use super::spec::{MAX_CELLS, Policy, QueryPlan};

/// L when the query does not set it.
pub const DEFAULT_MAX_ROWS_PER_CLIENT: u32 = 64;
/// The largest L.
pub const MAX_ROWS_PER_CLIENT_LIMIT: u32 = 1024;
/// The most order items (MIN/MAX/MEDIAN/PERCENTILE_CONT) of one query.
pub const MAX_ORDER_ITEMS: usize = 16;
/// The most elements all clients of one order round upload together
/// (clients × vector length).
pub const MAX_ORDER_ELEMENTS: usize = 1 << 22;
/// Name of the order round's engine program.
pub const ORDER_PROGRAM: &str = "sql-order";
/// Version of the order round's engine program.
pub const ORDER_PROGRAM_VERSION: u32 = 2;
/// Bit length `k` of the comparisons: every element lies in `(−2^51, 2^51)`.
pub const ORDER_BITS: u32 = 52;
/// Every encoded value lies in `[−2^48, 2^48]`.
pub const VALUE_BITS: u32 = 48;
/// The padding sentinel `S = 2^50`: `+S` sorts after every value, `−S`
/// before.
pub const SENTINEL: i64 = 1 << 50;
/// A percentile's interpolation weight is a multiple of `2^−32`.
pub const WEIGHT_BITS: u32 = 32;
/// The most fractional bits of an encoded value.
pub const MAX_FRAC_BITS: u32 = 32;

const PARAMS_MAGIC: &[u8; 4] = b"SQOP";
const PARAMS_VERSION: u8 = 1;
const PARAMS_HEADER: usize = 4 + 1 + 3 * 4;

/// Which order statistic an item computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum OrderKind {
    Min,
    Max,
    /// `PERCENTILE_CONT(p)`, p in [0, 1]; MEDIAN is p = 0.5.
    Percentile(f64),
}

/// One MIN/MAX/MEDIAN/PERCENTILE_CONT of a plan.
#[derive(Clone, Debug)]
pub(crate) struct OrderItem {
    pub(crate) kind: OrderKind,
    pub(crate) expr: Expr,
    /// Index of the statistic "rows where `expr` is not NULL".
    pub(crate) count: usize,
    /// F: values are encoded as multiples of 2^−F.
    pub(crate) frac_bits: u32,
    /// The expression's per-row range over the declared bounds.
    pub(crate) interval: Interval,
    /// The output's name, for messages.
    pub(crate) label: String,
}

impl OrderItem {
    pub(crate) fn new(kind: OrderKind, expr: Expr, count: usize, label: &str) -> OrderItem {
        OrderItem {
            kind,
            expr,
            count,
            frac_bits: 0,
            interval: Interval { lo: 0.0, hi: 0.0 },
            label: label.to_owned(),
        }
    }

    /// Elements per client of one active cell.
    fn width(&self, l: u32) -> usize {
        match self.kind {
            OrderKind::Min | OrderKind::Max => 1,
            OrderKind::Percentile(_) => l as usize,
        }
    }

    /// What a client sends when it has no (more) value.
    fn padding(&self) -> i64 {
        match self.kind {
            OrderKind::Max => -SENTINEL,
            OrderKind::Min | OrderKind::Percentile(_) => SENTINEL,
        }
    }

    /// `round_ties_even(v · 2^F)`, saturated at ±2^48 (NaN reads as 0): total.
    fn quantize(&self, v: f64) -> i64 {
        let limit = (1i64 << VALUE_BITS) as f64;
        let q = (v * f64::from(2u32).powi(self.frac_bits as i32)).round_ties_even();
        if q.is_nan() {
            0
        } else {
            // In range, an integral f64 converts exactly.
            q.clamp(-limit, limit) as i64
        }
    }

    /// The encodings of the range's ends: every honest value's encoding
    /// lies between them (rounding is monotone).
    fn quantized_range(&self) -> (i128, i128) {
        (
            i128::from(self.quantize(self.interval.lo)),
            i128::from(self.quantize(self.interval.hi)),
        )
    }
}

/// Checks L.
pub(crate) fn check_max_rows(l: u32) -> Result<u32, QueryError> {
    if l == 0 || l > MAX_ROWS_PER_CLIENT_LIMIT {
        return Err(QueryError::invalid(
            "max_rows_per_client",
            format!("it must be 1 to {MAX_ROWS_PER_CLIENT_LIMIT}"),
        ));
    }
    Ok(l)
}

/// Completes the planned items once the bounds are known: each
/// expression's range (every column bounded, no division near zero) and
/// its fixed-point scale.
pub(crate) fn finish_items(items: &mut [OrderItem], bounds: &Bounds) -> Result<(), QueryError> {
    if items.len() > MAX_ORDER_ITEMS {
        return Err(QueryError::unsupported(
            format!("{} MIN/MAX/MEDIAN/PERCENTILE_CONT items", items.len()),
            format!("a query may hold at most {MAX_ORDER_ITEMS}; split it"),
        ));
    }
    let limit = (1u64 << VALUE_BITS) as f64;
    for item in items {
        let range = bounds::range(&item.expr, bounds, &item.label).map_err(|e| match e {
            QueryError::Invalid { what, why } => QueryError::Invalid {
                what: format!("{what} in {}", item.label),
                why,
            },
            other => other,
        })?;
        let magnitude = range.interval.lo.abs().max(range.interval.hi.abs());
        if magnitude > limit {
            return Err(QueryError::unsupported(
                format!("the range of {}", item.label),
                "it exceeds 2^48, the order round's value range; narrow the bounds",
            ));
        }
        let mut f = MAX_FRAC_BITS;
        while f > 0 && magnitude * f64::from(2u32).powi(f as i32) > limit {
            f -= 1;
        }
        item.frac_bits = f;
        item.interval = range.interval;
    }
    Ok(())
}

/// The longest order vector one cell can need (every item active).
pub(crate) fn max_len_per_cell(plan: &QueryPlan) -> usize {
    plan.order
        .iter()
        .map(|i| i.width(plan.max_rows_per_client))
        .sum()
}

/// Whether the plan has MIN/MAX/MEDIAN/PERCENTILE_CONT items, i.e. needs
/// the order round after the statistics round.
pub fn has_order(plan: &QueryPlan) -> bool {
    !plan.order.is_empty()
}

/// The phase-2 counts of one (released cell, order item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCount {
    /// `Σᵢ min(cᵢ, L)`: the values the round sorts (N of the ranks).
    pub values: u32,
    /// Clients with more than L values.
    pub over: u32,
}

impl OrderCount {
    /// Whether the order round computes this (cell, item): no client over
    /// L and at least one value.
    pub fn active(&self) -> bool {
        self.over == 0 && self.values > 0
    }
}

/// One released cell that passed the thresholds again in phase 2, with the
/// counts of every order item (in SELECT order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderCell {
    /// The cell index.
    pub cell: u32,
    /// Per order item.
    pub items: Vec<OrderCount>,
}

/// What every client and helper of an order round must agree on: L and,
/// per cell, the phase-2 counts. Public (derived from the statistics sum
/// under the release thresholds); signed into the round descriptor as
/// [`OrderParams::to_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderParams {
    max_rows_per_client: u32,
    items: u32,
    cells: Vec<OrderCell>,
}

impl OrderParams {
    /// L.
    pub fn max_rows_per_client(&self) -> u32 {
        self.max_rows_per_client
    }

    /// The cells, in increasing order.
    pub fn cells(&self) -> &[OrderCell] {
        &self.cells
    }

    /// Number of engine outputs (active (cell, item) pairs).
    pub fn outputs(&self) -> usize {
        self.active().count()
    }

    /// The canonical encoding: `"SQOP"`, version 1, then little-endian
    /// `u32`s: L, items per cell, cells, and per cell its index followed by
    /// `values, over` per item.
    pub fn to_bytes(&self) -> Vec<u8> {
        let per_cell = 4 + 8 * self.items as usize;
        let mut out = Vec::with_capacity(PARAMS_HEADER + self.cells.len() * per_cell);
        out.extend_from_slice(PARAMS_MAGIC);
        out.push(PARAMS_VERSION);
        for v in [
            self.max_rows_per_client,
            self.items,
            self.cells.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for c in &self.cells {
            out.extend_from_slice(&c.cell.to_le_bytes());
            for i in &c.items {
                out.extend_from_slice(&i.values.to_le_bytes());
                out.extend_from_slice(&i.over.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`OrderParams::to_bytes`] strictly: the exact length (checked
    /// before anything is allocated), L in range, 1 to [`MAX_ORDER_ITEMS`]
    /// items, at most [`MAX_CELLS`] cells listed in increasing order, and
    /// counts that 1024 clients can produce.
    pub fn from_bytes(bytes: &[u8]) -> Result<OrderParams, QueryError> {
        let bad = |reason| QueryError::InvalidOrderParams { reason };
        let header = bytes.get(..PARAMS_HEADER).ok_or(bad("truncated header"))?;
        if &header[..4] != PARAMS_MAGIC || header[4] != PARAMS_VERSION {
            return Err(bad("unknown format or version"));
        }
        let word = |at: usize| -> u32 {
            let mut w = [0u8; 4];
            if let Some(s) = bytes.get(at..at + 4) {
                w.copy_from_slice(s);
            }
            u32::from_le_bytes(w)
        };
        let l = word(5);
        let items = word(9);
        let n_cells = word(13);
        if l == 0 || l > MAX_ROWS_PER_CLIENT_LIMIT {
            return Err(bad("max_rows_per_client out of range"));
        }
        if items == 0 || items as usize > MAX_ORDER_ITEMS {
            return Err(bad("order item count out of range"));
        }
        if n_cells as usize > MAX_CELLS {
            return Err(bad("cell count out of range"));
        }
        let per_cell = 4 + 8 * items as usize;
        let expected = PARAMS_HEADER + n_cells as usize * per_cell;
        if bytes.len() < expected {
            return Err(bad("truncated"));
        }
        if bytes.len() > expected {
            return Err(bad("trailing bytes"));
        }
        let max_values = MAX_CLIENTS * l;
        let mut cells: Vec<OrderCell> = Vec::with_capacity(n_cells as usize);
        for c in 0..n_cells as usize {
            let at = PARAMS_HEADER + c * per_cell;
            let cell = word(at);
            if cell as usize >= MAX_CELLS || cells.last().is_some_and(|p| p.cell >= cell) {
                return Err(bad("cells out of range or not in increasing order"));
            }
            let mut counts = Vec::with_capacity(items as usize);
            for i in 0..items as usize {
                let values = word(at + 4 + 8 * i);
                let over = word(at + 8 + 8 * i);
                if values > max_values || over > MAX_CLIENTS {
                    return Err(bad("counts larger than 1024 clients can produce"));
                }
                counts.push(OrderCount { values, over });
            }
            cells.push(OrderCell {
                cell,
                items: counts,
            });
        }
        Ok(OrderParams {
            max_rows_per_client: l,
            items,
            cells,
        })
    }

    /// Refuses parameters made for another plan.
    fn check(&self, plan: &QueryPlan) -> Result<(), QueryError> {
        let bad = |reason| QueryError::InvalidOrderParams { reason };
        if self.max_rows_per_client != plan.max_rows_per_client {
            return Err(bad("max_rows_per_client differs from the plan's"));
        }
        if self.items as usize != plan.order.len() {
            return Err(bad("the order item count differs from the plan's"));
        }
        if self
            .cells
            .iter()
            .any(|c| c.cell as usize >= plan.cells() || c.items.len() != plan.order.len())
        {
            return Err(bad("a cell is not one of the plan's"));
        }
        Ok(())
    }

    /// The active (cell, item) pairs in vector and output order.
    fn active(&self) -> impl Iterator<Item = (u32, usize, OrderCount)> + '_ {
        self.cells.iter().flat_map(|c| {
            c.items
                .iter()
                .enumerate()
                .filter(|(_, n)| n.active())
                .map(move |(i, n)| (c.cell, i, *n))
        })
    }

    /// Per active (cell, item), in [`OrderParams::active`] order: its item
    /// and, for a percentile whose cell has an earlier active percentile
    /// over the same expression, the position (in this order) of the first
    /// such one, whose uploaded values and sort it shares. Items outside
    /// the plan are skipped (`check` refuses such parameters first).
    fn layout<'p>(&self, plan: &'p QueryPlan) -> Vec<Slot<'p>> {
        let mut slots: Vec<Slot<'p>> = Vec::new();
        for (cell, i, count) in self.active() {
            let Some(item) = plan.order.get(i) else {
                continue;
            };
            let shares = match item.kind {
                OrderKind::Percentile(_) => slots.iter().position(|s| {
                    s.cell == cell
                        && s.shares.is_none()
                        && matches!(s.item.kind, OrderKind::Percentile(_))
                        && s.item.expr == item.expr
                }),
                OrderKind::Min | OrderKind::Max => None,
            };
            slots.push(Slot {
                cell,
                index: i,
                item,
                count,
                shares,
            });
        }
        slots
    }
}

/// One active (cell, item) of an order round ([`OrderParams::layout`]).
struct Slot<'p> {
    cell: u32,
    /// The item's position in the plan.
    index: usize,
    item: &'p OrderItem,
    count: OrderCount,
    /// The earlier slot whose values and sort this percentile shares.
    shares: Option<usize>,
}

impl Slot<'_> {
    /// Elements per client this slot adds to the order vector.
    fn width(&self, l: u32) -> usize {
        if self.shares.is_some() {
            0
        } else {
            self.item.width(l)
        }
    }
}

/// The order-round parameters from phase 2's summed vector: the released
/// cells that pass the spec's thresholds again on the phase-2 counts (a
/// cell suppressed there stays suppressed and is not listed), each with
/// its items' `values` and `over`. `released` must be the phase-2 list.
pub fn order_params(
    plan: &QueryPlan,
    policy: &Policy,
    released: &[usize],
    stats_sum: &[f64],
) -> Result<OrderParams, QueryError> {
    order_params_with(plan, policy, released, stats_sum)
}

pub(crate) fn order_params_with(
    plan: &QueryPlan,
    policy: &Policy,
    released: &[usize],
    stats_sum: &[f64],
) -> Result<OrderParams, QueryError> {
    if !has_order(plan) {
        return Err(QueryError::InvalidOrderParams {
            reason: "the query has no MIN, MAX, MEDIAN or PERCENTILE_CONT",
        });
    }
    let policy = Policy::new(policy.min_rows, policy.min_clients)?;
    check_released(plan, released)?;
    let decoded = decode_stats(plan, released, stats_sum)?;
    let mut cells = Vec::new();
    for (&cell, d) in released.iter().zip(&decoded) {
        if threshold(&policy, d.clients as i64, d.rows as i64).is_some() {
            continue;
        }
        let items = d
            .order
            .iter()
            .map(|&(values, over)| OrderCount {
                // Both were checked against 1024 clients · L ≤ 2^20.
                values: u32::try_from(values).unwrap_or(u32::MAX),
                over: u32::try_from(over).unwrap_or(u32::MAX),
            })
            .collect();
        cells.push(OrderCell {
            // Below MAX_CELLS (`check_released`).
            cell: cell as u32,
            items,
        });
    }
    Ok(OrderParams {
        max_rows_per_client: plan.max_rows_per_client,
        items: plan.order.len() as u32,
        cells,
    })
}

/// Length of every client's order vector: per active (cell, item), 1 for
/// MIN/MAX and L for a percentile (0 for a percentile sharing an earlier
/// item's values: same cell, same expression). 0 means there is nothing to
/// compute: skip the engine round and call [`finish_order`] with no
/// outputs.
pub fn order_len(plan: &QueryPlan, params: &OrderParams) -> usize {
    params
        .layout(plan)
        .iter()
        .map(|s| s.width(params.max_rows_per_client))
        .sum()
}

/// Phase 3 at one client: its order vector (see the module doc), integer
/// elements below 2^51 in magnitude. Total once the data source answered:
/// values are clamped by the database and saturated when encoded.
pub async fn local_order(
    plan: &QueryPlan,
    table: &LocalTable,
    params: &OrderParams,
) -> Result<WireVector, QueryError> {
    params.check(plan)?;
    let l = params.max_rows_per_client;
    let mut per_item = Vec::with_capacity(plan.order.len());
    for (i, item) in plan.order.iter().enumerate() {
        if !params.active().any(|(_, j, _)| j == i) {
            per_item.push(None);
            continue;
        }
        let (limit, descending) = match item.kind {
            OrderKind::Min => (1, false),
            OrderKind::Max => (1, true),
            OrderKind::Percentile(_) => (l, false),
        };
        let local = table
            .order_values(plan, &item.expr, limit, descending)
            .await?;
        per_item.push(Some(ItemValues::new(&local, item)));
    }
    // Built in place so that an early return zeroizes what was written.
    let mut wire = WireVector::new(Vec::with_capacity(order_len(plan, params)));
    let out = wire.values_mut();
    for slot in params.layout(plan) {
        let item = slot.item;
        let Some(Some(values)) = per_item.get(slot.index) else {
            continue;
        };
        if slot.width(l) == 0 {
            continue;
        }
        let cell = slot.cell;
        let mine = values.of(cell as usize);
        let pad = item.padding();
        match item.kind {
            OrderKind::Min => out.push(mine.first().copied().unwrap_or(pad) as f64),
            OrderKind::Max => out.push(mine.last().copied().unwrap_or(pad) as f64),
            OrderKind::Percentile(_) => {
                let w = item.width(l);
                out.extend(
                    mine.iter()
                        .copied()
                        .chain(std::iter::repeat(pad))
                        .take(w)
                        .map(|q| q as f64),
                );
            }
        }
    }
    Ok(wire)
}

/// One item's local values, encoded and sorted by (cell, value).
struct ItemValues {
    cells: Vec<usize>,
    values: Zeroizing<Vec<i64>>,
}

impl ItemValues {
    fn new(local: &LocalCells, item: &OrderItem) -> ItemValues {
        let q: Zeroizing<Vec<i64>> =
            Zeroizing::new(local.values.iter().map(|&v| item.quantize(v)).collect());
        let mut perm: Vec<usize> = (0..local.cells.len().min(q.len())).collect();
        perm.sort_unstable_by_key(|&j| (local.cells[j], q[j]));
        ItemValues {
            cells: perm.iter().map(|&j| local.cells[j]).collect(),
            values: Zeroizing::new(perm.iter().map(|&j| q[j]).collect()),
        }
    }

    /// This client's values in `cell`, ascending.
    fn of(&self, cell: usize) -> &[i64] {
        let a = self.cells.partition_point(|&c| c < cell);
        let b = self.cells.partition_point(|&c| c <= cell);
        self.values.get(a..b).unwrap_or(&[])
    }
}

/// The public ranks and weight of a percentile over `values` sorted
/// elements (`available` in all, padding included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ranks {
    lo: usize,
    hi: usize,
    /// The weight of rank `hi`, in units of 2^−32.
    weight: u64,
}

impl Ranks {
    fn new(p: f64, values: u32, available: usize) -> Ranks {
        let pos = p * f64::from(values.max(1) - 1);
        let (lo, hi) = (pos.floor(), pos.ceil());
        let weight = ((pos - lo) * f64::from(2u32).powi(WEIGHT_BITS as i32)).round() as u64;
        // With fewer clients than in phase 2 a rank may pass the uploaded
        // elements: it reads the last (padding), and decodes as
        // inconsistent.
        let top = available.saturating_sub(1);
        Ranks {
            lo: (lo as usize).min(top),
            hi: (hi as usize).min(top),
            weight,
        }
    }
}

/// The order round's engine program for `clients` uploads: deterministic
/// from the plan, the parameters and the number of clients (helpers and the
/// coordinator build it independently and compare [`Program::hash`]).
/// Outputs, in order: one per active (cell, item), the signed value
/// `q` (MIN/MAX) or `a·(2^32 − G) + b·G` (percentiles).
///
/// The round must run over exactly the clients whose phase-2 vectors were
/// summed (as phase 2 runs over exactly phase 1's): the ranks come from
/// phase 2's counts, so with a client missing a percentile would silently
/// read another rank. Rerun phases 2 and 3 instead.
///
/// Cost: a percentile sorts `clients · L` elements with Batcher's network,
/// about `m·log₂²m / 4` comparisons at 52 bits for `m` elements (each ≈ 120
/// triples and 100 random bits, docs/mpc.md "Costs"); MIN/MAX take
/// `clients − 1`. Clients' blocks are not trusted to arrive sorted (a
/// merge-only network would let a malicious client steer which honest value
/// lands on the opened rank), so the whole network runs.
pub fn order_program(
    plan: &QueryPlan,
    params: &OrderParams,
    clients: usize,
) -> Result<Program, QueryError> {
    params.check(plan)?;
    let refuse = |reason: String| QueryError::OrderProgram { reason };
    if clients == 0 || clients > MAX_CLIENTS as usize {
        return Err(refuse(format!("it needs 1 to {MAX_CLIENTS} clients")));
    }
    let len = order_len(plan, params);
    if len == 0 {
        return Err(refuse(
            "no released cell needs it (skip the round; finish_order takes no outputs)".into(),
        ));
    }
    if clients.saturating_mul(len) > MAX_ORDER_ELEMENTS {
        return Err(refuse(format!(
            "{clients} clients × {len} elements exceed {MAX_ORDER_ELEMENTS}; use a smaller max_rows_per_client or fewer cells"
        )));
    }
    let comparisons = order_comparisons(plan, params, clients);
    if comparisons > MAX_ORDER_COMPARISONS {
        return Err(refuse(format!(
            "it needs {comparisons} secure comparisons, more than the {MAX_ORDER_COMPARISONS} one engine round runs within its aggregation window; use a smaller max_rows_per_client, fewer GROUP BY values or fewer MEDIAN/PERCENTILE_CONT items"
        )));
    }
    let l = params.max_rows_per_client;
    let mut b = ProgramBuilder::new(ORDER_PROGRAM, ORDER_PROGRAM_VERSION);
    let x = b.client_inputs(clients, len, 64);
    let mut offset = 0usize;
    let slots = params.layout(plan);
    // The sorted values of each percentile slot that does not share.
    let mut sorts = vec![None; slots.len()];
    for (k, slot) in slots.iter().enumerate() {
        let item = slot.item;
        let w = item.width(l);
        let fresh = slot.shares.is_none();
        let gather = |b: &mut ProgramBuilder, offset: usize| {
            let idx: Vec<u32> = (0..clients)
                .flat_map(|c| (0..w).map(move |j| (c * len + offset + j) as u32))
                .collect();
            b.gather(x, &idx)
        };
        let out = match item.kind {
            OrderKind::Min => {
                let g = gather(&mut b, offset);
                b.min(g, ORDER_BITS)
            }
            OrderKind::Max => {
                let g = gather(&mut b, offset);
                b.max(g, ORDER_BITS)
            }
            OrderKind::Percentile(p) => {
                let r = Ranks::new(p, slot.count.values, clients * w);
                let sorted = match slot.shares.and_then(|j| sorts.get(j).copied().flatten()) {
                    Some(sorted) => sorted,
                    None => {
                        let g = gather(&mut b, offset);
                        let sorted = b.sort(g, ORDER_BITS);
                        sorts[k] = Some(sorted);
                        sorted
                    }
                };
                let lo = b.gather(sorted, &[r.lo as u32]);
                let hi = b.gather(sorted, &[r.hi as u32]);
                let lo = b.mul_const(lo, F127::from_u64((1u64 << WEIGHT_BITS) - r.weight));
                let hi = b.mul_const(hi, F127::from_u64(r.weight));
                b.add(lo, hi)
            }
        };
        b.output(out);
        if fresh {
            offset += w;
        }
    }
    b.build().map_err(|e| refuse(e.to_string()))
}

/// The most secure comparisons one order round may run. At 52 bits a
/// comparison costs about 4 KiB per helper and ~60 µs of online time on
/// one core (docs/mpc.md, "Costs"), plus its preprocessing: 200,000 keep an
/// order round well inside the engine rounds' 120 s aggregation window on
/// a two-core machine.
pub const MAX_ORDER_COMPARISONS: usize = 200_000;

/// The secure comparisons [`order_program`] runs: per active (cell, item),
/// `n − 1` for MIN/MAX (a tournament over the clients), the comparators of
/// Batcher's network over `n·L` elements for a percentile (none for one
/// that shares an earlier item's sort).
pub fn order_comparisons(plan: &QueryPlan, params: &OrderParams, clients: usize) -> usize {
    let l = params.max_rows_per_client;
    params
        .layout(plan)
        .iter()
        .map(|slot| match slot.item.kind {
            OrderKind::Min | OrderKind::Max => clients.saturating_sub(1),
            OrderKind::Percentile(_) if slot.shares.is_some() => 0,
            OrderKind::Percentile(_) => batcher_layers(clients * slot.item.width(l))
                .iter()
                .map(Vec::len)
                .sum(),
        })
        .sum()
}

/// The plaintext twin of [`order_program`], for demos and tests only: the
/// same function over the clients' vectors in the clear (the same Batcher
/// network, ranks and weights). A short vector reads as padding; extra
/// elements are ignored. Returns `Result` (not a bare `Vec`) to refuse
/// parameters made for another plan.
pub fn order_plain(
    plan: &QueryPlan,
    params: &OrderParams,
    inputs: &[Vec<i64>],
) -> Result<Vec<i128>, QueryError> {
    params.check(plan)?;
    let len = order_len(plan, params);
    let l = params.max_rows_per_client;
    let mut outputs = Vec::with_capacity(params.outputs());
    let mut offset = 0usize;
    let slots = params.layout(plan);
    // The sorted values of each percentile slot that does not share.
    let mut sorts: Vec<Option<Zeroizing<Vec<i64>>>> = vec![None; slots.len()];
    for (k, slot) in slots.iter().enumerate() {
        let item = slot.item;
        let w = item.width(l);
        let pad = item.padding();
        let shared = slot.shares.and_then(|j| sorts.get(j).cloned().flatten());
        let fresh = slot.shares.is_none();
        let mut x: Zeroizing<Vec<i64>> = match shared {
            Some(sorted) => sorted,
            None => Zeroizing::new(
                inputs
                    .iter()
                    .flat_map(|v| (0..w).map(move |j| v.get(offset + j).copied().unwrap_or(pad)))
                    .collect(),
            ),
        };
        let out = match item.kind {
            OrderKind::Min => x.iter().copied().min().map(i128::from),
            OrderKind::Max => x.iter().copied().max().map(i128::from),
            OrderKind::Percentile(p) => {
                if fresh {
                    for layer in batcher_layers(x.len()) {
                        for (a, b) in layer {
                            if x[b] < x[a] {
                                x.swap(a, b);
                            }
                        }
                    }
                    sorts[k] = Some(x.clone());
                }
                let r = Ranks::new(p, slot.count.values, x.len());
                let (lo, hi) = (x.get(r.lo).copied(), x.get(r.hi).copied());
                lo.zip(hi).map(|(a, b)| {
                    i128::from(a) * i128::from((1u64 << WEIGHT_BITS) - r.weight)
                        + i128::from(b) * i128::from(r.weight)
                })
            }
        };
        x.zeroize();
        // No client: the engine refuses to run; the twin outputs padding.
        outputs.push(out.unwrap_or(i128::from(pad)));
        if fresh {
            offset += w;
        }
    }
    debug_assert!(offset == len);
    Ok(outputs)
}

/// Fills the order items of a phase-2 result ([`super::finish`] over the
/// same statistics sum) from the order round's outputs (signed, in output
/// order). Cells the round did not compute keep their phase-2 state
/// (suppressed, or NULL with the reason); a decoded value outside the
/// item's bounds becomes NULL ([`NullReason::OrderInconsistent`]).
pub fn finish_order(
    plan: &QueryPlan,
    params: &OrderParams,
    outputs: &[i128],
    result: &mut QueryResult,
) -> Result<(), QueryError> {
    params.check(plan)?;
    let expected = params.outputs();
    if outputs.len() != expected {
        return Err(QueryError::OrderOutputs {
            expected,
            actual: outputs.len(),
        });
    }
    let bad = |reason| QueryError::InvalidOrderParams { reason };
    if result.rows.len() != plan.cells() || result.columns != plan.columns() {
        return Err(bad("the result does not belong to this plan"));
    }
    let columns = item_columns(plan);
    for ((cell, i, _), &out) in params.active().zip(outputs) {
        let (Some(item), Some(&col)) = (plan.order.get(i), columns.get(i)) else {
            return Err(bad("an order item is not one of the plan's"));
        };
        let slot = result
            .rows
            .get_mut(cell as usize)
            .and_then(|r| r.cells.get_mut(col))
            .ok_or(bad("a cell is not one of the plan's"))?;
        if *slot
            != (Cell::Null {
                reason: NullReason::OrderPending,
            })
        {
            return Err(bad(
                "a result cell is not awaiting the order round (another phase-2 sum?)",
            ));
        }
        *slot = decode(item, out);
    }
    Ok(())
}

/// One output back to a value, or NULL if it cannot come from values
/// within the item's bounds.
fn decode(item: &OrderItem, out: i128) -> Cell {
    let (qlo, qhi) = item.quantized_range();
    let scale = match item.kind {
        OrderKind::Min | OrderKind::Max => 1i128,
        OrderKind::Percentile(_) => 1i128 << WEIGHT_BITS,
    };
    if out < qlo * scale || out > qhi * scale {
        return Cell::Null {
            reason: NullReason::OrderInconsistent,
        };
    }
    // Dividing by a power of two is exact; `out as f64` rounds once.
    let unit = scale as f64 * f64::from(2u32).powi(item.frac_bits as i32);
    Cell::Value(out as f64 / unit)
}

/// The result column of each order item.
fn item_columns(plan: &QueryPlan) -> Vec<usize> {
    let mut columns = vec![usize::MAX; plan.order.len()];
    let mut col = 0;
    for o in &plan.outputs {
        if let Aggregate::Order { item } = o.agg
            && let Some(slot) = columns.get_mut(item)
        {
            *slot = col;
        }
        col += o.column_names().len();
    }
    columns
}

/// The signed integers of an order vector, for [`order_plain`] (its
/// elements are integers below 2^51 in magnitude).
pub(crate) fn integers_of(v: &WireVector) -> Vec<i64> {
    v.expose_values().iter().map(|&x| x as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> OrderParams {
        OrderParams {
            max_rows_per_client: 4,
            items: 2,
            cells: vec![
                OrderCell {
                    cell: 0,
                    items: vec![
                        OrderCount { values: 7, over: 0 },
                        OrderCount { values: 0, over: 0 },
                    ],
                },
                OrderCell {
                    cell: 3,
                    items: vec![
                        OrderCount { values: 9, over: 1 },
                        OrderCount { values: 2, over: 0 },
                    ],
                },
            ],
        }
    }

    #[test]
    fn params_round_trip_and_refuse_malformed_bytes() {
        let p = params();
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), PARAMS_HEADER + 2 * (4 + 16));
        assert_eq!(OrderParams::from_bytes(&bytes).expect("decodes"), p);
        assert_eq!(p.outputs(), 2);
        let reason = |b: &[u8]| match OrderParams::from_bytes(b) {
            Err(QueryError::InvalidOrderParams { reason }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(reason(&bytes[..bytes.len() - 1]), "truncated");
        assert_eq!(reason(&bytes[..10]), "truncated header");
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(reason(&long), "trailing bytes");
        let mut huge = bytes.clone();
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(reason(&huge), "cell count out of range");
        let mut items = bytes.clone();
        items[9..13].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(reason(&items), "order item count out of range");
        let mut l = bytes.clone();
        l[5..9].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(reason(&l), "max_rows_per_client out of range");
        let mut order = bytes.clone();
        order[PARAMS_HEADER + 20..PARAMS_HEADER + 24].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            reason(&order),
            "cells out of range or not in increasing order"
        );
        let mut count = bytes.clone();
        count[PARAMS_HEADER + 4..PARAMS_HEADER + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            reason(&count),
            "counts larger than 1024 clients can produce"
        );
        let mut magic = bytes;
        magic[0] = b'X';
        assert_eq!(reason(&magic), "unknown format or version");
    }

    #[test]
    fn ranks_follow_postgres_percentile_cont() {
        // N = 5, p = 0.5: rank 2 exactly.
        assert_eq!(
            Ranks::new(0.5, 5, 12),
            Ranks {
                lo: 2,
                hi: 2,
                weight: 0
            }
        );
        // N = 4, p = 0.5: halfway between ranks 1 and 2.
        assert_eq!(
            Ranks::new(0.5, 4, 12),
            Ranks {
                lo: 1,
                hi: 2,
                weight: 1 << 31
            }
        );
        // N = 1: rank 0 whatever p.
        assert_eq!(Ranks::new(0.9, 1, 4).hi, 0);
        // A rank beyond the uploaded elements reads the last one.
        assert_eq!(Ranks::new(1.0, 30, 8).hi, 7);
    }
}
