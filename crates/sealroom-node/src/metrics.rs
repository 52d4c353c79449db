//! Prometheus metrics (prometheus-client) and the `/metrics` endpoint (axum),
//! served on a port of its own. Labels carry roles, outcomes and reasons —
//! never a share, a seed, an input value or a key.
//!
//! Every metric is documented in docs/operations.md.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::shutdown::Shutdown;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// A node's metrics. Cheap to clone (shared registry).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    rounds: Family<Labels, Counter>,
    round_duration: Family<Labels, Histogram, fn() -> Histogram>,
    uploads: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    clients_dropped: Counter,
    answer_latency: Histogram,
    connections_refused: Family<Labels, Counter>,
    requests_refused: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every sealroom metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sealroom");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            rounds: Family::default(),
            round_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            uploads: Family::default(),
            bytes: Family::default(),
            clients_dropped: Counter::default(),
            answer_latency: latency_histogram(),
            connections_refused: Family::default(),
            requests_refused: Family::default(),
        };
        registry.register(
            "rounds",
            "Rounds finished, by role, outcome and abort reason",
            m.rounds.clone(),
        );
        registry.register(
            "round_duration_seconds",
            "Round duration from descriptor to outcome, by role and outcome",
            m.round_duration.clone(),
        );
        registry.register(
            "uploads",
            "Share uploads seen by helpers, by result (accepted/rejected) and reason",
            m.uploads.clone(),
        );
        registry.register(
            "bytes",
            "Protocol payload bytes, by direction (in/out) and message kind",
            m.bytes.clone(),
        );
        registry.register(
            "clients_dropped",
            "Invited clients left out of an inclusion set (did not upload to every needed helper in time)",
            m.clients_dropped.clone(),
        );
        registry.register(
            "helper_answer_latency_seconds",
            "Time a helper takes from receiving an inclusion set to its answer",
            m.answer_latency.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused before any request, by reason (e.g. tls_handshake)",
            m.connections_refused.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused by identity checks, by rpc and reason (unknown_peer, wrong_role)",
            m.requests_refused.clone(),
        );
        *m.registry.lock().expect("metrics registry lock") = registry;
        m
    }

    /// A round finished.
    pub fn round_finished(&self, role: &str, outcome: &str, reason: &str, duration: Duration) {
        self.rounds
            .get_or_create(&labels(&[
                ("role", role),
                ("outcome", outcome),
                ("reason", reason),
            ]))
            .inc();
        self.round_duration
            .get_or_create(&labels(&[("role", role), ("outcome", outcome)]))
            .observe(duration.as_secs_f64());
    }

    /// An upload was accepted or rejected.
    pub fn upload(&self, accepted: bool, reason: &str) {
        let result = if accepted { "accepted" } else { "rejected" };
        self.uploads
            .get_or_create(&labels(&[("result", result), ("reason", reason)]))
            .inc();
    }

    /// Payload bytes moved.
    pub fn bytes(&self, direction: &str, kind: &str, n: usize) {
        self.bytes
            .get_or_create(&labels(&[("direction", direction), ("kind", kind)]))
            .inc_by(n as u64);
    }

    /// Clients left out of a round.
    pub fn clients_dropped(&self, n: usize) {
        self.clients_dropped.inc_by(n as u64);
    }

    /// A helper answered an inclusion set.
    pub fn answer_latency(&self, d: Duration) {
        self.answer_latency.observe(d.as_secs_f64());
    }

    /// A connection was refused before any request.
    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// A request was refused by an identity or role check.
    pub fn request_refused(&self, rpc: &str, reason: &str) {
        self.requests_refused
            .get_or_create(&labels(&[("rpc", rpc), ("reason", reason)]))
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }

    /// Serves `GET /metrics` on `addr` until shutdown. Returns the bound address.
    pub async fn serve(self, addr: SocketAddr, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await;
        });
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_metrics() {
        let m = Metrics::new();
        m.round_finished("coordinator", "completed", "", Duration::from_millis(20));
        m.upload(false, "duplicate_upload");
        m.connection_refused("tls_handshake");
        let text = m.render();
        assert!(
            text.contains(
                "sealroom_rounds_total{role=\"coordinator\",outcome=\"completed\",reason=\"\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sealroom_uploads_total{result=\"rejected\",reason=\"duplicate_upload\"} 1"
            )
        );
        assert!(text.contains("sealroom_connections_refused_total{reason=\"tls_handshake\"} 1"));
        assert!(text.contains("sealroom_round_duration_seconds_bucket"));
    }
}
