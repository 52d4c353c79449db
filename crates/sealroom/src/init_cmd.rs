//! `sealroom init`: create a federation — CA, node certificates and keys,
//! `federation.toml` and one config per node — in a directory
//! ([`sealroom_node::init`] does the work; this prints what it did).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use sealroom_node::config::Role;
use sealroom_node::init::{InitOptions, InitSummary, init_federation};
use sealroom_node::pki;

use crate::sharing::SharingArgs;

/// Options of `sealroom init`.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = "\
Files written into DIR:
  ca.pem, ca.key                 the federation CA (keep ca.key offline: it issues certificates)
  <name>.pem, <name>.key         each node's certificate and TLS key
  <name>.signing.key             Ed25519 signing key of the coordinator and each helper
  <name>.toml                    each node's config (paths relative to DIR)
  admin.pem, admin.key, admin.toml   an operator identity for the admin API
  federation.toml                what every party agrees on

Names: coordinator, helper-0.., client-0.., admin. Every *.key file is created
with mode 0600. Each node needs its own files, ca.pem and federation.toml.

Examples:
  sealroom init fed
  sealroom init fed --helpers 5 --mode threshold --threshold 3 --clients 10
  sealroom init fed --host 10.0.0.5 --base-port 9000 --force")]
pub struct InitArgs {
    /// Directory to create the federation in (created if missing).
    pub dir: PathBuf,
    /// Number of helpers: independent organisations that each hold one share
    /// of every input (2..=16).
    #[arg(long, default_value_t = 3)]
    pub helpers: usize,
    /// Number of clients: parties with private data (at least 2). Each gets
    /// one slice of the built-in wine-quality data set.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    #[command(flatten)]
    pub sharing: SharingArgs,
    /// Threshold mode: when only T helpers are available, release the sum
    /// from exactly T answers, which nobody can check against each other
    /// (the signed result says `unverified`). Without it such a round
    /// aborts (`unverifiable`): a release needs T + 1 checked answers.
    #[arg(long)]
    pub allow_unverified_threshold_release: bool,
    /// Smallest inclusion set a round may release (2 ≤ k ≤ clients).
    /// Default: half the clients, rounded up, and at least 2.
    #[arg(long, value_name = "K")]
    pub min_clients: Option<usize>,
    /// Federation id, bound into every round descriptor and the CA's name.
    #[arg(long, value_name = "ID", default_value = "sealroom-local")]
    pub federation_id: String,
    /// First port: the coordinator listens on P, helper i on P+1+i, and node
    /// n (coordinator, helpers, clients in order) serves metrics on P+100+n.
    #[arg(long, value_name = "P", default_value_t = 7400)]
    pub base_port: u16,
    /// Host of every endpoint (IP address or DNS name); the certificates
    /// cover it. With a DNS name the nodes listen on 0.0.0.0.
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub host: String,
    /// Validity of the node certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = pki::DEFAULT_LEAF_DAYS)]
    pub validity_days: u32,
    /// Overwrite a federation already in DIR, regenerating every key and
    /// certificate (the old ones stop working). Data directories (DIR/data)
    /// are left as they are.
    #[arg(long)]
    pub force: bool,
}

/// Runs `sealroom init`.
pub fn run(args: &InitArgs) -> Result<()> {
    let threshold = args.sharing.threshold(args.helpers)?;
    if args.allow_unverified_threshold_release && threshold.is_none() {
        bail!("--allow-unverified-threshold-release applies to --mode threshold only");
    }
    let opts = InitOptions {
        helpers: args.helpers,
        clients: args.clients,
        threshold,
        min_clients: args.min_clients,
        federation_id: args.federation_id.clone(),
        base_port: args.base_port,
        host: args.host.clone(),
        force: args.force,
        validity_days: args.validity_days,
        allow_unverified_threshold_release: args.allow_unverified_threshold_release,
        ..InitOptions::default()
    };
    let summary = init_federation(&args.dir, &opts)
        .with_context(|| format!("cannot create a federation in {}", args.dir.display()))?;
    print_summary(&summary, &opts);
    Ok(())
}

/// `writeln!` into a `String`, which cannot fail.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn print_summary(summary: &InitSummary, opts: &InitOptions) {
    let mut out = String::new();
    let f = &summary.federation;
    let mode = match f.threshold {
        Some(t) => format!(
            "threshold {t}-of-{} over {}",
            f.helpers.len(),
            f.quantization.ring
        ),
        None => format!(
            "additive {}-of-{} over {}",
            f.helpers.len(),
            f.helpers.len(),
            f.quantization.ring
        ),
    };
    say!(
        out,
        "created federation `{}` in {}",
        f.federation_id,
        summary.dir.display()
    );
    say!(
        out,
        "  {mode}; {} clients, min_clients {}{}; quantization: scale 2^{}, clip ±{}, {} bits",
        f.clients.len(),
        f.min_clients,
        if opts.min_clients.is_none() {
            " (default)"
        } else {
            ""
        },
        f.quantization.scale_bits,
        f.quantization.clip,
        f.quantization.bits,
    );
    out.push('\n');
    say!(
        out,
        "{:<12} {:<12} {:<22} identity (certificate SHA-256)",
        "role",
        "name",
        "listen"
    );
    for node in &summary.nodes {
        let listen = node
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        say!(
            out,
            "{:<12} {:<12} {:<22} {}",
            node.role.as_str(),
            node.name,
            listen,
            node.id.to_hex()
        );
    }
    out.push('\n');
    say!(
        out,
        "wrote {} files (* = secret, mode 0600):",
        summary.files.len()
    );
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for file in &summary.files {
        let name = file
            .strip_prefix(&summary.dir)
            .unwrap_or(file)
            .display()
            .to_string();
        let stem = name.split('.').next().unwrap_or_default().to_string();
        let shown = if name.ends_with(".key") {
            format!("{name}*")
        } else {
            name
        };
        match groups.last_mut() {
            Some((last, names)) if *last == stem => names.push(shown),
            _ => groups.push((stem, vec![shown])),
        }
    }
    for (_, names) in &groups {
        say!(out, "  {}", names.join("  "));
    }
    out.push('\n');
    if !summary.leftovers.is_empty() {
        say!(
            out,
            "warning: {} file(s) in {} were not written by this run and no longer match federation.toml:",
            summary.leftovers.len(),
            summary.dir.display()
        );
        for file in &summary.leftovers {
            say!(out, "  {}", file.display());
        }
        out.push('\n');
    }
    say!(
        out,
        "next: start the coordinator and the helpers, then the clients, each in its own terminal:"
    );
    for node in summary.nodes.iter().filter(|n| n.role != Role::Admin) {
        say!(out, "  sealroom node --config {}", node.config.display());
    }
    if let Some(admin) = summary.nodes.iter().find(|n| n.role == Role::Admin) {
        say!(out, "then run a round as the operator:");
        say!(
            out,
            "  sealroom round start --config {}",
            admin.config.display()
        );
    }
    out.push('\n');
    say!(
        out,
        "Keep ca.key offline. To deploy, give each node its own <name>.toml, .pem, .key \
         (and .signing.key), plus ca.pem and federation.toml."
    );
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(out.as_bytes());
}
