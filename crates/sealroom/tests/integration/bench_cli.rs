//! `sealroom bench` as a user runs it: a CI-sized smoke run of real nodes on
//! loopback with a plaintext baseline beside them. Checks that the JSON
//! report holds secure and baseline figures and a verdict per target; it
//! never asserts on timing (STYLE.md 16).

use serde_json::Value;

use crate::common;
use common::sealroom;

#[test]
fn quick_bench_writes_secure_and_baseline_figures_and_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let chart = dir.path().join("latency.svg");
    let out = sealroom()
        .args([
            "bench",
            "--quick",
            "--clients",
            "3",
            "--dims",
            "100",
            "--rounds",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(&chart)
        .arg("--out-dir")
        .arg(dir.path().join("run"))
        .output()
        .expect("sealroom bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("baseline"), "{stdout}");
    assert!(stdout.contains("summary against DESIGN.md §9"), "{stdout}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("valid JSON");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["clients"], 3);
    assert_eq!(r["dims"], 100);
    for side in ["secure", "baseline"] {
        let latency = &r[side]["latency_ms"];
        assert_eq!(latency["n"], 2, "{side}: {latency}");
        for p in ["p50", "p95", "p99"] {
            assert!(latency[p].as_f64().is_some_and(|v| v > 0.0), "{side} {p}");
        }
        assert!(
            r[side]["upload_bytes_per_client"]
                .as_f64()
                .is_some_and(|b| b > 0.0),
            "{side} upload bytes"
        );
    }
    assert!(r["latency_ratio_p95"].as_f64().is_some());
    // The sum's shares are narrowed to the width its headroom check admits
    // (3 clients × 2^22, the default quantization's largest value, need 25
    // signed bits), and each client uploads at least that packed vector.
    assert_eq!(r["share_bits"], 25);
    assert!(
        r["secure"]["upload_bytes_per_client"]
            .as_f64()
            .is_some_and(|b| b >= (100.0 * 25.0 / 8.0_f64).ceil())
    );
    // The secure sum matches the plaintext sum of the same inputs up to
    // quantization (step 2^-16 per client).
    assert!(
        r["sum_max_abs_difference"]
            .as_f64()
            .is_some_and(|d| d < 1e-3)
    );

    let verdict_ok = |v: &Value| {
        matches!(
            v["verdict"].as_str(),
            Some("MET" | "MISSED" | "NOT_MEASURED")
        )
    };
    let per_config = r["verdicts"].as_array().expect("verdicts");
    for target in ["upload", "p95", "p99", "helper aggregation"] {
        let v = per_config
            .iter()
            .find(|v| v["target"].as_str().is_some_and(|t| t.contains(target)))
            .unwrap_or_else(|| panic!("no verdict for {target}: {per_config:?}"));
        assert!(verdict_ok(v), "{v}");
    }
    let run = report["verdicts"].as_array().expect("run verdicts");
    for target in [
        "upload",
        "p95",
        "p99",
        "helper aggregation",
        "PRG",
        "small-group",
    ] {
        let v = run
            .iter()
            .find(|v| v["target"].as_str().is_some_and(|t| t.contains(target)))
            .unwrap_or_else(|| panic!("no run verdict for {target}: {run:?}"));
        assert!(verdict_ok(v), "{v}");
    }
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(
        std::fs::read_to_string(&chart)
            .expect("chart written")
            .starts_with("<svg")
    );
}

#[test]
fn bench_refuses_configurations_that_would_exhaust_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sealroom()
        .args([
            "bench",
            "--clients",
            "100000",
            "--dims",
            "200000000",
            "--rounds",
            "1",
        ])
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .expect("sealroom bench runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lower --clients or --dims"), "{stderr}");
}

#[test]
fn simulate_mode_drives_the_state_machines_and_reports_rounds_per_second() {
    let out = sealroom()
        .args([
            "bench",
            "--simulate",
            "300",
            "--rounds",
            "2",
            "--mode",
            "threshold",
        ])
        .output()
        .expect("bench runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.matches("round ").count() >= 2, "{text}");
    assert!(text.contains("rounds/s"), "{text}");
    assert!(text.contains("2 rounds ("), "{text}");
}

/// `sealroom bench --engine --quick`: three helper nodes over mutual TLS run
/// the MPC engine; every figure is present beside its semi-honest baseline
/// and every target has a verdict (never asserted on timing).
#[test]
fn quick_engine_bench_writes_every_figure_and_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, report) = bench(dir.path(), &["--engine", "--quick"]);
    let figures = report["figures"].as_array().expect("figures");
    let names: Vec<&str> = figures.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "triples (Chida-verified)",
            "online multiplications (verified)",
            "comparisons LT, k=32 (online)"
        ]
    );
    for f in figures {
        assert!(
            f["items_per_second"].as_f64().is_some_and(|v| v > 0.0),
            "{f}"
        );
        assert!(
            f["malicious_over_semi_honest"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{f}"
        );
        assert!(
            f["bytes_per_item_per_helper"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{f}"
        );
    }
    // Engine rounds end to end (the first inline, the next from the pool:
    // the bench fails if one did not use it) beside a sum round of the
    // same shape.
    let round = &report["engine_round"];
    for key in ["inline_ms", "engine_ms", "sum_ms"] {
        assert!(round[key].as_f64().is_some_and(|v| v > 0.0), "{round}");
    }
    assert!(stdout.contains("engine round ("), "{stdout}");
    // What one client's update costs the helpers with validity on (issue
    // #15), at --quick's 1,000 parameters.
    let cost = &report["validity_per_client"];
    assert_eq!(cost["elements"], 1000, "{cost}");
    for key in ["triples", "bits"] {
        assert!(cost[key].as_u64().is_some_and(|v| v > 1000), "{cost}");
    }
    for key in ["preprocessing_s", "online_s"] {
        assert!(cost[key].as_f64().is_some_and(|v| v > 0.0), "{cost}");
    }
    assert!(
        stdout.contains("input validity per client at 1000 parameters"),
        "{stdout}"
    );
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    for v in verdicts {
        assert!(v["met"].is_boolean(), "{v}");
        let word = if v["met"] == true { "MET" } else { "MISSED" };
        assert!(stdout.contains(word), "{stdout}");
    }
    // The federation directory (keys, stores with material) is deleted.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("run"))
        .expect("out dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `sealroom bench --load`: real client nodes (each its own certificate and
/// connections) against coordinator and helper processes, 30% down in every
/// round; every round completes with the exact sum (the bench fails
/// otherwise) and each node's memory and descriptors are reported.
#[test]
fn small_load_bench_completes_every_round_and_reports_each_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, report) = bench(
        dir.path(),
        &["--load", "8", "--rounds", "1", "--dims", "16"],
    );
    assert_eq!(report["rounds_completed"], 1, "{report}");
    // 8 clients, 30% (2) down: 6 included.
    assert_eq!(
        report["included_per_round"],
        serde_json::json!([6]),
        "{report}"
    );
    let nodes = report["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["coordinator", "helper-0", "helper-1", "helper-2"]);
    for n in nodes {
        assert!(n["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{n}");
        assert!(n["open_fds"].as_u64().is_some_and(|f| f > 0), "{n}");
        assert!(n["idle_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{n}");
    }
    // Each helper's round memory against what it held: its six uploads
    // (a packed vector from each client whose correction it holds, a seed
    // from the others) and the 16-element aggregate, read back from its
    // store.
    for n in &nodes[1..] {
        let held = n["round_bytes_held"].as_u64().expect("bytes held");
        assert!(held >= 16 * 4 + 6 * 32, "{n}");
        assert!(n["peak_over_held"].as_f64().is_some(), "{n}");
    }
    assert!(nodes[0]["round_bytes_held"].is_null(), "not a helper");
}

/// `--rtt-ms`: both sides' every connection goes through a latency relay.
/// The check is that the relays are in the path — no round can finish in
/// less than the one round trip its request alone needs — and that the
/// report states the RTT and the round trips each side needs; it makes no
/// claim about speed.
#[test]
fn emulated_rtt_bench_routes_both_sides_through_the_latency_relays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, report) = bench(
        dir.path(),
        &[
            "--quick",
            "--clients",
            "3",
            "--dims",
            "100",
            "--rounds",
            "2",
            "--rtt-ms",
            "40",
        ],
    );
    assert!(
        stdout.contains("emulated round-trip time 40 ms"),
        "{stdout}"
    );
    assert!(
        stdout.contains("a secure round needs 4.5 sequential round trips"),
        "{stdout}"
    );
    assert_eq!(report["config"]["rtt_ms"], 40);
    let r = &report["results"][0];
    assert_eq!(r["rtt_ms"], 40);
    for side in ["secure", "baseline"] {
        let p50 = r[side]["latency_ms"]["p50"].as_f64().expect("p50");
        assert!(
            p50 >= 40.0,
            "{side}: a round through the relays took {p50} ms, less than one 40 ms round trip"
        );
    }
    assert!(
        report["transport"].is_null(),
        "no transport probe at an emulated RTT"
    );
}

/// Runs `sealroom bench ARGS` with its report and federations under `dir`;
/// asserts it succeeded; its stdout and JSON report.
fn bench(dir: &std::path::Path, args: &[&str]) -> (String, Value) {
    let json = dir.join("report.json");
    let out = sealroom()
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--out-dir")
        .arg(dir.join("run"))
        .output()
        .expect("sealroom bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
        .expect("valid JSON");
    (stdout, report)
}
