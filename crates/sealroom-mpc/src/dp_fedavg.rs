//! DP-FedAvg inside the engine (issue #15): each client's update clipped to
//! an L2 norm, the clipped updates summed, the sum rounded to a public
//! lattice and noised with binomial noise from shared random bits — so the
//! only value opened is the noised sum, and nobody (helper, coordinator or
//! client) knows the noise or learns whether any client was clipped.
//!
//! **Construction.** DP-FedAvg with a fixed denominator (McMahan, Ramage,
//! Talwar, Zhang, *Learning differentially private recurrent language
//! models*, ICLR 2018, Alg. 1: `ClipFn` flat clipping, the estimator
//! `f̃_f = Σ_k Δ_k / (qW)` with Gaussian noise on the sum), with the noise
//! generated inside the engine (the binomial mechanism of Dwork,
//! Kenthapadi, McSherry, Mironov and Naor, EUROCRYPT 2006, in `d`
//! dimensions as in cpSGD, Agarwal, Suresh, Yu, Kumar, McMahan, NeurIPS
//! 2018, §4) instead of by a trusted server:
//!
//! 1. each client's unweighted quantized delta `q_c` is clipped exactly as
//!    by [`crate::robust`]: `S_c·q_c` with `S_c ≤ 2^16` the largest public
//!    grid point such that `‖S_c·q_c‖ ≤ 2^16·C` (integers, exact
//!    comparisons);
//! 2. an update above the hard bound `B = 2^8·C` (or `2^25` quanta,
//!    whichever is smaller) contributes **zero**, and nobody learns it: the
//!    verdict multiplies the factor and is never opened (a clipped round's
//!    per-client verdicts would tell which clients' data moved far);
//! 3. `y = Σ_c S_c·q_c` per coordinate, `t = ⌊y / 2^(16+m)⌋` (the exact
//!    truncation of `crate::ops`): the lattice of `2^m` quanta;
//! 4. `t + N`, `N` one sample of `Bin(coins, ½) − coins/2` per coordinate
//!    from `coins` fresh random shared bits ([`crate::noise`]), is opened
//!    after the MAC check — the round's only output.
//!
//! The weight slot of the upload layout is ignored (the denominator is
//! public: the number of clients in the round).
//!
//! **Sensitivity.** Replacing one client's update (a row added to or
//! removed from its table moves its whole update, within the clip) moves
//! `y/2^(16+m)` by a vector `u` with `‖u‖ ≤ 2C/2^m`; the floor moves each
//! coordinate by at most `|u_j| + 1`, and only where `u_j ≠ 0`, so the
//! lattice values move by an integer vector `k` with `‖k‖ ≤ 2C/2^m + √d`
//! (Minkowski). [`DpClip::sensitivity_sq`] is its square;
//! [`crate::noise::binomial_vector_delta`] bounds the δ of the noise for
//! that sensitivity.
//!
//! **Cost** per round: the clipping's (`2d + 2` multiplications and about
//! 129 comparisons per client), `d` exact truncations and `coins · d`
//! random bits — the noise dominates: `coins = 4σ²` in lattice units.

use crate::program::{Program, ProgramBuilder, ProgramError};
use crate::robust::{ClipBounds, SCALE_BITS, split_weight};
use crate::validity::MAX_ELEMENTS;

/// The program's name in descriptors and session ids.
pub const DP_CLIPPED_SUM: &str = "dp-clipped-sum";
/// Its version.
pub const DP_CLIPPED_SUM_VERSION: u32 = 1;
/// The hard bound is `2^HARD_OCTAVES · C` (at most).
pub const HARD_OCTAVES: u32 = 8;
/// The largest lattice shift `m`.
pub const MAX_SHIFT: u32 = 40;
/// Bits of the summed, clipped values before truncation
/// (`|y| ≤ clients · 2^16 · 2^25 < 2^63` for up to 2^21 clients).
const SUM_BITS: u32 = 64;
/// The most random bits one round's noise may take.
pub const MAX_NOISE_BITS: u64 = 1 << 26;

/// The parameters of a DP-FedAvg round, all public and signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpClip {
    /// `C²`, in quanta²: every update is clipped to an L2 norm of `C`.
    pub clip_sq: u128,
    /// `m`: the sum is rounded down to multiples of `2^m` quanta.
    pub shift: u32,
    /// Coins of each coordinate's binomial noise (even, at least 2).
    pub coins: u32,
}

impl DpClip {
    /// The hard bound's square: `min((2^8·C)², 2^50 − 1)`.
    pub fn l2_sq(&self) -> u128 {
        (self.clip_sq << (2 * HARD_OCTAVES)).min((1 << 50) - 1)
    }

    /// The clipping of [`crate::robust`] this round applies.
    pub fn bounds(&self) -> ClipBounds {
        ClipBounds {
            clip_sq: self.clip_sq,
            l2_sq: self.l2_sq(),
            linf_sq: None,
            max_weight: 0,
        }
    }

    /// The square of the L2 sensitivity of the lattice values, for `d`
    /// coordinates: `(2·√C²/2^m + √d)²` (module doc, "Sensitivity").
    pub fn sensitivity_sq(&self, d: usize) -> f64 {
        let c = (self.clip_sq as f64).sqrt() / 2f64.powi(self.shift as i32);
        let s = 2.0 * c + (d as f64).sqrt();
        s * s
    }

    /// Refuses parameters the program cannot run exactly.
    pub fn check(&self, d: usize) -> Result<(), ProgramError> {
        if self.clip_sq == 0 || self.clip_sq >= 1 << 50 {
            return Err(ProgramError::Unsupported(
                "the clip norm must be between 1 and 2^25 quanta",
            ));
        }
        if self.shift > MAX_SHIFT {
            return Err(ProgramError::Unsupported(
                "the lattice shift must be at most 40",
            ));
        }
        if self.coins < 2
            || !self.coins.is_multiple_of(2)
            || self.coins as usize > crate::noise::MAX_COINS
        {
            return Err(ProgramError::Unsupported(
                "the noise needs an even number of coins between 2 and 2^24",
            ));
        }
        if (d as u64).saturating_mul(u64::from(self.coins)) > MAX_NOISE_BITS {
            return Err(ProgramError::Unsupported(
                "the noise of one round may take at most 2^26 random bits",
            ));
        }
        self.bounds().check()
    }
}

/// The DP-FedAvg program for `clients` uploads of `len` elements over
/// Z_2^32, each `[q_0, …, q_{d−1}, w]` (the unweighted quantized delta; the
/// weight is ignored). One output: the `d` noised lattice values
/// `⌊Σ_c S_c·q_c / 2^(16+m)⌋ + N_j`.
pub fn dp_clipped_sum(clients: usize, len: usize, dp: DpClip) -> Result<Program, ProgramError> {
    if !(2..=MAX_ELEMENTS).contains(&len) {
        return Err(ProgramError::Unsupported(
            "a DP sum takes 2 to 2^20 elements per client (the weight last)",
        ));
    }
    let d = len - 1;
    dp.check(d)?;
    let bounds = dp.bounds();
    let mut p = ProgramBuilder::new(DP_CLIPPED_SUM, DP_CLIPPED_SUM_VERSION);
    let x = p.client_inputs(clients, len, 32);
    let (deltas, _weights) = split_weight(&mut p, x, clients, len);
    // [Σ q² ≤ B²], never opened.
    let (_, norms, ok) = p.l2_verdicts(deltas, d, bounds.l2_sq);
    let kept_norms = p.mul(ok, norms);
    let scale = p.clip_scale(kept_norms, &bounds);
    let factor = p.mul(ok, scale);
    let scaled = p.scale_per_client(deltas, factor, d);
    let sums = p.client_sum(scaled, clients, d);
    let lattice = p.trunc(sums, SUM_BITS, SCALE_BITS + dp.shift);
    let noise = p.binomial_noise(d, dp.coins as usize);
    let noised = p.add(lattice, noise);
    p.output(noised);
    p.build()
}

/// The plaintext twin of [`dp_clipped_sum`] **before the noise**: the
/// lattice values `⌊Σ_c S_c·q_c / 2^(16+m)⌋` from the same integers (the
/// opened values differ from them by one binomial sample each).
pub fn dp_clipped_sum_plain(updates: &[Vec<i64>], dp: &DpClip) -> Vec<i128> {
    let len = updates.first().map_or(0, Vec::len);
    let d = len.saturating_sub(1);
    let bounds = dp.bounds();
    let mut sums = vec![0i128; d];
    for u in updates {
        let q = &u[..d];
        let norm: u128 = q
            .iter()
            .map(|&v| (i128::from(v) * i128::from(v)) as u128)
            .sum();
        if norm > bounds.l2_sq {
            continue;
        }
        let s = i128::from(bounds.scale(norm));
        for (o, &v) in sums.iter_mut().zip(q) {
            *o += s * i128::from(v);
        }
    }
    sums.into_iter()
        .map(|y| y.div_euclid(1i128 << (SCALE_BITS + dp.shift)))
        .collect()
}
