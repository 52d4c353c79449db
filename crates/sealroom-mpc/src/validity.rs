//! Input validity inside the engine (issue #15, first part): the sum of
//! the clients' vectors whose **exact squared L2 norm** is within a bound,
//! with each client's verdict.
//!
//! Exactness. The clients upload over Z_2^32; the engine's conversion
//! ([`crate::ops`] `client_inputs`, Mod2m) yields each element as the
//! signed integer in `[−2^31, 2^31)` the client shared, whatever it sent.
//! So `x_j² ≤ 2^62` and, for at most 2^20 elements, `Σ_j x_j² < 2^82`: the
//! squared norm is computed in F_p (p = 2^127 − 1) without wrapping, and
//! compared with the bound by [`ProgramBuilder::ltz`] at 84 bits (84 + κ +
//! 2 < 127). Over Z_2^64 a client could pick elements whose squares wrap
//! modulo p to a small sum, so the program refuses Z_2^64 uploads.
//!
//! What it reveals: the sum over the clients within the bound (what a sum
//! round would release over them) and, per client, one bit — whether its
//! update was within the bound. Nothing about an excluded client's values.
//!
//! Cost per client of `d` elements: `2d` multiplications (the squares and
//! the weighting by the verdict) and one 84-bit comparison.

use crate::F127;
use crate::program::{Program, ProgramBuilder, ProgramError, Secret};

/// The program's name in descriptors and session ids.
pub const NORM_BOUNDED_SUM: &str = "norm-bounded-sum";
/// Its version.
pub const NORM_BOUNDED_SUM_VERSION: u32 = 1;
/// The most elements per client (so that `Σ x_j² < 2^82`).
pub const MAX_ELEMENTS: usize = 1 << 20;
/// Bits of the norm comparisons: both sides are below 2^82, so their
/// difference is a signed 84-bit value (the most the engine's comparisons
/// take: 84 + κ + 2 < 127).
const NORM_BITS: u32 = 84;

/// `Σ_c ok_c · x_c` and `ok` for `clients` uploads of `len` elements over
/// Z_2^32, where `ok_c = [Σ_j x_{c,j}² ≤ bound_sq]`. Output 0: the `len`
/// sums; output 1: the `clients` verdicts (1 within the bound, 0 not).
pub fn norm_bounded_sum(
    clients: usize,
    len: usize,
    bound_sq: u128,
) -> Result<Program, ProgramError> {
    if len == 0 || len > MAX_ELEMENTS {
        return Err(ProgramError::Unsupported(
            "a norm-bounded sum takes 1 to 2^20 elements per client",
        ));
    }
    if bound_sq >= 1 << 82 {
        return Err(ProgramError::Unsupported(
            "the squared norm bound must be below 2^82",
        ));
    }
    let mut p = ProgramBuilder::new(NORM_BOUNDED_SUM, NORM_BOUNDED_SUM_VERSION);
    let x = p.client_inputs(clients, len, 32);
    let squares = p.mul(x, x);
    let norms = p.segment_sum(squares, len);
    // ok_c = [norm_c − bound_sq − 1 < 0] = [norm_c ≤ bound_sq].
    let shifted = p.add_const(norms, F127::new(bound_sq + 1).neg());
    let ok = p.ltz(shifted, NORM_BITS);
    output_kept_sum(&mut p, x, ok, clients, len);
    p.build()
}

/// Outputs the element-wise sum over the clients of `ok_c · x_c` (output
/// 0) and the verdicts `ok` (output 1), for `clients` vectors of `len`
/// elements, client-major in `x`.
fn output_kept_sum(p: &mut ProgramBuilder, x: Secret, ok: Secret, clients: usize, len: usize) {
    let spread: Vec<u32> = (0..clients as u32)
        .flat_map(|c| std::iter::repeat_n(c, len))
        .collect();
    let weights = p.gather(ok, &spread);
    let kept = p.mul(x, weights);
    // Element-major, then the sum over the clients of each element.
    let transposed: Vec<u32> = (0..len)
        .flat_map(|j| (0..clients).map(move |c| (c * len + j) as u32))
        .collect();
    let by_element = p.gather(kept, &transposed);
    let sums = p.segment_sum(by_element, clients.max(1));
    p.output(sums);
    p.output(ok);
}

/// The program's name for weighted (FedAvg) updates.
pub const WEIGHTED_NORM_BOUNDED_SUM: &str = "weighted-norm-bounded-sum";
/// Its version (2: an optional L∞ bound, and the per-check verdicts as a
/// third output).
pub const WEIGHTED_NORM_BOUNDED_SUM_VERSION: u32 = 2;
/// Bits of the count of an update's elements above the L∞ bound (at most
/// 2^20, so below 2^21 in magnitude after subtracting 1).
const COUNT_BITS: u32 = 22;

/// The bounds a FedAvg update is checked against, on its unweighted
/// quantized delta `q` (integers), with its weight `w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateBounds {
    /// `Σ_j q_j² ≤ l2_sq`, when set.
    pub l2_sq: Option<u128>,
    /// `q_j² ≤ linf_sq` for every j (|q_j| ≤ the L∞ bound), when set.
    pub linf_sq: Option<u128>,
    /// `0 ≤ w ≤ max_weight` (always checked).
    pub max_weight: u32,
}

impl UpdateBounds {
    /// The names of the checks, in the order of the verdicts output:
    /// `"l2"` (if set), `"linf"` (if set), `"weight"`.
    pub fn checks(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.l2_sq.is_some() {
            out.push("l2");
        }
        if self.linf_sq.is_some() {
            out.push("linf");
        }
        out.push("weight");
        out
    }
}

/// [`norm_bounded_sum`] for FedAvg updates: each client's vector is
/// `[w·q_0, …, w·q_{d−1}, w]` (weighted quantized deltas, then the weight,
/// as `sealroom-analytics`' `encode_update` lays it out). A client is kept
/// iff `0 ≤ w ≤ max_weight`, `Σ_j (w·q_j)² ≤ w² · l2_sq` (its unweighted
/// delta has squared L2 norm at most `l2_sq`) and `(w·q_j)² ≤ w² · linf_sq`
/// for every j (each |q_j| at most the L∞ bound) — all exact integers:
/// `max_weight² · bound < 2^82` is required of each bound, and at least one
/// of the two bounds must be set. Outputs: 0, the `len` sums over the kept
/// clients (weights included); 1, the verdicts (1 kept, 0 left out); 2, per
/// client the verdict of each check in [`UpdateBounds::checks`] order —
/// which bound an excluded update failed, and nothing else about it.
///
/// Cost per client of `d` elements, on top of [`norm_bounded_sum`]'s: with
/// an L∞ bound, `d` comparisons at 84 bits and one at 22.
pub fn weighted_norm_bounded_sum(
    clients: usize,
    len: usize,
    bounds: UpdateBounds,
) -> Result<Program, ProgramError> {
    if !(2..=MAX_ELEMENTS).contains(&len) {
        return Err(ProgramError::Unsupported(
            "a weighted norm-bounded sum takes 2 to 2^20 elements per client (the weight last)",
        ));
    }
    if bounds.l2_sq.is_none() && bounds.linf_sq.is_none() {
        return Err(ProgramError::Unsupported(
            "a weighted bounded sum needs an L2 or an L∞ bound",
        ));
    }
    let w_max = u128::from(bounds.max_weight);
    for bound in [bounds.l2_sq, bounds.linf_sq].into_iter().flatten() {
        if w_max
            .checked_mul(w_max)
            .and_then(|w2| w2.checked_mul(bound))
            .is_none_or(|b| b >= 1 << 82)
        {
            return Err(ProgramError::Unsupported(
                "max_weight² · bound² must be below 2^82",
            ));
        }
    }
    let d = len - 1;
    let mut p = ProgramBuilder::new(WEIGHTED_NORM_BOUNDED_SUM, WEIGHTED_NORM_BOUNDED_SUM_VERSION);
    let x = p.client_inputs(clients, len, 32);
    let (deltas, w) = crate::robust::split_weight(&mut p, x, clients, len);
    let squares = p.mul(deltas, deltas);
    let w2 = p.mul(w, w);
    let mut checks = Vec::new();
    if let Some(l2_sq) = bounds.l2_sq {
        // [Σ_j (w q_j)² − w²·l2_sq − 1 < 0].
        let norms = p.segment_sum(squares, d);
        let allowed = p.mul_const(w2, F127::new(l2_sq));
        let excess = p.sub(norms, allowed);
        let excess = p.add_const(excess, F127::ONE.neg());
        checks.push(p.ltz(excess, NORM_BITS));
    }
    if let Some(linf_sq) = bounds.linf_sq {
        // Per element [(w q_j)² − w²·linf_sq − 1 < 0]; the update passes
        // iff none fails: [#failures − 1 < 0].
        let allowed = p.mul_const(w2, F127::new(linf_sq));
        let spread: Vec<u32> = (0..clients as u32)
            .flat_map(|c| std::iter::repeat_n(c, d))
            .collect();
        let allowed = p.gather(allowed, &spread);
        let excess = p.sub(squares, allowed);
        let excess = p.add_const(excess, F127::ONE.neg());
        checks.push(p.none_positive(excess, d));
    }
    // [w ≥ 0]·[max − w ≥ 0].
    checks.push(p.weight_in_range(w, bounds.max_weight));
    let mut ok = checks[0];
    for &c in &checks[1..] {
        ok = p.mul(ok, c);
    }
    output_kept_sum(&mut p, x, ok, clients, len);
    // Per client, its checks' verdicts in order.
    p.output_per_client_checks(&checks, clients);
    p.build()
}

impl ProgramBuilder {
    /// Per segment of `d` elements of `excess` (each `value − bound − 1`,
    /// signed 84-bit), whether none is non-negative — every value within
    /// its bound: `[#failures − 1 < 0]`.
    pub(crate) fn none_positive(&mut self, excess: Secret, d: usize) -> Secret {
        let within = self.ltz(excess, NORM_BITS);
        let failed = self.one_minus(within);
        let failures = self.segment_sum(failed, d);
        let failures = self.add_const(failures, F127::ONE.neg());
        self.ltz(failures, COUNT_BITS)
    }

    /// `max − a` for a public constant `max`.
    pub(crate) fn public_sub_const(&mut self, a: Secret, max: u64) -> Secret {
        let neg = self.mul_const(a, F127::ONE.neg());
        self.add_const(neg, F127::from_u64(max))
    }

    /// `1 − a`.
    pub(crate) fn one_minus(&mut self, a: Secret) -> Secret {
        self.public_sub_const(a, 1)
    }
}
