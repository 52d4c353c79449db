//! Mutual TLS 1.3 inside the federation PKI: the server side is rustls driven
//! directly (so refused handshakes are counted), the client side is tonic's
//! rustls connector. Both use the aws-lc-rs provider; nothing here links
//! OpenSSL or `ring`.
//!
//! A peer's identity is the SHA-256 fingerprint of its certificate
//! ([`peer_identity`]); what it may do is looked up in the federation's
//! [`crate::directory::Directory`], never taken from the certificate's text.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use crate::pki::TlsMaterial;
use sealroom_protocol::PartyId;
use sha2::Digest as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Most TLS connections a server holds at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// A handshake that takes longer is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the process's crypto provider: aws-lc-rs with only TLS 1.3
/// cipher suites, so no connection can fall back to TLS 1.2 (idempotent; a
/// provider installed earlier stays in force).
pub fn install_crypto_provider() {
    crate::pki::install_tls13_provider();
}

/// Why a TLS configuration or an endpoint was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM block that does not parse.
    #[error("{what}: {reason}")]
    Pem {
        /// Which item.
        what: &'static str,
        /// The parser's account.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// An endpoint that is not `host:port`.
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
}

/// A rustls server config for `material`: TLS 1.3 only, client certificates
/// required and verified against the federation CA, HTTP/2 via ALPN.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(material.ca_der().clone())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(material.expose_key_pem()).map_err(|e| TlsError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![material.cert_der().clone()], key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A lazily connecting gRPC channel to `endpoint` (`host:port`),
/// authenticating with `material`'s certificate and trusting only the
/// federation CA.
pub fn channel(material: &TlsMaterial, endpoint: &str) -> Result<Channel, TlsError> {
    install_crypto_provider();
    let bad = |reason: String| TlsError::Endpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let (host, _port) =
        crate::config::split_endpoint(endpoint).ok_or_else(|| bad("not host:port".into()))?;
    let domain = match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => "localhost".to_string(),
        _ => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(material.ca_pem()))
        .identity(Identity::from_pem(
            material.cert_pem(),
            material.expose_key_pem(),
        ))
        .domain_name(domain);
    Ok(Endpoint::from_shared(format!("https://{endpoint}"))
        .map_err(|e| bad(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .connect_lazy())
}

/// SHA-256 of a certificate's DER: the party identity.
pub fn fingerprint(cert: &CertificateDer<'_>) -> PartyId {
    PartyId(sha2::Sha256::digest(cert.as_ref()).into())
}

/// What a server knows about the peer of a connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// Fingerprint of the verified client certificate.
    pub identity: Option<PartyId>,
    /// Remote address.
    pub addr: Option<SocketAddr>,
}

/// An established server-side TLS connection. Holds a connection slot for
/// as long as it lives, which bounds the connections a server keeps open.
pub struct Conn {
    stream: TlsStream<TcpStream>,
    info: PeerInfo,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The authenticated identity of the peer of a request on a [`Conn`].
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<PartyId> {
    request.extensions().get::<PeerInfo>()?.identity
}

/// Accepts TCP connections and completes TLS handshakes, yielding the
/// established streams for tonic's `serve_with_incoming_shutdown`. Failed
/// handshakes (unknown CA, expired or missing client certificate, TLS < 1.3)
/// are logged and counted in `sealroom_connections_refused_total`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> tokio_stream::wrappers::ReceiverStream<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.wait() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                metrics.connection_refused("too_many_connections");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(fingerprint);
                        let info = PeerInfo {
                            identity,
                            addr: Some(peer),
                        };
                        let _ = tx
                            .send(Ok(Conn {
                                stream,
                                info,
                                _slot: permit,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => {
                        metrics.connection_refused("tls_handshake");
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        metrics.connection_refused("handshake_timeout");
                        tracing::info!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
