//! What an operator trips on (issue #13, finding 6), run as the operator
//! runs it: the binary, on a federation made by `sealroom init`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common;
use common::{free_base_port, sealroom, wait_for_port};

fn init(dir: &Path, extra: &[&str]) -> std::process::Output {
    let base = free_base_port(110).to_string();
    sealroom()
        .args(["init", "--base-port", &base])
        .args(extra)
        .arg(dir)
        .output()
        .expect("init runs")
}

fn init_ok(dir: &Path, extra: &[&str]) {
    let out = init(dir, extra);
    assert!(
        out.status.success(),
        "init {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `key = "…"` or `key = …` in federation.toml.
fn federation_value(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("federation.toml")).expect("federation.toml");
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Every file under `dir` with its length.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("reads dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                files.insert(entry.path(), 0);
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), meta.len());
            }
        }
    }
    files
}

/// `init --help` names the ring `init` writes: Z_2^32 for an additive
/// federation of a few clients (docs/operations.md), F_p in threshold mode.
#[test]
fn init_help_and_init_agree_on_the_default_ring() {
    let help = sealroom().args(["init", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&help.stdout).replace(char::is_whitespace, " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("`additive` n-of-n over Z_2^32 (Z_2^64 when"),
        "init --help: {help}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    init_ok(dir.path(), &[]);
    assert_eq!(
        federation_value(dir.path(), "ring").as_deref(),
        Some("z2_32")
    );
    assert_eq!(federation_value(dir.path(), "threshold"), None);
}

/// `init` takes `--mode` as `demo` and `bench` do (`shamir` is accepted
/// for `threshold`), and `--threshold` alone still selects threshold mode.
#[test]
fn init_and_demo_take_the_same_mode_and_threshold_options() {
    let shamir = tempfile::tempdir().expect("tempdir");
    init_ok(shamir.path(), &["--helpers", "3", "--mode", "shamir"]);
    assert_eq!(
        federation_value(shamir.path(), "threshold").as_deref(),
        Some("2"),
        "the smallest majority of 3 helpers"
    );
    assert_eq!(
        federation_value(shamir.path(), "ring").as_deref(),
        Some("fp61")
    );

    let explicit = tempfile::tempdir().expect("tempdir");
    init_ok(
        explicit.path(),
        &["--helpers", "5", "--mode", "threshold", "--threshold", "4"],
    );
    assert_eq!(
        federation_value(explicit.path(), "threshold").as_deref(),
        Some("4")
    );

    let legacy = tempfile::tempdir().expect("tempdir");
    init_ok(legacy.path(), &["--helpers", "5", "--threshold", "3"]);
    assert_eq!(
        federation_value(legacy.path(), "threshold").as_deref(),
        Some("3")
    );

    let refused = tempfile::tempdir().expect("tempdir");
    let out = init(refused.path(), &["--mode", "additive", "--threshold", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode threshold only"), "{err}");
    assert!(
        !refused.path().join("federation.toml").exists(),
        "nothing written"
    );

    let out = sealroom()
        .args(["demo", "--mode", "additive", "--threshold", "2", "--out"])
        .arg(refused.path().join("demo"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode threshold only"), "{err}");
    for command in ["init", "demo", "bench"] {
        let out = sealroom().args([command, "--help"]).output().expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--mode <MODE>") && text.contains("--threshold <T>"),
            "{command} --help:\n{text}"
        );
    }
}

/// `node --config admin.toml` is refused before the node opens (and so
/// creates) its database: the federation directory is left as it was.
#[test]
fn node_refuses_an_admin_config_before_creating_any_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_ok(dir.path(), &[]);
    let before = snapshot(dir.path());
    let out = sealroom()
        .args(["node", "--config"])
        .arg(dir.path().join("admin.toml"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.toml") && err.contains("an admin identity does not run a node"),
        "{err}"
    );
    let after = snapshot(dir.path());
    let new: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(new.is_empty(), "the refusal created {new:?}");
    assert_eq!(before, after);
}

/// A node whose log goes to a file writes plain text: no ANSI colour codes.
#[test]
fn a_node_logging_to_a_file_writes_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(110);
    let out = sealroom()
        .args(["init", "--base-port", &base.to_string()])
        .arg(dir.path())
        .output()
        .expect("init runs");
    assert!(out.status.success());
    let log_path = dir.path().join("helper-0.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut helper = sealroom()
        .args(["node", "--config"])
        .arg(dir.path().join("helper-0.toml"))
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("helper starts");
    wait_for_port(base + 1);
    // The line after the listener is bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).expect("reads the log");
        if text.contains("helper serving") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = helper.kill();
    let _ = helper.wait();
    assert!(text.contains("helper serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file: {text:?}"
    );
}

/// `sealroom audit budget` on a client: zero spend before any ledger
/// exists, then the ledger's charges against the config's budgets.
#[test]
fn audit_budget_shows_what_each_table_spent() {
    use sealroom_analytics::budget::{Budget, Charge, Ledger};

    let dir = tempfile::tempdir().expect("tempdir");
    init_ok(dir.path(), &[]);
    std::fs::write(dir.path().join("patients.csv"), "age\n40\n").expect("write csv");
    let config = dir.path().join("client-0.toml");
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[data.patients]\nkind = \"csv\"\npath = \"patients.csv\"\n\n\
             [privacy_budget.patients]\nepsilon = 5.0\ndelta = 1e-5\n"
        ),
    )
    .expect("write config");
    let audit = |extra: &[&str]| {
        sealroom()
            .args(["audit", "budget", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .expect("audit budget runs")
    };

    let ledger_file = dir.path().join("data/client-0/privacy-ledger.db");
    let out = audit(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "no DP release has been charged on this client yet (no ledger at {})",
            ledger_file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("patients") && l.contains("0 of 5") && l.contains("0 of 1e-5")),
        "{stdout}"
    );
    assert!(!ledger_file.exists(), "the view must not create the ledger");

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let ledger = Ledger::open(&ledger_file).await.expect("ledger opens");
            let limit = Budget::new(5.0, 1e-5).expect("budget");
            for (round, epsilon) in [(17, 1.5), (18, 0.25)] {
                ledger
                    .charge(
                        "patients",
                        limit,
                        &Charge {
                            release: format!("round {round} abcd"),
                            round_id: round,
                            mechanism: "binomial (Dwork et al. 2006)".into(),
                            epsilon,
                            delta: 1e-6,
                        },
                    )
                    .await
                    .expect("charged");
            }
            ledger.close().await;
        });

    let out = audit(&["--table", "patients", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ledger_exists"], true);
    assert_eq!(json["tables"][0]["table"], "patients");
    assert_eq!(json["tables"][0]["spent_epsilon"], 1.75);
    assert_eq!(json["tables"][0]["spent_delta"], 2e-6);
    assert_eq!(json["tables"][0]["releases"], 2);
    assert_eq!(json["tables"][0]["budget"]["epsilon"], 5.0);
    assert_eq!(json["releases"][1]["round_id"], 18);
    assert_eq!(json["releases"][1]["epsilon"], 0.25);

    let out = audit(&["--table", "patients"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("patients")
            && l.contains("1.75 of 5")
            && l.contains("2e-6 of 1e-5")),
        "{stdout}"
    );
    assert!(
        stdout.contains("round 17  binomial (Dwork et al. 2006)  ε = 1.5  δ = 1e-6"),
        "{stdout}"
    );

    let out = audit(&["--table", "visits"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no table \"visits\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A helper keeps no budget: its config shows the releases in its audit
    // log, once it has one (the demo's federation: otlp_nodes.rs).
    let out = sealroom()
        .args(["audit", "budget", "--config"])
        .arg(dir.path().join("helper-0.toml"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("helper helper-0 has no store yet at")
            && err.contains("its audit log begins when the node first runs"),
        "{err}"
    );
    assert!(
        !dir.path().join("data/helper-0/sealroom.db").exists(),
        "the view must not create a store"
    );

    let out = sealroom()
        .args(["audit", "budget", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--table", "--json", "privacy_budget", "ledger"] {
        assert!(help.contains(word), "{help}");
    }
}
