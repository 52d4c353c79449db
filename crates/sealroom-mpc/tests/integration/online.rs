//! Online operations against plaintext arithmetic.
#![allow(missing_docs)]

use crate::common;

use common::*;
use proptest::prelude::*;
use sealroom_mpc::F127;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::program::ProgramBuilder;

const H0: HelperIndex = HelperIndex::ALL[0];
const H1: HelperIndex = HelperIndex::ALL[1];

#[test]
fn arithmetic_matches_plaintext() {
    let x = vec![3i64, -5, 0, 1 << 40, -(1 << 40)];
    let y = vec![7i64, 11, -13, 2, 3];
    let mut p = ProgramBuilder::new("arith", 1);
    let a = p.helper_input(H0, 0, x.len());
    let b = p.helper_input(H1, 0, y.len());
    let s = p.add(a, b);
    let d = p.sub(a, b);
    let m = p.mul(a, b);
    let c = p.mul_const(a, F127::from_i64(-4));
    let c = p.add_const(c, F127::from_u64(9));
    let ip = p.inner_product(a, b);
    let m2 = p.mul(m, s); // depth 2
    for v in [s, d, m, c, ip, m2] {
        p.output(v);
    }
    let prog = p.build().expect("builds");
    let out = outputs(run_with(
        &prog,
        helper_inputs(&[(0, 0, x.clone()), (1, 0, y.clone())]),
        None,
    ));
    let xi: Vec<i128> = x.iter().map(|&v| v as i128).collect();
    let yi: Vec<i128> = y.iter().map(|&v| v as i128).collect();
    let zip = |f: &dyn Fn(i128, i128) -> i128| {
        xi.iter()
            .zip(&yi)
            .map(|(a, b)| f(*a, *b))
            .collect::<Vec<_>>()
    };
    assert_eq!(out[0], zip(&|a, b| a + b));
    assert_eq!(out[1], zip(&|a, b| a - b));
    assert_eq!(out[2], zip(&|a, b| a * b));
    assert_eq!(out[3], xi.iter().map(|a| -4 * a + 9).collect::<Vec<_>>());
    assert_eq!(
        out[4],
        vec![xi.iter().zip(&yi).map(|(a, b)| a * b).sum::<i128>()]
    );
    assert_eq!(out[5], zip(&|a, b| a * b * (a + b)));
}

#[test]
fn one_round_per_multiplication_layer() {
    // Two independent products share one round; a dependent one takes another.
    let mut p = ProgramBuilder::new("rounds", 1);
    let a = p.random_values(4);
    let b = p.random_values(4);
    let m1 = p.mul(a, b);
    let m2 = p.mul(b, b);
    let m3 = p.mul(m1, m2);
    p.output(m3);
    let prog = p.build().expect("builds");
    // hello + 2 multiplication rounds + output + final check (3).
    assert_eq!(prog.rounds(), 1 + 2 + 1 + 3);
}

fn cmp_program(k: u32, n: usize) -> sealroom_mpc::program::Program {
    let mut p = ProgramBuilder::new("cmp", 1);
    let a = p.helper_input(H0, 0, n);
    let b = p.helper_input(H1, 0, n);
    let lt = p.lt(a, b, k);
    let ltz = p.ltz(a, k);
    let eq = p.eq(a, b, k);
    let tr = p.trunc(a, k, 3);
    let bits = p.bit_decompose(a, k);
    for v in [lt, ltz, eq, tr, bits] {
        p.output(v);
    }
    p.build().expect("builds")
}

#[test]
fn comparisons_at_the_edges() {
    let k = 16u32;
    let half = 1i64 << (k - 1);
    let x = vec![0i64, -1, 1, half - 1, -half, 5, -7, 0, half - 1];
    let y = vec![0i64, 0, -1, -half, half - 1, 5, 3, -1, half - 1];
    let prog = cmp_program(k, x.len());
    let out = outputs(run_with(
        &prog,
        helper_inputs(&[(0, 0, x.clone()), (1, 0, y.clone())]),
        None,
    ));
    let b = |c: bool| i128::from(c);
    assert_eq!(
        out[0],
        x.iter().zip(&y).map(|(a, c)| b(a < c)).collect::<Vec<_>>()
    );
    assert_eq!(out[1], x.iter().map(|a| b(*a < 0)).collect::<Vec<_>>());
    assert_eq!(
        out[2],
        x.iter().zip(&y).map(|(a, c)| b(a == c)).collect::<Vec<_>>()
    );
    assert_eq!(
        out[3],
        x.iter()
            .map(|a| i128::from(a.div_euclid(8)))
            .collect::<Vec<_>>()
    );
    let n = x.len();
    for (i, a) in x.iter().enumerate() {
        for j in 0..k as usize {
            assert_eq!(
                out[4][j * n + i],
                i128::from((*a as u64 >> j) & 1),
                "bit {j} of {a}"
            );
        }
    }
}

#[test]
fn probabilistic_truncation_is_within_one() {
    let k = 32u32;
    let x: Vec<i64> = vec![0, 1, -1, 1000, -1000, (1 << 31) - 1, -(1 << 31), 12345];
    let mut p = ProgramBuilder::new("trunc_pr", 1);
    let a = p.helper_input(H0, 0, x.len());
    let t = p.trunc_pr(a, k, 4);
    p.output(t);
    let prog = p.build().expect("builds");
    let out = outputs(run_with(&prog, helper_inputs(&[(0, 0, x.clone())]), None));
    for (got, a) in out[0].iter().zip(&x) {
        let floor = i128::from(a.div_euclid(16));
        assert!(*got == floor || *got == floor + 1, "{a}: {got}");
    }
}

#[test]
fn sort_median_min_max() {
    let k = 20u32;
    let x = vec![5i64, -3, 5, 0, 19, -3, 7, 5, -100, 1000, 0];
    let mut p = ProgramBuilder::new("order", 1);
    let a = p.helper_input(H1, 3, x.len());
    let s = p.sort(a, k);
    let med = p.median(a, k);
    let mn = p.min(a, k);
    let mx = p.max(a, k);
    let q = p.select_rank(a, k, 8);
    for v in [s, med, mn, mx, q] {
        p.output(v);
    }
    let prog = p.build().expect("builds");
    let out = outputs(run_with(&prog, helper_inputs(&[(1, 3, x.clone())]), None));
    let mut sorted: Vec<i128> = x.iter().map(|&v| v as i128).collect();
    sorted.sort();
    assert_eq!(out[0], sorted);
    assert_eq!(out[1], vec![sorted[(x.len() - 1) / 2]]);
    assert_eq!(out[2], vec![sorted[0]]);
    assert_eq!(out[3], vec![sorted[x.len() - 1]]);
    assert_eq!(out[4], vec![sorted[8]]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn random_products_and_comparisons(x in proptest::collection::vec(-(1i64 << 20)..(1 << 20), 1..6),
                                       y in proptest::collection::vec(-(1i64 << 20)..(1 << 20), 6)) {
        let n = x.len();
        let y = &y[..n];
        let mut p = ProgramBuilder::new("prop", 1);
        let a = p.helper_input(H0, 0, n);
        let b = p.helper_input(H1, 0, n);
        let m = p.mul(a, b);
        let lt = p.lt(a, b, 21);
        let eq = p.eq(a, b, 21);
        p.output(m);
        p.output(lt);
        p.output(eq);
        let prog = p.build().expect("builds");
        let out = outputs(run_with(&prog, helper_inputs(&[(0, 0, x.clone()), (1, 0, y.to_vec())]), None));
        for i in 0..n {
            prop_assert_eq!(out[0][i], i128::from(x[i]) * i128::from(y[i]));
            prop_assert_eq!(out[1][i], i128::from(x[i] < y[i]));
            prop_assert_eq!(out[2][i], i128::from(x[i] == y[i]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Sorting, median and exact truncation of random vectors (with
    /// repeated values) match plain integer arithmetic.
    #[test]
    fn random_sorts_and_truncations(x in proptest::collection::vec(prop_oneof![Just(0i64), Just(-(1 << 15)), Just((1 << 15) - 1), -9i64..9, -(1i64 << 15)..(1 << 15)], 1..9)) {
        let k = 16;
        let mut p = ProgramBuilder::new("prop order", 1);
        let a = p.helper_input(H0, 0, x.len());
        let s = p.sort(a, k);
        let med = p.median(a, k);
        let t = p.trunc(a, k, 5);
        let bits = p.bit_decompose(a, k);
        for v in [s, med, t, bits] {
            p.output(v);
        }
        let prog = p.build().expect("builds");
        let out = outputs(run_with(&prog, helper_inputs(&[(0, 0, x.clone())]), None));
        let mut sorted: Vec<i128> = x.iter().map(|&v| i128::from(v)).collect();
        sorted.sort();
        prop_assert_eq!(&out[0], &sorted);
        prop_assert_eq!(&out[1], &vec![sorted[(x.len() - 1) / 2]]);
        prop_assert_eq!(&out[2], &x.iter().map(|v| i128::from(v.div_euclid(32))).collect::<Vec<_>>());
        let n = x.len();
        for (i, v) in x.iter().enumerate() {
            let rebuilt: i128 = (0..k as usize).map(|j| out[3][j * n + i] << j).sum();
            prop_assert_eq!(rebuilt, i128::from((*v as u64) & 0xffff));
        }
    }
}
