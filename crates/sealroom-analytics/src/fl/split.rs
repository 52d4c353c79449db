//! Non-IID partitions of a labelled data set across clients, and the seeded
//! sampling they rest on.
//!
//! [`dirichlet_split`] is the label-skew partition common in federated
//! learning experiments (Hsu, Qi & Brown, "Measuring the Effects of
//! Non-Identical Data Distribution for Federated Visual Classification",
//! 2019): for each class, the share of its rows that each client receives is
//! drawn from a symmetric Dirichlet(α) distribution. Small α (0.1) gives each
//! client a few dominant classes; large α (100) approaches an IID split.
//!
//! All randomness here is for *public* choices (data splits, SGD shuffles)
//! and must be replayable, so it comes from ChaCha20 seeded with a `u64`.
//! It is never used for a secret: shares and seeds use the OS generator.
//! The samplers are written out (rather than taken from `rand`'s
//! distributions) so that a split stays the same across `rand` versions.

use ndarray::Array1;
use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};

use super::FlError;

/// How many times [`dirichlet_split`] re-draws the whole partition before it
/// tops up the clients that are still short of `min_rows`.
pub const MAX_DRAWS: usize = 100;

/// Partitions the rows of `y` across `n_clients` clients, non-IID by label.
///
/// For each class `c`, its rows are shuffled and cut into `n_clients`
/// consecutive pieces whose sizes follow proportions `p ~ Dirichlet(α, …, α)`
/// (the cut after client `j` is at `round(n_c · (p_0 + … + p_j))`, so every
/// row is assigned exactly once).
///
/// **Minimum size.** A client with fewer than `min_rows` rows cannot train;
/// when a draw leaves one short, the whole partition is re-drawn (the usual
/// practice, which samples the Dirichlet partition conditioned on every
/// client reaching `min_rows`), up to [`MAX_DRAWS`] times. If the last draw
/// still leaves clients short, rows are moved one at a time from the largest
/// client to the smallest until every client has `min_rows`; this slightly
/// softens the skew and only happens for extreme α or `min_rows`.
///
/// The result is deterministic in `seed`; each client's row indices are
/// sorted ascending. Requires `n_clients ≥ 1`, a finite `alpha > 0`, labels
/// below `n_classes`, and `n_clients · min_rows ≤ rows`.
pub fn dirichlet_split(
    y: &Array1<usize>,
    n_classes: usize,
    n_clients: usize,
    alpha: f64,
    min_rows: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, FlError> {
    if n_clients == 0 {
        return Err(FlError::Empty { what: "client set" });
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(FlError::InvalidParameter {
            name: "alpha",
            value: alpha,
            expected: "a positive finite Dirichlet concentration",
        });
    }
    if n_clients.saturating_mul(min_rows) > y.len() {
        return Err(FlError::NotEnoughRows {
            n_rows: y.len(),
            n_clients,
            min_rows,
        });
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (row, &label) in y.iter().enumerate() {
        match by_class.get_mut(label) {
            Some(rows) => rows.push(row),
            None => {
                return Err(FlError::LabelOutOfRange {
                    row,
                    label,
                    n_classes,
                });
            }
        }
    }

    let mut rng = SplitRng::new(seed);
    let mut parts = draw_partition(&mut rng, &by_class, n_clients, alpha);
    let mut draws = 1;
    while draws < MAX_DRAWS && parts.iter().any(|p| p.len() < min_rows) {
        parts = draw_partition(&mut rng, &by_class, n_clients, alpha);
        draws += 1;
    }
    top_up(&mut parts, min_rows);
    for part in &mut parts {
        part.sort_unstable();
    }
    Ok(parts)
}

/// One Dirichlet draw per class, rows cut in proportion.
fn draw_partition(
    rng: &mut SplitRng,
    by_class: &[Vec<usize>],
    n_clients: usize,
    alpha: f64,
) -> Vec<Vec<usize>> {
    let mut parts = vec![Vec::new(); n_clients];
    for rows in by_class {
        let mut rows = rows.clone();
        shuffle(rng, &mut rows);
        let proportions = dirichlet(rng, alpha, n_clients);
        let n = rows.len() as f64;
        let mut start = 0;
        let mut cumulative = 0.0;
        for (client, p) in proportions.iter().enumerate() {
            cumulative += p;
            let end = if client + 1 == n_clients {
                rows.len()
            } else {
                ((cumulative * n).round() as usize).clamp(start, rows.len())
            };
            parts[client].extend_from_slice(&rows[start..end]);
            start = end;
        }
    }
    parts
}

/// Moves rows from the largest client to the smallest until each has at
/// least `min_rows`. Terminates because the caller checked that the rows
/// suffice: while some client is short, the largest one has more than
/// `min_rows`.
fn top_up(parts: &mut [Vec<usize>], min_rows: usize) {
    loop {
        let Some((short, _)) = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.len() < min_rows)
            .min_by_key(|(i, p)| (p.len(), *i))
        else {
            return;
        };
        let Some((donor, _)) = parts
            .iter()
            .enumerate()
            .max_by_key(|(i, p)| (p.len(), core::cmp::Reverse(*i)))
        else {
            return;
        };
        if parts[donor].len() <= min_rows {
            return; // unreachable given the caller's row check
        }
        if let Some(row) = parts[donor].pop() {
            parts[short].push(row);
        }
    }
}

/// A seeded ChaCha20 generator for public, replayable choices.
pub(crate) struct SplitRng(ChaCha20Rng);

impl SplitRng {
    /// The generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitRng(ChaCha20Rng::seed_from_u64(seed))
    }

    /// A uniform integer in `0..n` (`n ≥ 1`), without modulo bias (Lemire's
    /// multiply-and-reject).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.0.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// A uniform float in the open interval (0, 1), on a grid of 2^−53.
    pub(crate) fn open01(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) * f64::EPSILON / 2.0
    }

    /// A standard normal variate (Box–Muller, cosine branch).
    pub(crate) fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.open01(), self.open01());
        (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
    }
}

/// Fisher–Yates shuffle with [`SplitRng::below`].
pub(crate) fn shuffle<T>(rng: &mut SplitRng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

/// A public seed for a sub-task (a data split, a round, a client), derived
/// from a base seed, a label and indices with BLAKE3 (key derivation mode),
/// so that sub-seeds are unrelated to each other and to the base. This is how
/// [`super::simulate`] derives its seeds; use it to reproduce its splits.
pub fn derive_seed(base: u64, label: &str, indices: &[u64]) -> u64 {
    let mut hasher = blake3::Hasher::new_derive_key("sealroom-analytics fl derive_seed v1");
    hasher.update(&base.to_le_bytes());
    hasher.update(&(label.len() as u64).to_le_bytes());
    hasher.update(label.as_bytes());
    for i in indices {
        hasher.update(&i.to_le_bytes());
    }
    let mut out = [0u8; 8];
    hasher.finalize_xof().fill(&mut out);
    u64::from_le_bytes(out)
}

/// Proportions drawn from a symmetric Dirichlet(α) over `k` outcomes:
/// independent Gamma(α, 1) draws normalized to sum 1. The draws are made in
/// log space so that tiny α (where Gamma samples underflow) still works.
fn dirichlet(rng: &mut SplitRng, alpha: f64, k: usize) -> Vec<f64> {
    let logs: Vec<f64> = (0..k).map(|_| ln_gamma_variate(rng, alpha)).collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The natural logarithm of a Gamma(`shape`, 1) variate, `shape > 0`.
///
/// Marsaglia & Tsang, "A Simple Method for Generating Gamma Variables",
/// ACM TOMS 26(3), 2000: for `shape ≥ 1`, with `d = shape − 1/3` and
/// `c = 1/√(9d)`, draw `x ~ N(0,1)`, `v = (1 + c·x)³` (retry if `v ≤ 0`) and
/// `u ~ U(0,1)`; accept `d·v` if `u < 1 − 0.0331·x⁴` (the squeeze) or
/// `ln u < x²/2 + d·(1 − v + ln v)`. For `shape < 1` they use
/// `Gamma(shape) = Gamma(shape + 1) · U^(1/shape)`, here in log space.
fn ln_gamma_variate(rng: &mut SplitRng, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = rng.open01().ln() / shape;
        return ln_gamma_variate(rng, shape + 1.0) + boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let t = 1.0 + c * x;
        if t <= 0.0 {
            continue;
        }
        let v = t * t * t;
        let u = rng.open01();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d.ln() + v.ln();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_variates_have_the_right_mean_and_variance() {
        // Gamma(k, 1) has mean k and variance k; 20,000 draws put the sample
        // mean within a few standard errors (√(k/n)).
        for shape in [0.3, 1.0, 2.5, 9.0] {
            let mut rng = SplitRng::new(11);
            let n = 20_000;
            let draws: Vec<f64> = (0..n)
                .map(|_| ln_gamma_variate(&mut rng, shape).exp())
                .collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
            let se = (shape / n as f64).sqrt();
            assert!(
                (mean - shape).abs() < 5.0 * se,
                "shape {shape}: mean {mean}"
            );
            assert!(
                (var - shape).abs() < 0.1 * shape,
                "shape {shape}: var {var}"
            );
        }
    }

    #[test]
    fn dirichlet_proportions_sum_to_one_even_for_tiny_alpha() {
        let mut rng = SplitRng::new(3);
        for alpha in [1e-3, 0.1, 1.0, 50.0] {
            let p = dirichlet(&mut rng, alpha, 7);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = SplitRng::new(5);
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[rng.below(6)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_400..=10_600).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn derived_seeds_differ() {
        let a = derive_seed(1, "round", &[0, 0]);
        assert_ne!(a, derive_seed(1, "round", &[0, 1]));
        assert_ne!(a, derive_seed(2, "round", &[0, 0]));
        assert_ne!(a, derive_seed(1, "local", &[0, 0]));
        assert_eq!(a, derive_seed(1, "round", &[0, 0]));
    }

    #[test]
    fn top_up_reaches_the_minimum() {
        let mut parts = vec![vec![0, 1, 2, 3, 4, 5, 6, 7], vec![], vec![8]];
        top_up(&mut parts, 3);
        assert!(parts.iter().all(|p| p.len() >= 3), "{parts:?}");
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 9);
    }
}
