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

/// The most terms [`binomial_vector_delta`] sums (2^28: about a second of
/// CPU in a release build; honest rounds of up to a thousand parameters
/// need a few percent of it); parameters that need more are not certified.
pub const MAX_ACCOUNTANT_WORK: f64 = (1u64 << 28) as f64;

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

/// An upper bound on the δ at `epsilon` of adding i.i.d. centred
/// `Bin(coins, ½) − coins/2` noise to **every coordinate** of an integer
/// vector whose neighbouring values differ by an integer vector `k` with
/// `‖k‖₂² ≤ sens_sq` — the binomial mechanism in many dimensions, as
/// DP-FedAvg's noised sum uses it (`crate::dp_fedavg`).
///
/// **The bound** (the Chernoff method on the privacy loss, Abadi et al.,
/// *Deep learning with differential privacy*, CCS 2016, §3.2; the
/// conversion constant of Canonne, Kamath and Steinke, *The discrete
/// Gaussian for differential privacy*, NeurIPS 2020, Prop. 12). Let `P` be
/// the noised output's law at one neighbour and `Q` at the other; by the
/// noise's symmetry and translation invariance, `P = N + k`, `Q = N`.
/// `δ(ε) = E_P[(1 − e^{ε−L})₊]`, `L = ln P/Q` (`+∞` where `Q = 0`: a
/// coordinate beyond the noise's support, the "bad" event). For every
/// `λ > 0`, `(1 − e^{−y})₊ ≤ c(λ)·e^{λy}` with `c(λ) = (λ/(λ+1))^λ/(λ+1)`,
/// so
///
/// `δ ≤ P(bad) + c(λ)·e^{−λε}·Π_i A_λ(k_i)`, `A_λ(k) = Σ_x P_k(x)^{1+λ}·P_0(x)^{−λ}`
///
/// over the `x` in both supports (the coordinates are independent). The
/// "bad" event may be any event (the same argument holds): here it is a
/// shifted coordinate outside both supports **or** more than `K + 20σ`
/// from the centre, which keeps the sums to `O(K + σ)` terms and costs
/// nothing measurable: its probability is bounded by Hoeffding's
/// inequality, `P(Bin ≤ n/2 − t) ≤ e^{−2t²/n}` (Hoeffding, JASA 1963,
/// Thm 1), below `e^{−200}` per coordinate inside the support.
/// `A_λ(0) = 1`, so with `a*(λ) = max_{1≤k≤K} ln A_λ(k)/k²` and `t* = max
/// T(k)/k²` (`T(k)`, the mass of one coordinate's bad event, `P(Bin < k)`)
/// over `K = ⌊√sens_sq⌋`, `Σ ln A_λ(k_i) ≤ a*·sens_sq` and `P(bad) ≤ Σ
/// T(k_i) ≤ t*·sens_sq` for **every** admissible `k`: the bound holds for
/// the worst shift, however it spreads over the coordinates. Everything is
/// computed exactly from the binomial probabilities (log domain), minimised
/// over a grid of `λ` around the Gaussian optimum, and inflated by 0.1 % to
/// cover floating-point rounding (far below it: the log-probabilities carry
/// relative errors below 10⁻⁹).
///
/// Cost: `O((K + σ)·K)` per `λ` (13 of them), `σ = √coins/2`, and
/// `O(coins)` logarithms; memory `O(K + σ)`. Returns 1 (nothing certified)
/// when the noise is too small to say anything (`K > coins`) or the sums
/// would exceed [`MAX_ACCOUNTANT_WORK`] terms.
pub fn binomial_vector_delta(coins: u64, sens_sq: f64, epsilon: f64) -> f64 {
    // The λ grid, as multiples of the Gaussian optimum.
    const LAMBDAS: [f64; 13] = [
        0.25, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0,
    ];
    if !(sens_sq.is_finite() && sens_sq >= 0.0 && epsilon.is_finite() && epsilon >= 0.0) {
        return 1.0;
    }
    let max_shift = sens_sq.sqrt().floor() as u64;
    if max_shift == 0 {
        return 0.0; // no non-zero integer shift is admissible
    }
    if coins == 0 || max_shift > coins {
        return 1.0;
    }
    let n = coins as usize;
    let kmax = max_shift as usize;
    // The window of a shifted coordinate: within both supports and within
    // K + 20σ of the centre; outside it is the "bad" event.
    let sigma = (coins as f64).sqrt() / 2.0;
    let half = kmax as i64 + (20.0 * sigma).ceil() as i64;
    let centre = n as i64 / 2;
    let window = |k: usize| {
        let lo = (centre - half).max(k as i64) as usize;
        let hi = (centre + half).min(n as i64) as usize;
        (lo, hi)
    };
    // Work: K sums over the window per λ. Beyond the cap the bound is not
    // computed (1: nothing certified), so no parameters can make a party
    // spend more than a few seconds here.
    let span = (2 * half + 1) as f64;
    if kmax as f64 * span * LAMBDAS.len() as f64 > MAX_ACCOUNTANT_WORK {
        return 1.0;
    }
    // ln b(j), b the Bin(coins, ½) probabilities, for j in [base, top]
    // (the window's terms read lb(j − k) and lb(j)).
    let base = (centre - half - kmax as i64).max(0) as usize;
    let top = (centre + half).min(n as i64) as usize;
    let mut lb = Vec::with_capacity(top - base + 1);
    let mut acc = -(coins as f64) * core::f64::consts::LN_2;
    for j in 0..=top {
        if j > 0 {
            acc += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        if j >= base {
            lb.push(acc);
        }
    }
    let lb = |j: usize| lb[j - base];
    // P(Bin < x) ≤ exp(−2t²/n), t = n/2 − (x − 1) (Hoeffding 1963, Thm 1),
    // exactly 0 for x ≤ 0; P(Bin > x) = P(Bin < n − x) by symmetry.
    let nf = coins as f64;
    let lower = |x: i64| -> f64 {
        if x <= 0 {
            return 0.0;
        }
        let t = nf / 2.0 - (x - 1) as f64;
        if t <= 0.0 {
            1.0
        } else {
            (-2.0 * t * t / nf).exp()
        }
    };
    let upper = |x: i64| lower(n as i64 - x);
    // t* = max_k T(k)/k², T(k) = P_k(x outside the window).
    let mut t_star = 0.0f64;
    for k in 1..=kmax {
        let (lo, hi) = window(k);
        let t = lower(lo as i64 - k as i64) + upper(hi as i64 - k as i64);
        t_star = t_star.max(t / (k * k) as f64);
    }
    let sigma_sq = coins as f64 / 4.0;
    let lambda0 = (epsilon * sigma_sq / sens_sq - 0.5).max(0.05);
    let mut best = 1.0f64;
    for f in LAMBDAS {
        let lambda = lambda0 * f;
        let mut a_star = f64::NEG_INFINITY;
        for k in 1..=kmax {
            // ln Σ_{j in the window} exp((1+λ)·lb(j−k) − λ·lb(j)).
            let (lo, hi) = window(k);
            let term = |j: usize| (1.0 + lambda) * lb(j - k) - lambda * lb(j);
            let top = (lo..=hi).map(term).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (lo..=hi).map(|j| (term(j) - top).exp()).sum();
            a_star = a_star.max((top + sum.ln()) / (k * k) as f64);
        }
        let ln_c = lambda * (lambda / (lambda + 1.0)).ln() - (lambda + 1.0).ln();
        let bound = t_star * sens_sq + (a_star * sens_sq - lambda * epsilon + ln_c).exp();
        if bound.is_finite() {
            best = best.min(bound);
        }
    }
    (best * 1.001).min(1.0)
}

/// The smallest even number of coins (within 1 %) whose binomial noise on
/// every coordinate makes a vector of L2 sensitivity `√sens_sq` (integer
/// shifts) `(epsilon, delta)`-DP by [`binomial_vector_delta`], or `None`
/// beyond `max_coins` (at most [`MAX_COINS`]). Every returned value passes
/// the bound.
pub fn coins_for_vector(epsilon: f64, delta: f64, sens_sq: f64, max_coins: u64) -> Option<u64> {
    if !(epsilon > 0.0 && delta > 0.0 && sens_sq.is_finite() && sens_sq >= 0.0) {
        return None;
    }
    let max = max_coins.min(MAX_COINS as u64) / 2 * 2;
    if max < 2 {
        return None;
    }
    let ok = |n: u64| binomial_vector_delta(n, sens_sq, epsilon) <= delta;
    // Start below the Gaussian mechanism's variance (Dwork–Roth Thm A.1);
    // give up where even half of it is beyond the largest noise.
    let gauss = sens_sq * 2.0 * (1.25 / delta).ln() / (epsilon * epsilon);
    if 2.0 * gauss > max as f64 {
        return None;
    }
    let even = |x: f64| ((x / 2.0).ceil() as u64).max(1) * 2;
    let mut lo = 0u64;
    let mut hi = even((2.0 * gauss).min(max as f64)).min(max);
    while !ok(hi) {
        if hi >= max {
            return None;
        }
        lo = hi;
        hi = even(hi as f64 * 1.5).min(max);
    }
    // hi passes; lo fails (or is 0). Halve the gap down to 1 %.
    while hi - lo > (hi / 100).max(2) {
        let mid = even((lo + hi) as f64 / 2.0);
        if mid >= hi {
            break;
        }
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
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

    /// In one dimension (`‖k‖² ≤ 1`: shifts of ±1) the vector bound is an
    /// upper bound on the exact δ of [`binomial_delta`], and not a loose one.
    #[test]
    fn the_vector_bound_covers_the_exact_one_dimensional_delta() {
        for (n, eps) in [(64u64, 1.0f64), (400, 0.5), (2_000, 0.3), (10_000, 0.1)] {
            let exact = binomial_delta(n, eps);
            let bound = binomial_vector_delta(n, 1.0, eps);
            assert!(bound >= exact, "n {n} ε {eps}: {bound} < {exact}");
            assert!(
                bound <= 1e3 * exact.max(1e-30) + 1e-12,
                "n {n} ε {eps}: {bound} vs {exact}"
            );
        }
    }

    /// Bin(n, ½) probabilities, exactly enough for small n.
    fn pmf(n: u64) -> Vec<f64> {
        let mut c = 1.0f64;
        (0..=n)
            .map(|k| {
                let p = c / 2f64.powi(n as i32);
                c = c * (n - k) as f64 / (k + 1) as f64;
                p
            })
            .collect()
    }

    /// In two dimensions, brute force over the whole product support: for
    /// every integer shift with `‖k‖² ≤ S`, the exact hockey-stick
    /// divergence is below the bound.
    #[test]
    fn the_vector_bound_covers_every_two_dimensional_shift() {
        for (n, sens_sq, eps) in [(40u64, 5.0f64, 2.0f64), (60, 8.0, 1.5), (30, 2.0, 1.0)] {
            let p = pmf(n);
            let bound = binomial_vector_delta(n, sens_sq, eps);
            let k_max = sens_sq.sqrt() as i64;
            let at = |x: i64| -> f64 {
                if (0..=n as i64).contains(&x) {
                    p[x as usize]
                } else {
                    0.0
                }
            };
            for k1 in -k_max..=k_max {
                for k2 in -k_max..=k_max {
                    if (k1 * k1 + k2 * k2) as f64 > sens_sq {
                        continue;
                    }
                    let mut delta = 0.0;
                    for x1 in 0..=(n as i64 + k_max) {
                        for x2 in 0..=(n as i64 + k_max) {
                            let shifted = at(x1 - k1) * at(x2 - k2);
                            let base = at(x1) * at(x2);
                            delta += (shifted - eps.exp() * base).max(0.0);
                        }
                    }
                    assert!(
                        delta <= bound,
                        "n {n} S {sens_sq} ε {eps} k ({k1},{k2}): exact {delta} > bound {bound}"
                    );
                }
            }
        }
    }

    /// The calibration is minimal within its 1 % and costs about what the
    /// Gaussian mechanism's variance would (σ² = S·2 ln(1.25/δ)/ε²,
    /// Dwork–Roth Thm A.1, itself valid for ε < 1): a real noise, not a
    /// wasteful one.
    #[test]
    fn vector_calibration_passes_and_is_near_the_gaussian_mechanism() {
        for (eps, delta, sens_sq) in [(0.5, 1e-6, 25.0), (1.0, 1e-7, 100.0), (0.9, 1e-5, 9.0)] {
            let n = coins_for_vector(eps, delta, sens_sq, MAX_COINS as u64).expect("calibrated");
            assert_eq!(n % 2, 0);
            assert!(binomial_vector_delta(n, sens_sq, eps) <= delta);
            let smaller = n - (n / 100).max(2) * 2;
            assert!(
                binomial_vector_delta(smaller, sens_sq, eps) > delta,
                "ε {eps} δ {delta} S {sens_sq}: {n} coins is not minimal within 2 %"
            );
            let gauss = 4.0 * sens_sq * 2.0 * (1.25f64 / delta).ln() / (eps * eps);
            let ratio = n as f64 / gauss;
            assert!((0.3..1.5).contains(&ratio), "coins {n} vs Gaussian {gauss}");
        }
        assert_eq!(
            binomial_vector_delta(100, 0.5, 1.0),
            0.0,
            "no admissible shift"
        );
        assert_eq!(
            binomial_vector_delta(4, 100.0, 1.0),
            1.0,
            "shift beyond the support"
        );
        assert_eq!(
            coins_for_vector(0.01, 1e-12, 1e6, MAX_COINS as u64),
            None,
            "beyond 2^24 coins"
        );
        assert_eq!(
            coins_for_vector(1.0, 1e-7, 100.0, 1_000),
            None,
            "beyond the caller's cap"
        );
    }

    /// Parameters a coordinator could sign to make a client's accountant
    /// run for days (2^22-step shifts under 2^24 coins) certify nothing
    /// instead: the bound is 1, computed without the sums.
    #[test]
    fn the_accountant_refuses_work_beyond_its_cap() {
        let k = (1u64 << 22) as f64;
        assert_eq!(binomial_vector_delta(1 << 24, k * k, 1.0), 1.0);
        // Within the cap, a large honest case is still computed.
        let d = binomial_vector_delta(1 << 20, 400.0, 0.5);
        assert!(d < 1e-12, "{d}");
    }
}
