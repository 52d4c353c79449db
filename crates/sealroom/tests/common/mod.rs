//! Helpers shared by the process-level tests: the binary, free loopback
//! ports, waiting for a listener.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The `sealroom` binary under test.
pub fn sealroom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sealroom"))
}

/// A block of `count` free loopback ports for node processes to bind:
/// below the kernel's ephemeral range and never overlapping another block
/// this test binary handed out (`sealroom_node::local::free_port_block`).
pub fn free_base_port(count: u16) -> u16 {
    sealroom_node::local::free_port_block(count).expect("a block of free loopback ports")
}

/// Stops a node process: SIGCONT (in case it is frozen), SIGTERM, and a wait
/// for the orderly shutdown (SIGKILL after 20 s).
pub fn stop_child(mut child: Child) {
    if let Some(pid) = Pid::from_raw(i32::try_from(child.id()).expect("pid fits")) {
        let _ = kill_process(pid, Signal::CONT);
        let _ = kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

/// Sets the upload and aggregation windows in `DIR/federation.toml` (as
/// `sealroom init` wrote it, with the default 5000 ms) and returns the
/// federation's quantization.
pub fn set_windows(dir: &Path, upload_ms: u64, aggregation_ms: u64) -> sealroom_core::QuantSpec {
    let federation = dir.join("federation.toml");
    let text = std::fs::read_to_string(&federation).expect("federation.toml");
    let text = text
        .replace(
            "upload_window_ms = 5000",
            &format!("upload_window_ms = {upload_ms}"),
        )
        .replace(
            "aggregation_window_ms = 5000",
            &format!("aggregation_window_ms = {aggregation_ms}"),
        );
    assert!(text.contains(&format!("upload_window_ms = {upload_ms}")));
    assert!(text.contains(&format!("aggregation_window_ms = {aggregation_ms}")));
    std::fs::write(&federation, &text).expect("write federation.toml");
    let parsed: toml::Table = toml::from_str(&text).expect("federation.toml parses");
    let q = &parsed["quantization"];
    sealroom_core::QuantSpec::new(
        i8::try_from(q["scale_bits"].as_integer().expect("scale_bits")).expect("fits"),
        q["clip"].as_float().expect("clip"),
        u8::try_from(q["bits"].as_integer().expect("bits")).expect("fits"),
    )
    .expect("valid quantization")
}

/// A `sealroom round start --json` outcome: the parsed JSON (null when the
/// command printed none) and everything it printed, for failure messages.
#[derive(Debug)]
pub struct RoundOutcome {
    pub json: serde_json::Value,
    pub text: String,
}

impl RoundOutcome {
    pub fn parse(stdout: &[u8], stderr: &[u8]) -> RoundOutcome {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(stderr)
        );
        let json = serde_json::from_str(String::from_utf8_lossy(stdout).trim()).unwrap_or_default();
        RoundOutcome { json, text }
    }
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }
    pub fn reason(&self) -> &str {
        self.json["reason"].as_str().unwrap_or("")
    }
    pub fn round_id(&self) -> u64 {
        self.json["round_id"].as_u64().unwrap_or(0)
    }
    pub fn included(&self) -> Vec<u64> {
        included_clients(&self.json)
    }
}

/// The last `lines` lines of each node's log (name, path), for a failure
/// message.
pub fn log_tails<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a Path)>, lines: usize) -> String {
    let mut all = String::new();
    for (name, log) in nodes {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        all.push_str(&format!("--- {name} (last lines)\n"));
        for line in tail.into_iter().rev() {
            all.push_str(line);
            all.push('\n');
        }
    }
    all
}

/// The clients a `sealroom round start --json` outcome included.
pub fn included_clients(outcome: &serde_json::Value) -> Vec<u64> {
    outcome["included_clients"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

/// Whether a completed outcome's `values` are `dim` values, exactly the sum
/// of the included clients' quantized synthetic inputs of that round.
pub fn is_plaintext_sum(
    spec: &sealroom_core::QuantSpec,
    outcome: &serde_json::Value,
    dim: usize,
) -> bool {
    let round = outcome["round_id"].as_u64().expect("round id");
    let values: Vec<f64> = outcome["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let mut sum = vec![0i64; dim];
    for c in included_clients(outcome) {
        let v =
            sealroom_node::tasks::synthetic_vector(&format!("client-{c}"), round, dim, spec.clip());
        for (s, q) in sum
            .iter_mut()
            .zip(spec.quantize(&v).expect("finite").values.iter())
        {
            *s += q;
        }
    }
    values
        == sum
            .into_iter()
            .map(|q| spec.dequantize(q))
            .collect::<Vec<f64>>()
}

/// Waits (up to 20 s) until something listens on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One node process; its stderr goes to `DIR/NAME.log`.
pub struct Node {
    pub name: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    /// Starts `sealroom node --config DIR/NAME.toml`.
    pub fn spawn(dir: &Path, name: &str) -> Node {
        let mut node = Node {
            name: name.to_string(),
            config: dir.join(format!("{name}.toml")),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        node.start();
        node
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = sealroom()
            .arg("node")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("node starts");
        self.child = Some(child);
    }

    pub fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits")).expect("pid");
        kill_process(pid, signal).expect("signal delivered");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and a wait for the orderly shutdown (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// Node processes, killed when dropped so that a failing test leaves
/// nothing behind.
pub struct Nodes(pub Vec<Node>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.0 {
            node.kill();
        }
    }
}

impl Nodes {
    /// The node called `name`.
    pub fn named(&self, name: &str) -> &Node {
        self.0.iter().find(|n| n.name == name).expect("node")
    }

    /// Waits (up to 30 s) until `name`'s log holds `needle` at least
    /// `times` times.
    pub fn wait_log(&self, name: &str, needle: &str, times: usize) {
        let node = self.named(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            if log.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never logged {needle:?} {times} time(s):\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `sealroom round start --json` of a synthetic task of `dim` values as the
/// admin of `admin`; the outcome, or `{"error": stderr}`.
pub fn round_json(admin: &Path, dim: u64) -> serde_json::Value {
    let out = sealroom()
        .args(["round", "start", "--task", "synthetic", "--json", "--dim"])
        .arg(dim.to_string())
        .arg("--config")
        .arg(admin)
        .output()
        .expect("round start runs");
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(
        |_| serde_json::json!({"error": String::from_utf8_lossy(&out.stderr).to_string()}),
    )
}

/// `sealroom init` of 3 helpers and 3 clients in `dir` on a free port
/// block, every node started as a process, and the first
/// round that includes all 3 clients run. Returns the nodes, the base port
/// and that round's id.
pub fn three_by_three(dir: &Path) -> (Nodes, u16, u64) {
    let base = free_base_port(110);
    let out = sealroom()
        .args(["init", "--helpers", "3", "--clients", "3", "--base-port"])
        .arg(base.to_string())
        .arg(dir)
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut nodes = Nodes(Vec::new());
    for name in ["coordinator", "helper-0", "helper-1", "helper-2"] {
        nodes.0.push(Node::spawn(dir, name));
    }
    for port in base..=base + 3 {
        wait_for_port(port);
    }
    for name in ["client-0", "client-1", "client-2"] {
        nodes.0.push(Node::spawn(dir, name));
    }
    let admin = dir.join("admin.toml");
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let outcome = round_json(&admin, 8);
        if outcome["included_clients"].as_array().map(Vec::len) == Some(3) {
            break outcome["round_id"].as_u64().expect("round id");
        }
        assert!(
            Instant::now() < deadline,
            "no round with 3 clients: {outcome}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    (nodes, base, first)
}

/// What an attacker (or a botched restore) with the database's rights does:
/// drops the append-only trigger and edits the helper's key entry.
pub fn tamper(db: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("opens");
        for statement in [
            "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET at_ms = at_ms + 1 WHERE seq = 0",
        ] {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .expect("tampers");
        }
        pool.close().await;
    });
}
