//! Issue #13, finding 2: a node whose audit log does not verify used to
//! start silently and append to it. Now, as the operator runs it: the node
//! refuses to start and names the first bad entry; with
//! `--accept-broken-audit-chain` it starts and records that decision in the
//! log as a signed override entry; `audit verify` then reports "chain
//! broken at N, override recorded at M" (and still fails); and the node
//! starts again without the flag, as the break is acknowledged.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_base_port, sealroom, wait_for_port};

/// Kills its process when dropped, so a failing test leaves nothing behind.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(config: &Path, extra: &[&str]) -> Command {
    let mut cmd = sealroom();
    cmd.arg("node").arg("--config").arg(config).args(extra);
    cmd
}

/// Runs a helper until it serves on `port` and its audit log at `db` holds
/// `entries` entries, then stops it. Waiting for the entries (not only the
/// port, which another process on a loaded machine may hold for a moment)
/// and checking that this node is still running make the test fail with
/// the node's own words rather than race its startup.
fn serve_once(config: &Path, extra: &[&str], port: u16, db: &Path, entries: usize) {
    let child = node(config, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut node = Node(child);
    wait_for_port(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.0.try_wait().expect("waits") {
            let mut said = String::new();
            if let Some(mut err) = node.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut said);
            }
            panic!("the node exited ({status}) before serving: {said}");
        }
        if db.exists() && read_audit_log(db).is_some_and(|rows| rows.len() >= entries) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node serves but its audit log has fewer than {entries} entries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a node that is expected to exit on its own (within 30 s).
fn run_to_exit(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("waits").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node did not exit: it started on a broken audit log");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn audit_entries(db: &Path) -> Vec<(i64, String)> {
    read_audit_log(db).expect("the audit log reads")
}

/// The audit entries (sequence, kind), if the log can be read yet (the
/// node may still be creating its tables).
fn read_audit_log(db: &Path) -> Option<Vec<(i64, String)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .ok()?;
        let rows = sqlx::query_as("SELECT seq, kind FROM audit_log ORDER BY seq")
            .fetch_all(&pool)
            .await
            .ok();
        pool.close().await;
        rows
    })
}

#[test]
fn a_node_refuses_a_broken_audit_chain_unless_the_operator_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(4);
    let out = sealroom()
        .args(["init", "--helpers", "2", "--clients", "2", "--base-port"])
        .arg(base.to_string())
        .arg(dir.path())
        .output()
        .expect("init runs");
    assert!(out.status.success(), "init failed: {}", text(&out));
    let config = dir.path().join("helper-0.toml");
    let helper_port = base + 1;
    let db = dir.path().join("data/helper-0/sealroom.db");

    // A first start enters the helper's key: entry 0.
    serve_once(&config, &[], helper_port, &db, 1);
    assert_eq!(audit_entries(&db), vec![(0, "key".to_string())]);
    common::tamper(&db);

    // Refused, naming the entry and the way out.
    let refused = run_to_exit(node(&config, &[]));
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("the audit log is broken at entry 0: its contents do not match its hash"),
        "{said}"
    );
    assert!(said.contains("--accept-broken-audit-chain"), "{said}");
    assert_eq!(audit_entries(&db).len(), 1, "nothing was appended");

    // The operator's override: it starts, and the decision is entry 1.
    serve_once(
        &config,
        &["--accept-broken-audit-chain"],
        helper_port,
        &db,
        2,
    );
    assert_eq!(
        audit_entries(&db),
        vec![(0, "key".to_string()), (1, "override".to_string())]
    );
    let verified = sealroom()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .expect("audit verify runs");
    let said = text(&verified);
    assert!(
        !verified.status.success(),
        "a broken chain never verifies: {said}"
    );
    assert!(
        said.contains("chain broken at 0, override recorded at 1"),
        "{said}"
    );
    assert!(said.contains("BROKEN"), "{said}");
    assert!(
        !said.contains("TAMPERED"),
        "the only bad entry is acknowledged: {said}"
    );

    // Acknowledged: the next start needs no flag and appends no override.
    serve_once(&config, &[], helper_port, &db, 2);
    assert_eq!(audit_entries(&db).len(), 2);
}
