//! `sealroom audit budget`: what each of a client's tables has spent of its
//! differential-privacy budget, read from the client's ledger
//! (`sealroom_analytics::budget`) against the budgets in its config; and,
//! given the coordinator's or a helper's config, every DP release the
//! federation asked for, read from the coordinator-signed descriptors in
//! that node's audit log ([`federation_report`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use sealroom_analytics::budget::{Budget, ClientPrivacy, Ledger, Num, Release, Spend};
use sealroom_analytics::joint::{DpRelease, dp_release};
use sealroom_node::config::{NodeConfig, Role, load_node_config};
use serde::Serialize;

/// `sealroom audit budget`.
#[derive(Args, Debug)]
pub struct BudgetArgs {
    /// The client's config file: its tables' budgets
    /// (`[privacy_budget.<table>]`) and its data directory, where the ledger
    /// `privacy-ledger.db` lives. Or the coordinator's or a helper's: the
    /// releases recorded in its signed audit log.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Show only this table, and list each release charged against it
    /// (time, round, mechanism, ε, δ).
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What `sealroom audit budget` shows.
#[derive(Debug, Serialize)]
pub(crate) struct BudgetReport {
    /// The client's name.
    pub client: String,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Whether the ledger exists (no DP release charged yet if not).
    pub ledger_exists: bool,
    /// `federation.toml` `[privacy] require_dp`.
    pub require_dp: bool,
    /// One row per table with a budget or a charge.
    pub tables: Vec<TableRow>,
    /// With `--table`: its releases, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releases: Option<Vec<Release>>,
}

/// One table's spend against its budget.
#[derive(Debug, Serialize)]
pub(crate) struct TableRow {
    /// The table.
    pub table: String,
    /// Its budget (`None`: no `[privacy_budget.<table>]`).
    pub budget: Option<Budget>,
    /// Σε charged.
    pub spent_epsilon: f64,
    /// Σδ charged.
    pub spent_delta: f64,
    /// Releases charged.
    pub releases: u64,
}

/// Runs `sealroom audit budget`.
pub async fn run(args: &BudgetArgs) -> anyhow::Result<()> {
    let config = load_node_config(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if config.role != Role::Client {
        let report = federation_report(args, &config).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", format_federation_report(&report));
        }
        return Ok(());
    }
    let report = report(args, config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_report(&report));
    }
    Ok(())
}

async fn report(args: &BudgetArgs, config: NodeConfig) -> anyhow::Result<BudgetReport> {
    let privacy = ClientPrivacy::from_config(&config)?;
    if let Some(table) = &args.table
        && !config.data.contains_key(table)
        && !privacy.budgets.contains_key(table)
    {
        bail!(
            "client {} has no table {table:?} (its tables: {})",
            config.name,
            config.data.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let ledger_exists = privacy.ledger.exists();
    let (spent, releases) = if ledger_exists {
        let ledger = Ledger::open(&privacy.ledger).await?;
        let spent = ledger.spent().await?;
        let releases = match &args.table {
            Some(table) => Some(ledger.releases(Some(table)).await?),
            None => None,
        };
        ledger.close().await;
        (spent, releases)
    } else {
        (Vec::new(), args.table.as_ref().map(|_| Vec::new()))
    };
    let tables = rows(&privacy, &spent, args.table.as_deref());
    Ok(BudgetReport {
        client: config.name,
        ledger: privacy.ledger,
        ledger_exists,
        require_dp: privacy.require_dp,
        tables,
        releases,
    })
}

/// A row per table with a budget or a charge (only `only`, if given), by
/// name.
fn rows(privacy: &ClientPrivacy, spent: &[Spend], only: Option<&str>) -> Vec<TableRow> {
    let mut tables: Vec<&str> = privacy
        .budgets
        .keys()
        .map(String::as_str)
        .chain(spent.iter().map(|s| s.table.as_str()))
        .chain(only)
        .filter(|t| only.is_none_or(|o| o == *t))
        .collect();
    tables.sort_unstable();
    tables.dedup();
    tables
        .into_iter()
        .map(|table| {
            let spend = spent.iter().find(|s| s.table == table);
            TableRow {
                table: table.to_string(),
                budget: privacy.budgets.get(table).copied(),
                spent_epsilon: spend.map_or(0.0, |s| s.epsilon),
                spent_delta: spend.map_or(0.0, |s| s.delta),
                releases: spend.map_or(0, |s| s.releases),
            }
        })
        .collect()
}

/// The report as text, one line per table (and per release with `--table`).
pub(crate) fn format_report(report: &BudgetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "privacy budgets of client {}", report.client);
    if report.ledger_exists {
        let _ = writeln!(out, "ledger: {}", report.ledger.display());
    } else {
        let _ = writeln!(
            out,
            "no DP release has been charged on this client yet (no ledger at {})",
            report.ledger.display()
        );
    }
    let _ = writeln!(
        out,
        "federation requires DP on every query: {}",
        if report.require_dp { "yes" } else { "no" }
    );
    if report.tables.is_empty() {
        let _ = writeln!(
            out,
            "no table has a budget: add [privacy_budget.<table>] epsilon = …, delta = … to the \
             client's config for each table DP queries may use"
        );
    } else {
        let cells: Vec<[String; 4]> = report
            .tables
            .iter()
            .map(|row| {
                let (epsilon, delta) = match row.budget {
                    Some(b) => (
                        format!("{} of {}", Num(row.spent_epsilon), Num(b.epsilon)),
                        format!("{} of {}", Num(row.spent_delta), Num(b.delta)),
                    ),
                    None => (
                        format!(
                            "{} (no budget: answers no DP query)",
                            Num(row.spent_epsilon)
                        ),
                        Num(row.spent_delta).to_string(),
                    ),
                };
                [row.table.clone(), epsilon, delta, row.releases.to_string()]
            })
            .collect();
        write_table(
            &mut out,
            ["table", "ε spent", "δ spent", "releases"],
            &cells,
        );
    }
    if let (Some(releases), Some(row)) = (&report.releases, report.tables.first()) {
        if releases.is_empty() {
            let _ = writeln!(out, "no release charged against {}", row.table);
        } else {
            let _ = writeln!(out, "releases charged against {}:", row.table);
        }
        for r in releases {
            let _ = writeln!(
                out,
                "  {}  round {}  {}  ε = {}  δ = {}  ({})",
                crate::audit_cmd::iso_time(r.at_ms),
                r.round_id,
                r.mechanism,
                Num(r.epsilon),
                Num(r.delta),
                r.release
            );
        }
    }
    out
}

/// What `sealroom audit budget` shows for the coordinator or a helper: the
/// DP releases in its signed audit log.
#[derive(Debug, Serialize)]
pub(crate) struct FederationBudgetReport {
    /// The node's name.
    pub node: String,
    /// Its role.
    pub role: String,
    /// Audit entries read.
    pub entries: u64,
    /// Of them, bad entries an operator override acknowledged (the node was
    /// started with `--accept-broken-audit-chain`); any other bad entry
    /// refuses the view.
    pub acknowledged_broken: usize,
    /// One row per table some release queried, by name.
    pub tables: Vec<FederationTableRow>,
    /// With `--table`: its releases, by round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releases: Option<Vec<LoggedRelease>>,
    /// Query rounds whose parameters do not parse, or ask for DP with
    /// parameters no client accepts (nothing was charged for them).
    pub refused_rounds: Vec<u64>,
}

/// A table's releases in the log.
#[derive(Debug, Serialize)]
pub(crate) struct FederationTableRow {
    /// The table.
    pub table: String,
    /// Releases asked for (one per DP round, whatever its outcome).
    pub releases: u64,
    /// Σε over them: what a client that took part in every one of them
    /// charged to this table.
    pub epsilon: f64,
    /// Σδ over them, likewise.
    pub delta: f64,
}

/// One release as the log records it.
#[derive(Debug, Serialize)]
pub(crate) struct LoggedRelease {
    /// Its round.
    pub round_id: u64,
    /// When the node logged the descriptor (Unix milliseconds).
    pub at_ms: u64,
    /// The release as the descriptor states it.
    #[serde(flatten)]
    pub release: DpRelease,
    /// Clients the descriptor lists (each charges it if it takes part).
    pub clients: usize,
    /// `released`, `aborted (<reason>)`, `no outcome recorded (unfinished)`
    /// or, in a helper's log, `outcome in the coordinator's log`.
    pub outcome: String,
}

/// The coordinator's or a helper's view: every DP release in its audit
/// log. The chain and signatures are verified first (the same check as
/// `sealroom audit verify`): an unverified log would be no record.
async fn federation_report(
    args: &BudgetArgs,
    config: &NodeConfig,
) -> anyhow::Result<FederationBudgetReport> {
    use prost::Message as _;
    use sealroom_protocol::pb;

    if config.database.is_none() {
        let db = config.data_dir.join("sealroom.db");
        if !db.exists() {
            bail!(
                "{} {} has no store yet at {} (its audit log begins when the node first runs)",
                config.role.as_str(),
                config.name,
                db.display()
            );
        }
    }
    let store = crate::audit_cmd::store_of_config(&args.config).await?;
    let entries = store.audit_entries(None).await;
    store.close().await;
    let entries = entries.context("reading the audit log")?;
    let (summary, violations) = sealroom_store::verify_chain(&entries);
    if let Some(first) = sealroom_store::unacknowledged(&violations).first() {
        bail!(
            "the audit log of {} does not verify ({first}): run `sealroom audit verify --config {}`",
            config.name,
            args.config.display()
        );
    }
    let envelope = |artifact: &[u8]| pb::SignedEnvelope::decode(artifact).unwrap_or_default();
    let mut outcomes: BTreeMap<u64, String> = BTreeMap::new();
    for e in &entries {
        let Some(round) = e.round_id else { continue };
        let env = envelope(&e.artifact);
        match e.kind.as_str() {
            "result" => {
                outcomes.insert(round, "released".into());
            }
            "abort" => {
                let reason = pb::AbortRecord::decode(env.body.as_slice())
                    .map(|a| {
                        a.reason()
                            .as_str_name()
                            .trim_start_matches("ABORT_REASON_")
                            .to_lowercase()
                    })
                    .unwrap_or_else(|_| "unreadable record".into());
                outcomes.insert(round, format!("aborted ({reason})"));
            }
            _ => {}
        }
    }
    // A helper's log holds what it signed, not the round's end.
    let no_outcome = if config.role == Role::Coordinator {
        "no outcome recorded (unfinished)"
    } else {
        "outcome in the coordinator's log"
    };
    let mut releases: BTreeMap<u64, LoggedRelease> = BTreeMap::new();
    let mut refused_rounds = Vec::new();
    for e in entries.iter().filter(|e| e.kind == "descriptor") {
        let Ok(descriptor) = pb::RoundDescriptor::decode(envelope(&e.artifact).body.as_slice())
        else {
            continue;
        };
        let Some(task) = &descriptor.task else {
            continue;
        };
        match dp_release(task) {
            None => {}
            Some(Err(_)) => refused_rounds.push(descriptor.round_id),
            Some(Ok(release)) => {
                releases
                    .entry(descriptor.round_id)
                    .or_insert_with(|| LoggedRelease {
                        round_id: descriptor.round_id,
                        at_ms: e.at_ms,
                        release,
                        clients: descriptor.clients.len(),
                        outcome: outcomes
                            .get(&descriptor.round_id)
                            .cloned()
                            .unwrap_or_else(|| no_outcome.into()),
                    });
            }
        }
    }
    refused_rounds.sort_unstable();
    refused_rounds.dedup();
    let mut tables: BTreeMap<&str, FederationTableRow> = BTreeMap::new();
    for r in releases.values() {
        let row = tables
            .entry(&r.release.table)
            .or_insert_with(|| FederationTableRow {
                table: r.release.table.clone(),
                releases: 0,
                epsilon: 0.0,
                delta: 0.0,
            });
        row.releases += 1;
        row.epsilon += r.release.epsilon;
        row.delta += r.release.delta;
    }
    if let Some(table) = &args.table
        && !tables.contains_key(table.as_str())
    {
        bail!(
            "the audit log of {} records no DP release over table {table:?} (its tables: {})",
            config.name,
            if tables.is_empty() {
                "none".to_string()
            } else {
                tables.keys().copied().collect::<Vec<_>>().join(", ")
            }
        );
    }
    let tables: Vec<FederationTableRow> = tables
        .into_values()
        .filter(|row| args.table.as_ref().is_none_or(|t| *t == row.table))
        .collect();
    let releases = args.table.as_ref().map(|table| {
        releases
            .into_values()
            .filter(|r| r.release.table == *table)
            .collect()
    });
    Ok(FederationBudgetReport {
        node: config.name.clone(),
        role: config.role.as_str().to_string(),
        entries: summary.entries,
        acknowledged_broken: violations.len(),
        tables,
        releases,
        refused_rounds,
    })
}

/// The federation view as text.
pub(crate) fn format_federation_report(report: &FederationBudgetReport) -> String {
    let mut out = String::new();
    let verified = match report.acknowledged_broken {
        0 => "chain and signatures verified".to_string(),
        n => format!(
            "BROKEN: {n} bad entries named by an operator override, the rest verified; \
             see `sealroom audit verify`"
        ),
    };
    let _ = writeln!(
        out,
        "DP releases in the signed audit log of {} {} ({} entries, {verified})",
        report.role, report.node, report.entries
    );
    let _ = writeln!(
        out,
        "each is charged by every client that takes part, to its own table's budget, before it \
         shares (a client's spend: `sealroom audit budget --config <client>.toml` on its machine)"
    );
    if report.tables.is_empty() {
        let _ = writeln!(out, "no differentially private query in this log");
    } else {
        let cells: Vec<[String; 4]> = report
            .tables
            .iter()
            .map(|row| {
                [
                    row.table.clone(),
                    row.releases.to_string(),
                    Num(row.epsilon).to_string(),
                    Num(row.delta).to_string(),
                ]
            })
            .collect();
        write_table(
            &mut out,
            [
                "table",
                "releases",
                "ε per client (at most)",
                "δ per client (at most)",
            ],
            &cells,
        );
    }
    if let Some(releases) = &report.releases {
        for r in releases {
            let _ = writeln!(
                out,
                "  {}  round {}  {}  ε = {}  δ = {}  {} clients listed  {}",
                crate::audit_cmd::iso_time(r.at_ms),
                r.round_id,
                r.release.mechanism,
                Num(r.release.epsilon),
                Num(r.release.delta),
                r.clients,
                r.outcome
            );
        }
    }
    if !report.refused_rounds.is_empty() {
        let _ = writeln!(
            out,
            "query rounds whose parameters no client accepts (nothing charged): {}",
            report
                .refused_rounds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// Writes `header` and `cells` as left-aligned columns two spaces apart.
fn write_table<const N: usize>(out: &mut String, header: [&str; N], cells: &[[String; N]]) {
    let header = header.map(str::to_string);
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            std::iter::once(&header)
                .chain(cells)
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in std::iter::once(&header).chain(cells) {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_reads_as_a_table() {
        let report = BudgetReport {
            client: "client-0".into(),
            ledger: PathBuf::from("/data/client-0/privacy-ledger.db"),
            ledger_exists: true,
            require_dp: true,
            tables: vec![
                TableRow {
                    table: "patients".into(),
                    budget: Some(Budget {
                        epsilon: 5.0,
                        delta: 1e-5,
                    }),
                    spent_epsilon: 4.5,
                    spent_delta: 4e-6,
                    releases: 3,
                },
                TableRow {
                    table: "old".into(),
                    budget: None,
                    spent_epsilon: 1.0,
                    spent_delta: 0.0,
                    releases: 1,
                },
            ],
            releases: None,
        };
        assert_eq!(
            format_report(&report),
            "privacy budgets of client client-0\n\
             ledger: /data/client-0/privacy-ledger.db\n\
             federation requires DP on every query: yes\n\
             table     ε spent                             δ spent       releases\n\
             patients  4.5 of 5                            4e-6 of 1e-5  3\n\
             old       1 (no budget: answers no DP query)  0             1\n"
        );
    }

    #[test]
    fn the_federation_view_reads_as_a_table_with_each_release() {
        let release = |round_id, outcome: &str| LoggedRelease {
            round_id,
            at_ms: 1_796_543_807_123,
            release: DpRelease {
                table: "diabetes".into(),
                mechanism: "binomial".into(),
                epsilon: 0.5,
                delta: 1e-6,
            },
            clients: 5,
            outcome: outcome.into(),
        };
        let report = FederationBudgetReport {
            node: "coordinator".into(),
            role: "coordinator".into(),
            entries: 42,
            acknowledged_broken: 0,
            tables: vec![FederationTableRow {
                table: "diabetes".into(),
                releases: 2,
                epsilon: 1.0,
                delta: 2e-6,
            }],
            releases: Some(vec![
                release(7, "released"),
                release(9, "aborted (not_enough_clients)"),
            ]),
            refused_rounds: vec![11],
        };
        let text = format_federation_report(&report);
        assert!(
            text.starts_with(
                "DP releases in the signed audit log of coordinator coordinator (42 entries, \
                 chain and signatures verified)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "table     releases  ε per client (at most)  δ per client (at most)\n\
                 diabetes  2         1                       2e-6\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  2026-12-06T07:56:47.123Z  round 9  binomial  ε = 0.5  δ = 1e-6  5 clients \
                 listed  aborted (not_enough_clients)\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "query rounds whose parameters no client accepts (nothing charged): 11\n"
            ),
            "{text}"
        );
        let empty = FederationBudgetReport {
            tables: Vec::new(),
            releases: None,
            refused_rounds: Vec::new(),
            acknowledged_broken: 1,
            ..report
        };
        let text = format_federation_report(&empty);
        assert!(
            text.ends_with("no differentially private query in this log\n"),
            "{text}"
        );
        assert!(
            text.contains("(42 entries, BROKEN: 1 bad entries named by an operator override"),
            "{text}"
        );
    }

    #[test]
    fn a_table_lists_its_releases_and_a_missing_ledger_says_so() {
        let report = BudgetReport {
            client: "client-0".into(),
            ledger: PathBuf::from("/d/privacy-ledger.db"),
            ledger_exists: false,
            require_dp: false,
            tables: vec![TableRow {
                table: "patients".into(),
                budget: Some(Budget {
                    epsilon: 1.0,
                    delta: 0.0,
                }),
                spent_epsilon: 0.0,
                spent_delta: 0.0,
                releases: 0,
            }],
            releases: Some(vec![Release {
                table: "patients".into(),
                release: "round 17 ab".into(),
                round_id: 17,
                mechanism: "binomial (Dwork et al. 2006)".into(),
                epsilon: 0.5,
                delta: 1e-7,
                at_ms: 1_796_543_807_123,
            }]),
        };
        let text = format_report(&report);
        assert!(
            text.contains(
                "no DP release has been charged on this client yet (no ledger at \
                 /d/privacy-ledger.db)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  2026-12-06T07:56:47.123Z  round 17  binomial (Dwork et al. 2006)  ε = 0.5  \
                 δ = 1e-7  (round 17 ab)\n"
            ),
            "{text}"
        );
    }
}
