//! `sealroom init`: a complete local federation in one directory
//! (DESIGN.md §5) — a CA, a certificate and key per node, Ed25519 signing
//! keys for the coordinator and the helpers, `federation.toml`, and one node
//! config per node that [`crate::config::load_node_config`] accepts as is.
//!
//! Layout of the directory:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` (0600) | the federation CA; keep `ca.key` offline, it issues more certificates |
//! | `<name>.pem`, `<name>.key` (0600) | each node's certificate and TLS key |
//! | `<name>.signing.key` (0600) | Ed25519 signing key (coordinator and helpers) |
//! | `<name>.toml` | each node's config |
//! | `admin.pem`, `admin.key`, `admin.toml` | an operator identity for the admin API |
//! | `federation.toml` | what every party agrees on |
//!
//! Names are `coordinator`, `helper-0`…, `client-0`…, `admin`. Paths inside the
//! configs are relative, so the directory can be moved as a whole.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use sealroom_core::shamir::ShamirParams;
use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::descriptor::{MAX_CLIENTS, MIN_MIN_CLIENTS, PROTOCOL_VERSION};
use sealroom_protocol::{PartyId, SigningKey};

use crate::config::{
    self, ConfigError, DataSource, FederationSpec, ModeSpec, NodeConfigFile, PartySpec,
    PrivacySpec, QuantizationSpec, Role, TlsFiles,
};
use crate::pki::{self, CertificateAuthority, PkiError, Validity};

/// The federation file's name inside the directory.
pub const FEDERATION_FILE: &str = "federation.toml";
/// The CA certificate's file name.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY_FILE: &str = "ca.key";

/// What `sealroom init` makes.
#[derive(Clone, Debug, PartialEq)]
pub struct InitOptions {
    /// Number of helpers (2..=16).
    pub helpers: usize,
    /// Number of clients (at least 2).
    pub clients: usize,
    /// `Some(t)`: Shamir t-of-h over fp61; `None`: additive n-of-n over z2_32
    /// (z2_64 when the default quantization would not fit 32 bits for this
    /// many clients).
    pub threshold: Option<usize>,
    /// Smallest releasable inclusion set; default [`default_min_clients`].
    pub min_clients: Option<usize>,
    /// Federation id (goes into every descriptor and the CA's name).
    pub federation_id: String,
    /// The coordinator listens on `base_port`, helper `i` on
    /// `base_port + 1 + i`; node `n` (coordinator 0, then helpers, then
    /// clients) serves metrics on `base_port + 100 + n`.
    pub base_port: u16,
    /// Host of the endpoints, and listen address if it is an IP address (a DNS
    /// name makes the nodes listen on 0.0.0.0). Certificates cover it.
    pub host: String,
    /// Overwrite an existing federation in the directory, regenerating every
    /// key and certificate.
    pub force: bool,
    /// Quantization; `None`: [`default_quantization`].
    pub quantization: Option<QuantizationSpec>,
    /// Upload window of a round, ms.
    pub upload_window_ms: u64,
    /// Aggregation window after the upload window, ms.
    pub aggregation_window_ms: u64,
    /// Validity of node certificates, days (the CA gets
    /// [`pki::DEFAULT_CA_DAYS`] or this, whichever is longer).
    pub validity_days: u32,
    /// Threshold mode: allow releases from exactly `threshold` answers,
    /// marked unverified (see `federation.toml`'s
    /// `allow_unverified_threshold_release`).
    pub allow_unverified_threshold_release: bool,
    /// Lifetime of an MPC engine key epoch of the preprocessing pool,
    /// seconds (`federation.toml`'s `engine_key_epoch_s`).
    pub engine_key_epoch_s: u64,
    /// 0: peers reach each serving node at its listen port. Otherwise at
    /// listen port + this offset, where something relays to the node (the
    /// latency proxies of `sealroom bench --rtt-ms`). Must leave the relay
    /// ports between the nodes' ports and the metrics ports:
    /// `1 + helpers ≤ offset ≤ 99 − helpers`.
    pub relay_port_offset: u16,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            helpers: 3,
            clients: 5,
            threshold: None,
            min_clients: None,
            federation_id: "sealroom-local".into(),
            base_port: 7400,
            host: "127.0.0.1".into(),
            force: false,
            quantization: None,
            upload_window_ms: 5000,
            aggregation_window_ms: 5000,
            validity_days: pki::DEFAULT_LEAF_DAYS,
            allow_unverified_threshold_release: false,
            engine_key_epoch_s: crate::config::DEFAULT_ENGINE_KEY_EPOCH_S,
            relay_port_offset: 0,
        }
    }
}

/// What `sealroom init` wrote.
#[derive(Clone, Debug)]
pub struct InitSummary {
    /// The directory.
    pub dir: PathBuf,
    /// `federation.toml`.
    pub federation_file: PathBuf,
    /// The federation as written.
    pub federation: FederationSpec,
    /// Every node, coordinator first, then helpers, clients, admin.
    pub nodes: Vec<InitNode>,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// Certificates, keys and configs in the directory that this run did not
    /// write (left over from an earlier, larger federation, or the user's):
    /// they are left alone, and no longer match `federation.toml`.
    pub leftovers: Vec<PathBuf>,
}

/// One node `sealroom init` made.
#[derive(Clone, Debug)]
pub struct InitNode {
    /// Role.
    pub role: Role,
    /// Name.
    pub name: String,
    /// Identity (certificate fingerprint).
    pub id: PartyId,
    /// Its config file.
    pub config: PathBuf,
    /// Its gRPC listen address (coordinator and helpers).
    pub listen: Option<SocketAddr>,
}

/// Why `sealroom init` refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// An option is out of range.
    #[error("{option}: {problem}")]
    Option {
        /// The option (`helpers`, `threshold`, `min_clients`, ...).
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The directory already holds a federation.
    #[error(
        "{} already holds a federation ({} exists); refusing to overwrite its keys — pass --force to regenerate everything",
        dir.display(),
        existing.display()
    )]
    Exists {
        /// The directory.
        dir: PathBuf,
        /// The first file found that would be overwritten.
        existing: PathBuf,
    },
    /// The directory cannot be created.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Generating or writing keys and certificates failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A config could not be encoded as TOML.
    #[error("cannot encode {}: {source}", file.display())]
    Encode {
        /// The file.
        file: PathBuf,
        /// The encoder's account.
        source: toml::ser::Error,
    },
    /// A generated config does not load: a bug in `init`, reported rather than
    /// left for the first node start to find.
    #[error("the generated configuration does not load: {0}")]
    SelfCheck(#[source] ConfigError),
}

/// The default `min_clients` for `clients` clients: half of them, rounded
/// up, and at least 2 (never more than `clients`).
pub fn default_min_clients(clients: usize) -> usize {
    clients.div_ceil(2).max(MIN_MIN_CLIENTS).min(clients)
}

/// The default quantization: 16 fractional bits, clip ±64, 24 bits per value,
/// in `ring` (init picks z2_32 for additive rounds when this fits it, else
/// z2_64; fp61 for threshold rounds). Should `clients` worst-case
/// values not fit the ring, bits and scale are lowered together until they do.
pub fn default_quantization(ring: RingKind, clients: usize) -> QuantizationSpec {
    let (mut scale_bits, clip, mut bits) = (16i8, 64.0, 24u8);
    while bits > 8 {
        let fits = QuantSpec::new(scale_bits, clip, bits)
            .ok()
            .is_some_and(|spec| sealroom_core::fits(ring, clients as u64, spec).is_ok());
        if fits {
            break;
        }
        bits -= 1;
        scale_bits -= 1;
    }
    QuantizationSpec {
        ring: ring.name().into(),
        scale_bits,
        clip,
        bits,
    }
}

/// A node to be made.
struct Plan {
    role: Role,
    name: String,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    endpoint: Option<String>,
    data: Option<DataSource>,
}

/// Creates a federation in `dir`; see the module documentation.
pub fn init_federation(dir: &Path, opts: &InitOptions) -> Result<InitSummary, InitError> {
    let plans = plan(opts)?;
    std::fs::create_dir_all(dir).map_err(|source| InitError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let dir = std::fs::canonicalize(dir).map_err(|source| InitError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;

    if !opts.force {
        let mut targets = vec![
            CA_CERT_FILE.to_string(),
            CA_KEY_FILE.to_string(),
            FEDERATION_FILE.to_string(),
        ];
        for p in &plans {
            for suffix in [".pem", ".key", ".signing.key", ".toml"] {
                targets.push(format!("{}{suffix}", p.name));
            }
        }
        if let Some(existing) = targets
            .iter()
            .map(|t| dir.join(t))
            .find(|path| path.symlink_metadata().is_ok())
        {
            return Err(InitError::Exists { dir, existing });
        }
    }

    // Everything is generated before anything is written.
    let ca_days = opts.validity_days.max(pki::DEFAULT_CA_DAYS);
    let ca = CertificateAuthority::generate(&opts.federation_id, Validity::days(ca_days)?)?;
    let leaf_validity = Validity::days(opts.validity_days)?;
    let mut made = Vec::with_capacity(plans.len());
    for p in plans {
        let hosts: Vec<&str> = p
            .endpoint
            .as_deref()
            .and_then(config::split_endpoint)
            .map(|(host, _)| host)
            .into_iter()
            .collect();
        let cert = match p.role {
            Role::Coordinator | Role::Helper => ca.issue_leaf(&p.name, &hosts, leaf_validity)?,
            Role::Client | Role::Admin => ca.issue_client_leaf(&p.name, leaf_validity)?,
        };
        let signing_key =
            matches!(p.role, Role::Coordinator | Role::Helper).then(pki::generate_signing_key);
        made.push((p, cert, signing_key));
    }

    let party = |p: &Plan, cert: &pki::IssuedCert, key: &Option<SigningKey>| PartySpec {
        name: p.name.clone(),
        fingerprint: cert.fingerprint().to_hex(),
        endpoint: p.endpoint.clone(),
        signing_key: key
            .as_ref()
            .map(|k| hex::encode(k.verifying_key().to_bytes())),
        key_epoch: 0,
        previous_signing_key: None,
        certificate: None,
        previous_certificate: None,
    };
    let of_role = |role: Role| {
        made.iter()
            .filter(move |(p, _, _)| p.role == role)
            .map(|(p, c, k)| party(p, c, k))
    };
    // Additive rounds use 32-bit shares when the default quantization fits
    // them for this many clients (uploads then match a plaintext f32 update
    // in size); tasks that need more headroom ask for 64 bits themselves.
    let ring = if opts.threshold.is_some() {
        RingKind::Fp61
    } else if default_quantization(RingKind::Z2_32, opts.clients).bits >= 24 {
        RingKind::Z2_32
    } else {
        RingKind::Z2_64
    };
    let federation = FederationSpec {
        federation_id: opts.federation_id.clone(),
        protocol_version: PROTOCOL_VERSION,
        mode: if opts.threshold.is_some() {
            ModeSpec::Threshold
        } else {
            ModeSpec::Additive
        },
        threshold: opts.threshold,
        min_clients: opts
            .min_clients
            .unwrap_or_else(|| default_min_clients(opts.clients)),
        upload_window_ms: opts.upload_window_ms,
        aggregation_window_ms: opts.aggregation_window_ms,
        quantization: opts
            .quantization
            .clone()
            .unwrap_or_else(|| default_quantization(ring, opts.clients)),
        coordinator: of_role(Role::Coordinator)
            .next()
            .expect("plan() always makes a coordinator"),
        helpers: of_role(Role::Helper).collect(),
        clients: of_role(Role::Client).collect(),
        allow_unverified_threshold_release: opts.allow_unverified_threshold_release,
        engine_key_epoch_s: opts.engine_key_epoch_s,
        privacy: PrivacySpec::default(),
        admins: of_role(Role::Admin).collect(),
    };
    let federation_file = dir.join(FEDERATION_FILE);
    federation.validate(&federation_file).map_err(|e| match e {
        ConfigError::Invalid { field, problem, .. } => InitError::Option {
            option: option_of(&field),
            problem,
        },
        other => InitError::SelfCheck(other),
    })?;

    let mut files = Vec::new();
    let force = opts.force;
    let ca_cert_file = dir.join(CA_CERT_FILE);
    let ca_key_file = dir.join(CA_KEY_FILE);
    ca.write(&ca_cert_file, &ca_key_file, force)?;
    files.extend([ca_cert_file, ca_key_file]);

    let mut nodes = Vec::new();
    for (p, cert, signing_key) in &made {
        let cert_file = dir.join(format!("{}.pem", p.name));
        let key_file = dir.join(format!("{}.key", p.name));
        pki::write_public_file(&cert_file, cert.cert_pem.as_bytes(), force)?;
        pki::write_private_file(&key_file, cert.key_pem.as_bytes(), force)?;
        files.extend([cert_file, key_file]);
        let signing_key_name = match signing_key {
            Some(key) => {
                let name = format!("{}.signing.key", p.name);
                let file = dir.join(&name);
                pki::write_signing_key(&file, key, force)?;
                files.push(file);
                Some(PathBuf::from(name))
            }
            None => None,
        };
        let node = NodeConfigFile {
            role: p.role,
            name: p.name.clone(),
            federation: PathBuf::from(FEDERATION_FILE),
            listen: p.listen,
            metrics_listen: p.metrics_listen,
            data_dir: Path::new("data").join(&p.name),
            database: None,
            tls: TlsFiles {
                ca_cert: PathBuf::from(CA_CERT_FILE),
                cert: PathBuf::from(format!("{}.pem", p.name)),
                key: PathBuf::from(format!("{}.key", p.name)),
            },
            signing_key: signing_key_name,
            previous_signing_key: None,
            data: p
                .data
                .clone()
                .map(|d| BTreeMap::from([(BUILTIN_TABLE.to_string(), d)]))
                .unwrap_or_default(),
            policy: None,
            privacy_budget: BTreeMap::new(),
            archive_rounds: None,
        };
        let config_file = dir.join(format!("{}.toml", p.name));
        let header = format!(
            "# sealroom node config: {} `{}` of federation `{}` (made by `sealroom init`).\n\
             # Relative paths are taken from this file's directory.\n\n",
            p.role.as_str(),
            p.name,
            opts.federation_id,
        );
        write_toml(&config_file, &header, &node, force)?;
        files.push(config_file.clone());
        nodes.push(InitNode {
            role: p.role,
            name: p.name.clone(),
            id: cert.fingerprint(),
            config: config_file,
            listen: p.listen,
        });
    }

    let header = format!(
        "# sealroom federation `{}` (made by `sealroom init`): what every party agrees on.\n\
         # Identities are SHA-256 fingerprints of the certificates issued by ca.pem.\n\n",
        opts.federation_id
    );
    write_toml(&federation_file, &header, &federation, force)?;
    files.push(federation_file.clone());

    for node in &nodes {
        config::load_node_config(&node.config).map_err(InitError::SelfCheck)?;
    }

    let leftovers = leftovers(&dir, &files);
    Ok(InitSummary {
        dir,
        federation_file,
        federation,
        nodes,
        files,
        leftovers,
    })
}

/// The table name under which `init` gives each client its slice of the
/// built-in wine-quality data (`[data.wine]`).
pub const BUILTIN_TABLE: &str = "wine";

/// Checks the options and lays out names, addresses and data parts.
fn plan(opts: &InitOptions) -> Result<Vec<Plan>, InitError> {
    let bad = |option: &'static str, problem: String| InitError::Option { option, problem };
    let h = opts.helpers;
    match opts.threshold {
        None => {
            sealroom_core::additive::check_helpers(h).map_err(|e| bad("helpers", e.to_string()))?
        }
        Some(t) => {
            ShamirParams::new(t, h).map_err(|e| match e {
                sealroom_core::SharingError::ThresholdAboveHelpers { .. } => bad(
                    "threshold",
                    format!("{t} exceeds the number of helpers ({h})"),
                ),
                sealroom_core::SharingError::ThresholdTooSmall { .. } => bad(
                    "threshold",
                    format!("{t} is below 2: a single helper would learn every input"),
                ),
                other => bad("helpers", other.to_string()),
            })?;
        }
    }
    if !(MIN_MIN_CLIENTS..=MAX_CLIENTS).contains(&opts.clients) {
        return Err(bad(
            "clients",
            format!(
                "{} is outside {MIN_MIN_CLIENTS}..={MAX_CLIENTS}",
                opts.clients
            ),
        ));
    }
    if let Some(k) = opts.min_clients
        && !(MIN_MIN_CLIENTS..=opts.clients).contains(&k)
    {
        return Err(bad(
            "min_clients",
            format!(
                "{k} is outside {MIN_MIN_CLIENTS}..={} (the number of clients)",
                opts.clients
            ),
        ));
    }
    let last_port = u32::from(opts.base_port) + 100 + (1 + h + opts.clients) as u32;
    if opts.base_port == 0 || last_port > u32::from(u16::MAX) {
        return Err(bad(
            "base_port",
            format!(
                "{} leaves no room: ports up to {last_port} are needed",
                opts.base_port
            ),
        ));
    }
    let offset = usize::from(opts.relay_port_offset);
    if offset != 0 && !(1 + h..=99 - h).contains(&offset) {
        return Err(bad(
            "relay_port_offset",
            format!(
                "{offset} would put a relay port on a node's or a metrics port (1 + helpers ..= 99 − helpers, here {}..={})",
                1 + h,
                99 - h
            ),
        ));
    }
    let host = opts.host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok();
    let endpoint_host = match ip {
        Some(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_string(),
    };
    if config::split_endpoint(&format!("{endpoint_host}:1")).is_none() {
        return Err(bad(
            "host",
            format!("{:?} is not an IP address or DNS name", opts.host),
        ));
    }
    let bind_ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // Checked above: every port is at most base_port + 100 + nodes <= 65535.
    let port = |offset: usize| opts.base_port + offset as u16;
    let metrics = |node: usize| Some(SocketAddr::new(bind_ip, port(100 + node)));

    let mut plans = vec![Plan {
        role: Role::Coordinator,
        name: "coordinator".into(),
        listen: Some(SocketAddr::new(bind_ip, port(0))),
        metrics_listen: metrics(0),
        endpoint: Some(format!("{endpoint_host}:{}", port(offset))),
        data: None,
    }];
    for i in 0..h {
        plans.push(Plan {
            role: Role::Helper,
            name: format!("helper-{i}"),
            listen: Some(SocketAddr::new(bind_ip, port(1 + i))),
            metrics_listen: metrics(1 + i),
            endpoint: Some(format!("{endpoint_host}:{}", port(offset + 1 + i))),
            data: None,
        });
    }
    for j in 0..opts.clients {
        plans.push(Plan {
            role: Role::Client,
            name: format!("client-{j}"),
            listen: None,
            metrics_listen: metrics(1 + h + j),
            endpoint: None,
            data: Some(DataSource::Builtin {
                dataset: "winequality".into(),
                part: j,
                parts: opts.clients,
            }),
        });
    }
    plans.push(Plan {
        role: Role::Admin,
        name: "admin".into(),
        listen: None,
        metrics_listen: None,
        endpoint: None,
        data: None,
    });
    Ok(plans)
}

/// The init option behind a federation field, for errors in options the
/// early checks do not cover (quantization, windows, federation id).
fn option_of(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or(field) {
        "threshold" => "threshold",
        "min_clients" => "min_clients",
        "helpers" => "helpers",
        "clients" => "clients",
        "quantization" => "quantization",
        "upload_window_ms" => "upload_window_ms",
        "aggregation_window_ms" => "aggregation_window_ms",
        "engine_key_epoch_s" => "engine_key_epoch_s",
        "federation_id" => "federation_id",
        _ => "options",
    }
}

/// Files in `dir` that look like federation material (`.pem`, `.key`,
/// `.toml`) but are not among `written`.
fn leftovers(dir: &Path, written: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "pem" | "key" | "toml"))
                && !written.contains(path)
        })
        .collect();
    found.sort();
    found
}

fn write_toml<T: serde::Serialize>(
    file: &Path,
    header: &str,
    value: &T,
    force: bool,
) -> Result<(), InitError> {
    let body = toml::to_string_pretty(value).map_err(|source| InitError::Encode {
        file: file.to_path_buf(),
        source,
    })?;
    pki::write_public_file(file, format!("{header}{body}").as_bytes(), force)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_clients_default_is_sensible() {
        assert_eq!(default_min_clients(2), 2);
        assert_eq!(default_min_clients(3), 2);
        assert_eq!(default_min_clients(5), 3);
        assert_eq!(default_min_clients(100), 50);
    }

    #[test]
    fn default_quantization_fits() {
        for ring in [RingKind::Z2_64, RingKind::Fp61, RingKind::Z2_32] {
            for clients in [2, 5, 1000, MAX_CLIENTS] {
                let q = default_quantization(ring, clients);
                let spec = QuantSpec::new(q.scale_bits, q.clip, q.bits).expect("valid spec");
                assert!(
                    sealroom_core::fits(ring, clients as u64, spec).is_ok(),
                    "{ring} {clients}: {q:?}"
                );
            }
        }
        let q = default_quantization(RingKind::Z2_64, 5);
        assert_eq!((q.scale_bits, q.clip, q.bits), (16, 64.0, 24));
    }

    #[test]
    fn bad_options_are_refused_before_anything_is_written() {
        let cases: [(InitOptions, &str); 7] = [
            (
                InitOptions {
                    helpers: 1,
                    ..InitOptions::default()
                },
                "helpers",
            ),
            (
                InitOptions {
                    threshold: Some(4),
                    ..InitOptions::default()
                },
                "threshold",
            ),
            (
                InitOptions {
                    threshold: Some(1),
                    ..InitOptions::default()
                },
                "threshold",
            ),
            (
                InitOptions {
                    clients: 1,
                    ..InitOptions::default()
                },
                "clients",
            ),
            (
                InitOptions {
                    min_clients: Some(6),
                    ..InitOptions::default()
                },
                "min_clients",
            ),
            (
                InitOptions {
                    base_port: 65_500,
                    ..InitOptions::default()
                },
                "base_port",
            ),
            (
                InitOptions {
                    relay_port_offset: 2,
                    ..InitOptions::default()
                },
                "relay_port_offset",
            ),
        ];
        for (opts, expected) in cases {
            match plan(&opts) {
                Err(InitError::Option { option, .. }) => assert_eq!(option, expected),
                Err(other) => panic!("{expected}: {other}"),
                Ok(_) => panic!("{expected}: accepted"),
            }
        }
    }
}
