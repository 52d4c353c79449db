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
//! The privacy analysis of a released value (how many coins for which
//! (ε, δ)) lives with the release's sensitivity, in
//! `sealroom_analytics::query::dp`.

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
