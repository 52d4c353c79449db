//! The public linear solver of OLS: the normal equations `XᵀX β = Xᵀy`
//! solved by Cholesky factorisation.
//!
//! The Gram matrix is first equilibrated (scaled to a unit diagonal, so a
//! regressor in the thousands and an intercept column do not differ in
//! magnitude by orders), factorised, solved by two triangular solves and
//! improved by one step of iterative refinement. A pivot below the noise
//! floor refuses the system as singular: the Gram entries arrive rounded to
//! 2^−20 per client, so a pivot that small says nothing about the data.

/// The system is singular (collinear regressors, a regressor that is always
/// zero, or fewer rows than coefficients) or too ill-conditioned for the
/// resolution of its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Singular {
    /// The first coefficient whose pivot vanished.
    pub(crate) column: usize,
}

/// Solves `A β = b` for a symmetric positive-definite `p × p` matrix `a`
/// (row-major). `entry_error` bounds the absolute error of each entry of `a`
/// (0 for exact entries); pivots indistinguishable from that error are
/// refused.
pub(crate) fn solve_spd(a: &[f64], b: &[f64], entry_error: f64) -> Result<Vec<f64>, Singular> {
    let p = b.len();
    if a.len() != p * p || a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Singular { column: 0 });
    }
    let at = |i: usize, j: usize| a[i * p + j];
    // Equilibrate: M = S A S with S = diag(1/sqrt(A_ii)).
    let mut scale = Vec::with_capacity(p);
    for i in 0..p {
        let d = at(i, i);
        if d.partial_cmp(&0.0) != Some(core::cmp::Ordering::Greater) {
            return Err(Singular { column: i });
        }
        scale.push(1.0 / d.sqrt());
    }
    let min_diag = (0..p).map(|i| at(i, i)).fold(f64::INFINITY, f64::min);
    // Relative error of a scaled entry, times a safety factor for the
    // accumulation through the factorisation.
    let tolerance = f64::max(1e-10, 4.0 * p as f64 * entry_error / min_diag);
    let mut l = vec![0.0; p * p];
    for j in 0..p {
        let mut pivot = at(j, j) * scale[j] * scale[j];
        for k in 0..j {
            pivot -= l[j * p + k] * l[j * p + k];
        }
        if pivot.partial_cmp(&tolerance) != Some(core::cmp::Ordering::Greater) {
            return Err(Singular { column: j });
        }
        let d = pivot.sqrt();
        l[j * p + j] = d;
        for i in j + 1..p {
            let mut v = at(i, j) * scale[i] * scale[j];
            for k in 0..j {
                v -= l[i * p + k] * l[j * p + k];
            }
            l[i * p + j] = v / d;
        }
    }
    let solve = |rhs: &[f64]| -> Vec<f64> {
        // L z = S rhs, then Lᵀ y = z, then β = S y.
        let mut z = vec![0.0; p];
        for i in 0..p {
            let mut v = rhs[i] * scale[i];
            for k in 0..i {
                v -= l[i * p + k] * z[k];
            }
            z[i] = v / l[i * p + i];
        }
        let mut y = vec![0.0; p];
        for i in (0..p).rev() {
            let mut v = z[i];
            for k in i + 1..p {
                v -= l[k * p + i] * y[k];
            }
            y[i] = v / l[i * p + i];
        }
        y.iter().zip(&scale).map(|(y, s)| y * s).collect()
    };
    let mut beta = solve(b);
    // One step of iterative refinement against the original system.
    let residual: Vec<f64> = (0..p)
        .map(|i| b[i] - (0..p).map(|j| at(i, j) * beta[j]).sum::<f64>())
        .collect();
    let correction = solve(&residual);
    for (x, c) in beta.iter_mut().zip(correction) {
        *x += c;
    }
    if beta.iter().any(|v| !v.is_finite()) {
        return Err(Singular { column: 0 });
    }
    Ok(beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [-1, 1).
    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn gram(x: &[Vec<f64>]) -> Vec<f64> {
        let p = x[0].len();
        let mut a = vec![0.0; p * p];
        for row in x {
            for i in 0..p {
                for j in 0..p {
                    a[i * p + j] += row[i] * row[j];
                }
            }
        }
        a
    }

    fn mul(a: &[f64], v: &[f64]) -> Vec<f64> {
        let p = v.len();
        (0..p)
            .map(|i| (0..p).map(|j| a[i * p + j] * v[j]).sum())
            .collect()
    }

    #[test]
    fn solves_a_small_system_exactly() {
        // [[4, 2], [2, 3]] β = [10, 11] ⇒ β = [1, 3].
        let beta = solve_spd(&[4.0, 2.0, 2.0, 3.0], &[10.0, 11.0], 0.0).expect("non-singular");
        assert!(
            (beta[0] - 1.0).abs() < 1e-14 && (beta[1] - 3.0).abs() < 1e-14,
            "{beta:?}"
        );
    }

    #[test]
    fn recovers_coefficients_of_ill_scaled_regressors() {
        let mut s = 7;
        let truth = [3.0, -2.0e-4, 5.0e3, 0.25];
        let x: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                vec![
                    1.0,
                    1.0e4 * lcg(&mut s) + 5.0e4,
                    1.0e-3 * lcg(&mut s),
                    lcg(&mut s),
                ]
            })
            .collect();
        let a = gram(&x);
        let y: Vec<f64> = x
            .iter()
            .map(|r| r.iter().zip(&truth).map(|(x, b)| x * b).sum())
            .collect();
        let b: Vec<f64> = (0..4)
            .map(|i| x.iter().zip(&y).map(|(r, y)| r[i] * y).sum())
            .collect();
        let beta = solve_spd(&a, &b, 0.0).expect("non-singular");
        for (got, want) in beta.iter().zip(truth) {
            assert!((got - want).abs() <= 1e-8 * want.abs(), "{got} vs {want}");
        }
    }

    #[test]
    fn residual_is_tiny_for_random_spd_systems() {
        let mut s = 42;
        for p in 1..=8 {
            let x: Vec<Vec<f64>> = (0..3 * p)
                .map(|_| (0..p).map(|_| lcg(&mut s)).collect())
                .collect();
            let a = gram(&x);
            let b: Vec<f64> = (0..p).map(|_| lcg(&mut s)).collect();
            let beta = solve_spd(&a, &b, 0.0).expect("non-singular");
            let r = mul(&a, &beta);
            for (ri, bi) in r.iter().zip(&b) {
                assert!((ri - bi).abs() < 1e-10, "p={p}: {ri} vs {bi}");
            }
        }
    }

    #[test]
    fn refuses_collinear_columns() {
        let x: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![1.0, i as f64, 2.0 * i as f64])
            .collect();
        assert_eq!(
            solve_spd(&gram(&x), &[1.0, 2.0, 3.0], 0.0),
            Err(Singular { column: 2 })
        );
    }

    #[test]
    fn refuses_fewer_rows_than_coefficients_and_zero_columns() {
        let x = vec![vec![1.0, 2.0, 3.0], vec![1.0, 5.0, 1.0]];
        assert!(solve_spd(&gram(&x), &[1.0, 2.0, 3.0], 0.0).is_err());
        assert_eq!(
            solve_spd(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0], 0.0),
            Err(Singular { column: 1 })
        );
    }

    #[test]
    fn refuses_pivots_below_the_entry_resolution() {
        // Collinear up to a perturbation of 1e-7: solvable if the entries are
        // exact, singular if each may be off by 1e-6.
        let mut a = gram(
            &(0..10)
                .map(|i| vec![1.0, i as f64, 2.0 * i as f64])
                .collect::<Vec<_>>(),
        );
        a[8] += 1e-7 * a[8];
        assert!(solve_spd(&a, &[1.0, 2.0, 3.0], 0.0).is_ok());
        assert!(solve_spd(&a, &[1.0, 2.0, 3.0], 1e-6 * a[8]).is_err());
    }

    #[test]
    fn refuses_non_finite_input() {
        assert!(solve_spd(&[f64::NAN], &[1.0], 0.0).is_err());
        assert!(solve_spd(&[1.0, 0.0], &[1.0], 0.0).is_err());
    }
}
