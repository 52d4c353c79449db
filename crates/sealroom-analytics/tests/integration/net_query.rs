//! Joint queries over real nodes: a coordinator, helpers and clients on
//! 127.0.0.1 with mutual TLS, every query two secure-aggregation rounds. The
//! secure results must equal the in-process pipeline (itself checked against
//! plain SQLite over the pooled rows in `query_pipeline.rs`) bit for bit, and
//! the pooled SQLite answer directly; a client with a malformed file sits out
//! with a clear error while the query proceeds.

use crate::query_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use query_support::{Fixture, assert_bit_equal, assert_close, spec, value};
use sealroom_analytics::joint::{QueryInput, QueryRunError, register_tasks, run_query};
use sealroom_analytics::query::{Cell, DataSource, Policy};
use sealroom_node::client_node::ClientEvent;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputSource, TaskCatalog};
use tokio::sync::mpsc::UnboundedReceiver;

/// Three clients with the fixture's tables (two CSV files, one SQLite
/// database), a fourth whose CSV file has a ragged row and a fifth whose
/// file does not exist.
async fn start(
    fx: &Fixture,
) -> (
    tempfile::TempDir,
    LocalFederation,
    UnboundedReceiver<(usize, ClientEvent)>,
) {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        "employee_id,dept,salary,age,years\nX1,eng,100,30,2\nX2,eng\n",
    )
    .expect("write");
    let mut sources = fx.sources.clone();
    sources.push(DataSource::Csv { path: broken });
    sources.push(DataSource::Csv {
        path: dir.path().join("missing.csv"),
    });
    let floor = Policy::new(5, 2).expect("policy");
    let inputs: Vec<Arc<dyn InputSource>> = sources
        .into_iter()
        .map(|s| {
            Arc::new(QueryInput::new(
                BTreeMap::from([("salaries".to_string(), s)]),
                floor,
            )) as Arc<dyn InputSource>
        })
        .collect();
    let mut catalog = TaskCatalog::with_builtins();
    register_tasks(&mut catalog);
    let options = InitOptions {
        helpers: 3,
        clients: 5,
        min_clients: Some(2),
        upload_window_ms: 1500,
        aggregation_window_ms: 4000,
        ..InitOptions::default()
    };
    let (fed, events) = LocalFederation::start(&dir.path().join("fed"), options, catalog, inputs)
        .await
        .expect("federation starts");
    (dir, fed, events)
}

fn names() -> Vec<String> {
    (0..5).map(|i| format!("client-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_shape_over_the_network_equals_the_pipeline_and_pooled_sqlite() {
    let mut fx = Fixture::new().await;
    let (_dir, fed, mut events) = start(&fx).await;
    let shapes = [
        "SELECT dept, COUNT(*) AS n, COUNT(salary) AS ns, SUM(salary) AS total, AVG(salary) AS mean FROM salaries GROUP BY dept",
        "SELECT dept, VAR_SAMP(salary) AS vs, VAR_POP(salary) AS vp, STDDEV(salary) AS sd FROM salaries GROUP BY dept",
        "SELECT dept, HISTOGRAM(salary, 60000, 90000, 120000) AS h FROM salaries GROUP BY dept",
        "SELECT REGR_SLOPE(salary, years) AS slope, REGR_INTERCEPT(salary, years) AS icpt, REGR_R2(salary, years) AS r2 FROM salaries",
        "SELECT OLS(salary, years, age) AS fit FROM salaries",
        "SELECT COUNT(*) AS n, AVG(salary) AS mean FROM salaries WHERE age >= 30 AND dept IN ('eng', 'ops')",
    ];
    for sql in shapes {
        let spec = spec(sql);
        let run = run_query(&fed, &spec, &names())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        // The clients with the malformed and the missing file are not included.
        assert_eq!(run.included, names()[..3].to_vec(), "{sql}");
        assert!(run.stats_round.is_some(), "{sql}: some cell is released");
        let local = query_support::run(&fx, &spec).await;
        assert_bit_equal(&run.result, &local);
    }

    // And directly against plain SQLite over the pooled rows.
    let spec = spec(shapes[0]);
    let run = run_query(&fed, &spec, &names()).await.expect("query");
    let pooled = fx
        .pooled_rows("SELECT COUNT(*), AVG(salary) FROM pooled WHERE dept = 'eng'")
        .await;
    let (n, mean) = (pooled[0][0].expect("count"), pooled[0][1].expect("avg"));
    assert_eq!(value(&run.result, "eng", "n"), n);
    assert_close(value(&run.result, "eng", "mean"), mean, 1e-9, "eng mean");

    // The broken client said why it sat out, naming the file's problem.
    let (mut reasons, mut missing) = (Vec::new(), Vec::new());
    while let Ok((client, event)) = events.try_recv() {
        match (client, event) {
            (3, ClientEvent::Skipped { reason, .. }) => reasons.push(reason),
            (4, ClientEvent::Skipped { reason, .. }) => missing.push(reason),
            _ => {}
        }
    }
    let named = missing.iter().filter(|r| r.contains("missing.csv")).count();
    assert_eq!(named, shapes.len() + 1, "{missing:?}");
    // (Stats rounds do not list it: it was not included in their counts round.)
    let malformed = reasons
        .iter()
        .filter(|r| r.contains("broken.csv") && r.contains("line 3"))
        .count();
    assert_eq!(malformed, shapes.len() + 1, "{reasons:?}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cells_are_suppressed_and_a_lone_client_aborts() {
    let fx = Fixture::new().await;
    let (_dir, fed, _events) = start(&fx).await;

    // A per-cell threshold of 3 clients: cells that only some parties have
    // are suppressed, and their values never reach a stats round.
    let mut strict =
        spec("SELECT dept, COUNT(*) AS n, AVG(salary) AS mean FROM salaries GROUP BY dept");
    strict.min_clients = 3;
    let run = run_query(&fed, &strict, &names()).await.expect("query");
    let local = query_support::run(&fx, &strict).await;
    assert_bit_equal(&run.result, &local);
    let suppressed = run
        .result
        .rows
        .iter()
        .filter(|r| matches!(r.cells[0], Cell::Suppressed { .. }))
        .count();
    assert!(suppressed > 0, "the fixture has cells below 3 clients");
    assert!(
        suppressed < run.result.rows.len(),
        "and cells every client has"
    );

    // Below the clients' own floor (min_rows 5): every client refuses, the
    // counts round has nobody and aborts (fail closed).
    let mut lax = strict.clone();
    lax.min_rows = 1;
    let err = run_query(&fed, &lax, &names())
        .await
        .expect_err("below the clients' floor");
    assert!(
        matches!(&err, QueryRunError::Aborted { reason, .. } if reason == "not_enough_clients"),
        "{err}"
    );

    // One client alone can never be asked: the coordinator refuses a round
    // below min_clients before it starts.
    let err = run_query(&fed, &strict, &names()[..1])
        .await
        .expect_err("one client");
    assert!(err.to_string().contains("min_clients"), "{err}");
    let err = run_query(&fed, &strict, &[])
        .await
        .expect_err("no clients named");
    assert!(err.to_string().contains("name the clients"), "{err}");
    fed.shutdown().await;
}

/// MIN, MEDIAN, PERCENTILE_CONT and MAX over real nodes: the counts and
/// statistics rounds, then the order round, an engine round in which the
/// three helpers compare and sort the clients' values among themselves. The
/// result equals the in-process pipeline (whose order phase is the
/// program's plaintext twin) bit for bit, and pooled SQLite within the
/// fixed-point bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_statistics_over_the_network_equal_the_pipeline_and_pooled_sqlite() {
    let mut fx = Fixture::new().await;
    let (_dir, fed, _events) = start(&fx).await;
    let sql = "SELECT dept, MIN(salary) AS lo, MEDIAN(salary) AS med, \
               PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY salary) AS p90, MAX(salary) AS hi \
               FROM salaries GROUP BY dept";
    let mut spec = spec(sql);
    // Every party holds at most 30 rows of a department.
    spec.max_rows_per_client = Some(32);
    let run = run_query(&fed, &spec, &names()).await.expect("query");
    assert_eq!(run.included, names()[..3].to_vec());
    assert!(
        run.stats_round.is_some() && run.order_round.is_some(),
        "{run:?}"
    );
    let local = query_support::run(&fx, &spec).await;
    assert_bit_equal(&run.result, &local);

    let salaries = fx
        .pooled_rows(
            "SELECT salary FROM pooled WHERE dept = 'eng' AND salary IS NOT NULL ORDER BY salary",
        )
        .await;
    let v: Vec<f64> = salaries.iter().map(|r| r[0].expect("salary")).collect();
    let n = v.len();
    let percentile = |p: f64| {
        let pos = p * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    // Fixed point 2^-28 on a [0, 1e6] column: far below a cent.
    assert_close(value(&run.result, "eng", "lo"), v[0], 1e-9, "eng MIN");
    assert_close(value(&run.result, "eng", "hi"), v[n - 1], 1e-9, "eng MAX");
    assert_close(
        value(&run.result, "eng", "med"),
        percentile(0.5),
        1e-9,
        "eng MEDIAN",
    );
    assert_close(
        value(&run.result, "eng", "p90"),
        percentile(0.9),
        1e-9,
        "eng P90",
    );
    fed.shutdown().await;
}
