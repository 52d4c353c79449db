//! The coordinator's planners for the training and query tasks refuse
//! malformed or inconsistent parameters with a message naming the problem,
//! and plan valid ones.

use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, RobustAggregation, TrainConfig};
use sealroom_analytics::joint::{QUERY_TASK, QueryParams, QueryPhase};
use sealroom_analytics::query::QuerySpec;
use sealroom_analytics::training::{
    FEDAVG_TASK, FedAvgParams, MOMENTS_TASK, MomentsParams, SplitSpec,
};
use sealroom_core::{QuantSpec, RingKind};
use sealroom_node::tasks::{TaskCatalog, TaskRequest};

fn catalog() -> TaskCatalog {
    let mut c = TaskCatalog::with_builtins();
    sealroom_analytics::training::register_tasks(&mut c);
    sealroom_analytics::joint::register_tasks(&mut c);
    c
}

fn plan(name: &str, params: Vec<u8>) -> Result<sealroom_protocol::coordinator::Task, String> {
    let spec = QuantSpec::new(16, 8.0, 24).expect("valid");
    let request = TaskRequest {
        name: name.into(),
        vector_len: 0,
        params,
        min_clients: 0,
    };
    catalog().task(&request, 5, RingKind::Z2_32, spec)
}

fn split() -> SplitSpec {
    SplitSpec {
        dataset: DatasetKind::Iris,
        test_fraction: 0.25,
        alpha: 0.5,
        min_rows: 5,
        seed: 1,
    }
}

fn fedavg(global: Vec<f64>) -> FedAvgParams {
    FedAvgParams {
        l2_bound: None,
        linf_bound: None,
        robust: None,
        table: "iris".into(),
        split: split(),
        training_round: 1,
        model: ModelKind::Logistic,
        n_features: 4,
        n_classes: 3,
        global,
        mean: vec![0.0; 4],
        std: vec![1.0; 4],
        train: TrainConfig {
            learning_rate: 0.1,
            epochs: 1,
            batch_size: 8,
            l2: 0.0,
            seed: 1,
        },
        fedavg: FedAvgSpec {
            bits: 12,
            delta_clip: 1.0,
            max_weight: 4096,
        },
        error_feedback: false,
    }
}

#[test]
fn valid_parameters_plan_their_rounds() {
    let moments = MomentsParams {
        table: "iris".into(),
        split: split(),
        n_features: 4,
    };
    let task = plan(MOMENTS_TASK, serde_json::to_vec(&moments).expect("json")).expect("plans");
    assert_eq!(task.vector_len, 9);
    let task = plan(
        FEDAVG_TASK,
        serde_json::to_vec(&fedavg(vec![0.0; 15])).expect("json"),
    )
    .expect("plans");
    assert_eq!(task.vector_len, 16, "15 parameters and the weight");
    let query = QueryParams {
        spec: QuerySpec {
            max_rows_per_client: None,
            sql: "SELECT COUNT(*), AVG(x) FROM t".into(),
            domains: Default::default(),
            min_rows: 5,
            min_clients: 2,
            bounds: [("x".to_owned(), [0.0, 1.0])].into(),
            dp: None,
        },
        phase: QueryPhase::Counts,
    };
    let task = plan(QUERY_TASK, serde_json::to_vec(&query).expect("json")).expect("plans");
    assert_eq!(task.vector_len, 2, "one cell: contributed and capped rows");
    assert_eq!(task.ring, RingKind::Z2_64, "query limbs need the wide ring");
}

#[test]
fn malformed_parameters_are_refused_with_the_reason() {
    for name in [MOMENTS_TASK, FEDAVG_TASK, QUERY_TASK] {
        for params in [&b""[..], b"{", b"[]", b"\xff\xfe", b"{\"table\": 7}"] {
            let err = plan(name, params.to_vec()).expect_err("malformed");
            assert!(err.contains("malformed"), "{name} {params:?}: {err}");
            assert!(err.contains(name), "the error names the task: {err}");
        }
    }
    // Well-formed JSON that does not fit together.
    let err = plan(
        FEDAVG_TASK,
        serde_json::to_vec(&fedavg(vec![0.0; 7])).expect("json"),
    )
    .expect_err("wrong parameter count");
    assert!(err.contains("7 parameters"), "{err}");
    let mut wide = fedavg(vec![0.0; 15]);
    wide.fedavg.bits = 53;
    assert!(plan(FEDAVG_TASK, serde_json::to_vec(&wide).expect("json")).is_err());
    let query = QueryParams {
        spec: QuerySpec {
            max_rows_per_client: None,
            sql: "SELECT MAX(x) FROM t".into(),
            domains: Default::default(),
            min_rows: 5,
            min_clients: 2,
            bounds: Default::default(),
            dp: None,
        },
        phase: QueryPhase::Counts,
    };
    let err = plan(QUERY_TASK, serde_json::to_vec(&query).expect("json")).expect_err("MAX");
    assert!(err.contains("MAX"), "{err}");
    // The stats phase is the coordinator's own follow-up: an admin asking
    // for it (with any cells) is refused, whatever its evidence says.
    let stats = QueryParams {
        spec: QuerySpec {
            sql: "SELECT COUNT(*) FROM t".into(),
            ..query.spec
        },
        phase: QueryPhase::Stats {
            released: vec![0],
            counts_round: 1,
            evidence: String::new(),
        },
    };
    let err = plan(QUERY_TASK, serde_json::to_vec(&stats).expect("json")).expect_err("stats");
    assert!(err.contains("started by the coordinator"), "{err}");
}

/// Robust aggregation is planned on its engine program; parameters it
/// cannot honour are refused with the reason (issue #15).
#[test]
fn robust_aggregation_parameters_are_planned_or_refused_with_the_reason() {
    let with = |robust: RobustAggregation, l2: Option<f64>, linf: Option<f64>| {
        let mut p = fedavg(vec![0.0; 15]);
        p.robust = Some(robust);
        p.l2_bound = l2;
        p.linf_bound = linf;
        plan(FEDAVG_TASK, serde_json::to_vec(&p).expect("json"))
    };
    let engine = |task: sealroom_protocol::coordinator::Task| {
        task.engine.map(|e| e.program).expect("an engine round")
    };
    let clip = RobustAggregation::Clip { norm: 0.5 };
    assert_eq!(
        engine(with(clip, Some(5.0), None).expect("plans")),
        "clipped-weighted-sum"
    );
    assert_eq!(
        engine(with(clip, Some(5.0), Some(1.0)).expect("plans")),
        "clipped-weighted-sum"
    );
    for trimmed in [
        RobustAggregation::TrimmedMean { beta: 0.2 },
        RobustAggregation::Median,
    ] {
        assert_eq!(
            engine(with(trimmed, None, None).expect("plans")),
            "trimmed-sum"
        );
        let err = with(trimmed, Some(5.0), None).expect_err("bounds");
        assert!(err.contains("robust by ranks"), "{err}");
    }
    let err = with(clip, None, None).expect_err("no hard bound");
    assert!(err.contains("needs an l2_bound"), "{err}");
    let err = with(clip, Some(0.25), None).expect_err("bound below the clip");
    assert!(err.contains("at most the hard L2 bound"), "{err}");
    let err = with(RobustAggregation::Clip { norm: 1e-3 }, Some(100.0), None)
        .expect_err("a bound 10^5 times the clip");
    assert!(err.contains("2^16 times the clip norm"), "{err}");
    let err = with(RobustAggregation::Clip { norm: -1.0 }, Some(5.0), None).expect_err("negative");
    assert!(err.contains("clip norm"), "{err}");
    let err = with(RobustAggregation::TrimmedMean { beta: 0.5 }, None, None).expect_err("beta");
    assert!(err.contains("beta"), "{err}");
    let krum = RobustAggregation::MultiKrum {
        byzantine: 1,
        selected: 2,
    };
    assert_eq!(
        engine(with(krum, Some(5.0), None).expect("plans")),
        "multi-krum"
    );
    let err = with(krum, None, None).expect_err("no hard bound");
    assert!(err.contains("needs an l2_bound"), "{err}");
    let err = with(krum, Some(5.0), Some(1.0)).expect_err("linf");
    assert!(err.contains("no linf_bound"), "{err}");
    let none = RobustAggregation::MultiKrum {
        byzantine: 1,
        selected: 0,
    };
    let err = with(none, Some(5.0), None).expect_err("selects nothing");
    assert!(err.contains("selected"), "{err}");
    // An unknown kind is malformed JSON for the planner.
    let mut json: serde_json::Value = serde_json::to_value(fedavg(vec![0.0; 15])).expect("json");
    json["robust"] = serde_json::json!({"kind": "bulyan", "f": 1});
    let err = plan(FEDAVG_TASK, serde_json::to_vec(&json).expect("json")).expect_err("krum");
    assert!(err.contains("malformed"), "{err}");
}
