//! Logs and traces of a sealroom process.
//!
//! Logs go to stderr as text or JSON lines, filtered by `RUST_LOG` (default
//! `info`). With `--otlp-endpoint URL` the spans of sealroom's own crates —
//! one per protocol step (`coordinator.start_round`, `helper.upload`,
//! `client.participate`, …), with the round id and role among their fields —
//! are also exported over OTLP/gRPC ([OTLP spec]) to an OpenTelemetry
//! collector. Without it nothing of OpenTelemetry is initialised.
//!
//! Export runs on the SDK's own background thread (the default,
//! thread-based `BatchSpanProcessor`): finished spans go into a bounded queue
//! (dropped, and counted, when it is full) and leave in batches. The tonic
//! channel is built lazily inside the node's tokio runtime, whose worker
//! threads drive its connection, so no `rt-tokio` feature is needed — the
//! SDK's async-runtime batch processor sits behind its
//! `experimental_trace_batch_span_processor_with_async_runtime` feature, and
//! the OTLP exporter's retries fall back to a thread sleep on a bare thread.
//! A collector that is down or slow therefore costs a node a bounded queue and
//! one warning, never a stalled protocol step; every export, and the flush at
//! shutdown, has a deadline.
//!
//! This module never exports a secret, and the spans it exports must not
//! carry one: their fields are round ids, roles, task names and counts —
//! never shares, seeds, keys or inputs (see `docs/privacy-contract.md`).
//!
//! [OTLP spec]: https://opentelemetry.io/docs/specs/otlp/

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tonic::codegen::http::Uri;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The trace options of `sealroom node` and `sealroom demo`.
#[derive(Args, Debug, Clone, Default)]
pub struct OtlpArgs {
    /// Export traces over OTLP/gRPC to this OpenTelemetry collector, e.g.
    /// `http://127.0.0.1:4317`: one span per protocol step, with the round
    /// id and role as attributes. Off by default.
    #[arg(long, value_name = "URL", value_parser = OtlpEndpoint::parse)]
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// The CA certificate (PEM) that signs the collector's certificate; needed
    /// for an `https://` endpoint.
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub otlp_ca: Option<PathBuf>,
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    Text,
    /// JSON lines on stderr.
    Json,
    /// No logs (the demo, which prints its own report).
    Off,
}

/// Who exports the spans: the OpenTelemetry resource of the process.
#[derive(Debug, Clone)]
pub struct ServiceId {
    /// `service.name`, e.g. `sealroom-helper`.
    pub name: String,
    /// `service.instance.id`: the node's name.
    pub instance: String,
}

impl ServiceId {
    /// The service of a node: `sealroom-<role>`, instance `node`.
    pub fn node(role: &str, node: &str) -> Self {
        Self {
            name: format!("sealroom-{role}"),
            instance: node.to_string(),
        }
    }
}

/// A validated OTLP/gRPC collector address: `http://` or `https://`, a host,
/// an optional port, and no path (gRPC names its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    uri: Uri,
}

impl OtlpEndpoint {
    /// Parses `--otlp-endpoint`; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<Self, String> {
        const EXAMPLE: &str = "e.g. http://127.0.0.1:4317";
        let uri: Uri = text.parse().map_err(|e| {
            format!("not a URL ({e}); expected http:// or https:// and a host, {EXAMPLE}")
        })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => {
                return Err(format!(
                    "the scheme must be http:// or https://, not {other}://; {EXAMPLE}"
                ));
            }
            None => return Err(format!("missing http:// or https://; {EXAMPLE}")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("missing the collector's host; {EXAMPLE}"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("credentials in the URL are not supported".into());
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "an OTLP/gRPC endpoint has no path (OTLP over HTTP, as in /v1/traces, is not supported); {EXAMPLE}"
            ));
        }
        Ok(Self { uri })
    }

    /// Whether the collector is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scheme and authority only: `parse` allows no path, query or user.
        let scheme = self.uri.scheme_str().unwrap_or("http");
        match self.uri.authority() {
            Some(authority) => write!(f, "{scheme}://{authority}"),
            None => write!(f, "{}", self.uri),
        }
    }
}

/// How long one connection attempt to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one batch export may take, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the final flush at shutdown may take before the process exits
/// without it.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The telemetry of a running process; [`Telemetry::shutdown`] flushes the
/// traces still queued.
#[derive(Debug)]
#[must_use = "shut telemetry down to flush the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's global subscriber: logs in `log` format and,
    /// with an endpoint in `otlp`, the OTLP trace export. Must run inside the
    /// tokio runtime that lives as long as the process exports (the exporter's
    /// channel runs on it). A global subscriber already installed (by a test)
    /// is kept.
    pub fn init(log: LogFormat, otlp: &OtlpArgs, service: &ServiceId) -> Result<Self> {
        let provider = match &otlp.otlp_endpoint {
            Some(endpoint) => Some(tracer_provider(endpoint, otlp.otlp_ca.as_deref(), service)?),
            None => None,
        };
        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
        if let Some(layer) = log_layer(log) {
            layers.push(layer);
        }
        if let Some(provider) = &provider {
            layers.push(span_layer(provider));
        }
        if !layers.is_empty() {
            let _ = tracing_subscriber::registry().with(layers).try_init();
        }
        if let Some(endpoint) = &otlp.otlp_endpoint {
            tracing::info!(%endpoint, service = %service.name, "exporting traces over OTLP");
        }
        Ok(Self { provider })
    }

    /// Flushes the queued spans and stops the exporter, waiting at most
    /// `timeout`: a collector that is gone costs an error to warn about,
    /// never a hang. Call it before the tokio runtime is dropped (it drives
    /// the exporter's connection), outside async code (it blocks).
    pub fn shutdown(self, timeout: Duration) -> Result<()> {
        let Some(provider) = self.provider else {
            return Ok(());
        };
        // On its own thread, to hold the whole flush to one deadline (the
        // SDK bounds its flush and its shutdown separately) and to learn
        // whether the last batch left (the SDK's shutdown does not say).
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-shutdown".into())
            .spawn(move || {
                let flushed = provider.force_flush();
                let stopped = provider.shutdown_with_timeout(timeout);
                let _ = done.send(flushed.and(stopped));
            })
            .context("starting the trace flush")?;
        match finished.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => bail!("the last traces were not exported: {error}"),
            Err(_) => bail!("the last traces were not exported within {timeout:?}"),
        }
    }
}

/// The fmt layer: `RUST_LOG` (default `info`) decides what is logged.
/// Colours only on a terminal, and never with `NO_COLOR` set
/// ([`use_ansi`]): a log redirected to a file or a pipe stays plain text.
fn log_layer(log: LogFormat) -> Option<Box<dyn Layer<Registry> + Send + Sync>> {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_ansi(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match log {
        LogFormat::Text => Some(fmt.with_filter(filter).boxed()),
        LogFormat::Json => Some(fmt.json().with_filter(filter).boxed()),
        LogFormat::Off => None,
    }
}

/// Whether text logs may carry ANSI colour codes: only when they go to a
/// terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
fn use_ansi(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The layer that turns sealroom's spans (targets `sealroom*`, INFO and
/// above, whatever `RUST_LOG` says) into OpenTelemetry spans of `provider`;
/// the transport's own spans (tonic, h2, hyper) stay out. Span fields become
/// attributes.
pub fn span_layer(provider: &SdkTracerProvider) -> Box<dyn Layer<Registry> + Send + Sync> {
    let tracer = provider.tracer("sealroom");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("sealroom", LevelFilter::INFO))
        .boxed()
}

/// A tracer provider exporting in batches to `endpoint` over OTLP/gRPC, with
/// the resource `service`. Must be called inside a tokio runtime. Nothing is
/// sent until the first batch, so an unreachable collector is not an error
/// here; it shows as a warning when a batch fails.
pub fn tracer_provider(
    endpoint: &OtlpEndpoint,
    ca: Option<&Path>,
    service: &ServiceId,
) -> Result<SdkTracerProvider> {
    let mut channel = Endpoint::from(endpoint.uri.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT);
    match (endpoint.is_https(), ca) {
        (true, Some(ca)) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(host) = endpoint.uri.host() {
                tls = tls.domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            }
            channel = channel
                .tls_config(tls)
                .with_context(|| format!("TLS to the collector at {endpoint}"))?;
        }
        (true, None) => bail!(
            "--otlp-endpoint {endpoint}: an https:// collector needs --otlp-ca FILE (the CA certificate, PEM, that signs its certificate)"
        ),
        (false, Some(_)) => {
            bail!("--otlp-ca is for an https:// collector; {endpoint} is plain http://")
        }
        (false, None) => {}
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(channel.connect_lazy())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("the OTLP exporter for {endpoint}"))?;
    let resource = Resource::builder()
        .with_service_name(service.name.clone())
        .with_attribute(KeyValue::new(
            "service.instance.id",
            service.instance.clone(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(Export::new(exporter, endpoint.to_string()))
        .with_resource(resource)
        .build())
}

/// The OTLP exporter as sealroom uses it: round ids leave as integers, and
/// a failing collector is reported once per outage, not once per batch.
#[derive(Debug)]
struct Export<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
}

impl<E> Export<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: AtomicBool::new(false),
        }
    }
}

/// Span attributes that hold a round id. tracing-opentelemetry 0.34 records
/// `u64` span fields — as round ids are — as strings; they are exported as
/// integers, so that a tracing backend can compare and range over them.
const ROUND_ATTRIBUTES: [&str; 1] = ["round"];

fn round_ids_as_integers(span: &mut SpanData) {
    for attribute in &mut span.attributes {
        if ROUND_ATTRIBUTES.contains(&attribute.key.as_str())
            && let Value::String(text) = &attribute.value
            && let Ok(round) = text.as_str().parse::<i64>()
        {
            attribute.value = Value::I64(round);
        }
    }
}

impl<E: SpanExporter> SpanExporter for Export<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        batch.iter_mut().for_each(round_ids_as_integers);
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                endpoint = %self.endpoint, %error, spans,
                "exporting traces failed; the node goes on, spans are dropped until the collector answers"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "exporting traces again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(super::use_ansi(true, None));
        assert!(super::use_ansi(true, Some(OsStr::new(""))));
        assert!(!super::use_ansi(true, Some(OsStr::new("1"))));
        assert!(!super::use_ansi(false, None));
        assert!(!super::use_ansi(false, Some(OsStr::new(""))));
    }

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as ProtoKeyValue};
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;

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

    /// Serves a [`Collector`] on an ephemeral loopback port until the test's
    /// runtime ends.
    async fn start_collector() -> (Collector, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("local address");
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }

    fn attribute<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn helper_service() -> ServiceId {
        ServiceId::node("helper", "helper-0")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_an_otlp_collector_with_round_and_role() {
        let (collector, addr) = start_collector().await;
        let endpoint = OtlpEndpoint::parse(&format!("http://{addr}")).expect("a valid endpoint");
        let provider =
            tracer_provider(&endpoint, None, &helper_service()).expect("building the exporter");
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            // Round ids are u64 in the nodes' spans.
            let span = tracing::info_span!("helper.upload", round = 7u64, role = "helper");
            let _entered = span.enter();
            tracing::info!("share received");
        });
        // As a node stops: the queued spans leave on shutdown.
        let telemetry = Telemetry {
            provider: Some(provider),
        };
        let shutdown = tokio::task::spawn_blocking(move || telemetry.shutdown(SHUTDOWN_TIMEOUT));
        tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(10), shutdown)
            .await
            .expect("shutdown within its deadline")
            .expect("the shutdown task")
            .expect("the spans were exported");

        let requests = collector.0.lock().expect("collector lock poisoned").clone();
        let resource_spans: Vec<_> = requests.iter().flat_map(|r| &r.resource_spans).collect();
        let resource = resource_spans
            .first()
            .and_then(|r| r.resource.as_ref())
            .expect("a resource");
        assert_eq!(
            attribute(&resource.attributes, "service.name"),
            Some(&Value::StringValue("sealroom-helper".into()))
        );
        assert_eq!(
            attribute(&resource.attributes, "service.instance.id"),
            Some(&Value::StringValue("helper-0".into()))
        );
        let spans: Vec<_> = resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let upload = spans
            .iter()
            .find(|s| s.name == "helper.upload")
            .unwrap_or_else(|| panic!("no helper.upload span among {spans:?}"));
        assert_eq!(
            attribute(&upload.attributes, "round"),
            Some(&Value::IntValue(7))
        );
        assert_eq!(
            attribute(&upload.attributes, "role"),
            Some(&Value::StringValue("helper".into()))
        );
        assert_eq!(upload.events.len(), 1, "the event inside the span");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transport_spans_are_not_exported() {
        let (collector, addr) = start_collector().await;
        let endpoint = OtlpEndpoint::parse(&format!("http://{addr}")).expect("a valid endpoint");
        let provider =
            tracer_provider(&endpoint, None, &helper_service()).expect("building the exporter");
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let _other = tracing::info_span!(target: "h2::codec", "framed_write").entered();
            let _debug = tracing::debug_span!("helper.detail", round = 1u64).entered();
            let _kept = tracing::info_span!("coordinator.start_round", round = 2u64).entered();
        });
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush());
        tokio::time::timeout(Duration::from_secs(30), flushed)
            .await
            .expect("flush within its deadline")
            .expect("the flush task")
            .expect("flush");
        let requests = collector.0.lock().expect("collector lock poisoned").clone();
        let names: Vec<&str> = requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["coordinator.start_round"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_collector_neither_fails_nor_hangs_the_node() {
        // Port 1 on loopback: nothing listens, connections are refused.
        let endpoint = OtlpEndpoint::parse("http://127.0.0.1:1").expect("a valid endpoint");
        let provider =
            tracer_provider(&endpoint, None, &helper_service()).expect("building the exporter");
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            for round in 0..100u64 {
                let _span = tracing::info_span!("helper.upload", round, role = "helper").entered();
            }
        });
        let telemetry = Telemetry {
            provider: Some(provider),
        };
        let shutdown = tokio::task::spawn_blocking(move || telemetry.shutdown(SHUTDOWN_TIMEOUT));
        let error = tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(10), shutdown)
            .await
            .expect("shutdown is bounded even with the collector gone")
            .expect("the shutdown task")
            .expect_err("the final flush cannot reach the collector");
        assert!(format!("{error:#}").contains("not exported"), "{error:#}");
    }

    #[test]
    fn endpoints_are_validated() {
        for good in [
            "http://127.0.0.1:4317",
            "http://collector.internal:4317/",
            "https://otel.example.org",
            "http://[::1]:4317",
        ] {
            let endpoint = OtlpEndpoint::parse(good).expect(good);
            assert_eq!(endpoint.to_string(), good.trim_end_matches('/'));
        }
        for (bad, says) in [
            ("localhost:4317", "http://"),
            ("127.0.0.1:4317", "http://"),
            ("grpc://127.0.0.1:4317", "scheme"),
            ("http://127.0.0.1:4318/v1/traces", "no path"),
            ("http://user:pw@127.0.0.1:4317", "credentials"),
            ("http://", "URL"),
            ("", "URL"),
        ] {
            let error = OtlpEndpoint::parse(bad).expect_err(bad);
            assert!(
                error.contains(says),
                "{bad}: {error:?} should mention {says:?}"
            );
        }
    }

    #[tokio::test]
    async fn https_needs_a_ca_and_http_refuses_one() {
        let https = OtlpEndpoint::parse("https://127.0.0.1:4317").expect("a valid endpoint");
        let error = tracer_provider(&https, None, &helper_service()).expect_err("no CA");
        assert!(format!("{error:#}").contains("--otlp-ca"), "{error:#}");
        let http = OtlpEndpoint::parse("http://127.0.0.1:4317").expect("a valid endpoint");
        let error = tracer_provider(&http, Some(Path::new("ca.pem")), &helper_service())
            .expect_err("a CA for plain http");
        assert!(format!("{error:#}").contains("https://"), "{error:#}");
    }

    #[test]
    fn without_an_endpoint_no_exporter_is_built() {
        let telemetry = Telemetry::init(LogFormat::Off, &OtlpArgs::default(), &helper_service())
            .expect("init without OTLP");
        assert!(telemetry.provider.is_none());
        telemetry
            .shutdown(Duration::from_millis(1))
            .expect("nothing to flush");
    }
}
