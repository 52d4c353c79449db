//! What an operator reads in the logs of real nodes (issue #13, finding 6),
//! captured at TRACE: a round aborted for a missing helper is logged with
//! its own round id, and a junk `Publish` sent to a helper with the
//! coordinator's certificate is refused with a typed gRPC error before
//! anything of it — its caller-chosen label above all — reaches a log.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealroom_node::grpc::pb::helper_service_client::HelperServiceClient;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs};
use sealroom_node::tls;
use sealroom_protocol::pb;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).to_string()
    }
}

/// A label no sealroom code writes: if any of it shows in a log, the log
/// took it from the request.
const JUNK_LABEL: &str = "sealroom.v1.RoundResult\nINFO forged=1 \u{1b}[31mjunk-label-7f3a";
const JUNK_MARKER: &str = "junk-label-7f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_are_logged_with_their_round_and_junk_publishes_are_not_logged() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber in this test binary");

    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        threshold: None,
        min_clients: Some(3),
        upload_window_ms: 1500,
        aggregation_window_ms: 1500,
        ..InitOptions::default()
    };
    let inputs = synthetic_inputs(3);
    let (mut fed, _events) =
        LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
            .await
            .expect("federation starts");

    // A completed round first, so that the aborted one is not round 0 or 1
    // by accident.
    let first = tokio::time::timeout(Duration::from_secs(60), fed.run_round(SYNTHETIC, 8))
        .await
        .expect("in time")
        .expect("round runs");
    assert_eq!(first.status, "completed", "{}", first.detail);
    fed.stop_helper(2).await;
    let aborted = tokio::time::timeout(Duration::from_secs(60), fed.run_round(SYNTHETIC, 8))
        .await
        .expect("in time")
        .expect("round runs");
    assert_eq!(aborted.status, "aborted", "{}", aborted.detail);
    assert!(aborted.round_id > first.round_id);

    // Junk published to a running helper by the coordinator's identity
    // (the only role allowed to call Publish).
    let helper = fed.configs["helper-0"]
        .party
        .endpoint
        .clone()
        .expect("serves");
    let channel = tls::channel_unpinned(&fed.configs["coordinator"].tls, &helper).expect("channel");
    let mut client = HelperServiceClient::new(channel);
    for label in [JUNK_LABEL, "sealroom.v1.AbortRecord"] {
        let junk = pb::SignedEnvelope {
            label: label.to_string(),
            key_id: vec![9; 32],
            signature: vec![7; 64],
            body: format!("{JUNK_MARKER} body").into_bytes(),
        };
        let refused = client
            .publish(junk)
            .await
            .expect_err("a junk Publish is refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(
            !refused.message().contains('\n') && !refused.message().contains('\u{1b}'),
            "the refusal carries no raw control character: {:?}",
            refused.message()
        );
    }
    fed.shutdown().await;

    let logs = capture.text();
    assert!(logs.lines().count() > 50, "logging was captured:\n{logs}");
    assert!(
        !logs.contains(JUNK_MARKER),
        "a caller-chosen label or body reached the log:\n{}",
        logs.lines()
            .filter(|l| l.contains(JUNK_MARKER))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!logs.contains("forged=1"), "a forged log line was injected");
    assert!(
        !logs.contains("round outcome published round=0"),
        "no junk outcome was believed"
    );
    let abort_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("round aborted"))
        .collect();
    assert!(!abort_lines.is_empty(), "the abort is logged:\n{logs}");
    let expected = format!("round={}", aborted.round_id);
    for line in &abort_lines {
        assert!(
            line.contains(&expected) && !line.contains("round=0 "),
            "an abort line without its round ({expected}): {line}"
        );
    }
    // Every line about the aborted round's outcome names it.
    for line in logs
        .lines()
        .filter(|l| l.contains("kind=\"abort\"") || l.contains("kind=abort"))
    {
        assert!(line.contains(&expected), "{line}");
    }
}
