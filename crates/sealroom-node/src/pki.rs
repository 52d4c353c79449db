//! The federation PKI (DESIGN.md §5): a federation CA, one certificate per
//! node, and the files that hold them.
//!
//! * [`CertificateAuthority`] creates the CA (ECDSA P-256, rcgen on aws-lc-rs)
//!   and issues leaf certificates whose common name is the node's name. The
//!   coordinator's and helpers' SANs cover `localhost`, `127.0.0.1`, `::1` and
//!   the node's endpoint host, with the ServerAuth and ClientAuth EKUs (every
//!   connection is mutually authenticated); clients and admins get ClientAuth
//!   only and no server name, so none can pass for a server. [`Validity`] is explicit so tests can make
//!   expired or not-yet-valid certificates; a second CA makes foreign ones.
//! * A party's identity is [`fingerprint`]: SHA-256 of its certificate's DER.
//! * [`TlsMaterial`] is a node's CA certificate, certificate and key, read from
//!   PEM (rustls-pki-types' `PemObject`), and turns into tonic's configs with
//!   [`server_tls`] (client certificates mandatory) and [`client_tls`].
//! * Private keys (TLS keys, Ed25519 signing keys as 64 hex characters) are
//!   written with mode 0600 by [`write_private_file`], never over an existing
//!   file unless asked to.
//!
//! TLS 1.3 only: tonic builds its rustls configs from the process-wide crypto
//! provider, so [`install_tls13_provider`] installs aws-lc-rs with its TLS 1.3
//! cipher suites only; with no TLS 1.2 suite, TLS 1.2 cannot be negotiated.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sealroom_protocol::{PartyId, SigningKey};
use sha2::Digest as _;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

/// Validity of leaf certificates made by `sealroom init`, in days.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// Validity of the federation CA, in days.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Longest validity [`Validity::days`] accepts (100 years).
pub const MAX_VALIDITY_DAYS: u32 = 36_500;
/// How far before "now" a new certificate becomes valid, to tolerate clock skew
/// between the machine that issues it and the machines that check it.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Why a PKI operation failed. File errors name the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's account.
        source: rcgen::Error,
    },
    /// A validity period that cannot be encoded or makes no sense.
    #[error("invalid validity period: {problem}")]
    Validity {
        /// What is wrong.
        problem: String,
    },
    /// A host that cannot go into a certificate's subject alternative names.
    #[error("host {host:?} cannot be put in a certificate: {problem}")]
    Host {
        /// The host.
        host: String,
        /// What is wrong.
        problem: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file exists and overwriting was not asked for.
    #[error("{} already exists; refusing to overwrite it", file.display())]
    Exists {
        /// The file.
        file: PathBuf,
    },
    /// A PEM file without the expected block, or with a malformed one.
    #[error("{}: {problem}", file.display())]
    Pem {
        /// The file (or, for in-memory PEM, what it was meant to be).
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A private key file others may read (or write).
    #[error(
        "{}: mode {mode:04o} lets others read this private key; run `chmod 600 {}` (keys must be readable by their owner only)",
        file.display(),
        file.display()
    )]
    InsecurePermissions {
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A signing key file that is not 64 hex characters (32 bytes).
    #[error("{}: not an Ed25519 signing key (expected 64 hex characters)", file.display())]
    SigningKeyFormat {
        /// The file.
        file: PathBuf,
    },
    /// A private key that does not belong to the certificate next to it.
    #[error("{}: private key does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A certificate that the federation CA does not vouch for (foreign CA,
    /// expired, not yet valid, wrong usage, or a name it does not cover).
    #[error("{}: certificate refused: {problem}", cert.display())]
    CertificateRefused {
        /// The certificate file.
        cert: PathBuf,
        /// rustls' account.
        problem: String,
    },
}

impl PkiError {
    /// The file the error is about, if it is about one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PkiError::Read { file, .. }
            | PkiError::Write { file, .. }
            | PkiError::Exists { file }
            | PkiError::Pem { file, .. }
            | PkiError::SigningKeyFormat { file }
            | PkiError::InsecurePermissions { file, .. } => Some(file),
            PkiError::KeyMismatch { key, .. } => Some(key),
            PkiError::CertificateRefused { cert, .. } => Some(cert),
            PkiError::Generate { .. } | PkiError::Validity { .. } | PkiError::Host { .. } => None,
        }
    }
}

/// SHA-256 of a certificate's DER encoding: the party's identity.
pub fn fingerprint(cert_der: &[u8]) -> PartyId {
    PartyId(sha2::Sha256::digest(cert_der).into())
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Validity {
    /// Valid from a few minutes ago ([`BACKDATE`]) for `days` days; `days` must
    /// be in `1..=MAX_VALIDITY_DAYS`.
    pub fn days(days: u32) -> Result<Validity, PkiError> {
        if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
            return Err(PkiError::Validity {
                problem: format!("{days} days is outside 1..={MAX_VALIDITY_DAYS}"),
            });
        }
        let now = SystemTime::now();
        Ok(Validity {
            not_before: now - BACKDATE,
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        })
    }

    /// A period that ended yesterday (it began 30 days ago): for tests that a
    /// peer with an expired certificate is refused.
    pub fn expired() -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(30 * 86_400),
            not_after: now - Duration::from_secs(86_400),
        }
    }

    /// Writes the period into rcgen's parameters.
    fn apply(self, params: &mut CertificateParams) -> Result<(), PkiError> {
        if self.not_after <= self.not_before {
            return Err(PkiError::Validity {
                problem: "the period ends before it begins".into(),
            });
        }
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(self.not_before)?;
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(self.not_after)?;
        Ok(())
    }
}

/// Time since the epoch, refusing instants X.509 (and the `time` crate's
/// arithmetic, which panics out of range) cannot represent.
fn since_epoch(t: SystemTime) -> Result<Duration, PkiError> {
    // Year 9999 ends about 253,402,300,800 s after the epoch.
    const LIMIT: Duration = Duration::from_secs(253_402_300_000);
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d < LIMIT => Ok(Duration::from_secs(d.as_secs())),
        _ => Err(PkiError::Validity {
            problem: "an instant before 1970 or after 9999".into(),
        }),
    }
}

/// The federation CA: its certificate and the key that signs leaves.
///
/// Built like rcgen's `CertifiedIssuer::self_signed` (a self-signed
/// certificate plus an [`Issuer`] over the same parameters and key), but kept
/// as parts so a CA reloaded from disk keeps its original certificate.
pub struct CertificateAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CertificateAuthority(fingerprint={}, key=<redacted>)",
            self.fingerprint()
        )
    }
}

/// A freshly issued leaf certificate and its private key.
pub struct IssuedCert {
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (secret: write it with
    /// [`write_private_file`], never log it).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IssuedCert(fingerprint={}, key=<redacted>)",
            self.fingerprint()
        )
    }
}

impl IssuedCert {
    /// The identity this certificate gives its holder.
    pub fn fingerprint(&self) -> PartyId {
        fingerprint(&self.cert_der)
    }
}

impl CertificateAuthority {
    /// A new CA with a fresh P-256 key, named after the federation.
    pub fn generate(federation_id: &str, validity: Validity) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "the CA key",
                source,
            }
        })?;
        let mut params = ca_params(federation_id);
        validity.apply(&mut params)?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the CA certificate",
                source,
            })?;
        Ok(CertificateAuthority {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Reloads a CA written by [`CertificateAuthority::write`], to issue more
    /// certificates. `federation_id` must be the one it was generated for and
    /// the key must belong to the certificate: both are checked by issuing a
    /// probe certificate and verifying it against `cert_file`.
    pub fn load(federation_id: &str, cert_file: &Path, key_file: &Path) -> Result<Self, PkiError> {
        let cert_pem = read_file(cert_file)?;
        let key_pem = Zeroizing::new(read_file(key_file)?);
        let cert_der = parse_cert(&cert_pem, cert_file)?;
        let cert_pem = String::from_utf8(cert_pem).map_err(|_| PkiError::Pem {
            file: cert_file.to_path_buf(),
            problem: "not a PEM file".into(),
        })?;
        let key_text = std::str::from_utf8(&key_pem).map_err(|_| PkiError::Pem {
            file: key_file.to_path_buf(),
            problem: "not a PEM file".into(),
        })?;
        let key = KeyPair::from_pem(key_text).map_err(|e| PkiError::Pem {
            file: key_file.to_path_buf(),
            problem: format!("not a private key: {e}"),
        })?;
        let ca = CertificateAuthority {
            cert_der,
            cert_pem,
            issuer: Issuer::new(ca_params(federation_id), key),
        };
        let probe = ca.issue_leaf("probe", &[], Validity::days(1)?)?;
        verify_leaf(&ca.cert_der, &probe.cert_der, None).map_err(|problem| {
            PkiError::CertificateRefused {
                cert: cert_file.to_path_buf(),
                problem: format!(
                    "{} with federation id {federation_id:?} does not sign for this CA ({problem})",
                    key_file.display()
                ),
            }
        })?;
        Ok(ca)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's own fingerprint.
    pub fn fingerprint(&self) -> PartyId {
        fingerprint(&self.cert_der)
    }

    /// Writes the certificate (0644) and the key (0600), e.g. `ca.pem` and
    /// `ca.key`.
    pub fn write(&self, cert_file: &Path, key_file: &Path, force: bool) -> Result<(), PkiError> {
        write_public_file(cert_file, self.cert_pem().as_bytes(), force)?;
        let key_pem = Zeroizing::new(self.issuer.key().serialize_pem());
        write_private_file(key_file, key_pem.as_bytes(), force)
    }

    /// Issues a certificate for `name` (its common name) with a fresh P-256
    /// key, valid for `localhost`, `127.0.0.1`, `::1` and every host in
    /// `hosts` (DNS names or IP addresses, IPv6 optionally in brackets), for
    /// both TLS server and client authentication.
    pub fn issue_leaf(
        &self,
        name: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        sign_leaf(&self.issuer, name, hosts, validity, true)
    }

    /// Issues a certificate for a party that never serves (a client or an
    /// admin): TLS client authentication only, and no server names, so no
    /// TLS client accepts it as a server (a client that binds a helper's
    /// port cannot pass for it).
    pub fn issue_client_leaf(
        &self,
        name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        sign_leaf(&self.issuer, name, &[], validity, false)
    }
}

/// The CA's parameters apart from validity: deterministic, so a reloaded CA
/// key signs leaves whose issuer name matches the CA certificate's subject.
fn ca_params(federation_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sealroom");
    dn.push(DnType::CommonName, format!("sealroom CA {federation_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn sign_leaf(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    hosts: &[&str],
    validity: Validity,
    serves: bool,
) -> Result<IssuedCert, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        PkiError::Generate {
            what: "a node key",
            source,
        }
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sealroom");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if serves {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    if serves {
        params.subject_alt_names = subject_alt_names(hosts)?;
    }
    validity.apply(&mut params)?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| PkiError::Generate {
            what: "a node certificate",
            source,
        })?;
    Ok(IssuedCert {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// `localhost`, `127.0.0.1`, `::1`, then `hosts`, without repeats.
fn subject_alt_names(hosts: &[&str]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = vec![
        SanType::DnsName(
            "localhost"
                .try_into()
                .map_err(|e: rcgen::Error| PkiError::Host {
                    host: "localhost".into(),
                    problem: e.to_string(),
                })?,
        ),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for host in hosts {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if host.is_empty()
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(PkiError::Host {
                        host: host.to_string(),
                        problem: "not a DNS name or IP address".into(),
                    });
                }
                SanType::DnsName(host.to_ascii_lowercase().try_into().map_err(
                    |e: rcgen::Error| PkiError::Host {
                        host: host.to_string(),
                        problem: e.to_string(),
                    },
                )?)
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// A node's TLS material: the federation CA certificate, its own certificate
/// and its private key, as read from PEM. `Debug` shows only the identity.
///
/// Every clone shares one [`LiveCert`]: the certificate and key this node
/// presents in new handshakes (as a server and as a client), which
/// [`TlsMaterial::switch_to`] replaces while the node runs (a certificate
/// rotation; connections already open keep the certificate they began with).
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    ca_der: CertificateDer<'static>,
    cert_pem: Vec<u8>,
    cert_der: CertificateDer<'static>,
    key_pem: Zeroizing<Vec<u8>>,
    id: PartyId,
    live: Arc<LiveCert>,
}

/// The certificate and key a node presents in its next TLS handshakes,
/// replaceable while it runs; rustls' resolver on both sides of every
/// connection the node makes or accepts.
#[derive(Debug)]
pub struct LiveCert {
    current: std::sync::RwLock<(PartyId, Arc<rustls::sign::CertifiedKey>)>,
}

impl LiveCert {
    fn get(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }

    /// The fingerprint of the certificate presented now.
    pub fn fingerprint(&self) -> PartyId {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsMaterial(id={}, key=<redacted>)", self.id)
    }
}

impl TlsMaterial {
    /// Reads and parses the three PEM files; errors name the file. Checks
    /// that the key belongs to the certificate, but not that the CA vouches
    /// for it (see [`TlsMaterial::verify`]) — tests build material for
    /// foreign and expired certificates on purpose.
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> Result<TlsMaterial, PkiError> {
        check_private_permissions(key)?;
        let ca_pem = read_file(ca_cert)?;
        let cert_pem = read_file(cert)?;
        let key_pem = Zeroizing::new(read_file(key)?);
        TlsMaterial::parse(ca_pem, cert_pem, key_pem, [ca_cert, cert, key])
    }

    /// Parses in-memory PEM (the CA certificate, this node's certificate, its
    /// key); like [`TlsMaterial::load`].
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, PkiError> {
        TlsMaterial::parse(
            ca_pem.to_vec(),
            cert_pem.to_vec(),
            Zeroizing::new(key_pem.to_vec()),
            [
                Path::new("CA certificate"),
                Path::new("certificate"),
                Path::new("private key"),
            ],
        )
    }

    fn parse(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Zeroizing<Vec<u8>>,
        [ca_file, cert_file, key_file]: [&Path; 3],
    ) -> Result<TlsMaterial, PkiError> {
        let ca_der = parse_cert(&ca_pem, ca_file)?;
        let cert_der = parse_cert(&cert_pem, cert_file)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| PkiError::Pem {
            file: key_file.to_path_buf(),
            problem: format!("no usable private key: {e}"),
        })?;
        let certified = rustls::sign::CertifiedKey::from_der(
            vec![cert_der.clone()],
            key_der,
            &tls13_provider(),
        )
        .map_err(|_| PkiError::KeyMismatch {
            key: key_file.to_path_buf(),
            cert: cert_file.to_path_buf(),
        })?;
        let id = fingerprint(&cert_der);
        Ok(TlsMaterial {
            ca_pem,
            ca_der,
            cert_pem,
            cert_der,
            key_pem,
            id,
            live: Arc::new(LiveCert {
                current: std::sync::RwLock::new((id, Arc::new(certified))),
            }),
        })
    }

    /// The certificate and key presented in new handshakes, shared by
    /// every clone of this material.
    pub fn live_cert(&self) -> Arc<LiveCert> {
        self.live.clone()
    }

    /// Makes every clone of this material present `new`'s certificate and
    /// key in its next handshakes (a certificate rotation taking effect
    /// while the node runs). `new` must come from the same federation CA.
    /// Returns the fingerprint presented before.
    pub fn switch_to(&self, new: &TlsMaterial) -> Result<PartyId, PkiError> {
        if new.ca_der != self.ca_der {
            return Err(PkiError::CertificateRefused {
                cert: PathBuf::from("tls.ca_cert"),
                problem: "the new certificate's CA is not the federation CA this node runs with"
                    .into(),
            });
        }
        let certified = new.live.get();
        let mut current = self
            .live
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = current.0;
        *current = (new.id, certified);
        Ok(before)
    }

    /// When this node's certificate expires (notAfter, Unix seconds), if it
    /// parses.
    pub fn not_after_unix(&self) -> Option<i64> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.cert_der.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// The fingerprint of the certificate this material was read from (the
    /// node's identity until its first certificate rotation; see
    /// [`crate::directory::Party::certificates`]).
    pub fn id(&self) -> PartyId {
        self.id
    }

    /// This node's certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The federation CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The federation CA certificate, PEM as read.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// This node's certificate, PEM as read.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// This node's private key, PEM. Secret: only for building TLS configs.
    pub fn expose_key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    /// tonic's identity (certificate and key) of this node.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &*self.key_pem)
    }

    /// tonic's copy of the federation CA certificate.
    pub fn ca_certificate(&self) -> Certificate {
        Certificate::from_pem(&self.ca_pem)
    }

    /// Checks, as a peer would, that the federation CA vouches for this
    /// node's certificate now, for client authentication and — given
    /// `server_name` (a DNS name or IP address) — for serving that name.
    /// `cert_file` only names the certificate in the error.
    pub fn verify(&self, server_name: Option<&str>, cert_file: &Path) -> Result<(), PkiError> {
        verify_leaf(&self.ca_der, &self.cert_der, server_name).map_err(|problem| {
            PkiError::CertificateRefused {
                cert: cert_file.to_path_buf(),
                problem,
            }
        })
    }
}

/// tonic's server TLS config: this node's identity, and client certificates
/// mandatory and verified against the federation CA. TLS 1.3 only once
/// [`install_tls13_provider`] has run.
pub fn server_tls(material: &TlsMaterial) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(material.identity())
        .client_ca_root(material.ca_certificate())
        .client_auth_optional(false)
}

/// tonic's client TLS config: trust only the federation CA, present this
/// node's certificate, and expect the server to be `domain` (the host of its
/// endpoint, which its certificate's SANs cover).
pub fn client_tls(material: &TlsMaterial, domain: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(material.ca_certificate())
        .identity(material.identity())
        .domain_name(domain.trim_start_matches('[').trim_end_matches(']'))
}

/// aws-lc-rs with only its TLS 1.3 cipher suites.
pub fn tls13_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|suite| matches!(suite, rustls::SupportedCipherSuite::Tls13(_)));
    provider
}

/// Installs [`tls13_provider`] as the process's rustls provider. Returns
/// `false` if a provider was already installed (which then stays in force:
/// call this first thing in `main`).
pub fn install_tls13_provider() -> bool {
    tls13_provider().install_default().is_ok()
}

/// Reads an Ed25519 signing key file: 64 hex characters (surrounding
/// whitespace ignored). Like ssh, refuses a key file that its group or
/// others may read or write ([`PkiError::InsecurePermissions`]).
pub fn read_signing_key(file: &Path) -> Result<SigningKey, PkiError> {
    check_private_permissions(file)?;
    let text = Zeroizing::new(read_file(file)?);
    let trimmed = text.trim_ascii();
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(trimmed, &mut *secret).map_err(|_| PkiError::SigningKeyFormat {
        file: file.to_path_buf(),
    })?;
    Ok(SigningKey::from_secret_bytes(&secret))
}

/// Writes an Ed25519 signing key as 64 hex characters and a newline, 0600.
pub fn write_signing_key(file: &Path, key: &SigningKey, force: bool) -> Result<(), PkiError> {
    let secret = key.expose_secret_bytes();
    let mut text = Zeroizing::new(hex::encode(*secret));
    text.push('\n');
    write_private_file(file, text.as_bytes(), force)
}

/// A fresh Ed25519 signing key from the OS generator.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rand_core::UnwrapErr(rand::rngs::SysRng))
}

/// Refuses a secret file whose mode lets its group or others read or write
/// it.
pub fn check_private_permissions(file: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = fs::metadata(file).map_err(|source| PkiError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::InsecurePermissions {
            file: file.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Writes a secret file with mode 0600. Without `force` an existing file is
/// an error ([`PkiError::Exists`]); with it the old file is removed first, so
/// the new one is created with mode 0600 whatever the old one's was.
pub fn write_private_file(file: &Path, contents: &[u8], force: bool) -> Result<(), PkiError> {
    write_new_file(file, contents, 0o600, force)
}

/// Writes a public file (certificates, configs) with mode 0644, with the same
/// overwrite rule as [`write_private_file`].
pub fn write_public_file(file: &Path, contents: &[u8], force: bool) -> Result<(), PkiError> {
    write_new_file(file, contents, 0o644, force)
}

fn write_new_file(file: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write {
        file: file.to_path_buf(),
        source,
    };
    if force {
        match fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(e)),
        }
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(file)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    file: file.to_path_buf(),
                }
            } else {
                write_err(e)
            }
        })?;
    out.write_all(contents).map_err(write_err)?;
    out.sync_all().map_err(write_err)
}

fn read_file(file: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(file).map_err(|source| PkiError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// The first certificate of a PEM file.
fn parse_cert(pem: &[u8], file: &Path) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem).map_err(|e| PkiError::Pem {
        file: file.to_path_buf(),
        problem: format!("no usable certificate: {e}"),
    })
}

/// Verifies `leaf` against the single trust anchor `ca` at the current time,
/// for client authentication and, given `server_name`, serving that name.
fn verify_leaf(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    server_name: Option<&str>,
) -> Result<(), String> {
    let provider = Arc::new(tls13_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|e| format!("the CA certificate is unusable: {e}"))?;
    let roots = Arc::new(roots);
    let now = UnixTime::now();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
    client_verifier
        .verify_client_cert(leaf, &[], now)
        .map_err(|e| e.to_string())?;
    if let Some(name) = server_name {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("{name:?} is not a valid server name: {e}"))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?;
        server_verifier
            .verify_server_cert(leaf, &[], &server_name, &[], now)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CertificateAuthority {
        CertificateAuthority::generate("test", Validity::days(30).expect("30 days is valid"))
            .expect("CA generation")
    }

    #[test]
    fn leaf_chains_to_its_ca_and_covers_its_hosts() {
        let ca = ca();
        let leaf = ca
            .issue_leaf(
                "helper-0",
                &["helper0.example", "10.0.0.7"],
                Validity::days(1).expect("valid"),
            )
            .expect("issue");
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "helper0.example",
            "10.0.0.7",
        ] {
            verify_leaf(ca.cert_der(), &leaf.cert_der, Some(name)).expect(name);
        }
        assert!(verify_leaf(ca.cert_der(), &leaf.cert_der, Some("other.example")).is_err());
        assert_eq!(leaf.fingerprint(), fingerprint(&leaf.cert_der));
    }

    #[test]
    fn expired_and_foreign_certificates_are_refused() {
        let ca = ca();
        let expired = ca
            .issue_leaf("client-0", &[], Validity::expired())
            .expect("issue expired");
        let err = verify_leaf(ca.cert_der(), &expired.cert_der, None).expect_err("expired");
        assert!(err.contains("expired"), "{err}");

        let foreign = CertificateAuthority::generate("test", Validity::days(30).expect("valid"))
            .expect("second CA");
        let stranger = foreign
            .issue_leaf("client-0", &[], Validity::days(1).expect("valid"))
            .expect("issue foreign");
        assert!(verify_leaf(ca.cert_der(), &stranger.cert_der, None).is_err());
    }

    #[test]
    fn validity_bounds() {
        assert!(Validity::days(0).is_err());
        assert!(Validity::days(MAX_VALIDITY_DAYS + 1).is_err());
        let now = SystemTime::now();
        let backwards = Validity {
            not_before: now,
            not_after: now - Duration::from_secs(1),
        };
        assert!(ca().issue_leaf("x", &[], backwards).is_err());
    }

    #[test]
    fn bad_hosts_are_refused() {
        let ca = ca();
        for host in ["", "a b", "x/y", "é.example"] {
            assert!(
                ca.issue_leaf("x", &[host], Validity::days(1).expect("valid"))
                    .is_err(),
                "{host:?}"
            );
        }
    }

    #[test]
    fn tls13_provider_has_no_tls12_suites() {
        let provider = tls13_provider();
        assert!(!provider.cipher_suites.is_empty());
        assert!(
            provider
                .cipher_suites
                .iter()
                .all(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
        );
    }
}
