//! `sealroom node` (run one role as a service) and `sealroom round start`
//! (ask the coordinator, as an admin, to run a round).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use sealroom_analytics::fl::DatasetKind;
use sealroom_analytics::joint::{self, QUERY_TASK, QueryInput};
use sealroom_analytics::query::Policy;
use sealroom_analytics::training::{
    self, FEDAVG_TASK, MOMENTS_TASK, TrainingData, TrainingInput, UpdateTap,
};
use sealroom_node::config::{DataSource, NodeConfig, Role, load_node_config};
use sealroom_node::coordinator_node::Schedule;
use sealroom_node::local::{open_context, start_round};
use sealroom_node::metrics::Metrics;
use sealroom_node::shutdown;
use sealroom_node::tasks::{InputRouter, InputSource, SYNTHETIC, SyntheticInput, TaskCatalog};

use crate::table::{Align, Table};
use crate::telemetry::{LogFormat, OtlpArgs, SHUTDOWN_TIMEOUT, ServiceId, Telemetry};

/// Options of `sealroom node`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The node's config file (written by `sealroom init`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Coordinator only: also start a round every this many seconds.
    #[arg(long, value_name = "SECS")]
    pub schedule_every: Option<u64>,
    /// Coordinator only: the task scheduled rounds run.
    #[arg(long, default_value = SYNTHETIC)]
    pub schedule_task: String,
    /// Coordinator only: vector length of scheduled rounds (0: task default).
    #[arg(long, default_value_t = 0)]
    pub schedule_dim: u64,
    /// Log as JSON lines instead of text (the level comes from RUST_LOG, default info).
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

/// `sealroom round …`
#[derive(Subcommand, Debug, Clone)]
pub enum RoundCommand {
    /// Ask the coordinator to run one round now and print its outcome.
    Start(RoundStartArgs),
}

/// Options of `sealroom round start`.
#[derive(Args, Debug, Clone)]
pub struct RoundStartArgs {
    /// An admin config (e.g. `admin.toml` written by `sealroom init`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The task: `synthetic` (public test vectors). Queries and trainings
    /// have their own commands (`sealroom query`, `sealroom train`).
    #[arg(long, default_value = SYNTHETIC)]
    pub task: String,
    /// Vector length for tasks that take one (0: the task's default).
    #[arg(long, default_value_t = 0)]
    pub dim: u64,
    /// Only these clients (by name; default: all).
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The tasks every sealroom coordinator offers.
pub fn catalog() -> TaskCatalog {
    let mut c = TaskCatalog::with_builtins();
    training::register_tasks(&mut c);
    joint::register_tasks(&mut c);
    c
}

/// The smallest `min_rows` a client accepts in a query unless its config's
/// `[policy] min_rows` says otherwise: cells of fewer rows are never released.
pub const DEFAULT_MIN_ROWS: u64 = 5;

/// A client's data sources, from its config: the synthetic test task, its
/// bundled training data sets, and its tables for queries.
pub fn client_input(config: &NodeConfig) -> Result<Arc<dyn InputSource>> {
    let mut training_tables = BTreeMap::new();
    let mut query_tables = BTreeMap::new();
    for (table, source) in &config.data {
        match source {
            DataSource::Builtin {
                dataset,
                part,
                parts,
            } => {
                let dataset = match dataset.as_str() {
                    "winequality" => DatasetKind::Wine,
                    "iris" => DatasetKind::Iris,
                    other => bail!(
                        "{}: data.{table}: the bundled {other:?} data set is not a training set (use winequality or iris; for queries write it to a CSV file)",
                        config.file.display()
                    ),
                };
                training_tables.insert(
                    table.clone(),
                    TrainingData {
                        dataset,
                        part: *part,
                        parts: *parts,
                    },
                );
            }
            query => {
                query_tables.insert(table.clone(), query.clone());
            }
        }
    }
    let floor = Policy::new(
        config.policy.map_or(DEFAULT_MIN_ROWS, |p| p.min_rows),
        u32::try_from(config.federation.min_clients).unwrap_or(u32::MAX),
    )?;
    Ok(Arc::new(client_router(
        &config.name,
        training_tables,
        query_tables,
        floor,
        None,
    )))
}

/// The input of a client: which source serves which task.
pub fn client_router(
    name: &str,
    training_tables: BTreeMap<String, TrainingData>,
    query_tables: BTreeMap<String, DataSource>,
    floor: Policy,
    tap: Option<UpdateTap>,
) -> InputRouter {
    let mut training = TrainingInput::new(name, training_tables);
    if let Some(tap) = tap {
        training = training.with_tap(tap);
    }
    let training: Arc<dyn InputSource> = Arc::new(training);
    InputRouter::default()
        .with(
            SYNTHETIC,
            Arc::new(SyntheticInput {
                client: name.to_string(),
            }),
        )
        .with(MOMENTS_TASK, training.clone())
        .with(FEDAVG_TASK, training)
        .with(QUERY_TASK, Arc::new(QueryInput::new(query_tables, floor)))
}

/// Runs one node until Ctrl-C or SIGTERM.
pub fn run_node(args: &NodeArgs) -> Result<()> {
    let config = load_node_config(&args.config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let log = if args.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let service = ServiceId::node(config.role.as_str(), &config.name);
    let telemetry = {
        let _runtime = runtime.enter();
        Telemetry::init(log, &args.otlp, &service)?
    };
    let result = runtime.block_on(async move {
        sealroom_node::tls::install_crypto_provider();
        let metrics = Metrics::new();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = open_context(&config, metrics.clone()).await?;
        if let Some(addr) = config.metrics_listen {
            let bound = metrics.serve(addr, shutdown.clone()).await.with_context(|| format!("serving /metrics on {addr}"))?;
            tracing::info!(%bound, "metrics at http://{bound}/metrics");
        }
        let listener = match config.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?),
            None => None,
        };
        let join = match config.role {
            Role::Coordinator => {
                let schedule = args.schedule_every.map(|secs| Schedule {
                    every: Duration::from_secs(secs.max(1)),
                    task: args.schedule_task.clone(),
                    vector_length: args.schedule_dim,
                });
                let listener = listener.context("the coordinator needs `listen`")?;
                let h = sealroom_node::coordinator_node::spawn(ctx, listener, catalog(), schedule, shutdown.clone()).await?;
                tracing::info!(addr = %h.addr, "coordinator serving");
                h.join
            }
            Role::Helper => {
                let listener = listener.context("a helper needs `listen`")?;
                let h = sealroom_node::helper_node::spawn(ctx, listener, shutdown.clone()).await?;
                tracing::info!(addr = %h.addr, "helper serving");
                h.join
            }
            Role::Client => {
                let input = client_input(&config)?;
                sealroom_node::client_node::spawn(ctx, input, None, shutdown.clone()).await?.join
            }
            Role::Admin => bail!("{}: an admin identity does not run a node; use `sealroom round start --config` with it", args.config.display()),
        };
        tokio::select! {
            () = shutdown::os_signal() => tracing::info!("shutting down"),
            ended = join => {
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(anyhow::Error::from(e).context("the node stopped")),
                    Err(e) => bail!("the node task failed: {e}"),
                }
            }
        }
        trigger.trigger();
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    });
    // Outside async code and before the runtime (which drives the exporter's
    // connection) is dropped; bounded, so a vanished collector cannot hang
    // the exit.
    if let Err(error) = telemetry.shutdown(SHUTDOWN_TIMEOUT) {
        tracing::warn!("{error:#}");
    }
    result
}

/// `sealroom round start`.
pub fn run_round(command: &RoundCommand) -> Result<()> {
    let RoundCommand::Start(args) = command;
    let config = load_node_config(&args.config)?;
    if config.role != Role::Admin {
        bail!(
            "{}: `round start` needs an admin identity (role = \"admin\"), not a {}",
            args.config.display(),
            config.role.as_str()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime
        .block_on(start_round(
            &config,
            &args.task,
            args.dim,
            args.clients.clone(),
        ))
        .map_err(|s| {
            anyhow::anyhow!("the coordinator refused: {} ({:?})", s.message(), s.code())
        })?;
    if args.json {
        let json = serde_json::json!({
            "round_id": outcome.round_id,
            "status": outcome.status,
            "reason": outcome.reason,
            "detail": outcome.detail,
            "included_clients": outcome.included_clients,
            "duration_ms": outcome.duration_ms,
            "values": outcome.values,
        });
        println!("{json}");
    } else {
        let mut t = Table::new([
            ("round", Align::Right),
            ("status", Align::Left),
            ("clients", Align::Right),
            ("ms", Align::Right),
            ("detail", Align::Left),
        ]);
        t.row([
            outcome.round_id.to_string(),
            if outcome.reason.is_empty() {
                outcome.status.clone()
            } else {
                format!("{} ({})", outcome.status, outcome.reason)
            },
            outcome.included_clients.len().to_string(),
            outcome.duration_ms.to_string(),
            outcome.detail.clone(),
        ]);
        print!("{}", t.render());
        if !outcome.values.is_empty() {
            let shown: Vec<String> = outcome
                .values
                .iter()
                .take(8)
                .map(|v| format!("{v:.6}"))
                .collect();
            println!(
                "sum ({} values): [{}{}]",
                outcome.values.len(),
                shown.join(", "),
                if outcome.values.len() > 8 {
                    ", …"
                } else {
                    ""
                }
            );
        }
    }
    if outcome.status != "completed" {
        bail!("round {} aborted: {}", outcome.round_id, outcome.detail);
    }
    Ok(())
}
