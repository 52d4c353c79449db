//! The norm-bounded sum (issue #15): exact squared L2 norms of the clients'
//! converted uploads, a verdict per client, and the sum over the clients
//! within the bound — against plaintext integer arithmetic, at the edges.
#![allow(missing_docs)]

use crate::common;

use common::*;
use sealroom_mpc::session::SessionInputs;
use sealroom_mpc::validity::norm_bounded_sum;

const CTX: [u8; 32] = [21; 32];

fn uploads(data: &[Vec<i64>]) -> [SessionInputs; 3] {
    client_uploads(data, CTX, 5)
}

fn plain(data: &[Vec<i64>], bound_sq: u128) -> (Vec<i128>, Vec<i128>) {
    let ok: Vec<i128> = data
        .iter()
        .map(|x| {
            let norm: u128 = x
                .iter()
                .map(|&v| (i128::from(v) * i128::from(v)) as u128)
                .sum();
            i128::from(norm <= bound_sq)
        })
        .collect();
    let mut sums = vec![0i128; data[0].len()];
    for (x, &k) in data.iter().zip(&ok) {
        for (s, &v) in sums.iter_mut().zip(x) {
            *s += k * i128::from(v);
        }
    }
    (sums, ok)
}

#[test]
fn only_clients_within_the_exact_norm_bound_are_summed() {
    let max = i64::from(i32::MAX);
    let min = i64::from(i32::MIN);
    // Norms: 25 (= bound), 26 (one above), 0, and the largest possible.
    let data = vec![
        vec![3, 4, 0, 0],
        vec![1, 5, 0, 0],
        vec![0, 0, 0, 0],
        vec![max, min, max, min],
        vec![-4, 3, 0, 0],
    ];
    let bound_sq = 25;
    let out = outputs(run_with(
        &norm_bounded_sum(data.len(), 4, bound_sq).expect("builds"),
        uploads(&data),
        None,
    ));
    let (sums, ok) = plain(&data, bound_sq);
    assert_eq!(ok, vec![1, 0, 1, 0, 1]);
    assert_eq!(out[0], sums);
    assert_eq!(out[1], ok);
    // A bound that admits the largest vector admits everyone.
    let huge = 4 * (1u128 << 62);
    let out = outputs(run_with(
        &norm_bounded_sum(data.len(), 4, huge).expect("builds"),
        uploads(&data),
        None,
    ));
    assert_eq!(out[1], vec![1; 5]);
    assert_eq!(out[0], plain(&data, huge).0);
}

#[test]
fn out_of_range_parameters_are_refused() {
    assert!(norm_bounded_sum(3, 0, 10).is_err());
    assert!(norm_bounded_sum(3, (1 << 20) + 1, 10).is_err());
    assert!(norm_bounded_sum(3, 4, 1 << 82).is_err());
    assert!(norm_bounded_sum(0, 4, 10).is_err());
}

/// The kept sum of `data` under verdicts `ok`.
fn kept_sum(data: &[Vec<i64>], ok: &[i128]) -> Vec<i128> {
    let mut sums = vec![0i128; data[0].len()];
    for (x, &k) in data.iter().zip(ok) {
        for (s, &v) in sums.iter_mut().zip(x) {
            *s += k * i128::from(v);
        }
    }
    sums
}

#[test]
fn weighted_updates_are_checked_on_their_unweighted_norm_and_weight() {
    use sealroom_mpc::validity::{UpdateBounds, weighted_norm_bounded_sum};
    // [w·q, w]: deltas (3, 4) at weight 2 → norm 25 ≤ 25; (1, 5) at weight
    // 3 → 26 > 25; weight 0; weight above max_weight (9 > 8) with a tiny
    // delta; a negative weight; the largest vector.
    let max = i64::from(i32::MAX);
    let data = vec![
        vec![6, 8, 2],
        vec![3, 15, 3],
        vec![0, 0, 0],
        vec![0, 9, 9],
        vec![-3, 0, -1],
        vec![max, max, 1],
        vec![-8, 6, 2],
    ];
    let bounds = UpdateBounds {
        l2_sq: Some(25),
        linf_sq: None,
        max_weight: 8,
    };
    assert_eq!(bounds.checks(), ["l2", "weight"]);
    let out = outputs(run_with(
        &weighted_norm_bounded_sum(data.len(), 3, bounds).expect("builds"),
        uploads(&data),
        None,
    ));
    let ok = vec![1, 0, 1, 0, 0, 0, 1];
    assert_eq!(out[1], ok);
    assert_eq!(out[0], kept_sum(&data, &ok));
    // Per client: which check failed.
    assert_eq!(out[2], vec![1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1]);
    assert!(weighted_norm_bounded_sum(3, 1, bounds).is_err());
    let too_wide = UpdateBounds {
        l2_sq: Some(1 << 60),
        linf_sq: None,
        max_weight: 1 << 20,
    };
    assert!(weighted_norm_bounded_sum(3, 3, too_wide).is_err());
    let none = UpdateBounds {
        l2_sq: None,
        linf_sq: None,
        max_weight: 8,
    };
    assert!(weighted_norm_bounded_sum(3, 3, none).is_err());
}

/// An L∞ bound leaves out an update with one large element even when its
/// L2 norm is within the bound, and says which bound failed.
#[test]
fn an_update_with_one_element_beyond_the_linf_bound_is_left_out() {
    use sealroom_mpc::validity::{UpdateBounds, weighted_norm_bounded_sum};
    let max = i64::from(i32::MAX);
    // L2² ≤ 25, |q_j| ≤ 3, weight ≤ 8.
    let data = vec![
        vec![6, 8, 2],   // q = (3, 4): L2 25 within, |4| > 3
        vec![2, -6, 2],  // q = (1, −3): within both
        vec![0, 0, 0],   // weight 0
        vec![9, 3, 3],   // q = (3, 1): on the L∞ bound
        vec![12, 0, 3],  // q = (4, 0): L2 16 within, |4| > 3
        vec![max, 0, 1], // beyond both
        vec![-9, -9, 3], // q = (−3, −3): within both (L2 18)
    ];
    let bounds = UpdateBounds {
        l2_sq: Some(25),
        linf_sq: Some(9),
        max_weight: 8,
    };
    assert_eq!(bounds.checks(), ["l2", "linf", "weight"]);
    let out = outputs(run_with(
        &weighted_norm_bounded_sum(data.len(), 3, bounds).expect("builds"),
        uploads(&data),
        None,
    ));
    let ok = vec![0, 1, 1, 1, 0, 0, 1];
    assert_eq!(out[1], ok);
    assert_eq!(out[0], kept_sum(&data, &ok));
    let verdicts: Vec<&[i128]> = out[2].chunks(3).collect();
    assert_eq!(verdicts[0], [1, 0, 1]);
    assert_eq!(verdicts[4], [1, 0, 1]);
    assert_eq!(verdicts[5], [0, 0, 1]);
    assert!(verdicts[1..4].iter().all(|v| *v == [1, 1, 1]));
    // An L∞ bound alone.
    let linf_only = UpdateBounds {
        l2_sq: None,
        linf_sq: Some(9),
        max_weight: 8,
    };
    let out = outputs(run_with(
        &weighted_norm_bounded_sum(data.len(), 3, linf_only).expect("builds"),
        uploads(&data),
        None,
    ));
    assert_eq!(out[1], ok);
    assert_eq!(out[2][..2], [0, 1]);
}
