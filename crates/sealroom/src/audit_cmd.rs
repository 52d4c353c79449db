//! `sealroom audit` (verify, show, export) and `sealroom replay`: evidence
//! from a node's own store, read after the fact.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use prost::Message as _;
use sealroom_node::config::load_node_config;
use sealroom_node::directory::Directory;
use sealroom_protocol::pb;
use sealroom_store::{AuditEntry, AuditSummary, Store, verify_chain};
use serde_json::json;

/// Which node's store to read.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// A node's data directory (its SQLite store is DIR/sealroom.db).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["database", "config"])]
    pub data: Option<PathBuf>,
    /// A database URL (postgres://… or sqlite://PATH).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub database: Option<String>,
    /// A node's config file (its store is found from it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        let location = match (&self.data, &self.database, &self.config) {
            (Some(dir), None, None) => {
                let db = dir.join("sealroom.db");
                if !db.exists() {
                    bail!(
                        "no store at {} (is --data a node's data directory?)",
                        db.display()
                    );
                }
                db.display().to_string()
            }
            (None, Some(url), None) => url.clone(),
            (None, None, Some(file)) => {
                let config = load_node_config(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                match config.database {
                    Some(url) => url,
                    None => config.data_dir.join("sealroom.db").display().to_string(),
                }
            }
            _ => bail!(
                "name the store with exactly one of --data DIR, --database URL or --config FILE"
            ),
        };
        Store::open(&location).await.context("opening the store")
    }
}

/// The store a node's config file names.
pub(crate) async fn store_of_config(file: &std::path::Path) -> anyhow::Result<Store> {
    StoreArgs {
        data: None,
        database: None,
        config: Some(file.to_path_buf()),
    }
    .open()
    .await
    .with_context(|| format!("the store of {}", file.display()))
}

/// Inspect a node's signed, hash-chained audit log.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Re-check the whole chain and every signature; print a summary. Exits
    /// non-zero, naming every bad entry and the number of entries checked,
    /// if anything was edited, deleted, reordered or inserted (TAMPERED), or
    /// if every bad entry is named by an operator's override (BROKEN).
    Verify(VerifyArgs),
    /// Print one round's story: descriptor, reports, inclusion set, result
    /// or abort with its reason, checkpoints.
    Show(ShowArgs),
    /// Write every entry as JSON Lines.
    Export(ExportArgs),
    /// Compare several nodes' logs: verify each, then name every artifact
    /// its signer's own log lacks and every signer that signed two different
    /// artifacts of one kind for one round (equivocation). Give the
    /// coordinator's and every helper's log, by config or export file.
    CrossCheck(crate::audit_cross::CrossCheckArgs),
    /// Show a client's differential-privacy budgets: ε and δ spent per
    /// table.
    ///
    /// Per table, the ε and δ its DP releases have spent (summed: basic
    /// composition) against the budget in the client's config
    /// (`[privacy_budget.<table>]`), and how many releases were charged;
    /// with --table, each release (time, round, mechanism, ε, δ). Reads the
    /// client's ledger, DATA_DIR/privacy-ledger.db, on the client's machine.
    /// A release is charged there before the client shares anything, so a
    /// round that aborted counts too. Without a ledger (no DP release yet)
    /// it shows zero spend.
    ///
    /// Given the coordinator's or a helper's config instead, the public
    /// side: every DP release the federation asked for, read from the
    /// descriptors in that node's signed audit log (the chain is verified
    /// first): per table, releases and the ε and δ each client that took
    /// part charged for them; with --table, each release and its outcome.
    Budget(crate::audit_budget::BudgetArgs),
}

/// `sealroom audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// federation.toml to pin the signer keys against (without it, compare
    /// the printed key ids yourself).
    #[arg(long, value_name = "FILE")]
    federation: Option<PathBuf>,
}

/// `sealroom audit show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The round.
    #[arg(long)]
    round: u64,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `sealroom audit export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `sealroom replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The node's config file (replay needs its keys and its store).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The round to replay.
    #[arg(long)]
    round: u64,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `sealroom audit …`.
pub fn run(command: &AuditCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            AuditCommand::Verify(args) => verify(args).await,
            AuditCommand::Show(args) => show(args).await,
            AuditCommand::Export(args) => export(args).await,
            AuditCommand::CrossCheck(args) => crate::audit_cross::run(args).await,
            AuditCommand::Budget(args) => crate::audit_budget::run(args).await,
        }
    })
}

/// Runs `sealroom replay`.
pub fn run_replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = load_node_config(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let report = runtime()?.block_on(sealroom_node::replay::replay(&config, args.round))?;
    println!("{report}");
    if report.divergence.is_some() {
        bail!(
            "the replay does not reproduce what this node sent in round {}",
            args.round
        );
    }
    Ok(())
}

/// A log time (Unix milliseconds) as an ISO 8601 UTC timestamp,
/// `2026-12-06T07:56:47.123Z`; a time no calendar holds is shown as is.
pub(crate) fn iso_time(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::UtcDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{}T{:02}:{:02}:{:02}.{:03}Z",
            t.date(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("{ms} ms after the Unix epoch"),
    }
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let entries = store.audit_entries(None).await?;
    let gaps = store.audit_gaps(&entries).await;
    store.close().await;
    if entries.is_empty() {
        bail!(
            "the audit log is empty: a coordinator or helper enters its key when it starts, so \
             this is a client's store, the wrong database (was a SQLite copy made without its \
             -wal file?), or a log that was wiped"
        );
    }
    let (summary, violations) = verify_chain(&entries);
    print_summary(&summary);
    let gaps = gaps?;
    // Every bad entry, not only the first: one line each, in log order. An
    // entry an operator override names is still bad, but known.
    for v in &violations {
        match v.acknowledged_by {
            None => println!("TAMPERED: {v}"),
            Some(_) => println!("BROKEN (override recorded): {v}"),
        }
    }
    for gap in &gaps {
        println!("TAMPERED: the log was cut short: {gap}");
    }
    let unknown = sealroom_store::unacknowledged(&violations);
    if let Some(first) = unknown.first() {
        bail!(
            "TAMPERED: {} bad entries of {} checked (the first: {first}){}",
            unknown.len(),
            summary.entries,
            match (violations.len() - unknown.len(), gaps.len()) {
                (0, 0) => String::new(),
                (known, 0) => format!("; {known} more named by an operator override"),
                (0, g) => format!("; {g} rounds missing from the log"),
                (known, g) => format!(
                    "; {known} more named by an operator override; {g} rounds missing from the log"
                ),
            }
        );
    }
    if let Some(first) = gaps.first() {
        bail!(
            "TAMPERED: the log was cut short: {first} ({} such gaps; all {} entries checked verify)",
            gaps.len(),
            summary.entries
        );
    }
    if let Some(first) = violations.first() {
        bail!(
            "BROKEN: chain broken at {}, override recorded at {}: {} bad entries of {} checked, \
             every one named by an operator override (the node was started with \
             --accept-broken-audit-chain); the entries stay bad",
            first.seq,
            first.acknowledged_by.unwrap_or_default(),
            violations.len(),
            summary.entries
        );
    }
    if let Some(file) = &args.federation {
        pin(&summary, file)?;
        println!("signer keys match {}", file.display());
    }
    println!("chain and signatures verified");
    Ok(())
}

fn print_summary(s: &AuditSummary) {
    if let Some((role, name)) = &s.node {
        println!("audit log of {role} {name}");
    }
    println!("entries:     {}", s.entries);
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  by kind:   {}", kinds.join(", "));
    println!("rounds:      {}", s.rounds.len());
    if s.aborts.is_empty() {
        println!("aborts:      none");
    } else {
        let aborts: Vec<String> = s.aborts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("aborts:      {}", aborts.join(", "));
    }
    match (s.last_checkpoint, s.last_checkpoint_at_ms) {
        (Some(seq), Some(at)) => {
            println!("last signed checkpoint: entry {seq} at {}", iso_time(at))
        }
        _ => println!("last signed checkpoint: none"),
    }
    if s.unsigned_tail > 0 {
        println!(
            "note: the last {} entries are not yet covered by a checkpoint",
            s.unsigned_tail
        );
    }
    for o in &s.overrides {
        println!(
            "override:    entry {} at {}: the operator started the node on a broken log (bad entries {:?})",
            o.seq,
            iso_time(o.at_ms),
            o.broken
        );
    }
    for k in &s.keys {
        println!(
            "key:         {} {}{} {}",
            k.role,
            k.name,
            if k.own { " (log owner)" } else { "" },
            k.key_id
        );
    }
}

/// Every key the log trusts now (its last key entry: the owner's key, which
/// the verified rotation chain links to every earlier one, and the signer
/// keys of its peers) must be a key federation.toml gives that party: its
/// signing key or, during a coordinator rotation, the key it replaces.
pub(crate) fn pin(summary: &AuditSummary, file: &std::path::Path) -> anyhow::Result<()> {
    let spec = sealroom_node::config::load_federation(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let directory = Directory::new(&spec)?;
    for k in &summary.current_keys {
        let party = std::iter::once(&directory.coordinator)
            .chain(&directory.helpers)
            .find(|p| p.name == k.name && p.role.as_str() == k.role);
        let Some(party) = party else {
            bail!(
                "the log names {} {:?}, which {} does not",
                k.role,
                k.name,
                file.display()
            );
        };
        let expected = party.signing_key.map(|key| key.key_id().to_hex());
        let replaced = party.previous_key.map(|key| key.key_id().to_hex());
        if expected.as_deref() != Some(k.key_id.as_str())
            && (k.own || replaced.as_deref() != Some(k.key_id.as_str()))
        {
            bail!(
                "the log's key for {} {:?} is {} but {} pins {}",
                k.role,
                k.name,
                k.key_id,
                file.display(),
                expected.unwrap_or_else(|| "none".into())
            );
        }
    }
    Ok(())
}

fn body<M: prost::Message + Default>(env: &pb::SignedEnvelope) -> Option<M> {
    M::decode(env.body.as_slice()).ok()
}

/// What an entry says, as JSON (public fields only: artifacts hold no secret).
fn describe(entry: &AuditEntry) -> serde_json::Value {
    let env = pb::SignedEnvelope::decode(entry.artifact.as_slice()).unwrap_or_default();
    let key_id = hex(&env.key_id);
    let detail = match entry.kind.as_str() {
        "descriptor" => body::<pb::RoundDescriptor>(&env).map(|d| {
            json!({
                "task": d.task.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
                "vector_length": d.task.as_ref().map_or(0, |t| t.vector_length),
                "clients": d.clients.len(),
                "helpers": d.helpers.len(),
                "threshold": d.threshold,
                "min_clients": d.min_clients,
                "issued_at_ms": d.issued_at_ms,
            })
        }),
        "receipt" => body::<pb::Receipt>(&env).map(|r| {
            json!({"helper_index": r.helper_index, "client_index": r.client_index})
        }),
        "report" => body::<pb::HelperReport>(&env).map(|r| {
            json!({"helper_index": r.helper_index, "received": r.received})
        }),
        "inclusion_set" => body::<pb::InclusionSet>(&env)
            .map(|i| json!({"clients": i.clients, "helpers": i.helpers})),
        "result" => body::<pb::RoundResult>(&env).map(|r| {
            json!({
                "included_clients": r.included_clients,
                "answering_helpers": r.answering_helpers,
                "sum_length": r.sum_length,
                "sum_digest": hex::encode(&r.sum_digest),
                "unverified": r.unverified,
            })
        }),
        "abort" => body::<pb::AbortRecord>(&env).map(|a| {
            json!({
                "reason": a.reason().as_str_name().trim_start_matches("ABORT_REASON_").to_lowercase(),
                "detail": a.detail,
                "missing_helpers": a.missing_helpers,
                "suspect_helpers": a.suspect_helpers,
                "included_clients": a.included_clients,
                "evidence": a.evidence.len(),
            })
        }),
        "checkpoint" => body::<pb::AuditCheckpoint>(&env)
            .map(|c| json!({"covers_seq": c.seq, "head_hash": hex(&c.head_hash)})),
        "override" => body::<pb::AuditOverride>(&env).map(|o| {
            json!({
                "node": o.node,
                "entries": o.entries,
                "broken": o.broken.iter().map(|b| json!({"seq": b.seq, "reason": b.reason})).collect::<Vec<_>>(),
            })
        }),
        "key" => body::<pb::AuditKey>(&env).map(|k| {
            json!({
                "node": k.node,
                "role": k.role,
                "peers": k.peers.iter().map(|p| json!({"role": p.role, "name": p.name})).collect::<Vec<_>>(),
            })
        }),
        _ => None,
    };
    json!({
        "seq": entry.seq,
        "at_ms": entry.at_ms,
        "kind": entry.kind,
        "round_id": entry.round_id,
        "signed_by": key_id,
        "detail": detail,
        "prev_hash": hex(&entry.prev_hash),
        "hash": hex(&entry.hash),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let entries = store.audit_entries(Some(args.round)).await?;
    store.close().await;
    if entries.is_empty() {
        bail!("the audit log has no entry for round {}", args.round);
    }
    let described: Vec<serde_json::Value> = entries.iter().map(describe).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    println!("round {}: {} audit entries", args.round, entries.len());
    for d in &described {
        let detail = &d["detail"];
        let line = match d["kind"].as_str().unwrap_or_default() {
            "descriptor" => format!(
                "descriptor: task {} ({} values), {} clients, {} helpers, threshold {}, min_clients {}",
                detail["task"],
                detail["vector_length"],
                detail["clients"],
                detail["helpers"],
                detail["threshold"],
                detail["min_clients"]
            ),
            "receipt" => format!(
                "receipt: helper {} holds client {}'s share",
                detail["helper_index"], detail["client_index"]
            ),
            "report" => format!(
                "report: helper {} holds shares of clients {}",
                detail["helper_index"], detail["received"]
            ),
            "inclusion_set" => format!(
                "inclusion set: clients {} answered by helpers {}",
                detail["clients"], detail["helpers"]
            ),
            "result" => format!(
                "RESULT released: clients {} via helpers {}",
                detail["included_clients"], detail["answering_helpers"]
            ),
            "abort" => format!(
                "ABORT {}: {} (missing helpers {}, suspect helpers {})",
                detail["reason"].as_str().unwrap_or_default(),
                detail["detail"].as_str().unwrap_or_default(),
                detail["missing_helpers"],
                detail["suspect_helpers"]
            ),
            "checkpoint" => format!("signed checkpoint over entries ..={}", detail["covers_seq"]),
            other => other.to_string(),
        };
        println!(
            "  #{:<5} {}  {line}",
            d["seq"],
            iso_time(d["at_ms"].as_u64().unwrap_or_default())
        );
    }
    Ok(())
}

async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let entries = store.audit_entries(None).await?;
    store.close().await;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for entry in &entries {
        let mut line = describe(entry);
        line["artifact"] = json!(hex(&entry.artifact));
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    out.flush()?;
    if let Some(path) = &args.output {
        eprintln!("wrote {} entries to {}", entries.len(), path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::iso_time;

    /// Against Python's `datetime.fromtimestamp(ms / 1000, timezone.utc)`.
    #[test]
    fn log_times_print_as_iso_dates() {
        assert_eq!(iso_time(1_796_543_807_123), "2026-12-06T07:56:47.123Z");
        assert_eq!(iso_time(1_796_515_199_999), "2026-12-05T23:59:59.999Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso_time(u64::MAX),
            format!("{} ms after the Unix epoch", u64::MAX)
        );
    }
}
