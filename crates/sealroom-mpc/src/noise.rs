//! Differential-privacy noise generated inside the engine, so that no
//! helper, coordinator or client knows it (issue #15).
//!
//! **Construction.** Centred binomial noise `N = Σ_{i<n} b_i − n/2` from `n`
//! jointly generated random bits per sample: the "distributed noise
//! generation" of Dwork, Kenthapadi, McSherry, Mironov and Naor, *Our Data,
//! Ourselves: Privacy via Distributed Noise Generation*, EUROCRYPT 2006 —
//! there each party contributes shares of unbiased coins and the sum of the
//! coins is a binomial sample nobody knows. Here the coins are the engine's
//! verified random shared bits (Damgård–Fitzi–Kiltz–Nielsen–Toft, TCC 2006,
//! §5; see `preproc`): each is uniform in {0, 1} as long as one of the
//! three helpers is honest, every one is MAC-authenticated, and none is ever
//! opened. The sum and the centring are local linear operations on the
//! shares, so a sample costs `n` bits of preprocessing and no online round.
//!
//! **Exactly once.** The noise is added to the shared value once, inside
//! the engine, before the value is opened: the released value carries one
//! binomial sample of the target variance `n/4` — not one per helper, as
//! when each aggregator adds its own noise (which costs up to three times
//! the variance here, since the corrupted helper's share of the noise
//! cannot be counted on).
//!
//! **What a corrupted helper can do.** It cannot bias or learn a coin: a
//! bit's value is fixed by the preprocessing, which it cannot steer without
//! failing the Chida et al. verification, and its shares are uniformly
//! random. Deviating in the session (a wrong share of a noised value) is
//! caught by the MAC check before anything is opened, like any deviation.
//!
//! **Accounting.** [`binomial_delta`] is the exact δ(ε) of one noised
//! value of sensitivity 1 (one lattice step); [`coins_for`] calibrates the
//! number of coins. Sensitivities, lattices and composition live with the
//! releases (`sealroom_analytics::query::dp`).

use crate::F127;
use crate::program::{ProgramBuilder, Secret};

/// The most coins one noise sample may take (2^24: a standard deviation of
/// 2,048 lattice steps). A larger sample is refused when the program is
/// built.
pub const MAX_COINS: usize = 1 << 24;

impl ProgramBuilder {
    /// `count` independent samples of centred binomial noise
    /// `Bin(coins, 1/2) − coins/2`, each from `coins` fresh random shared
    /// bits (mean 0, variance `coins/4`). `coins` must be even, at least 2
    /// and at most [`MAX_COINS`]; `count` at least 1.
    pub fn binomial_noise(&mut self, count: usize, coins: usize) -> Secret {
        if count == 0
            || coins < 2
            || !coins.is_multiple_of(2)
            || coins > MAX_COINS
            || count
                .checked_mul(coins)
                .is_none_or(|n| n > u32::MAX as usize)
        {
            self.fail_unsupported(
                "binomial noise needs at least one sample of an even number of coins between 2 and 2^24",
            );
            return self.random_values(count.max(1));
        }
        let bits = self.random_bits(count * coins);
        let sums = self.segment_sum(bits, coins);
        self.add_const(sums, F127::from_i64(-((coins / 2) as i64)))
    }
}

/// The exact δ at `epsilon` of adding `Bin(coins, ½) − coins/2` to an
/// integer-valued statistic of sensitivity 1: `Σ_k max(0, P(k) −
/// e^ε P(k−1))`, `P` the Bin(coins, ½) probabilities — the hockey-stick
/// divergence between the noise and the noise shifted by one, which is
/// exactly the δ of `(ε, δ)`-DP for such a pair (Balle & Wang, ICML 2018,
/// §3; the shift by −1 gives the same value by symmetry). Computed in the
/// log domain; decreasing in `coins`.
pub fn binomial_delta(coins: u64, epsilon: f64) -> f64 {
    if coins == 0 {
        return 1.0;
    }
    let n = coins as f64;
    // ln P(0) = −n ln 2; ln P(k) = ln P(k−1) + ln(n − k + 1) − ln k.
    let mut ln_p = -n * core::f64::consts::LN_2;
    let mut delta = ln_p.exp(); // k = 0: P(−1) = 0
    for k in 1..=coins {
        let kf = k as f64;
        let loss = (n - kf + 1.0).ln() - kf.ln(); // ln P(k)/P(k−1)
        ln_p += loss;
        if loss <= epsilon {
            // The loss decreases in k: no later term is positive.
            break;
        }
        delta += ln_p.exp() * (1.0 - (epsilon - loss).exp());
    }
    delta.min(1.0)
}

/// The smallest even number of coins whose binomial noise makes a
/// sensitivity-1 value `(epsilon, delta)`-DP, or `None` beyond
/// [`MAX_COINS`].
pub fn coins_for(epsilon: f64, delta: f64) -> Option<u64> {
    let max = MAX_COINS as u64;
    let ok = |n: u64| binomial_delta(n, epsilon) <= delta;
    let mut hi = 2u64;
    while !ok(hi) {
        if hi >= max {
            return None;
        }
        hi = (hi * 2).min(max);
    }
    // Smallest even n in (hi/2, hi] that passes (hi passes; hi/2 does not,
    // or hi = 2).
    let (mut lo, mut hi) = (hi / 4, hi / 2); // in units of 2 coins
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if ok(mid * 2) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some((hi * 2).max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bin(2, ½): P = ¼, ½, ¼. δ(ε) = P(0) + max(0, P(1) − e^ε P(0)) +
    /// max(0, P(2) − e^ε P(1)) = ¼ + max(0, ½ − e^ε/4) + 0.
    #[test]
    fn delta_of_two_coins_matches_the_closed_form() {
        for eps in [0.1f64, 0.5, 0.69, 1.0, 2.0] {
            let expected = 0.25 + (0.5 - eps.exp() / 4.0).max(0.0);
            assert!((binomial_delta(2, eps) - expected).abs() < 1e-15, "ε {eps}");
        }
    }

    /// Bin(4, ½) by brute force over the support.
    #[test]
    fn delta_matches_brute_force_on_small_supports() {
        for n in [4u64, 6, 10, 20] {
            let p: Vec<f64> = (0..=n)
                .map(|k| {
                    let mut c = 1.0f64;
                    for i in 0..k {
                        c = c * (n - i) as f64 / (i + 1) as f64;
                    }
                    c / 2f64.powi(n as i32)
                })
                .collect();
            for eps in [0.05, 0.3, 1.0] {
                let brute: f64 = (0..=n as usize)
                    .map(|k| {
                        let prev = if k == 0 { 0.0 } else { p[k - 1] };
                        (p[k] - f64::exp(eps) * prev).max(0.0)
                    })
                    .sum();
                assert!(
                    (binomial_delta(n, eps) - brute).abs() < 1e-12,
                    "n {n} ε {eps}"
                );
            }
        }
    }

    #[test]
    fn delta_decreases_with_coins_and_calibration_is_minimal() {
        let mut last = 1.0;
        for n in (2..400).step_by(2) {
            let d = binomial_delta(n, 0.5);
            assert!(d <= last + 1e-15, "δ grew at n = {n}");
            last = d;
        }
        for (eps, delta) in [(1.0, 1e-6), (0.25, 2.5e-7), (0.1, 1e-9), (5.0, 1e-5)] {
            let n = coins_for(eps, delta).expect("calibrated");
            assert_eq!(n % 2, 0);
            assert!(binomial_delta(n, eps) <= delta);
            assert!(n == 2 || binomial_delta(n - 2, eps) > delta, "not minimal");
        }
    }

    /// Dwork et al. 2006 (EUROCRYPT, the binomial mechanism) prove (ε, δ)
    /// for n ≥ 64 ln(2/δ)/ε²: the exact calibration never needs more.
    #[test]
    fn exact_calibration_is_within_the_papers_sufficient_condition() {
        for (eps, delta) in [(1.0, 1e-6), (0.5, 1e-8), (0.1, 1e-5)] {
            let n = coins_for(eps, delta).expect("calibrated");
            let paper = 64.0 * (2.0f64 / delta).ln() / (eps * eps);
            assert!((n as f64) <= paper, "n {n} > {paper}");
            // And it is a real noise: at least the Gaussian mechanism's
            // variance (σ ≥ √(2 ln(1.25/δ))/ε, Dwork–Roth Thm A.1) within 2×.
            let sigma = (n as f64).sqrt() / 2.0;
            let gauss = (2.0 * (1.25f64 / delta).ln()).sqrt() / eps;
            assert!(sigma > gauss / 2.0, "σ {sigma} vs Gaussian {gauss}");
        }
    }
}
