//! Reloading `federation.toml` while a node runs: revocation without a
//! restart.
//!
//! On SIGHUP ([`reload_on_hangup`]) a node reads its config and the
//! federation file again, with every check it makes at start, and replaces
//! the parties its TLS server lets in ([`crate::tls::Registry::replace`]):
//! a client or admin removed from the file (or whose fingerprint changed) is
//! refused at its next handshake, and its open connections close at once.
//! A coordinator puts only the listed clients into its next rounds.
//!
//! The coordinator's and the helpers' signing keys rotate live too (issue
//! #13; the runbook's "Rotating a signing key"). The party's federation
//! entry names the new `signing_key`, a `key_epoch` above the running one
//! and the replaced key as `previous_signing_key`: every node that reloads
//! trusts both — the coordinator's old key for descriptors of the epochs
//! before `key_epoch` (rounds under way) and the new one from `key_epoch`
//! on; a helper's old and new key alike, also for the rounds under way. The
//! rotating node, reloaded last with its config naming the new key file and
//! the old one as `previous_signing_key`, signs from then on with the new
//! key (a coordinator: every round it starts, at the new epoch), and enters
//! the new key into its audit log signed by the old one. A later reload
//! without `previous_signing_key` retires the old key: it is refused
//! everywhere.
//!
//! Everything else about the coordinator and the helpers (identities,
//! endpoints, the helper set), the mode, thresholds, windows and quantization
//! are bound into stored rounds and every party's view of the protocol: a
//! reload that changes any of them is refused as a whole, the node keeps
//! running with what it had, and the error says what differs (the runbook's
//! replacement procedures cover those changes). The `[privacy]` rules
//! (`require_dp`) are read by each client when it starts: changing them is
//! refused too, and takes a restart of every node.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, FederationSpec, load_node_config};
use crate::context::NodeContext;
use crate::directory::{Directory, DirectoryError};
use crate::shutdown::Shutdown;

/// What a reload changed, by party name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Parties now registered that were not.
    pub added: Vec<String>,
    /// Parties no longer registered (their connections were closed).
    pub removed: Vec<String>,
    /// Parties whose identity changed (a new `fingerprint`: the old
    /// certificate is refused, and the party is a new one to every round).
    pub replaced: Vec<String>,
    /// Parties whose accepted certificates changed with the same identity
    /// (a certificate rotation begun or retired).
    pub certificates: Vec<String>,
    /// The certificate this node presents from now on, if the reload
    /// switched it (its own certificate rotation).
    pub own_certificate: Option<String>,
    /// What happened to signing keys, one line per party whose key entry
    /// changed (`coordinator: rotated …`, `helper-1: previous key retired`).
    pub keys: Vec<String>,
}

/// Why a reload was refused; the node goes on with the parties it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config or federation file does not load (it names the file and
    /// the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A party's identity or key does not parse.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// This node's new certificate cannot be used.
    #[error("{file}: tls.cert: {source}")]
    Certificate {
        /// This node's config.
        file: PathBuf,
        /// Why.
        source: crate::pki::PkiError,
    },
    /// The file changes something a running federation cannot change.
    #[error(
        "{file}: `{field}` changed; only clients and admins can change while nodes run (restart every node for the rest, see the runbook)"
    )]
    NotLive {
        /// The federation file.
        file: PathBuf,
        /// The first field that differs.
        field: &'static str,
    },
    /// A signing key entry changed in a way that is not a rotation or a
    /// retirement.
    #[error("{file}: {party} key: {problem} (see the runbook, \"Rotating a signing key\")")]
    KeyChange {
        /// The federation file (or this node's config).
        file: PathBuf,
        /// Whose key (`coordinator`, `helper "helper-1"`).
        party: String,
        /// What is wrong.
        problem: String,
    },
}

/// A legal change of a signing party's key entry.
enum KeyChange {
    /// A new key from a higher epoch, the running key now its previous one.
    Rotated,
    /// The previous key dropped: refused from now on.
    Retired,
}

/// Classifies a signing party's key entry in `new` against the running one.
fn key_change(
    running: &crate::directory::Party,
    new: &crate::directory::Party,
) -> Result<Option<KeyChange>, String> {
    let same_key = running.signing_key == new.signing_key;
    if same_key && running.key_epoch == new.key_epoch {
        return match (running.previous_key, new.previous_key) {
            (a, b) if a == b => Ok(None),
            (Some(_), None) => Ok(Some(KeyChange::Retired)),
            _ => Err("previous_signing_key changed while signing_key did not".into()),
        };
    }
    if same_key {
        return Err(format!(
            "key_epoch changed from {} to {} while signing_key did not",
            running.key_epoch, new.key_epoch
        ));
    }
    if new.key_epoch <= running.key_epoch {
        return Err(format!(
            "a new signing_key needs key_epoch above the running {} (got {})",
            running.key_epoch, new.key_epoch
        ));
    }
    if new.previous_key != running.signing_key {
        return Err(
            "a new signing_key needs previous_signing_key = the key it replaces (the running one)"
                .into(),
        );
    }
    Ok(Some(KeyChange::Rotated))
}

/// Reloads `config_path` (this node's config) and its federation file into
/// `ctx`'s registry; see the module docs.
pub fn reload(ctx: &NodeContext, config_path: &Path) -> Result<ReloadReport, ReloadError> {
    let config = load_node_config(config_path)?;
    let new = &config.federation;
    if let Some(field) = first_fixed_difference(&ctx.federation, new) {
        return Err(ReloadError::NotLive {
            file: config.federation_file.clone(),
            field,
        });
    }
    let directory = Directory::new(new)?;
    let old = ctx.live_directory();
    // The signing parties in the same order in both (first_fixed_difference
    // checked that the helper set is the same).
    let signing = |d: &Directory| -> Vec<crate::directory::Party> {
        std::iter::once(d.coordinator.clone())
            .chain(d.helpers.iter().cloned())
            .collect()
    };
    let mut changes = Vec::new();
    for (running, new) in signing(&old).iter().zip(signing(&directory).iter()) {
        let who = match new.role {
            crate::config::Role::Coordinator => "coordinator".to_string(),
            role => format!("{} {:?}", role.as_str(), new.name),
        };
        if let Some(change) =
            key_change(running, new).map_err(|problem| ReloadError::KeyChange {
                file: config.federation_file.clone(),
                party: who.clone(),
                problem,
            })?
        {
            changes.push((running.clone(), new.clone(), who, change));
        }
    }
    // A rotating node switches signers: its config must name the new key
    // (load_node_config checked it is the one the federation lists) and, as
    // previous_signing_key, the key it signs with now.
    let mut signers = None;
    if let Some((running, _, who, _)) = changes
        .iter()
        .find(|(_, new, _, c)| new.name == ctx.name && matches!(c, KeyChange::Rotated))
    {
        let refuse = |problem: &str| ReloadError::KeyChange {
            file: config.file.clone(),
            party: who.clone(),
            problem: problem.into(),
        };
        let (Some(signer), Some(previous)) = (config.signing_key, config.previous_signing_key)
        else {
            return Err(refuse(
                "this node's config must name the new key file as signing_key and the \
                 replaced one as previous_signing_key",
            ));
        };
        if Some(previous.verifying_key()) != running.signing_key {
            return Err(refuse(
                "previous_signing_key is not the key this node signs with now",
            ));
        }
        signers = Some((
            std::sync::Arc::new(signer) as sealroom_protocol::SharedSigner,
            std::sync::Arc::new(previous) as sealroom_protocol::SharedSigner,
        ));
    }
    let mut report = compare(&old, &directory);
    report.keys = changes
        .iter()
        .map(|(_, new, who, c)| match (c, new.role) {
            (KeyChange::Rotated, crate::config::Role::Coordinator) => format!(
                "{who}: rotated: key epoch {} from now on, the previous key trusted for the epochs before",
                new.key_epoch
            ),
            (KeyChange::Rotated, _) => format!(
                "{who}: rotated to key epoch {}: the new key and the previous one trusted",
                new.key_epoch
            ),
            (KeyChange::Retired, _) => format!("{who}: previous key retired: refused from now on"),
        })
        .collect();
    // This node's own certificate rotation: its config names another
    // certificate than the one it presents (load_node_config checked that
    // the federation lets this node present it).
    let presented = ctx.tls.live_cert().fingerprint();
    let own_certificate = (config.tls.id() != presented).then(|| config.tls.clone());
    // Switched first: it fails (a certificate from another CA) before
    // anything else of the reload takes effect.
    if let Some(new) = own_certificate {
        ctx.tls
            .switch_to(&new)
            .map_err(|source| ReloadError::Certificate {
                file: config.file.clone(),
                source,
            })?;
        if let Some(not_after) = new.not_after_unix() {
            ctx.metrics.certificate_expiry(not_after);
        }
        report.own_certificate = Some(new.id().to_hex());
    }
    let directory = std::sync::Arc::new(directory);
    ctx.registry.replace(&directory);
    if !report.keys.is_empty() {
        ctx.key_updates
            .send_replace(Some(crate::context::KeyUpdate { directory, signers }));
    }
    Ok(report)
}

/// Whether two signing parties' entries differ in anything but their keys.
fn same_but_keys(a: &crate::config::PartySpec, b: &crate::config::PartySpec) -> bool {
    let strip = |p: &crate::config::PartySpec| crate::config::PartySpec {
        signing_key: None,
        key_epoch: 0,
        previous_signing_key: None,
        certificate: None,
        previous_certificate: None,
        ..p.clone()
    };
    strip(a) == strip(b)
}

/// The first field other than `clients` and `admins` in which `new`
/// differs from `running`.
fn first_fixed_difference(running: &FederationSpec, new: &FederationSpec) -> Option<&'static str> {
    // Exhaustive: a field added to FederationSpec stops the build here
    // until it is classified.
    let FederationSpec {
        federation_id: _,
        protocol_version: _,
        mode: _,
        threshold: _,
        min_clients: _,
        upload_window_ms: _,
        aggregation_window_ms: _,
        quantization: _,
        coordinator: _,
        helpers: _,
        clients: _,
        admins: _,
        allow_unverified_threshold_release: _,
        engine_key_epoch_s: _,
        privacy: _,
    } = new;
    let fields: [(&'static str, bool); 13] = [
        ("federation_id", running.federation_id == new.federation_id),
        (
            "protocol_version",
            running.protocol_version == new.protocol_version,
        ),
        ("mode", running.mode == new.mode),
        ("threshold", running.threshold == new.threshold),
        ("min_clients", running.min_clients == new.min_clients),
        (
            "upload_window_ms",
            running.upload_window_ms == new.upload_window_ms,
        ),
        (
            "aggregation_window_ms",
            running.aggregation_window_ms == new.aggregation_window_ms,
        ),
        ("quantization", running.quantization == new.quantization),
        (
            "coordinator",
            same_but_keys(&running.coordinator, &new.coordinator),
        ),
        (
            "helpers",
            running.helpers.len() == new.helpers.len()
                && running
                    .helpers
                    .iter()
                    .zip(&new.helpers)
                    .all(|(a, b)| same_but_keys(a, b)),
        ),
        (
            "allow_unverified_threshold_release",
            running.allow_unverified_threshold_release == new.allow_unverified_threshold_release,
        ),
        (
            "engine_key_epoch_s",
            running.engine_key_epoch_s == new.engine_key_epoch_s,
        ),
        // A client reads `require_dp` when it starts, into its query input.
        ("privacy", running.privacy == new.privacy),
    ];
    fields
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(field, _)| field)
}

fn compare(old: &Directory, new: &Directory) -> ReloadReport {
    let mut report = ReloadReport::default();
    for p in new.parties() {
        match old.by_name(&p.name) {
            None => report.added.push(p.name.clone()),
            Some(before) if before.id != p.id || before.role != p.role => {
                report.replaced.push(p.name.clone());
            }
            Some(before) if before.certificates != p.certificates => {
                report.certificates.push(p.name.clone());
            }
            Some(_) => {}
        }
    }
    for p in old.parties() {
        if new.by_name(&p.name).is_none() {
            report.removed.push(p.name.clone());
        }
    }
    report
}

/// Reloads on every SIGHUP until `shutdown`; each outcome is logged (a
/// refused reload at `error`, with what differs).
pub async fn reload_on_hangup(ctx: NodeContext, config_path: PathBuf, shutdown: Shutdown) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; federation.toml is read only at start");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                }
                () = shutdown.wait() => return,
            }
            match reload(&ctx, &config_path) {
                Ok(r) => tracing::info!(
                    added = ?r.added,
                    removed = ?r.removed,
                    replaced = ?r.replaced,
                    certificates = ?r.certificates,
                    own_certificate = r.own_certificate.as_deref().unwrap_or("unchanged"),
                    keys = ?r.keys,
                    "federation.toml reloaded"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "federation.toml reload refused; keeping the parties loaded before")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (ctx, config_path, shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyChange, first_fixed_difference, key_change};
    use crate::config::Role;
    use crate::directory::Party;
    use sealroom_protocol::{PartyId, SigningKey, VerifyingKey};

    fn vk(byte: u8) -> VerifyingKey {
        SigningKey::from_secret_bytes(&[byte; 32]).verifying_key()
    }

    fn coordinator(key: u8, epoch: u64, previous: Option<u8>) -> Party {
        Party {
            id: PartyId::from_slice(&[9; 32]).expect("32 bytes"),
            certificates: Vec::new(),
            role: Role::Coordinator,
            name: "coordinator".into(),
            endpoint: None,
            signing_key: Some(vk(key)),
            key_epoch: epoch,
            previous_key: previous.map(vk),
        }
    }

    #[test]
    fn rotations_and_retirements_are_the_only_key_changes() {
        let running = coordinator(1, 0, None);
        assert!(matches!(key_change(&running, &running), Ok(None)));
        assert!(matches!(
            key_change(&running, &coordinator(2, 1, Some(1))),
            Ok(Some(KeyChange::Rotated))
        ));
        let rotated = coordinator(2, 1, Some(1));
        assert!(matches!(
            key_change(&rotated, &coordinator(2, 1, None)),
            Ok(Some(KeyChange::Retired))
        ));
        // A new key at the same or a lower epoch, a new key that does not
        // name the running one as replaced, an epoch bump without a new key,
        // a previous key appearing from nowhere: all refused.
        for (new, why) in [
            (coordinator(2, 0, Some(1)), "above the running"),
            (coordinator(2, 1, Some(3)), "the key it replaces"),
            (coordinator(2, 1, None), "the key it replaces"),
            (coordinator(1, 1, None), "key_epoch changed"),
            (coordinator(1, 0, Some(3)), "previous_signing_key changed"),
        ] {
            let refused = key_change(&running, &new).err().unwrap_or_default();
            assert!(refused.contains(why), "{refused:?} should say {why:?}");
        }
    }

    /// The `[privacy]` rules are read when a node starts: a reload that
    /// changes them is refused, naming them.
    #[test]
    fn privacy_rules_change_only_with_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary =
            crate::init::init_federation(dir.path(), &crate::init::InitOptions::default())
                .expect("init");
        let running =
            crate::config::load_federation(&summary.federation_file).expect("federation loads");
        assert_eq!(first_fixed_difference(&running, &running.clone()), None);
        let mut new = running.clone();
        new.privacy.require_dp = true;
        assert_eq!(first_fixed_difference(&running, &new), Some("privacy"));
    }
}
