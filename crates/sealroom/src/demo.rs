//! `sealroom demo`: a whole federation on loopback — a coordinator, helpers
//! and clients as separate tasks talking gRPC over mutual TLS 1.3, made by the
//! same code as `sealroom init` — running secure-aggregation rounds on real
//! data and showing that every released sum equals the plaintext sum of the
//! clients it includes.
//!
//! The plaintext twins are computed here, in the demo, from the same public
//! test data, only to check the secure results; no sealroom node ever
//! aggregates plaintext.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sealroom_core::QuantSpec;
use sealroom_node::client_node::ClientEvent;
use sealroom_node::grpc::pb::RoundOutcome;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputRouter, InputSource, SYNTHETIC, SyntheticInput, synthetic_vector};

use crate::node_cmd::catalog;
use crate::table::{Align, Table, human_bytes};
use crate::wine;

/// Options of `sealroom demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Number of helpers (independent organisations holding shares), 2..=16.
    #[arg(long, default_value_t = 3)]
    pub helpers: usize,
    /// Number of clients (wineries); the wine data set is split across them.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// Sharing scheme: additive n-of-n over Z_2^32 or Z_2^64 (every helper needed), or
    /// Shamir threshold over F_p (any t helpers suffice).
    #[arg(long, value_enum, default_value_t = Mode::Additive)]
    pub mode: Mode,
    /// Threshold t for `--mode threshold`; must be a majority of the helpers
    /// (default: the smallest majority).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Rounds to run: the first is the wine analytics, the rest sum synthetic
    /// model updates of `--dim` parameters.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Parameters per synthetic update.
    #[arg(long, default_value_t = 100_000)]
    pub dim: u64,
    /// Take client K offline after the first round (repeatable): it is left
    /// out of later inclusion sets.
    #[arg(long = "drop-client", value_name = "K")]
    pub drop_clients: Vec<usize>,
    /// Kill helper I before the last round and restart it afterwards: an
    /// additive round then aborts with signed evidence; a threshold round
    /// completes with the remaining helpers.
    #[arg(long, value_name = "I")]
    pub kill_helper: Option<usize>,
    /// Keep the federation (keys, configs, databases) in this directory
    /// instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The sharing scheme of a round.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Additive n-of-n sharing over Z_2^32 or Z_2^64.
    Additive,
    /// Shamir t-of-h sharing over F_p, p = 2^61 − 1.
    Threshold,
}

struct Planned {
    task: &'static str,
    dim: u64,
    kill: bool,
}

/// Runs the demo; an error (non-zero exit) if any secure result differs from
/// its plaintext twin, or a round aborts that should have completed.
pub fn run(args: &DemoArgs) -> Result<()> {
    if args.clients < 2 {
        bail!("--clients must be at least 2");
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if let Some(k) = args.drop_clients.iter().find(|&&k| k >= args.clients) {
        bail!(
            "--drop-client {k}: there are only {} clients (0..{})",
            args.clients,
            args.clients - 1
        );
    }
    if let Some(i) = args.kill_helper.filter(|&i| i >= args.helpers) {
        bail!(
            "--kill-helper {i}: there are only {} helpers (0..{})",
            args.helpers,
            args.helpers - 1
        );
    }
    let threshold = match args.mode {
        Mode::Additive => None,
        Mode::Threshold => Some(args.threshold.unwrap_or(args.helpers / 2 + 1)),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args, threshold))
}

async fn run_async(args: &DemoArgs, threshold: Option<usize>) -> Result<()> {
    sealroom_node::tls::install_crypto_provider();
    let rows = wine::load()?;
    let slices: Vec<Vec<wine::Row>> = wine::partition(&rows, args.clients)
        .into_iter()
        .map(<[wine::Row]>::to_vec)
        .collect();
    if slices.len() != args.clients {
        bail!(
            "{} rows cannot be split across {} clients",
            rows.len(),
            args.clients
        );
    }
    let names: Vec<String> = (0..args.clients).map(|i| format!("client-{i}")).collect();
    let inputs: Vec<Arc<dyn InputSource>> = names
        .iter()
        .zip(&slices)
        .map(|(name, rows)| {
            Arc::new(
                InputRouter::default()
                    .with(
                        SYNTHETIC,
                        Arc::new(SyntheticInput {
                            client: name.clone(),
                        }),
                    )
                    .with(wine::TASK, Arc::new(wine::WineInput { rows: rows.clone() })),
            ) as Arc<dyn InputSource>
        })
        .collect();

    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let options = InitOptions {
        helpers: args.helpers,
        clients: args.clients,
        threshold,
        federation_id: "sealroom-demo".into(),
        force: true,
        upload_window_ms: 3_000,
        aggregation_window_ms: 3_000,
        ..InitOptions::default()
    };

    println!(
        "sealroom demo — secure aggregation across a federation on loopback (mutual TLS 1.3, gRPC)"
    );
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("creating the federation (CA, certificates, keys) and starting its nodes…");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let (mut fed, mut events) = LocalFederation::start(&dir, options, catalog(), inputs)
        .await
        .context("starting the local federation")?;
    spinner.finish_and_clear();
    let f = fed.summary.federation.clone();
    println!(
        "federation {:?} in {}: 1 coordinator, {} helpers, {} clients; {}; min_clients {}",
        f.federation_id,
        dir.display(),
        f.helpers.len(),
        f.clients.len(),
        match threshold {
            Some(t) => format!("Shamir {t}-of-{} over F_p", args.helpers),
            None => format!(
                "additive {h}-of-{h} over {}",
                f.quantization.ring,
                h = args.helpers
            ),
        },
        f.min_clients
    );
    let q = &f.quantization;
    let default_spec = QuantSpec::new(q.scale_bits, q.clip, q.bits)?;

    let mut plan: Vec<Planned> = vec![Planned {
        task: wine::TASK,
        dim: wine::vector_len() as u64,
        kill: false,
    }];
    for _ in 1..args.rounds {
        plan.push(Planned {
            task: SYNTHETIC,
            dim: args.dim,
            kill: false,
        });
    }
    if args.kill_helper.is_some() {
        if let Some(last) = plan.last_mut().filter(|_| args.rounds > 1) {
            last.kill = true;
        } else {
            plan.push(Planned {
                task: SYNTHETIC,
                dim: args.dim,
                kill: true,
            });
        }
        plan.push(Planned {
            task: SYNTHETIC,
            dim: args.dim,
            kill: false,
        });
    }

    let bar = ProgressBar::new(plan.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} rounds  {msg}").expect("valid template"),
    );
    let mut report = Table::new([
        ("round", Align::Right),
        ("task", Align::Left),
        ("clients", Align::Right),
        ("upload/client", Align::Right),
        ("plaintext f32", Align::Right),
        ("ratio", Align::Right),
        ("latency", Align::Right),
        ("result", Align::Left),
    ]);
    let mut failures = Vec::new();
    let mut wine_check = None;
    let mut offline: Vec<usize> = Vec::new();
    for (i, round) in plan.iter().enumerate() {
        if i == 1 {
            for &k in &args.drop_clients {
                fed.stop_client(k).await;
                offline.push(k);
                bar.println(format!(
                    "client-{k} goes offline (it will be left out of inclusion sets)"
                ));
            }
        }
        let killed = if round.kill { args.kill_helper } else { None };
        if let Some(h) = killed {
            fed.stop_helper(h).await;
            bar.println(format!("helper-{h} is killed before this round"));
        }
        bar.set_message(format!("{} ({} values)", round.task, round.dim));
        let outcome = fed
            .run_round(round.task, round.dim)
            .await
            .map_err(|s| anyhow::anyhow!("round refused: {}", s.message()))?;
        let uploads = drain_uploads(&mut events, outcome.round_id);
        let invited = args.clients;
        let per_client = if uploads.is_empty() {
            0
        } else {
            uploads.values().sum::<usize>() / uploads.len()
        };
        let plain = round.dim as usize * 4;
        let check = if outcome.status == "completed" {
            let expected = plaintext_twin(
                round.task,
                &outcome,
                round.dim as usize,
                &names,
                &slices,
                &default_spec,
            )?;
            if outcome.values == expected {
                "secure == plaintext ✓".to_string()
            } else {
                failures.push(format!(
                    "round {}: secure sum differs from plaintext",
                    outcome.round_id
                ));
                "MISMATCH".to_string()
            }
        } else {
            let expected_abort = killed.is_some() && threshold.is_none();
            let text = format!("aborted: {} (signed abort record)", outcome.reason);
            if !expected_abort && offline.len() + f.min_clients <= invited {
                failures.push(format!(
                    "round {} aborted unexpectedly: {}",
                    outcome.round_id, outcome.detail
                ));
            }
            text
        };
        report.row([
            outcome.round_id.to_string(),
            round.task.to_string(),
            format!("{}/{invited}", outcome.included_clients.len()),
            human_bytes(per_client as u64),
            human_bytes(plain as u64),
            if per_client > 0 {
                format!("{:.2}x", per_client as f64 / plain as f64)
            } else {
                "-".into()
            },
            format!("{} ms", outcome.duration_ms),
            check,
        ]);
        if round.task == wine::TASK && outcome.status == "completed" {
            wine_check = Some(outcome.clone());
        }
        if let Some(h) = killed {
            fed.start_helper(h)
                .await
                .context("restarting the killed helper")?;
            bar.println(format!("helper-{h} restarted from its durable state"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!();
    print!("{}", report.render());

    if let Some(outcome) = wine_check {
        println!();
        println!(
            "wine analytics (round {}): average per quality grade, secure vs plaintext over the same clients",
            outcome.round_id
        );
        let included: Vec<wine::Row> = outcome
            .included_clients
            .iter()
            .flat_map(|&c| slices[c as usize].clone())
            .collect();
        let secure = wine::averages(&outcome.values);
        let plain = wine::plaintext_averages(&included);
        print!("{}", wine::render(&secure, &plain));
        let worst = wine::max_difference(&secure, &plain)?;
        let bound = wine::network_spec().step() / 2.0 * outcome.included_clients.len() as f64;
        println!(
            "largest |secure − plaintext| average: {worst:.2e} (quantization bound {bound:.2e})"
        );
        if worst > bound {
            failures.push(format!("wine averages differ from plaintext by {worst:e}"));
        }
    }
    let text = fed.metrics["coordinator"].render();
    let completed = count_metric(
        &text,
        "sealroom_rounds_total{role=\"coordinator\",outcome=\"completed\"",
    );
    println!();
    println!(
        "coordinator metrics: {completed} round(s) completed; refused connections and requests are counted in sealroom_connections_refused_total / sealroom_requests_refused_total"
    );
    fed.shutdown().await;
    if failures.is_empty() {
        println!("all secure results equal their plaintext twins.");
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

fn count_metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Bytes each client uploaded in `round_id`, from the clients' event stream.
fn drain_uploads(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, ClientEvent)>,
    round_id: u64,
) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    while let Ok((client, event)) = events.try_recv() {
        if let ClientEvent::Uploaded {
            round_id: r, bytes, ..
        } = event
            && r == round_id
        {
            out.insert(client, bytes);
        }
    }
    out
}

/// The plaintext twin of a completed round: the exact sum of the included
/// clients' quantized inputs, dequantized — computed here only to check.
fn plaintext_twin(
    task: &str,
    outcome: &RoundOutcome,
    dim: usize,
    names: &[String],
    slices: &[Vec<wine::Row>],
    default_spec: &QuantSpec,
) -> Result<Vec<f64>> {
    let (spec, vectors): (QuantSpec, Vec<Vec<f64>>) = if task == wine::TASK {
        let v = outcome
            .included_clients
            .iter()
            .map(|&c| wine::local_float_sums(&slices[c as usize]))
            .collect::<Result<_>>()?;
        (wine::network_spec(), v)
    } else {
        let v = outcome
            .included_clients
            .iter()
            .map(|&c| {
                synthetic_vector(
                    &names[c as usize],
                    outcome.round_id,
                    dim,
                    default_spec.clip(),
                )
            })
            .collect();
        (*default_spec, v)
    };
    let mut sum = vec![0i64; vectors.first().map_or(dim, Vec::len)];
    for v in &vectors {
        for (s, q) in sum.iter_mut().zip(spec.quantize(v)?.values.iter()) {
            *s += q;
        }
    }
    Ok(sum.into_iter().map(|q| spec.dequantize(q)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parameters_are_errors() {
        let base = DemoArgs {
            helpers: 3,
            clients: 5,
            mode: Mode::Additive,
            threshold: None,
            rounds: 2,
            dim: 10,
            drop_clients: vec![],
            kill_helper: None,
            dir: None,
        };
        assert!(
            run(&DemoArgs {
                clients: 1,
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            run(&DemoArgs {
                rounds: 0,
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            run(&DemoArgs {
                drop_clients: vec![5],
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            run(&DemoArgs {
                kill_helper: Some(3),
                ..base
            })
            .is_err()
        );
    }
}
