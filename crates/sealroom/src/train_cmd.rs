//! `sealroom train`: federated training as an admin — one secure round of
//! feature moments, then FedAvg rounds; prints accuracy per round. With
//! `--spec FILE` the clients train on their own tables (a training spec,
//! `docs/analytics.md`), with validation rounds, early stopping and an
//! exported model (`--export DIR`). Without it, on a bundled data set; those
//! knobs are shared with `sealroom demo`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, RobustAggregation, TrainConfig};
use sealroom_analytics::model_export;
use sealroom_analytics::query::DataSource;
use sealroom_analytics::table_training::{self, Metrics, TableRound, TableTrainingReport};
use sealroom_analytics::train_spec::TrainingSpec;
use sealroom_analytics::training::{SplitSpec, Trainer, TrainingPlan, TrainingRound};

use crate::query_cmd::load_admin;
use crate::table::{Align, Table};

/// The model to train.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// Multinomial logistic regression.
    Logistic,
    /// One hidden tanh layer (width `--hidden`).
    Mlp,
}

/// The bundled data set.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetChoice {
    /// Red-wine quality (1,599 rows, 11 features, 6 grades).
    Wine,
    /// Iris (150 rows, 4 features, 3 species).
    Iris,
}

/// Knobs of a federated training (shared by `train` and `demo`).
#[derive(Args, Debug, Clone)]
pub struct TrainingArgs {
    /// The data set, split non-IID across the clients.
    #[arg(long, value_enum, default_value_t = DatasetChoice::Wine)]
    pub dataset: DatasetChoice,
    /// The model.
    #[arg(long, value_enum, default_value_t = ModelChoice::Logistic)]
    pub model: ModelChoice,
    /// Hidden units of the MLP.
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// FedAvg rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Bits per quantized delta value (8, 12 and 16 are typical).
    #[arg(long, default_value_t = 16)]
    pub bits: u8,
    /// Delta values are clipped to ±CLIP before quantizing (counted).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Carry each client's quantization residual into its next update.
    #[arg(long)]
    pub error_feedback: bool,
    /// Input validity: the helpers check every update inside the MPC
    /// engine and leave out those whose delta has an L2 norm above this
    /// bound (exact on the quantized integers; also refused: a weight
    /// outside 0..=4096). Needs three helpers in additive mode.
    #[arg(long, value_name = "NORM")]
    pub l2_bound: Option<f64>,
    /// Input validity: the helpers also leave out (inside the MPC engine)
    /// every update with one delta element above this bound in absolute
    /// value — a spike an L2 bound lets through. With --l2-bound or alone;
    /// the report names which bound an update failed.
    #[arg(long, value_name = "BOUND")]
    pub linf_bound: Option<f64>,
    /// Robust aggregation: the helpers scale every update to an L2 norm
    /// of at most NORM inside the MPC engine (min(1, NORM/‖Δ‖), on a grid
    /// about 4.4 % below NORM) before averaging. Needs --l2-bound (at
    /// least NORM, at most 65,536 × NORM): updates above it are left out.
    #[arg(long, value_name = "NORM", requires = "l2_bound", conflicts_with_all = ["trimmed_mean", "median"])]
    pub clip_norm: Option<f64>,
    /// Robust aggregation: per parameter, the helpers average the clients'
    /// values after dropping the ⌊BETA·n⌋ smallest and largest, inside the
    /// MPC engine (unweighted; BETA in [0, 0.5)). Takes no bounds.
    #[arg(long, value_name = "BETA", conflicts_with_all = ["median", "l2_bound", "linf_bound"])]
    pub trimmed_mean: Option<f64>,
    /// Robust aggregation: per parameter, the clients' median (the mean of
    /// the two middle values for an even cohort), inside the MPC engine.
    #[arg(long, conflicts_with_all = ["l2_bound", "linf_bound"])]
    pub median: bool,
    /// Robust aggregation: multi-Krum tolerating F Byzantine clients,
    /// inside the MPC engine: the mean of the --krum-select updates whose
    /// summed squared distances to their n − F − 2 nearest others are
    /// lowest (unweighted; every round needs n > 2F + 2 clients). Needs
    /// --l2-bound (updates beyond it enter the selection as zero).
    #[arg(long, value_name = "F", requires = "l2_bound", conflicts_with_all = ["clip_norm", "trimmed_mean", "median", "linf_bound"])]
    pub multi_krum: Option<usize>,
    /// Updates multi-Krum averages (1 = Krum, which releases one client's
    /// whole update, though not whose).
    #[arg(long, value_name = "M", default_value_t = 1, requires = "multi_krum")]
    pub krum_select: usize,
    /// Local SGD learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f64,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Local mini-batch size.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Dirichlet concentration of the clients' label skew (small = non-IID).
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Seed of the public random choices (split, initial model, shuffles).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl TrainingArgs {
    /// The plan these options describe, for clients' table `table`.
    pub fn plan(&self, table: &str) -> Result<TrainingPlan> {
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if !(2..=24).contains(&self.bits) {
            bail!("--bits must be between 2 and 24 (8, 12 or 16 are typical)");
        }
        if self.model == ModelChoice::Mlp && self.hidden == 0 {
            bail!("--hidden must be at least 1");
        }
        let fedavg = FedAvgSpec {
            bits: self.bits,
            delta_clip: self.clip,
            max_weight: 4096,
        };
        fedavg
            .wire_spec()
            .with_context(|| format!("--bits {} with --clip {}", self.bits, self.clip))?;
        Ok(TrainingPlan {
            l2_bound: self.l2_bound,
            linf_bound: self.linf_bound,
            table: table.into(),
            split: SplitSpec {
                dataset: self.dataset(),
                test_fraction: 0.25,
                alpha: self.alpha,
                min_rows: 10,
                seed: self.seed,
            },
            model: match self.model {
                ModelChoice::Logistic => ModelKind::Logistic,
                ModelChoice::Mlp => ModelKind::Mlp {
                    hidden: self.hidden,
                },
            },
            rounds: self.rounds,
            train: TrainConfig {
                learning_rate: self.learning_rate,
                epochs: self.epochs,
                batch_size: self.batch_size,
                l2: 1e-4,
                seed: self.seed,
            },
            fedavg,
            error_feedback: self.error_feedback,
            init_seed: self.seed,
            clients: Vec::new(),
            robust: self.robust()?,
        })
    }

    /// The robust aggregation chosen, if any.
    fn robust(&self) -> Result<Option<RobustAggregation>> {
        let robust = match (
            self.clip_norm,
            self.trimmed_mean,
            self.median,
            self.multi_krum,
        ) {
            (Some(norm), None, false, None) => Some(RobustAggregation::Clip { norm }),
            (None, Some(beta), false, None) => Some(RobustAggregation::TrimmedMean { beta }),
            (None, None, true, None) => Some(RobustAggregation::Median),
            (None, None, false, Some(byzantine)) => Some(RobustAggregation::MultiKrum {
                byzantine,
                selected: self.krum_select,
            }),
            (None, None, false, None) => None,
            _ => bail!(
                "choose at most one of --clip-norm, --trimmed-mean, --median and --multi-krum"
            ),
        };
        if let Some(r) = robust {
            r.check().with_context(|| format!("{r}"))?;
        }
        Ok(robust)
    }

    /// The data set.
    pub fn dataset(&self) -> DatasetKind {
        match self.dataset {
            DatasetChoice::Wine => DatasetKind::Wine,
            DatasetChoice::Iris => DatasetKind::Iris,
        }
    }
}

/// Options of `sealroom train`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Training on the clients' own tables (CSV, SQLite or PostgreSQL, as in their
[data.<table>] config entries): give a training spec, e.g.

  {\"table\": \"patients\", \"label\": \"outcome\", \"features\": [\"age\", \"bmi\"],
   \"classes\": [\"healthy\", \"sick\"], \"model\": \"logistic\", \"rounds\": 30,
   \"validation\": {\"fraction\": 0.2}, \"early_stopping\": {\"patience\": 5}}

  sealroom train --config fed/admin.toml --spec train.json --export model/

The model is written to model/model.safetensors and model/model.json (see
docs/analytics.md). Input validity and robust aggregation are part of the
signed spec there, not flags: e.g. \"defences\": {\"l2_bound\": 5.0,
\"robust\": {\"kind\": \"clip\", \"norm\": 0.5}}. So is differential privacy:
\"dp\": {\"epsilon\": 8.0, \"delta\": 1e-6, \"clip_norm\": 1.0} runs DP-FedAvg
(clipping and noise inside the MPC engine, each round charged to every
client's [privacy_budget.<table>]; needs \"validation\": {\"fraction\": 0}
and evaluates with --test). Without --spec, the clients train on a bundled
data set.")]
pub struct TrainArgs {
    /// An admin config (e.g. `admin.toml` written by `sealroom init`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A training spec (JSON): train on the clients' own tables.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "table", "dataset", "model", "hidden", "rounds", "bits", "clip", "error_feedback",
        "learning_rate", "epochs", "batch_size", "alpha", "seed", "l2_bound", "linf_bound",
        "clip_norm", "trimmed_mean", "median", "multi_krum",
    ])]
    pub spec: Option<PathBuf>,
    /// With --spec: the admin's own held-out rows (a CSV file with the
    /// spec's columns) to report test metrics on; never sent anywhere.
    #[arg(long, value_name = "CSV", requires = "spec")]
    pub test: Option<PathBuf>,
    /// With --spec: write the model to DIR/model.safetensors and
    /// DIR/model.json.
    #[arg(long, value_name = "DIR", requires = "spec")]
    pub export: Option<PathBuf>,
    /// The clients' table holding the training data (`sealroom init` gives
    /// every client its part of the wine data as `wine`).
    #[arg(long, default_value = "wine")]
    pub table: String,
    /// Train with these clients only (by name; default: all).
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub training: TrainingArgs,
}

/// A progress bar over training rounds.
pub fn round_bar(rounds: usize) -> ProgressBar {
    let bar = ProgressBar::new(rounds as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} rounds  {msg}")
            .expect("a valid fixed template"),
    );
    bar
}

/// The clients a round averaged, of those invited: an update the helpers'
/// validity check left out is named with the bounds it failed, a client
/// whose upload failed the sketch check (the round ran again without it)
/// as left out.
fn clients_cell(
    included: usize,
    invited: usize,
    left_out: &[String],
    rejected: &[String],
    rejected_checks: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut notes = Vec::new();
    if !left_out.is_empty() {
        notes.push(format!("left out, bad upload: {}", left_out.join(", ")));
    }
    if !rejected.is_empty() {
        notes.push(format!(
            "rejected: {}",
            rejected
                .iter()
                .map(|name| match rejected_checks.get(name) {
                    Some(checks) => format!("{name} [{}]", checks.join(", ")),
                    None => name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let averaged = included - rejected.len();
    if notes.is_empty() {
        format!("{averaged}/{invited}")
    } else {
        format!("{averaged}/{invited} ({})", notes.join("; "))
    }
}

/// One row of the per-round table.
pub fn round_row(r: &TrainingRound, invited: usize) -> [String; 7] {
    [
        r.round.to_string(),
        clients_cell(
            r.included.len(),
            invited,
            &r.left_out,
            &r.rejected,
            &r.rejected_checks,
        ),
        format!("{:.1}%", r.accuracy * 100.0),
        format!("{:.4}", r.loss),
        format!("{} ms", r.duration_ms),
        r.clipped.map_or("-".into(), |c| c.to_string()),
        match r.plaintext_identical {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => "-".into(),
        },
    ]
}

/// The per-round table's header.
pub fn round_table() -> Table {
    Table::new([
        ("round", Align::Right),
        ("clients", Align::Right),
        ("test accuracy", Align::Right),
        ("test loss", Align::Right),
        ("latency", Align::Right),
        ("clipped", Align::Right),
        ("secure == plaintext FedAvg", Align::Left),
    ])
}

/// `sealroom train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    if let Some(spec) = &args.spec {
        return run_spec(args, spec);
    }
    let config = load_admin(&args.config, "train")?;
    let mut plan = args.training.plan(&args.table)?;
    plan.clients = args.clients.clone();
    let names: Vec<String> = config
        .federation
        .clients
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let invited = if plan.clients.is_empty() {
        names.len()
    } else {
        plan.clients.len()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        sealroom_node::tls::install_crypto_provider();
        let mut trainer = Trainer::start(&config, &plan, &names).await?;
        let bar = round_bar(plan.rounds);
        for _ in 0..plan.rounds {
            let r = trainer.round(&config, None).await?;
            bar.set_message(format!("accuracy {:.1}%", r.accuracy * 100.0));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>(trainer.report())
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut table = round_table();
    for r in &report.rounds {
        table.row(round_row(r, invited));
    }
    print!("{}", table.render());
    println!(
        "{} parameters; initial accuracy {:.1}%; final {:.1}%",
        report.n_params,
        report.initial.0 * 100.0,
        report.rounds.last().map_or(0.0, |r| r.accuracy) * 100.0
    );
    Ok(())
}

/// `sealroom train --spec FILE`: a training on the clients' own tables.
fn run_spec(args: &TrainArgs, spec_path: &std::path::Path) -> Result<()> {
    let config = load_admin(&args.config, "train")?;
    // Refuse a bad spec before any round starts.
    let spec = TrainingSpec::from_file(spec_path)?;
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
    let report = runtime.block_on(async {
        sealroom_node::tls::install_crypto_provider();
        let test = match &args.test {
            Some(path) => Some(
                table_training::read_test_rows(&DataSource::Csv { path: path.clone() }, &spec)
                    .await
                    .context("--test")?,
            ),
            None => None,
        };
        let bar = round_bar(spec.rounds);
        let report = table_training::train(&config, &spec, &clients, test.as_ref(), |r| {
            if let Some(v) = r.validation {
                bar.set_message(format!("validation loss {:.4}", v.loss));
            }
            bar.inc(1);
        })
        .await;
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>(report?)
    })?;
    if let Some(dir) = &args.export {
        model_export::write(&report, dir)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table_report(&report, clients.len());
        if let Some(dir) = &args.export {
            println!(
                "model written to {} and {}",
                dir.join(model_export::TENSORS_FILE).display(),
                dir.join(model_export::JSON_FILE).display()
            );
        }
    }
    Ok(())
}

fn metric_cells(m: Option<Metrics>) -> [String; 2] {
    match m {
        Some(m) => [
            m.accuracy
                .map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
            format!("{:.4}", m.loss),
        ],
        None => ["-".into(), "-".into()],
    }
}

fn print_table_report(report: &TableTrainingReport, invited: usize) {
    let regression = report.spec.model.is_regression();
    let loss = if regression { "MSE" } else { "loss" };
    let mut table = Table::new([
        ("round", Align::Right),
        ("clients", Align::Right),
        ("validation accuracy", Align::Right),
        (
            if regression {
                "validation MSE"
            } else {
                "validation loss"
            },
            Align::Right,
        ),
        ("test accuracy", Align::Right),
        (
            if regression { "test MSE" } else { "test loss" },
            Align::Right,
        ),
        ("latency", Align::Right),
    ]);
    let row = |r: &TableRound| {
        let [va, vl] = metric_cells(r.validation);
        let [ta, tl] = metric_cells(r.test);
        [
            r.round.to_string(),
            clients_cell(
                r.included.len(),
                invited,
                &r.left_out,
                &r.rejected,
                &r.rejected_checks,
            ),
            va,
            vl,
            ta,
            tl,
            format!("{} ms", r.duration_ms),
        ]
    };
    for r in &report.rounds {
        table.row(row(r));
    }
    print!("{}", table.render());
    let best = report.best_round;
    let why = if report.spec.validation.fraction > 0.0 {
        format!("lowest validation {loss}")
    } else {
        "no validation rows: the last round".into()
    };
    let rows = match &report.spec.dp {
        Some(dp) => format!(
            "differentially private (ε {}, δ {:e} in all; the row count is not released)",
            dp.epsilon, dp.delta
        ),
        None => format!("{} training rows", report.training_rows),
    };
    println!(
        "{} parameters, {rows}; the model is round {best}'s ({why}){}",
        report.n_params,
        if report.stopped_early {
            "; early stopping ended the training"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        training: TrainingArgs,
    }

    fn parse(args: &[&str]) -> Result<TrainingArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
            .map(|c| c.training)
    }

    #[test]
    fn robust_aggregation_flags_make_the_plan_or_are_refused() {
        let robust = |args: &[&str]| {
            parse(args)
                .expect("parses")
                .plan("wine")
                .expect("plans")
                .robust
        };
        assert_eq!(robust(&[]), None);
        assert_eq!(
            robust(&["--clip-norm", "0.5", "--l2-bound", "5"]),
            Some(RobustAggregation::Clip { norm: 0.5 })
        );
        assert_eq!(
            robust(&["--trimmed-mean", "0.2"]),
            Some(RobustAggregation::TrimmedMean { beta: 0.2 })
        );
        assert_eq!(robust(&["--median"]), Some(RobustAggregation::Median));
        assert_eq!(
            robust(&["--multi-krum", "1", "--krum-select", "3", "--l2-bound", "5"]),
            Some(RobustAggregation::MultiKrum {
                byzantine: 1,
                selected: 3
            })
        );
        // Refused by clap: a clip or Krum without a hard bound, two robust
        // rules, a bound with a rank-based rule, --krum-select alone.
        for args in [
            &["--clip-norm", "0.5"][..],
            &["--multi-krum", "1"],
            &["--median", "--trimmed-mean", "0.1"],
            &["--median", "--l2-bound", "5"],
            &["--clip-norm", "0.5", "--l2-bound", "5", "--median"],
            &["--krum-select", "2"],
        ] {
            assert!(parse(args).is_err(), "{args:?} must be refused");
        }
        // Refused by the plan, naming the setting.
        let err = parse(&["--trimmed-mean", "0.5"])
            .expect("parses")
            .plan("wine")
            .expect_err("beta 0.5");
        assert!(format!("{err:#}").contains("beta"), "{err:#}");
        let err = parse(&["--clip-norm=-1", "--l2-bound", "5"])
            .expect("parses")
            .plan("wine")
            .expect_err("negative clip");
        assert!(format!("{err:#}").contains("clip norm"), "{err:#}");
    }

    #[test]
    fn defence_flags_are_refused_with_a_spec_which_carries_them() {
        #[derive(Parser)]
        struct Train {
            #[command(flatten)]
            args: TrainArgs,
        }
        let parse = |extra: &[&str]| {
            Train::try_parse_from(
                ["train", "--config", "admin.toml", "--spec", "train.json"]
                    .into_iter()
                    .chain(extra.iter().copied()),
            )
        };
        assert!(parse(&[]).is_ok());
        for args in [
            &["--l2-bound", "5"][..],
            &["--linf-bound", "1"],
            &["--clip-norm", "0.5", "--l2-bound", "5"],
            &["--trimmed-mean", "0.2"],
            &["--median"],
            &["--multi-krum", "1", "--l2-bound", "5"],
        ] {
            let err = parse(args).err().expect("refused");
            assert!(err.to_string().contains("--spec"), "{args:?}: {err}");
        }
    }
}
