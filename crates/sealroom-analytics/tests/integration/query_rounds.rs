//! The two rounds' inputs at the coordinator: malformed sums, tampered
//! release lists, and the phase-2 re-check of the thresholds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use query_support::*;
use sealroom_analytics::query::{self, Cell, Phase, Policy, QueryError, SuppressReason};

async fn sums(fx: &Fixture, sql: &str) -> (query::QueryPlan, Vec<f64>, Vec<usize>, Vec<f64>) {
    let plan = query::plan(&spec(sql)).unwrap();
    let policy = policy();
    let mut counts = vec![0.0; query::counts_len(&plan)];
    for t in &fx.tables {
        let v = query::local_counts(&plan, t, &policy).await.unwrap();
        counts
            .iter_mut()
            .zip(v.expose_values())
            .for_each(|(s, x)| *s += x);
    }
    let released = query::released_cells(&plan, &counts, &policy).unwrap();
    let mut stats = vec![0.0; query::stats_len(&plan, &released)];
    for t in &fx.tables {
        let v = query::local_stats(&plan, t, &released).await.unwrap();
        stats
            .iter_mut()
            .zip(v.expose_values())
            .for_each(|(s, x)| *s += x);
    }
    (plan, counts, released, stats)
}

const SQL: &str = "SELECT dept, COUNT(*) AS n, AVG(salary) AS mean FROM salaries GROUP BY dept";

#[tokio::test]
async fn released_cells_follow_the_counts() {
    let fx = Fixture::new().await;
    let (plan, counts, released, _) = sums(&fx, SQL).await;
    // eng, sales, ops and (other); not hr (one client) nor legal (3 rows).
    assert_eq!(released, [0, 1, 2, 5]);
    // Capped rows: eng has 30 + 25 + 18 rows, each capped at min_rows = 5.
    assert_eq!(&counts[..2], &[3.0, 15.0]);
    // hr: one client with 6 rows, capped at 5; legal: two clients, 1 + 2 rows.
    assert_eq!(&counts[6..10], &[1.0, 5.0, 2.0, 3.0]);
    assert_eq!(
        query::stats_len(&plan, &released),
        4 * (3 + plan.statistics()) * 4
    );
}

#[tokio::test]
async fn malformed_sums_are_refused() {
    let fx = Fixture::new().await;
    let (plan, counts, released, stats) = sums(&fx, SQL).await;
    let policy = policy();
    let finish = |c: &[f64], r: &[usize], s: &[f64]| query::finish(&plan, c, r, s, &policy);
    assert!(finish(&counts, &released, &stats).is_ok());

    let err = finish(&counts[1..], &released, &stats).unwrap_err();
    assert!(
        matches!(
            err,
            QueryError::LengthMismatch {
                phase: Phase::Counts,
                ..
            }
        ),
        "{err:?}"
    );
    let err = finish(&counts, &released, &stats[1..]).unwrap_err();
    assert!(
        matches!(
            err,
            QueryError::LengthMismatch {
                phase: Phase::Stats,
                ..
            }
        ),
        "{err:?}"
    );

    let mut bad = counts.clone();
    bad[3] = 0.5;
    assert!(matches!(
        finish(&bad, &released, &stats),
        Err(QueryError::MalformedSum {
            phase: Phase::Counts,
            index: 3,
            ..
        })
    ));
    // More capped rows than clients × min_rows cannot come from honest clients.
    let mut bad = counts.clone();
    bad[1] = 16.0;
    assert!(matches!(
        query::released_cells(&plan, &bad, &policy),
        Err(QueryError::MalformedSum {
            phase: Phase::Counts,
            index: 0,
            ..
        })
    ));
    let mut bad = stats.clone();
    bad[7] = f64::NAN;
    assert!(matches!(
        finish(&counts, &released, &bad),
        Err(QueryError::MalformedSum {
            phase: Phase::Stats,
            index: 7,
            ..
        })
    ));
    // A fractional row count.
    let mut bad = stats.clone();
    bad[0] += 1.0;
    assert!(matches!(
        finish(&counts, &released, &bad),
        Err(QueryError::MalformedSum {
            phase: Phase::Stats,
            ..
        })
    ));
}

#[tokio::test]
async fn tampered_release_lists_are_refused() {
    let fx = Fixture::new().await;
    let (plan, counts, released, stats) = sums(&fx, SQL).await;
    let policy = policy();
    // Releasing hr (one client) is refused even with a vector of the right length.
    let with_hr = [0, 1, 2, 3];
    let err = query::finish(&plan, &counts, &with_hr, &stats, &policy).unwrap_err();
    assert!(matches!(err, QueryError::InvalidRelease { .. }), "{err:?}");
    assert!(err.to_string().contains("cell 3"));
    // Leaving a passing cell out is refused too.
    let err = query::finish(
        &plan,
        &counts,
        &[0, 1, 2],
        &stats[..3 * stats.len() / 4],
        &policy,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cell 5 passes the thresholds but is not listed"),
        "{err}"
    );
    for bad in [vec![1, 0], vec![0, 0], vec![6]] {
        assert!(matches!(
            query::local_stats(&plan, &fx.tables[0], &bad).await,
            Err(QueryError::InvalidRelease { .. })
        ));
    }
    let _ = released;
}

#[tokio::test]
async fn phase_two_counts_are_rechecked() {
    let fx = Fixture::new().await;
    let (plan, counts, released, _) = sums(&fx, SQL).await;
    let policy = policy();
    // Only party C answers the second round: every cell now has one client.
    let v = query::local_stats(&plan, &fx.tables[2], &released)
        .await
        .unwrap();
    let r = query::finish(&plan, &counts, &released, v.expose_values(), &policy).unwrap();
    for label in ["eng", "sales", "ops", "(other)"] {
        assert_eq!(
            *r.cell(&key(label), "mean").unwrap(),
            Cell::Suppressed {
                reason: SuppressReason::TooFewClients { min_clients: 2 }
            },
            "{label}"
        );
    }
}

/// Issue #12, finding 4: a value far outside the declared bounds neither
/// makes the client fail (it would sit out, revealing the row) nor
/// dominates the sum: it is clamped, and the cell says how many rows were.
#[tokio::test]
async fn out_of_range_values_are_clamped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    std::fs::write(&path, "x\n1e300\n2\n-5\n").unwrap();
    let table = query::LocalTable::open(&query::DataSource::Csv { path })
        .await
        .unwrap();
    let spec = query::QuerySpec {
        bounds: [("x".to_owned(), [0.0, 10.0])].into(),
        ..spec_without_domain("SELECT SUM(x) AS s, COUNT(*) AS n FROM t")
    };
    let plan = query::plan(&spec).unwrap();
    let policy = Policy::new(1, 1).unwrap();
    let result = query::plaintext(&plan, &[&table], &policy).await.unwrap();
    // 1e300 → 10, 2, −5 → 0.
    assert_eq!(result.cell(&[], "s"), Some(&Cell::Value(12.0)));
    assert_eq!(result.cell(&[], "n"), Some(&Cell::Value(3.0)));
    assert_eq!(result.rows[0].adjusted, Some(2));
    assert_eq!(result.bounds.len(), 1);
    let table_text = result.render_table();
    assert!(table_text.contains("(adjusted)"), "{table_text}");
    assert!(table_text.contains("bounds: x in [0, 10]"), "{table_text}");
    assert!(!table_text.contains("1e300"));
}
