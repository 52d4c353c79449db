//! `/metrics` over HTTP, as Prometheus scrapes it: a real coordinator's
//! endpoint and one with every metric recorded, asked for OpenMetrics and
//! for the Prometheus text format 0.0.4. Each answer has the content type it
//! claims and a HELP and a TYPE line for every family it shows; with
//! `promtool` on PATH (required when `SEALROOM_REQUIRE_PROMTOOL=1`, as in CI)
//! the 0.0.4 text passes `promtool check metrics`, the OpenMetrics text shows
//! nothing but the one artefact of promtool's 0.0.4 parser (below), and
//! `deploy/prometheus/alerts.yml` passes `promtool check rules` and
//! `promtool test rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sealroom_node::grpc::pb::StartRoundRequest;
use sealroom_node::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::metrics::Metrics;
use sealroom_node::metrics::exposition::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
use sealroom_node::shutdown;
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs};
use sealroom_node::tls;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What Prometheus 2.x sends when it prefers OpenMetrics.
const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
     application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// What a Prometheus configured for the 0.0.4 format sends.
const ACCEPT_TEXT: &str = "text/plain; version=0.0.4";

/// An HTTP/1.0 GET of `/metrics`: the content type and the body.
async fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects to /metrics");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").as_bytes())
        .await
        .expect("request");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("answers in time")
    .expect("reads");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .expect("a Content-Type header");
    (content_type, body.to_string())
}

/// The family each sample belongs to, and the families' HELP and TYPE.
#[derive(Debug, Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    /// Sample name → family name.
    samples: BTreeMap<String, String>,
}

/// Reads an exposition the way its format defines families: in
/// OpenMetrics a counter `f` is sampled as `f_total`, in 0.0.4 as itself;
/// in both a histogram `f` as `f_bucket`, `f_sum` and `f_count`. Panics
/// (failing the test) on a sample that belongs to no family declared with
/// both HELP and TYPE.
fn families(text: &str, openmetrics: bool) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            e.help.insert(name.to_string(), help.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            e.types.insert(name.to_string(), kind.to_string());
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let name = line.split(['{', ' ']).next().expect("a sample has a name");
            let family = e
                .types
                .iter()
                .find(|(family, kind)| {
                    let suffixes: &[&str] = match (kind.as_str(), openmetrics) {
                        ("counter", true) => &["_total"],
                        ("counter", false) | ("gauge", _) => &[""],
                        ("histogram", _) => &["_bucket", "_sum", "_count"],
                        (other, _) => panic!("unexpected type {other} in {line:?}"),
                    };
                    suffixes
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family.as_str()))
                })
                .map(|(family, _)| family.clone())
                .unwrap_or_else(|| panic!("sample {name} is of no declared family:\n{text}"));
            assert!(
                e.help.get(&family).is_some_and(|h| h.trim().len() > 10),
                "family {family} has no HELP text:\n{text}"
            );
            e.samples.insert(name.to_string(), family);
        }
    }
    for family in e.types.keys() {
        assert!(e.help.contains_key(family), "{family} has TYPE but no HELP");
    }
    for family in e.help.keys() {
        assert!(
            e.types.contains_key(family),
            "{family} has HELP but no TYPE"
        );
    }
    e
}

/// Both formats of the endpoint at `addr`, checked against each other:
/// the same samples, the same HELP text, every family with HELP and TYPE,
/// counters named `_total` in 0.0.4. Returns (OpenMetrics, 0.0.4) texts.
/// The 0.0.4 text is taken between two identical OpenMetrics scrapes, so
/// that both describe the same state of a node that may still be counting.
async fn both_formats(addr: SocketAddr) -> (String, String) {
    let mut attempts = 0;
    let (om, text) = loop {
        let (om_type, om) = scrape(addr, Some(ACCEPT_OPENMETRICS)).await;
        assert_eq!(om_type, OPENMETRICS_CONTENT_TYPE);
        let (text_type, text) = scrape(addr, Some(ACCEPT_TEXT)).await;
        assert_eq!(text_type, PROMETHEUS_TEXT_CONTENT_TYPE);
        let (_, again) = scrape(addr, Some(ACCEPT_OPENMETRICS)).await;
        if om == again {
            break (om, text);
        }
        attempts += 1;
        assert!(
            attempts < 100,
            "the metrics never held still for three scrapes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    // No Accept header at all: the 0.0.4 text.
    let (plain_type, _) = scrape(addr, None).await;
    assert_eq!(plain_type, PROMETHEUS_TEXT_CONTENT_TYPE);

    let om_families = families(&om, true);
    let text_families = families(&text, false);
    assert_eq!(
        om_families.samples.keys().collect::<BTreeSet<_>>(),
        text_families.samples.keys().collect::<BTreeSet<_>>(),
        "both formats show the same samples"
    );
    for (family, kind) in &om_families.types {
        let text_family = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.clone()
        };
        assert_eq!(
            text_families.types.get(&text_family),
            Some(kind),
            "{family} ({kind}) is {text_family} in 0.0.4"
        );
        assert_eq!(
            text_families.help.get(&text_family),
            om_families.help.get(family),
            "{family}: the same HELP text"
        );
    }
    // Sample lines are the same, in the same order.
    let samples = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(samples(&om), samples(&text));
    (om, text)
}

/// `promtool`, found on PATH. Missing: `None`, unless
/// `SEALROOM_REQUIRE_PROMTOOL=1`, which makes it a failure.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("SEALROOM_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "SEALROOM_REQUIRE_PROMTOOL=1 but promtool is not on PATH: install it \
             (Debian's `prometheus` package; .ci/run does)"
        );
        eprintln!(
            "SKIPPED the promtool checks: promtool is not on PATH \
             (set SEALROOM_REQUIRE_PROMTOOL=1 to make that a failure)"
        );
    }
    found
}

/// `promtool check metrics` over `text`: its exit code and what it said.
fn promtool_check_metrics(promtool: &Path, text: &str) -> (i32, String) {
    use std::io::Write as _;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writes to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Both formats through `promtool check metrics`. The 0.0.4 text must be
/// clean. promtool lints only the 0.0.4 format: reading OpenMetrics with
/// that parser, a counter's `f_total` samples look like a family of their
/// own without HELP (its HELP and TYPE name `f`, as OpenMetrics requires).
/// So the OpenMetrics text must show exactly one problem per counter family,
/// `f_total no help text`, and nothing else.
fn lint(promtool: &Path, om: &str, text: &str) {
    let (code, said) = promtool_check_metrics(promtool, text);
    assert!(
        code == 0 && said.trim().is_empty(),
        "promtool check metrics on the 0.0.4 text: exit {code}\n{said}\n--- text:\n{text}"
    );
    let counters_with_samples: BTreeSet<String> = families(om, true)
        .samples
        .iter()
        .filter(|(sample, family)| **sample == format!("{family}_total"))
        .map(|(sample, _)| format!("{sample} no help text"))
        .collect();
    let (code, said) = promtool_check_metrics(promtool, om);
    let problems: BTreeSet<String> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        problems, counters_with_samples,
        "promtool check metrics on the OpenMetrics text (exit {code}): only the \
         counter artefact of its 0.0.4 parser is allowed"
    );
}

/// A coordinator of a real federation after a completed round, a request
/// refused for its role and a refused TLS handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinators_metrics_endpoint_serves_both_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        threshold: None,
        min_clients: Some(3),
        upload_window_ms: 3000,
        aggregation_window_ms: 3000,
        ..InitOptions::default()
    };
    let inputs = synthetic_inputs(3);
    let (fed, _events) =
        LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
            .await
            .expect("federation starts");
    let outcome = tokio::time::timeout(Duration::from_secs(60), fed.run_round(SYNTHETIC, 16))
        .await
        .expect("in time")
        .expect("round runs");
    assert_eq!(outcome.status, "completed", "{}", outcome.detail);

    let coordinator = &fed.configs["coordinator"];
    let endpoint = coordinator.party.endpoint.clone().expect("serves");
    // A client asking for a round: refused for its role.
    let channel = tls::channel_unpinned(&fed.configs["client-0"].tls, &endpoint).expect("channel");
    let refused = CoordinatorServiceClient::new(channel)
        .start_round(StartRoundRequest::default())
        .await
        .expect_err("a client may not start a round");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // A connection that closes without a TLS handshake.
    let listen = coordinator.listen.expect("listens");
    drop(tokio::net::TcpStream::connect(listen).await.expect("tcp"));

    let addr = coordinator.metrics_listen.expect("serves metrics");
    let (om, text) = loop {
        let (om, text) = both_formats(addr).await;
        if text.contains("sealroom_connections_refused_total{reason=\"tls_handshake\"}") {
            break (om, text);
        }
        // The refused handshake is counted by its own task.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for needle in [
        "sealroom_rounds_total{role=\"coordinator\",outcome=\"completed\",reason=\"\"} 1",
        "sealroom_requests_refused_total{rpc=\"StartRound\",reason=\"wrong_role\"} 1",
        "# TYPE sealroom_requests_refused_total counter",
        "# TYPE sealroom_round_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    if let Some(promtool) = promtool() {
        lint(&promtool, &om, &text);
    }
    fed.shutdown().await;
}

/// The value of the unlabelled or labelled sample `name` (its whole name
/// and labels as printed) in an exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

/// A helper of a real federation, after a completed round, holds only its
/// answer in memory, not the round's shares: its share-memory gauge equals
/// the aggregate share it sent and is below the uploads it received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_holds_only_its_answer_after_a_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 3,
        clients: 5,
        threshold: None,
        min_clients: Some(5),
        upload_window_ms: 3000,
        aggregation_window_ms: 3000,
        ..InitOptions::default()
    };
    let (fed, _events) = LocalFederation::start(
        dir.path(),
        options,
        TaskCatalog::with_builtins(),
        synthetic_inputs(5),
    )
    .await
    .expect("federation starts");
    let outcome = tokio::time::timeout(Duration::from_secs(60), fed.run_round(SYNTHETIC, 4096))
        .await
        .expect("in time")
        .expect("round runs");
    assert_eq!(outcome.status, "completed", "{}", outcome.detail);
    // Helper 0 holds the correction vectors of clients 0 and 3. (Only the
    // coordinator of a local federation serves `/metrics`; the helper's
    // registry is read directly.)
    let metrics = &fed.metrics["helper-0"];
    let text = loop {
        let text = metrics.render();
        // The answer is counted once it is streamed back.
        if text.contains("sealroom_bytes_total{direction=\"out\",kind=\"aggregate_share\"}") {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held = sample(&text, "sealroom_helper_share_memory_bytes");
    let answer = sample(
        &text,
        "sealroom_bytes_total{direction=\"out\",kind=\"aggregate_share\"}",
    );
    let uploads = sample(
        &text,
        "sealroom_bytes_total{direction=\"in\",kind=\"upload\"}",
    );
    assert_eq!(held, answer, "only the answer is held:\n{text}");
    assert!(
        held > 4096.0 && held * 1.5 < uploads,
        "the answer ({held} B) is one vector, the uploads ({uploads} B) two and three seeds"
    );
    fed.shutdown().await;
}

/// Every metric recorded at least once, served by [`Metrics::serve`]: each
/// family is shown with HELP and TYPE, in both formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_has_help_and_type_in_both_formats() {
    let m = Metrics::new();
    m.step("helper", "upload", "accepted", Duration::from_millis(3));
    m.refused("helper", "duplicate");
    m.round_finished(
        "coordinator",
        "aborted",
        "not_enough_clients",
        Duration::from_secs(2),
    );
    m.upload(true, "");
    m.bytes("in", "upload", 4096);
    m.clients_dropped(1);
    m.answer_latency(Duration::from_millis(40));
    m.connection_refused("tls_handshake");
    m.request_refused("Upload", "unknown_peer");
    m.reconstruction(true);
    m.verification_failure("helper", "wrong_length");
    m.round_volume("helper", Some(3), 9000);
    m.audit_appended(2, Some(1_700_000_000_000));
    m.certificate_expiry(1_800_000_000);
    m.engine_backlog(10, 4, 0, 2);
    m.engine_material("produced", 10, 4, 0, 2);
    m.engine_session("online", "aborted", "mac_check_failed");
    m.engine_round_need(5, 2, 0, 1);
    m.engine_round_material("pool");
    m.share_memory(4096);
    m.commit_steps(3);
    let (trigger, stop) = shutdown::channel();
    let addr = m
        .clone()
        .serve("127.0.0.1:0".parse().expect("addr"), stop)
        .await
        .expect("serves");
    let (om, text) = both_formats(addr).await;
    // Every family registered in metrics.rs shows (the source's register
    // calls, counted).
    let source = include_str!("../../src/metrics.rs");
    let registered = source.matches("registry.register(").count();
    let shown = families(&text, false).types.len();
    assert_eq!(
        shown, registered,
        "{registered} families registered, {shown} shown:\n{text}"
    );
    if let Some(promtool) = promtool() {
        lint(&promtool, &om, &text);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
        for args in [
            &["check", "rules", "alerts.yml"][..],
            &["test", "rules", "alerts_test.yml"][..],
        ] {
            let out = Command::new(&promtool)
                .args(args)
                .current_dir(&root)
                .output()
                .expect("promtool runs");
            assert!(
                out.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    drop(trigger);
}
