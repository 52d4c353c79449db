//! `sealroom bench --engine`: the MPC engine (issue #14) between three real
//! helper nodes. A local federation's three helpers (separate tasks, each
//! with its own gRPC server and mutual-TLS connections, on loopback) agree on
//! their epoch keys, then run, each beside the semi-honest variant of the
//! same code in the same run: actively secure preprocessing (triples/s),
//! verified online multiplications and LT comparisons (material produced
//! beforehand, not timed). Prints items/s, the malicious/semi-honest ratio,
//! bytes per item and helper, rounds, and the targets as MET or
//! MISSED; writes the figures to JSON. Never a test assertion on timing.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use sealroom_mpc::bench::{BenchReport, Figure, compare_program, mul_program};
use sealroom_mpc::material::{Batch, BatchId, Counts};
use sealroom_mpc::program::Program;
use sealroom_mpc::prss::EpochKeys;
use sealroom_mpc::session::{Outcome, SessionInputs};
use sealroom_node::engine::{Engine, os_seed};
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{TaskCatalog, synthetic_inputs};
use serde::Serialize;

/// Sizes of one engine bench run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EngineSizes {
    /// Products per multiplication layer.
    pub mul_width: usize,
    /// Multiplication layers.
    pub mul_depth: usize,
    /// Triples per preprocessing batch.
    pub triples: usize,
    /// LT comparisons at once.
    pub comparisons: usize,
    /// Bits of the compared values.
    pub compare_bits: u32,
    /// Parameters of the update whose validity cost is measured.
    pub validity_elements: usize,
}

impl EngineSizes {
    /// The default sizes, or CI-sized ones.
    pub fn new(quick: bool) -> EngineSizes {
        if quick {
            EngineSizes {
                mul_width: 1 << 10,
                mul_depth: 2,
                triples: 1 << 12,
                comparisons: 256,
                compare_bits: 32,
                validity_elements: 1_000,
            }
        } else {
            EngineSizes {
                mul_width: 1 << 18,
                mul_depth: 4,
                triples: 1 << 18,
                comparisons: 4096,
                compare_bits: 32,
                validity_elements: 10_000,
            }
        }
    }
}

/// Issue #14's targets.
const TARGET_MULTS_PER_S: f64 = 30e6;
const TARGET_TRIPLES_PER_S: f64 = 5e6;
const TARGET_RATIO: f64 = 1.5;

#[derive(Serialize)]
struct JsonFigure {
    name: &'static str,
    items: u64,
    seconds: f64,
    items_per_second: f64,
    baseline_seconds: Option<f64>,
    malicious_over_semi_honest: Option<f64>,
    bytes_per_item_per_helper: f64,
    rounds: u64,
}

#[derive(Serialize)]
struct JsonVerdict {
    target: &'static str,
    measured: f64,
    met: bool,
}

#[derive(Serialize)]
struct JsonReport {
    tool: &'static str,
    layout: &'static str,
    sizes: EngineSizes,
    profile: &'static str,
    figures: Vec<JsonFigure>,
    verdicts: Vec<JsonVerdict>,
    engine_round: Option<RoundFigure>,
    validity_per_client: ValidityCost,
}

/// [`sealroom_mpc::bench::ClientCost`] in the JSON report.
#[derive(Serialize)]
struct ValidityCost {
    elements: usize,
    triples: usize,
    bits: usize,
    preprocessing_s: f64,
    preprocessing_bytes_per_helper: u64,
    online_s: f64,
}

/// Engine rounds end to end beside sum rounds of the same shape, all
/// through the admin API of one fresh federation: the first engine round
/// (no pool yet: key agreement and preprocessing inside the round), then
/// rounds from the pool (each after the helpers' top-up finished).
#[derive(Serialize)]
struct RoundFigure {
    clients: usize,
    elements: u64,
    repetitions: usize,
    /// The first engine round: preprocessed inline.
    inline_ms: f64,
    /// Median of the later engine rounds, on material from the pool.
    engine_ms: f64,
    /// Median of norm-bounded sum rounds (input validity, issue #15).
    validity_ms: f64,
    /// Median of noised sum rounds (binomial noise in the engine).
    noised_ms: f64,
    /// Coins of each element's noise in the noised rounds.
    noise_coins: usize,
    /// Engine rounds (of all three programs) the helpers ran from the pool.
    pool_rounds: usize,
    /// Engine rounds in all after the first.
    later_engine_rounds: usize,
    sum_ms: f64,
}

/// The sum of the samples of `name` (a full `name{labels}` prefix) in a
/// Prometheus text rendering.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (up to a minute) until every helper's pool holds two rounds'
/// worth of triples again (the top-up after an engine round runs in the
/// background); whether it did.
async fn pool_ready(fed: &LocalFederation) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = fed
            .metrics
            .iter()
            .filter(|(name, _)| name.starts_with("helper-"))
            .all(|(_, m)| {
                let text = m.render();
                let need = sample(&text, "sealroom_engine_round_need{kind=\"triples\"}");
                sample(&text, "sealroom_engine_backlog{kind=\"triples\"}") >= 2.0 * need
            });
        if ready || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One round of `task`; its wall time in ms.
async fn timed_round(fed: &LocalFederation, task: &str, elements: u64) -> Result<f64> {
    let started = Instant::now();
    let outcome = fed
        .run_round(task, elements)
        .await
        .with_context(|| format!("a {task} round"))?;
    if outcome.status != "completed" {
        bail!(
            "a {task} round aborted: {}: {}",
            outcome.reason,
            outcome.detail
        );
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The first engine round (`synthetic-max`, inline), then medians of
/// `repetitions` engine rounds from the pool and sum rounds (`synthetic`)
/// of the same shape, alternating, in a fresh federation under `out_dir`.
async fn engine_rounds(out_dir: &Path, sizes: EngineSizes) -> Result<RoundFigure> {
    use sealroom_node::tasks::{
        SYNTHETIC, SYNTHETIC_BOUNDED, SYNTHETIC_MAX, SYNTHETIC_NOISED, SyntheticNoised,
    };
    let elements: u64 = if sizes.triples <= 1 << 12 { 16 } else { 256 };
    let repetitions = if sizes.triples <= 1 << 12 { 1 } else { 5 };
    let dir = tempfile::Builder::new()
        .prefix("engine-rounds-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a federation directory in {}", out_dir.display()))?;
    let options = InitOptions {
        helpers: 3,
        clients: 2,
        federation_id: "sealroom-engine-rounds-bench".into(),
        ..InitOptions::default()
    };
    let (fed, _events) = LocalFederation::start(
        dir.path(),
        options,
        TaskCatalog::with_builtins(),
        synthetic_inputs(2),
    )
    .await
    .context("starting the engine-round federation")?;
    eprintln!(
        "1 + {repetitions} engine round(s) and {repetitions} sum round(s) of {elements} elements…"
    );
    let measured = async {
        let inline = timed_round(&fed, SYNTHETIC_MAX, elements).await?;
        let (mut engine, mut validity, mut noised, mut sum) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repetitions {
            // Each round starts once the previous engine round's top-up has
            // finished, so that no round shares the cores with it.
            for (task, out) in [
                (SYNTHETIC_MAX, &mut engine),
                (SYNTHETIC_BOUNDED, &mut validity),
                (SYNTHETIC_NOISED, &mut noised),
                (SYNTHETIC, &mut sum),
            ] {
                if !pool_ready(&fed).await {
                    bail!("the helpers' pool was not topped up within a minute of an engine round");
                }
                out.push(timed_round(&fed, task, elements).await?);
            }
        }
        let pooled: f64 = fed
            .metrics
            .iter()
            .filter(|(name, _)| name.starts_with("helper-"))
            .map(|(_, m)| sample(&m.render(), "sealroom_engine_rounds_total{source=\"pool\"}"))
            .sum();
        // Batches are sized by the last program the helpers saw: a round of
        // another program may find the pool short and run inline. Each
        // figure is then a median over pool and inline runs; say how many.
        if pooled < (3 * repetitions) as f64 {
            bail!(
                "only {pooled} of {} helper runs of the later engine rounds used the pool",
                9 * repetitions
            );
        }
        Ok((
            inline,
            engine,
            validity,
            noised,
            sum,
            (pooled / 3.0) as usize,
        ))
    }
    .await;
    fed.shutdown().await;
    let (inline, mut engine, mut validity, mut noised, mut sum, pool_rounds) = measured?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(RoundFigure {
        clients: 2,
        elements,
        repetitions,
        inline_ms: inline,
        engine_ms: median(&mut engine),
        validity_ms: median(&mut validity),
        noised_ms: median(&mut noised),
        noise_coins: SyntheticNoised::coins(),
        pool_rounds,
        later_engine_rounds: 3 * repetitions,
        sum_ms: median(&mut sum),
    })
}

/// Runs the engine bench in a federation under `out_dir` (deleted after),
/// prints the table and verdicts and writes `json`.
pub async fn run(sizes: EngineSizes, out_dir: &Path, json: &Path) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("engine-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a federation directory in {}", out_dir.display()))?;
    let inputs = synthetic_inputs(2);
    let options = InitOptions {
        helpers: 3,
        clients: 2,
        federation_id: "sealroom-engine-bench".into(),
        ..InitOptions::default()
    };
    eprintln!("starting three helper nodes (mutual TLS on loopback)…");
    let (fed, _events) =
        LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
            .await
            .context("starting the bench federation")?;
    let result = measure(&fed, sizes).await;
    fed.shutdown().await;
    let report = result?;
    let rounds = Some(engine_rounds(out_dir, sizes).await?);
    println!("{report}");
    if let Some(r) = &rounds {
        println!(
            "engine round ({} clients x {} elements, element-wise MAX: pool status, sketch check, program, three signed answers): median {:.0} ms from the pool ({} rounds), {:.0} ms for the first (key agreement and preprocessing inline); a sum round of the same shape: median {:.0} ms ({:.1}x)",
            r.clients,
            r.elements,
            r.engine_ms,
            r.repetitions,
            r.inline_ms,
            r.sum_ms,
            r.engine_ms / r.sum_ms,
        );
        println!(
            "input validity (exact L2 bound per client, issue #15): median {:.0} ms per round ({:.1}x the sum round; {:.0} ms per client); noise (binomial, {} coins per element for ε = 1, δ = 1e-6, generated inside the engine): median {:.0} ms per round ({:.1}x the sum round); {} of the {} later engine rounds ran from the pool",
            r.validity_ms,
            r.validity_ms / r.sum_ms,
            r.validity_ms / r.clients as f64,
            r.noise_coins,
            r.noised_ms,
            r.noised_ms / r.sum_ms,
            r.pool_rounds,
            r.later_engine_rounds,
        );
    }
    // What one client's update costs the helpers with validity on (issue
    // #15), at 10k parameters by default (--dims 100000 for the issue's
    // size), measured in-process.
    let elements = sizes.validity_elements;
    eprintln!("the validity program for one client of {elements} parameters, in-process…");
    let cost = sealroom_mpc::bench::validity_client_cost(elements)
        .map_err(|e| anyhow::anyhow!("the validity program: {e}"))?;
    if !cost.ok {
        bail!("the in-bound update of the validity cost run was not kept");
    }
    println!(
        "input validity per client at {} parameters: {} triples and {} random bits ({:.0} and {:.0} per parameter); actively secure preprocessing {:.1} s (three helpers on one thread, {:.1} MB sent per helper), the program {:.2} s (a thread per helper)",
        cost.elements,
        cost.needs.triples,
        cost.needs.bits,
        cost.needs.triples as f64 / cost.elements as f64,
        cost.needs.bits as f64 / cost.elements as f64,
        cost.preprocessing_s,
        cost.preprocessing_bytes as f64 / 1e6,
        cost.online_s,
    );
    let verdicts = verdicts(&report);
    for v in &verdicts {
        println!(
            "{:<58} {:>12.3e}  {}",
            v.target,
            v.measured,
            if v.met { "MET" } else { "MISSED" }
        );
    }
    let out = JsonReport {
        tool: "sealroom bench --engine",
        layout: report.layout,
        sizes,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        figures: report
            .figures
            .iter()
            .map(|f| JsonFigure {
                name: f.name,
                items: f.items,
                seconds: f.seconds,
                items_per_second: f.per_second(),
                baseline_seconds: f.baseline_seconds,
                malicious_over_semi_honest: f.ratio(),
                bytes_per_item_per_helper: f.bytes_per_item,
                rounds: f.rounds,
            })
            .collect(),
        verdicts,
        engine_round: rounds,
        validity_per_client: ValidityCost {
            elements: cost.elements,
            triples: cost.needs.triples,
            bits: cost.needs.bits,
            preprocessing_s: cost.preprocessing_s,
            preprocessing_bytes_per_helper: cost.preprocessing_bytes,
            online_s: cost.online_s,
        },
    };
    std::fs::write(json, serde_json::to_vec_pretty(&out)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("engine figures written to {}", json.display());
    Ok(())
}

fn verdicts(report: &BenchReport) -> Vec<JsonVerdict> {
    let mut out = Vec::new();
    let by_name = |n: &str| report.figures.iter().find(|f| f.name == n);
    if let Some(f) = by_name(MULTS) {
        out.push(JsonVerdict {
            target: "online verified multiplications/s ≥ 30M",
            measured: f.per_second(),
            met: f.per_second() >= TARGET_MULTS_PER_S,
        });
        if let Some(r) = f.ratio() {
            out.push(JsonVerdict {
                target: "online malicious/semi-honest ≤ 1.5×",
                measured: r,
                met: r <= TARGET_RATIO,
            });
        }
    }
    if let Some(f) = by_name(TRIPLES) {
        out.push(JsonVerdict {
            target: "actively secure triples/s ≥ 5M",
            measured: f.per_second(),
            met: f.per_second() >= TARGET_TRIPLES_PER_S,
        });
    }
    out
}

const TRIPLES: &str = "triples (Chida-verified)";
const MULTS: &str = "online multiplications (verified)";
const COMPARISONS: &str = "comparisons LT, k=32 (online)";

async fn measure(fed: &LocalFederation, sizes: EngineSizes) -> Result<BenchReport> {
    let engines: [Engine; 3] = [0, 1, 2]
        .map(|i| fed.helper_engine(i))
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.try_into().ok())
        .context("the bench federation's helpers run no engine")?;
    let keys = agree(&engines).await?;
    let mut figures = Vec::new();

    eprintln!("preprocessing {} triples…", sizes.triples);
    let counts = Counts {
        triples: sizes.triples,
        ..Counts::default()
    };
    let (_, secs, bytes) = preprocess(&engines, &keys, counts, false).await?;
    let (_, base, _) = preprocess(&engines, &keys, counts, true).await?;
    figures.push(Figure {
        name: TRIPLES,
        items: sizes.triples as u64,
        seconds: secs,
        baseline_seconds: Some(base),
        bytes_per_item: bytes as f64 / sizes.triples as f64,
        rounds: u64::from(sealroom_mpc::preproc::ROUNDS),
    });

    let items = (sizes.mul_width * sizes.mul_depth) as u64;
    eprintln!("{items} online multiplications…");
    let program = Arc::new(mul_program(sizes.mul_width, sizes.mul_depth)?);
    figures.push(online(&engines, &keys, &program, MULTS, items).await?);

    eprintln!("{} comparisons…", sizes.comparisons);
    let program = Arc::new(compare_program(sizes.comparisons, sizes.compare_bits)?);
    figures.push(
        online(
            &engines,
            &keys,
            &program,
            COMPARISONS,
            sizes.comparisons as u64,
        )
        .await?,
    );

    Ok(BenchReport {
        layout: "figure (3 helper nodes, mTLS)",
        figures,
    })
}

async fn agree(engines: &[Engine; 3]) -> Result<[EpochKeys; 3]> {
    let [a, b, c] = engines;
    let (x, y, z) = tokio::join!(a.agree_keys(1), b.agree_keys(1), c.agree_keys(1));
    let mut keys = Vec::new();
    for k in [x, y, z] {
        match k? {
            Ok(k) => keys.push(k),
            Err(abort) => bail!("key agreement aborted: {}", abort.reason),
        }
    }
    keys.try_into()
        .map_err(|_| anyhow::anyhow!("three helpers, three keys"))
}

fn batch_id() -> Result<BatchId> {
    let seed = os_seed()?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&seed.expose_bytes()[..16]);
    Ok(BatchId(id))
}

/// One batch on all three helpers: (batches, seconds, bytes per helper).
async fn preprocess(
    engines: &[Engine; 3],
    keys: &[EpochKeys; 3],
    counts: Counts,
    baseline: bool,
) -> Result<([Batch; 3], f64, u64)> {
    let id = batch_id()?;
    let [a, b, c] = engines;
    let before: u64 = engines.iter().map(Engine::bytes_sent).sum();
    let start = Instant::now();
    let (x, y, z) = tokio::join!(
        a.preprocess(&keys[0], id, counts, baseline),
        b.preprocess(&keys[1], id, counts, baseline),
        c.preprocess(&keys[2], id, counts, baseline)
    );
    let secs = start.elapsed().as_secs_f64();
    let bytes = (engines.iter().map(Engine::bytes_sent).sum::<u64>() - before) / 3;
    let mut batches = Vec::new();
    for o in [x, y, z] {
        match o? {
            Ok(b) => batches.push(b),
            Err(abort) => bail!("preprocessing aborted: {}", abort.reason),
        }
    }
    let batches = batches
        .try_into()
        .map_err(|_| anyhow::anyhow!("three helpers, three batches"))?;
    Ok((batches, secs, bytes))
}

/// `program` on all three helpers over `batches`: (seconds, bytes per helper).
async fn compute(
    engines: &[Engine; 3],
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    batches: [Batch; 3],
    baseline: bool,
) -> Result<(f64, u64)> {
    let session = *os_seed()?.expose_bytes();
    let [a, b, c] = engines;
    let [ba, bb, bc] = batches;
    let before: u64 = engines.iter().map(Engine::bytes_sent).sum();
    let start = Instant::now();
    let run = |e: &Engine, i: usize, batch: Batch| {
        let e = e.clone();
        let program = program.clone();
        let keys = &keys[i];
        async move {
            e.compute(
                keys,
                session,
                program,
                vec![batch],
                SessionInputs::default(),
                baseline,
            )
            .await
        }
    };
    let (x, y, z) = tokio::join!(run(a, 0, ba), run(b, 1, bb), run(c, 2, bc));
    let secs = start.elapsed().as_secs_f64();
    let bytes = (engines.iter().map(Engine::bytes_sent).sum::<u64>() - before) / 3;
    for o in [x, y, z] {
        match o?.context("starting a session")? {
            Outcome::Completed { .. } | Outcome::BaselineDone => {}
            other => bail!("the bench session did not complete: {other:?}"),
        }
    }
    Ok((secs, bytes))
}

/// A program's figure: malicious and semi-honest runs, each on material
/// produced (untimed) just before.
async fn online(
    engines: &[Engine; 3],
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    name: &'static str,
    items: u64,
) -> Result<Figure> {
    let (batches, _, _) = preprocess(engines, keys, program.needs(), false).await?;
    let (secs, bytes) = compute(engines, keys, program, batches, false).await?;
    let (batches, _, _) = preprocess(engines, keys, program.needs(), false).await?;
    let (base, _) = compute(engines, keys, program, batches, true).await?;
    Ok(Figure {
        name,
        items,
        seconds: secs,
        baseline_seconds: Some(base),
        bytes_per_item: bytes as f64 / items as f64,
        rounds: program.rounds() as u64,
    })
}
