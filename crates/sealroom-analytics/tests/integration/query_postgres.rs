//! PostgreSQL as a party's data source. Ignored by default (it needs a
//! server): `.ci/run` starts one and runs it with `--ignored`; by hand, set
//! `SEALROOM_TEST_DATABASE_URL` (e.g. `postgres://postgres@localhost/postgres`)
//! and run `cargo test -p sealroom-analytics --test integration --
//! --ignored query_postgres::`. Without the URL it fails rather than pass unchecked. It creates a uniquely named table, loads
//! party C's rows into it, compares every query shape with the all-SQLite
//! run, and drops the table even when an assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use query_support::*;
use sealroom_analytics::query::{self, Cell, DataSource, LocalTable, QueryError, QueryResult};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const VAR: &str = "SEALROOM_TEST_DATABASE_URL";

const QUERIES: &[&str] = &[
    "SELECT dept, COUNT(*) AS n, COUNT(salary) AS ns, SUM(salary) AS s, AVG(salary) AS a FROM salaries GROUP BY dept",
    "SELECT dept, VAR_SAMP(salary) AS v, STDDEV_POP(salary / 1000 + age * 2) AS sd FROM salaries GROUP BY dept",
    "SELECT dept, HISTOGRAM(salary, 60000, 90000, 120000) AS h FROM salaries GROUP BY dept",
    "SELECT dept, REGR_SLOPE(salary, years) AS b, REGR_R2(salary, years) AS r2, CORR(salary, age) AS c FROM salaries GROUP BY dept",
    "SELECT dept, OLS(salary, years, age) AS fit FROM salaries GROUP BY dept",
    "SELECT COUNT(*) AS n, AVG(age) AS a FROM salaries WHERE (age BETWEEN 30 AND 50 OR years NOT IN (1, 2)) AND salary / 7 > 9000.5",
    "SELECT COUNT(*) AS n FROM salaries WHERE employee_id LIKE '_00%' AND dept IS NOT NULL AND NOT dept = 'x''y'",
];

#[tokio::test]
#[ignore = "needs PostgreSQL: set SEALROOM_TEST_DATABASE_URL and run with --ignored (.ci/run does)"]
async fn postgres_party_matches_the_sqlite_run() {
    let url = std::env::var(VAR)
        .unwrap_or_else(|_| panic!("{VAR} is not set: this test needs a PostgreSQL server"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("sealroom_query_{}_{nanos}", std::process::id());
    let mut admin = PgConnection::connect(&url)
        .await
        .expect("connect to the test database");
    sql(
        &mut admin,
        &format!(
            "CREATE TABLE {table} (employee_id TEXT, dept TEXT, salary DOUBLE PRECISION, age INTEGER, years BIGINT)"
        ),
    )
    .await;
    let outcome = tokio::spawn(body(url.clone(), table.clone())).await;
    sql(&mut admin, &format!("DROP TABLE IF EXISTS {table}")).await;
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn sql(conn: &mut PgConnection, statement: &str) {
    sqlx::query(AssertSqlSafe(statement.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn body(url: String, table: String) {
    let fx = Fixture::new().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    for e in &parties()[2] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(&e.id)
        .bind(e.dept)
        .bind(e.salary)
        .bind(e.age as i32)
        .bind(e.years)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    let pg = LocalTable::open(&DataSource::Postgres {
        url: url.clone(),
        table: format!("public.{table}"),
    })
    .await
    .unwrap();
    assert!(!pg.location().contains("password"));
    let mixed = [&fx.tables[0], &fx.tables[1], &pg];
    for sql in QUERIES {
        let spec = spec(sql);
        let plan = query::plan(&spec).unwrap();
        let policy = spec.policy().unwrap();
        let with_pg = pipeline(&plan, &mixed, &policy).await;
        assert_bit_equal(
            &with_pg,
            &query::plaintext(&plan, &mixed, &policy).await.unwrap(),
        );
        let all_sqlite = pipeline(&plan, &fx.table_refs(), &policy).await;
        assert_close_results(&with_pg, &all_sqlite, sql);
    }

    // Typed errors from PostgreSQL too.
    let mut text_as_number = spec("SELECT AVG(dept) FROM t");
    text_as_number.bounds.insert("dept".into(), [0.0, 1.0]);
    let plan = query::plan(&text_as_number).unwrap();
    let err = query::local_counts(&plan, &pg, &policy())
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::ColumnNotNumeric { ref column, .. } if column == "dept"),
        "{err:?}"
    );
    let plan = query::plan(&spec("SELECT AVG(wage) FROM t")).unwrap();
    let err = query::local_counts(&plan, &pg, &policy())
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::UnknownColumn { .. }), "{err:?}");
    let err = LocalTable::open(&DataSource::Postgres {
        url,
        table: format!("{table}_missing"),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, QueryError::TableNotFound { .. }), "{err:?}");
}

/// Same cells; values equal up to the engines' different summation order.
fn assert_close_results(a: &QueryResult, b: &QueryResult, sql: &str) {
    assert_eq!(a.columns, b.columns, "{sql}");
    for (ra, rb) in a.rows.iter().zip(&b.rows) {
        assert_eq!(ra.group, rb.group, "{sql}");
        for (col, (ca, cb)) in a.columns.iter().zip(ra.cells.iter().zip(&rb.cells)) {
            match (ca, cb) {
                (Cell::Value(x), Cell::Value(y)) => {
                    assert_close(*x, *y, 1e-9, &format!("{sql}: {col}"))
                }
                _ => assert_eq!(ca, cb, "{sql}: {col}"),
            }
        }
    }
}
