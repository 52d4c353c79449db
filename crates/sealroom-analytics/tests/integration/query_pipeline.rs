//! Every supported query shape, run through the two-round pipeline over three
//! parties (two CSV files, one SQLite file), against the same question asked
//! of the pooled rows in plain SQLite (or computed in Rust from them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use query_support::*;
use sealroom_analytics::query::{Cell, GroupKey, NullReason, SuppressReason};

const REL: f64 = 1e-9;

#[tokio::test]
async fn counts_sums_and_averages_match_pooled_sqlite() {
    let mut fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec(
            "SELECT dept, COUNT(*) AS n, COUNT(salary) AS n_salary, SUM(salary) AS total, AVG(salary) AS mean \
             FROM salaries GROUP BY dept",
        ),
    )
    .await;
    assert_eq!(r.group_columns, ["dept"]);
    assert_eq!(r.columns, ["n", "n_salary", "total", "mean"]);
    assert_eq!(r.rows.len(), 6);
    for label in ["eng", "sales", "ops", "(other)"] {
        let cond = if label == "(other)" {
            "dept IS NULL OR dept NOT IN ('eng','sales','ops','hr','legal')".to_owned()
        } else {
            format!("dept = '{label}'")
        };
        let want = fx
            .pooled_rows(&format!(
                "SELECT COUNT(*), COUNT(salary), SUM(salary), AVG(salary) FROM pooled WHERE {cond}"
            ))
            .await;
        let want = &want[0];
        assert_eq!(value(&r, label, "n"), want[0].unwrap(), "{label}");
        assert_eq!(value(&r, label, "n_salary"), want[1].unwrap(), "{label}");
        assert_close(value(&r, label, "total"), want[2].unwrap(), REL, label);
        assert_close(value(&r, label, "mean"), want[3].unwrap(), REL, label);
    }
    let hr = r.cell(&key("hr"), "mean").unwrap();
    assert_eq!(
        *hr,
        Cell::Suppressed {
            reason: SuppressReason::TooFewClients { min_clients: 2 }
        }
    );
    let legal = r.cell(&key("legal"), "n").unwrap();
    assert_eq!(
        *legal,
        Cell::Suppressed {
            reason: SuppressReason::TooFewRows { min_rows: 5 }
        }
    );
    let table = r.render_table();
    assert!(
        table.contains("suppressed (<2 clients)") && table.contains("suppressed (<5 rows)"),
        "{table}"
    );
}

#[tokio::test]
async fn variances_and_standard_deviations_match_pooled_rows() {
    let mut fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec(
            "SELECT dept, VAR_SAMP(salary) AS vs, VARIANCE(salary) AS v, VAR_POP(salary) AS vp, \
             STDDEV(salary) AS sd, STDDEV_SAMP(salary) AS sds, STDDEV_POP(salary) AS sdp, \
             VAR_SAMP(salary / 1000 + age * 2) AS vexpr FROM salaries GROUP BY dept",
        ),
    )
    .await;
    let rows = pooled_by_cell(&mut fx, "1 = 1").await;
    for label in ["eng", "sales", "ops", "(other)"] {
        let s: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == label)
            .filter_map(|r| r.1)
            .collect();
        let n = s.len() as f64;
        let (_, m2) = moments(&s);
        assert_close(value(&r, label, "vs"), m2 / (n - 1.0), REL, label);
        assert_close(value(&r, label, "v"), m2 / (n - 1.0), REL, label);
        assert_close(value(&r, label, "vp"), m2 / n, REL, label);
        assert_close(value(&r, label, "sd"), (m2 / (n - 1.0)).sqrt(), REL, label);
        assert_close(value(&r, label, "sds"), (m2 / (n - 1.0)).sqrt(), REL, label);
        assert_close(value(&r, label, "sdp"), (m2 / n).sqrt(), REL, label);
        let e: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == label)
            .filter_map(|r| r.1.map(|s| s / 1000.0 + r.2 * 2.0))
            .collect();
        let (mean, m2e) = moments(&e);
        let want = m2e / (e.len() as f64 - 1.0);
        // Σe and Σe² each carry up to 3·2^−21 of rounding; the centred sum
        // amplifies Σe's by 2·|mean| (mean ≈ 200 here, sd ≈ 40).
        let bound = 3.0 * 2f64.powi(-21) * (1.0 + 2.0 * mean.abs()) / (e.len() as f64 - 1.0);
        let got = value(&r, label, "vexpr");
        assert!(
            (got - want).abs() <= REL * want + bound,
            "{label}: {got} vs {want} (bound {bound})"
        );
    }
}

#[tokio::test]
async fn histograms_match_pooled_sqlite() {
    let mut fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec("SELECT dept, HISTOGRAM(salary, 60000, 90000, 120000) AS h, COUNT(salary) AS n FROM salaries GROUP BY dept"),
    )
    .await;
    assert_eq!(
        r.columns,
        [
            "h[<60000]",
            "h[60000,90000)",
            "h[90000,120000)",
            "h[>=120000]",
            "n"
        ]
    );
    for label in ["eng", "sales", "ops"] {
        let want = fx
            .pooled_rows(&format!(
                "SELECT SUM(salary < 60000), SUM(salary >= 60000 AND salary < 90000), \
                 SUM(salary >= 90000 AND salary < 120000), SUM(salary >= 120000) FROM pooled WHERE dept = '{label}'"
            ))
            .await;
        let mut total = 0.0;
        for (i, col) in r.columns[..4].iter().enumerate() {
            let got = value(&r, label, col);
            assert_eq!(got, want[0][i].unwrap_or(0.0), "{label} {col}");
            total += got;
        }
        // NULL salaries fall in no bucket.
        assert_eq!(total, value(&r, label, "n"), "{label}");
    }
}

#[tokio::test]
async fn two_variable_aggregates_match_pooled_rows() {
    let mut fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec(
            "SELECT dept, REGR_SLOPE(salary, years) AS slope, REGR_INTERCEPT(salary, years) AS icpt, \
             REGR_COUNT(salary, years) AS n, REGR_R2(salary, years) AS r2, CORR(salary, years) AS corr, \
             COVAR_SAMP(salary, years) AS cs, COVAR_POP(salary, years) AS cp FROM salaries GROUP BY dept",
        ),
    )
    .await;
    let rows = pooled_by_cell(&mut fx, "1 = 1").await;
    for label in ["eng", "sales", "ops", "(other)"] {
        let pairs: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.0 == label)
            .filter_map(|r| Some((r.1?, r.3?)))
            .collect();
        let y: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let x: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let n = pairs.len() as f64;
        let (my, syy) = moments(&y);
        let (mx, sxx) = moments(&x);
        let sxy: f64 = pairs.iter().map(|(y, x)| (x - mx) * (y - my)).sum();
        let slope = sxy / sxx;
        assert_eq!(value(&r, label, "n"), n);
        assert_close(value(&r, label, "slope"), slope, REL, label);
        assert_close(value(&r, label, "icpt"), my - slope * mx, REL, label);
        assert_close(value(&r, label, "r2"), sxy * sxy / (sxx * syy), REL, label);
        assert_close(
            value(&r, label, "corr"),
            sxy / (sxx * syy).sqrt(),
            REL,
            label,
        );
        assert_close(value(&r, label, "cs"), sxy / (n - 1.0), REL, label);
        assert_close(value(&r, label, "cp"), sxy / n, REL, label);
    }
}

#[tokio::test]
async fn ols_matches_a_direct_least_squares_solve() {
    let mut fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec("SELECT dept, OLS(salary, years, age) AS fit FROM salaries GROUP BY dept"),
    )
    .await;
    assert_eq!(
        r.columns,
        ["fit.intercept", "fit.years", "fit.age", "fit.r2", "fit.n"]
    );
    let rows = pooled_by_cell(&mut fx, "1 = 1").await;
    for label in ["eng", "sales", "ops", "(other)"] {
        let used: Vec<(f64, f64, f64)> = rows
            .iter()
            .filter(|r| r.0 == label)
            .filter_map(|r| Some((r.1?, r.3?, r.2)))
            .collect();
        let x: Vec<Vec<f64>> = used.iter().map(|u| vec![u.1, u.2]).collect();
        let y: Vec<f64> = used.iter().map(|u| u.0).collect();
        let beta = lstsq(&x, &y);
        assert_eq!(value(&r, label, "fit.n"), used.len() as f64);
        for (col, want) in ["fit.intercept", "fit.years", "fit.age"].iter().zip(&beta) {
            assert_close(value(&r, label, col), *want, REL, &format!("{label} {col}"));
        }
        let (_, sst) = moments(&y);
        let sse: f64 = x
            .iter()
            .zip(&y)
            .map(|(x, y)| {
                let e = y - beta[0] - beta[1] * x[0] - beta[2] * x[1];
                e * e
            })
            .sum();
        assert_close(value(&r, label, "fit.r2"), 1.0 - sse / sst, 1e-8, label);
    }
}

#[tokio::test]
async fn where_clauses_filter_like_sqlite() {
    let mut fx = Fixture::new().await;
    let filters = [
        "age BETWEEN 30 AND 50 AND NOT (years IS NULL)",
        "dept IN ('eng', 'ops') OR salary > 100000",
        "salary / 1000 - years * 2 >= 60.5",
        "employee_id LIKE '_00%' AND dept <> 'sales'",
        "employee_id NOT LIKE '_0_1%'",
        "age NOT IN (30, 31, 32) AND salary IS NOT NULL",
        "-age < -40 OR years NOT BETWEEN 2 AND 10",
        "(salary + 1) * 2 > 150000 AND TRUE",
    ];
    for filter in filters {
        let r = run(
            &fx,
            &spec(&format!(
                "SELECT COUNT(*) AS n, SUM(salary) AS total, AVG(age) AS age FROM salaries WHERE {filter}"
            )),
        )
        .await;
        assert!(r.group_columns.is_empty());
        assert_eq!(r.rows.len(), 1);
        let want = fx
            .pooled_rows(&format!(
                "SELECT COUNT(*), SUM(salary), AVG(age) FROM pooled WHERE {filter}"
            ))
            .await;
        let got = |c: &str| r.cell(&[], c).and_then(Cell::value).unwrap();
        assert_eq!(got("n"), want[0][0].unwrap(), "{filter}");
        assert_close(got("total"), want[0][1].unwrap(), REL, filter);
        assert_close(got("age"), want[0][2].unwrap(), REL, filter);
    }
}

#[tokio::test]
async fn a_filter_matching_one_party_is_suppressed() {
    let fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec("SELECT COUNT(*) AS n, AVG(salary) AS a FROM salaries WHERE employee_id LIKE 'A%'"),
    )
    .await;
    for c in ["n", "a"] {
        assert_eq!(
            *r.cell(&[], c).unwrap(),
            Cell::Suppressed {
                reason: SuppressReason::TooFewClients { min_clients: 2 }
            }
        );
    }
}

#[tokio::test]
async fn null_handling_follows_sql() {
    let fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec("SELECT COUNT(*) AS n, COUNT(salary) AS ns, SUM(salary) AS s, AVG(salary) AS a, VAR_POP(salary) AS v FROM salaries WHERE salary IS NULL"),
    )
    .await;
    let cell = |c: &str| *r.cell(&[], c).unwrap();
    assert_eq!(cell("n"), Cell::Value(12.0));
    assert_eq!(cell("ns"), Cell::Value(0.0));
    for c in ["s", "a", "v"] {
        assert_eq!(
            cell(c),
            Cell::Null {
                reason: NullReason::NoValues
            },
            "{c}"
        );
    }
}

#[tokio::test]
async fn other_cell_holds_out_of_domain_values_and_never_names_them() {
    let fx = Fixture::new().await;
    let r = run(
        &fx,
        &spec("SELECT dept, COUNT(*) AS n, AVG(salary) AS mean FROM salaries GROUP BY dept"),
    )
    .await;
    assert_eq!(r.rows.last().unwrap().group, [GroupKey::Other]);
    // A's four "marketing" rows and B's three NULL departments.
    assert_eq!(value(&r, "(other)", "n"), 7.0);
    let json = serde_json::to_string(&r).unwrap();
    let table = r.render_table();
    assert!(!json.contains("marketing") && !table.contains("marketing"));
    assert!(table.contains("(other)"));
}

#[tokio::test]
async fn suppression_follows_both_thresholds() {
    let fx = Fixture::new().await;
    let mut s = spec("SELECT dept, COUNT(*) AS n FROM salaries GROUP BY dept");
    s.min_clients = 3;
    let r = run(&fx, &s).await;
    for label in ["ops", "hr", "legal", "(other)"] {
        assert_eq!(
            *r.cell(&key(label), "n").unwrap(),
            Cell::Suppressed {
                reason: SuppressReason::TooFewClients { min_clients: 3 }
            },
            "{label}"
        );
    }
    assert_eq!(value(&r, "eng", "n"), 73.0);
    s.min_clients = 1;
    s.min_rows = 40;
    let r = run(&fx, &s).await;
    assert_eq!(value(&r, "sales", "n"), 45.0);
    assert_eq!(
        *r.cell(&key("hr"), "n").unwrap(),
        Cell::Suppressed {
            reason: SuppressReason::TooFewRows { min_rows: 40 }
        }
    );
}

#[tokio::test]
async fn two_group_columns_and_aliases() {
    let mut fx = Fixture::new().await;
    let mut s = spec(
        "SELECT t.dept AS department, years, COUNT(*) AS n FROM salaries AS t GROUP BY t.dept, years",
    );
    s.domains
        .insert("years".into(), vec!["0".into(), "1".into(), "2".into()]);
    s.min_clients = 1;
    s.min_rows = 1;
    let r = run(&fx, &s).await;
    assert_eq!(r.group_columns, ["department", "years"]);
    assert_eq!(r.rows.len(), 6 * 4);
    for row in &r.rows {
        let dept = row.group[0].to_string();
        let years = row.group[1].to_string();
        let dcond = if dept == "(other)" {
            "(dept IS NULL OR dept NOT IN ('eng','sales','ops','hr','legal'))".to_owned()
        } else {
            format!("dept = '{dept}'")
        };
        let ycond = if years == "(other)" {
            "(years IS NULL OR years NOT IN (0, 1, 2))".to_owned()
        } else {
            format!("years = {years}")
        };
        let want = fx
            .pooled_rows(&format!(
                "SELECT COUNT(*) FROM pooled WHERE {dcond} AND {ycond}"
            ))
            .await[0][0]
            .unwrap();
        match row.cells[0] {
            Cell::Value(n) => assert_eq!(n, want, "{dept}/{years}"),
            Cell::Suppressed { .. } => assert_eq!(want, 0.0, "{dept}/{years}"),
            Cell::Null { .. } => panic!("a count is never NULL"),
        }
    }
}
