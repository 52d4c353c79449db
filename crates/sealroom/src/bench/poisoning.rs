//! `sealroom bench --poisoning`: secure federated training under poisoning
//! attacks (issue #15), over a real local federation (coordinator, three
//! helpers and the clients on loopback, mutual TLS), with the defences the
//! helpers run inside the MPC engine.
//!
//! In each cohort the last `k` of `n` clients are malicious: they train
//! honestly, then share a crafted update instead, always claiming the
//! largest weight the round allows. The attacks:
//!
//! * **replacement** — scaled model replacement (Bagdasaryan, Veit, Hua,
//!   Estrin, Shmatikov, "How to backdoor federated learning", AISTATS 2020,
//!   §4.2): the target model is the negated global model `X = −G` (its
//!   predictions reversed), submitted as `γ·(X − G)` with `γ = n/k` so
//!   that the average lands on `X`;
//! * **sign flip** — the attacker's honest delta negated and scaled until
//!   its largest value reaches the delta clip (Li, Xu, Chen, Giannakis,
//!   Ling, "RSA: Byzantine-robust stochastic aggregation methods", AAAI
//!   2019, §6 use the negated direction; scaling it to the encoder's limit
//!   is the strongest such update the consistency check lets through);
//! * **below bound** — the negated honest direction scaled to 99.9 % of the
//!   hard L2 bound, so it passes input validity: what validity alone lets
//!   through and what clipping is for.
//!
//! Every value of a malicious update is truncated towards zero onto the
//! delta grid within the delta clip (`±max_abs` quanta), so the secure sum
//! stays within what the driver's consistency check accepts (an update
//! beyond it would make a plain round fail loudly, not poison it).
//!
//! The defences: none (plain secure FedAvg), input validity (the hard L2
//! bound), validity + clipping, the coordinate-wise trimmed mean (β = k/n)
//! and multi-Krum (f = k, the n − k best-scored updates averaged). Reported: the final test accuracy of every (attack, defence) pair
//! beside the clean run of plain FedAvg, whether validity + clipping stays
//! within 2 points of it, a JSON file and a bar chart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use sealroom_analytics::fl::{DatasetKind, FedAvgSpec, ModelKind, RobustAggregation, TrainConfig};
use sealroom_analytics::training::{
    FEDAVG_TASK, FedAvgParams, SplitSpec, Trainer, TrainingData, TrainingInput, TrainingPlan,
};
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputError, InputSource};
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::pb::SitOutReason;
use serde::Serialize;

/// An attack mounted by the malicious clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// No attack: every client is honest.
    Clean,
    /// Scaled model replacement towards the negated model.
    Replacement,
    /// The honest delta negated and scaled to the delta clip.
    SignFlip,
    /// The negated honest direction at 99.9 % of the hard L2 bound.
    BelowBound,
}

impl Attack {
    /// Every attack, the clean run first.
    pub const ALL: [Attack; 4] = [
        Attack::Clean,
        Attack::Replacement,
        Attack::SignFlip,
        Attack::BelowBound,
    ];

    fn label(self) -> &'static str {
        match self {
            Attack::Clean => "clean",
            Attack::Replacement => "replacement",
            Attack::SignFlip => "sign flip",
            Attack::BelowBound => "below bound",
        }
    }
}

/// A defence the helpers run inside the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defence {
    /// Plain secure FedAvg.
    None,
    /// Input validity: the hard L2 bound.
    Validity,
    /// Validity and clipping to the clip norm.
    ValidityClip,
    /// Coordinate-wise trimmed mean, β = k/n.
    TrimmedMean,
    /// Multi-Krum with f = k, averaging the n − k best-scored updates.
    MultiKrum,
}

impl Defence {
    /// Every defence.
    pub const ALL: [Defence; 5] = [
        Defence::None,
        Defence::Validity,
        Defence::ValidityClip,
        Defence::TrimmedMean,
        Defence::MultiKrum,
    ];

    fn label(self) -> &'static str {
        match self {
            Defence::None => "none",
            Defence::Validity => "validity",
            Defence::ValidityClip => "validity + clip",
            Defence::TrimmedMean => "trimmed mean",
            Defence::MultiKrum => "multi-Krum",
        }
    }
}

/// What one evaluation runs.
#[derive(Clone, Debug, Serialize)]
pub struct PoisoningConfig {
    /// (clients, of which malicious) per cohort.
    pub cohorts: Vec<(usize, usize)>,
    /// FedAvg rounds per training.
    pub rounds: usize,
    /// The clip norm (parameter units).
    pub clip_norm: f64,
    /// The hard L2 bound (parameter units).
    pub l2_bound: f64,
    /// The weight cap (the most weight any client, malicious ones
    /// included, can claim).
    pub max_weight: u32,
    /// Attacks run.
    pub attacks: Vec<Attack>,
    /// Defences run.
    pub defences: Vec<Defence>,
    /// Dirichlet concentration of the label skew (small = non-IID).
    pub alpha: f64,
}

impl PoisoningConfig {
    /// The evaluation (1 of 5 and 2 of 10, 10 rounds, every attack
    /// and defence), or a CI-sized one (1 of 5, 2 rounds, no defence and
    /// validity + clip).
    pub fn new(quick: bool, rounds: Option<usize>) -> PoisoningConfig {
        PoisoningConfig {
            cohorts: if quick {
                vec![(5, 1)]
            } else {
                vec![(5, 1), (10, 2)]
            },
            rounds: rounds.unwrap_or(if quick { 2 } else { 10 }).max(1),
            clip_norm: CLIP_NORM,
            l2_bound: L2_BOUND,
            max_weight: MAX_WEIGHT,
            attacks: Attack::ALL.to_vec(),
            defences: if quick {
                vec![Defence::None, Defence::ValidityClip]
            } else {
                Defence::ALL.to_vec()
            },
            alpha: 0.5,
        }
    }
}

impl PoisoningConfig {
    /// Refuses a configuration that cannot run.
    pub fn check(&self) -> Result<()> {
        if let Some(&(n, k)) = self
            .cohorts
            .iter()
            .find(|&&(n, k)| !(5..=64).contains(&n) || 5 * k > n)
        {
            anyhow::bail!(
                "a cohort of {n} clients with {k} malicious: use 5 to 64 clients, at most one in five malicious"
            );
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            anyhow::bail!("--alpha {} must be positive", self.alpha);
        }
        if self.max_weight == 0 || self.max_weight > 4096 {
            anyhow::bail!("--max-weight {} must be within 1..=4096", self.max_weight);
        }
        if !(self.clip_norm > 0.0 && self.clip_norm <= self.l2_bound && self.l2_bound.is_finite()) {
            anyhow::bail!(
                "--clip-norm {} must be positive and at most --l2-bound {}",
                self.clip_norm,
                self.l2_bound
            );
        }
        Ok(())
    }
}

/// The clip norm: about the honest updates' typical L2 norm on this task.
const CLIP_NORM: f64 = 0.5;
/// The hard bound: ten times the clip norm.
const L2_BOUND: f64 = 5.0;
/// The weight cap: about an honest client's training rows.
const MAX_WEIGHT: u32 = 128;

/// The training every run uses (only the defence changes).
fn plan(
    config: &PoisoningConfig,
    defence: Defence,
    clients: usize,
    attackers: usize,
) -> TrainingPlan {
    let mut plan = TrainingPlan {
        table: "wine".into(),
        split: SplitSpec {
            dataset: DatasetKind::Wine,
            test_fraction: 0.25,
            alpha: config.alpha,
            min_rows: 10,
            seed: 42,
        },
        model: ModelKind::Logistic,
        rounds: config.rounds,
        train: TrainConfig {
            learning_rate: 0.05,
            epochs: 1,
            batch_size: 16,
            l2: 1e-4,
            seed: 42,
        },
        fedavg: FedAvgSpec {
            bits: 16,
            delta_clip: 1.0,
            max_weight: config.max_weight,
        },
        error_feedback: false,
        init_seed: 42,
        clients: Vec::new(),
        l2_bound: None,
        linf_bound: None,
        robust: None,
    };
    match defence {
        Defence::None => {}
        Defence::Validity => plan.l2_bound = Some(config.l2_bound),
        Defence::ValidityClip => {
            plan.l2_bound = Some(config.l2_bound);
            plan.robust = Some(RobustAggregation::Clip {
                norm: config.clip_norm,
            });
        }
        Defence::TrimmedMean => {
            plan.robust = Some(RobustAggregation::TrimmedMean {
                beta: attackers as f64 / clients as f64,
            });
        }
        Defence::MultiKrum => {
            plan.l2_bound = Some(config.l2_bound);
            plan.robust = Some(RobustAggregation::MultiKrum {
                byzantine: attackers,
                selected: clients - attackers,
            });
        }
    }
    plan
}

/// A malicious client: trains honestly, then shares the current attack's
/// update instead.
struct Attacker {
    honest: TrainingInput,
    attack: Arc<Mutex<Attack>>,
    clients: usize,
    attackers: usize,
    l2_bound: f64,
}

impl InputSource for Attacker {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        let honest = self.honest.input(descriptor)?;
        let attack = *self.attack.lock().unwrap_or_else(|e| e.into_inner());
        if attack == Attack::Clean || descriptor.task_name() != FEDAVG_TASK {
            return Ok(honest);
        }
        let params: FedAvgParams = serde_json::from_slice(descriptor.task_params())
            .map_err(|e| InputError::new(SitOutReason::InvalidParameters, "", e.to_string()))?;
        malicious_update(
            attack,
            &params,
            &honest,
            self.clients,
            self.attackers,
            self.l2_bound,
        )
        .map_err(|e| InputError::new(SitOutReason::InputFailed, "", e.to_string()))
    }
}

/// The wire vector of `attack` for a round with `params`, from the
/// attacker's honest wire vector `honest` (weighted unless the round
/// aggregates robustly).
pub fn malicious_update(
    attack: Attack,
    params: &FedAvgParams,
    honest: &[f64],
    clients: usize,
    attackers: usize,
    l2_bound: f64,
) -> Result<Vec<f64>> {
    let delta = params.fedavg.delta_spec()?;
    let step = delta.step();
    let max_abs = delta.max_abs() as f64;
    let (&w_wire, values) = honest
        .split_last()
        .ok_or_else(|| anyhow!("an empty honest update"))?;
    let weighted = params.robust.is_none();
    let w_honest = (w_wire / step).round().max(1.0);
    // The honest delta in quanta (unweighted).
    let unweight = if weighted { w_honest } else { 1.0 };
    let hq: Vec<f64> = values
        .iter()
        .map(|v| (v / step).round() / unweight)
        .collect();
    let negated_norm = hq.iter().map(|q| q * q).sum::<f64>().sqrt();
    let a: Vec<f64> = match attack {
        Attack::Clean => hq.clone(),
        Attack::SignFlip => {
            let peak = hq.iter().fold(0.0f64, |m, q| m.max(q.abs()));
            if peak == 0.0 {
                vec![0.0; hq.len()]
            } else {
                hq.iter().map(|q| -q * max_abs / peak).collect()
            }
        }
        Attack::Replacement => {
            let gamma = clients as f64 / attackers.max(1) as f64;
            params
                .global
                .iter()
                .map(|g| gamma * (-2.0 * g) / step)
                .collect()
        }
        Attack::BelowBound => {
            let target = 0.999 * l2_bound / step;
            if negated_norm == 0.0 {
                vec![0.0; hq.len()]
            } else {
                hq.iter().map(|q| -q * target / negated_norm).collect()
            }
        }
    };
    let w = f64::from(params.fedavg.max_weight);
    let factor = if weighted { w } else { 1.0 };
    let mut out: Vec<f64> = a
        .iter()
        .map(|q| q.trunc().clamp(-max_abs, max_abs) * factor * step)
        .collect();
    out.push(w * step);
    Ok(out)
}

/// One training's result.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Clients in the cohort.
    pub clients: usize,
    /// Malicious clients among them.
    pub attackers: usize,
    /// The attack.
    pub attack: Attack,
    /// The defence.
    pub defence: Defence,
    /// Test accuracy after each round.
    pub accuracy: Vec<f64>,
    /// Clients the helpers left out, summed over the rounds.
    pub rejected: usize,
    /// Wall time of the training, ms.
    pub duration_ms: u64,
}

impl Run {
    /// Final test accuracy.
    pub fn final_accuracy(&self) -> f64 {
        self.accuracy.last().copied().unwrap_or(f64::NAN)
    }
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    config: PoisoningConfig,
    runs: Vec<Run>,
    /// Per cohort and attack: validity + clip within 2 points of the clean
    /// run of plain FedAvg.
    within_two_points: BTreeMap<String, bool>,
}

/// Runs the evaluation; writes `json` and a chart beside it in `out_dir`.
pub async fn run(config: PoisoningConfig, out_dir: &Path, json: &Path) -> Result<()> {
    sealroom_node::tls::install_crypto_provider();
    let total = config.cohorts.len() * config.attacks.len() * config.defences.len();
    println!(
        "sealroom bench --poisoning: {} trainings of {} rounds (wine, logistic regression), cohorts {}",
        total,
        config.rounds,
        config
            .cohorts
            .iter()
            .map(|(n, k)| format!("{k} of {n} malicious"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "defences inside the MPC engine: hard L2 bound {}, clip norm {}, weight cap {}; label skew Dirichlet α = {}",
        config.l2_bound, config.clip_norm, config.max_weight, config.alpha
    );
    let bar = ProgressBar::new((total * config.rounds) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rounds {msg}")
            .map_err(|e| anyhow!("progress bar: {e}"))?,
    );
    let mut runs = Vec::new();
    for &(clients, attackers) in &config.cohorts {
        runs.extend(cohort(&config, clients, attackers, out_dir, &bar).await?);
    }
    bar.finish_and_clear();

    let mut within = BTreeMap::new();
    println!();
    for &(clients, attackers) in &config.cohorts {
        let of = |attack: Attack, defence: Defence| {
            runs.iter()
                .find(|r| {
                    (r.clients, r.attackers, r.attack, r.defence)
                        == (clients, attackers, attack, defence)
                })
                .map(Run::final_accuracy)
        };
        let clean = of(Attack::Clean, Defence::None).unwrap_or(f64::NAN);
        println!(
            "{attackers} of {clients} clients malicious — final test accuracy (clean run of plain FedAvg: {:.1}%)",
            clean * 100.0
        );
        let mut header = format!("  {:<14}", "attack");
        for d in &config.defences {
            header.push_str(&format!("{:>17}", d.label()));
        }
        println!("{header}");
        for &attack in &config.attacks {
            let mut line = format!("  {:<14}", attack.label());
            for &d in &config.defences {
                line.push_str(&format!(
                    "{:>16.1}%",
                    of(attack, d).unwrap_or(f64::NAN) * 100.0
                ));
            }
            println!("{line}");
            if let Some(acc) = of(attack, Defence::ValidityClip) {
                let ok = acc >= clean - 0.02;
                within.insert(format!("{attackers}/{clients} {}", attack.label()), ok);
            }
        }
        println!();
    }
    for (case, ok) in &within {
        println!(
            "validity + clip within 2 points of the clean run, {case}: {}",
            if *ok { "MET" } else { "MISSED" }
        );
    }
    let report = Report {
        config: config.clone(),
        runs: runs.clone(),
        within_two_points: within,
    };
    std::fs::write(json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let chart = json.with_extension("svg");
    crate::chart::poisoning_chart(&chart, &chart_groups(&config, &runs))?;
    println!("report: {}; chart: {}", json.display(), chart.display());
    Ok(())
}

/// The chart's panels: per cohort, per attack, per defence the final
/// accuracy, and the clean run's.
fn chart_groups(config: &PoisoningConfig, runs: &[Run]) -> Vec<crate::chart::BarPanel> {
    config
        .cohorts
        .iter()
        .map(|&(clients, attackers)| {
            let of = |attack: Attack, defence: Defence| {
                runs.iter()
                    .find(|r| {
                        (r.clients, r.attackers, r.attack, r.defence)
                            == (clients, attackers, attack, defence)
                    })
                    .map_or(0.0, Run::final_accuracy)
            };
            crate::chart::BarPanel {
                title: format!("{attackers} of {clients} clients malicious"),
                groups: config
                    .attacks
                    .iter()
                    .map(|a| a.label().to_string())
                    .collect(),
                series: config
                    .defences
                    .iter()
                    .map(|d| d.label().to_string())
                    .collect(),
                values: config
                    .attacks
                    .iter()
                    .map(|&a| config.defences.iter().map(|&d| of(a, d)).collect())
                    .collect(),
                reference: Some((
                    "clean run − 2 points".into(),
                    of(Attack::Clean, Defence::None) - 0.02,
                )),
            }
        })
        .collect()
}

/// One cohort: a federation of `clients`, the last `attackers` malicious,
/// every attack and defence.
async fn cohort(
    config: &PoisoningConfig,
    clients: usize,
    attackers: usize,
    out_dir: &Path,
    bar: &ProgressBar,
) -> Result<Vec<Run>> {
    let attack = Arc::new(Mutex::new(Attack::Clean));
    let names: Vec<String> = (0..clients).map(|i| format!("client-{i}")).collect();
    let inputs: Vec<Arc<dyn InputSource>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let tables = BTreeMap::from([(
                "wine".to_string(),
                TrainingData {
                    dataset: DatasetKind::Wine,
                    part: i,
                    parts: clients,
                },
            )]);
            let honest = TrainingInput::new(name.clone(), tables);
            if i + attackers >= clients {
                Arc::new(Attacker {
                    honest,
                    attack: attack.clone(),
                    clients,
                    attackers,
                    l2_bound: config.l2_bound,
                }) as Arc<dyn InputSource>
            } else {
                Arc::new(honest) as Arc<dyn InputSource>
            }
        })
        .collect();
    let options = InitOptions {
        helpers: 3,
        clients,
        threshold: None,
        min_clients: Some(clients),
        federation_id: format!("sealroom-poisoning-{clients}"),
        force: true,
        upload_window_ms: 5_000,
        aggregation_window_ms: 5_000,
        ..InitOptions::default()
    };
    let dir = out_dir.join(format!("poisoning-federation-{clients}"));
    let (fed, _events) = LocalFederation::start(
        &dir,
        options,
        sealroom_analytics::service::catalog(),
        inputs,
    )
    .await
    .context("starting the local federation")?;
    let mut runs = Vec::new();
    let result = async {
        for &a in &config.attacks {
            *attack.lock().unwrap_or_else(|e| e.into_inner()) = a;
            for &defence in &config.defences {
                bar.set_message(format!(
                    "{attackers} of {clients}: {}, defence {}",
                    a.label(),
                    defence.label()
                ));
                let started = Instant::now();
                let plan = plan(config, defence, clients, attackers);
                let mut trainer = Trainer::start(&fed, &plan, &names).await.with_context(|| {
                    format!("{}/{}: the moments round", a.label(), defence.label())
                })?;
                let mut accuracy = Vec::new();
                let mut rejected = 0;
                for round in 1..=config.rounds {
                    let r = trainer.round(&fed, None).await.with_context(|| {
                        format!("{}/{}: round {round}", a.label(), defence.label())
                    })?;
                    accuracy.push(r.accuracy);
                    rejected += r.rejected.len();
                    bar.inc(1);
                }
                runs.push(Run {
                    clients,
                    attackers,
                    attack: a,
                    defence,
                    accuracy,
                    rejected,
                    duration_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    fed.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    result?;
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(robust: Option<RobustAggregation>) -> FedAvgParams {
        let plan = plan(&PoisoningConfig::new(true, None), Defence::None, 5, 1);
        FedAvgParams {
            table: plan.table,
            split: plan.split,
            training_round: 1,
            model: plan.model,
            n_features: 1,
            n_classes: 2,
            global: vec![0.25, -0.5, 0.0, 1.0],
            mean: vec![0.0],
            std: vec![1.0],
            train: plan.train,
            fedavg: plan.fedavg,
            error_feedback: false,
            l2_bound: None,
            linf_bound: None,
            robust,
        }
    }

    #[test]
    fn malicious_updates_follow_their_definitions() {
        let p = params(None);
        let step = p.fedavg.delta_spec().expect("spec").step();
        let max_abs = p.fedavg.delta_spec().expect("spec").max_abs() as f64;
        // An honest weighted update: weight 3, delta quanta [10, −20, 0, 5].
        let honest: Vec<f64> = [30.0, -60.0, 0.0, 15.0, 3.0]
            .iter()
            .map(|v| v * step)
            .collect();
        let w = f64::from(MAX_WEIGHT);
        let q = |v: &[f64]| v.iter().map(|x| x / step).collect::<Vec<f64>>();
        let flip = malicious_update(Attack::SignFlip, &p, &honest, 5, 1, L2_BOUND).expect("flip");
        let peak = max_abs;
        let scaled = |v: f64| (v * peak / 20.0).trunc() * w;
        assert_eq!(
            q(&flip),
            vec![scaled(-10.0), scaled(20.0), 0.0, scaled(-5.0), w]
        );
        // Replacement: γ·(−2G) with γ = 5, clamped to the delta clip.
        let rep = malicious_update(Attack::Replacement, &p, &honest, 5, 1, L2_BOUND).expect("rep");
        let want: Vec<f64> = p
            .global
            .iter()
            .map(|g| (5.0 * -2.0 * g / step).trunc().clamp(-max_abs, max_abs) * w)
            .chain([w])
            .collect();
        assert_eq!(q(&rep), want);
        // Below bound: the negated direction just under the hard bound (64
        // parameters, so that no value reaches the delta clip).
        let honest: Vec<f64> = (0..65)
            .map(|j| if j == 64 { 3.0 } else { 3.0 * (1 + j % 3) as f64 } * step)
            .collect();
        let below =
            malicious_update(Attack::BelowBound, &p, &honest, 5, 1, L2_BOUND).expect("below");
        let norm = below[..64]
            .iter()
            .map(|v| (v / w).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(norm <= L2_BOUND && norm > 0.99 * L2_BOUND, "{norm}");
        assert!(below[..64].iter().all(|&v| v < 0.0));
        // In a robust round the update is unweighted.
        let p = params(Some(RobustAggregation::Median));
        let honest: Vec<f64> = [10.0, -20.0, 0.0, 5.0, 3.0]
            .iter()
            .map(|v| v * step)
            .collect();
        let flip = malicious_update(Attack::SignFlip, &p, &honest, 5, 1, L2_BOUND).expect("flip");
        assert_eq!(
            q(&flip),
            vec![
                scaled(-10.0) / w,
                scaled(20.0) / w,
                0.0,
                scaled(-5.0) / w,
                w
            ]
        );
    }
}
