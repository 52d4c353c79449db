//! Configuration files: `federation.toml` (the protocol spec every party
//! shares) and one `*.toml` per node (its role, addresses, key files).
//!
//! Paths inside a node config are relative to the directory of that file.
//! Unknown fields are errors; every error names the file and the field.
//!
//! [`load_federation`] parses and checks `federation.toml` (DESIGN.md §2: the
//! threshold against the helpers, `min_clients`, the ring and the
//! quantization headroom for this many clients, unique names and identities);
//! [`load_node_config`] resolves a node's file into a [`NodeConfig`] whose
//! paths are absolute, whose keys are loaded, and whose certificate has been
//! checked against the federation CA and its entry in `federation.toml`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use sealroom_core::shamir::ShamirParams;
use sealroom_core::{QuantError, QuantSpec, RingKind, SharingError};
use sealroom_protocol::descriptor::{MIN_MIN_CLIENTS, PROTOCOL_VERSION};
use sealroom_protocol::{PartyId, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::pki::{self, PkiError, TlsMaterial};

/// A node's role in the federation: the protocol's one [`Role`] type.
pub use sealroom_protocol::Role;

/// Sharing mode of the federation's rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    /// Additive n-of-n over a ring.
    Additive,
    /// Shamir t-of-h over F_p.
    Threshold,
}

/// `federation.toml`: what every party of the federation agrees on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    /// Federation id (goes into every descriptor).
    pub federation_id: String,
    /// Protocol version spoken.
    pub protocol_version: u32,
    /// Sharing mode.
    pub mode: ModeSpec,
    /// Shares needed (threshold mode); must be absent or equal to the helper
    /// count in additive mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
    /// Smallest releasable inclusion set.
    pub min_clients: usize,
    /// Upload window of a round, ms.
    pub upload_window_ms: u64,
    /// Aggregation window after the upload window, ms.
    pub aggregation_window_ms: u64,
    /// Default quantization of rounds.
    pub quantization: QuantizationSpec,
    /// The coordinator.
    pub coordinator: PartySpec,
    /// Helpers, in helper-index order.
    pub helpers: Vec<PartySpec>,
    /// Clients, in client-index order.
    pub clients: Vec<PartySpec>,
    /// Operators allowed to use the admin API.
    #[serde(default)]
    pub admins: Vec<PartySpec>,
    /// Threshold mode: whether a round may release a sum reconstructed from
    /// exactly `threshold` answers, which cannot be checked against each
    /// other (the signed result then says `unverified`). Off by default:
    /// such a round aborts, so a wrong share is never released unseen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unverified_threshold_release: bool,
    /// Lifetime of an MPC engine key epoch of the preprocessing pool,
    /// seconds (three-helper federations; docs/mpc.md "The pool in engine
    /// rounds"): once the current epoch is older, the helpers agree fresh
    /// keys after the next engine round and the old epoch's unused material
    /// expires with it. Default one day.
    #[serde(
        default = "default_engine_key_epoch_s",
        skip_serializing_if = "is_default_engine_key_epoch_s"
    )]
    pub engine_key_epoch_s: u64,
    /// `[privacy]`: the federation's differential-privacy rules.
    #[serde(default, skip_serializing_if = "PrivacySpec::is_default")]
    pub privacy: PrivacySpec,
}

/// `federation.toml` `[privacy]`: the federation's differential-privacy
/// rules (docs/operations.md). Absent: the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Every SQL query must carry differential-privacy noise; clients
    /// refuse queries without it. Default off.
    #[serde(default)]
    pub require_dp: bool,
}

impl PrivacySpec {
    fn is_default(&self) -> bool {
        *self == PrivacySpec::default()
    }
}

/// One day.
pub const DEFAULT_ENGINE_KEY_EPOCH_S: u64 = 86_400;

fn default_engine_key_epoch_s() -> u64 {
    DEFAULT_ENGINE_KEY_EPOCH_S
}

fn is_default_engine_key_epoch_s(v: &u64) -> bool {
    *v == DEFAULT_ENGINE_KEY_EPOCH_S
}

/// Default quantization of a federation's rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationSpec {
    /// `z2_32`, `z2_64` or `fp61` (threshold mode requires `fp61`).
    pub ring: String,
    /// Fractional bits.
    pub scale_bits: i8,
    /// Clip bound.
    pub clip: f64,
    /// Signed width per value.
    pub bits: u8,
}

/// One party as the federation knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartySpec {
    /// Human-readable unique name (also the certificate's common name).
    pub name: String,
    /// SHA-256 of the party's certificate (DER), hex: its identity.
    pub fingerprint: String,
    /// `host:port` where it serves (coordinator and helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Ed25519 public signing key, hex (coordinator and helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Coordinator and helpers: the key epoch from which `signing_key`
    /// signs (0 until the first rotation, one more at each; the
    /// coordinator's is also the descriptors' key epoch; see the runbook's
    /// key rotation).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key_epoch: u64,
    /// Coordinator and helpers, during a rotation: the key `signing_key`
    /// replaces, still trusted (the coordinator's for rounds of the epochs
    /// before `key_epoch`, a helper's beside the new one). Remove it once
    /// the rounds under way at the switch are over: the old key is then
    /// refused everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_key: Option<String>,
    /// After a certificate rotation (`sealroom rotate-cert`): SHA-256 of the
    /// certificate the party presents now, hex. Its identity stays
    /// `fingerprint` (the certificate it joined with), which every round and
    /// log names; absent, the party presents that certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// During a certificate rotation: SHA-256 of the certificate being
    /// replaced, hex, still accepted at the handshake. Remove it (and send
    /// every node SIGHUP) to refuse that certificate and close the
    /// connections made with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_certificate: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A node's own config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// This node's role.
    pub role: Role,
    /// This node's name (must appear in federation.toml under its role).
    pub name: String,
    /// Path of federation.toml.
    pub federation: PathBuf,
    /// Where the gRPC server listens (coordinator and helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Where `/metrics` is served (off if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the node's database and archives.
    pub data_dir: PathBuf,
    /// Database URL; default: SQLite file `sealroom.db` in `data_dir`.
    /// A `postgres://` URL selects PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// TLS material.
    pub tls: TlsFiles,
    /// Ed25519 signing key file (coordinator and helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// The signing key this node's `signing_key` replaces, while a rotation
    /// is under way: the node's audit log enters the new key signed by the
    /// old one (a rotation chain). Remove it once the node has started once
    /// with the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_key: Option<PathBuf>,
    /// Client only: where its private data lives, by the table name that
    /// tasks and queries use (`[data.salaries]`, `[data.wine]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, DataSource>,
    /// Client only: its own floor under the queries it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ClientPolicy>,
    /// Client only: the differential-privacy budget of each table
    /// (`[privacy_budget.patients] epsilon = 5.0, delta = 1e-5`), which its
    /// DP releases may spend in total. A table without one answers no DP
    /// query.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privacy_budget: BTreeMap<String, TableBudget>,
    /// Rounds whose replay archive is kept (default 64; older ones are
    /// pruned). The audit log is never pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_rounds: Option<usize>,
}

/// A client's floor under the suppression thresholds of the queries it
/// answers (`[policy]`): a query asking for less is refused by this client,
/// whatever the coordinator says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPolicy {
    /// The fewest rows a released cell may hold (at least 1).
    pub min_rows: u64,
}

/// A table's differential-privacy budget as written in a client's config
/// (`[privacy_budget.<table>]`): the total `(ε, δ)` its releases may spend
/// under basic composition, privacy unit one row (docs/operations.md).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableBudget {
    /// Total ε: finite, above 0.
    pub epsilon: f64,
    /// Total δ: finite, in `[0, 1)` (far below one over the table's rows).
    pub delta: f64,
}

impl TableBudget {
    /// Checks the ranges (ε finite and above 0; δ finite, at least 0 and
    /// below 1); on failure, the field at fault (`epsilon` or `delta`) and
    /// what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(("epsilon", "must be a finite number above 0"));
        }
        if !(self.delta.is_finite() && (0.0..1.0).contains(&self.delta)) {
            return Err((
                "delta",
                "must be a finite number of at least 0 and below 1 (typically far below one \
                 over the table's rows, e.g. 1e-6)",
            ));
        }
        Ok(())
    }
}

/// PEM files for mutual TLS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The federation CA certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key (0600).
    pub key: PathBuf,
}

/// Where a client's private data lives.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// A CSV file with a header row.
    Csv {
        /// Path of the file.
        path: PathBuf,
    },
    /// A table in a SQLite database file (opened read-only).
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
        /// Table name in that database.
        table: String,
    },
    /// A table in PostgreSQL (queried in read-only transactions). The URL
    /// may hold a password: it is never logged.
    Postgres {
        /// Connection URL, `postgres://user@host/db`.
        url: String,
        /// Table name (optionally `schema.table`).
        table: String,
    },
    /// A slice of a data set shipped with sealroom (for demos and tests):
    /// part `part` of `parts` of `dataset` (`winequality`, `iris`, `diabetes`).
    Builtin {
        /// Data set name.
        dataset: String,
        /// This client's part, 0-based.
        part: usize,
        /// Number of parts.
        parts: usize,
    },
}

impl fmt::Debug for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Csv { path } => f.debug_struct("Csv").field("path", path).finish(),
            DataSource::Sqlite { path, table } => f
                .debug_struct("Sqlite")
                .field("path", path)
                .field("table", table)
                .finish(),
            // The URL may carry a password.
            DataSource::Postgres { table, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("table", table)
                .finish(),
            DataSource::Builtin {
                dataset,
                part,
                parts,
            } => f
                .debug_struct("Builtin")
                .field("dataset", dataset)
                .field("part", part)
                .field("parts", parts)
                .finish(),
        }
    }
}

/// Data sets a [`DataSource::Builtin`] may name.
pub const BUILTIN_DATASETS: &[&str] = &["winequality", "iris", "diabetes"];

/// Rings a federation may compute in, by their config names.
pub const RINGS: &[RingKind] = &[RingKind::Z2_32, RingKind::Z2_64, RingKind::Fp61];

/// Why a configuration file was refused.
///
/// Every variant names the file; those about one value also name its field
/// as written in the file (`threshold`, `helpers[1].fingerprint`,
/// `quantization.ring`, `tls.cert`), e.g.
/// `federation.toml: field `threshold`: 4 exceeds the number of helpers (3)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file itself cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Not TOML, or not this schema: an unknown or missing field, a value of
    /// the wrong type. `message` is the parser's, with line and column.
    #[error("{}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The field, when the parser names it (unknown or missing fields).
        field: Option<String>,
        /// The parser's account.
        message: String,
    },
    /// A field's value is refused.
    #[error("{}: field `{field}`: {problem}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong and, where it helps, what would be right.
        problem: String,
    },
    /// A file named by a field (key, certificate, signing key) is missing,
    /// unreadable or malformed, or its certificate is not vouched for.
    #[error("{}: field `{field}`: {source}", file.display())]
    File {
        /// The config file.
        file: PathBuf,
        /// The field naming the file.
        field: String,
        /// What went wrong with the named file.
        source: PkiError,
    },
}

impl ConfigError {
    /// The config file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::File { file, .. } => file,
        }
    }

    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } | ConfigError::File { field, .. } => Some(field),
        }
    }
}

/// A node config, resolved and checked: every path absolute, the federation
/// loaded and valid, this node found in it under its role, its certificate
/// matching that entry and vouched for by the federation CA, and its signing
/// key loaded and matching the public key the federation lists.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node config file (canonical path).
    pub file: PathBuf,
    /// This node's role.
    pub role: Role,
    /// This node's name.
    pub name: String,
    /// This node's identity: its certificate's fingerprint.
    pub id: PartyId,
    /// `federation.toml` (absolute).
    pub federation_file: PathBuf,
    /// The federation, validated.
    pub federation: FederationSpec,
    /// This node's entry in the federation.
    pub party: PartySpec,
    /// gRPC listen address (coordinator and helpers).
    pub listen: Option<SocketAddr>,
    /// `/metrics` listen address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Data directory (absolute; created by the node, not checked here).
    pub data_dir: PathBuf,
    /// Database URL, as written (`None`: SQLite `sealroom.db` in `data_dir`).
    pub database: Option<String>,
    /// The TLS files (absolute).
    pub tls_files: TlsFiles,
    /// The TLS material read from them.
    pub tls: TlsMaterial,
    /// The signing key file (absolute; coordinator and helpers).
    pub signing_key_file: Option<PathBuf>,
    /// The signing key (coordinator and helpers), read from its 0600 file.
    pub signing_key: Option<SigningKey>,
    /// The key `signing_key` replaces, while a rotation is under way.
    pub previous_signing_key: Option<SigningKey>,
    /// Where a client's private data lives, by table name (paths absolute).
    pub data: BTreeMap<String, DataSource>,
    /// A client's own query floor (`None`: the built-in default).
    pub policy: Option<ClientPolicy>,
    /// A client's differential-privacy budget per table (checked: each
    /// names a `[data.<table>]` entry and is in range).
    pub privacy_budget: BTreeMap<String, TableBudget>,
    /// Rounds whose replay archive is kept.
    pub archive_rounds: usize,
}

/// Reads and validates `federation.toml`. Errors name `path` as given.
pub fn load_federation(path: &Path) -> Result<FederationSpec, ConfigError> {
    let spec: FederationSpec = parse_toml(path)?;
    spec.validate(path)?;
    Ok(spec)
}

/// Reads a node config and everything it names; see [`NodeConfig`]. Relative
/// paths inside it are taken from the directory of the config file (its
/// canonical path, symbolic links resolved). Errors name the absolute path of
/// the file at fault (the node config, or the
/// federation file for problems there) and the field.
pub fn load_node_config(path: &Path) -> Result<NodeConfig, ConfigError> {
    let file = fs::canonicalize(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let raw: NodeConfigFile = parse_toml(&file)?;
    let bad = |field: &str, problem: String| invalid(&file, field, problem);
    let role = raw.role.as_str();

    check_name(&raw.name).map_err(|problem| bad("name", problem))?;
    let federation_file = resolve(&dir, &raw.federation);
    let federation = load_federation(&federation_file)?;
    let party = find_party(&federation, raw.role, &raw.name)
        .cloned()
        .ok_or_else(|| {
            let elsewhere = [Role::Coordinator, Role::Helper, Role::Client, Role::Admin]
                .into_iter()
                .find(|&r| find_party(&federation, r, &raw.name).is_some());
            let hint = match elsewhere {
                Some(other) => format!(" (it is listed as a {})", other.as_str()),
                None => String::new(),
            };
            bad(
                "name",
                format!(
                    "`{}` is not listed as a {role} in {}{hint}",
                    raw.name,
                    federation_file.display()
                ),
            )
        })?;
    let id = PartyId(
        parse_hex32(&party.fingerprint)
            .expect("load_federation validated every party's fingerprint"),
    );
    let serves = matches!(raw.role, Role::Coordinator | Role::Helper);

    match (serves, raw.listen) {
        (true, None) => {
            return Err(bad(
                "listen",
                format!("required for a {role}: the address its gRPC server binds"),
            ));
        }
        (false, Some(_)) => {
            return Err(bad("listen", format!("a {role} serves nothing; remove it")));
        }
        _ => {}
    }
    if raw.metrics_listen.is_some() && raw.metrics_listen == raw.listen {
        return Err(bad(
            "metrics_listen",
            "is the same address as `listen`".into(),
        ));
    }

    let tls_files = TlsFiles {
        ca_cert: resolve(&dir, &raw.tls.ca_cert),
        cert: resolve(&dir, &raw.tls.cert),
        key: resolve(&dir, &raw.tls.key),
    };
    let tls_error = |source: PkiError| {
        let field = match source.file() {
            Some(f) if f == tls_files.ca_cert => "tls.ca_cert",
            Some(f) if f == tls_files.key => "tls.key",
            _ => "tls.cert",
        };
        ConfigError::File {
            file: file.clone(),
            field: field.into(),
            source,
        }
    };
    let tls = TlsMaterial::load(&tls_files.ca_cert, &tls_files.cert, &tls_files.key)
        .map_err(tls_error)?;
    if !party
        .certificates()
        .any(|c| c.eq_ignore_ascii_case(&tls.id().to_hex()))
    {
        return Err(bad(
            "tls.cert",
            format!(
                "{} has fingerprint {}, but {} lists {} with certificate {}",
                tls_files.cert.display(),
                tls.id().to_hex(),
                federation_file.display(),
                raw.name,
                party.certificates().collect::<Vec<_>>().join(" or ")
            ),
        ));
    }
    let server_name = if serves { party.endpoint_host() } else { None };
    tls.verify(server_name, &tls_files.cert)
        .map_err(tls_error)?;

    let signing_key_file = raw.signing_key.as_ref().map(|p| resolve(&dir, p));
    let signing_key = match (serves, &signing_key_file) {
        (true, None) => {
            return Err(bad(
                "signing_key",
                format!("required for a {role}: the file holding its Ed25519 signing key"),
            ));
        }
        (false, Some(_)) => {
            return Err(bad(
                "signing_key",
                "only the coordinator and helpers sign; remove it".into(),
            ));
        }
        (false, None) => None,
        (true, Some(key_file)) => {
            let key = pki::read_signing_key(key_file).map_err(|source| ConfigError::File {
                file: file.clone(),
                field: "signing_key".into(),
                source,
            })?;
            let listed = party.signing_key.as_deref().unwrap_or_default();
            if hex::encode(key.verifying_key().to_bytes()) != listed.to_ascii_lowercase() {
                return Err(bad(
                    "signing_key",
                    format!(
                        "{} does not hold the key whose public half {} lists for {}",
                        key_file.display(),
                        federation_file.display(),
                        raw.name
                    ),
                ));
            }
            Some(key)
        }
    };
    let previous_signing_key = match (&signing_key, &raw.previous_signing_key) {
        (_, None) => None,
        (None, Some(_)) => {
            return Err(bad(
                "previous_signing_key",
                "only a node with a signing key rotates it; remove it".into(),
            ));
        }
        (Some(current), Some(path)) => {
            let key_file = resolve(&dir, path);
            let key = pki::read_signing_key(&key_file).map_err(|source| ConfigError::File {
                file: file.clone(),
                field: "previous_signing_key".into(),
                source,
            })?;
            if key.verifying_key() == current.verifying_key() {
                return Err(bad(
                    "previous_signing_key",
                    format!("{} holds the same key as signing_key", key_file.display()),
                ));
            }
            Some(key)
        }
    };

    let data = match raw.role {
        Role::Client if raw.data.is_empty() => {
            return Err(bad(
                "data",
                "required for a client: where its private data lives, e.g. \
                 [data.salaries] kind = \"csv\", path = \"salaries.csv\""
                    .into(),
            ));
        }
        Role::Client => raw
            .data
            .into_iter()
            .map(|(name, source)| Ok((name.clone(), check_data(&file, &dir, &name, source)?)))
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?,
        _ if !raw.data.is_empty() => {
            return Err(bad(
                "data",
                format!("only clients hold private data, not a {role}; remove it"),
            ));
        }
        _ => BTreeMap::new(),
    };
    let policy = match (raw.role, raw.policy) {
        (Role::Client, Some(p)) if p.min_rows == 0 => {
            return Err(bad(
                "policy.min_rows",
                "must be at least 1 (cells of fewer rows are never released)".into(),
            ));
        }
        (Role::Client, policy) => policy,
        (_, Some(_)) => {
            return Err(bad(
                "policy",
                format!("only clients answer queries, not a {role}; remove it"),
            ));
        }
        (_, None) => None,
    };
    if raw.role != Role::Client && !raw.privacy_budget.is_empty() {
        return Err(bad(
            "privacy_budget",
            format!("only clients hold tables with a privacy budget, not a {role}; remove it"),
        ));
    }
    for (table, budget) in &raw.privacy_budget {
        if !data.contains_key(table) {
            return Err(bad(
                &format!("privacy_budget.{table}"),
                format!(
                    "names no table of this client: add [data.{table}] or remove the budget \
                     (tables: {})",
                    data.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        budget.check().map_err(|(field, problem)| {
            bad(&format!("privacy_budget.{table}.{field}"), problem.into())
        })?;
    }

    Ok(NodeConfig {
        role: raw.role,
        name: raw.name,
        id,
        federation_file,
        federation,
        party,
        listen: raw.listen,
        metrics_listen: raw.metrics_listen,
        data_dir: resolve(&dir, &raw.data_dir),
        database: raw.database,
        tls_files,
        tls,
        signing_key_file,
        signing_key,
        previous_signing_key,
        data,
        policy,
        privacy_budget: raw.privacy_budget,
        archive_rounds: raw
            .archive_rounds
            .unwrap_or(crate::record::DEFAULT_ARCHIVE_ROUNDS),
        file,
    })
}

impl FederationSpec {
    /// Checks everything DESIGN.md §2 asks of a federation before any round:
    /// the protocol version; every party's name, fingerprint, endpoint and
    /// signing key, none repeated; the helper count and threshold for the
    /// mode; `min_clients` within `MIN_MIN_CLIENTS..=clients`; the ring (fp61
    /// in threshold mode); a valid quantization whose sum over all clients
    /// cannot overflow the ring; non-zero windows. `file` names the errors.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, problem: String| invalid(file, field, problem);

        if self.protocol_version != PROTOCOL_VERSION {
            return Err(bad(
                "protocol_version",
                format!(
                    "version {} is not supported; this build speaks version {PROTOCOL_VERSION}",
                    self.protocol_version
                ),
            ));
        }
        if self.federation_id.trim().is_empty() {
            return Err(bad("federation_id", "must not be empty".into()));
        }
        self.check_parties(file)?;

        let helpers = self.helpers.len();
        match self.mode {
            ModeSpec::Additive => {
                sealroom_core::additive::check_helpers(helpers)
                    .map_err(|e| bad("helpers", e.to_string()))?;
                if let Some(t) = self.threshold
                    && t != helpers
                {
                    return Err(bad(
                        "threshold",
                        format!(
                            "additive mode needs all {helpers} helpers; {t} must be left out or equal {helpers}"
                        ),
                    ));
                }
            }
            ModeSpec::Threshold => {
                let Some(t) = self.threshold else {
                    return Err(bad(
                        "threshold",
                        "required in threshold mode: how many helpers must answer".into(),
                    ));
                };
                ShamirParams::new(t, helpers).map_err(|e| match e {
                    SharingError::ThresholdAboveHelpers { .. } => bad(
                        "threshold",
                        format!("{t} exceeds the number of helpers ({helpers})"),
                    ),
                    SharingError::ThresholdTooSmall { .. } => bad(
                        "threshold",
                        format!("{t} is below 2: a single helper would learn every input"),
                    ),
                    other => bad("helpers", other.to_string()),
                })?;
                if 2 * t <= helpers {
                    return Err(bad(
                        "threshold",
                        format!(
                            "{t} of {helpers} helpers is not a majority: two disjoint groups of {t} helpers could answer two different inclusion sets (use at least {})",
                            helpers / 2 + 1
                        ),
                    ));
                }
            }
        }

        let clients = self.clients.len();
        if clients < MIN_MIN_CLIENTS {
            return Err(bad(
                "clients",
                format!("{clients} listed; a federation needs at least {MIN_MIN_CLIENTS}"),
            ));
        }
        if clients > sealroom_protocol::descriptor::MAX_CLIENTS {
            return Err(bad(
                "clients",
                format!(
                    "{clients} listed; a round admits at most {}",
                    sealroom_protocol::descriptor::MAX_CLIENTS
                ),
            ));
        }
        if self.min_clients < MIN_MIN_CLIENTS {
            return Err(bad(
                "min_clients",
                format!(
                    "{} is below {MIN_MIN_CLIENTS}: a sum over one client is that client's input",
                    self.min_clients
                ),
            ));
        }
        if self.min_clients > clients {
            return Err(bad(
                "min_clients",
                format!(
                    "{} exceeds the number of clients ({clients})",
                    self.min_clients
                ),
            ));
        }
        if self.upload_window_ms == 0 {
            return Err(bad("upload_window_ms", "must be positive".into()));
        }
        if self.aggregation_window_ms == 0 {
            return Err(bad("aggregation_window_ms", "must be positive".into()));
        }
        if self.engine_key_epoch_s == 0 {
            return Err(bad(
                "engine_key_epoch_s",
                "must be positive (seconds an engine key epoch lives)".into(),
            ));
        }

        let q = &self.quantization;
        let ring = q.ring_kind().ok_or_else(|| {
            bad(
                "quantization.ring",
                format!(
                    "unknown ring {:?}; expected one of {}",
                    q.ring,
                    RINGS
                        .iter()
                        .map(|r| r.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if self.mode == ModeSpec::Threshold && ring != RingKind::Fp61 {
            return Err(bad(
                "quantization.ring",
                format!("threshold mode computes in fp61, not {ring}"),
            ));
        }
        let spec = QuantSpec::new(q.scale_bits, q.clip, q.bits).map_err(|e| {
            let field = match e {
                QuantError::BitsOutOfRange { .. } => "quantization.bits",
                QuantError::ScaleOutOfRange { .. } => "quantization.scale_bits",
                _ => "quantization.clip",
            };
            bad(field, e.to_string())
        })?;
        sealroom_core::fits(ring, clients as u64, spec)
            .map_err(|e| bad("quantization.bits", e.to_string()))?;
        Ok(())
    }

    /// Names, fingerprints, endpoints and signing keys of every party, and
    /// that no name, fingerprint or signing key is used twice.
    fn check_parties(&self, file: &Path) -> Result<(), ConfigError> {
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut fingerprints: HashMap<[u8; 32], String> = HashMap::new();
        let mut keys: HashMap<[u8; 32], String> = HashMap::new();
        let parties = std::iter::once(("coordinator".to_string(), &self.coordinator, true))
            .chain(
                self.helpers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("helpers[{i}]"), p, true)),
            )
            .chain(
                self.clients
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("clients[{i}]"), p, false)),
            )
            .chain(
                self.admins
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("admins[{i}]"), p, false)),
            );
        for (at, party, serves) in parties {
            let bad =
                |field: &str, problem: String| invalid(file, &format!("{at}.{field}"), problem);
            check_name(&party.name).map_err(|problem| bad("name", problem))?;
            if let Some(other) = names.insert(&party.name, at.clone()) {
                return Err(bad(
                    "name",
                    format!("`{}` is also the name of {other}", party.name),
                ));
            }
            let fingerprint = parse_hex32(&party.fingerprint).map_err(|problem| {
                bad(
                    "fingerprint",
                    format!("{problem} (SHA-256 of the certificate, hex)"),
                )
            })?;
            if let Some(other) = fingerprints.insert(fingerprint, at.clone()) {
                return Err(bad(
                    "fingerprint",
                    format!(
                        "also the fingerprint of {other}: every party needs its own certificate"
                    ),
                ));
            }
            // Rotated certificates: each is this party's alone, and the
            // one presented now is not also the one being replaced.
            let mut own = vec![fingerprint];
            for (field, value) in [
                ("certificate", &party.certificate),
                ("previous_certificate", &party.previous_certificate),
            ] {
                let Some(value) = value else { continue };
                let cert = parse_hex32(value).map_err(|problem| {
                    bad(field, format!("{problem} (SHA-256 of a certificate, hex)"))
                })?;
                if field == "certificate" && cert == fingerprint {
                    return Err(bad(
                        field,
                        "is the party's own fingerprint: remove it (it presents that certificate)"
                            .into(),
                    ));
                }
                if own.contains(&cert) && field == "previous_certificate" && cert == fingerprint {
                    continue;
                }
                if own.contains(&cert) {
                    return Err(bad(
                        field,
                        "is the certificate the party presents now: the replaced one must differ"
                            .into(),
                    ));
                }
                if let Some(other) = fingerprints.insert(cert, format!("{at}.{field}")) {
                    return Err(bad(
                        field,
                        format!("also the certificate of {other}: every party needs its own"),
                    ));
                }
                own.push(cert);
            }
            if party.previous_certificate.is_some() && party.certificate.is_none() {
                return Err(bad(
                    "previous_certificate",
                    "a replaced certificate needs `certificate`, the one presented now".into(),
                ));
            }
            match (&party.endpoint, serves) {
                (None, true) => {
                    return Err(bad(
                        "endpoint",
                        "required for the coordinator and helpers (host:port)".into(),
                    ));
                }
                (Some(endpoint), _) => {
                    split_endpoint(endpoint).ok_or_else(|| {
                        bad(
                            "endpoint",
                            format!("{endpoint:?} is not host:port (IPv6 as [addr]:port)"),
                        )
                    })?;
                }
                (None, false) => {}
            }
            match (&party.signing_key, serves) {
                (None, true) => {
                    return Err(bad(
                        "signing_key",
                        "required for the coordinator and helpers (Ed25519 public key, hex)".into(),
                    ));
                }
                (Some(hex_key), _) => {
                    let bytes = parse_hex32(hex_key).map_err(|problem| {
                        bad(
                            "signing_key",
                            format!("{problem} (Ed25519 public key, hex)"),
                        )
                    })?;
                    VerifyingKey::from_bytes(&bytes)
                        .map_err(|_| bad("signing_key", "not a valid Ed25519 public key".into()))?;
                    if let Some(other) = keys.insert(bytes, at.clone()) {
                        return Err(bad(
                            "signing_key",
                            format!("also the signing key of {other}: every party needs its own"),
                        ));
                    }
                }
                (None, false) => {}
            }
            if !serves && party.key_epoch != 0 {
                return Err(bad(
                    "key_epoch",
                    "only the coordinator's and helpers' signing keys have epochs; remove it"
                        .into(),
                ));
            }
            if let Some(hex_key) = &party.previous_signing_key {
                if !serves {
                    return Err(bad(
                        "previous_signing_key",
                        "only the coordinator's and helpers' signing keys rotate; remove it".into(),
                    ));
                }
                let bytes = parse_hex32(hex_key).map_err(|problem| {
                    bad(
                        "previous_signing_key",
                        format!("{problem} (Ed25519 public key, hex)"),
                    )
                })?;
                VerifyingKey::from_bytes(&bytes).map_err(|_| {
                    bad(
                        "previous_signing_key",
                        "not a valid Ed25519 public key".into(),
                    )
                })?;
                if party.key_epoch == 0 {
                    return Err(bad(
                        "previous_signing_key",
                        "a replaced key needs `key_epoch` ≥ 1, the epoch the new key signs from"
                            .into(),
                    ));
                }
                if let Some(other) = keys.insert(bytes, format!("{at} (previous)")) {
                    return Err(bad(
                        "previous_signing_key",
                        format!("also the signing key of {other}: every key is used once"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The party listed under `role` with this name.
    pub fn party(&self, role: Role, name: &str) -> Option<&PartySpec> {
        find_party(self, role, name)
    }
}

impl QuantizationSpec {
    /// The ring this spec names, if it is one sealroom knows.
    pub fn ring_kind(&self) -> Option<RingKind> {
        RINGS.iter().copied().find(|r| r.name() == self.ring)
    }
}

impl PartySpec {
    /// The fingerprints of the certificates this party may present, hex
    /// as written: the one it presents now (`certificate`, else its
    /// identity `fingerprint`) and, during a rotation, the one replaced.
    pub fn certificates(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.certificate.as_deref().unwrap_or(&self.fingerprint))
            .chain(self.previous_certificate.as_deref())
    }

    /// The host part of the endpoint (without IPv6 brackets): the name a
    /// client passes to [`pki::client_tls`] and the certificate covers.
    pub fn endpoint_host(&self) -> Option<&str> {
        self.endpoint
            .as_deref()
            .and_then(split_endpoint)
            .map(|(host, _)| host)
    }
}

/// Splits `host:port` (IPv6 as `[addr]:port`) into the host, without
/// brackets, and a non-zero port. The host must be an IP address or a DNS
/// name.
pub fn split_endpoint(endpoint: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, port)
    } else {
        let (host, port) = endpoint.rsplit_once(':')?;
        let dns_or_v4 = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !dns_or_v4 {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    if host.parse::<IpAddr>().is_err() && host.starts_with(['-', '.']) {
        return None;
    }
    Some((host, port))
}

fn find_party<'a>(federation: &'a FederationSpec, role: Role, name: &str) -> Option<&'a PartySpec> {
    match role {
        Role::Coordinator => Some(&federation.coordinator).filter(|p| p.name == name),
        Role::Helper => federation.helpers.iter().find(|p| p.name == name),
        Role::Client => federation.clients.iter().find(|p| p.name == name),
        Role::Admin => federation.admins.iter().find(|p| p.name == name),
    }
}

/// Checks one of a client's data sources and makes its paths absolute.
fn check_data(
    file: &Path,
    dir: &Path,
    name: &str,
    data: DataSource,
) -> Result<DataSource, ConfigError> {
    let field = |f: &str| format!("data.{name}.{f}");
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(invalid(
            file,
            "data",
            format!("table name {name:?} must be letters, digits, '_' or '-'"),
        ));
    }
    let existing_file = |path: PathBuf| {
        let path = resolve(dir, &path);
        if path.is_file() {
            Ok(path)
        } else {
            Err(invalid(
                file,
                &field("path"),
                format!("{} is not a readable file", path.display()),
            ))
        }
    };
    let table_name = |table: &str| {
        if table.is_empty() {
            Err(invalid(file, &field("table"), "must not be empty".into()))
        } else {
            Ok(())
        }
    };
    match data {
        DataSource::Csv { path } => Ok(DataSource::Csv {
            path: existing_file(path)?,
        }),
        DataSource::Sqlite { path, table } => {
            table_name(&table)?;
            Ok(DataSource::Sqlite {
                path: existing_file(path)?,
                table,
            })
        }
        DataSource::Postgres { url, table } => {
            table_name(&table)?;
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    file,
                    &field("url"),
                    "must start with postgres:// or postgresql://".into(),
                ));
            }
            Ok(DataSource::Postgres { url, table })
        }
        DataSource::Builtin {
            dataset,
            part,
            parts,
        } => {
            if !BUILTIN_DATASETS.contains(&dataset.as_str()) {
                return Err(invalid(
                    file,
                    &field("dataset"),
                    format!(
                        "unknown data set {dataset:?}; expected one of {}",
                        BUILTIN_DATASETS.join(", ")
                    ),
                ));
            }
            if parts == 0 {
                return Err(invalid(file, &field("parts"), "must be at least 1".into()));
            }
            if part >= parts {
                return Err(invalid(
                    file,
                    &field("part"),
                    format!("{part} is not below `parts` ({parts}); parts count from 0"),
                ));
            }
            Ok(DataSource::Builtin {
                dataset,
                part,
                parts,
            })
        }
    }
}

/// Names go into certificates' common names and file names: 1 to 64 ASCII
/// letters, digits, `-`, `_` or `.`, not starting with `.` or `-`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' or '-'"
        ))
    }
}

/// 64 hex characters as 32 bytes.
fn parse_hex32(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex characters, found {}",
            text.chars().count()
        ));
    }
    hex::decode_to_slice(text, &mut out).map_err(|e| format!("not hex: {e}"))?;
    Ok(out)
}

fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn invalid(file: &Path, field: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        field: field.to_string(),
        problem,
    }
}

/// Reads and parses a TOML file into `T`; unknown fields are errors (every
/// config struct denies them).
fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Syntax {
        file: file.to_path_buf(),
        field: field_in_message(e.message()),
        message: e.to_string().trim_end().to_string(),
    })
}

/// The field serde names in "unknown field `x`", "missing field `x`" or
/// "duplicate field `x`".
fn field_in_message(message: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| {
            let start = message.find(prefix)? + prefix.len();
            let len = message[start..].find('`')?;
            Some(message[start..start + len].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(split_endpoint("127.0.0.1:7400"), Some(("127.0.0.1", 7400)));
        assert_eq!(split_endpoint("[::1]:7401"), Some(("::1", 7401)));
        assert_eq!(
            split_endpoint("helper0.example:443"),
            Some(("helper0.example", 443))
        );
        for bad in [
            "",
            "host",
            ":7400",
            "host:0",
            "host:70000",
            "::1:7400",
            "[::1]7400",
            "[nope]:1",
            "a b:1",
            "-x:1",
        ] {
            assert_eq!(split_endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("helper-0").is_ok());
        assert!(check_name("a.b_c").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex32() {
        assert_eq!(parse_hex32(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(parse_hex32(&"ab".repeat(31)).is_err());
        assert!(parse_hex32(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn serde_field_names_are_extracted() {
        assert_eq!(
            field_in_message("unknown field `bogus`, expected one of `a`, `b`"),
            Some("bogus".into())
        );
        assert_eq!(
            field_in_message("missing field `min_clients`"),
            Some("min_clients".into())
        );
        assert_eq!(field_in_message("invalid type: string"), None);
    }

    #[test]
    fn rings_by_name() {
        for ring in RINGS {
            let q = QuantizationSpec {
                ring: ring.name().into(),
                scale_bits: 16,
                clip: 64.0,
                bits: 24,
            };
            assert_eq!(q.ring_kind(), Some(*ring));
        }
    }
}
