//! Planning a federation: for each sharing mode, threshold `t` and
//! `min_clients` `k`, how likely a round is to release, and how large a
//! coalition breaks privacy (DESIGN.md §2; the allowed settings are those of
//! `sealroom_node::config::FederationSpec::validate`).
//!
//! Model: each of the `h` helpers is available independently with
//! probability `a`; each of the `n` invited clients uploads independently
//! with probability `1 − d`. A round releases when at least `t` helpers
//! answer and at least `k` clients uploaded:
//! `P = P(Bin(h, a) ≥ t) · P(Bin(n, 1 − d) ≥ k)`.
//!
//! Binomial tails are exact sums of the probability mass function, kept in
//! log space: the terms come from the ratio `pmf(i + 1) / pmf(i)` walked out
//! from the mode and are normalised by their total, so no `lgamma` is needed,
//! nothing underflows, and both tails are summed directly — the failure
//! probability is never `1 − P`, so it keeps its precision when `P` is within
//! `1e-300` of 1.

use sealroom_core::additive;
use sealroom_core::shamir::ShamirParams;
use sealroom_protocol::descriptor::MIN_MIN_CLIENTS;

/// The inputs of a plan, already checked by the command line (helpers within
/// `2..=MAX_HELPERS`, clients within `MIN_MIN_CLIENTS..=MAX_CLIENTS`,
/// probabilities in `[0, 1]`, target in `(0, 1)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inputs {
    /// Helpers `h`.
    pub helpers: usize,
    /// Invited clients `n`.
    pub clients: usize,
    /// Probability `d` that a client does not upload.
    pub client_dropout: f64,
    /// Probability `a` that a helper answers.
    pub helper_availability: f64,
    /// Smallest acceptable probability that a round releases.
    pub target: f64,
}

/// How inputs are shared among the helpers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Additive h-of-h: every helper must answer.
    Additive,
    /// Shamir t-of-h: any `t` helpers reconstruct.
    Threshold(usize),
}

/// One setting of a federation and what it gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// The sharing mode.
    pub sharing: Sharing,
    /// Helpers that must answer (`h` in additive mode).
    pub threshold: usize,
    /// `min_clients`: uploads a round needs to release.
    pub min_clients: usize,
    /// The chance that a round releases.
    pub release: Chance,
}

impl Choice {
    /// The smallest coalition of helpers that learns one client's input:
    /// `t` shares reconstruct it.
    pub fn colluding_helpers(&self) -> usize {
        self.threshold
    }

    /// The smallest coalition of clients that learns another client's input:
    /// `k − 1` clients who know the released sum over `k` subtract their own.
    pub fn colluding_clients(&self) -> usize {
        self.min_clients.saturating_sub(1)
    }

    /// Whether the chance of release reaches `target`.
    pub fn meets(&self, target: f64) -> bool {
        self.release.value() >= target
    }
}

/// Why a row's `min_clients` was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    /// The smallest `min_clients` a federation accepts.
    Smallest,
    /// A tenth of the clients, rounded up.
    Tenth,
    /// Half of the clients, rounded up.
    Half,
    /// The largest `min_clients` that meets the target for this threshold.
    LargestMeetingTarget,
}

impl Reference {
    /// A short label for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Reference::Smallest => "smallest allowed",
            Reference::Tenth => "n/10",
            Reference::Half => "n/2",
            Reference::LargestMeetingTarget => "largest meeting target",
        }
    }
}

/// One row of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The setting and its chance of release.
    pub choice: Choice,
    /// Why this `min_clients` is shown (several when they coincide).
    pub references: Vec<Reference>,
}

/// Every row, the recommendation and the best achievable setting.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Rows by sharing option (additive, then thresholds from `h` down), then
    /// by `min_clients`.
    pub rows: Vec<Row>,
    /// The lowest-risk setting that meets the target, if any.
    pub recommendation: Option<Choice>,
    /// The setting most likely to release.
    pub best_achievable: Choice,
    /// `P(Bin(h, a) ≥ t)` for each sharing option, in row order.
    pub helper_chances: Vec<(Sharing, Chance)>,
}

/// Plans every allowed setting for `inputs`.
///
/// The recommendation is, among settings that meet the target, the one with
/// the largest helper coalition needed (`t`), then the largest client
/// coalition (`k`), then the higher chance; additive wins over the
/// equivalent threshold `h`-of-`h`. The best achievable setting maximises
/// the chance (`k` = the smallest allowed), then `t`.
pub fn plan(inputs: &Inputs) -> Plan {
    let helper_tails = Binomial::with_success(inputs.helpers, inputs.helper_availability).tails();
    let client_tails = Binomial::with_failure(inputs.clients, inputs.client_dropout).tails();
    let n = inputs.clients;
    let smallest = MIN_MIN_CLIENTS;

    let mut rows = Vec::new();
    let mut helper_chances = Vec::new();
    let mut recommendation: Option<Choice> = None;
    let mut best_achievable: Option<Choice> = None;
    for sharing in sharing_options(inputs.helpers) {
        let threshold = match sharing {
            Sharing::Additive => inputs.helpers,
            Sharing::Threshold(t) => t,
        };
        let helpers_up = helper_tails.at_least(threshold);
        helper_chances.push((sharing, helpers_up));
        let choice = |min_clients: usize| Choice {
            sharing,
            threshold,
            min_clients,
            release: helpers_up.and(client_tails.at_least(min_clients)),
        };
        // The chance falls as k grows: the first k from the top that meets
        // the target is the largest.
        let largest = (smallest..=n)
            .rev()
            .map(choice)
            .find(|c| c.meets(inputs.target));

        let mut shown = vec![
            (smallest, Reference::Smallest),
            (n.div_ceil(10), Reference::Tenth),
            (n.div_ceil(2), Reference::Half),
        ];
        if let Some(c) = largest {
            shown.push((c.min_clients, Reference::LargestMeetingTarget));
        }
        shown.retain(|&(k, _)| (smallest..=n).contains(&k));
        shown.sort();
        let mut option_rows: Vec<Row> = Vec::new();
        for (k, reference) in shown {
            match option_rows.last_mut() {
                Some(row) if row.choice.min_clients == k => row.references.push(reference),
                _ => option_rows.push(Row {
                    choice: choice(k),
                    references: vec![reference],
                }),
            }
        }
        rows.extend(option_rows);

        if let Some(c) = largest
            && recommendation.is_none_or(|r| risk_key(&c) > risk_key(&r))
        {
            recommendation = Some(c);
        }
        let most_likely = choice(smallest);
        if best_achievable.is_none_or(|b| chance_key(&most_likely) > chance_key(&b)) {
            best_achievable = Some(most_likely);
        }
    }
    Plan {
        rows,
        recommendation,
        best_achievable: best_achievable.expect(
            "invariant: additive sharing is allowed for every helper count the CLI accepts",
        ),
        helper_chances,
    }
}

/// The sharing settings a federation of `helpers` accepts: additive, then
/// Shamir from `t = h` down to the smallest majority (a minority threshold is
/// refused: two disjoint groups of `t` helpers could answer two different
/// inclusion sets).
pub fn sharing_options(helpers: usize) -> Vec<Sharing> {
    let additive = additive::check_helpers(helpers)
        .is_ok()
        .then_some(Sharing::Additive);
    let thresholds = (helpers / 2 + 1..=helpers)
        .rev()
        .filter(|&t| ShamirParams::new(t, helpers).is_ok())
        .map(Sharing::Threshold);
    additive.into_iter().chain(thresholds).collect()
}

/// Lower risk compares greater: larger `t`, larger `k`, likelier, additive.
fn risk_key(c: &Choice) -> (usize, usize, OrderedChance, bool) {
    (
        c.threshold,
        c.min_clients,
        OrderedChance(c.release),
        c.sharing == Sharing::Additive,
    )
}

/// Likelier compares greater, then lower risk.
fn chance_key(c: &Choice) -> (OrderedChance, usize, usize, bool) {
    (
        OrderedChance(c.release),
        c.threshold,
        c.min_clients,
        c.sharing == Sharing::Additive,
    )
}

/// A [`Chance`] ordered by its value (then by its complement, which keeps
/// the order exact when both round to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
struct OrderedChance(Chance);

impl Eq for OrderedChance {}

impl PartialOrd for OrderedChance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedChance {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .ln
            .total_cmp(&other.0.ln)
            .then(other.0.ln_complement.total_cmp(&self.0.ln_complement))
    }
}

/// The probability of an event, held as the logarithms of it and of its
/// complement so that neither loses precision near 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chance {
    ln: f64,
    ln_complement: f64,
}

impl Chance {
    /// The certain event.
    pub const CERTAIN: Chance = Chance {
        ln: 0.0,
        ln_complement: f64::NEG_INFINITY,
    };
    /// The impossible event.
    pub const IMPOSSIBLE: Chance = Chance {
        ln: f64::NEG_INFINITY,
        ln_complement: 0.0,
    };

    /// The probability (may round to 1).
    pub fn value(self) -> f64 {
        self.ln.exp()
    }

    /// The probability of the complement, computed directly (underflows to
    /// 0 only below about 1e-308; see [`Chance::log10_complement`]).
    pub fn complement(self) -> f64 {
        self.ln_complement.exp()
    }

    /// `log10` of the complement (−∞ for the certain event).
    pub fn log10_complement(self) -> f64 {
        self.ln_complement / std::f64::consts::LN_10
    }

    /// Both of two independent events: `P = P₁P₂`, and the complement as
    /// `(1 − P₁) + P₁(1 − P₂)`, a sum of non-negative terms.
    pub fn and(self, other: Chance) -> Chance {
        Chance {
            ln: self.ln + other.ln,
            ln_complement: ln_add(self.ln_complement, self.ln + other.ln_complement),
        }
    }
}

/// The number of successes among independent trials with one success
/// probability, given with its complement to full precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Binomial {
    trials: usize,
    ln_p: f64,
    ln_q: f64,
}

impl Binomial {
    /// `trials` trials, each succeeding with probability `p` in `[0, 1]`.
    pub fn with_success(trials: usize, p: f64) -> Binomial {
        Binomial {
            trials,
            ln_p: p.ln(),
            ln_q: (-p).ln_1p(),
        }
    }

    /// `trials` trials, each failing with probability `q` in `[0, 1]`.
    pub fn with_failure(trials: usize, q: f64) -> Binomial {
        Binomial {
            trials,
            ln_p: (-q).ln_1p(),
            ln_q: q.ln(),
        }
    }

    /// Both tails for every `k`, in `O(trials)`.
    pub fn tails(&self) -> Tails {
        let n = self.trials;
        let ln_w = if self.ln_p == f64::NEG_INFINITY {
            point_mass(n, 0)
        } else if self.ln_q == f64::NEG_INFINITY {
            point_mass(n, n)
        } else {
            self.ln_weights()
        };
        // ln Σ_{i<k} w_i and ln Σ_{i≥k} w_i, each summed from its far end
        // towards the mode, small terms first.
        let mut ln_below = vec![f64::NEG_INFINITY; n + 2];
        for k in 1..=n + 1 {
            ln_below[k] = ln_add(ln_below[k - 1], ln_w[k - 1]);
        }
        let mut ln_at_least = vec![f64::NEG_INFINITY; n + 2];
        for k in (0..=n).rev() {
            ln_at_least[k] = ln_add(ln_at_least[k + 1], ln_w[k]);
        }
        let mode = ln_w
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let ln_total = ln_add(ln_below[mode], ln_at_least[mode]);
        for ln in ln_below.iter_mut().chain(ln_at_least.iter_mut()) {
            *ln = (*ln - ln_total).min(0.0);
        }
        Tails {
            ln_at_least,
            ln_below,
        }
    }

    /// `ln w_i` for `i` in `0..=n`, where `w_i = pmf(i) / pmf(mode)`, from
    /// `w_{i+1} / w_i = (n − i) / (i + 1) · p / q`. The sum of the
    /// logarithms of the binomial ratios is compensated (Neumaier) and the
    /// `p / q` part is multiplied, not accumulated.
    fn ln_weights(&self) -> Vec<f64> {
        let n = self.trials;
        let ln_odds = self.ln_p - self.ln_q;
        let p = self.ln_p.exp();
        // Any start near the mode keeps the weights near 1 where they matter.
        let mode = (((n + 1) as f64 * p).floor() as usize).min(n);
        let ln_ratio = |i: usize| ((n - i) as f64 / (i + 1) as f64).ln();
        let mut ln_w = vec![0.0; n + 1];
        let mut sum = CompensatedSum::default();
        for i in mode..n {
            sum.add(ln_ratio(i));
            ln_w[i + 1] = sum.value() + (i + 1 - mode) as f64 * ln_odds;
        }
        let mut sum = CompensatedSum::default();
        for i in (0..mode).rev() {
            sum.add(ln_ratio(i));
            ln_w[i] = -sum.value() - (mode - i) as f64 * ln_odds;
        }
        ln_w
    }
}

/// `P(X ≥ k)` and `P(X < k)` for every `k` in `0..=n + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tails {
    ln_at_least: Vec<f64>,
    ln_below: Vec<f64>,
}

impl Tails {
    /// `P(X ≥ k)`, with `P(X < k)` as its complement (`k > n` is impossible).
    pub fn at_least(&self, k: usize) -> Chance {
        let trials = self.ln_at_least.len() - 2;
        if k == 0 {
            Chance::CERTAIN
        } else if k > trials {
            Chance::IMPOSSIBLE
        } else {
            Chance {
                ln: self.ln_at_least[k],
                ln_complement: self.ln_below[k],
            }
        }
    }
}

/// `ln w` of a distribution concentrated on `at`.
fn point_mass(n: usize, at: usize) -> Vec<f64> {
    let mut ln_w = vec![f64::NEG_INFINITY; n + 1];
    ln_w[at] = 0.0;
    ln_w
}

/// `ln(eˣ + eʸ)` without overflow or underflow; `−∞` is the empty sum.
fn ln_add(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x >= y { (x, y) } else { (y, x) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Neumaier's compensated summation.
#[derive(Clone, Copy, Debug, Default)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::ChaCha20Rng;
    use rand::{RngExt as _, SeedableRng as _};

    fn close(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= relative * expected.abs()
    }

    fn inputs(helpers: usize, clients: usize, dropout: f64, availability: f64) -> Inputs {
        Inputs {
            helpers,
            clients,
            client_dropout: dropout,
            helper_availability: availability,
            target: 0.999,
        }
    }

    #[test]
    fn small_tails_match_exact_values() {
        let tails = Binomial::with_success(10, 0.5).tails();
        let c = tails.at_least(8);
        assert!(close(c.value(), 56.0 / 1024.0, 1e-14), "{c:?}");
        assert!(close(c.complement(), 968.0 / 1024.0, 1e-14), "{c:?}");

        let tails = Binomial::with_success(5, 0.99).tails();
        assert!(close(tails.at_least(5).value(), 0.99f64.powi(5), 1e-14));
        let four = 0.99f64.powi(5) + 5.0 * 0.99f64.powi(4) * 0.01;
        assert!(close(tails.at_least(4).value(), four, 1e-14));
        // P(fewer than 1) = 0.01⁵, summed directly, not 1 − (1 − 1e-10).
        assert!(close(tails.at_least(1).complement(), 1e-10, 1e-12));
    }

    #[test]
    fn every_tail_matches_a_direct_sum_for_moderate_n() {
        let (n, p) = (60, 0.3f64);
        let mut pmf = vec![0.0f64; n + 1];
        let mut coefficient = 1.0f64;
        for (i, mass) in pmf.iter_mut().enumerate() {
            *mass = coefficient * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32);
            coefficient = coefficient * (n - i) as f64 / (i + 1) as f64;
        }
        let tails = Binomial::with_success(n, p).tails();
        for k in 0..=n + 1 {
            let upper: f64 = pmf.iter().skip(k).sum();
            let lower: f64 = pmf.iter().take(k).sum();
            let c = tails.at_least(k);
            assert!(close(c.value(), upper, 1e-12), "k = {k}: {c:?} vs {upper}");
            assert!(
                close(c.complement(), lower, 1e-12),
                "k = {k}: {c:?} vs {lower}"
            );
        }
    }

    #[test]
    fn extreme_probabilities_and_out_of_range_k() {
        for n in [1, 7, 100_000] {
            let never = Binomial::with_success(n, 0.0).tails();
            assert_eq!(never.at_least(0), Chance::CERTAIN);
            assert_eq!(never.at_least(1), Chance::IMPOSSIBLE);
            let always = Binomial::with_success(n, 1.0).tails();
            assert_eq!(always.at_least(n), Chance::CERTAIN);
            assert_eq!(always.at_least(n + 1), Chance::IMPOSSIBLE);
            let no_dropout = Binomial::with_failure(n, 0.0).tails();
            assert_eq!(no_dropout.at_least(n), Chance::CERTAIN);
            let half = Binomial::with_success(n, 0.5).tails();
            assert_eq!(half.at_least(0), Chance::CERTAIN);
            assert_eq!(half.at_least(n + 1), Chance::IMPOSSIBLE);
            assert_eq!(half.at_least(n + 50), Chance::IMPOSSIBLE);
        }
    }

    #[test]
    fn large_n_central_tail_matches_the_central_binomial_series() {
        // By symmetry P(X ≥ m + 1) = (1 − P(X = m)) / 2 for X ~ Bin(2m, ½),
        // and P(X = m) = C(2m, m) / 4^m = (πm)^(−½) (1 − 1/(8m) + 1/(128m²)
        // + 5/(1024m³) − …), derived independently of the tail sums.
        let m = 50_000usize;
        let mf = m as f64;
        let central = (std::f64::consts::PI * mf).sqrt().recip()
            * (1.0 - 1.0 / (8.0 * mf) + 1.0 / (128.0 * mf * mf) + 5.0 / (1024.0 * mf.powi(3)));
        let tails = Binomial::with_success(2 * m, 0.5).tails();
        let upper = tails.at_least(m + 1);
        assert!(
            close(upper.value(), (1.0 - central) / 2.0, 1e-12),
            "{upper:?}"
        );
        let mass = tails.at_least(m).value() - upper.value();
        assert!(close(mass, central, 1e-9), "{mass} vs {central}");
        // The lower tail P(X ≤ m − 1) equals the upper one.
        assert!(close(tails.at_least(m).complement(), upper.value(), 1e-12));
    }

    #[test]
    fn large_n_extreme_tails_keep_their_precision() {
        let n = 100_000usize;
        // p tiny: P(X ≥ 1) = 1 − (1 − p)^n, about 1e-4.
        let p = 1e-9f64;
        let expected = -(n as f64 * (-p).ln_1p()).exp_m1();
        let c = Binomial::with_success(n, p).tails().at_least(1);
        assert!(close(c.value(), expected, 1e-12), "{c:?}");
        // Dropout tiny: P(fewer than all n upload) = 1 − (1 − q)^n ≈ 1e-7,
        // while P(all upload) rounds to 1.
        let q = 1e-12f64;
        let expected = -(n as f64 * (-q).ln_1p()).exp_m1();
        let c = Binomial::with_failure(n, q).tails().at_least(n);
        assert!(close(c.complement(), expected, 1e-9), "{c:?}");
        // Far beyond f64's range: P(X = n) = 0.5^n = 10^(−30103.0…).
        let c = Binomial::with_success(n, 0.5).tails().at_least(n);
        let log10 = c.ln / std::f64::consts::LN_10;
        assert!(close(log10, -(n as f64) * 2f64.log10(), 1e-9), "{log10}");
        assert_eq!(c.value(), 0.0);
    }

    #[test]
    fn release_chance_matches_a_seeded_simulation() {
        const TRIALS: u32 = 200_000;
        let (h, n, dropout, availability) = (5, 20, 0.2, 0.7);
        // How often (helpers up, clients uploading) occurred.
        let mut seen = vec![[0u32; 21]; 6];
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        for _ in 0..TRIALS {
            let helpers_up = (0..h).filter(|_| rng.random_bool(availability)).count();
            let uploads = (0..n).filter(|_| !rng.random_bool(dropout)).count();
            seen[helpers_up][uploads] += 1;
        }
        let helper_tails = Binomial::with_success(h, availability).tails();
        let client_tails = Binomial::with_failure(n, dropout).tails();
        for (t, k) in [(3, 15), (4, 16), (5, 14), (3, 18), (2, 2)] {
            let released: u32 = seen[t..]
                .iter()
                .map(|row| row[k..].iter().sum::<u32>())
                .sum();
            let expected = helper_tails.at_least(t).and(client_tails.at_least(k));
            let p = expected.value();
            let observed = f64::from(released) / f64::from(TRIALS);
            let standard_error = (p * (1.0 - p) / f64::from(TRIALS)).sqrt();
            assert!(
                (observed - p).abs() < 4.0 * standard_error,
                "t = {t}, k = {k}: simulated {observed}, computed {p}"
            );
            assert!(close(expected.complement(), 1.0 - p, 1e-12));
        }
    }

    #[test]
    fn sharing_options_follow_the_federation_rules() {
        assert_eq!(
            sharing_options(5),
            [
                Sharing::Additive,
                Sharing::Threshold(5),
                Sharing::Threshold(4),
                Sharing::Threshold(3)
            ]
        );
        assert_eq!(
            sharing_options(2),
            [Sharing::Additive, Sharing::Threshold(2)]
        );
        assert_eq!(sharing_options(1), []);
    }

    #[test]
    fn recommendation_maximises_helper_then_client_coalitions() {
        let setup = inputs(5, 200, 0.1, 0.99);
        let plan = plan(&setup);
        let best = plan.recommendation.expect("0.999 is reachable");
        // 0.99⁵ ≈ 0.951: five helpers up together miss the target, four do not.
        assert_eq!(best.sharing, Sharing::Threshold(4));
        assert!(best.meets(setup.target));
        let client_tails = Binomial::with_failure(200, 0.1).tails();
        let helpers_up = Binomial::with_success(5, 0.99).tails().at_least(4);
        assert!(
            helpers_up
                .and(client_tails.at_least(best.min_clients))
                .value()
                >= 0.999
        );
        assert!(
            helpers_up
                .and(client_tails.at_least(best.min_clients + 1))
                .value()
                < 0.999
        );
        assert_eq!(best.colluding_helpers(), 4);
        assert_eq!(best.colluding_clients(), best.min_clients - 1);
        // Rows: additive and 5-of-5 never meet the target; each option shows
        // the references 2, 20 and 100, and its largest k when it has one.
        assert!(
            plan.rows
                .iter()
                .all(|r| r.choice.threshold < 5 || !r.choice.meets(setup.target))
        );
        let ks: Vec<usize> = plan
            .rows
            .iter()
            .filter(|r| r.choice.sharing == Sharing::Additive)
            .map(|r| r.choice.min_clients)
            .collect();
        assert_eq!(ks, [2, 20, 100]);
        assert!(plan.rows.contains(&Row {
            choice: best,
            references: vec![Reference::LargestMeetingTarget],
        }));
    }

    #[test]
    fn unreachable_target_gives_no_recommendation_but_the_best_achievable() {
        let plan = plan(&inputs(3, 50, 0.1, 0.5));
        assert_eq!(plan.recommendation, None);
        let best = plan.best_achievable;
        // 2-of-3 helpers: ½; three: ⅛. The best is the lowest threshold and k.
        assert_eq!(best.sharing, Sharing::Threshold(2));
        assert_eq!(best.min_clients, 2);
        assert!(close(best.release.value(), 0.5, 1e-12));
        assert!(plan.rows.iter().all(|r| !r.choice.meets(0.999)));
    }

    #[test]
    fn perfect_availability_and_no_dropout_pick_additive_with_every_client() {
        let plan = plan(&inputs(4, 30, 0.0, 1.0));
        let best = plan.recommendation.expect("certain");
        assert_eq!(best.sharing, Sharing::Additive);
        assert_eq!((best.threshold, best.min_clients), (4, 30));
        assert_eq!(best.release, Chance::CERTAIN);
        assert_eq!(best.release.complement(), 0.0);
    }

    #[test]
    fn availability_one_leaves_only_client_dropout() {
        let setup = inputs(3, 200, 0.1, 1.0);
        let best = plan(&setup).recommendation.expect("reachable");
        assert_eq!(best.sharing, Sharing::Additive);
        let client_tails = Binomial::with_failure(200, 0.1).tails();
        assert_eq!(best.release, client_tails.at_least(best.min_clients));
        assert!(client_tails.at_least(best.min_clients + 1).value() < setup.target);
    }

    #[test]
    fn no_dropout_takes_every_client_and_the_strongest_threshold_that_fits() {
        // 0.9⁵ ≈ 0.59; P(≥ 3 of 5) ≈ 0.991; P(≥ 4 of 5) ≈ 0.919.
        let mut setup = inputs(5, 100, 0.0, 0.9);
        setup.target = 0.99;
        let best = plan(&setup).recommendation.expect("reachable");
        assert_eq!(best.sharing, Sharing::Threshold(3));
        assert_eq!(best.min_clients, 100);
        assert_eq!(best.colluding_clients(), 99);
    }

    #[test]
    fn easy_target_picks_additive_and_the_largest_k() {
        let mut setup = inputs(2, 20, 0.1, 0.99);
        setup.target = 0.1;
        let plan = plan(&setup);
        let best = plan.recommendation.expect("reachable");
        assert_eq!(best.sharing, Sharing::Additive);
        assert_eq!(best.threshold, 2);
        // 0.99² · 0.9²⁰ ≈ 0.12 still meets 0.1: every client.
        assert_eq!(best.min_clients, 20);
        // k = 2 = n/10 share a row.
        assert_eq!(
            plan.rows[0].references,
            [Reference::Smallest, Reference::Tenth]
        );
    }
}
