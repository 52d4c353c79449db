//! A training table in PostgreSQL: the rows a client trains on, read in a
//! read-only transaction. Runs only when `SEALROOM_TEST_DATABASE_URL` names
//! a server (CI starts one); otherwise it prints `SKIPPED: …` and checks
//! nothing, like the query layer's PostgreSQL test. The table is uniquely
//! named and dropped even when an assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealroom_analytics::query::DataSource;
use sealroom_analytics::table_data::{Columns, Labels, read_rows};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const VAR: &str = "SEALROOM_TEST_DATABASE_URL";

#[tokio::test]
async fn postgres_training_rows_and_refusals() {
    let Ok(url) = std::env::var(VAR) else {
        eprintln!("SKIPPED: set {VAR} to run the PostgreSQL training-table test");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("sealroom_train_{}_{nanos}", std::process::id());
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    for statement in [
        format!(
            "CREATE TABLE {table} (age INTEGER, dose DOUBLE PRECISION, note TEXT, outcome TEXT)"
        ),
        format!(
            "INSERT INTO {table} VALUES (40, 1.5, '3', 'sick'), (55, 2.0, 'secret-text', 'healthy'), \
             (61, NULL, '4', 'sick')"
        ),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let outcome = tokio::spawn(body(url.clone(), table.clone())).await;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn body(url: String, table: String) {
    let source = DataSource::Postgres { url, table };
    let classes = vec!["healthy".to_string(), "sick".to_string()];
    let age = vec!["age".to_string()];
    let rows = read_rows(
        &source,
        Columns {
            label: "outcome",
            features: &age,
            classes: Some(&classes),
        },
    )
    .await
    .expect("age and outcome read");
    assert_eq!(rows.x.column(0).to_vec(), vec![40.0, 55.0, 61.0]);
    assert!(rows.labels == Labels::Classes(ndarray::array![1, 0, 1]));
    // A NULL dose is refused naming the column and row.
    let dose = vec!["age".to_string(), "dose".to_string()];
    let err = read_rows(
        &source,
        Columns {
            label: "outcome",
            features: &dose,
            classes: Some(&classes),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("row 3: column \"dose\" is empty"), "{err}");
    // A text column that holds a non-number fails the cast: the error keeps
    // PostgreSQL's code, never the value.
    let note = vec!["note".to_string()];
    let err = read_rows(
        &source,
        Columns {
            label: "outcome",
            features: &note,
            classes: Some(&classes),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("SQLSTATE 22P02"), "{err}");
    assert!(!err.contains("secret-text"), "{err}");
}
