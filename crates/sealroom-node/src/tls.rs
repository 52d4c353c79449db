//! Mutual TLS 1.3 inside the federation PKI, rustls (aws-lc-rs) driven
//! directly on both sides.
//!
//! * **Outgoing connections are pinned** ([`channel_to`]): besides the CA,
//!   the name and serverAuth, the server's certificate must be the one
//!   `federation.toml` registers for the party being called (its SHA-256
//!   fingerprint). A client whose certificate is valid for `localhost` can
//!   bind a helper's port, but no node will talk to it.
//! * **Unregistered certificates are refused at the handshake**
//!   ([`server_config`]): a certificate the CA signed but `federation.toml`
//!   does not list never completes TLS, so it never holds a connection or
//!   reaches a service. The registered set can be replaced while the server
//!   runs ([`Registry::replace`]: revocation by reloading the federation).
//! * **Bounded connections** ([`incoming`]): at most [`MAX_HANDSHAKES`]
//!   handshakes in progress (a new one evicts the oldest, so connections
//!   that never start TLS cannot lock anyone out), each abandoned after
//!   [`HANDSHAKE_TIMEOUT`]; then at most [`CONNECTIONS_PER_PARTY`]
//!   connections per identity, and a budget for clients separate from the
//!   one reserved for the coordinator, helpers and admins.
//!
//! A peer's identity is the SHA-256 fingerprint of its certificate
//! ([`fingerprint`]); what it may do is looked up in the federation's
//! [`crate::directory::Directory`], never taken from the certificate's text.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sealroom_protocol::{PartyId, Role};
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::codegen::http::Uri;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::context::NodeContext;
use crate::directory::{Directory, Party};
use crate::metrics::Metrics;
pub use crate::pki::TlsMaterial;
use crate::shutdown::Shutdown;

/// Handshakes in progress at once; a new connection beyond it evicts the
/// oldest pending one.
pub const MAX_HANDSHAKES: usize = 256;
/// A handshake that takes longer is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Established connections one identity may hold.
pub const CONNECTIONS_PER_PARTY: usize = 16;
/// Established client connections in all (the coordinator, helpers and
/// admins have a budget of their own, so clients cannot crowd them out).
pub const MAX_CLIENT_CONNECTIONS: usize = 8192;
/// Established connections of the coordinator, helpers and admins in all.
pub const MAX_SERVICE_CONNECTIONS: usize = 1024;
/// A connection on which the peer sent nothing for this long is closed
/// (servers ping every [`KEEPALIVE_INTERVAL`]; a live peer answers).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// HTTP/2 keep-alive ping interval of servers and channels.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// HTTP/2 flow-control window of each stream, both directions (the
/// protocol's default is 64 KiB: on loopback a 4 MB upload then waits for
/// ~60 window updates; issue #17). What a peer may have in flight per
/// stream before the receiver reads it; messages stay bounded by each
/// RPC's decoding limit.
pub const H2_STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window of each connection (all its streams).
pub const H2_CONNECTION_WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame either side accepts (the default is 16 KiB).
pub const H2_MAX_FRAME: u32 = 256 << 10;

/// A tonic server with the federation's HTTP/2 windows and frame size,
/// shared by every node's server and the benchmark's plaintext baseline so
/// that neither side hides behind untuned flow control.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
}

/// `endpoint` with the same HTTP/2 windows and frame size as
/// [`server_builder`].
fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
}

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
    /// The party has no endpoint to call.
    #[error("{role} {name:?} has no endpoint in federation.toml")]
    NoEndpoint {
        /// Its role.
        role: &'static str,
        /// Its name.
        name: String,
    },
}

/// SHA-256 of a certificate's DER: the party identity.
pub fn fingerprint(cert: &CertificateDer<'_>) -> PartyId {
    PartyId(sha2::Sha256::digest(cert.as_ref()).into())
}

/// The identities a server lets finish a handshake, and what each may do:
/// the parties of `federation.toml`. Shared with the verifier, the
/// connections and the services, and replaceable while the node runs
/// ([`Registry::replace`], see [`crate::reload`]): a removed party's new
/// handshakes are refused and its open connections closed.
#[derive(Clone, Debug)]
pub struct Registry {
    parties: Arc<RwLock<Parties>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct Parties {
    by_id: HashMap<PartyId, Party>,
    /// Certificate fingerprint → identity (several during a certificate
    /// rotation).
    by_certificate: HashMap<PartyId, PartyId>,
    /// The federation these parties came from (absent for a registry built
    /// by hand).
    directory: Option<Arc<Directory>>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            parties: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Registry {
    /// The parties of `directory`.
    pub fn of(directory: &Directory) -> Registry {
        let r = Registry::default();
        r.replace(directory);
        r
    }

    /// Replaces the registered parties (a reloaded federation): a removed
    /// party can no longer connect, and its open connections close.
    pub fn replace(&self, directory: &Directory) {
        let by_id = directory.parties().map(|p| (p.id, p.clone())).collect();
        let by_certificate = directory
            .parties()
            .flat_map(|p| p.certificates.iter().map(|c| (*c, p.id)))
            .collect();
        *self.parties.write().expect("registry lock") = Parties {
            by_id,
            by_certificate,
            directory: Some(Arc::new(directory.clone())),
        };
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Registers one identity (for a server outside a federation's nodes,
    /// such as the benchmark's plaintext baseline).
    pub fn insert(&self, id: PartyId, role: Role) {
        let party = Party {
            id,
            certificates: vec![id],
            role,
            name: role.as_str().to_string(),
            endpoint: None,
            signing_key: None,
            key_epoch: 0,
            previous_key: None,
        };
        let mut parties = self.parties.write().expect("registry lock");
        parties.by_id.insert(id, party);
        parties.by_certificate.insert(id, id);
        drop(parties);
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// The registered party that may present the certificate with this
    /// fingerprint (its identity, or a rotated certificate of it).
    pub fn party_presenting(&self, certificate: &PartyId) -> Option<Party> {
        let parties = self.parties.read().expect("registry lock");
        parties
            .by_id
            .get(parties.by_certificate.get(certificate)?)
            .cloned()
    }

    /// The role of a registered identity.
    pub fn role(&self, id: &PartyId) -> Option<Role> {
        self.party(id).map(|p| p.role)
    }

    /// A registered party.
    pub fn party(&self, id: &PartyId) -> Option<Party> {
        self.parties
            .read()
            .expect("registry lock")
            .by_id
            .get(id)
            .cloned()
    }

    /// The federation the registered parties came from, as last loaded.
    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.parties
            .read()
            .expect("registry lock")
            .directory
            .clone()
    }

    /// Resolves once the certificate `certificate` no longer stands for
    /// `party` with `role` — the party was removed, or the certificate
    /// replaced and retired (never, if it stays).
    pub fn revoked(
        &self,
        certificate: PartyId,
        party: PartyId,
        role: Role,
    ) -> impl Future<Output = ()> + Send + 'static {
        let registry = self.clone();
        let mut changes = self.changes.subscribe();
        async move {
            loop {
                let holder = registry.party_presenting(&certificate);
                if holder.map(|p| (p.id, p.role)) != Some((party, role)) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// rustls' client-certificate verifier for the federation CA, refusing
/// certificates `federation.toml` does not register (counted in
/// `sealroom_connections_refused_total{reason="unregistered_certificate"}`).
#[derive(Debug)]
struct RegisteredClients {
    inner: Arc<dyn ClientCertVerifier>,
    registry: Registry,
    metrics: Metrics,
}

impl ClientCertVerifier for RegisteredClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self
            .registry
            .party_presenting(&fingerprint(end_entity))
            .is_none()
        {
            self.metrics.connection_refused("unregistered_certificate");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Which server certificates a pinned channel accepts.
#[derive(Clone, Debug)]
pub enum ServerPin {
    /// Any of these certificate fingerprints (a tool that read
    /// `federation.toml` once).
    Certificates(Vec<PartyId>),
    /// Whatever certificate the live registry lets this identity present
    /// (a node: follows certificate rotations reloaded while it runs).
    Party(Registry, PartyId),
}

impl ServerPin {
    /// Whether a server presenting `certificate` is the party called.
    fn accepts(&self, certificate: &PartyId) -> bool {
        match self {
            ServerPin::Certificates(list) => list.contains(certificate),
            ServerPin::Party(registry, id) => {
                registry.party_presenting(certificate).map(|p| p.id) == Some(*id)
            }
        }
    }

    /// For a node's channel: resolves when the certificate the server
    /// presented no longer stands for it (the connection is then closed).
    fn revoked(&self, certificate: PartyId) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let ServerPin::Party(registry, id) = self else {
            return None;
        };
        let role = registry.party(id)?.role;
        Some(Box::pin(registry.revoked(certificate, *id, role)))
    }
}

/// rustls' server-certificate verifier for the federation CA that also
/// requires the server to hold a certificate registered for the party being
/// called.
#[derive(Debug)]
struct PinnedServer {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerPin,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if !self.expected.accepts(&fingerprint(end_entity)) {
            tracing::warn!(expected = ?self.expected, found = %fingerprint(end_entity), "the server is not the party called");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn roots(material: &TlsMaterial) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(material.ca_der().clone())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(roots))
}

/// A rustls server config for `material`: TLS 1.3 only, client certificates
/// required, verified against the federation CA and refused at the
/// handshake unless `registry` lists them, HTTP/2 via ALPN.
pub fn server_config(
    material: &TlsMaterial,
    registry: Registry,
    metrics: Metrics,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_crypto_provider();
    let inner = WebPkiClientVerifier::builder(roots(material)?)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(RegisteredClients {
        inner,
        registry,
        metrics,
    });
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(material.live_cert());
    // No session resumption: a resumed TLS 1.3 session skips certificate
    // authentication and carries the certificate of the session it
    // resumes, so a party that rotated its certificate would come back as
    // its retired one (and be refused), and a revoked one would not meet
    // the verifier. Every connection is long-lived; a full handshake each
    // costs nothing that matters.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The domain a certificate must cover for `host`.
fn domain_of(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => "localhost".to_string(),
        _ => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    }
}

/// A lazily connecting gRPC channel to `party`, authenticating with this
/// node's certificate (the one it presents now: [`TlsMaterial::switch_to`])
/// and accepting only a certificate the live registry gives that party. A
/// connection whose server certificate is later retired (a certificate
/// rotation) or whose party is removed is closed; the channel reconnects.
pub fn channel_to(ctx: &NodeContext, party: &Party) -> Result<Channel, TlsError> {
    let endpoint = party
        .endpoint
        .as_deref()
        .ok_or_else(|| TlsError::NoEndpoint {
            role: party.role.as_str(),
            name: party.name.clone(),
        })?;
    pinned_channel(
        &ctx.tls,
        endpoint,
        ServerPin::Party(ctx.registry.clone(), party.id),
    )
}

/// A TLS stream (either side) that fails every read and write once the
/// peer's certificate no longer stands for the party it authenticated as
/// (the party removed, or the certificate retired by a reload).
struct Watched<S> {
    stream: S,
    revoked: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The peer, named in the log line when its connection is closed.
    peer: Option<PartyId>,
    /// Whether `revoked` resolved (it is not polled again).
    closed: bool,
}

impl<S> Watched<S> {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.closed {
            let Some(revoked) = self.revoked.as_mut() else {
                return Ok(());
            };
            if revoked.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.closed = true;
            if let Some(party) = self.peer {
                tracing::info!(%party, "connection closed: the peer, or the certificate it connected with, is no longer in federation.toml");
            }
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the peer's certificate is no longer registered in this federation",
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
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
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A lazily connecting gRPC channel to `endpoint` (`host:port`) whose
/// server must hold a certificate `expected` accepts.
pub fn pinned_channel(
    material: &TlsMaterial,
    endpoint: &str,
    expected: ServerPin,
) -> Result<Channel, TlsError> {
    install_crypto_provider();
    let bad = |reason: String| TlsError::Endpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let (host, _port) =
        crate::config::split_endpoint(endpoint).ok_or_else(|| bad("not host:port".into()))?;
    let server_name = ServerName::try_from(domain_of(host))
        .map_err(|e| bad(format!("not a server name: {e}")))?;
    let inner = WebPkiServerVerifier::builder(roots(material)?)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let pin = expected.clone();
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer { inner, expected }))
            .with_client_cert_resolver(material.live_cert());
    // Full handshakes only (see server_config): the certificate presented
    // is always the one in force now.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let address = endpoint.to_string();
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let address = address.clone();
        let pin = pin.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(server_name, tcp).await?;
            let presented = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(fingerprint);
            let revoked = presented.and_then(|c| pin.revoked(c));
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(Watched {
                stream: tls,
                revoked,
                peer: None,
                closed: false,
            }))
        }
    });
    Ok(
        tuned(Endpoint::from_shared(format!("http://{endpoint}")).map_err(|e| bad(e.to_string()))?)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_with_connector_lazy(connect),
    )
}

/// A lazily connecting gRPC channel to `endpoint` that trusts any
/// certificate the federation CA issued for its name — for tools and tests
/// that call a server they started themselves. Nodes pin with
/// [`channel_to`].
pub fn channel_unpinned(material: &TlsMaterial, endpoint: &str) -> Result<Channel, TlsError> {
    install_crypto_provider();
    let bad = |reason: String| TlsError::Endpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let (host, _port) =
        crate::config::split_endpoint(endpoint).ok_or_else(|| bad("not host:port".into()))?;
    let tls = crate::pki::client_tls(material, &domain_of(host));
    Ok(
        tuned(
            Endpoint::from_shared(format!("https://{endpoint}")).map_err(|e| bad(e.to_string()))?,
        )
        .tls_config(tls)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .connect_lazy(),
    )
}

/// What a server knows about the peer of a connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// The identity of the party the verified client certificate stands
    /// for (its own fingerprint, or the identity it rotated from).
    pub identity: Option<PartyId>,
    /// Remote address.
    pub addr: Option<SocketAddr>,
}

/// An established server-side TLS connection. Holds its connection slot for
/// as long as it lives; closes itself when the peer sends nothing for
/// [`IDLE_TIMEOUT`].
pub struct Conn {
    /// Fails every read and write once the peer leaves the federation (a
    /// reload removed it or retired the certificate it connected with), so
    /// the server drops the connection.
    stream: Watched<TlsStream<TcpStream>>,
    info: PeerInfo,
    idle: Pin<Box<tokio::time::Sleep>>,
    _slot: Slot,
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
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.idle
                        .as_mut()
                        .reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
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

/// Established connections, per identity and per budget.
#[derive(Default)]
struct Counts {
    per_party: HashMap<PartyId, usize>,
    clients: usize,
    services: usize,
}

/// A held connection slot; released when dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    party: PartyId,
    client: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts lock");
        if let Some(n) = counts.per_party.get_mut(&self.party) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_party.remove(&self.party);
            }
        }
        if self.client {
            counts.clients = counts.clients.saturating_sub(1);
        } else {
            counts.services = counts.services.saturating_sub(1);
        }
    }
}

/// Takes a slot for an established connection of `party`, or says why not.
fn take_slot(
    counts: &Arc<Mutex<Counts>>,
    party: PartyId,
    role: Role,
) -> Result<Slot, &'static str> {
    let mut c = counts.lock().expect("connection counts lock");
    let client = role == Role::Client;
    if c.per_party.get(&party).copied().unwrap_or(0) >= CONNECTIONS_PER_PARTY {
        return Err("too_many_for_party");
    }
    if client && c.clients >= MAX_CLIENT_CONNECTIONS {
        return Err("too_many_clients");
    }
    if !client && c.services >= MAX_SERVICE_CONNECTIONS {
        return Err("too_many_connections");
    }
    *c.per_party.entry(party).or_default() += 1;
    if client {
        c.clients += 1;
    } else {
        c.services += 1;
    }
    Ok(Slot {
        counts: counts.clone(),
        party,
        client,
    })
}

/// Accepts TCP connections and completes TLS handshakes, yielding the
/// established streams for tonic's `serve_with_incoming_shutdown`. Refused
/// handshakes (unknown CA, unregistered, expired or missing client
/// certificate, TLS < 1.3) and connections over a limit are counted in
/// `sealroom_connections_refused_total` by reason.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    registry: Registry,
    metrics: Metrics,
    shutdown: Shutdown,
) -> tokio_stream::wrappers::ReceiverStream<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let counts: Arc<Mutex<Counts>> = Arc::default();
    tokio::spawn(async move {
        // Pending handshakes, oldest first: a cancel handle each.
        let mut pending: VecDeque<oneshot::Sender<()>> = VecDeque::new();
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
            pending.retain(|cancel| !cancel.is_closed());
            if pending.len() >= MAX_HANDSHAKES
                && let Some(oldest) = pending.pop_front()
            {
                metrics.connection_refused("handshake_evicted");
                let _ = oldest.send(());
            }
            let (cancel, cancelled) = oneshot::channel::<()>();
            pending.push_back(cancel);
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let metrics = metrics.clone();
            let counts = counts.clone();
            let registry = registry.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let result = tokio::select! {
                    r = handshake => r,
                    _ = cancelled => return,
                };
                let stream = match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics.connection_refused("tls_handshake");
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        metrics.connection_refused("handshake_timeout");
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let presented = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(fingerprint);
                let Some((certificate, party, role)) = presented.and_then(|cert| {
                    let p = registry.party_presenting(&cert)?;
                    Some((cert, p.id, p.role))
                }) else {
                    metrics.connection_refused("unregistered_certificate");
                    tracing::info!(%peer, "connection refused: its certificate is not registered in federation.toml");
                    return;
                };
                let slot = match take_slot(&counts, party, role) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        metrics.connection_refused(reason);
                        tracing::info!(%peer, party = %party, reason, "connection over its limit closed");
                        return;
                    }
                };
                let info = PeerInfo {
                    identity: Some(party),
                    addr: Some(peer),
                };
                let _ = tx
                    .send(Ok(Conn {
                        stream: Watched {
                            stream,
                            revoked: Some(Box::pin(registry.revoked(certificate, party, role))),
                            peer: Some(party),
                            closed: false,
                        },
                        info,
                        idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                        _slot: slot,
                    }))
                    .await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_party_and_per_budget() {
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let a = PartyId([1; 32]);
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS_PER_PARTY {
            held.push(take_slot(&counts, a, Role::Client).expect("under the cap"));
        }
        assert_eq!(
            take_slot(&counts, a, Role::Client).err(),
            Some("too_many_for_party")
        );
        // Another party, and an admin, still get in.
        assert!(take_slot(&counts, PartyId([2; 32]), Role::Client).is_ok());
        let admin = take_slot(&counts, PartyId([3; 32]), Role::Admin).expect("admin");
        drop(held.pop());
        assert!(
            take_slot(&counts, a, Role::Client).is_ok(),
            "a slot is released on drop"
        );
        drop(admin);
        assert_eq!(counts.lock().expect("lock").services, 0);
    }
}
