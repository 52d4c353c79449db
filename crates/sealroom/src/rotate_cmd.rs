//! `sealroom rotate-key`: rotate the coordinator's or a helper's signing
//! key without stopping the federation (issue #13), and retire the old key
//! afterwards.
//!
//! A rotation writes a new key file (0600, from the OS generator), points
//! the node's config at it with the current key as `previous_signing_key`,
//! and updates the node's entry in `federation.toml`: the new
//! `signing_key`, `key_epoch` one above the running one and the old key as
//! `previous_signing_key`. Nodes take it on SIGHUP (see
//! `sealroom_node::reload`): every other node first, then the rotating one.
//! `--retire` then drops `previous_signing_key` from `federation.toml`, and
//! the next SIGHUP makes every node refuse the old key.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use sealroom_node::config::{Role, load_node_config};
use sealroom_node::pki;

use crate::rotate_cert_cmd::party_entry;

/// `sealroom rotate-key`.
#[derive(Args, Debug)]
pub struct RotateKeyArgs {
    /// The config file of the coordinator or helper whose key rotates (its
    /// key file and federation.toml are found from it; both are rewritten).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Instead of rotating: drop the replaced key from federation.toml, once
    /// every round begun under it is over (then SIGHUP every node).
    #[arg(long)]
    retire: bool,
}

/// Runs `sealroom rotate-key`.
pub fn run(args: &RotateKeyArgs) -> anyhow::Result<()> {
    let config = load_node_config(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if !matches!(config.role, Role::Coordinator | Role::Helper) {
        bail!(
            "{} is a {} config: only the coordinator and helpers have signing keys",
            args.config.display(),
            config.role.as_str()
        );
    }
    let who = match config.role {
        Role::Coordinator => "the coordinator".to_string(),
        _ => format!("helper {:?}", config.name),
    };
    let federation_file = config.federation_file.clone();
    let mut federation = read_table(&federation_file)?;
    let entry = party_entry(&mut federation, config.role, &config.name)
        .with_context(|| format!("{}: no entry for {who}", federation_file.display()))?;
    if args.retire {
        if entry.remove("previous_signing_key").is_none() {
            bail!(
                "{}: {who} has no previous_signing_key: nothing to retire",
                federation_file.display()
            );
        }
        write_table(&federation_file, &federation)?;
        println!(
            "retired the previous key of {who} in {}.\n\
             Copy it to every node and send each node SIGHUP: the old key is refused from then on.",
            federation_file.display()
        );
        return Ok(());
    }
    if entry.contains_key("previous_signing_key") {
        bail!(
            "{}: a rotation is already under way (previous_signing_key is set): finish it with \
             `sealroom rotate-key --retire --config {}` first",
            federation_file.display(),
            args.config.display()
        );
    }
    let (Some(old_key), Some(old_file)) = (&config.signing_key, &config.signing_key_file) else {
        bail!("{}: {who} has no signing_key", args.config.display());
    };
    let epoch = config.party.key_epoch + 1;
    let new_key = pki::generate_signing_key();
    let new_file = next_key_file(old_file, epoch);
    pki::write_signing_key(&new_file, &new_key, false)
        .with_context(|| format!("writing {}", new_file.display()))?;
    let hex_of = |k: &sealroom_protocol::SigningKey| hex::encode(k.verifying_key().to_bytes());
    entry.insert("signing_key".into(), hex_of(&new_key).into());
    entry.insert("key_epoch".into(), toml::Value::Integer(epoch as i64));
    entry.insert("previous_signing_key".into(), hex_of(old_key).into());

    let mut node = read_table(&args.config)?;
    node.insert("signing_key".into(), new_file.display().to_string().into());
    node.insert(
        "previous_signing_key".into(),
        old_file.display().to_string().into(),
    );
    // federation.toml first: a node restarted in between refuses to start
    // (its key file is not the listed one) rather than run on a key nobody
    // trusts.
    write_table(&federation_file, &federation)?;
    write_table(&args.config, &node)?;
    let switch = match config.role {
        Role::Coordinator => "rounds it starts from then on are signed with the new key",
        _ => "it signs everything from then on with the new key",
    };
    println!(
        "new signing key of {who} for key epoch {epoch}: {}\n\
         updated {} (signing_key, key_epoch = {epoch}, previous_signing_key) and {}.\n\
         Next:\n\
         1. copy {} to every node and send every other node SIGHUP\n\
            (each logs \"federation.toml reloaded\" with the rotation in `keys`);\n\
         2. then send {who} SIGHUP: {switch};\n\
         3. once the rounds begun before are over, run\n\
            sealroom rotate-key --retire --config {}\n\
            and send every node SIGHUP again: the old key is then refused everywhere.",
        new_file.display(),
        federation_file.display(),
        args.config.display(),
        federation_file.display(),
        args.config.display()
    );
    Ok(())
}

/// `coordinator.key` → `coordinator-epoch2.key` next to it (an existing
/// `-epochN` suffix is replaced).
fn next_key_file(old: &Path, epoch: u64) -> PathBuf {
    let stem = old
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "signing".into());
    let base = match stem.rsplit_once("-epoch") {
        Some((base, n)) if n.parse::<u64>().is_ok() => base.to_string(),
        _ => stem,
    };
    let ext = old
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    old.with_file_name(format!("{base}-epoch{epoch}{ext}"))
}

pub(crate) fn read_table(file: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("parsing {}", file.display()))
}

/// Writes `table` to `file` through a temporary file and a rename, so that
/// a crash leaves the old or the new file, never half of one.
pub(crate) fn write_table(file: &Path, table: &toml::Table) -> anyhow::Result<()> {
    let text =
        toml::to_string_pretty(table).with_context(|| format!("encoding {}", file.display()))?;
    let tmp = file.with_extension("toml.rotate-tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("replacing {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::next_key_file;
    use std::path::Path;

    #[test]
    fn key_files_are_named_by_epoch() {
        assert_eq!(
            next_key_file(Path::new("/f/coordinator.key"), 1),
            Path::new("/f/coordinator-epoch1.key")
        );
        assert_eq!(
            next_key_file(Path::new("/f/coordinator-epoch1.key"), 2),
            Path::new("/f/coordinator-epoch2.key")
        );
        assert_eq!(
            next_key_file(Path::new("/f/signing"), 3),
            Path::new("/f/signing-epoch3")
        );
    }
}
