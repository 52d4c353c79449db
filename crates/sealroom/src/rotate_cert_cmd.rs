//! `sealroom rotate-cert`: give any node a new TLS certificate without
//! stopping the federation (issue #13), and retire the old one afterwards.
//!
//! A party's identity is the fingerprint of the certificate it joined with
//! (`fingerprint` in `federation.toml`): every round and every log names it,
//! so it never changes. A rotation issues a new certificate from the
//! federation CA (same name, same server names), writes it and its key
//! (0600) next to the old ones, points the node's config at them, and
//! records in the node's federation entry the certificate it presents now
//! (`certificate`) and the one it replaces (`previous_certificate`). Nodes
//! take it on SIGHUP (`sealroom_node::reload`): every other node first —
//! they then accept both certificates for that party — then the node
//! itself, which presents the new one in every handshake from then on.
//! `--retire` drops `previous_certificate`; after the next SIGHUP every
//! node refuses the old certificate and closes the connections made with it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use sealroom_node::config::{Role, load_node_config};
use sealroom_node::pki::{self, CertificateAuthority, Validity};

use crate::rotate_cmd::{read_table, write_table};

/// `sealroom rotate-cert`.
#[derive(Args, Debug)]
pub struct RotateCertArgs {
    /// The config file of the node whose certificate rotates (any role; its
    /// TLS files and federation.toml are found from it; both files are
    /// rewritten).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The federation CA's private key (kept offline; `sealroom init` wrote
    /// it as `ca.key`). Default: `ca.key` next to the CA certificate the
    /// config names.
    #[arg(long, value_name = "FILE")]
    ca_key: Option<PathBuf>,
    /// Days the new certificate is valid.
    #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS, value_name = "DAYS")]
    days: u32,
    /// Instead of rotating: drop the replaced certificate from
    /// federation.toml, once every node presents its new one (then SIGHUP
    /// every node: the old certificate is refused and its connections close).
    #[arg(long)]
    retire: bool,
}

/// Runs `sealroom rotate-cert`.
pub fn run(args: &RotateCertArgs) -> anyhow::Result<()> {
    let config = load_node_config(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let who = format!("{} {:?}", config.role.as_str(), config.name);
    let federation_file = config.federation_file.clone();
    let mut federation = read_table(&federation_file)?;
    let entry = party_entry(&mut federation, config.role, &config.name)
        .with_context(|| format!("{}: no entry for {who}", federation_file.display()))?;
    if args.retire {
        if entry.remove("previous_certificate").is_none() {
            bail!(
                "{}: {who} has no previous_certificate: nothing to retire",
                federation_file.display()
            );
        }
        write_table(&federation_file, &federation)?;
        println!(
            "retired the previous certificate of {who} in {}.\n\
             Copy it to every node and send each node SIGHUP: the old certificate is refused \
             and the connections made with it close.",
            federation_file.display()
        );
        return Ok(());
    }
    if entry.contains_key("previous_certificate") {
        bail!(
            "{}: a certificate rotation of {who} is already under way (previous_certificate is \
             set): finish it with `sealroom rotate-cert --retire --config {}` first",
            federation_file.display(),
            args.config.display()
        );
    }
    let ca_key = args.ca_key.clone().unwrap_or_else(|| {
        config
            .tls_files
            .ca_cert
            .with_file_name(sealroom_node::init::CA_KEY_FILE)
    });
    let ca = CertificateAuthority::load(
        &config.federation.federation_id,
        &config.tls_files.ca_cert,
        &ca_key,
    )
    .with_context(|| {
        format!(
            "loading the federation CA ({} and {}; name the key with --ca-key)",
            config.tls_files.ca_cert.display(),
            ca_key.display()
        )
    })?;
    let validity = Validity::days(args.days)?;
    let issued = match config.role {
        Role::Coordinator | Role::Helper => {
            let hosts: Vec<&str> = config.party.endpoint_host().into_iter().collect();
            ca.issue_leaf(&config.name, &hosts, validity)?
        }
        Role::Client | Role::Admin => ca.issue_client_leaf(&config.name, validity)?,
    };
    let (cert_file, key_file) = next_files(&config.tls_files.cert, &config.tls_files.key);
    pki::write_private_file(&key_file, issued.key_pem.as_bytes(), false)
        .with_context(|| format!("writing {}", key_file.display()))?;
    pki::write_public_file(&cert_file, issued.cert_pem.as_bytes(), false)
        .with_context(|| format!("writing {}", cert_file.display()))?;
    let new = issued.fingerprint().to_hex();
    let old = config.tls.id().to_hex();
    entry.insert("certificate".into(), new.clone().into());
    entry.insert("previous_certificate".into(), old.clone().into());

    let mut node = read_table(&args.config)?;
    let tls = node
        .get_mut("tls")
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("{}: no [tls] table", args.config.display()))?;
    tls.insert("cert".into(), cert_file.display().to_string().into());
    tls.insert("key".into(), key_file.display().to_string().into());
    // federation.toml first: until the node's config names the new files,
    // the node still presents the old certificate, which stays accepted.
    write_table(&federation_file, &federation)?;
    write_table(&args.config, &node)?;
    println!(
        "new certificate for {who}: {} (fingerprint {new}), key {}\n\
         updated {} (certificate = {new}, previous_certificate = {old}) and {}.\n\
         Next:\n\
         1. copy {} to every node and send every other node SIGHUP\n\
            (each logs \"federation.toml reloaded\" with {:?} in `certificates`);\n\
         2. then send {who} SIGHUP: it presents the new certificate from then on\n\
            (a client or admin run as a command picks it up at its next start);\n\
         3. then run\n\
            sealroom rotate-cert --retire --config {}\n\
            and send every node SIGHUP again: the old certificate is refused and its connections close.",
        cert_file.display(),
        key_file.display(),
        federation_file.display(),
        args.config.display(),
        federation_file.display(),
        config.name,
        args.config.display()
    );
    Ok(())
}

/// The federation file's entry of the node `name` of `role`: the
/// `[coordinator]` table or one of `[[helpers]]`, `[[clients]]`, `[[admins]]`.
pub(crate) fn party_entry<'t>(
    federation: &'t mut toml::Table,
    role: Role,
    name: &str,
) -> Option<&'t mut toml::Table> {
    let list = match role {
        Role::Coordinator => {
            return federation
                .get_mut("coordinator")
                .and_then(toml::Value::as_table_mut);
        }
        Role::Helper => "helpers",
        Role::Client => "clients",
        Role::Admin => "admins",
    };
    federation
        .get_mut(list)
        .and_then(toml::Value::as_array_mut)?
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|t| t.get("name").and_then(toml::Value::as_str) == Some(name))
}

/// `helper-0.pem`, `helper-0.key` → `helper-0-cert1.pem`, `helper-0-cert1.key`
/// (the first number for which neither file exists; an existing `-certN`
/// suffix is replaced).
fn next_files(cert: &Path, key: &Path) -> (PathBuf, PathBuf) {
    let with = |file: &Path, n: u32| {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into());
        let base = match stem.rsplit_once("-cert") {
            Some((base, k)) if k.parse::<u32>().is_ok() => base.to_string(),
            _ => stem,
        };
        let ext = file
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        file.with_file_name(format!("{base}-cert{n}{ext}"))
    };
    let mut n = 1;
    loop {
        let (c, k) = (with(cert, n), with(key, n));
        if !c.exists() && !k.exists() {
            return (c, k);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::next_files;
    use std::path::Path;

    #[test]
    fn new_files_are_numbered_next_to_the_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("helper-0.pem");
        let key = dir.path().join("helper-0.key");
        let (c1, k1) = next_files(&cert, &key);
        assert_eq!(c1, dir.path().join("helper-0-cert1.pem"));
        assert_eq!(k1, dir.path().join("helper-0-cert1.key"));
        std::fs::write(&c1, "x").expect("write");
        let (c2, k2) = next_files(&c1, &k1);
        assert_eq!(c2, dir.path().join("helper-0-cert2.pem"));
        assert_eq!(k2, dir.path().join("helper-0-cert2.key"));
        assert_eq!(
            next_files(
                Path::new("/nonexistent/a.pem"),
                Path::new("/nonexistent/a.key")
            )
            .0,
            Path::new("/nonexistent/a-cert1.pem")
        );
    }
}
