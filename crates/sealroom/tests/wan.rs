//! A real network, not just loopback (issue #17): a federation from
//! `sealroom init`, every node its own `sealroom node` process in its own
//! Linux network namespace, and the namespaces joined by veth pairs to a
//! bridge that lives in a namespace of its own. Nothing of this test touches
//! the host's network namespace: every namespace, veth, bridge, nftables
//! table and qdisc lives in the namespaces the test creates and is gone when
//! they are deleted (Drop guards, also on panic).
//!
//! Layout (`T` is a tag with this process's id):
//!
//! ```text
//!  T-coord (coordinator, the admin)  T-h0 T-h1 T-h2 (one helper each)
//!  T-ca (client-0, client-1)        T-cb (client-2, client-3)
//!        each with eth0 10.77.0.x/24 ── veth ── v-ROLE ── br0 in T-sw
//! ```
//!
//! Names and certificates: `sealroom init --host sealroom-wan.test` issues
//! certificates for that DNS name and makes every node listen on 0.0.0.0;
//! `ip netns exec` gives each namespace its own `/etc/hosts`
//! (`/etc/netns/NS/hosts`, removed afterwards) in which the name is
//! 127.0.0.1. There, in every namespace, a noxious (Toxiproxy) TCP proxy per
//! remote endpoint forwards to the real address of that node over the veths
//! and adds the latency (half the RTT each way). The TLS sessions run end to
//! end through the proxies. Packet loss is real: an nftables rule drops a
//! share of every namespace's outgoing packets on eth0 (`numgen random`).
//! Bandwidth limits are `tbf` qdiscs on the client groups' veths (both
//! directions). A partition is `ip link set v-ROLE down` on the bridge side,
//! and healing is `up` again. This machine kind's kernel has no `netem`.
//!
//! Every round must complete with the exact sum of its included clients (at
//! least `min_clients` of them) or abort with the signed reason the fault
//! allows; after a partition heals, a round includes every client again;
//! `sealroom audit verify --federation` passes on every node's store and
//! `sealroom audit cross-check` finds the logs in agreement.
//!
//! Needs root, iproute2 (`ip`, `tc`) and nftables (`nft`): without them the
//! test fails with a message saying so (`.ci/run` installs nftables). Both
//! tests are `#[ignore]`d by a plain `cargo test` (like the PostgreSQL
//! tests, they need what the README's test command does not assume). The
//! short version (50 ms RTT, 1% loss, a bandwidth limit and the partitions)
//! runs in `.ci/run`:
//!
//! ```text
//! cargo test -p sealroom --test wan -- --ignored wan_latency
//! ```
//!
//! The full one measures every condition:
//!
//! ```text
//! SEALROOM_WAN_FULL=1 cargo test --release -p sealroom --test wan -- --include-ignored --nocapture --test-threads=1
//! ```

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop};
use noxious::toxic::{StreamDirection, Toxic, ToxicKind};
use rustix::process::{Pid, Signal, kill_process};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use sealroom_core::QuantSpec;

mod common;
use common::{RoundOutcome, sealroom, set_windows};

/// The host name of every endpoint; 127.0.0.1 in every namespace.
const HOST: &str = "sealroom-wan.test";
/// Ports inside the namespaces (nothing else listens there).
const BASE: u16 = 7400;
const HELPERS: usize = 3;
const CLIENTS: usize = 4;
/// Larger than half the clients: a partition of one group (2 clients) leaves
/// too few.
const MIN_CLIENTS: usize = 3;
/// The client groups, one namespace each.
const GROUPS: [(&str, [usize; 2]); 2] = [("ca", [0, 1]), ("cb", [2, 3])];
const UPLOAD_WINDOW_MS: u64 = 4_000;
const AGGREGATION_WINDOW_MS: u64 = 4_000;
const SUBNET: &str = "10.77.0";

fn full() -> bool {
    std::env::var_os("SEALROOM_WAN_FULL").is_some_and(|v| v == "1")
}

/// Runs a command to success, or panics with what it printed.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// `CMD ARGS` inside namespace `ns`.
fn in_ns(ns: &str, program: &str, args: &[&str]) -> String {
    run(Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args))
}

/// Fails (never skips) unless the test can build its network.
fn require_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "tests/wan.rs builds network namespaces and must run as root (CI does); \
         it does not skip: run it as root"
    );
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("tc", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "tests/wan.rs needs `{tool}` (Debian package {package}; .ci/run installs it): \
             apt-get install {package}"
        );
    }
}

/// The network namespaces of one test, deleted when dropped (with
/// everything in them: veths, the bridge, nftables tables, qdiscs), and
/// their `/etc/netns/NS` directories.
struct Net {
    tag: String,
    namespaces: Vec<String>,
    etc: Vec<PathBuf>,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.tag)
    }

    /// Deletes namespaces (and their /etc/netns entries) that an earlier run
    /// of this test left behind when it was killed: only ours (`srw-PID-`),
    /// only of processes that no longer exist.
    fn remove_stale() {
        let list = ip(&["netns", "list"]);
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("srw-") else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            // Node processes that run killed test left in it.
            let pids = Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
        }
    }

    /// The namespaces, the bridge, the veths and addresses.
    fn build(tag: String, roles: &[(&str, String)]) -> Net {
        Net::remove_stale();
        let mut net = Net {
            tag,
            namespaces: Vec::new(),
            etc: Vec::new(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.namespaces.push(sw.clone());
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (role, addr) in roles {
            let ns = net.ns(role);
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let etc = Path::new("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).expect("/etc/netns/NS");
            net.etc.push(etc.clone());
            std::fs::write(
                etc.join("hosts"),
                format!("127.0.0.1 localhost\n127.0.0.1 {HOST}\n"),
            )
            .expect("hosts file");
            let peer = format!("v-{role}");
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns",
                &sw,
            ]);
            ip(&["-n", &sw, "link", "set", &peer, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &peer, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// Takes `role`'s link to the bridge down (`up == false`) or up.
    fn link(&self, role: &str, up: bool) {
        ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("v-{role}"),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        for etc in &self.etc {
            let _ = std::fs::remove_dir_all(etc);
        }
        // Only if empty: another run may be using it.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// Runs `f` on a thread moved into namespace `ns` (sockets it creates stay
/// there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("namespace file");
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .expect("setns into the test namespace");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Waits (up to 30 s) until something listens on 127.0.0.1:`port` in `ns`.
fn wait_for_port(ns: &str, port: u16) {
    let ns_name = ns.to_string();
    let ok = in_netns(ns, move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(ok, "nothing listens on {port} in {ns_name}");
}

/// The fault proxies of one namespace: a thread in that namespace running a
/// current-thread runtime with one noxious proxy per route. Stopped (the
/// runtime and every connection through it dropped) when dropped.
struct ProxyThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyThread {
    /// Listens on 127.0.0.1:PORT in `ns` for each `(PORT, upstream)` and
    /// forwards with `rtt_ms` of added latency (half each way).
    fn start(ns: &str, routes: Vec<(u16, String)>, rtt_ms: u64) -> ProxyThread {
        let path = format!("/run/netns/{ns}");
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let setup = || -> Result<tokio::runtime::Runtime, String> {
                let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|e| format!("setns {path}: {e}"))?;
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            };
            let rt = match setup() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                // Kept alive while the proxies run.
                let mut keep = Vec::new();
                for (port, upstream) in routes {
                    let config = ProxyConfig {
                        name: format!("to-{port}"),
                        listen: format!("127.0.0.1:{port}"),
                        upstream,
                        enabled: true,
                        rand_seed: None,
                    };
                    let toxics = if rtt_ms == 0 {
                        Toxics::empty()
                    } else {
                        let latency = |name: &str, ms: u64, direction| Toxic {
                            kind: ToxicKind::Latency {
                                latency: ms,
                                jitter: 0,
                            },
                            name: name.to_string(),
                            toxicity: 1.0,
                            direction,
                        };
                        Toxics {
                            upstream: vec![latency("up", rtt_ms / 2, StreamDirection::Upstream)],
                            downstream: vec![latency(
                                "down",
                                rtt_ms - rtt_ms / 2,
                                StreamDirection::Downstream,
                            )],
                        }
                    };
                    let (listener, info) = match ProxyRunner::initialize_proxy::<
                        noxious::socket::TcpListener,
                    >(config, toxics)
                    .await
                    {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("proxy on {port}: {e}")));
                            return;
                        }
                    };
                    let (events, receiver) = bmrng::channel(1);
                    let (stop, stopper) = Stop::new();
                    let (close, closer) = Close::new();
                    tokio::spawn(ProxyRunner::run_proxy(
                        listener, info, receiver, stop, closer,
                    ));
                    keep.push((events, stopper, close));
                }
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.await;
                drop(keep);
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fault proxies in {ns}: {e}"),
            Err(e) => panic!("fault proxies in {ns} did not start: {e}"),
        }
        ProxyThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One `sealroom node` process inside a namespace (`ip netns exec` execs
/// it, so the child is the node); killed when dropped.
struct NsNode {
    name: String,
    ns: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NsNode {
    fn spawn(dir: &Path, name: &str, ns: &str) -> NsNode {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("node log");
        let config = dir.join(format!("{name}.toml"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_sealroom"), "node"])
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("node starts");
        NsNode {
            name: name.to_string(),
            ns: ns.to_string(),
            config,
            log,
            child: Some(child),
        }
    }

    /// SIGTERM and a wait for the orderly shutdown (SIGKILL after 20 s).
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            common::stop_child(child);
        }
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The conditions of one federation's network.
#[derive(Clone, Copy, Debug)]
struct Conditions {
    name: &'static str,
    /// Added round-trip time on every path between namespaces.
    rtt_ms: u64,
    /// Outgoing packets dropped on every namespace's link, per mille.
    loss_permille: u32,
    /// Rate limit of each client group's link, each direction (kbit/s).
    client_kbit: Option<u32>,
    /// Threshold mode's t (2-of-3, releasing unverified on exactly t).
    threshold: Option<usize>,
}

/// One round's outcome.
#[derive(Debug)]
/// A round's outcome and the wall time from starting it to the answer.
struct Outcome {
    round: RoundOutcome,
    wall_ms: u128,
}

impl std::ops::Deref for Outcome {
    type Target = RoundOutcome;
    fn deref(&self) -> &RoundOutcome {
        &self.round
    }
}

impl Outcome {
    fn duration_ms(&self) -> u64 {
        self.json["duration_ms"].as_u64().unwrap_or(0)
    }
}

/// A federation over the namespaces. Fields drop in order: nodes, proxies,
/// network, files.
struct Wan {
    nodes: Vec<NsNode>,
    /// Held for their Drop: the fault proxies stop after the nodes.
    _proxies: Vec<ProxyThread>,
    net: Net,
    dir: tempfile::TempDir,
    spec: QuantSpec,
    cond: Conditions,
    last_round: u64,
    /// Every outcome seen: round id, status, abort reason, included clients.
    outcomes: Vec<(u64, String, String, Vec<u64>)>,
}

fn helper_role(i: usize) -> String {
    format!("h{i}")
}

impl Wan {
    fn start(cond: Conditions, tag: &str) -> Wan {
        require_tools();
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut init = sealroom();
        init.args(["init", "--helpers", &HELPERS.to_string()])
            .args(["--clients", &CLIENTS.to_string()])
            .args(["--min-clients", &MIN_CLIENTS.to_string()])
            .args(["--host", HOST, "--base-port", &BASE.to_string()]);
        if let Some(t) = cond.threshold {
            init.args(["--threshold", &t.to_string()])
                .arg("--allow-unverified-threshold-release");
        }
        run(init.arg(dir.path()));
        let spec = set_windows(dir.path(), UPLOAD_WINDOW_MS, AGGREGATION_WINDOW_MS);
        let text =
            std::fs::read_to_string(dir.path().join("federation.toml")).expect("federation.toml");
        assert!(text.contains(&format!("min_clients = {MIN_CLIENTS}")));

        // Addresses: the coordinator .10, helper i .20+i, client groups .30+.
        let mut roles: Vec<(&str, String)> = Vec::new();
        let helper_roles: Vec<String> = (0..HELPERS).map(helper_role).collect();
        roles.push(("coord", format!("{SUBNET}.10")));
        for (i, role) in helper_roles.iter().enumerate() {
            roles.push((role.as_str(), format!("{SUBNET}.{}", 20 + i)));
        }
        for (g, (role, _)) in GROUPS.iter().enumerate() {
            roles.push((role, format!("{SUBNET}.{}", 30 + g)));
        }
        let tag = format!("srw-{}-{tag}", std::process::id());
        let net = Net::build(tag, &roles);

        // Servers: the coordinator on BASE, helper i on BASE+1+i.
        let servers: Vec<(u16, String, &str)> =
            std::iter::once((BASE, roles[0].1.clone(), "coord"))
                .chain((0..HELPERS).map(|i| {
                    (
                        BASE + 1 + u16::try_from(i).expect("small"),
                        roles[1 + i].1.clone(),
                        roles[1 + i].0,
                    )
                }))
                .collect();
        let mut proxies = Vec::new();
        for (role, _) in &roles {
            let routes: Vec<(u16, String)> = servers
                .iter()
                .filter(|(_, _, r)| r != role)
                .map(|(port, addr, _)| (*port, format!("{addr}:{port}")))
                .collect();
            proxies.push(ProxyThread::start(&net.ns(role), routes, cond.rtt_ms));
            if cond.loss_permille > 0 {
                let rules = format!(
                    "table inet sealroom_wan {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    oifname \"eth0\" numgen random mod 1000 < {} drop\n  }}\n}}\n",
                    cond.loss_permille
                );
                let file = dir.path().join(format!("loss-{role}.nft"));
                std::fs::write(&file, rules).expect("nft rules");
                in_ns(
                    &net.ns(role),
                    "nft",
                    &["-f", file.to_str().expect("utf-8 path")],
                );
            }
        }
        if let Some(kbit) = cond.client_kbit {
            let rate = format!("{kbit}kbit");
            let tbf = |dev: &str| {
                [
                    "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", "64kb",
                    "latency", "400ms",
                ]
                .iter()
                .map(|s| (*s).to_string())
                .collect::<Vec<String>>()
            };
            for (role, _) in GROUPS {
                let up = tbf("eth0");
                let up: Vec<&str> = up.iter().map(String::as_str).collect();
                in_ns(&net.ns(role), "tc", &up);
                let peer = format!("v-{role}");
                let down = tbf(&peer);
                let down: Vec<&str> = down.iter().map(String::as_str).collect();
                in_ns(&net.ns("sw"), "tc", &down);
            }
        }

        let mut wan = Wan {
            nodes: Vec::new(),
            _proxies: proxies,
            net,
            dir,
            spec,
            cond,
            last_round: 0,
            outcomes: Vec::new(),
        };
        wan.nodes.push(NsNode::spawn(
            wan.dir.path(),
            "coordinator",
            &wan.net.ns("coord"),
        ));
        for (i, role) in helper_roles.iter().enumerate() {
            let node = NsNode::spawn(wan.dir.path(), &format!("helper-{i}"), &wan.net.ns(role));
            wan.nodes.push(node);
        }
        wait_for_port(&wan.net.ns("coord"), BASE);
        for (i, role) in helper_roles.iter().enumerate() {
            wait_for_port(
                &wan.net.ns(role),
                BASE + 1 + u16::try_from(i).expect("small"),
            );
        }
        for (role, clients) in GROUPS {
            for c in clients {
                let node = NsNode::spawn(wan.dir.path(), &format!("client-{c}"), &wan.net.ns(role));
                wan.nodes.push(node);
            }
        }
        // Clients join the coordinator's watch stream; a round started
        // before they do goes on without them.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let outcome = wan.round(8);
            wan.check(&outcome, 8, &["not_enough_clients"]);
            if outcome.included().len() == CLIENTS {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no round with every client: {}\n{}",
                cond.name,
                outcome.text,
                wan.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "wan[{}]: federation up in {} ms",
            cond.name,
            started.elapsed().as_millis()
        );
        wan
    }

    /// `sealroom round start` of a synthetic task of `dim` values, run by
    /// the admin in the coordinator's namespace (no proxy on that path).
    fn round_command(&self, dim: usize) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.net.ns("coord"),
            env!("CARGO_BIN_EXE_sealroom"),
        ])
        .args(["round", "start", "--task", "synthetic", "--json", "--dim"])
        .arg(dim.to_string())
        .arg("--config")
        .arg(self.dir.path().join("admin.toml"));
        cmd
    }

    fn round(&self, dim: usize) -> Outcome {
        let started = Instant::now();
        let out = self.round_command(dim).output().expect("round start runs");
        Outcome::parse(&out.stdout, &out.stderr, started.elapsed().as_millis())
    }

    /// Starts a round in the background; `finish` waits for it.
    fn round_spawn(&self, dim: usize) -> (Child, Instant) {
        let child = self
            .round_command(dim)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("round start runs");
        (child, Instant::now())
    }

    fn finish((child, started): (Child, Instant)) -> Outcome {
        let out = child.wait_with_output().expect("round start ends");
        Outcome::parse(&out.stdout, &out.stderr, started.elapsed().as_millis())
    }

    /// The outcome is one the protocol allows: completed with at least
    /// `min_clients` clients and exactly their plaintext sum, or aborted with
    /// one of `aborts` and a signed record. Round ids only grow.
    fn check(&mut self, outcome: &Outcome, dim: usize, aborts: &[&str]) {
        let round = outcome.round_id();
        assert!(
            round > self.last_round,
            "{}: round id {round} after {}: {}",
            self.cond.name,
            self.last_round,
            outcome.text
        );
        self.last_round = round;
        self.outcomes.push((
            round,
            outcome.status().to_string(),
            outcome.reason().to_string(),
            outcome.included(),
        ));
        match outcome.status() {
            "completed" => {
                let included = outcome.included();
                assert!(
                    included.len() >= MIN_CLIENTS,
                    "{}: round {round} released with {} < min_clients {MIN_CLIENTS}: {}",
                    self.cond.name,
                    included.len(),
                    outcome.text
                );
                assert!(
                    included.iter().all(|&c| c < CLIENTS as u64),
                    "{}",
                    outcome.text
                );
                assert!(
                    common::is_plaintext_sum(&self.spec, &outcome.json, dim),
                    "{}: round {round}: not the sum of clients {included:?}",
                    self.cond.name
                );
            }
            "aborted" => assert!(
                aborts.contains(&outcome.reason()),
                "{}: round {round} aborted with {:?}, allowed {aborts:?}: {}\n{}",
                self.cond.name,
                outcome.reason(),
                outcome.text,
                self.logs()
            ),
            _ => panic!(
                "{}: round start failed: {}\n{}",
                self.cond.name,
                outcome.text,
                self.logs()
            ),
        }
    }

    /// Runs rounds (at most 12, within 180 s) until one includes every
    /// client; each must be correct. Returns how many it took.
    fn until_whole(&mut self, dim: usize, aborts: &[&str]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(180);
        for n in 1..=12 {
            let outcome = self.round(dim);
            eprintln!(
                "wan[{}]:   healing round {}: {} {} included {:?} ({} ms)",
                self.cond.name,
                outcome.round_id(),
                outcome.status(),
                outcome.reason(),
                outcome.included(),
                outcome.duration_ms()
            );
            self.check(&outcome, dim, aborts);
            if outcome.status() == "completed" && outcome.included().len() == CLIENTS {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the federation did not heal in 180 s\n{}",
                self.cond.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{}: no round with every client in 12 rounds after healing\n{}",
            self.cond.name,
            self.logs()
        );
    }

    /// `rounds` rounds of `dim` values: each checked; the coordinator's
    /// durations (ms) of those that completed with every client, and how
    /// many did not include every client.
    fn measure(&mut self, rounds: usize, dim: usize) -> (Vec<u64>, usize) {
        let mut durations = Vec::new();
        let mut partial = 0;
        for _ in 0..rounds {
            let outcome = self.round(dim);
            self.check(&outcome, dim, &[]);
            if outcome.included().len() == CLIENTS {
                durations.push(outcome.duration_ms());
            } else {
                partial += 1;
            }
        }
        (durations, partial)
    }

    /// Partitions: a client group cut off before a round (too few clients
    /// left: the round must abort), a client group cut mid-round, and a
    /// helper cut mid-round; each healed, and the federation whole again.
    fn partitions(&mut self, dim: usize) {
        let name = self.cond.name;
        // A group down before the round: 2 of 4 clients < min_clients 3.
        self.net.link("cb", false);
        let outcome = self.round(dim);
        eprintln!(
            "wan[{name}]: client group cb cut before the round: {} {} ({} ms)",
            outcome.status(),
            outcome.reason(),
            outcome.duration_ms()
        );
        self.check(&outcome, dim, &["not_enough_clients"]);
        assert_eq!(
            (outcome.status(), outcome.reason()),
            ("aborted", "not_enough_clients"),
            "{name}: {}",
            outcome.text
        );
        self.net.link("cb", true);
        let n = self.until_whole(dim, &["not_enough_clients"]);
        eprintln!("wan[{name}]: healed after {n} round(s)");

        // A group cut while the round runs (the descriptor is on its way).
        let round = self.round_spawn(dim);
        std::thread::sleep(Duration::from_millis(self.cond.rtt_ms));
        self.net.link("cb", false);
        let outcome = Wan::finish(round);
        self.net.link("cb", true);
        eprintln!(
            "wan[{name}]: client group cb cut mid-round: {} {} included {:?} ({} ms)",
            outcome.status(),
            outcome.reason(),
            outcome.included(),
            outcome.duration_ms()
        );
        self.check(&outcome, dim, &["not_enough_clients"]);
        let n = self.until_whole(dim, &["not_enough_clients"]);
        eprintln!("wan[{name}]: healed after {n} round(s)");

        // A helper cut while the round runs, back after it ended.
        let helper_aborts: &[&str] = if self.cond.threshold.is_some() {
            &["helper_missing", "unverifiable"]
        } else {
            &["helper_missing"]
        };
        let round = self.round_spawn(dim);
        std::thread::sleep(Duration::from_millis(self.cond.rtt_ms * 2));
        self.net.link("h2", false);
        let outcome = Wan::finish(round);
        self.net.link("h2", true);
        eprintln!(
            "wan[{name}]: helper-2 cut mid-round: {} {} included {:?} ({} ms)",
            outcome.status(),
            outcome.reason(),
            outcome.included(),
            outcome.duration_ms()
        );
        self.check(&outcome, dim, helper_aborts);
        let n = self.until_whole(dim, helper_aborts);
        eprintln!("wan[{name}]: healed after {n} round(s)");
    }

    /// Stops every node, then `sealroom audit verify --federation` on the
    /// coordinator's and each helper's store and `audit cross-check` of all.
    fn verify_audit_logs(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let federation = self.dir.path().join("federation.toml");
        let logged: Vec<&NsNode> = self
            .nodes
            .iter()
            .filter(|n| !n.name.starts_with("client-"))
            .collect();
        for node in &logged {
            let out = sealroom()
                .args(["audit", "verify", "--config"])
                .arg(&node.config)
                .arg("--federation")
                .arg(&federation)
                .output()
                .expect("audit verify runs");
            assert!(
                out.status.success(),
                "{}: audit verify failed on {} (in {}): {}{}",
                self.cond.name,
                node.name,
                node.ns,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cross = sealroom();
        cross.args(["audit", "cross-check"]);
        for node in &logged {
            cross.arg("--config").arg(&node.config);
        }
        let out = cross
            .arg("--federation")
            .arg(&federation)
            .output()
            .expect("audit cross-check runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("the logs agree"),
            "{}: audit cross-check failed: {stdout}{}",
            self.cond.name,
            String::from_utf8_lossy(&out.stderr)
        );
        self.check_signed_outcomes();
    }

    /// Every outcome the admin was told is in the coordinator's signed log
    /// (verified above): a result with the same clients or an abort with
    /// the same reason; and no result in the log, seen or not, names fewer
    /// than `min_clients` clients.
    fn check_signed_outcomes(&self) {
        let export = self.dir.path().join("coordinator-audit.jsonl");
        let out = sealroom()
            .args(["audit", "export", "--config"])
            .arg(self.dir.path().join("coordinator.toml"))
            .arg("--output")
            .arg(&export)
            .output()
            .expect("audit export runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&export).expect("export");
        let mut finals: std::collections::BTreeMap<u64, Vec<serde_json::Value>> =
            std::collections::BTreeMap::new();
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let kind = entry["kind"].as_str().unwrap_or_default();
            if kind != "result" && kind != "abort" {
                continue;
            }
            let round = entry["round_id"]
                .as_u64()
                .or_else(|| entry["round_id"].as_str().and_then(|r| r.parse().ok()))
                .expect("a round's entry has its round id");
            if kind == "result" {
                let included = entry["detail"]["included_clients"]
                    .as_array()
                    .map_or(0, Vec::len);
                assert!(
                    included >= MIN_CLIENTS,
                    "{}: round {round} released with {included} clients: {entry}",
                    self.cond.name
                );
            }
            finals.entry(round).or_default().push(entry);
        }
        for (round, status, reason, included) in &self.outcomes {
            let entries = finals.get(round).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(
                entries.len(),
                1,
                "{}: round {round} ({status} {reason}) has {} final entries in the coordinator's log: {entries:?}",
                self.cond.name,
                entries.len()
            );
            let entry = &entries[0];
            assert!(
                !entry["signed_by"].as_str().unwrap_or_default().is_empty(),
                "{entry}"
            );
            match status.as_str() {
                "completed" => {
                    assert_eq!(entry["kind"], "result", "{}: {entry}", self.cond.name);
                    let logged: Vec<u64> = entry["detail"]["included_clients"]
                        .as_array()
                        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
                        .unwrap_or_default();
                    assert_eq!(&logged, included, "{}: round {round}", self.cond.name);
                }
                _ => {
                    assert_eq!(entry["kind"], "abort", "{}: {entry}", self.cond.name);
                    assert_eq!(
                        entry["detail"]["reason"].as_str(),
                        Some(reason.as_str()),
                        "{}: round {round}: {entry}",
                        self.cond.name
                    );
                }
            }
        }
        eprintln!(
            "wan[{}]: {} outcomes match the coordinator's signed log",
            self.cond.name,
            self.outcomes.len()
        );
    }

    fn logs(&self) -> String {
        common::log_tails(
            self.nodes
                .iter()
                .map(|n| (n.name.as_str(), n.log.as_path())),
            20,
        )
    }
}

impl Outcome {
    fn parse(stdout: &[u8], stderr: &[u8], wall_ms: u128) -> Outcome {
        Outcome {
            round: RoundOutcome::parse(stdout, stderr),
            wall_ms,
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Rounds under `cond`: `rounds` of each dimension, measured; then the
/// partitions (if asked); then the audit logs.
fn scenario(cond: Conditions, tag: &str, dims: &[usize], rounds: usize, partitions: bool) {
    let mut wan = Wan::start(cond, tag);
    for &dim in dims {
        let (mut durations, partial) = wan.measure(rounds, dim);
        durations.sort_unstable();
        eprintln!(
            "wan[{}]: dim {dim}: {} rounds with every client, p50 {} ms, p95 {} ms, max {} ms; {partial} round(s) without every client",
            cond.name,
            durations.len(),
            percentile(&durations, 0.5),
            percentile(&durations, 0.95),
            durations.last().copied().unwrap_or(0),
        );
    }
    if partitions {
        wan.partitions(dims[0]);
    }
    // Nothing lost: after everything, a round includes every client again.
    let n = wan.until_whole(dims[0], &[]);
    eprintln!(
        "wan[{}]: final round with every client after {n}",
        cond.name
    );
    let wall = wan.round(8).wall_ms;
    eprintln!("wan[{}]: one more round, wall {wall} ms", cond.name);
    wan.verify_audit_logs();
}

/// The short version (and, with SEALROOM_WAN_FULL=1, more rounds): 50 ms
/// RTT and 1% loss on every path, each client group's link limited to
/// 20 Mbit/s, and the partitions. Ignored by a plain `cargo test` (it needs
/// root and system tools the README's test command does not assume, as the
/// PostgreSQL tests need a server); `.ci/run` runs it.
#[test]
#[ignore = "needs root, ip, tc and nft: cargo test -p sealroom --test wan -- --ignored wan_latency (.ci/run does)"]
fn wan_latency_loss_bandwidth_partitions() {
    let cond = Conditions {
        name: "rtt50-loss1%-20mbit",
        rtt_ms: 50,
        loss_permille: 10,
        client_kbit: Some(20_000),
        threshold: None,
    };
    let rounds = if full() { 20 } else { 3 };
    scenario(cond, "a", &[1_000], rounds, true);
}

/// The full version: every RTT with and without loss, threshold mode, a
/// tight bandwidth limit and large vectors (about five minutes in a release
/// build); run it with `--include-ignored` (see the module's doc).
#[test]
#[ignore = "the full WAN matrix takes minutes: SEALROOM_WAN_FULL=1 cargo test --release -p sealroom --test wan -- --include-ignored --nocapture --test-threads=1"]
fn wan_full_matrix() {
    let matrix = [
        ("rtt0", 0, 0, None, None),
        ("rtt20", 20, 0, None, None),
        ("rtt50", 50, 0, None, None),
        ("rtt100", 100, 0, None, None),
        ("rtt20-loss1%", 20, 10, None, None),
        ("rtt100-loss1%", 100, 10, None, None),
        ("rtt50-loss1%-2of3", 50, 10, None, Some(2)),
        ("rtt50-10mbit", 50, 0, Some(10_000), None),
    ];
    for (i, (name, rtt_ms, loss_permille, client_kbit, threshold)) in matrix.into_iter().enumerate()
    {
        let cond = Conditions {
            name,
            rtt_ms,
            loss_permille,
            client_kbit,
            threshold,
        };
        let partitions = threshold.is_some() || name == "rtt100-loss1%";
        scenario(cond, &format!("f{i}"), &[1_000, 100_000], 10, partitions);
    }
}
