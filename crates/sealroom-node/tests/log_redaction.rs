//! Runs rounds over real nodes with every crate logging at TRACE (the
//! equivalent of `RUST_LOG=trace`), captures all of it, and checks that no
//! seed, share value or input value appears in any form a log line could
//! carry it (hex, byte lists, decimal).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sealroom_node::config::Role;
use sealroom_node::init::InitOptions;
use sealroom_node::local::{LocalFederation, open_context};
use sealroom_node::metrics::Metrics;
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs};
use sealroom_protocol::pb;
use sealroom_protocol::pb::archived_step::Input;

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_carry_no_share_seed_or_input() {
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
        upload_window_ms: 2000,
        aggregation_window_ms: 3000,
        ..InitOptions::default()
    };
    let inputs = synthetic_inputs(3);
    let (fed, _events) =
        LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
            .await
            .expect("federation starts");
    let mut rounds = Vec::new();
    for len in [16, 40] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), fed.run_round(SYNTHETIC, len))
            .await
            .expect("in time")
            .expect("round runs");
        assert_eq!(outcome.status, "completed", "{}", outcome.detail);
        rounds.push(outcome.round_id);
    }
    let configs = fed.configs.clone();
    fed.shutdown().await;
    let logs = String::from_utf8_lossy(&capture.0.lock().expect("capture lock")).to_string();
    assert!(
        logs.contains("TRACE") && logs.lines().count() > 200,
        "TRACE logging was captured ({} lines)",
        logs.lines().count()
    );

    // What must not appear, read back from each node's own archive.
    let mut needles: Vec<String> = Vec::new();
    for config in configs.values().filter(|c| c.role != Role::Admin) {
        if let Some(key) = &config.signing_key {
            needles.push(hex(&key.expose_secret_bytes()[..12]));
        }
        let ctx = open_context(config, Metrics::new()).await.expect("opens");
        for &round in &rounds {
            for (_, step) in ctx.store.archived_steps(round).await.expect("reads") {
                match step.input {
                    Some(Input::Participate(p)) => {
                        needles.push(hex(&p.seed[..12]));
                        needles.push(format!("{:?}", &p.seed[..6]).trim_end_matches(']').into());
                        for v in p.input.chunks_exact(8) {
                            let v = f64::from_le_bytes(v.try_into().expect("8 bytes"));
                            if v.abs() > 1e-3 {
                                needles.push(format!("{v}"));
                            }
                        }
                    }
                    Some(Input::Inbound(m)) if m.kind == pb::MessageKind::Upload as i32 => {
                        assert!(m.stored && m.bytes.is_empty(), "a share is archived once");
                        let bytes = ctx
                            .store
                            .helper_upload(round, m.client_index)
                            .await
                            .expect("reads")
                            .expect("stored");
                        let upload = pb::Upload::decode(bytes.expose()).expect("decodes");
                        match upload.share {
                            Some(pb::upload::Share::Seed(s)) => needles.push(hex(&s[..12])),
                            Some(pb::upload::Share::Vector(v)) => {
                                needles.push(hex(&v[..12]));
                                for e in v.chunks_exact(4) {
                                    let e = u32::from_le_bytes(e.try_into().expect("4 bytes"));
                                    if e >= 100_000_000 {
                                        needles.push(e.to_string());
                                    }
                                }
                            }
                            None => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        ctx.store.close().await;
    }
    assert!(needles.len() > 50, "secrets to look for: {}", needles.len());
    for needle in &needles {
        if let Some(line) = logs.lines().find(|l| l.contains(needle.as_str())) {
            panic!("a secret ({} chars) reached the logs: {line}", needle.len());
        }
    }
}
