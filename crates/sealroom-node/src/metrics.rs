//! Prometheus metrics (prometheus-client) and the `/metrics` endpoint (axum),
//! served on a port of its own. Labels carry roles, outcomes and reasons —
//! never a share, a seed, an input value or a key.
//!
//! `/metrics` answers in OpenMetrics 1.0 or the Prometheus text format
//! 0.0.4, as the request's `Accept` header asks ([`exposition`]).
//!
//! Every metric is documented in docs/operations.md.

pub mod exposition;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::shutdown::Shutdown;
use exposition::{ConversionError, Format};

type Labels = Vec<(String, String)>;

/// Sets a gauge family by engine material kind (triples, bits, randoms,
/// masks, in that order).
fn set_by_kind(family: &Family<Labels, Gauge>, counts: [u64; 4]) {
    for (kind, n) in ["triples", "bits", "randoms", "masks"]
        .into_iter()
        .zip(counts)
    {
        family
            .get_or_create(&labels(&[("kind", kind)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

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
    reconstructions: Family<Labels, Counter>,
    reconstruction_ratio: Gauge<f64, AtomicU64>,
    verification_failures: Family<Labels, Counter>,
    round_shares: Family<Labels, Histogram, fn() -> Histogram>,
    round_bytes: Family<Labels, Histogram, fn() -> Histogram>,
    audit_entries: Counter,
    checkpoint_time: Gauge<f64, AtomicU64>,
    certificate_expiry: Gauge,
    steps: Family<Labels, Counter>,
    step_duration: Family<Labels, Histogram, fn() -> Histogram>,
    refusals: Family<Labels, Counter>,
    engine_backlog: Family<Labels, Gauge>,
    engine_material: Family<Labels, Counter>,
    engine_sessions: Family<Labels, Counter>,
    engine_round_need: Family<Labels, Gauge>,
    engine_rounds: Family<Labels, Counter>,
    share_memory: Gauge,
    commit_steps: Histogram,
}

fn count_histogram() -> Histogram {
    // 1 .. ~10^6
    Histogram::new(exponential_buckets(1.0, 4.0, 11))
}

fn bytes_histogram() -> Histogram {
    // 1 KiB .. ~4 GiB
    Histogram::new(exponential_buckets(1024.0, 4.0, 12))
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
            reconstructions: Family::default(),
            reconstruction_ratio: Gauge::default(),
            verification_failures: Family::default(),
            round_shares: Family::new_with_constructor(count_histogram as fn() -> Histogram),
            round_bytes: Family::new_with_constructor(bytes_histogram as fn() -> Histogram),
            audit_entries: Counter::default(),
            checkpoint_time: Gauge::default(),
            certificate_expiry: Gauge::default(),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            refusals: Family::default(),
            engine_backlog: Family::default(),
            engine_material: Family::default(),
            engine_sessions: Family::default(),
            engine_round_need: Family::default(),
            engine_rounds: Family::default(),
            share_memory: Gauge::default(),
            commit_steps: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
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
        registry.register(
            "reconstructions",
            "Rounds that signed an inclusion set, by result: success (released) or failure (aborted after it)",
            m.reconstructions.clone(),
        );
        registry.register(
            "reconstruction_success_ratio",
            "Share of reconstructions since start that released a result (1 before the first)",
            m.reconstruction_ratio.clone(),
        );
        m.reconstruction_ratio.set(1.0);
        registry.register(
            "share_verification_failures",
            "Shares, receipts, reports or aggregate shares that failed verification, by role and reason",
            m.verification_failures.clone(),
        );
        registry.register(
            "round_shares",
            "Shares one node handled for one round (helper: uploads accepted; coordinator: aggregate shares received)",
            m.round_shares.clone(),
        );
        registry.register(
            "round_bytes",
            "Protocol payload bytes one node moved for one round, by role",
            m.round_bytes.clone(),
        );
        registry.register(
            "audit_entries",
            "Entries appended to this node's audit log (checkpoints included)",
            m.audit_entries.clone(),
        );
        registry.register(
            "audit_checkpoint_timestamp_seconds",
            "Unix time of the last signed audit checkpoint (0 before the first)",
            m.checkpoint_time.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of this node's TLS certificate, Unix seconds",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "engine_backlog",
            "MPC engine preprocessing material in this helper's pool, unconsumed, by kind (triples, bits, randoms, masks) for the current key epoch",
            m.engine_backlog.clone(),
        );
        registry.register(
            "engine_material",
            "MPC engine preprocessing items produced into or consumed from this helper's pool, by kind and event",
            m.engine_material.clone(),
        );
        registry.register(
            "engine_round_need",
            "MPC engine preprocessing material the last engine round's program needed, by kind (triples, bits, randoms, masks): the pool keeps two such rounds ahead",
            m.engine_round_need.clone(),
        );
        registry.register(
            "engine_rounds",
            "MPC engine rounds this helper ran, by where their preprocessing material came from (pool: attested batches produced ahead; inline: preprocessed inside the round's window)",
            m.engine_rounds.clone(),
        );
        registry.register(
            "engine_sessions",
            "MPC engine sessions this helper finished, by protocol (keys, preprocessing, online), outcome and abort reason",
            m.engine_sessions.clone(),
        );
        registry.register(
            "helper_share_memory_bytes",
            "Bytes of shares and kept answers a helper holds in memory over all its rounds: a round's shares until it answers, then its answer until it closes",
            m.share_memory.clone(),
        );
        registry.register(
            "store_commit_steps",
            "State-machine steps made durable per store transaction (a group commit: a helper's uploads that wait while a commit runs share the next one)",
            m.commit_steps.clone(),
        );
        registry.register(
            "steps",
            "Inputs a node's state machine consumed, by role, input kind and result (accepted or the refusal code)",
            m.steps.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time to consume one input and make the step durable, by role and input kind",
            m.step_duration.clone(),
        );
        registry.register(
            "refusals",
            "Inputs a node's state machine refused, by role and refusal code",
            m.refusals.clone(),
        );
        *m.registry.lock().expect("metrics registry lock") = registry;
        m
    }

    /// One input consumed (`result`: "accepted" or a refusal code).
    pub fn step(&self, role: &str, input: &str, result: &str, duration: Duration) {
        self.steps
            .get_or_create(&labels(&[
                ("role", role),
                ("input", input),
                ("result", result),
            ]))
            .inc();
        self.step_duration
            .get_or_create(&labels(&[("role", role), ("input", input)]))
            .observe(duration.as_secs_f64());
    }

    /// One input refused.
    pub fn refused(&self, role: &str, code: &str) {
        self.refusals
            .get_or_create(&labels(&[("role", role), ("code", code)]))
            .inc();
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

    /// A round that signed an inclusion set released (`true`) or aborted.
    pub fn reconstruction(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reconstructions
            .get_or_create(&labels(&[("result", result)]))
            .inc();
        let ok = self
            .reconstructions
            .get_or_create(&labels(&[("result", "success")]))
            .get();
        let failed = self
            .reconstructions
            .get_or_create(&labels(&[("result", "failure")]))
            .get();
        self.reconstruction_ratio
            .set(ok as f64 / (ok + failed).max(1) as f64);
    }

    /// One store transaction made `steps` steps durable.
    pub fn commit_steps(&self, steps: usize) {
        self.commit_steps.observe(steps as f64);
    }

    /// What a helper's state machine holds in memory (shares and answers).
    pub fn share_memory(&self, bytes: usize) {
        self.share_memory
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The unconsumed preprocessing material of the current key epoch.
    pub fn engine_backlog(&self, triples: u64, bits: u64, randoms: u64, masks: u64) {
        set_by_kind(&self.engine_backlog, [triples, bits, randoms, masks]);
    }

    /// What the last engine round's program needed, by kind (the alert
    /// compares the backlog with it).
    pub fn engine_round_need(&self, triples: u64, bits: u64, randoms: u64, masks: u64) {
        set_by_kind(&self.engine_round_need, [triples, bits, randoms, masks]);
    }

    /// An engine round ran on material from the pool (`source="pool"`) or
    /// preprocessed it inline (`source="inline"`).
    pub fn engine_round_material(&self, source: &str) {
        self.engine_rounds
            .get_or_create(&labels(&[("source", source)]))
            .inc();
    }

    /// Preprocessing items produced (`event="produced"`) or consumed.
    pub fn engine_material(&self, event: &str, triples: u64, bits: u64, randoms: u64, masks: u64) {
        for (kind, n) in [
            ("triples", triples),
            ("bits", bits),
            ("randoms", randoms),
            ("masks", masks),
        ] {
            self.engine_material
                .get_or_create(&labels(&[("kind", kind), ("event", event)]))
                .inc_by(n);
        }
    }

    /// An engine session finished: `outcome` is `completed`, `aborted`
    /// (with the failed check as `reason`) or `clients_excluded`.
    pub fn engine_session(&self, protocol: &str, outcome: &str, reason: &str) {
        self.engine_sessions
            .get_or_create(&labels(&[
                ("protocol", protocol),
                ("outcome", outcome),
                ("reason", reason),
            ]))
            .inc();
    }

    /// Something a peer sent failed verification.
    pub fn verification_failure(&self, role: &str, reason: &str) {
        self.verification_failures
            .get_or_create(&labels(&[("role", role), ("reason", reason)]))
            .inc();
    }

    /// Shares and payload bytes this node handled for one round.
    pub fn round_volume(&self, role: &str, shares: Option<usize>, bytes: usize) {
        if let Some(n) = shares {
            self.round_shares
                .get_or_create(&labels(&[("role", role)]))
                .observe(n as f64);
        }
        self.round_bytes
            .get_or_create(&labels(&[("role", role)]))
            .observe(bytes as f64);
    }

    /// Audit entries appended, and the time of a checkpoint among them.
    pub fn audit_appended(&self, entries: u64, checkpoint_at_ms: Option<u64>) {
        self.audit_entries.inc_by(entries);
        if let Some(ms) = checkpoint_at_ms {
            self.checkpoint_time.set(ms as f64 / 1000.0);
        }
    }

    /// The node certificate's notAfter (Unix seconds).
    pub fn certificate_expiry(&self, unix_seconds: i64) {
        self.certificate_expiry.set(unix_seconds);
    }

    /// The OpenMetrics 1.0 text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }

    /// The exposition of every metric in `format`.
    pub fn render_as(&self, format: Format) -> Result<String, ConversionError> {
        let openmetrics = self.render();
        match format {
            Format::OpenMetrics => Ok(openmetrics),
            Format::PrometheusText => exposition::openmetrics_to_text(&openmetrics),
        }
    }

    /// Serves `GET /metrics` on `addr` until shutdown, in the format the
    /// request's `Accept` header asks for ([`Format::negotiate`]). Returns
    /// the bound address.
    pub async fn serve(self, addr: SocketAddr, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_on(listener, shutdown)
    }

    /// As [`Metrics::serve`], on a listener already bound.
    pub fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: Shutdown,
    ) -> std::io::Result<SocketAddr> {
        use axum::http::{HeaderMap, StatusCode, header};
        let bound = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                let m = self.clone();
                async move {
                    let accept = headers
                        .get_all(header::ACCEPT)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect::<Vec<_>>()
                        .join(",");
                    let format = Format::negotiate(Some(accept.as_str()).filter(|a| !a.is_empty()));
                    match m.render_as(format) {
                        Ok(body) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, format.content_type())],
                            body,
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "the metrics could not be encoded");
                            (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                                format!("the metrics could not be encoded: {e}\n"),
                            )
                        }
                    }
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
