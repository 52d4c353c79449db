//! Krum and multi-Krum inside the engine (issue #15): Blanchard, El
//! Mhamdi, Guerraoui, Stainer, "Machine learning with adversaries:
//! Byzantine tolerant gradient descent", NeurIPS 2017, §4 (Krum) and §5
//! (multi-Krum, the mean of the `m` best-scored vectors; `m = 1` is Krum).
//!
//! With `n` clients of which at most `f` are Byzantine (`n > 2f + 2`), the
//! score of update `i` is the sum of its squared distances to its `n − f −
//! 2` nearest other updates; the `m` updates of lowest score (ties broken
//! by client index) are averaged. In the engine:
//!
//! 1. the hard L2 bound `B` is checked exactly (as in [`crate::validity`])
//!    and each update is multiplied by its verdict, so every value below
//!    is bounded: `‖q_i‖ ≤ B`, distances `≤ 4B² < 2^52` (with `B² < 2^50`),
//!    scores `< n·2^52`;
//! 2. the `n(n−1)/2` squared distances: `d` products each;
//! 3. per client, its `n − 1` distances sorted by Batcher's network (all
//!    clients at once, [`ProgramBuilder::sort_segments`]) and the smallest
//!    `n − f − 2` summed: the score;
//! 4. the rank of each score, `rank_i = Σ_{j>i} [s_j < s_i] + Σ_{j<i} [s_j
//!    ≤ s_i]` from one comparison per pair (a strict total order, so exactly
//!    `m` ranks are below `m`), and `sel_i = [rank_i < m]`;
//! 5. output `Σ_i sel_i·q_i` (the driver divides by `m`) and the verdicts.
//!
//! **What it reveals**: the sum of the `m` selected updates and the hard
//! bound's verdicts — not the scores, the ranks or which clients were
//! selected (with `m = 1`, the output *is* one client's update, though not
//! whose; a cohort that cannot accept that uses `m > 1`). An update beyond
//! the hard bound enters the selection as the zero vector.
//!
//! **Cost** for `n` clients of `d` parameters: `n(n−1)/2·d + 2nd`
//! multiplications; `n·c(n−1)` comparisons at 53 bits (`c(k)` the
//! comparators of Batcher's network on `k` values: `c(4) = 5`, `c(9) =
//! 28`), `n(n−1)/2` at 64 bits, and `n` each at 84 and at 12 bits. The
//! distances dominate: quadratic in the cohort, linear in the model.

use crate::F127;
use crate::program::{Program, ProgramBuilder, ProgramError, Secret};
use crate::validity::MAX_ELEMENTS;

/// The program's name in descriptors and session ids.
pub const MULTI_KRUM: &str = "multi-krum";
/// Its version.
pub const MULTI_KRUM_VERSION: u32 = 1;
/// The largest cohort (scores stay below 2^63 and their comparisons at 64
/// bits).
pub const MAX_CLIENTS: usize = 1 << 10;
/// Squared hard bounds below this keep distances below 2^52.
const MAX_L2_SQ: u128 = 1 << 50;
/// Bits of a squared distance (`< 2^52`, non-negative).
const DISTANCE_BITS: u32 = 53;
/// Bits of a score (`< 2^62`).
const SCORE_BITS: u32 = 64;
/// Bits of `rank − m` (`|·| < 2^11`).
const RANK_BITS: u32 = 12;

/// The parameters of a multi-Krum round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KrumParams {
    /// Byzantine clients tolerated (`n > 2f + 2`).
    pub byzantine: usize,
    /// Updates averaged (1 = Krum), at most `n − f`.
    pub selected: usize,
    /// `B²`: updates with `Σ q_j² > B²` enter as zero (a hard bound).
    pub l2_sq: u128,
}

impl KrumParams {
    /// Refuses parameters the program cannot honour for `clients`.
    pub fn check(&self, clients: usize) -> Result<(), ProgramError> {
        if !(3..=MAX_CLIENTS).contains(&clients) {
            return Err(ProgramError::Unsupported(
                "multi-Krum takes 3 to 1024 clients",
            ));
        }
        if clients <= 2 * self.byzantine + 2 {
            return Err(ProgramError::Unsupported(
                "multi-Krum needs more than 2f + 2 clients",
            ));
        }
        if self.selected == 0 || self.selected > clients - self.byzantine {
            return Err(ProgramError::Unsupported(
                "multi-Krum selects 1 to n − f updates",
            ));
        }
        if self.l2_sq == 0 || self.l2_sq >= MAX_L2_SQ {
            return Err(ProgramError::Unsupported(
                "the hard L2 bound must be positive and below 2^25 quanta",
            ));
        }
        Ok(())
    }
}

/// Multi-Krum over `clients` FedAvg uploads of `len` elements over Z_2^32,
/// each `[q_0, …, q_{d−1}, w]` (unweighted delta, then a weight that is not
/// read). Outputs: 0, the `d` sums of the selected updates; 1, the hard
/// bound's verdicts (1 within, 0 entered as zero); 2, the same per check
/// (`"l2"`, the only one), as the other FedAvg programs lay them out.
pub fn multi_krum(clients: usize, len: usize, params: KrumParams) -> Result<Program, ProgramError> {
    if !(2..=MAX_ELEMENTS).contains(&len) {
        return Err(ProgramError::Unsupported(
            "multi-Krum takes 2 to 2^20 elements per client (the weight last)",
        ));
    }
    params.check(clients)?;
    let n = clients;
    let d = len - 1;
    let mut p = ProgramBuilder::new(MULTI_KRUM, MULTI_KRUM_VERSION);
    let x = p.client_inputs(n, len, 32);
    let (deltas, _weights) = crate::robust::split_weight(&mut p, x, n, len);
    let (_, _, ok) = p.l2_verdicts(deltas, d, params.l2_sq);
    let q = p.scale_per_client(deltas, ok, d);
    // Squared distances of the pairs (i < j), in `pairs` order.
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let block = |c: usize| (c * d..(c + 1) * d).map(|k| k as u32);
    let a: Vec<u32> = pairs.iter().flat_map(|&(i, _)| block(i)).collect();
    let b: Vec<u32> = pairs.iter().flat_map(|&(_, j)| block(j)).collect();
    let qa = p.gather(q, &a);
    let qb = p.gather(q, &b);
    let diff = p.sub(qa, qb);
    let sq = p.mul(diff, diff);
    let dist = p.segment_sum(sq, d);
    // Per client, its distances to the others; sorted; the nearest summed.
    // Index of the pair (i, j), i < j, in `pairs`.
    let pair_index = |i: usize, j: usize| (i * (2 * n - i - 1) / 2 + (j - i - 1)) as u32;
    let rows: Vec<u32> = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| pair_index(i.min(j), i.max(j)))
        .collect();
    let rows = p.gather(dist, &rows);
    let sorted = p.sort_segments(rows, n - 1, DISTANCE_BITS);
    let near = n - params.byzantine - 2;
    let nearest: Vec<u32> = (0..n)
        .flat_map(|i| (0..near).map(move |r| (i * (n - 1) + r) as u32))
        .collect();
    let nearest = p.gather(sorted, &nearest);
    let scores = p.segment_sum(nearest, near);
    // t_ij = [s_j < s_i] for each pair i < j.
    let si: Vec<u32> = pairs.iter().map(|&(i, _)| i as u32).collect();
    let sj: Vec<u32> = pairs.iter().map(|&(_, j)| j as u32).collect();
    let s_i = p.gather(scores, &si);
    let s_j = p.gather(scores, &sj);
    let t = p.lt(s_j, s_i, SCORE_BITS);
    // rank_i − m = Σ_{j>i} t_ij − Σ_{j<i} t_ji + i − m; sel_i = [· < 0].
    let neg_t = p.mul_const(t, F127::ONE.neg());
    let signed = p.concat(&[t, neg_t]);
    let npairs = pairs.len() as u32;
    let terms: Vec<u32> = (0..n)
        .flat_map(|i| {
            (0..n).filter(move |&j| j != i).map(move |j| {
                if j > i {
                    pair_index(i, j)
                } else {
                    npairs + pair_index(j, i)
                }
            })
        })
        .collect();
    let terms = p.gather(signed, &terms);
    let ranks = p.segment_sum(terms, n - 1);
    let shifted: Vec<Secret> = (0..n)
        .map(|i| {
            let r = p.slice(ranks, i, 1);
            p.add_const(r, F127::from_i64(i as i64 - params.selected as i64))
        })
        .collect();
    let shifted = p.concat(&shifted);
    let sel = p.ltz(shifted, RANK_BITS);
    let chosen = p.scale_per_client(q, sel, d);
    let sums = p.client_sum(chosen, n, d);
    p.output(sums);
    p.output(ok);
    // The per-check verdicts, as the other FedAvg programs lay them out.
    p.output_per_client_checks(&[ok], n);
    p.build()
}

/// The plaintext twin of [`multi_krum`] on signed integer uploads (each
/// the unweighted delta then the weight): the sums of the selected
/// updates, the verdicts, and (for tests) the selected clients.
pub fn multi_krum_plain(
    updates: &[Vec<i64>],
    params: &KrumParams,
) -> (Vec<i128>, Vec<bool>, Vec<usize>) {
    let n = updates.len();
    let d = updates.first().map_or(0, |u| u.len().saturating_sub(1));
    let sq = |v: i128| (v * v) as u128;
    let ok: Vec<bool> = updates
        .iter()
        .map(|u| u[..d].iter().map(|&v| sq(i128::from(v))).sum::<u128>() <= params.l2_sq)
        .collect();
    let q: Vec<Vec<i128>> = updates
        .iter()
        .zip(&ok)
        .map(|(u, &k)| {
            u[..d]
                .iter()
                .map(|&v| if k { i128::from(v) } else { 0 })
                .collect()
        })
        .collect();
    let dist =
        |i: usize, j: usize| -> u128 { q[i].iter().zip(&q[j]).map(|(a, b)| sq(a - b)).sum() };
    let near = n.saturating_sub(params.byzantine + 2);
    let scores: Vec<u128> = (0..n)
        .map(|i| {
            let mut ds: Vec<u128> = (0..n).filter(|&j| j != i).map(|j| dist(i, j)).collect();
            ds.sort_unstable();
            ds[..near.min(ds.len())].iter().sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (scores[i], i));
    let mut chosen: Vec<usize> = order[..params.selected.min(n)].to_vec();
    chosen.sort_unstable();
    let mut sums = vec![0i128; d];
    for &c in &chosen {
        for (s, v) in sums.iter_mut().zip(&q[c]) {
            *s += v;
        }
    }
    (sums, ok, chosen)
}
