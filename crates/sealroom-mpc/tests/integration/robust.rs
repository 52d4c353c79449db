//! Robust aggregation in the engine (issue #15): norm clipping and the
//! coordinate-wise trimmed mean and median, against their plaintext twins
//! on the same integers, at the edges (in-bound updates never scaled,
//! over-norm updates scaled to at most the clip norm, hard-bound failures
//! left out, attackers' extreme values trimmed).
#![allow(missing_docs)]

use crate::common;

use common::*;
use sealroom_mpc::robust::{
    ClipBounds, clipped_weighted_sum, clipped_weighted_sum_plain, trimmed_sum, trimmed_sum_plain,
};
use sealroom_mpc::session::SessionInputs;

const CTX: [u8; 32] = [23; 32];

fn uploads(data: &[Vec<i64>]) -> [SessionInputs; 3] {
    client_uploads(data, CTX, 6)
}

fn bits(v: &[bool]) -> Vec<i128> {
    v.iter().map(|&b| i128::from(b)).collect()
}

#[test]
fn clipping_matches_its_twin_and_never_exceeds_the_clip_norm() {
    let max = i64::from(i32::MAX);
    // C = 5 (C² = 25), B² = 2,500 (B = 50), weights ≤ 10.
    let bounds = ClipBounds {
        clip_sq: 25,
        l2_sq: 2_500,
        linf_sq: None,
        max_weight: 10,
    };
    let data = vec![
        vec![3, 4, 0, 2],       // norm 5 = C: never scaled
        vec![30, 40, 0, 7],     // norm 50 = B: scaled to ≤ 5
        vec![0, 0, 0, 10],      // zero update
        vec![-6, 8, 0, 3],      // norm 10: scaled by about 1/2
        vec![30, 41, 0, 1],     // just above B: left out
        vec![max, max, max, 5], // huge: left out, its norm never compared
        vec![1, 1, 1, 11],      // weight too heavy: left out
        vec![1, 1, 1, -1],      // negative weight: left out
    ];
    let program = clipped_weighted_sum(data.len(), 4, bounds).expect("builds");
    let out = outputs(run_with(&program, uploads(&data), None));
    let (want, verdicts, per_check) = clipped_weighted_sum_plain(&data, &bounds);
    assert_eq!(
        out[0], want,
        "the clipped weighted numerator and total weight"
    );
    assert_eq!(out[1], bits(&verdicts));
    assert_eq!(bits(&verdicts), vec![1, 1, 1, 1, 0, 0, 0, 0]);
    let flat: Vec<bool> = per_check.concat();
    assert_eq!(out[2], bits(&flat));
    assert_eq!(bounds.checks(), vec!["l2", "weight"]);
    // In-norm update unscaled: its share of the numerator is w·2^16·q.
    assert_eq!(bounds.scale(25), 1 << 16);
    // The total weight counts the kept clients only.
    assert_eq!(out[0][3], 2 + 7 + 10 + 3);
    // Every kept update, after scaling, has a norm of at most C.
    for u in &data[..4] {
        let norm: u128 = u[..3].iter().map(|&v| (v * v) as u128).sum();
        let s = u128::from(bounds.scale(norm));
        assert!(s * s * norm <= 25 << 32, "{u:?}");
    }
}

#[test]
fn clipping_with_an_linf_bound_names_the_failed_check() {
    let bounds = ClipBounds {
        clip_sq: 100,
        l2_sq: 10_000,
        linf_sq: Some(36),
        max_weight: 4,
    };
    let data = vec![vec![6, -6, 1], vec![7, 0, 2], vec![20, 20, 3]];
    let program = clipped_weighted_sum(data.len(), 3, bounds).expect("builds");
    let out = outputs(run_with(&program, uploads(&data), None));
    let (want, verdicts, per_check) = clipped_weighted_sum_plain(&data, &bounds);
    assert_eq!(out[0], want);
    assert_eq!(out[1], bits(&verdicts));
    assert_eq!(out[2], bits(&per_check.concat()));
    assert_eq!(bounds.checks(), vec!["l2", "linf", "weight"]);
    // Client 1 fails L∞ only; client 2 fails L∞ (its norm 28 is in bound).
    assert_eq!(per_check[1], vec![true, false, true]);
    assert_eq!(per_check[2], vec![true, false, true]);
}

#[test]
fn clip_parameters_out_of_range_are_refused() {
    let ok = ClipBounds {
        clip_sq: 4,
        l2_sq: 400,
        linf_sq: None,
        max_weight: 1,
    };
    assert!(clipped_weighted_sum(3, 1, ok).is_err());
    assert!(clipped_weighted_sum(3, (1 << 20) + 1, ok).is_err());
    assert!(clipped_weighted_sum(3, 3, ClipBounds { clip_sq: 500, ..ok }).is_err());
}

#[test]
fn the_trimmed_sum_drops_the_extremes_of_every_coordinate() {
    let max = i64::from(i32::MAX);
    let min = i64::from(i32::MIN);
    // Five clients, trim 1: each coordinate sums its three middle values;
    // the last element (a weight) is not read.
    let data = vec![
        vec![1, 10, -3, 7],
        vec![2, 20, -1, 7],
        vec![max, min, 0, 7], // an attacker's extremes
        vec![3, 30, 5, 7],
        vec![min, max, 2, 7], // another
    ];
    let program = trimmed_sum(data.len(), 4, 3, 1).expect("builds");
    let out = outputs(run_with(&program, uploads(&data), None));
    let want = trimmed_sum_plain(&data, 3, 1);
    assert_eq!(out[0], want);
    assert_eq!(want, vec![1 + 2 + 3, 10 + 20 + 30, 1]);
}

#[test]
fn the_median_of_an_even_cohort_is_its_two_middle_values() {
    let data: Vec<Vec<i64>> = vec![vec![4, -8], vec![1, 9], vec![3, 0], vec![2, 5]];
    // trim = (n − 1)/2 = 1 keeps ranks 1 and 2.
    let program = trimmed_sum(4, 2, 2, 1).expect("builds");
    let out = outputs(run_with(&program, uploads(&data), None));
    assert_eq!(out[0], trimmed_sum_plain(&data, 2, 1));
    assert_eq!(out[0], vec![5, 5]);
    // Odd cohort: one value.
    let odd: Vec<Vec<i64>> = data[..3].to_vec();
    let program = trimmed_sum(3, 2, 2, 1).expect("builds");
    let out = outputs(run_with(&program, uploads(&odd), None));
    assert_eq!(out[0], vec![3, 0]);
}

#[test]
fn trim_parameters_out_of_range_are_refused() {
    assert!(trimmed_sum(4, 3, 3, 2).is_err(), "n must exceed 2·trim");
    assert!(trimmed_sum(4, 3, 0, 1).is_err());
    assert!(trimmed_sum(4, 3, 4, 1).is_err());
    assert!(trimmed_sum(4, 0, 0, 1).is_err());
}

/// DP-FedAvg's program: the opened values are the plaintext twin's lattice
/// values plus one centred binomial sample each (two coins: −1, 0 or +1),
/// an over-bound client contributes nothing, and the only output is the
/// noised vector (no verdict, no weight).
#[test]
fn dp_clipped_sum_is_its_twin_plus_noise_and_outputs_nothing_else() {
    use sealroom_mpc::dp_fedavg::{DpClip, dp_clipped_sum, dp_clipped_sum_plain};
    let max = i64::from(i32::MAX);
    // C = 5 quanta; lattice of 2^1 quanta; hard bound 2^8·5 = 1,280.
    let dp = DpClip {
        clip_sq: 25,
        shift: 1,
        coins: 2,
    };
    assert_eq!(dp.l2_sq(), 1_280 * 1_280);
    let data = vec![
        vec![3, 4, 0, 7],         // norm 5 = C: unscaled (weight ignored)
        vec![300, 400, 0, 1],     // norm 500: clipped to ≤ 5
        vec![-6, 8, 2, 0],        // norm ≈ 10.2: clipped to ≤ 5
        vec![max, max, max, 1],   // far above the hard bound: contributes 0
        vec![1_000, 1_000, 0, 1], // norm 1,414 > 1,280: contributes 0
    ];
    let program = dp_clipped_sum(data.len(), 4, dp).expect("builds");
    let more = dp_clipped_sum(data.len(), 4, DpClip { coins: 6, ..dp }).expect("builds");
    assert_eq!(
        more.needs().bits - program.needs().bits,
        3 * 4,
        "the noise takes its coins per coordinate"
    );
    let out = outputs(run_with(&program, uploads(&data), None));
    assert_eq!(out.len(), 1, "one output: the noised lattice values");
    let twin = dp_clipped_sum_plain(&data, &dp);
    let honest = dp_clipped_sum_plain(&data[..3], &dp);
    assert_eq!(twin, honest, "over-bound clients contribute zero");
    assert_eq!(out[0].len(), 3);
    for (o, t) in out[0].iter().zip(&twin) {
        assert!((o - t).abs() <= 1, "noised {o} vs lattice {t}");
    }
    // The lattice values: ⌊Σ S·q / 2^17⌋, each client's clipped norm ≤ 5.
    let s1 = i128::from(dp.bounds().scale(500 * 500));
    let s2 = i128::from(dp.bounds().scale(104));
    let y0 = 3 * 65_536 + s1 * 300 - 6 * s2;
    assert_eq!(twin[0], y0.div_euclid(1 << 17));
    // Parameters the program cannot run exactly are refused.
    for bad in [
        DpClip { coins: 3, ..dp },
        DpClip { coins: 0, ..dp },
        DpClip { shift: 41, ..dp },
        DpClip { clip_sq: 0, ..dp },
    ] {
        assert!(dp_clipped_sum(2, 4, bad).is_err(), "{bad:?}");
    }
}

/// The sensitivity of the lattice values: replacing one client's update
/// moves them by at most `2C/2^m + √d` in L2 — checked on the twin over
/// random pairs of updates (the bound the accountant is given).
#[test]
fn dp_lattice_values_move_within_the_stated_sensitivity() {
    use sealroom_mpc::dp_fedavg::{DpClip, dp_clipped_sum_plain};
    let dp = DpClip {
        clip_sq: 40_000, // C = 200 quanta
        shift: 3,
        coins: 2,
    };
    let d = 6;
    let bound = dp.sensitivity_sq(d);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |r: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % (2 * r as u64 + 1)) as i64 - r
    };
    for _ in 0..300 {
        let others: Vec<Vec<i64>> = (0..3)
            .map(|_| (0..=d).map(|_| next(500)).collect())
            .collect();
        let a: Vec<i64> = (0..=d).map(|_| next(3_000)).collect();
        let b: Vec<i64> = (0..=d).map(|_| next(50)).collect();
        let with_a = dp_clipped_sum_plain(&[others.clone(), vec![a]].concat(), &dp);
        let with_b = dp_clipped_sum_plain(&[others, vec![b]].concat(), &dp);
        let moved: f64 = with_a
            .iter()
            .zip(&with_b)
            .map(|(x, y)| ((x - y) * (x - y)) as f64)
            .sum();
        assert!(moved <= bound, "moved {moved} > {bound}");
    }
}
