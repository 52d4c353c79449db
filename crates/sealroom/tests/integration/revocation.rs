//! Revocation without a restart (issue #13): a client removed from
//! `federation.toml` is cut off by SIGHUP on every server node — its open
//! connections close, its new handshakes are refused, and the coordinator
//! leaves it out of the next round — while a reload that would change a
//! helper is refused as a whole and the federation runs on unchanged.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::common;
use common::{round_json, three_by_three};

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

/// The sum of a metric's samples whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn round(admin: &std::path::Path) -> serde_json::Value {
    round_json(admin, 8)
}

#[test]
fn a_client_removed_from_the_federation_is_cut_off_by_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, base, _) = three_by_three(dir.path());
    let admin = dir.path().join("admin.toml");

    // client-2 leaves the federation: its block goes from federation.toml,
    // and every server node is told to read it again.
    let federation = dir.path().join("federation.toml");
    let text = std::fs::read_to_string(&federation).expect("federation.toml");
    let start = text
        .find("[[clients]]\nname = \"client-2\"")
        .expect("client-2's block");
    let end = text[start + 1..]
        .find("[[")
        .map_or(text.len(), |i| start + 1 + i);
    let without = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(&federation, &without).expect("write federation.toml");
    let refused_before = metric(
        &http_get(base + 100, "/metrics"),
        "sealroom_connections_refused_total{reason=\"unregistered_certificate\"}",
    );
    for node in &nodes.0[..4] {
        node.signal(Signal::HUP);
    }

    // Its watch stream to the coordinator is closed; it reconnects, and the
    // handshake is refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refused = metric(
            &http_get(base + 100, "/metrics"),
            "sealroom_connections_refused_total{reason=\"unregistered_certificate\"}",
        );
        if refused > refused_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client-2 was not refused after the reload; coordinator log:\n{}",
            std::fs::read_to_string(&nodes.0[0].log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(&nodes.0[0].log).unwrap_or_default();
    assert!(
        log.contains("federation.toml reloaded") && log.contains("client-2"),
        "{log}"
    );
    // The next round lists the two remaining clients only.
    let outcome = round(&admin);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(
        outcome["included_clients"].as_array().map(Vec::len),
        Some(2),
        "{outcome}"
    );

    // A helper's endpoint cannot change live: the reload is refused, the
    // reason logged, and rounds go on with the parties loaded before.
    let moved = without.replace(
        &format!("127.0.0.1:{}", base + 2),
        &format!("127.0.0.1:{}", base + 99),
    );
    assert_ne!(moved, without);
    std::fs::write(&federation, &moved).expect("write federation.toml");
    nodes.0[0].signal(Signal::HUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&nodes.0[0].log).unwrap_or_default();
        if log.contains("reload refused") {
            assert!(log.contains("`helpers` changed"), "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refused reload in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = round(&admin);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(
        outcome["included_clients"].as_array().map(Vec::len),
        Some(2),
        "{outcome}"
    );
}
