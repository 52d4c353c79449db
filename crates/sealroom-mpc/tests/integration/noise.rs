//! Binomial noise inside the engine: its distribution (chi-square against
//! the exact binomial) and the agreement of the three helpers' outputs.

use crate::common;

use common::{outputs, run_with};
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::session::SessionInputs;

fn noise_program(count: usize, coins: usize) -> sealroom_mpc::program::Program {
    let mut p = ProgramBuilder::new("noise-test", 1);
    let n = p.binomial_noise(count, coins);
    p.output(n);
    p.build().expect("noise program")
}

fn binomial_pmf(n: u64) -> Vec<f64> {
    let mut pmf = Vec::with_capacity(n as usize + 1);
    let mut c = 1.0f64;
    for k in 0..=n {
        pmf.push(c / 2f64.powi(n as i32));
        c = c * (n - k) as f64 / (k + 1) as f64;
    }
    pmf
}

/// 3,000 samples of Bin(16, 1/2) − 8 made by three helpers (seeded
/// preprocessing, so the run is reproducible) pass a chi-square
/// goodness-of-fit test against the exact distribution. Bins: k ≤ 3, each
/// k in 4..=12, k ≥ 13 (every expected count ≥ 30), 10 degrees of freedom.
/// The critical value 46.86 is the 1 − 10⁻⁶ quantile of χ²(10): a correct
/// generator fails this test with probability 10⁻⁶ over the seeds.
#[test]
fn binomial_noise_has_the_binomial_distribution() {
    let (count, coins) = (3000, 16);
    let program = noise_program(count, coins);
    assert_eq!(program.needs().bits, count * coins);
    assert_eq!(program.needs().triples, 0, "noise needs no multiplication");
    let out = outputs(run_with(
        &program,
        [
            SessionInputs::default(),
            SessionInputs::default(),
            SessionInputs::default(),
        ],
        None,
    ));
    let samples = &out[0];
    assert_eq!(samples.len(), count);
    let mut observed = [0u64; 17];
    for &s in samples {
        let k = s + 8;
        assert!((0..=16).contains(&k), "sample {s} outside ±8");
        observed[k as usize] += 1;
    }
    let pmf = binomial_pmf(16);
    let bins: Vec<(f64, f64)> = {
        let mut v = Vec::new();
        let tail = |r: core::ops::RangeInclusive<usize>| {
            (
                r.clone().map(|k| observed[k] as f64).sum::<f64>(),
                r.map(|k| pmf[k]).sum::<f64>() * count as f64,
            )
        };
        v.push(tail(0..=3));
        for k in 4..=12 {
            v.push(tail(k..=k));
        }
        v.push(tail(13..=16));
        v
    };
    assert!(bins.iter().all(|&(_, e)| e >= 30.0));
    let chi2: f64 = bins.iter().map(|&(o, e)| (o - e) * (o - e) / e).sum();
    assert!(
        chi2 < 46.86,
        "χ² = {chi2:.2} over 10 degrees of freedom: the noise is not Bin(16, 1/2) − 8"
    );
    let mean = samples.iter().sum::<i128>() as f64 / count as f64;
    // Standard error of the mean: 2/√3000 ≈ 0.037; 0.25 is 6.8 of them.
    assert!(mean.abs() < 0.25, "mean {mean}");
}

#[test]
fn odd_or_oversized_coin_counts_are_refused_when_the_program_is_built() {
    for (count, coins) in [
        (4, 3),
        (4, 0),
        (0, 2),
        (1, sealroom_mpc::noise::MAX_COINS + 2),
    ] {
        let mut p = ProgramBuilder::new("noise-test", 1);
        let n = p.binomial_noise(count, coins);
        p.output(n);
        assert!(p.build().is_err(), "count {count} coins {coins} accepted");
    }
}
