//! `sealroom node` (run one role as a service) and `sealroom round start`
//! (ask the coordinator, as an admin, to run a round).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use sealroom_node::config::{NodeConfig, Role, load_node_config};
use sealroom_node::coordinator_node::Schedule;
use sealroom_node::local::{open_context, start_round};
use sealroom_node::metrics::Metrics;
use sealroom_node::shutdown;
use sealroom_node::tasks::{InputSource, SYNTHETIC};

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
    /// Coordinator and helpers: start even if this node's audit log does not
    /// verify. Without it a node whose log has a bad entry (edited, deleted,
    /// inserted, badly signed) refuses to start and names the first one. With
    /// it the node appends an "override" entry, signed with its key, naming
    /// every bad entry, and starts; `sealroom audit verify` then reports
    /// "chain broken at N, override recorded at M" (and still fails). Later
    /// starts need the flag again only for bad entries no override names.
    /// Use it only after the break has been investigated (docs/runbook.md).
    #[arg(long)]
    pub accept_broken_audit_chain: bool,
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

pub use sealroom_analytics::service::{DEFAULT_MIN_ROWS, catalog, client_router};

/// A client's data sources, from its config (see
/// [`sealroom_analytics::service::client_input`]).
pub fn client_input(config: &NodeConfig) -> Result<Arc<dyn InputSource>> {
    Ok(sealroom_analytics::service::client_input(
        config,
        Vec::new(),
    )?)
}

/// Why `sealroom node` refuses an admin config.
fn admin_runs_no_node(config: &std::path::Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: an admin identity does not run a node; use `sealroom round start --config` with it",
        config.display()
    )
}

/// Runs one node until Ctrl-C or SIGTERM.
pub fn run_node(args: &NodeArgs) -> Result<()> {
    let config = load_node_config(&args.config)?;
    // Refused before anything is opened or created (the node's database).
    if config.role == Role::Admin {
        return Err(admin_runs_no_node(&args.config));
    }
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
        let mut ctx = open_context(&config, metrics.clone()).await?;
        ctx.accept_broken_audit_chain = args.accept_broken_audit_chain;
        // SIGHUP: read federation.toml again (revocation without a restart).
        tokio::spawn(sealroom_node::reload::reload_on_hangup(
            ctx.clone(),
            args.config.clone(),
            shutdown.clone(),
        ));
        if let Some(addr) = config.metrics_listen {
            let bound = metrics
                .serve(addr, shutdown.clone())
                .await
                .with_context(|| format!("serving /metrics on {addr}"))?;
            tracing::info!(%bound, "metrics at http://{bound}/metrics");
        }
        let listener = match config.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?,
            ),
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
                let h = sealroom_node::coordinator_node::spawn(
                    ctx,
                    listener,
                    catalog(),
                    schedule,
                    shutdown.clone(),
                )
                .await?;
                tracing::info!(addr = %h.addr, "coordinator serving");
                h.join
            }
            Role::Helper => {
                let listener = listener.context("a helper needs `listen`")?;
                let h =
                    sealroom_node::helper_node::spawn(ctx, listener, catalog(), shutdown.clone())
                        .await?;
                tracing::info!(addr = %h.addr, "helper serving");
                h.join
            }
            Role::Client => {
                let input = client_input(&config)?;
                sealroom_node::client_node::spawn(ctx, input, None, shutdown.clone())
                    .await?
                    .join
            }
            Role::Admin => return Err(admin_runs_no_node(&args.config)),
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
