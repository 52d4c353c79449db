//! The red-team suite's query findings (issue #12, findings 3, 4 and 9, and
//! a query deep enough to overflow a node's stack), replayed against real
//! nodes over loopback mutual TLS. Each test failed on the code before its
//! fix.

use crate::query_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use query_support::{Fixture, parties, spec};
use sealroom_analytics::joint::{QueryInput, QueryRunError, register_tasks, run_query};
use sealroom_analytics::query::Policy;
use sealroom_analytics::training::register_tasks as register_training;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputSource, TaskCatalog, TaskRequest};

async fn start(fx: &Fixture) -> (tempfile::TempDir, LocalFederation) {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let floor = Policy::new(1, 2).expect("policy");
    let inputs: Vec<Arc<dyn InputSource>> = fx
        .sources
        .iter()
        .map(|s| {
            Arc::new(QueryInput::new(
                BTreeMap::from([("salaries".to_string(), s.clone())]),
                floor,
            )) as Arc<dyn InputSource>
        })
        .collect();
    let mut catalog = TaskCatalog::with_builtins();
    register_tasks(&mut catalog);
    register_training(&mut catalog);
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        min_clients: Some(2),
        upload_window_ms: 1500,
        aggregation_window_ms: 3000,
        ..InitOptions::default()
    };
    let (fed, _events) = LocalFederation::start(&dir.path().join("fed"), options, catalog, inputs)
        .await
        .expect("federation starts");
    (dir, fed)
}

/// `request` is refused by the coordinator (`INVALID_ARGUMENT`) or, if it
/// starts a round, that round releases nothing.
async fn refused_or_not_computed(fed: &LocalFederation, request: &TaskRequest, what: &str) {
    match fed.request_round(request, names()).await {
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}"),
        Ok(outcome) => assert!(
            outcome.status != "completed" && outcome.values.is_empty(),
            "{what} was computed: round {} released {} values",
            outcome.round_id,
            outcome.values.len()
        ),
    }
}

fn names() -> Vec<String> {
    (0..3).map(|i| format!("client-{i}")).collect()
}

/// Finding 3: an admin sent `StartRound(task = "query")` with the phase
/// parameters of a stats round naming a suppressed cell and a counts round
/// that never ran, and got that one-client cell's exact sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_release_a_suppressed_cell() {
    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    // "hr" (cell 3 of eng, sales, ops, hr, legal, other) is held by one
    // party only: below min_clients = 2, so suppressed.
    let spec = spec("SELECT dept, COUNT(*) AS n, SUM(salary) AS total FROM salaries GROUP BY dept");
    let mut params = serde_json::to_value(serde_json::json!({
        "spec": spec,
        "phase": {"phase": "stats", "released": [3], "counts_round": 0},
    }))
    .expect("json");
    let request = TaskRequest {
        name: "query".into(),
        vector_len: 0,
        params: serde_json::to_vec(&params).expect("json"),
        min_clients: 3,
    };
    refused_or_not_computed(&fed, &request, "an admin-chosen release list").await;
    // Nor with a counts round that did run.
    let run = run_query(&fed, &spec, &names()).await.expect("query runs");
    params["phase"]["counts_round"] = serde_json::json!(run.counts_round);
    let request = TaskRequest {
        params: serde_json::to_vec(&params).expect("json"),
        ..request
    };
    refused_or_not_computed(&fed, &request, "an admin-chosen release list").await;
    fed.shutdown().await;
}

/// Finding 3, the coordinator's side: a stats round is checked by every
/// client against the counts round whose evidence it carries. A malicious
/// coordinator (it holds the signing key) that adds a suppressed cell,
/// drops a client, lowers `min_clients`, swaps the spec or names another
/// counts round gets a refusal from the client, before any row is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cannot_change_the_released_cells() {
    use sealroom_analytics::joint::{QueryParams, QueryPhase};
    use sealroom_protocol::pb;

    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    let spec = spec("SELECT dept, COUNT(*) AS n, SUM(salary) AS total FROM salaries GROUP BY dept");
    let run = run_query(&fed, &spec, &names()).await.expect("query runs");
    let stats_round = run.stats_round.expect("some cells pass");
    let suppressed = run
        .result
        .rows
        .iter()
        .position(|row| {
            row.cells
                .iter()
                .any(|c| matches!(c, sealroom_analytics::query::Cell::Suppressed { .. }))
        })
        .expect("a suppressed cell");
    // The real stats descriptor, as helper-0 stored it.
    let forger = query_support::Forger::of_round(&fed, stats_round).await;
    let input = Arc::new(QueryInput::new(
        BTreeMap::from([("salaries".to_string(), fx.sources[0].clone())]),
        Policy::new(1, 2).expect("policy"),
    ));
    let forged = |edit: &dyn Fn(&mut QueryParams, &mut pb::RoundDescriptor)| forger.resign(edit);
    let ask = |descriptor| forger.ask(&input, descriptor);

    // The honest round, re-signed unchanged, is accepted.
    ask(forged(&|_, _| {}))
        .await
        .expect("the real stats round is accepted");

    type Edit = Box<dyn Fn(&mut QueryParams, &mut pb::RoundDescriptor)>;
    let attacks: Vec<(&str, Edit)> = vec![
        (
            "released cells",
            Box::new(move |p, _| {
                if let QueryPhase::Stats { released, .. } = &mut p.phase {
                    released.push(suppressed);
                    released.sort_unstable();
                }
            }),
        ),
        (
            "clients",
            Box::new(|_, d| {
                d.clients.pop();
                d.min_clients = d.clients.len() as u32;
            }),
        ),
        ("min_clients", Box::new(|_, d| d.min_clients = 2)),
        (
            "not a counts round of this query",
            Box::new(|p, _| p.spec.min_rows += 1),
        ),
        (
            "earlier counts round",
            Box::new(|p, _| {
                if let QueryPhase::Stats { counts_round, .. } = &mut p.phase {
                    *counts_round += 1;
                }
            }),
        ),
        (
            "evidence",
            Box::new(|p, _| {
                if let QueryPhase::Stats { evidence, .. } = &mut p.phase {
                    evidence.truncate(evidence.len() / 2);
                }
            }),
        ),
    ];
    for (what, edit) in attacks {
        let refused = ask(forged(edit.as_ref()))
            .await
            .expect_err("a forged stats round is refused");
        assert_eq!(
            refused.sit_out.reason,
            pb::SitOutReason::InvalidParameters,
            "{what}: {refused:?}"
        );
        assert!(
            refused.detail.contains(what),
            "{what}: the refusal says why: {}",
            refused.detail
        );
    }
    fed.shutdown().await;
}

/// Finding 4: a query whose local evaluation failed only when a row met a
/// predicate made that client sit out, and the outcome named it: binary
/// search recovered exact values. Whether a client takes part must never
/// depend on its rows: such queries are refused by the planner, or run
/// with every client included either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participation_does_not_reveal_a_private_value() {
    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    let secret = parties()[0][0].salary.expect("the first row has a salary");
    let probes = |x: f64| {
        vec![
            format!("SELECT SUM(1 / (salary - {x} + 1e-300)) AS s FROM salaries"),
            format!(
                "SELECT SUM({}) AS s FROM salaries WHERE salary >= {x}",
                vec!["salary"; 400].join(" * ")
            ),
            // One the planner accepts: every client takes part either way.
            format!(
                "SELECT COUNT(*) AS n, SUM(salary / 1000) AS s FROM salaries WHERE salary >= {x}"
            ),
        ]
    };
    for (hit, miss) in probes(secret).into_iter().zip(probes(secret + 0.5)) {
        let mut included = Vec::new();
        for sql in [&hit, &miss] {
            let mut s = spec(sql);
            s.domains.clear();
            s.min_rows = 1;
            match run_query(&fed, &s, &names()).await {
                Ok(run) => included.push(Some(run.included)),
                // Refused by the planner, before any client computed anything.
                Err(QueryRunError::Query(_)) => included.push(None),
                Err(other) => panic!("{sql}: {other}"),
            }
        }
        assert_eq!(
            included[0], included[1],
            "participation differs between a probe that hits a private value and one that misses:\n{hit}"
        );
        if let Some(included) = &included[0] {
            assert_eq!(included, &names(), "every client took part: {hit}");
        }
    }
    fed.shutdown().await;
}

/// Finding 9: training parameters were unbounded; an admin could make
/// every client train for 10^12 epochs. The coordinator refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_training_parameters_are_refused() {
    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    let params = serde_json::json!({
        "table": "wine",
        "split": {"dataset": "wine", "test_fraction": 0.2, "alpha": 1.0, "min_rows": 5, "seed": 1},
        "training_round": 1,
        "model": "logistic",
        "n_features": 11,
        "n_classes": 6,
        "global": vec![0.0; 72],
        "mean": vec![0.0; 11],
        "std": vec![1.0; 11],
        "train": {"learning_rate": 0.1, "epochs": 1_000_000_000_000u64, "batch_size": 1, "l2": 0.0, "seed": 1},
        "fedavg": {"bits": 16, "delta_clip": 1.0, "max_weight": 10000},
        "error_feedback": false,
    });
    let request = TaskRequest {
        name: "fedavg".into(),
        vector_len: 0,
        params: serde_json::to_vec(&params).expect("json"),
        min_clients: 0,
    };
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        fed.request_round(&request, names()),
    )
    .await
    .expect("answered without waiting for clients to train")
    .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("epochs"), "{refused:?}");
    fed.shutdown().await;
}

/// The order round (MIN/MAX/MEDIAN/PERCENTILE_CONT on the MPC engine) is
/// checked like the stats round, by every client and by every helper before
/// it builds the program: a coordinator that changes the order counts (which
/// pick the opened ranks), the clients, the stats round it claims or the
/// vector length gets a refusal naming what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cannot_change_an_order_round() {
    use base64::Engine as _;
    use sealroom_analytics::joint::{QueryParams, QueryPhase, SqlOrderProgram};
    use sealroom_node::tasks::EngineProgram as _;
    use sealroom_protocol::pb;

    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    let mut spec = spec("SELECT dept, MEDIAN(salary) AS med FROM salaries GROUP BY dept");
    spec.max_rows_per_client = Some(32);
    let run = run_query(&fed, &spec, &names()).await.expect("query runs");
    let order_round = run.order_round.expect("an order round ran");
    let forger = query_support::Forger::of_round(&fed, order_round).await;
    let keys = forger.keys.clone();
    let forged = |edit: &dyn Fn(&mut QueryParams, &mut pb::RoundDescriptor)| forger.resign(edit);
    let input = Arc::new(QueryInput::new(
        BTreeMap::from([("salaries".to_string(), fx.sources[0].clone())]),
        Policy::new(1, 2).expect("policy"),
    ));
    let ask = |descriptor| forger.ask(&input, descriptor);
    let honest = forged(&|_, _| {});
    ask(honest.clone())
        .await
        .expect("the real order round is accepted");
    SqlOrderProgram
        .program(&honest, &keys, 3)
        .expect("a helper builds the real round's program");

    type Edit = Box<dyn Fn(&mut QueryParams, &mut pb::RoundDescriptor)>;
    let attacks: Vec<(&str, Edit)> = vec![
        (
            "order parameters",
            Box::new(|p, _| {
                if let QueryPhase::Order { order, .. } = &mut p.phase {
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let mut bytes = b64.decode(&*order).expect("base64");
                    // The first cell's first `values` count (after the
                    // magic, version, L, items, cells and the cell index).
                    bytes[21] ^= 1;
                    *order = b64.encode(bytes);
                }
            }),
        ),
        (
            "clients",
            Box::new(|_, d| {
                d.clients.pop();
                d.min_clients = d.clients.len() as u32;
            }),
        ),
        (
            "earlier stats round",
            Box::new(|p, _| {
                if let QueryPhase::Order { stats_round, .. } = &mut p.phase {
                    *stats_round += 1;
                }
            }),
        ),
        (
            "vector length",
            Box::new(|_, d| d.task.as_mut().expect("task").vector_length += 1),
        ),
    ];
    for (what, edit) in attacks {
        let descriptor = forged(edit.as_ref());
        let refused = ask(descriptor.clone())
            .await
            .expect_err("a forged order round is refused");
        assert_eq!(
            refused.sit_out.reason,
            pb::SitOutReason::InvalidParameters,
            "{what}: {refused:?}"
        );
        assert!(
            refused.detail.contains(what),
            "{what}: the client's refusal says why: {}",
            refused.detail
        );
        let clients = descriptor.clients().len();
        let err = SqlOrderProgram
            .program(&descriptor, &keys, clients)
            .expect_err("a helper refuses to build its program");
        assert!(
            err.contains(what),
            "{what}: the helper's refusal says why: {err}"
        );
    }
    fed.shutdown().await;
}

/// A query deep enough to overflow a thread's stack (a product of 30,000
/// factors, 60 KB of SQL: the release `sealroom query` aborted on it before
/// the planner bounded operators and nesting) cannot stop a node. The
/// coordinator, asked directly for such a counts round, refuses it; a
/// client, handed one that a coordinator signed, sits out naming the
/// bound; and afterwards the same federation answers an honest query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_query_cannot_stop_a_node() {
    use sealroom_analytics::joint::QueryPhase;
    use sealroom_protocol::pb;

    let fx = Fixture::new().await;
    let (_dir, fed) = start(&fx).await;
    let honest = spec("SELECT COUNT(*) AS n, SUM(salary) AS total FROM salaries");
    // 60 KB: under the 64 KiB a query's text may hold.
    let deep_sql = format!(
        "SELECT COUNT(*) AS n, SUM(salary{}) AS total FROM salaries",
        "*1".repeat(30_000)
    );

    // An admin's StartRound, past the admin tool's own planning.
    let mut deep = honest.clone();
    deep.sql = deep_sql.clone();
    let request = TaskRequest {
        name: "query".into(),
        vector_len: 0,
        params: serde_json::to_vec(&serde_json::json!({
            "spec": deep,
            "phase": {"phase": "counts"},
        }))
        .expect("json"),
        min_clients: 3,
    };
    refused_or_not_computed(&fed, &request, "a query past the planner's bounds").await;

    // A coordinator that signs one: the counts round of an honest query,
    // re-signed with the deep SQL.
    let run = run_query(&fed, &honest, &names())
        .await
        .expect("query runs");
    let forger = query_support::Forger::of_round(&fed, run.counts_round).await;
    assert!(matches!(forger.params.phase, QueryPhase::Counts));
    let input = Arc::new(QueryInput::new(
        BTreeMap::from([("salaries".to_string(), fx.sources[0].clone())]),
        Policy::new(1, 2).expect("policy"),
    ));
    forger
        .ask(&input, forger.resign(&|_, _| {}))
        .await
        .expect("the real counts round is accepted");
    let refused = forger
        .ask(&input, forger.resign(&|p, _| p.spec.sql = deep_sql.clone()))
        .await
        .expect_err("a counts round past the planner's bounds is refused");
    assert_eq!(
        refused.sit_out.reason,
        pb::SitOutReason::InvalidParameters,
        "{refused:?}"
    );
    assert!(
        refused.detail.contains("operators"),
        "the refusal names the bound: {}",
        refused.detail
    );

    // Every node still serves: the honest query again, with every client.
    let again = run_query(&fed, &honest, &names())
        .await
        .expect("query runs");
    assert_eq!(again.included, names());
    assert_eq!(again.result.rows, run.result.rows);
    fed.shutdown().await;
}
