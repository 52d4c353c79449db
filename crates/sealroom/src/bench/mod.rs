//! `sealroom bench`: whole secure rounds on loopback against a plaintext
//! baseline, in the same run and the same process layout, checked against
//! the performance targets of DESIGN.md §9.
//!
//! For each client count it starts a real federation
//! ([`LocalFederation`]: coordinator, helpers and clients as separate tasks
//! talking gRPC over mutual TLS 1.3) and, beside it, the **baseline**
//! ([`baseline`]): the same clients sending their f32 vectors in the clear to
//! one aggregator over the same transport with the same certificates. For
//! each vector length it alternates secure and baseline rounds, every client
//! computing the synthetic task's input in both, and reports latency
//! percentiles and their ratios, upload bytes, CPU time, what the nodes'
//! metrics say about their phases, and the phases no one can see from
//! outside timed as kernels in-process ([`kernels`]). Timing is never a test
//! assertion; the verdicts are printed and written to JSON.

pub mod baseline;
pub mod engine;
pub mod kernels;
pub mod load;
pub mod poisoning;
pub mod relay;
pub mod report;
pub mod stats;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sealroom_core::{QuantSpec, RingKind, RoundEncoding};
use sealroom_node::client_node::ClientEvent;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{InputSource, SYNTHETIC, SyntheticInput, TaskCatalog};
use serde::Serialize;

use crate::sharing::SharingArgs;
use baseline::Baseline;
use kernels::{References, Shape};
use report::{ConfigResult, KernelFigures, NodeFigures, Side, TargetVerdict};
use stats::{Summary, histogram_sum_count};

/// Options of `sealroom bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Client counts, comma-separated (default 5,10; with --quick 3).
    #[arg(long, value_delimiter = ',', value_name = "N,..")]
    pub clients: Vec<usize>,
    /// Vector lengths, comma-separated (default 1000,100000,1000000; with
    /// --quick 100,1000).
    #[arg(long, value_delimiter = ',', value_name = "D,..")]
    pub dims: Vec<usize>,
    /// Number of helpers, 2..=16.
    #[arg(long, default_value_t = 3)]
    pub helpers: usize,
    #[command(flatten)]
    pub sharing: SharingArgs,
    /// Measured rounds per configuration and side (default 10; with --quick 3).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Unmeasured warm-up rounds per configuration and side (default 1).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// A CI-sized smoke run: small defaults for everything not given.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON report (default OUT_DIR/bench.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Where to write the SVG chart (default OUT_DIR/latency.svg).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Directory for the report and the chart; each client count's
    /// federation (keys, configs, databases holding every share) lives in
    /// it while it runs and is deleted afterwards.
    #[arg(long, value_name = "DIR", default_value = "sealroom-bench")]
    pub out_dir: PathBuf,
    /// Instead of real nodes: drive the protocol state machines in one
    /// process (no sockets, a mock clock) with N simulated clients, 30% of
    /// them dropping out (half never upload, half upload late), and report
    /// rounds per second. Every round must complete with the exact sum of
    /// the clients it included or abort with a valid reason. Uses --helpers,
    /// --mode, --threshold, --rounds (default 3) and the first --dims (default
    /// 16). About 35 KB of memory per client.
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Instead of rounds: benchmark the MPC engine. Three helper nodes of a
    /// local federation (mutual TLS on loopback) agree on epoch keys, then
    /// measure actively secure preprocessing (triples/s), verified online
    /// multiplications and LT comparisons, each beside the semi-honest
    /// variant of the same code in the same run, against issue #14's
    /// targets; then what one client's update costs the helpers with input
    /// validity (material, preprocessing and program time) at the first
    /// --dims parameters (default 10,000, 1,000 with --quick; 100,000
    /// takes about two minutes and 14 GB of memory, as the three helpers'
    /// material is held in this one process). Writes OUT_DIR/engine.json (or --json). With --quick: small
    /// sizes.
    #[arg(long, conflicts_with = "simulate")]
    pub engine: bool,
    /// Instead of rounds at several sizes: a load test with N real clients
    /// (default 1000), each with its own certificate and mutual-TLS
    /// connection, 30% of them down during each round, against one
    /// federation whose coordinator and helpers run as separate `sealroom
    /// node` processes. Every round must complete with the exact sum of its
    /// included clients. Reports rounds/s, latency and each node's peak
    /// memory and open file descriptors; writes OUT_DIR/load.json (or
    /// --json). Uses --helpers, --rounds (default 3) and the first --dims
    /// (default 1000).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1000", conflicts_with_all = ["simulate", "engine"])]
    pub load: Option<usize>,
    /// Instead of rounds: federated training under poisoning attacks
    /// (issue #15) over a local federation. 1 of 5 and 2 of 10 clients
    /// mount a scaled model replacement, sign flipping and a
    /// norm-just-below-the-bound update; each is run with no defence, input
    /// validity, validity + clipping, the trimmed mean and multi-Krum (all inside the
    /// MPC engine), beside the clean run. Prints the final accuracies,
    /// writes OUT_DIR/poisoning.json (or --json) and a bar chart beside it.
    /// Uses --rounds (default 10), --clients (cohorts, one in five
    /// malicious; default 5,10), --clip-norm, --l2-bound, --max-weight and --alpha. With --quick:
    /// 1 of 5, 2 rounds, no defence and validity + clip (about 15 s).
    #[arg(long, conflicts_with_all = ["simulate", "engine", "load"])]
    pub poisoning: bool,
    /// With --poisoning: the clip norm of the clipping defence (parameter
    /// units).
    #[arg(long, value_name = "NORM", requires = "poisoning")]
    pub clip_norm: Option<f64>,
    /// With --poisoning: the hard L2 bound of the validity defences.
    #[arg(long, value_name = "NORM", requires = "poisoning")]
    pub l2_bound: Option<f64>,
    /// With --poisoning: the weight cap of every training (the most weight
    /// any client, a malicious one included, can claim).
    #[arg(long, value_name = "W", requires = "poisoning")]
    pub max_weight: Option<u32>,
    /// With --poisoning: the Dirichlet concentration of the clients' label
    /// skew (default 0.5, strongly non-IID; 100 is close to IID).
    #[arg(long, value_name = "ALPHA", requires = "poisoning")]
    pub alpha: Option<f64>,
    /// Emulated round-trip time: every connection of both sides (clients,
    /// helpers, coordinator, the baseline's aggregator, the bench driver)
    /// goes through a latency proxy adding MS per round trip, half each way
    /// (noxious, a Rust port of Toxiproxy, on loopback). Reports secure vs
    /// plaintext round latency at that RTT next to the sequential round
    /// trips each side needs. The proxy delays each 32 KiB read in turn, so
    /// one connection moves at most 32 KiB per half-RTT: figures above a
    /// few KiB per message are upper bounds. Default --dims 1000.
    #[arg(long, value_name = "MS", conflicts_with_all = ["simulate", "engine", "load", "poisoning"])]
    pub rtt_ms: Option<u64>,
}

/// Sequential network round trips of a secure round as the bench measures
/// it (the admin's request to the outcome in its hands), with warm
/// connections: the protocol's 3.5 (docs/performance.md, "How many
/// sequential round trips a round needs": descriptor to the helpers 1, to
/// the clients ½, upload ½, report ½, inclusion set and answer 1) plus the
/// admin's request ½ and the outcome back ½.
pub const SECURE_ROUND_TRIPS: f64 = 4.5;
/// The same for a baseline round: the driver's request and its announcement
/// to the clients ½ + ½, the upload ½, the sum back to the driver ½.
pub const BASELINE_ROUND_TRIPS: f64 = 2.0;

/// `sealroom bench --simulate N`.
fn simulate(args: &BenchArgs, clients: usize) -> Result<()> {
    use sealroom_protocol::sim::{SimConfig, SimOutcome, simulate};
    let threshold = args.sharing.threshold(args.helpers)?;
    let config = SimConfig {
        clients,
        helpers: args.helpers,
        threshold,
        min_clients: (clients / 2).max(2),
        vector_len: args.dims.first().copied().unwrap_or(16),
        rounds: args.rounds.unwrap_or(3),
        client_dropout: 0.3,
        ..SimConfig::default()
    };
    eprintln!(
        "simulating {} rounds of {clients} clients, {} helpers ({}), 30% dropout…",
        config.rounds,
        config.helpers,
        threshold.map_or("additive".into(), |t| format!(
            "threshold {t}-of-{}",
            args.helpers
        ))
    );
    let report = simulate(&config).map_err(|e| anyhow::anyhow!("simulation: {e}"))?;
    for r in &report.rounds {
        let outcome = match &r.outcome {
            SimOutcome::Completed => format!("completed, {} clients included", r.included),
            SimOutcome::Aborted { reason, detail } => {
                format!("aborted ({}): {detail}", reason.as_str_name())
            }
        };
        println!(
            "round {}: {outcome}; {} on time, {} no-shows, {} late ({} late uploads refused)",
            r.round_id, r.on_time, r.no_shows, r.late, r.late_uploads_refused
        );
    }
    println!(
        "{} rounds ({} completed, {} aborted) in {:.1} s: {:.3} rounds/s, {:.0} messages/s",
        report.rounds.len(),
        report.completed(),
        report.aborted(),
        report.wall_time.as_secs_f64(),
        report.rounds_per_second,
        report.messages_per_second
    );
    Ok(())
}

/// The whole run, as written to JSON.
#[derive(Serialize)]
struct BenchReport {
    tool: &'static str,
    config: RunConfig,
    machine: Machine,
    references: References,
    results: Vec<ConfigResult>,
    verdicts: Vec<TargetVerdict>,
    /// The transport limit of this run (issue #17).
    transport: Option<transport::Transport>,
    /// Plaintext baseline rounds against it: (clients, dims, bytes/s at
    /// p50, ratio of the limit to it, met ≤ 2×).
    baseline_vs_transport: Vec<(usize, usize, f64, f64, bool)>,
    notes: Vec<&'static str>,
}

#[derive(Serialize, Clone)]
struct RunConfig {
    clients: Vec<usize>,
    dims: Vec<usize>,
    helpers: usize,
    mode: String,
    threshold: Option<usize>,
    rounds: usize,
    warmup: usize,
    quick: bool,
    /// Emulated round-trip time (`--rtt-ms`), if any.
    rtt_ms: Option<u64>,
    profile: &'static str,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu_model: Option<String>,
    mem_available_bytes: Option<u64>,
    os: &'static str,
    arch: &'static str,
    rustc: Option<String>,
}

const NOTES: &[&str] = &[
    "baseline = plaintext aggregation inside the benchmark tool only: clients send f32 vectors in the clear to one aggregator over the same gRPC/mTLS transport; no sealroom node does this",
    "latency = wall time at the driver from requesting a round to holding its result (secure: the admin StartRound call; baseline: the aggregator's Round call), rounds alternate secure/baseline",
    "upload bytes = encoded upload messages per client and round (secure: every helper's Upload; baseline: one BaselineUpload), without gRPC/TLS framing",
    "process CPU = utime+stime of this process per round from /proc/self/stat (10 ms ticks, averaged over the rounds), for a secure round up to every client holding the published result; every role of a side runs in this process and shares tokio's threads, so per-role CPU comes from the kernels",
    "kernel figures are measured in-process on one core with the same sealroom-core functions the nodes call, on the same shapes",
];

/// Creates `--out-dir`; the JSON report's path (`--json`, or `default`
/// in it).
fn prepare_out(args: &BenchArgs, default: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    Ok(args
        .json
        .clone()
        .unwrap_or_else(|| args.out_dir.join(default)))
}

/// Runs `sealroom bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(clients) = args.simulate {
        return simulate(args, clients);
    }
    if let Some(clients) = args.load {
        let json = prepare_out(args, "load.json")?;
        let config = load::LoadConfig {
            clients,
            helpers: args.helpers,
            rounds: args.rounds.unwrap_or(3).max(1),
            dims: args.dims.first().copied().unwrap_or(1000),
            dropout: 0.3,
            upload_window_ms: 5_000,
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(load::run(config, &args.out_dir, &json));
    }
    if args.poisoning {
        let json = prepare_out(args, "poisoning.json")?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let mut config = poisoning::PoisoningConfig::new(args.quick, args.rounds);
        if !args.clients.is_empty() {
            // One in five malicious (at least one).
            config.cohorts = args.clients.iter().map(|&n| (n, (n / 5).max(1))).collect();
        }
        if let Some(c) = args.clip_norm {
            config.clip_norm = c;
        }
        if let Some(b) = args.l2_bound {
            config.l2_bound = b;
        }
        if let Some(w) = args.max_weight {
            config.max_weight = w;
        }
        if let Some(a) = args.alpha {
            config.alpha = a;
        }
        config.check()?;
        return runtime.block_on(poisoning::run(config, &args.out_dir, &json));
    }
    if args.engine {
        let json = prepare_out(args, "engine.json")?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let mut sizes = engine::EngineSizes::new(args.quick);
        if let Some(&d) = args.dims.first() {
            if !(1..=1 << 20).contains(&d) {
                bail!("--dims {d}: the validity cost takes 1 to 2^20 parameters");
            }
            sizes.validity_elements = d;
        }
        return runtime.block_on(engine::run(sizes, &args.out_dir, &json));
    }
    let clients = match (args.clients.is_empty(), args.quick) {
        (false, _) => args.clients.clone(),
        (true, true) => vec![3],
        (true, false) => vec![5, 10],
    };
    let dims = match (args.dims.is_empty(), args.quick, args.rtt_ms.is_some()) {
        (false, _, _) => args.dims.clone(),
        (true, true, _) => vec![100, 1000],
        (true, false, true) => vec![1000],
        (true, false, false) => vec![1000, 100_000, 1_000_000],
    };
    let rounds = args
        .rounds
        .unwrap_or(if args.quick { 3 } else { 10 })
        .max(1);
    let warmup = args.warmup.unwrap_or(1);
    if !(2..=16).contains(&args.helpers) {
        bail!("--helpers must be within 2..=16");
    }
    let threshold = args.sharing.threshold(args.helpers)?;
    if let Some(t) = threshold
        && (t * 2 <= args.helpers || t > args.helpers)
    {
        bail!(
            "--threshold {t}: must be a majority of the {} helpers",
            args.helpers
        );
    }
    if let Some(&c) = clients.iter().find(|&&c| c < 2) {
        bail!("--clients {c}: a round needs at least 2 clients");
    }
    let max_len = sealroom_protocol::descriptor::MAX_VECTOR_LEN as usize;
    if let Some(&d) = dims.iter().find(|&&d| d == 0 || d > max_len) {
        bail!("--dims {d}: vector lengths must be within 1..={max_len}");
    }
    check_memory(&clients, &dims)?;
    let run_config = RunConfig {
        clients: clients.clone(),
        dims: dims.clone(),
        helpers: args.helpers,
        mode: args.sharing.mode().name().into(),
        threshold,
        rounds,
        warmup,
        quick: args.quick,
        rtt_ms: args.rtt_ms,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args, run_config))
}

/// Refuses configurations whose vectors alone would not fit in memory:
/// every client's input (8 bytes per element) lives in this process, and
/// shares, helper copies and the baseline's f32 vectors come on top.
fn check_memory(clients: &[usize], dims: &[usize]) -> Result<()> {
    let (Some(&c), Some(&d)) = (clients.iter().max(), dims.iter().max()) else {
        bail!("nothing to measure: give at least one client count and one vector length");
    };
    let vectors = (c as u128) * (d as u128) * 8;
    // Inputs, shares in flight, helpers' stored shares, baseline vectors.
    let needed = vectors * 3 + (d as u128) * 8 * 64;
    let available = stats::mem_available_bytes().map(u128::from);
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    match available {
        Some(avail) if needed > avail * 3 / 4 => bail!(
            "{c} clients × {d} dims would need about {:.1} GiB ({c} × {d} × 8 bytes = {:.1} GiB of vectors, \
             held about three times over: inputs, shares, helper copies) but only {:.1} GiB is available; \
             lower --clients or --dims",
            gib(needed),
            gib(vectors),
            gib(avail)
        ),
        None if needed > 8u128 << 30 => bail!(
            "{c} clients × {d} dims would need about {:.1} GiB and available memory is unknown; \
             lower --clients or --dims",
            gib(needed)
        ),
        _ => Ok(()),
    }
}

async fn run_async(args: &BenchArgs, config: RunConfig) -> Result<()> {
    sealroom_node::tls::install_crypto_provider();
    let per_config = (config.warmup + config.rounds) * 2;
    let total = (config.clients.len() * config.dims.len() * per_config) as u64;
    println!(
        "sealroom bench — secure rounds vs a plaintext baseline on loopback (gRPC, mutual TLS 1.3), {} build",
        config.profile
    );
    println!(
        "{} helpers, {}; clients {:?}; dims {:?}; {} measured + {} warm-up rounds per side",
        config.helpers,
        match config.threshold {
            Some(t) => format!("Shamir {t}-of-{}", config.helpers),
            None => "additive".into(),
        },
        config.clients,
        config.dims,
        config.rounds,
        config.warmup
    );
    if let Some(rtt) = config.rtt_ms {
        println!(
            "emulated round-trip time {rtt} ms on every connection of both sides (latency relays); \
             the transport-limit probe is skipped"
        );
    }
    if cfg!(debug_assertions) {
        println!("note: a debug build; figures are only meaningful from `cargo run --release`");
    }
    let progress = ProgressBar::new(total + 1);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    // The run-wide references, measured first while nothing else runs.
    progress.set_message("measuring the memory-bandwidth and PRG references");
    let reference_ring = match config.threshold {
        Some(_) => RingKind::Fp61,
        None => RingKind::Z2_32,
    };
    let reference_bytes = if config.quick { 64 << 20 } else { 512 << 20 };
    let references =
        tokio::task::spawn_blocking(move || kernels::references(reference_ring, reference_bytes))
            .await?;
    progress.inc(1);

    let mut results = Vec::new();
    let mut transport = None;
    for &clients in &config.clients {
        let (mut these, probe) = run_federation(
            args,
            &config,
            clients,
            &references,
            &progress,
            transport.is_none() && config.rtt_ms.is_none(),
        )
        .await?;
        transport = transport.or(probe);
        for r in &these {
            progress.suspend(|| println!("{}", r.render(&references)));
        }
        results.append(&mut these);
    }
    progress.finish_and_clear();

    let verdicts = report::summary_verdicts(&results, &references);
    println!(
        "\nreferences (same run, one core): plain vector sum {:.1} GB/s over {}; PRG expand-add ({}) {:.2} GB/s",
        references.vector_sum_bytes_per_s / 1e9,
        crate::table::human_bytes(references.vector_sum_total_bytes),
        references.prg_ring,
        references.prg_bytes_per_s / 1e9
    );
    let mut baseline_vs_transport = Vec::new();
    if let Some(t) = transport {
        println!(
            "\ntransport (same run): raw loopback TCP {:.2} GB/s; one {} transfer over gRPC + mutual TLS 1.3 {:.2} GB/s",
            t.raw_tcp_bytes_per_s / 1e9,
            crate::table::human_bytes(t.bytes as u64),
            t.grpc_tls_bytes_per_s / 1e9
        );
        for r in &results {
            let bytes = r.baseline.upload_bytes_per_client * r.clients as f64;
            let Some(rate) = stats::ratio(bytes, r.baseline.latency_ms.p50 / 1e3) else {
                continue;
            };
            let behind = t.grpc_tls_bytes_per_s / rate.max(1.0);
            let met = behind <= 2.0;
            println!(
                "  plaintext baseline {} × {}: {:.2} GB/s of uploads at p50, {:.2}× below the gRPC/TLS transfer (target ≤ 2×): {}",
                r.clients,
                r.dims,
                rate / 1e9,
                behind,
                if met { "MET" } else { "MISSED" }
            );
            baseline_vs_transport.push((r.clients, r.dims, rate, behind, met));
        }
    }
    if let Some(rtt) = config.rtt_ms {
        let rtt = rtt as f64;
        println!(
            "\nat an emulated RTT of {rtt} ms: a secure round needs {SECURE_ROUND_TRIPS} sequential round trips from the admin's request \
             to its outcome ({:.0} ms; the protocol's own 3.5), a baseline round {BASELINE_ROUND_TRIPS} ({:.0} ms); \
             the upload and report windows bound a round from above",
            SECURE_ROUND_TRIPS * rtt,
            BASELINE_ROUND_TRIPS * rtt
        );
        for r in &results {
            println!(
                "  {} clients × {}: secure p50 {:.0} ms ({:.1} RTT), baseline p50 {:.0} ms ({:.1} RTT), p95 ratio {}",
                r.clients,
                r.dims,
                r.secure.latency_ms.p50,
                r.secure.latency_ms.p50 / rtt,
                r.baseline.latency_ms.p50,
                r.baseline.latency_ms.p50 / rtt,
                r.latency_ratio_p95
                    .map_or("—".into(), |x| format!("{x:.2}×"))
            );
        }
    }
    println!("\nsummary against DESIGN.md §9");
    print!("{}", report::render_summary(&verdicts));

    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| args.out_dir.join("bench.json"));
    let chart_path = args
        .chart
        .clone()
        .unwrap_or_else(|| args.out_dir.join("latency.svg"));
    let report = BenchReport {
        tool: "sealroom bench",
        config,
        machine: machine(),
        references,
        results,
        verdicts,
        transport,
        baseline_vs_transport,
        notes: NOTES.to_vec(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    report::latency_chart(&chart_path, &report.results)?;
    println!(
        "\nwrote {} and {}",
        json_path.display(),
        chart_path.display()
    );
    Ok(())
}

fn machine() -> Machine {
    let rustc =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: stats::cpu_model(),
        mem_available_bytes: stats::mem_available_bytes(),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        rustc,
    }
}

/// The figures of every node of a kind, summed over their metrics.
fn node_histogram(fed: &LocalFederation, prefix: &str, name: &str, labels: &[&str]) -> (f64, u64) {
    fed.metrics
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, m)| histogram_sum_count(&m.render(), name, labels))
        .fold((0.0, 0), |(s, c), (s2, c2)| (s + s2, c + c2))
}

/// One federation of `clients` clients (and its baseline), every vector length.
async fn run_federation(
    args: &BenchArgs,
    config: &RunConfig,
    clients: usize,
    references: &References,
    progress: &ProgressBar,
    probe_transport: bool,
) -> Result<(Vec<ConfigResult>, Option<transport::Transport>)> {
    progress.set_message(format!("starting a federation of {clients} clients"));
    let dir = args.out_dir.join(format!("federation-{clients}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    let relays = config.rtt_ms.map(|rtt| Arc::new(relay::Relays::new(rtt)));
    let options = InitOptions {
        helpers: config.helpers,
        clients,
        threshold: config.threshold,
        min_clients: Some(clients),
        federation_id: "sealroom-bench".into(),
        force: true,
        upload_window_ms: 60_000,
        aggregation_window_ms: 60_000,
        // Peers reach each serving node through its relay, 50 ports up.
        relay_port_offset: if relays.is_some() { 50 } else { 0 },
        ..InitOptions::default()
    };
    let names: Vec<String> = (0..clients).map(|i| format!("client-{i}")).collect();
    let inputs: Vec<Arc<dyn InputSource>> = names
        .iter()
        .map(|n| Arc::new(SyntheticInput { client: n.clone() }) as Arc<dyn InputSource>)
        .collect();
    let node_relays = relays.clone();
    let (fed, mut events) = LocalFederation::start_relayed(
        &dir,
        options,
        TaskCatalog::with_builtins(),
        inputs,
        |pairs| async move {
            if let Some(relays) = node_relays {
                for (port, upstream) in pairs {
                    relays
                        .add(port, upstream)
                        .await
                        .map_err(|e| sealroom_node::NodeError::Config(format!("{e:#}")))?;
                }
            }
            Ok(())
        },
    )
    .await
    .context("starting the local federation")?;
    let q = fed.summary.federation.quantization.clone();
    let spec = QuantSpec::new(q.scale_bits, q.clip, q.bits)?;
    let federation_ring = match q.ring.as_str() {
        "z2_32" => RingKind::Z2_32,
        "z2_64" => RingKind::Z2_64,
        _ => RingKind::Fp61,
    };
    // As the task catalog does: a round whose sums do not fit Z_2^32 is widened.
    let ring = if federation_ring == RingKind::Z2_32
        && sealroom_core::fits(federation_ring, clients as u64, spec).is_err()
    {
        RingKind::Z2_64
    } else {
        federation_ring
    };
    // As the coordinator does: a sum's shares travel at the narrowest width
    // its headroom check admits (F_p: its own width).
    let encoding = RoundEncoding::new(ring, clients as u64, spec)?.narrowest();

    let material = |name: &str| -> Result<sealroom_node::tls::TlsMaterial> {
        Ok(fed
            .configs
            .get(name)
            .with_context(|| format!("no node {name} in the federation"))?
            .tls
            .clone())
    };
    let baseline_clients = names
        .iter()
        .map(|n| Ok((n.clone(), material(n)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut baseline = Baseline::start(
        &material("coordinator")?,
        fed.admin()?.tls.clone(),
        baseline_clients,
        q.clip,
        relays.as_deref(),
    )
    .await?;
    let mut driver = baseline.driver()?;
    let probe = if probe_transport {
        progress.set_message("measuring the transport limit");
        let bytes = if config.quick {
            8 << 20
        } else {
            transport::PROBE_BYTES
        };
        Baseline::transfer(&mut driver, bytes).await?;
        let mut grpc = Vec::new();
        let mut tcp = Vec::new();
        for _ in 0..3 {
            grpc.push(Baseline::transfer(&mut driver, bytes).await?);
            tcp.push(transport::raw_tcp(bytes).await?);
        }
        Some(transport::Transport {
            bytes,
            raw_tcp_bytes_per_s: transport::best_rate(bytes, &tcp),
            grpc_tls_bytes_per_s: transport::best_rate(bytes, &grpc),
        })
    } else {
        None
    };

    let mut out = Vec::new();
    let mut baseline_round_id = 0u64;
    let mut last_secure_round = 0u64;
    let mut seen = Vec::new();
    for &dims in &config.dims {
        progress.set_message(format!("{clients} clients × {dims} dims"));
        let mut secure_ms = Vec::new();
        let mut baseline_ms = Vec::new();
        let mut coordinator_ms = Vec::new();
        let mut secure_cpu = 0.0;
        let mut baseline_cpu = 0.0;
        let mut secure_ids = Vec::new();
        let mut baseline_ids = Vec::new();
        let mut sum_diff = None;
        let mut to_check: Option<(u64, Vec<f64>)> = None;
        let mut oversize_outcomes = 0usize;
        let before_helper = node_histogram(
            &fed,
            "helper-",
            "sealroom_helper_answer_latency_seconds",
            &[],
        );
        let before_client = node_histogram(
            &fed,
            "client-",
            "sealroom_round_duration_seconds",
            &["role=\"client\"", "outcome=\"uploaded\""],
        );
        for i in 0..config.warmup + config.rounds {
            let measured = i >= config.warmup;
            // Alternate which side goes first, so neither always runs on a
            // machine the other just warmed or loaded.
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let cpu0 = stats::process_cpu_seconds();
                let started = Instant::now();
                if side == 0 {
                    let requested = fed.run_round(SYNTHETIC, dims as u64).await;
                    let elapsed = started.elapsed().as_secs_f64() * 1e3;
                    let round_id = match requested {
                        Ok(outcome) => {
                            if outcome.status != "completed" || outcome.values.len() != dims {
                                bail!(
                                    "secure round {} ({clients} clients × {dims} dims) did not complete: {} {} {}",
                                    outcome.round_id,
                                    outcome.status,
                                    outcome.reason,
                                    outcome.detail
                                );
                            }
                            if measured {
                                coordinator_ms.push(outcome.duration_ms as f64);
                                if sum_diff.is_none() && to_check.is_none() {
                                    to_check = Some((outcome.round_id, outcome.values));
                                }
                            }
                            outcome.round_id
                        }
                        // The coordinator answers StartRound only once the round is
                        // over; an outcome above the node's message limit is refused
                        // at that point. The round itself completed: confirm it by
                        // every client receiving the published result.
                        Err(s) if s.message().contains("message length too large") => {
                            let round_id = last_secure_round + 1;
                            if measured {
                                oversize_outcomes += 1;
                            }
                            round_id
                        }
                        Err(s) => bail!(
                            "secure round ({clients} clients × {dims} dims): {} \
                             (a node that cannot write its store — a full disk, say — stops)",
                            s.message()
                        ),
                    };
                    last_secure_round = round_id;
                    // The round is over for everyone once every client holds
                    // the result: wait for that (outside the latency, inside
                    // the CPU figure) so its tail does not run into the next
                    // round of either side.
                    wait_for_results(&mut events, &mut seen, round_id, clients).await?;
                    let cpu1 = stats::process_cpu_seconds();
                    if let Some((id, values)) = to_check.take() {
                        sum_diff = Some(check_sum(&names, id, dims, q.clip, &values));
                    }
                    if measured {
                        secure_ms.push(elapsed);
                        secure_ids.push(round_id);
                        if let (Some(a), Some(b)) = (cpu0, cpu1) {
                            secure_cpu += b - a;
                        }
                    }
                } else {
                    baseline_round_id += 1;
                    let sum =
                        Baseline::round(&mut driver, baseline_round_id, dims, clients).await?;
                    let elapsed = started.elapsed().as_secs_f64() * 1e3;
                    let cpu1 = stats::process_cpu_seconds();
                    if sum.len() != dims {
                        bail!("baseline round returned {} values for {dims}", sum.len());
                    }
                    if measured {
                        baseline_ms.push(elapsed);
                        baseline_ids.push(baseline_round_id);
                        if let (Some(a), Some(b)) = (cpu0, cpu1) {
                            baseline_cpu += b - a;
                        }
                    }
                }
                progress.inc(1);
            }
        }
        // Uploads are reported when their receipts (acks) are in: give the
        // last round's stragglers a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut secure_bytes: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        for (_, event) in seen.drain(..) {
            if let ClientEvent::Uploaded {
                round_id, bytes, ..
            } = event
                && secure_ids.contains(&round_id)
            {
                secure_bytes.entry(round_id).or_default().push(bytes);
            }
        }
        let mut baseline_bytes = Vec::new();
        while let Ok(u) = baseline.uploads.try_recv() {
            if baseline_ids.contains(&u.round_id) {
                baseline_bytes.push(u.bytes);
            }
        }
        let mean = |v: &[usize]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<usize>() as f64 / v.len() as f64
            }
        };
        let secure_all: Vec<usize> = secure_bytes.values().flatten().copied().collect();
        let after_helper = node_histogram(
            &fed,
            "helper-",
            "sealroom_helper_answer_latency_seconds",
            &[],
        );
        let after_client = node_histogram(
            &fed,
            "client-",
            "sealroom_round_duration_seconds",
            &["role=\"client\"", "outcome=\"uploaded\""],
        );
        let per = |after: (f64, u64), before: (f64, u64)| {
            let n = after.1.saturating_sub(before.1);
            if n == 0 {
                0.0
            } else {
                (after.0 - before.0) / n as f64 * 1e3
            }
        };
        // The window holds warm-up rounds too; every round is alike.
        let helper_answer_ms = per(after_helper, before_helper);
        let element_bytes = match ring {
            RingKind::Z2_32 => 4,
            _ => 8,
        };
        let shares_bytes = (clients * dims * element_bytes) as f64;

        progress.set_message(format!("{clients} clients × {dims} dims: kernels"));
        let shape = Shape {
            clients,
            dims,
            helpers: config.helpers,
            threshold: config.threshold,
            encoding,
        };
        let times =
            tokio::task::spawn_blocking(move || kernels::measure(&shape, spec.clip())).await??;
        let mut result = ConfigResult {
            clients,
            dims,
            helpers: config.helpers,
            mode: config.mode.clone(),
            threshold: config.threshold,
            ring: ring.name().into(),
            share_bits: encoding.share_bits(),
            rtt_ms: config.rtt_ms,
            rounds: config.rounds,
            secure: Side {
                latency_ms: Summary::of(&secure_ms),
                upload_bytes_per_client: mean(&secure_all),
                process_cpu_s_per_round: secure_cpu / config.rounds as f64,
            },
            baseline: Side {
                latency_ms: Summary::of(&baseline_ms),
                upload_bytes_per_client: mean(&baseline_bytes),
                process_cpu_s_per_round: baseline_cpu / config.rounds as f64,
            },
            latency_ratio_p50: None,
            latency_ratio_p95: None,
            latency_ratio_p99: None,
            upload_ratio: None,
            node: NodeFigures {
                coordinator_round_ms: Summary::of(&coordinator_ms),
                helper_answer_ms_mean: helper_answer_ms,
                helper_answer_bytes_per_s: stats::ratio(shares_bytes, helper_answer_ms / 1e3)
                    .unwrap_or(0.0),
                client_round_ms_mean: per(after_client, before_client),
            },
            kernels: KernelFigures {
                times,
                ..KernelFigures::default()
            },
            sum_max_abs_difference: sum_diff.flatten(),
            oversize_outcomes,
            verdicts: Vec::new(),
        };
        result.judge(references);
        out.push(result);
    }
    baseline.stop();
    fed.shutdown().await;
    // Helpers keep every share of the recent rounds: at 1M dims that is
    // gigabytes of scratch the bench has no further use for.
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok((out, probe))
}

/// Largest difference between the secure round's sum and the plaintext sum
/// of the same synthetic inputs (recomputed here only to check).
fn check_sum(
    names: &[String],
    round_id: u64,
    dims: usize,
    clip: f64,
    secure: &[f64],
) -> Option<f64> {
    let mut plain = vec![0.0f64; dims];
    for n in names {
        let v = sealroom_node::tasks::synthetic_vector(n, round_id, dims, clip);
        for (p, x) in plain.iter_mut().zip(v) {
            *p += x;
        }
    }
    secure
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .reduce(f64::max)
}

/// Waits until every one of `clients` clients has received round
/// `round_id`'s published result (keeping the events read on the way).
async fn wait_for_results(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, ClientEvent)>,
    seen: &mut Vec<(usize, ClientEvent)>,
    round_id: u64,
    clients: usize,
) -> Result<()> {
    let is_result = |e: &ClientEvent| matches!(e, ClientEvent::Outcome { round_id: r, kind } if *r == round_id && kind == "result");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.iter().filter(|(_, e)| is_result(e)).count() < clients {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => seen.push(e),
            Ok(None) => bail!("the federation's clients stopped"),
            Err(_) => bail!(
                "secure round {round_id}: not every client received the published result within 60 s"
            ),
        }
    }
    Ok(())
}
