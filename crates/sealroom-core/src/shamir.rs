//! Shamir t-of-h secret sharing over F_p (p = 2^61 − 1) with seed compression
//! (DESIGN.md §2 step 2, "threshold mode"; Shamir, "How to share a secret",
//! CACM 1979).
//!
//! Helper `j` (0-based) holds the evaluation at `x = j + 1` of a random
//! polynomial `f` of degree `t − 1` with `f(0) = secret`, element-wise over the
//! vector. Instead of drawing the `t − 1` random coefficients, the client
//! draws seeds for `t − 1` helpers — their shares are the seeds' PRG
//! expansions, uniformly random — and the polynomial is the unique one through
//! `(0, secret)` and those `t − 1` points. The other `h − t + 1` helpers
//! receive its values at their x, computed by Lagrange interpolation. Any
//! `t − 1` shares are uniformly distributed whatever the secret (the seeded
//! points are uniform, and interpolated points are hidden by them), and any
//! `t` shares reconstruct `f(0)`.
//!
//! Which helpers get seeds rotates with the client index, spreading the
//! full-vector uploads. Reconstruction precomputes the Lagrange coefficients at
//! 0 once per helper set ([`Reconstructor`]). With more than `t` shares,
//! [`reconstruct_checked`] verifies that all of them lie on one polynomial and,
//! if not, reports which helper sets disagree and who is to blame.

use rand::CryptoRng;

use crate::additive::MAX_HELPERS;
use crate::error::{InconsistencyReport, SharingError};
use crate::field::{Fp, batch_inverse};
use crate::prg::{PrgDomain, PrgStream, Purpose};
use crate::ring::Ring;
use crate::secret::{Seed, ShareVec};
use crate::vector;

/// Elements processed per chunk in the fused interpolation loops.
const CHUNK: usize = 2048;
/// Inconsistent element positions examined when attributing blame.
const MAX_DIAGNOSED_ELEMENTS: usize = 256;

/// A validated (threshold, helpers) pair: `2 ≤ t ≤ h ≤ MAX_HELPERS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShamirParams {
    threshold: usize,
    helpers: usize,
}

impl ShamirParams {
    /// Validates a threshold `t` among `h` helpers.
    pub fn new(threshold: usize, helpers: usize) -> Result<Self, SharingError> {
        if helpers == 0 {
            return Err(SharingError::TooFewHelpers { helpers, min: 2 });
        }
        if helpers > MAX_HELPERS {
            return Err(SharingError::TooManyHelpers {
                helpers,
                max: MAX_HELPERS,
            });
        }
        if threshold > helpers {
            return Err(SharingError::ThresholdAboveHelpers { threshold, helpers });
        }
        if threshold < 2 {
            return Err(SharingError::ThresholdTooSmall { threshold });
        }
        Ok(ShamirParams { threshold, helpers })
    }

    /// The threshold `t`: shares needed to reconstruct, and one more than the
    /// largest coalition that learns nothing.
    pub fn threshold(self) -> usize {
        self.threshold
    }

    /// The number of helpers `h`.
    pub fn helpers(self) -> usize {
        self.helpers
    }

    /// The helpers that receive seeds from client `client_index`.
    pub fn seeded_helpers(self, client_index: u32) -> impl Iterator<Item = usize> {
        let start = client_index as usize % self.helpers;
        let h = self.helpers;
        (0..self.threshold - 1).map(move |i| (start + i) % h)
    }
}

/// The x-coordinate of helper `j`.
pub fn x_of(helper: usize) -> Fp {
    Fp::new(helper as u64 + 1)
}

/// One helper's Shamir share of one client's input.
#[derive(Debug, Clone)]
pub enum ShamirShare {
    /// A seed; the share is its PRG expansion.
    Seed(Seed),
    /// The interpolated share vector.
    Vector(ShareVec<Fp>),
}

/// The PRG domain of the seed that `client_index` sends to `helper`.
pub fn domain(context: [u8; 32], client_index: u32, helper: usize) -> PrgDomain {
    PrgDomain {
        context,
        sender: client_index,
        receiver: helper as u32,
        purpose: Purpose::ShamirShare,
    }
}

/// Splits `secret` into one share per helper (index = helper index).
pub fn share<G: CryptoRng + ?Sized>(
    params: ShamirParams,
    secret: &[Fp],
    client_index: u32,
    context: [u8; 32],
    rng: &mut G,
) -> Result<Vec<ShamirShare>, SharingError> {
    let h = params.helpers;
    let seeded: Vec<usize> = params.seeded_helpers(client_index).collect();
    let seeds: Vec<Seed> = seeded.iter().map(|_| Seed::random(rng)).collect();
    let interpolated: Vec<usize> = (0..h).filter(|j| !seeded.contains(j)).collect();

    // Nodes: x = 0 carries the secret, then the seeded helpers' x.
    let mut nodes = Vec::with_capacity(seeded.len() + 1);
    nodes.push(Fp::ZERO);
    nodes.extend(seeded.iter().map(|&j| x_of(j)));
    let coefficients: Vec<Vec<Fp>> = interpolated
        .iter()
        .map(|&j| lagrange_coefficients(&nodes, x_of(j)))
        .collect::<Result<_, _>>()?;

    let mut streams: Vec<PrgStream> = seeded
        .iter()
        .zip(&seeds)
        .map(|(&j, seed)| PrgStream::new(seed, &domain(context, client_index, j)))
        .collect();
    let mut outputs: Vec<ShareVec<Fp>> = interpolated
        .iter()
        .map(|_| ShareVec::zeros(secret.len()))
        .collect();

    // Fused, chunked: expand a chunk of every seeded share, then write that
    // chunk of every interpolated share, all while it is in cache.
    let mut seeded_chunks = vec![ShareVec::<Fp>::zeros(CHUNK); seeded.len()];
    let mut start = 0;
    while start < secret.len() {
        let end = (start + CHUNK).min(secret.len());
        let n = end - start;
        for (stream, chunk) in streams.iter_mut().zip(seeded_chunks.iter_mut()) {
            stream.fill(&mut chunk.expose_mut()[..n]);
        }
        for (out, coeffs) in outputs.iter_mut().zip(&coefficients) {
            let out = &mut out.expose_mut()[start..end];
            for (o, &s) in out.iter_mut().zip(&secret[start..end]) {
                *o = coeffs[0].mul(s);
            }
            for (chunk, &c) in seeded_chunks.iter().zip(&coeffs[1..]) {
                vector::mul_add_assign(out, c, &chunk.expose()[..n])
                    .expect("chunk and output slices are both n long");
            }
        }
        start = end;
    }

    let mut seeds: Vec<Option<Seed>> = seeds.into_iter().map(Some).collect();
    let mut outputs = outputs.into_iter();
    Ok((0..h)
        .map(|j| match seeded.iter().position(|&s| s == j) {
            Some(k) => ShamirShare::Seed(seeds[k].take().expect("each seed is handed out once")),
            // `interpolated` lists the other helpers in increasing order, as here.
            None => ShamirShare::Vector(outputs.next().expect("one vector per other helper")),
        })
        .collect())
}

impl ShamirShare {
    /// Adds this share (of client `client_index`, held by `helper`) into a
    /// helper's running aggregate.
    pub fn accumulate_into(
        &self,
        acc: &mut [Fp],
        context: [u8; 32],
        client_index: u32,
        helper: usize,
    ) -> Result<(), SharingError> {
        match self {
            ShamirShare::Seed(seed) => {
                PrgStream::new(seed, &domain(context, client_index, helper)).add_into(acc);
                Ok(())
            }
            ShamirShare::Vector(v) => vector::add_assign(acc, v.expose())
                .map_err(|source| SharingError::ShareLength { helper, source }),
        }
    }
}

/// `L_i(at)` for every node `x_i`: the Lagrange basis over `nodes`, evaluated
/// at `at`. Nodes must be distinct.
pub fn lagrange_coefficients(nodes: &[Fp], at: Fp) -> Result<Vec<Fp>, SharingError> {
    let mut denominators = Vec::with_capacity(nodes.len());
    let mut numerators = Vec::with_capacity(nodes.len());
    for (i, &xi) in nodes.iter().enumerate() {
        let mut num = Fp::ONE;
        let mut den = Fp::ONE;
        for (m, &xm) in nodes.iter().enumerate() {
            if m != i {
                num = num.mul(at.sub(xm));
                den = den.mul(xi.sub(xm));
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    batch_inverse(&mut denominators).map_err(|zero| SharingError::DuplicateHelper {
        // A zero denominator means two equal nodes; report the offending one.
        index: zero.index,
    })?;
    Ok(numerators
        .into_iter()
        .zip(denominators)
        .map(|(n, d)| n.mul(d))
        .collect())
}

/// Reconstruction at 0 from one fixed set of exactly `t` helpers, with the
/// Lagrange coefficients computed once.
#[derive(Clone, Debug)]
pub struct Reconstructor {
    helpers: Vec<usize>,
    lambdas: Vec<Fp>,
}

impl Reconstructor {
    /// Prepares reconstruction from `helpers` (exactly `t` distinct indices).
    pub fn new(params: ShamirParams, helpers: &[usize]) -> Result<Self, SharingError> {
        check_indices(params, helpers)?;
        if helpers.len() != params.threshold {
            return Err(SharingError::NotEnoughShares {
                needed: params.threshold,
                got: helpers.len(),
            });
        }
        let nodes: Vec<Fp> = helpers.iter().map(|&j| x_of(j)).collect();
        let lambdas = lagrange_coefficients(&nodes, Fp::ZERO)?;
        Ok(Reconstructor {
            helpers: helpers.to_vec(),
            lambdas,
        })
    }

    /// The helper set this reconstructor was built for.
    pub fn helpers(&self) -> &[usize] {
        &self.helpers
    }

    /// `Σ λ_i · share_i`, element-wise. `shares[i]` belongs to `helpers()[i]`.
    pub fn reconstruct(&self, shares: &[&[Fp]]) -> Result<Vec<Fp>, SharingError> {
        if shares.len() != self.lambdas.len() {
            return Err(SharingError::NotEnoughShares {
                needed: self.lambdas.len(),
                got: shares.len(),
            });
        }
        let len = shares.first().map_or(0, |s| s.len());
        let mut out = vec![Fp::ZERO; len];
        for ((&share, &lambda), &helper) in shares.iter().zip(&self.lambdas).zip(&self.helpers) {
            vector::mul_add_assign(&mut out, lambda, share)
                .map_err(|source| SharingError::ShareLength { helper, source })?;
        }
        Ok(out)
    }
}

fn check_indices(params: ShamirParams, helpers: &[usize]) -> Result<(), SharingError> {
    let mut seen = [false; MAX_HELPERS];
    for &index in helpers {
        if index >= params.helpers {
            return Err(SharingError::HelperOutOfRange {
                index,
                helpers: params.helpers,
            });
        }
        if std::mem::replace(&mut seen[index], true) {
            return Err(SharingError::DuplicateHelper { index });
        }
    }
    Ok(())
}

/// Reconstructs from any `≥ t` shares `(helper index, aggregate share)`.
///
/// With exactly `t` shares the result is returned as is (nothing to check
/// against). With more, every extra share must lie on the polynomial through
/// the first `t`; otherwise the round must not release anything and the error
/// carries an [`InconsistencyReport`].
pub fn reconstruct_checked(
    params: ShamirParams,
    shares: &[(usize, &[Fp])],
) -> Result<Vec<Fp>, SharingError> {
    let t = params.threshold;
    if shares.len() < t {
        return Err(SharingError::NotEnoughShares {
            needed: t,
            got: shares.len(),
        });
    }
    let indices: Vec<usize> = shares.iter().map(|&(j, _)| j).collect();
    check_indices(params, &indices)?;
    let len = shares[0].1.len();
    for &(helper, s) in shares {
        if s.len() != len {
            return Err(SharingError::ShareLength {
                helper,
                source: vector::LengthMismatch {
                    expected: len,
                    actual: s.len(),
                },
            });
        }
    }

    let (base, extra) = shares.split_at(t);
    let base_nodes: Vec<Fp> = base.iter().map(|&(j, _)| x_of(j)).collect();
    let reconstructor = Reconstructor::new(params, &indices[..t])?;
    let base_refs: Vec<&[Fp]> = base.iter().map(|&(_, s)| s).collect();
    let secret = reconstructor.reconstruct(&base_refs)?;

    // Positions where some extra share is off the base polynomial.
    let mut bad = vec![false; len];
    for &(j, s) in extra {
        let coeffs = lagrange_coefficients(&base_nodes, x_of(j))?;
        for (k, (&actual, flag)) in s.iter().zip(bad.iter_mut()).enumerate() {
            let expected = coeffs
                .iter()
                .zip(&base_refs)
                .fold(Fp::ZERO, |acc, (&c, b)| acc.add(c.mul(b[k])));
            *flag |= expected != actual;
        }
    }
    let inconsistent_elements = bad.iter().filter(|&&b| b).count();
    if inconsistent_elements == 0 {
        return Ok(secret);
    }
    let bad_positions: Vec<usize> = (0..len)
        .filter(|&k| bad[k])
        .take(MAX_DIAGNOSED_ELEMENTS)
        .collect();
    Err(SharingError::Inconsistent(diagnose(
        t,
        shares,
        &bad_positions,
        inconsistent_elements,
    )?))
}

/// Attributes an inconsistency: checks every `(t + 1)`-subset at the positions
/// that disagree, and names helpers whose exclusion leaves a consistent set.
fn diagnose(
    t: usize,
    shares: &[(usize, &[Fp])],
    positions: &[usize],
    inconsistent_elements: usize,
) -> Result<InconsistencyReport, SharingError> {
    let subset_consistent = |subset: &[usize]| -> Result<bool, SharingError> {
        let (base, check) = subset.split_at(t);
        let nodes: Vec<Fp> = base.iter().map(|&i| x_of(shares[i].0)).collect();
        let coeffs = lagrange_coefficients(&nodes, x_of(shares[check[0]].0))?;
        Ok(positions.iter().all(|&k| {
            let expected = coeffs
                .iter()
                .zip(base)
                .fold(Fp::ZERO, |acc, (&c, &i)| acc.add(c.mul(shares[i].1[k])));
            expected == shares[check[0]].1[k]
        }))
    };

    let n = shares.len();
    let mut disagreeing_sets = Vec::new();
    let mut disagreeing_members: Vec<Vec<usize>> = Vec::new();
    for subset in combinations(n, t + 1) {
        if !subset_consistent(&subset)? {
            let mut helpers: Vec<usize> = subset.iter().map(|&i| shares[i].0).collect();
            helpers.sort_unstable();
            disagreeing_sets.push(helpers);
            disagreeing_members.push(subset);
        }
    }
    // A helper is a suspect if every disagreeing set contains it, and without
    // it at least t + 1 shares remain to vouch for one another.
    let suspects = if n >= t + 2 {
        (0..n)
            .filter(|i| disagreeing_members.iter().all(|s| s.contains(i)))
            .map(|i| shares[i].0)
            .collect()
    } else {
        Vec::new()
    };
    Ok(InconsistencyReport {
        disagreeing_sets,
        suspects,
        inconsistent_elements,
    })
}

/// All `k`-subsets of `0..n`, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::with_capacity(k);
    fn go(start: usize, n: usize, k: usize, current: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for i in start..n {
            current.push(i);
            go(i + 1, n, k, current, out);
            current.pop();
        }
    }
    go(0, n, k, &mut current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::P;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    const CTX: [u8; 32] = [3; 32];

    fn expand_all(shares: &[ShamirShare], client: u32, len: usize) -> Vec<Vec<Fp>> {
        shares
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let mut acc = vec![Fp::ZERO; len];
                s.accumulate_into(&mut acc, CTX, client, j)
                    .expect("lengths match");
                acc
            })
            .collect()
    }

    fn field_vec(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Fp>> {
        proptest::collection::vec((0..P).prop_map(Fp::new), len)
    }

    fn params_strategy() -> impl Strategy<Value = (usize, usize)> {
        (2usize..=7).prop_flat_map(|h| (2usize..=h, Just(h)))
    }

    proptest! {
        #[test]
        fn any_t_shares_reconstruct(secret in field_vec(1..40), (t, h) in params_strategy(), client in 0u32..20, seed in any::<u64>()) {
            let params = ShamirParams::new(t, h).expect("valid");
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = share(params, &secret, client, CTX, &mut rng).expect("valid");
            let expanded = expand_all(&shares, client, secret.len());
            for subset in combinations(h, t) {
                let r = Reconstructor::new(params, &subset).expect("valid subset");
                let refs: Vec<&[Fp]> = subset.iter().map(|&j| expanded[j].as_slice()).collect();
                prop_assert_eq!(&r.reconstruct(&refs).expect("t shares"), &secret);
            }
            let all: Vec<(usize, &[Fp])> = expanded.iter().enumerate().map(|(j, s)| (j, s.as_slice())).collect();
            prop_assert_eq!(reconstruct_checked(params, &all).expect("consistent"), secret);
        }

        #[test]
        fn sharewise_sum_is_share_of_sum(a in field_vec(10..11), b in field_vec(10..11), (t, h) in params_strategy(), seed in any::<u64>()) {
            let params = ShamirParams::new(t, h).expect("valid");
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let sa = expand_all(&share(params, &a, 0, CTX, &mut rng).expect("valid"), 0, 10);
            let sb = expand_all(&share(params, &b, 1, CTX, &mut rng).expect("valid"), 1, 10);
            let sums: Vec<Vec<Fp>> = sa.iter().zip(&sb).map(|(x, y)| {
                let mut s = x.clone();
                vector::add_assign(&mut s, y).expect("same length");
                s
            }).collect();
            let all: Vec<(usize, &[Fp])> = sums.iter().enumerate().map(|(j, s)| (j, s.as_slice())).collect();
            let expected: Vec<Fp> = a.iter().zip(&b).map(|(x, y)| x.add(*y)).collect();
            prop_assert_eq!(reconstruct_checked(params, &all).expect("consistent"), expected);
        }

        /// Privacy: any t − 1 shares are consistent with every secret. For any
        /// candidate secret s', interpolate the polynomial through (0, s') and
        /// the t − 1 real shares, complete it to a full set of h shares, and
        /// check that this set is a valid sharing of s' (consistent, and
        /// reconstructing to s'). The t − 1 shares therefore cannot rule out s'.
        #[test]
        fn any_t_minus_1_shares_fit_every_secret(secret in field_vec(1..2), candidate in (0..P).prop_map(Fp::new), (t, h) in params_strategy(), seed in any::<u64>(), pick in any::<u64>()) {
            let params = ShamirParams::new(t, h).expect("valid");
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let expanded = expand_all(&share(params, &secret, 5, CTX, &mut rng).expect("valid"), 5, 1);
            let subsets = combinations(h, t - 1);
            let subset = &subsets[(pick % subsets.len() as u64) as usize];
            let mut nodes = vec![Fp::ZERO];
            nodes.extend(subset.iter().map(|&j| x_of(j)));
            let mut values = vec![candidate];
            values.extend(subset.iter().map(|&j| expanded[j][0]));
            let alternative: Vec<Vec<Fp>> = (0..h).map(|j| {
                let coeffs = lagrange_coefficients(&nodes, x_of(j)).expect("distinct nodes");
                vec![coeffs.iter().zip(&values).fold(Fp::ZERO, |acc, (&c, &y)| acc.add(c.mul(y)))]
            }).collect();
            for &j in subset {
                prop_assert_eq!(&alternative[j], &expanded[j], "the alternative keeps the observed shares");
            }
            let all: Vec<(usize, &[Fp])> = alternative.iter().enumerate().map(|(j, s)| (j, s.as_slice())).collect();
            prop_assert_eq!(reconstruct_checked(params, &all).expect("a valid sharing"), vec![candidate]);
        }
    }

    /// Privacy, statistically: with t = 2, every single share is uniform
    /// whatever the secret. Compare the top-two-bit histogram of each helper's
    /// share for two very different secrets against the uniform expectation.
    #[test]
    fn single_shares_are_uniform_for_any_secret() {
        let params = ShamirParams::new(2, 3).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        const SAMPLES: usize = 4000;
        for secret in [Fp::ZERO, Fp::new(P - 1)] {
            let mut histogram = [[0usize; 4]; 3];
            for client in 0..SAMPLES as u32 {
                let shares = share(params, &[secret], client, CTX, &mut rng).expect("valid");
                for (j, s) in expand_all(&shares, client, 1).iter().enumerate() {
                    histogram[j][(s[0].value() >> 59) as usize] += 1;
                }
            }
            for per_helper in histogram {
                // Expected 1000 per bucket (bucket 3 is one value short of a
                // full quarter); 6 sigma is about 165.
                for count in per_helper {
                    assert!((830..=1170).contains(&count), "{secret:?}: {per_helper:?}");
                }
            }
        }
    }

    #[test]
    fn a_wrong_share_is_detected_and_attributed() {
        let params = ShamirParams::new(2, 4).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let secret: Vec<Fp> = (0..100).map(Fp::new).collect();
        let mut expanded = expand_all(
            &share(params, &secret, 0, CTX, &mut rng).expect("valid"),
            0,
            100,
        );
        expanded[2][17] = expanded[2][17].add(Fp::ONE);
        let all: Vec<(usize, &[Fp])> = expanded
            .iter()
            .enumerate()
            .map(|(j, s)| (j, s.as_slice()))
            .collect();
        let Err(SharingError::Inconsistent(report)) = reconstruct_checked(params, &all) else {
            panic!("inconsistency must be detected");
        };
        assert_eq!(report.suspects, vec![2]);
        assert_eq!(report.inconsistent_elements, 1);
        assert!(report.disagreeing_sets.iter().all(|s| s.contains(&2)));
        assert_eq!(report.disagreeing_sets.len(), 3);
    }

    #[test]
    fn with_t_plus_1_shares_a_wrong_one_is_detected_but_not_attributed() {
        let params = ShamirParams::new(2, 3).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let secret = vec![Fp::new(42); 8];
        let mut expanded = expand_all(
            &share(params, &secret, 1, CTX, &mut rng).expect("valid"),
            1,
            8,
        );
        expanded[0][0] = expanded[0][0].add(Fp::ONE);
        let all: Vec<(usize, &[Fp])> = expanded
            .iter()
            .enumerate()
            .map(|(j, s)| (j, s.as_slice()))
            .collect();
        let Err(SharingError::Inconsistent(report)) = reconstruct_checked(params, &all) else {
            panic!("inconsistency must be detected");
        };
        assert!(report.suspects.is_empty());
        assert_eq!(report.disagreeing_sets, vec![vec![0, 1, 2]]);
    }

    #[test]
    fn seeded_helpers_rotate_and_number_t_minus_1() {
        let params = ShamirParams::new(3, 5).expect("valid");
        assert_eq!(params.seeded_helpers(0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(params.seeded_helpers(4).collect::<Vec<_>>(), vec![4, 0]);
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let shares = share(params, &[Fp::ONE], 4, CTX, &mut rng).expect("valid");
        let seeds: Vec<bool> = shares
            .iter()
            .map(|s| matches!(s, ShamirShare::Seed(_)))
            .collect();
        assert_eq!(seeds, vec![true, false, false, false, true]);
    }

    #[test]
    fn malformed_parameters_and_shares_are_typed_errors() {
        assert_eq!(
            ShamirParams::new(4, 3),
            Err(SharingError::ThresholdAboveHelpers {
                threshold: 4,
                helpers: 3
            })
        );
        assert_eq!(
            ShamirParams::new(1, 3),
            Err(SharingError::ThresholdTooSmall { threshold: 1 })
        );
        assert_eq!(
            ShamirParams::new(2, 0),
            Err(SharingError::TooFewHelpers { helpers: 0, min: 2 })
        );
        assert!(matches!(
            ShamirParams::new(2, 17),
            Err(SharingError::TooManyHelpers { .. })
        ));
        let params = ShamirParams::new(2, 3).expect("valid");
        let a = vec![Fp::ONE; 4];
        let short = vec![Fp::ONE; 3];
        assert_eq!(
            reconstruct_checked(params, &[(0, &a)]),
            Err(SharingError::NotEnoughShares { needed: 2, got: 1 })
        );
        assert_eq!(
            reconstruct_checked(params, &[(1, &a), (1, &a)]),
            Err(SharingError::DuplicateHelper { index: 1 })
        );
        assert_eq!(
            reconstruct_checked(params, &[(0, &a), (5, &a)]),
            Err(SharingError::HelperOutOfRange {
                index: 5,
                helpers: 3
            })
        );
        assert!(matches!(
            reconstruct_checked(params, &[(0, &a), (1, &short)]),
            Err(SharingError::ShareLength { helper: 1, .. })
        ));
        assert_eq!(
            Reconstructor::new(params, &[0, 0]).err(),
            Some(SharingError::DuplicateHelper { index: 0 })
        );
        assert!(matches!(
            lagrange_coefficients(&[Fp::ONE, Fp::ONE], Fp::ZERO),
            Err(SharingError::DuplicateHelper { .. })
        ));
        let r = Reconstructor::new(params, &[0, 2]).expect("valid");
        assert_eq!(
            r.reconstruct(&[&a]).err(),
            Some(SharingError::NotEnoughShares { needed: 2, got: 1 })
        );
    }
}
