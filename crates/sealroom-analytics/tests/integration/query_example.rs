//! The `examples/salaries` data and query specs: every spec plans and runs
//! over the three companies, the small legal team and the out-of-domain
//! marketing team are suppressed, and the results match the pooled rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use std::path::PathBuf;

use query_support::{assert_bit_equal, assert_close, key, manifest_dir, pipeline};
use sealroom_analytics::query::{self, Cell, DataSource, LocalTable, QuerySpec, SuppressReason};

fn example_dir() -> PathBuf {
    manifest_dir().join("../../examples/salaries")
}

async fn companies() -> Vec<LocalTable> {
    let dir = example_dir();
    let sources = [
        DataSource::Csv {
            path: dir.join("acme.csv"),
        },
        DataSource::Csv {
            path: dir.join("globex.csv"),
        },
        DataSource::Sqlite {
            path: dir.join("initech.sqlite"),
            table: "salaries".into(),
        },
    ];
    let mut tables = Vec::new();
    for s in &sources {
        tables.push(LocalTable::open(s).await.unwrap());
    }
    tables
}

fn load_spec(name: &str) -> QuerySpec {
    let text = std::fs::read_to_string(example_dir().join("queries").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn run(name: &str) -> query::QueryResult {
    let tables = companies().await;
    let refs: Vec<&LocalTable> = tables.iter().collect();
    let spec = load_spec(name);
    let plan = query::plan(&spec).unwrap();
    let policy = spec.policy().unwrap();
    let secure = pipeline(&plan, &refs, &policy).await;
    let twin = query::plaintext(&plan, &refs, &policy).await.unwrap();
    assert_bit_equal(&secure, &twin);
    println!("{name}:\n{}", secure.render_table());
    secure
}

#[tokio::test]
async fn average_salary_by_department_suppresses_small_cells() {
    let r = run("avg_salary_by_dept.json").await;
    assert_eq!(
        *r.cell(&key("legal"), "avg_salary").unwrap(),
        Cell::Suppressed {
            reason: SuppressReason::TooFewClients { min_clients: 2 }
        }
    );
    assert_eq!(
        *r.cell(&key("(other)"), "employees").unwrap(),
        Cell::Suppressed {
            reason: SuppressReason::TooFewClients { min_clients: 2 }
        }
    );
    // eng: 58 + 37 + 26 employees; the average over the pooled CSV and
    // SQLite rows, computed here from the files directly.
    assert_eq!(r.cell(&key("eng"), "employees"), Some(&Cell::Value(121.0)));
    let mut total = 0.0;
    let mut n = 0.0;
    for company in ["acme.csv", "globex.csv"] {
        let text = std::fs::read_to_string(example_dir().join(company)).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f[1] == "eng" && !f[2].is_empty() {
                total += f[2].parse::<f64>().unwrap();
                n += 1.0;
            }
        }
    }
    let mut conn = query_support::sqlite_conn(&example_dir().join("initech.sqlite")).await;
    let (s, c): (f64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(salary) AS REAL), COUNT(salary) FROM salaries WHERE dept = 'eng'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let mean = (total + s) / (n + c as f64);
    assert_close(
        r.cell(&key("eng"), "avg_salary")
            .and_then(Cell::value)
            .unwrap(),
        mean,
        1e-12,
        "eng",
    );
}

#[tokio::test]
async fn the_other_example_queries_run() {
    let r = run("salary_histogram.json").await;
    let buckets: f64 = r.columns[..6]
        .iter()
        .map(|c| r.cell(&[], c).and_then(Cell::value).unwrap())
        .sum();
    assert_eq!(
        Some(buckets),
        r.cell(&[], "with_salary").and_then(Cell::value)
    );
    let r = run("salary_regression.json").await;
    let per_year = r.cell(&[], "per_year").and_then(Cell::value).unwrap();
    assert!((1500.0..3500.0).contains(&per_year), "{per_year}");
    let years = r.cell(&[], "fit.years").and_then(Cell::value).unwrap();
    assert!((1500.0..3500.0).contains(&years), "{years}");
    let r = run("senior_pay_by_dept.json").await;
    assert!(
        r.cell(&key("eng"), "avg_salary")
            .and_then(Cell::value)
            .is_some()
    );
}
