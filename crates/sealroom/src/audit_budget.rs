//! `sealroom audit budget`: what each of a client's tables has spent of its
//! differential-privacy budget, read from the client's ledger
//! (`sealroom_analytics::budget`) against the budgets in its config.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use sealroom_analytics::budget::{Budget, ClientPrivacy, Ledger, Num, Release, Spend};
use sealroom_node::config::{Role, load_node_config};
use serde::Serialize;

/// `sealroom audit budget`.
#[derive(Args, Debug)]
pub struct BudgetArgs {
    /// The client's config file: its tables' budgets
    /// (`[privacy_budget.<table>]`) and its data directory, where the ledger
    /// `privacy-ledger.db` lives.
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
    let report = report(args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_report(&report));
    }
    Ok(())
}

async fn report(args: &BudgetArgs) -> anyhow::Result<BudgetReport> {
    let config = load_node_config(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if config.role != Role::Client {
        bail!(
            "{} is a {}'s config: privacy budgets are kept by each client; give a client's config",
            args.config.display(),
            config.role.as_str()
        );
    }
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
        let header = [
            "table".to_string(),
            "ε spent".to_string(),
            "δ spent".to_string(),
            "releases".to_string(),
        ];
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                std::iter::once(&header)
                    .chain(&cells)
                    .map(|c| c[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for line in std::iter::once(&header).chain(&cells) {
            let padded: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        }
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
