//! `sealroom train`: federated training as an admin — one secure round of
//! feature moments, then FedAvg rounds; prints accuracy per round. The
//! training knobs are shared with `sealroom demo`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, TrainConfig};
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
        })
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
pub struct TrainArgs {
    /// An admin config (e.g. `admin.toml` written by `sealroom init`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
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

/// One row of the per-round table.
pub fn round_row(r: &TrainingRound, invited: usize) -> [String; 7] {
    [
        r.round.to_string(),
        format!("{}/{invited}", r.included.len()),
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
