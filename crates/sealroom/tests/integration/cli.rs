//! The binary as a user runs it: `init`, then each node as its own process,
//! a round through the admin API, a joint SQL query over the clients' own
//! files, a short federated training, and a scrape of `/metrics`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::{free_base_port, sealroom, wait_for_port};

/// Kills its processes when dropped, so a failing test leaves nothing behind.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

fn spawn_node(config: &Path) -> Child {
    let mut cmd = sealroom();
    cmd.arg("node")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("node starts")
}

#[test]
fn init_nodes_as_processes_round_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(110);
    let out = sealroom()
        .args([
            "init",
            "--helpers",
            "3",
            "--clients",
            "3",
            "--base-port",
            &base.to_string(),
        ])
        .arg(dir.path())
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut nodes = Nodes(Vec::new());
    for name in ["helper-0", "helper-1", "helper-2", "coordinator"] {
        nodes
            .0
            .push(spawn_node(&dir.path().join(format!("{name}.toml"))));
    }
    wait_for_port(base);
    for i in 1..=3 {
        wait_for_port(base + i);
    }
    // Each client also holds one company's salary table, where it lives: two
    // CSV files and a SQLite database.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/salaries");
    let sources = [
        ("client-0", "acme.csv", "kind = \"csv\""),
        ("client-1", "globex.csv", "kind = \"csv\""),
        (
            "client-2",
            "initech.sqlite",
            "kind = \"sqlite\"\ntable = \"salaries\"",
        ),
    ];
    for (name, file, kind) in sources {
        std::fs::copy(examples.join(file), dir.path().join(file)).expect("copy example data");
        let config = dir.path().join(format!("{name}.toml"));
        let mut text = std::fs::read_to_string(&config).expect("read config");
        text.push_str(&format!("\n[data.salaries]\n{kind}\npath = \"{file}\"\n"));
        std::fs::write(&config, text).expect("write config");
    }
    for name in ["client-0", "client-1", "client-2"] {
        nodes
            .0
            .push(spawn_node(&dir.path().join(format!("{name}.toml"))));
    }
    // Clients connect to the coordinator's watch stream; a round started
    // before they do goes on without them, so wait until every client took part.
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        std::thread::sleep(Duration::from_millis(700));
        let out = sealroom()
            .args([
                "round",
                "start",
                "--task",
                "synthetic",
                "--dim",
                "50",
                "--json",
                "--config",
            ])
            .arg(dir.path().join("admin.toml"))
            .output()
            .expect("round start runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        if json["included_clients"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
        {
            assert!(out.status.success());
            break json;
        }
        assert!(
            Instant::now() < deadline,
            "no round with all 3 clients: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["values"].as_array().map(Vec::len), Some(50));

    // A joint question in SQL: every client answers from its own table.
    let out = sealroom()
        .args([
            "query",
            "--json",
            "--domain",
            "dept=eng,sales,ops,hr,legal",
            "--bound",
            "salary=0,1000000",
            "--config",
        ])
        .arg(dir.path().join("admin.toml"))
        .arg("SELECT dept, COUNT(*), AVG(salary) FROM salaries GROUP BY dept")
        .output()
        .expect("query runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "query failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_str(&text).expect("query JSON");
    assert_eq!(run["included"].as_array().map(Vec::len), Some(3), "{text}");
    let rows = run["result"]["rows"].as_array().expect("rows");
    let row = |dept: &str| {
        rows.iter()
            .find(|r| r["group"].to_string().contains(&format!("\"{dept}\"")))
            .unwrap_or_else(|| panic!("no {dept} row in {text}"))
            .clone()
    };
    // 58 + 37 + 26 engineers (examples/salaries); legal exists at one company only.
    assert!(row("eng")["cells"].to_string().contains("121"), "{text}");
    assert!(
        row("legal")["cells"].to_string().contains("uppress"),
        "{text}"
    );

    // Issue #13 finding 4: a question no client can answer comes back at
    // once with the clients' own typed reasons, not a timeout reading
    // "only 0 client(s)". A misspelled table, then a misspelled column. The
    // round aborts as soon as min_clients (2) is out of reach, so two or
    // three clients' reasons are in the answer.
    for (sql, reason) in [
        ("SELECT COUNT(*) FROM salary", r#"no table "salary" ("#),
        (
            "SELECT dept, AVG(salry) FROM salaries GROUP BY dept",
            r#"no column "salry" ("#,
        ),
    ] {
        let out = sealroom()
            .args([
                "query",
                "--domain",
                "dept=eng,sales,ops,hr,legal",
                "--bound",
                "salry=0,1000000",
                "--config",
            ])
            .arg(dir.path().join("admin.toml"))
            .arg(sql)
            .output()
            .expect("query runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{sql}: {text}");
        assert!(
            text.contains("aborted (not_enough_clients)")
                && text.contains("of 3 clients sat the round out")
                && text.contains(reason),
            "{sql}: {text}"
        );
    }

    // The same question from a spec file, as shipped with the example.
    let out = sealroom()
        .args(["query", "--json", "--config"])
        .arg(dir.path().join("admin.toml"))
        .arg("--spec")
        .arg(examples.join("queries/avg_salary_by_dept.json"))
        .output()
        .expect("query runs");
    let from_file = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "query --spec failed: {from_file} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(from_file.contains("121"), "{from_file}");

    // A short federated training on every client's part of the wine data.
    let out = sealroom()
        .args(["train", "--rounds", "2", "--json", "--config"])
        .arg(dir.path().join("admin.toml"))
        .output()
        .expect("train runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "train failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("train JSON");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{text}");
    for r in rounds {
        assert_eq!(r["included"].as_array().map(Vec::len), Some(3), "{text}");
    }

    // The coordinator serves metrics on base + 100 (see `sealroom init --help`).
    let metrics = http_get(base + 100, "/metrics");
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sealroom_rounds_total{role=\"coordinator\",outcome=\"completed\",reason=\"\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("sealroom_round_duration_seconds_bucket"));
    assert!(metrics.contains("sealroom_reconstructions_total{result=\"success\"}"));
    assert!(metrics.contains("sealroom_audit_checkpoint_timestamp_seconds"));

    // The audit log verifies against federation.toml, tells a round's story,
    // exports as JSON Lines; each role replays the round byte for byte.
    let round = outcome["round_id"].as_u64().expect("round id");
    let out = sealroom()
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("coordinator.toml"))
        .arg("--federation")
        .arg(dir.path().join("federation.toml"))
        .output()
        .expect("audit verify runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("chain and signatures verified"), "{text}");
    assert!(text.contains("signer keys match"), "{text}");
    let out = sealroom()
        .args([
            "audit",
            "show",
            "--json",
            "--round",
            &round.to_string(),
            "--data",
        ])
        .arg(dir.path().join("data/coordinator"))
        .output()
        .expect("audit show runs");
    let story: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show JSON");
    let kinds: Vec<&str> = story
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "descriptor",
        "report",
        "inclusion_set",
        "result",
        "checkpoint",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let out = sealroom()
        .args(["audit", "export", "--config"])
        .arg(dir.path().join("helper-0.toml"))
        .output()
        .expect("audit export runs");
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(lines.lines().count() > 3);
    for line in lines.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line");
    }
    for node in ["coordinator", "helper-0", "client-0"] {
        let out = sealroom()
            .args(["replay", "--round", &round.to_string(), "--config"])
            .arg(dir.path().join(format!("{node}.toml")))
            .output()
            .expect("replay runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("identical"),
            "{node}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // (Last: its many rounds prune the archive of the round replayed above.)
    // A training on the clients' own salary tables from a spec file: globex's
    // CSV has two empty salaries, so client-1 sits out naming the column and
    // the training goes on with the other two; the model is exported.
    let export = dir.path().join("model");
    let out = sealroom()
        .args(["train", "--json", "--config"])
        .arg(dir.path().join("admin.toml"))
        .arg("--spec")
        .arg(examples.join("train_dept.json"))
        .arg("--export")
        .arg(&export)
        .output()
        .expect("train --spec runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "train --spec failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("train --spec JSON");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert!(!rounds.is_empty(), "{text}");
    for r in rounds {
        assert_eq!(
            r["included"],
            serde_json::json!(["client-0", "client-2"]),
            "{text}"
        );
    }
    assert!(export.join("model.safetensors").is_file());
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("model.json")).expect("model.json"))
            .expect("model.json is JSON");
    assert_eq!(model["format"], "sealroom-model/1");
    assert_eq!(model["n_params"], 24);
    // A spec naming an unknown field is refused before any round, naming the file.
    let bad = dir.path().join("bad_spec.json");
    std::fs::write(
        &bad,
        r#"{"table": "salaries", "label": "dept", "featurez": []}"#,
    )
    .expect("write");
    let out = sealroom()
        .args(["train", "--config"])
        .arg(dir.path().join("admin.toml"))
        .arg("--spec")
        .arg(&bad)
        .output()
        .expect("train runs");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("bad_spec.json") && err.contains("featurez"),
        "{err}"
    );
}

#[test]
fn init_refuses_to_overwrite_keys_and_bad_configs_name_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(110).to_string();
    let ok = sealroom()
        .args(["init", "--base-port", &base])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(ok.status.success());
    let again = sealroom()
        .args(["init", "--base-port", &base])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        !again.status.success(),
        "a second init must not overwrite keys"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let federation = dir.path().join("federation.toml");
    let text = std::fs::read_to_string(&federation).expect("read");
    std::fs::write(&federation, format!("{text}\nsurprise = 1\n")).expect("write");
    let out = sealroom()
        .args(["node", "--config"])
        .arg(dir.path().join("helper-0.toml"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("federation.toml") && err.contains("surprise"),
        "{err}"
    );
}

#[test]
fn query_refuses_unsupported_sql_before_any_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(110).to_string();
    let ok = sealroom()
        .args(["init", "--base-port", &base])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(ok.status.success());
    // No node runs: the refusal must come from the query check itself.
    for (sql, why) in [
        // MAX runs on the MPC engine, but only over a bounded column.
        ("SELECT MAX(salary) FROM salaries", "bounds"),
        ("SELECT DISTINCT dept FROM salaries", "distinct"),
        ("SELECT a.x FROM a JOIN b ON a.id = b.id", "join"),
        (
            "SELECT dept, COUNT(*) FROM salaries GROUP BY dept",
            "domain",
        ),
    ] {
        let out = sealroom()
            .args(["query", "--config"])
            .arg(dir.path().join("admin.toml"))
            .arg(sql)
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{sql} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.to_lowercase().contains(&why.to_lowercase()),
            "{sql}: {err}"
        );
    }
}

#[test]
fn help_explains_the_commands_and_demo_knobs() {
    let out = sealroom().arg("--help").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["demo", "init", "node", "round", "query", "train"] {
        assert!(text.contains(command), "{text}");
    }
    let out = sealroom().args(["demo", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for knob in [
        "--helpers",
        "--clients",
        "--mode",
        "--rounds",
        "--bits",
        "--dataset",
        "--model",
        "--error-feedback",
        "--drop-client",
    ] {
        assert!(text.contains(knob), "{text}");
    }
}

#[test]
fn plan_recommends_a_setting_or_says_the_target_is_unreachable() {
    let plan = |availability: &str, extra: &[&str]| {
        sealroom()
            .args([
                "plan",
                "--helpers",
                "5",
                "--clients",
                "200",
                "--client-dropout",
                "0.1",
                "--helper-availability",
                availability,
                "--target",
                "0.999",
            ])
            .args(extra)
            .output()
            .expect("plan runs")
    };
    let out = plan("0.99", &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan prints JSON");
    let best = &json["recommendation"];
    // 0.99⁵ ≈ 0.951 cannot meet 0.999; four of five helpers can.
    assert_eq!(best["mode"], "threshold", "{json}");
    assert_eq!(best["threshold"], 4, "{json}");
    assert_eq!(best["meets_target"], true, "{json}");
    assert!(best["p_reconstruct"].as_f64().expect("a number") >= 0.999);
    let k = best["min_clients"].as_u64().expect("a number");
    assert_eq!(best["colluding_clients"].as_u64(), Some(k - 1));
    let rows = json["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|r| r["mode"] == "additive"), "{json}");

    // Helpers up half the time: nothing reaches 0.999, and the plan says so
    // without failing.
    let out = plan("0.5", &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("target unreachable: best achievable is"),
        "{text}"
    );
    let out = plan("0.5", &["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan prints JSON");
    assert!(json["recommendation"].is_null(), "{json}");
    assert_eq!(json["best_achievable"]["min_clients"], 2, "{json}");

    let out = plan("1.5", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--helper-availability"), "{err}");
}
