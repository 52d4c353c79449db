//! `sealroom query`: ask the federation a joint question in SQL, as an
//! admin. Each client answers from its own data; only the released cells of
//! the secure sum come back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use sealroom_analytics::joint::{QueryRun, run_query};
use sealroom_analytics::query::QuerySpec;
use sealroom_analytics::query::dp::DpSpec;
use sealroom_node::config::{NodeConfig, Role, load_node_config};

use crate::node_cmd::DEFAULT_MIN_ROWS;

/// Options of `sealroom query`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Supported: SELECT over one table with COUNT(*), COUNT(col), SUM, AVG, VAR_SAMP,
VAR_POP, STDDEV(_SAMP/_POP), HISTOGRAM(col, edge, edge, ...), REGR_SLOPE,
REGR_INTERCEPT, REGR_R2, REGR_COUNT, OLS(y, x1, ..., xk); and MIN, MAX,
MEDIAN, PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY col), which the three
helpers compute with the MPC engine in a third round (federations of exactly
three helpers in additive mode; each client sends at most
--max-rows-per-client values per cell, and a cell where a client has more
gets NULL with the reason). WHERE filters; GROUP BY over a declared domain
(--domain); values outside it count in an \"(other)\" cell. Every column used
in arithmetic or inside an aggregate needs declared bounds (--bound): each
client clamps its values to them, so no row can dominate a statistic or make
a client's evaluation fail, and the result counts per cell the rows that
were adjusted. Not supported (refused with the reason): joins,
COUNT(DISTINCT), subqueries.

Differential privacy (--dp-epsilon, --dp-delta): the query runs as one MPC
engine round; the helpers add binomial noise from jointly generated random
bits to every cell's sums before anything is opened, so no party knows the
noise and two answers that differ by one row no longer reveal it. A cell is
released when its noised row count reaches --min-rows (min_clients then holds
for the round, not per cell). Each client charges (ε, δ) to its table's
privacy budget before it answers and refuses a query over budget; see
`sealroom audit budget` on a client. MIN, MAX, MEDIAN and PERCENTILE_CONT are
not available under DP.

Example:
  sealroom query --config fed/admin.toml --domain dept=eng,sales,ops \\
    --bound salary=0,1000000 \\
    \"SELECT dept, COUNT(*), AVG(salary) FROM salaries GROUP BY dept\"")]
pub struct QueryArgs {
    /// An admin config (e.g. `admin.toml` written by `sealroom init`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The query (or give a whole spec with `--spec`).
    #[arg(required_unless_present = "spec", conflicts_with = "spec")]
    pub sql: Option<String>,
    /// A query spec as JSON: `{"sql": …, "domains": {…}, "min_rows": …,
    /// "min_clients": …, "bounds": {…}, "dp": {"epsilon": …, "delta": …}}`
    /// (see examples/salaries/queries/).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["domains", "min_rows", "min_clients", "bounds", "max_rows_per_client", "dp_epsilon", "dp_delta"])]
    pub spec: Option<PathBuf>,
    /// The declared bounds of a numeric column: `COLUMN=LO,HI` (repeatable;
    /// needed for every column used in arithmetic or an aggregate).
    #[arg(long = "bound", value_name = "COLUMN=LO,HI")]
    pub bounds: Vec<String>,
    /// The declared domain of a GROUP BY column: `COLUMN=v1,v2,...`
    /// (repeatable).
    #[arg(long = "domain", value_name = "COLUMN=VALUES")]
    pub domains: Vec<String>,
    /// A released cell needs at least this many rows in total.
    #[arg(long, default_value_t = DEFAULT_MIN_ROWS)]
    pub min_rows: u64,
    /// A released cell needs rows from at least this many clients (default:
    /// the federation's min_clients).
    #[arg(long)]
    pub min_clients: Option<u32>,
    /// MIN, MAX, MEDIAN, PERCENTILE_CONT: the most values of a cell one
    /// client sends to the MPC engine (1 to 1024; default 64). A cell where
    /// a client holds more gets NULL for those items, with the reason.
    #[arg(long, value_name = "N")]
    pub max_rows_per_client: Option<u32>,
    /// Differential privacy: the ε of the whole release, for one row of a
    /// client's table (0.01 to 20; smaller is more private and noisier).
    /// Turns the query into one noised MPC engine round.
    #[arg(long, value_name = "EPSILON", requires = "dp_delta")]
    pub dp_epsilon: Option<f64>,
    /// Differential privacy: the δ of the whole release (1e-12 to 1e-3;
    /// needs --dp-epsilon).
    #[arg(long, value_name = "DELTA", requires = "dp_epsilon")]
    pub dp_delta: Option<f64>,
    /// Ask only these clients (by name; default: all).
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--domain COLUMN=v1,v2` options.
pub fn parse_domains(options: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut domains = BTreeMap::new();
    for option in options {
        let Some((column, values)) = option.split_once('=') else {
            bail!("--domain {option:?}: expected COLUMN=v1,v2,...");
        };
        let column = column.trim();
        if column.is_empty() {
            bail!("--domain {option:?}: the column name is empty");
        }
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            bail!("--domain {option:?}: no values");
        }
        if domains.insert(column.to_string(), values).is_some() {
            bail!("--domain: column {column:?} is declared twice");
        }
    }
    Ok(domains)
}

/// Parses `--bound COLUMN=LO,HI` options.
pub fn parse_bounds(options: &[String]) -> Result<BTreeMap<String, [f64; 2]>> {
    let mut bounds = BTreeMap::new();
    for option in options {
        let parsed = option.split_once('=').and_then(|(column, range)| {
            let (lo, hi) = range.split_once(',')?;
            Some((
                column.trim(),
                lo.trim().parse::<f64>().ok()?,
                hi.trim().parse::<f64>().ok()?,
            ))
        });
        let Some((column, lo, hi)) = parsed.filter(|(c, _, _)| !c.is_empty()) else {
            bail!("--bound {option:?}: expected COLUMN=LO,HI with two numbers");
        };
        if bounds.insert(column.to_string(), [lo, hi]).is_some() {
            bail!("--bound: column {column:?} is bounded twice");
        }
    }
    Ok(bounds)
}

/// Loads an admin identity, refusing other roles.
pub fn load_admin(path: &std::path::Path, command: &str) -> Result<NodeConfig> {
    let config = load_node_config(path)?;
    if config.role != Role::Admin {
        bail!(
            "{}: `{command}` needs an admin identity (role = \"admin\"), not a {}",
            path.display(),
            config.role.as_str()
        );
    }
    Ok(config)
}

/// `sealroom query`.
pub fn run(args: &QueryArgs) -> Result<()> {
    let config = load_admin(&args.config, "query")?;
    let spec = match (&args.spec, &args.sql) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<QuerySpec>(&text)
                .with_context(|| format!("{}: not a query spec", path.display()))?
        }
        (None, Some(sql)) => QuerySpec {
            max_rows_per_client: args.max_rows_per_client,
            sql: sql.clone(),
            domains: parse_domains(&args.domains)?,
            min_rows: args.min_rows,
            min_clients: args
                .min_clients
                .unwrap_or(u32::try_from(config.federation.min_clients).unwrap_or(u32::MAX)),
            bounds: parse_bounds(&args.bounds)?,
            dp: match (args.dp_epsilon, args.dp_delta) {
                (Some(epsilon), Some(delta)) => Some(DpSpec { epsilon, delta }),
                _ => None,
            },
        },
        (None, None) => bail!("give the query as an argument, or --spec FILE"),
    };
    // Refuse unsupported SQL here, before any round starts.
    sealroom_analytics::query::plan(&spec)?;
    let clients: Vec<String> = if args.clients.is_empty() {
        config
            .federation
            .clients
            .iter()
            .map(|c| c.name.clone())
            .collect()
    } else {
        args.clients.clone()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let run = runtime.block_on(async {
        sealroom_node::tls::install_crypto_provider();
        run_query(&config, &spec, &clients).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print_run(&run);
    }
    Ok(())
}

/// Prints a query's result and where it came from.
pub fn print_run(run: &QueryRun) {
    print!("{}", run.result.render_table());
    let rounds = match (run.stats_round, run.order_round) {
        (None, _) if run.result.privacy.is_some() => format!(
            "round {} (differentially private: one MPC engine round, noise added by the helpers)",
            run.counts_round
        ),
        (Some(stats), Some(order)) => format!(
            "rounds {} (counts), {stats} (statistics) and {order} (order statistics, MPC engine)",
            run.counts_round
        ),
        (Some(stats), None) => format!(
            "rounds {} (counts) and {stats} (statistics)",
            run.counts_round
        ),
        (None, _) => format!(
            "round {} (counts; every cell was suppressed, so no statistics round ran)",
            run.counts_round
        ),
    };
    let ms: u64 = run.durations_ms.iter().sum();
    println!(
        "{} client(s): {}; {rounds}; {ms} ms",
        run.included.len(),
        run.included.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_parse_and_refuse_bad_forms() {
        let d = parse_domains(&["dept=eng, sales,ops".into(), "site=a".into()]).expect("valid");
        assert_eq!(d["dept"], vec!["eng", "sales", "ops"]);
        assert_eq!(d["site"], vec!["a"]);
        for bad in ["dept", "=a,b", "dept=", "dept=,"] {
            assert!(parse_domains(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_domains(&["a=1".into(), "a=2".into()]).is_err());
    }
}
