//! Traces from real nodes: `sealroom init`, a coordinator, two helpers and
//! two clients as processes with `--otlp-endpoint` pointing at a fake OTLP
//! collector on loopback, one round, then SIGTERM. The batch delay is set
//! far beyond the test, so the spans arrive through the flush at shutdown.
//! And `sealroom demo --otlp-endpoint`, whose nodes share one service.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use common::{free_base_port, sealroom, wait_for_port};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

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

/// A fake OTLP trace collector: records every export request.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("collector lock poisoned")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves a [`Collector`] on an ephemeral loopback port for as long as
/// `runtime` lives.
fn start_collector(runtime: &tokio::runtime::Runtime) -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binding a loopback port");
    let addr = listener.local_addr().expect("local address");
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (collector, addr)
}

impl Collector {
    /// (service.name, span name, role, round) of every span received.
    fn spans(&self) -> Vec<(String, String, Option<Value>, Option<Value>)> {
        let requests = self.0.lock().expect("collector lock poisoned").clone();
        let mut spans = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .cloned();
            let Some(Value::StringValue(service)) = service else {
                panic!("a resource without service.name: {resource_spans:?}");
            };
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                spans.push((
                    service.clone(),
                    span.name.clone(),
                    attribute(&span.attributes, "role").cloned(),
                    attribute(&span.attributes, "round").cloned(),
                ));
            }
        }
        spans
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[test]
fn nodes_export_their_protocol_steps_on_shutdown() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (collector, collector_addr) = start_collector(&runtime);

    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port(110);
    let out = sealroom()
        .args(["init", "--helpers", "2", "--clients", "2", "--base-port"])
        .arg(base.to_string())
        .arg(dir.path())
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let endpoint = format!("http://{collector_addr}");
    let spawn = |name: &str| {
        sealroom()
            .args(["node", "--otlp-endpoint", &endpoint, "--config"])
            .arg(dir.path().join(format!("{name}.toml")))
            // Nothing leaves on the schedule: only the flush at shutdown.
            .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts")
    };
    let mut nodes = Nodes(Vec::new());
    for name in ["helper-0", "helper-1", "coordinator"] {
        nodes.0.push(spawn(name));
    }
    for port in base..base + 3 {
        wait_for_port(port);
    }
    for name in ["client-0", "client-1"] {
        nodes.0.push(spawn(name));
    }
    // Clients hear of rounds only once they watch: retry until both take part.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let out = sealroom()
            .args(["round", "start", "--task", "synthetic", "--dim", "10"])
            .args(["--json", "--config"])
            .arg(dir.path().join("admin.toml"))
            .output()
            .expect("round start runs");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if json["status"] == "completed"
            && json["included_clients"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no completed round with both clients: {json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for node in &nodes.0 {
        let killed = Command::new("kill")
            .args(["-TERM", &node.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &mut nodes.0 {
        let status = loop {
            if let Some(status) = node.try_wait().expect("waiting for a node") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "a node did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "a node exited with {status}");
    }

    // Every protocol step's span names its role, which is the node's.
    let mut seen = BTreeSet::new();
    for (service, name, role, round) in collector.spans() {
        let role_of_service = service
            .strip_prefix("sealroom-")
            .unwrap_or_else(|| panic!("service {service}"));
        let Some(role) = role else { continue };
        assert_eq!(
            role,
            Value::StringValue(role_of_service.to_string()),
            "{service} exported {name}"
        );
        assert!(
            name.starts_with(&format!("{role_of_service}.")),
            "{service} exported {name}"
        );
        if let Some(round) = round {
            assert!(
                matches!(round, Value::IntValue(_)),
                "{name}: round {round:?}"
            );
            seen.insert(role_of_service.to_string());
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["client".into(), "coordinator".into(), "helper".into()]),
        "spans with a round id from every role"
    );
}

#[test]
fn the_demo_exports_its_steps_and_its_audit_log_records_its_dp_releases() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (collector, collector_addr) = start_collector(&runtime);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sealroom()
        .args(["demo", "--rounds", "1", "--otlp-endpoint"])
        .arg(format!("http://{collector_addr}"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("demo runs");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut roles = BTreeSet::new();
    for (service, name, role, round) in collector.spans() {
        assert_eq!(service, "sealroom-demo", "{name}");
        if let (Some(Value::StringValue(role)), Some(Value::IntValue(_))) = (role, round) {
            assert!(name.starts_with(&format!("{role}.")), "{name} of a {role}");
            roles.insert(role);
        }
    }
    assert_eq!(
        roles,
        BTreeSet::from(["client".into(), "coordinator".into(), "helper".into()])
    );

    // The same run (the suite's one demo) leaves its federation on disk: the
    // coordinator's signed audit log is the public record of the demo's two
    // DP queries over the diabetes table, each released, with the (ε, δ)
    // every client that took part charged to its ledger.
    let coordinator = dir.path().join("federation/coordinator.toml");
    let budget = |extra: &[&str]| {
        let out = sealroom()
            .args(["audit", "budget", "--json", "--config"])
            .arg(&coordinator)
            .args(extra)
            .output()
            .expect("audit budget runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let all = budget(&[]);
    assert_eq!(all["role"], "coordinator", "{all}");
    assert_eq!(all["tables"].as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all["tables"][0]["table"], "diabetes", "{all}");
    assert_eq!(all["tables"][0]["releases"], 2, "{all}");
    let diabetes = budget(&["--table", "diabetes"]);
    let releases = diabetes["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 2, "{diabetes}");
    let epsilon = releases[0]["epsilon"].as_f64().expect("ε");
    assert!(epsilon > 0.0, "{diabetes}");
    assert_eq!(all["tables"][0]["epsilon"].as_f64(), Some(2.0 * epsilon));
    for r in releases {
        assert_eq!(r["outcome"], "released", "{diabetes}");
        assert_eq!(r["epsilon"], releases[0]["epsilon"], "{diabetes}");
    }
    // A log that does not verify is no record: refused, not summed.
    common::tamper(&dir.path().join("federation/data/coordinator/sealroom.db"));
    let out = sealroom()
        .args(["audit", "budget", "--config"])
        .arg(&coordinator)
        .output()
        .expect("audit budget runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the audit log of coordinator does not verify")
            && err.contains("sealroom audit verify"),
        "{err}"
    );
}
