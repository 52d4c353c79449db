//! OLS on real public data: the diabetes data set (linfa-datasets; ten
//! standardised features), split across three parties as CSV files, against
//! a direct least-squares solve (Householder QR) on the pooled rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use crate::query_support;

use query_support::{assert_bit_equal, lstsq, pipeline};
use sealroom_analytics::query::{self, Cell, DataSource, LocalTable, QuerySpec};

const FEATURES: [&str; 10] = [
    "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
];

#[tokio::test]
async fn diabetes_ols_matches_pooled_least_squares() {
    let data = linfa_datasets::diabetes();
    let (x, y) = (data.records(), data.targets());
    let n = x.nrows();
    assert!(n > 400);
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for party in 0..3 {
        let mut text = FEATURES.join(",") + ",target\n";
        for i in (party..n).step_by(3) {
            let row: Vec<String> = x.row(i).iter().map(|v| v.to_string()).collect();
            text += &format!("{},{}\n", row.join(","), y[i]);
        }
        let path = dir.path().join(format!("diabetes_{party}.csv"));
        std::fs::write(&path, text).unwrap();
        tables.push(LocalTable::open(&DataSource::Csv { path }).await.unwrap());
    }
    let refs: Vec<&LocalTable> = tables.iter().collect();
    let spec = QuerySpec {
        max_rows_per_client: None,
        sql: format!(
            "SELECT OLS(target, {}) AS fit FROM diabetes",
            FEATURES.join(", ")
        ),
        domains: Default::default(),
        min_rows: 20,
        min_clients: 3,
        // The features are standardised (|x| < 0.25); the target is a
        // disease-progression score in 25..=346.
        bounds: FEATURES
            .iter()
            .map(|f| (f.to_string(), [-1.0, 1.0]))
            .chain([("target".to_string(), [0.0, 1000.0])])
            .collect(),
        dp: None,
    };
    let plan = query::plan(&spec).unwrap();
    let policy = spec.policy().unwrap();
    let secure = pipeline(&plan, &refs, &policy).await;
    let twin = query::plaintext(&plan, &refs, &policy).await.unwrap();
    assert_bit_equal(&secure, &twin);

    let rows: Vec<Vec<f64>> = (0..n).map(|i| x.row(i).to_vec()).collect();
    let targets: Vec<f64> = y.to_vec();
    let beta = lstsq(&rows, &targets);
    let got = |c: &str| secure.cell(&[], c).and_then(Cell::value).unwrap();
    assert_eq!(got("fit.n"), n as f64);
    // The Gram entries arrive rounded to 2^−20 per party: each entry of XᵀX
    // and Xᵀy is off by at most ε = 3 · 2^−21. To first order the solution
    // moves by δβ = A⁻¹(δb − δA β), so |δβᵢ| ≤ ε (|A⁻¹| (‖β‖₁ + 1))ᵢ. For
    // these standardised features (entries ≈ 1) and collinear s1…s5 that is
    // up to ~1e−4 of a coefficient, far above f64 round-off: the bound, with
    // a factor 2 for second-order terms, is the tolerance.
    let eps = 3.0 * 2f64.powi(-21);
    let inv = inverse(&gram(&rows));
    let l1 = beta.iter().map(|b| b.abs()).sum::<f64>() + 1.0;
    let names: Vec<String> = std::iter::once("intercept".to_owned())
        .chain(FEATURES.iter().map(|f| f.to_string()))
        .collect();
    let mut secure_beta = Vec::new();
    for (i, (name, want)) in names.iter().zip(&beta).enumerate() {
        let v = got(&format!("fit.{name}"));
        let bound =
            2.0 * eps * l1 * inv[i].iter().map(|a| a.abs()).sum::<f64>() + 1e-9 * want.abs();
        eprintln!(
            "{name}: {v} vs {want}: error {:.3e}, bound {bound:.3e}",
            (v - want).abs()
        );
        assert!(
            (v - want).abs() <= bound,
            "{name}: {v} vs {want} (bound {bound})"
        );
        secure_beta.push(v);
    }
    let sse_of = |b: &[f64]| -> f64 {
        rows.iter()
            .zip(&targets)
            .map(|(r, t)| {
                let f = b[0] + r.iter().zip(&b[1..]).map(|(x, b)| x * b).sum::<f64>();
                (t - f).powi(2)
            })
            .sum()
    };
    let (best, ours) = (sse_of(&beta), sse_of(&secure_beta));
    eprintln!("SSE {ours} vs optimum {best}");
    // The optimum is flat: a coefficient error of δβ costs only δβᵀAδβ.
    assert!(
        ours >= best * (1.0 - 1e-12) && ours <= best * (1.0 + 1e-7),
        "{ours} vs {best}"
    );
    // Known values (scikit-learn's LinearRegression on the same data).
    assert!((got("fit.bmi") - beta[3]).abs() < 0.05 && beta[3] > 500.0 && beta[3] < 530.0);
    let mean = targets.iter().sum::<f64>() / n as f64;
    let sst: f64 = targets.iter().map(|t| (t - mean).powi(2)).sum();
    let sse = best;
    assert!((got("fit.r2") - (1.0 - sse / sst)).abs() < 1e-6);
}

/// XᵀX with an intercept column.
fn gram(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let p = rows[0].len() + 1;
    let mut a = vec![vec![0.0; p]; p];
    for r in rows {
        let x: Vec<f64> = std::iter::once(1.0).chain(r.iter().copied()).collect();
        for i in 0..p {
            for j in 0..p {
                a[i][j] += x[i] * x[j];
            }
        }
    }
    a
}

/// Gauss–Jordan inversion with partial pivoting (test reference only).
fn inverse(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let p = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..p).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for c in 0..p {
        let pivot = (c..p)
            .max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))
            .unwrap();
        m.swap(c, pivot);
        let d = m[c][c];
        m[c].iter_mut().for_each(|v| *v /= d);
        for r in 0..p {
            if r != c {
                let f = m[r][c];
                let row_c = m[c].clone();
                m[r].iter_mut().zip(&row_c).for_each(|(v, x)| *v -= f * x);
            }
        }
    }
    m.into_iter().map(|r| r[p..].to_vec()).collect()
}
