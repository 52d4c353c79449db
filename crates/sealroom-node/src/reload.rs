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
//! The coordinator's signing key rotates live too (issue #13; the runbook's
//! "Rotating the coordinator's signing key"). Its federation entry names the
//! new `signing_key`, a `key_epoch` above the running one and the replaced
//! key as `previous_signing_key`: every node that reloads trusts the old
//! key for descriptors of the epochs before `key_epoch` (rounds under way)
//! and the new one from `key_epoch` on. The coordinator, reloaded last with
//! its config naming the new key file and the old one as
//! `previous_signing_key`, signs every round it starts from then on with the
//! new key at the new epoch, and enters the new key into its audit log
//! signed by the old one. A later reload without `previous_signing_key`
//! retires the old key: it is refused everywhere.
//!
//! Everything else about the coordinator and the helpers (identities,
//! helper keys, endpoints), the mode, thresholds, windows and quantization
//! are bound into stored rounds and every party's view of the protocol: a
//! reload that changes any of them is refused as a whole, the node keeps
//! running with what it had, and the error says what differs (the runbook's
//! replacement procedures cover those changes).

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
    /// Parties whose certificate changed (the old one is refused).
    pub replaced: Vec<String>,
    /// What happened to the coordinator's signing key, if anything.
    pub coordinator_key: Option<String>,
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
    /// The coordinator's key entry changed in a way that is not a rotation
    /// or a retirement.
    #[error(
        "{file}: coordinator key: {problem} (see the runbook, \"Rotating the coordinator's signing key\")"
    )]
    KeyChange {
        /// The federation file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// A legal change of the coordinator's key entry.
enum KeyChange {
    /// A new key from a higher epoch, the running key now its previous one.
    Rotated,
    /// The previous key dropped: refused from now on.
    Retired,
}

/// Classifies the coordinator's key entry in `new` against the running one.
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
    let change = key_change(&old.coordinator, &directory.coordinator).map_err(|problem| {
        ReloadError::KeyChange {
            file: config.federation_file.clone(),
            problem,
        }
    })?;
    // The coordinator switches signers on a rotation: its config must name
    // the new key (load_node_config checked it is the one the federation
    // lists) and, as previous_signing_key, the key it signs with now.
    let signers = match (&change, ctx.role) {
        (Some(KeyChange::Rotated), crate::config::Role::Coordinator) => {
            let (Some(signer), Some(previous)) = (config.signing_key, config.previous_signing_key)
            else {
                return Err(ReloadError::KeyChange {
                    file: config.file.clone(),
                    problem: "this node's config must name the new key file as signing_key and \
                              the replaced one as previous_signing_key"
                        .into(),
                });
            };
            if Some(previous.verifying_key()) != old.coordinator.signing_key {
                return Err(ReloadError::KeyChange {
                    file: config.file.clone(),
                    problem: "previous_signing_key is not the key this node signs with now".into(),
                });
            }
            Some((
                std::sync::Arc::new(signer) as sealroom_protocol::SharedSigner,
                std::sync::Arc::new(previous) as sealroom_protocol::SharedSigner,
            ))
        }
        _ => None,
    };
    let mut report = compare(&old, &directory);
    report.coordinator_key = change.map(|c| match c {
        KeyChange::Rotated => format!(
            "rotated: key epoch {} from now on, the previous key trusted for the epochs before",
            directory.coordinator.key_epoch
        ),
        KeyChange::Retired => "previous key retired: refused from now on".into(),
    });
    let directory = std::sync::Arc::new(directory);
    ctx.registry.replace(&directory);
    if report.coordinator_key.is_some() {
        ctx.key_updates
            .send_replace(Some(crate::context::KeyUpdate { directory, signers }));
    }
    Ok(report)
}

/// Whether two coordinator entries differ in anything but their keys.
fn same_but_keys(a: &crate::config::PartySpec, b: &crate::config::PartySpec) -> bool {
    let strip = |p: &crate::config::PartySpec| crate::config::PartySpec {
        signing_key: None,
        key_epoch: 0,
        previous_signing_key: None,
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
    } = new;
    let fields: [(&'static str, bool); 11] = [
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
        ("helpers", running.helpers == new.helpers),
        (
            "allow_unverified_threshold_release",
            running.allow_unverified_threshold_release == new.allow_unverified_threshold_release,
        ),
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
                    coordinator_key = r.coordinator_key.as_deref().unwrap_or("unchanged"),
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
    use super::{KeyChange, key_change};
    use crate::config::Role;
    use crate::directory::Party;
    use sealroom_protocol::{PartyId, SigningKey, VerifyingKey};

    fn vk(byte: u8) -> VerifyingKey {
        SigningKey::from_secret_bytes(&[byte; 32]).verifying_key()
    }

    fn coordinator(key: u8, epoch: u64, previous: Option<u8>) -> Party {
        Party {
            id: PartyId::from_slice(&[9; 32]).expect("32 bytes"),
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
}
