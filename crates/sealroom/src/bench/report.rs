//! What `sealroom bench` prints and writes: one table per configuration,
//! MET / MISSED per DESIGN.md §9 target, the JSON report and the SVG chart.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;

use super::kernels::{KernelTimes, References, ms};
use super::stats::{Summary, Verdict, at_least, at_most, ratio};
use crate::table::{Align, Table, human_bytes};

/// The §9 targets, as named in the report.
pub const UPLOAD: &str = "client upload bytes, additive mode, vs plaintext f32 (baseline) ≤ 1.0×";
/// See [`UPLOAD`].
pub const P95: &str = "round latency p95 vs baseline ≤ 1.25×";
/// See [`UPLOAD`].
pub const P99: &str = "round latency p99 vs baseline ≤ 2×";
/// See [`UPLOAD`].
pub const HELPER: &str =
    "helper aggregation throughput ≥ 50% of memory bandwidth (plain vector sum, one core)";
/// See [`UPLOAD`].
pub const PRG: &str = "share expansion (PRG) ≥ 4 GB/s per core";
/// See [`UPLOAD`].
pub const SMALL_GROUP: &str = "small-group round (5 clients, 100k params) p95 < 500 ms";

/// Upload ratios are compared as printed, to two decimals: the target's
/// "1.0×" allows the few seeds and headers that ride along with one vector.
const UPLOAD_SLACK: f64 = 0.005;

/// One side (secure or baseline) of a configuration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Side {
    /// Round latency seen by the driver (request to result in hand), ms.
    pub latency_ms: Summary,
    /// Mean bytes one client uploads per round (encoded messages, all helpers).
    pub upload_bytes_per_client: f64,
    /// Process CPU seconds per round (user + system, every thread: all roles
    /// of that side run in this process), from /proc/self/stat.
    pub process_cpu_s_per_round: f64,
}

/// Figures the nodes report about themselves (their Prometheus metrics).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeFigures {
    /// The coordinator's own round duration (descriptor to outcome), ms.
    pub coordinator_round_ms: Summary,
    /// Mean helper answer latency (inclusion set in, answer out: verify,
    /// aggregate, sign, persist), ms, over every helper and round.
    pub helper_answer_ms_mean: f64,
    /// Shares summed per second by that step, bytes (clients × dims ×
    /// element size / answer latency).
    pub helper_answer_bytes_per_s: f64,
    /// Mean client round time (descriptor in, every receipt back: input,
    /// share, upload), ms.
    pub client_round_ms_mean: f64,
}

/// Kernel figures derived for the table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelFigures {
    /// The raw timings.
    pub times: KernelTimes,
    /// Helper aggregation, bytes of shares per second.
    pub helper_bytes_per_s: f64,
    /// That as a fraction of the run's plain vector-sum bandwidth.
    pub helper_fraction_of_memory_bandwidth: f64,
    /// CPU seconds per round by role, from the kernels (single-threaded, so
    /// wall = CPU): every client's share, every helper's aggregation, the
    /// coordinator's reconstruction.
    pub cpu_s_per_round_clients: f64,
    /// See `cpu_s_per_round_clients`.
    pub cpu_s_per_round_helpers: f64,
    /// See `cpu_s_per_round_clients`.
    pub cpu_s_per_round_coordinator: f64,
}

/// A target's verdict for one configuration or for the run.
#[derive(Clone, Debug, Serialize)]
pub struct TargetVerdict {
    /// The target.
    pub target: &'static str,
    /// The figure compared.
    pub measured: Option<f64>,
    /// Its limit.
    pub limit: f64,
    /// MET / MISSED / NOT_MEASURED.
    pub verdict: Verdict,
    /// What the figure is.
    pub note: String,
}

/// Everything measured for one clients × dims configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    /// Clients.
    pub clients: usize,
    /// Elements per vector.
    pub dims: usize,
    /// Helpers.
    pub helpers: usize,
    /// `additive` or `threshold`.
    pub mode: String,
    /// Threshold t (threshold mode).
    pub threshold: Option<usize>,
    /// The rounds' ring.
    pub ring: String,
    /// The width the sum's shares travel at when narrower than the ring
    /// (docs/protocol.md "Narrow shares"); `None`: the ring's own.
    pub share_bits: Option<u8>,
    /// The emulated round-trip time every connection had (`--rtt-ms`).
    pub rtt_ms: Option<u64>,
    /// Measured rounds per side.
    pub rounds: usize,
    /// The secure rounds.
    pub secure: Side,
    /// The plaintext baseline rounds.
    pub baseline: Side,
    /// Secure / baseline latency, p50.
    pub latency_ratio_p50: Option<f64>,
    /// Secure / baseline latency, p95.
    pub latency_ratio_p95: Option<f64>,
    /// Secure / baseline latency, p99.
    pub latency_ratio_p99: Option<f64>,
    /// Secure / baseline upload bytes per client.
    pub upload_ratio: Option<f64>,
    /// What the nodes report.
    pub node: NodeFigures,
    /// Kernels measured in-process.
    pub kernels: KernelFigures,
    /// Largest |secure sum − baseline sum| over the first measured round's
    /// elements (quantization and f32 rounding), as a sanity check.
    pub sum_max_abs_difference: Option<f64>,
    /// Measured secure rounds whose outcome the coordinator refused to send
    /// to the driver (above the node's 8 MiB message limit): their latency
    /// runs to that refusal, sent once the round is over, and their
    /// completion is confirmed by every client receiving the published
    /// result; they have no coordinator duration or sum check.
    pub oversize_outcomes: usize,
    /// One verdict per target that applies to a configuration.
    pub verdicts: Vec<TargetVerdict>,
}

impl ConfigResult {
    /// Fills in ratios and verdicts from the measured figures.
    pub fn judge(&mut self, references: &References) {
        self.latency_ratio_p50 = ratio(self.secure.latency_ms.p50, self.baseline.latency_ms.p50);
        self.latency_ratio_p95 = ratio(self.secure.latency_ms.p95, self.baseline.latency_ms.p95);
        self.latency_ratio_p99 = ratio(self.secure.latency_ms.p99, self.baseline.latency_ms.p99);
        self.upload_ratio = ratio(
            self.secure.upload_bytes_per_client,
            self.baseline.upload_bytes_per_client,
        );
        let k = &mut self.kernels;
        k.helper_bytes_per_s = ratio(
            k.times.helper_aggregate_bytes as f64,
            k.times.helper_aggregate_s,
        )
        .unwrap_or(0.0);
        k.helper_fraction_of_memory_bandwidth =
            ratio(k.helper_bytes_per_s, references.vector_sum_bytes_per_s).unwrap_or(0.0);
        k.cpu_s_per_round_clients = k.times.client_share_s * self.clients as f64;
        k.cpu_s_per_round_helpers = k.times.helper_aggregate_s * self.helpers as f64;
        k.cpu_s_per_round_coordinator = k.times.reconstruct_s;

        let additive = self.threshold.is_none();
        let mut verdicts = vec![
            TargetVerdict {
                target: UPLOAD,
                measured: self.upload_ratio,
                limit: 1.0,
                verdict: if additive {
                    at_most(self.upload_ratio, 1.0 + UPLOAD_SLACK)
                } else {
                    Verdict::NotMeasured
                },
                note: if additive {
                    "secure / baseline encoded upload bytes per client, compared at two decimals"
                        .into()
                } else {
                    "applies to additive mode only".into()
                },
            },
            TargetVerdict {
                target: P95,
                measured: self.latency_ratio_p95,
                limit: 1.25,
                verdict: at_most(self.latency_ratio_p95, 1.25),
                note: "secure p95 / baseline p95, same transport, same run".into(),
            },
            TargetVerdict {
                target: P99,
                measured: self.latency_ratio_p99,
                limit: 2.0,
                verdict: at_most(self.latency_ratio_p99, 2.0),
                note: format!(
                    "secure p99 / baseline p99 ({} rounds each: p99 is the slowest round or next to it)",
                    self.rounds
                ),
            },
            TargetVerdict {
                target: HELPER,
                measured: Some(self.kernels.helper_fraction_of_memory_bandwidth),
                limit: 0.5,
                verdict: at_least(Some(self.kernels.helper_fraction_of_memory_bandwidth), 0.5),
                note: format!(
                    "kernel, measured in-process: helper 0's aggregation ({} seed + {} vector shares) / plain u64 vector sum",
                    self.kernels.times.helper_seed_shares, self.kernels.times.helper_vector_shares
                ),
            },
        ];
        if self.clients == 5 && self.dims == 100_000 {
            verdicts.push(TargetVerdict {
                target: SMALL_GROUP,
                measured: Some(self.secure.latency_ms.p95),
                limit: 500.0,
                verdict: Verdict::of(Some(self.secure.latency_ms.p95 < 500.0)),
                note: "secure round latency p95, ms, request to result at the driver".into(),
            });
        }
        self.verdicts = verdicts;
    }

    /// The configuration's table.
    pub fn render(&self, references: &References) -> String {
        let mut t = Table::new([
            ("figure", Align::Left),
            ("secure", Align::Right),
            ("baseline", Align::Right),
            ("ratio", Align::Right),
        ]);
        let x = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}×"));
        let lat = |s: f64| format!("{s:.1} ms");
        t.row([
            "round latency p50".into(),
            lat(self.secure.latency_ms.p50),
            lat(self.baseline.latency_ms.p50),
            x(self.latency_ratio_p50),
        ]);
        t.row([
            "round latency p95".into(),
            lat(self.secure.latency_ms.p95),
            lat(self.baseline.latency_ms.p95),
            x(self.latency_ratio_p95),
        ]);
        t.row([
            "round latency p99".into(),
            lat(self.secure.latency_ms.p99),
            lat(self.baseline.latency_ms.p99),
            x(self.latency_ratio_p99),
        ]);
        t.row([
            "upload per client and round".into(),
            human_bytes(self.secure.upload_bytes_per_client as u64),
            human_bytes(self.baseline.upload_bytes_per_client as u64),
            self.upload_ratio.map_or("—".into(), |r| format!("{r:.4}×")),
        ]);
        t.row([
            "process CPU per round (all roles, /proc/self/stat)".into(),
            format!("{:.3} s", self.secure.process_cpu_s_per_round),
            format!("{:.3} s", self.baseline.process_cpu_s_per_round),
            x(ratio(
                self.secure.process_cpu_s_per_round,
                self.baseline.process_cpu_s_per_round,
            )),
        ]);
        let k = &self.kernels;
        let mut n = Table::new([
            ("secure round phase", Align::Left),
            ("figure", Align::Right),
            ("source", Align::Left),
        ]);
        n.row([
            "coordinator round (descriptor → outcome), p50".into(),
            if self.node.coordinator_round_ms.n == 0 {
                "—".into()
            } else {
                lat(self.node.coordinator_round_ms.p50)
            },
            "node (RoundOutcome.duration_ms)".into(),
        ]);
        n.row([
            "client round (descriptor → all receipts), mean".into(),
            lat(self.node.client_round_ms_mean),
            "node metrics".into(),
        ]);
        n.row([
            "helper answer (inclusion set → answer), mean".into(),
            format!(
                "{} ms, {:.2} GB/s",
                ms(self.node.helper_answer_ms_mean / 1e3),
                self.node.helper_answer_bytes_per_s / 1e9
            ),
            "node metrics".into(),
        ]);
        n.row([
            "client share (quantize, share, encode)".into(),
            format!("{} ms", ms(k.times.client_share_s)),
            "kernel, measured in-process".into(),
        ]);
        n.row([
            format!(
                "helper aggregation ({} seeds + {} vectors)",
                k.times.helper_seed_shares, k.times.helper_vector_shares
            ),
            format!(
                "{} ms, {:.2} GB/s = {:.0}% of {:.1} GB/s",
                ms(k.times.helper_aggregate_s),
                k.helper_bytes_per_s / 1e9,
                k.helper_fraction_of_memory_bandwidth * 100.0,
                references.vector_sum_bytes_per_s / 1e9
            ),
            "kernel, measured in-process".into(),
        ]);
        n.row([
            "coordinator reconstruction + dequantize".into(),
            format!("{} ms", ms(k.times.reconstruct_s)),
            "kernel, measured in-process".into(),
        ]);
        n.row([
            "CPU per round: clients / helpers / coordinator".into(),
            format!(
                "{} / {} / {} ms",
                ms(k.cpu_s_per_round_clients),
                ms(k.cpu_s_per_round_helpers),
                ms(k.cpu_s_per_round_coordinator)
            ),
            "kernels × parties (single-threaded: wall = CPU)".into(),
        ]);
        let mut v = Table::new([
            ("target (DESIGN.md §9)", Align::Left),
            ("measured", Align::Right),
            ("verdict", Align::Left),
        ]);
        for verdict in &self.verdicts {
            v.row([
                verdict.target.to_string(),
                fmt_measured(verdict),
                verdict.verdict.as_str().to_string(),
            ]);
        }
        let mode = match self.threshold {
            Some(t) => format!("Shamir {t}-of-{} over F_p", self.helpers),
            None => match self.share_bits {
                Some(bits) => format!(
                    "additive {}-of-{} over {}, shares narrowed to {bits} bits",
                    self.helpers, self.helpers, self.ring
                ),
                None => format!(
                    "additive {}-of-{} over {}",
                    self.helpers, self.helpers, self.ring
                ),
            },
        };
        let mut notes = String::new();
        if self.oversize_outcomes > 0 {
            notes.push_str(&format!(
                "note: in {} of {} secure rounds the coordinator refused to send the outcome to the driver \
                 (above the node's 8 MiB gRPC message limit); their latency runs to that refusal, sent when \
                 the round was over, and every client received the published result\n",
                self.oversize_outcomes, self.rounds
            ));
        }
        if let Some(d) = self.sum_max_abs_difference {
            notes.push_str(&format!(
                "check: secure sum vs plaintext sum of the same inputs, largest difference {d:.2e} (quantization)\n"
            ));
        }
        let network = self
            .rtt_ms
            .map_or(String::new(), |rtt| format!(", emulated RTT {rtt} ms"));
        format!(
            "\n{} clients × {} dims — {mode}{network}, {} rounds each (secure, and the plaintext baseline)\n{}\n{}\n{}{}",
            self.clients,
            self.dims,
            self.rounds,
            t.render(),
            n.render(),
            v.render(),
            notes
        )
    }
}

fn fmt_measured(v: &TargetVerdict) -> String {
    match (v.target, v.measured) {
        (_, None) => "—".into(),
        (UPLOAD, Some(m)) => format!("{m:.4}×"),
        (HELPER, Some(m)) => format!("{:.0}%", m * 100.0),
        (PRG, Some(m)) => format!("{:.2} GB/s", m / 1e9),
        (SMALL_GROUP, Some(m)) => format!("{m:.1} ms"),
        (_, Some(m)) => format!("{m:.2}×"),
    }
}

/// Run-wide verdicts: the PRG figure, and per configuration target whether
/// every configuration met it.
pub fn summary_verdicts(results: &[ConfigResult], references: &References) -> Vec<TargetVerdict> {
    let mut out = vec![TargetVerdict {
        target: PRG,
        measured: Some(references.prg_bytes_per_s),
        limit: 4e9,
        verdict: at_least(Some(references.prg_bytes_per_s), 4e9),
        note: format!(
            "kernel, measured in-process: prg::expand_add_into over {}, 2^20 elements, one core",
            references.prg_ring
        ),
    }];
    for target in [UPLOAD, P95, P99, HELPER, SMALL_GROUP] {
        let all: Vec<&TargetVerdict> = results
            .iter()
            .flat_map(|r| r.verdicts.iter().filter(|v| v.target == target))
            .filter(|v| v.verdict != Verdict::NotMeasured)
            .collect();
        let met = all.iter().filter(|v| v.verdict == Verdict::Met).count();
        let verdict = if all.is_empty() {
            Verdict::NotMeasured
        } else if met == all.len() {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        let limit = results
            .iter()
            .flat_map(|r| r.verdicts.iter().filter(|v| v.target == target))
            .map(|v| v.limit)
            .next()
            .unwrap_or(match target {
                SMALL_GROUP => 500.0,
                _ => 0.0,
            });
        out.push(TargetVerdict {
            target,
            measured: None,
            limit,
            verdict,
            note: if all.is_empty() {
                match target {
                    SMALL_GROUP => "run with --clients 5 --dims 100000 to measure".into(),
                    _ => "not applicable to this run".into(),
                }
            } else {
                format!("met in {met} of {} configurations", all.len())
            },
        });
    }
    out
}

/// Renders the run-wide verdicts.
pub fn render_summary(verdicts: &[TargetVerdict]) -> String {
    let mut t = Table::new([
        ("target (DESIGN.md §9)", Align::Left),
        ("verdict", Align::Left),
        ("", Align::Left),
    ]);
    for v in verdicts {
        let detail = match v.measured {
            Some(_) => format!("{} — {}", fmt_measured(v), v.note),
            None => v.note.clone(),
        };
        t.row([v.target.to_string(), v.verdict.as_str().to_string(), detail]);
    }
    t.render()
}

/// Writes the chart: secure/baseline p95 latency ratio against vector length
/// (log x axis), one line per client count, the 1.25× target dashed.
pub fn latency_chart(path: &Path, results: &[ConfigResult]) -> Result<()> {
    let draw = |e: &dyn std::fmt::Display| anyhow!("drawing the chart: {e}");
    let points: Vec<(usize, usize, f64)> = results
        .iter()
        .filter_map(|r| Some((r.clients, r.dims, r.latency_ratio_p95?)))
        .collect();
    if points.is_empty() {
        return Err(anyhow!("no configuration to chart"));
    }
    let min_dims = points.iter().map(|p| p.1).min().unwrap_or(1).max(1) as f64;
    let max_dims = points.iter().map(|p| p.1).max().unwrap_or(10) as f64;
    let (x0, x1) = if max_dims > min_dims {
        (min_dims / 1.5, max_dims * 1.5)
    } else {
        (min_dims / 10.0, min_dims * 10.0)
    };
    let y_max = points.iter().map(|p| p.2).fold(1.5f64, f64::max) * 1.15;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sealroom bench: secure round p95 latency / plaintext baseline p95",
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..y_max)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("vector length (elements, log scale)")
        .y_desc("p95 latency ratio (secure / baseline)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.1}×"))
        .draw()
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(DashedLineSeries::new(
            [(x0, 1.25), (x1, 1.25)],
            6,
            4,
            BLACK.into(),
        ))
        .map_err(|e| draw(&e))?
        .label("target ≤ 1.25× (DESIGN.md §9)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    let mut client_counts: Vec<usize> = points.iter().map(|p| p.0).collect();
    client_counts.sort_unstable();
    client_counts.dedup();
    for (i, &clients) in client_counts.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.0 == clients)
            .map(|p| (p.1 as f64, p.2))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(format!("{clients} clients"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| draw(&e))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(clients: usize, dims: usize, secure_p95: f64, baseline_p95: f64) -> ConfigResult {
        let side = |p: f64, up: f64| Side {
            latency_ms: Summary {
                n: 3,
                p50: p / 2.0,
                p95: p,
                p99: p,
                mean: p / 2.0,
                min: 1.0,
                max: p,
            },
            upload_bytes_per_client: up,
            process_cpu_s_per_round: 0.1,
        };
        ConfigResult {
            clients,
            dims,
            helpers: 3,
            mode: "additive".into(),
            threshold: None,
            ring: "z2_32".into(),
            share_bits: None,
            rtt_ms: None,
            rounds: 3,
            secure: side(secure_p95, 4010.0),
            baseline: side(baseline_p95, 4000.0),
            latency_ratio_p50: None,
            latency_ratio_p95: None,
            latency_ratio_p99: None,
            upload_ratio: None,
            node: NodeFigures::default(),
            kernels: KernelFigures {
                times: KernelTimes {
                    helper_aggregate_s: 0.01,
                    helper_aggregate_bytes: 1_000_000_000,
                    ..KernelTimes::default()
                },
                ..KernelFigures::default()
            },
            sum_max_abs_difference: None,
            oversize_outcomes: 0,
            verdicts: Vec::new(),
        }
    }

    fn refs() -> References {
        References {
            vector_sum_bytes_per_s: 200e9,
            vector_sum_total_bytes: 1,
            prg_bytes_per_s: 5e9,
            prg_ring: "z2_32",
        }
    }

    #[test]
    fn ratios_and_verdicts() {
        let mut r = result(5, 100_000, 120.0, 100.0);
        r.judge(&refs());
        assert_eq!(r.latency_ratio_p95, Some(1.2));
        let get = |t| {
            r.verdicts
                .iter()
                .find(|v| v.target == t)
                .expect("verdict")
                .verdict
        };
        assert_eq!(get(P95), Verdict::Met);
        assert_eq!(get(P99), Verdict::Met);
        assert_eq!(get(UPLOAD), Verdict::Met, "1.0025× prints as 1.00×");
        assert_eq!(get(HELPER), Verdict::Met, "100 GB/s of 200 GB/s");
        assert_eq!(get(SMALL_GROUP), Verdict::Met);
        let mut slow = result(10, 1000, 300.0, 100.0);
        slow.secure.upload_bytes_per_client = 4100.0;
        slow.judge(&refs());
        assert!(slow.verdicts.iter().all(|v| v.target != SMALL_GROUP));
        let summary = summary_verdicts(&[r.clone(), slow.clone()], &refs());
        let get = |t| summary.iter().find(|v| v.target == t).expect("v").verdict;
        assert_eq!(get(P95), Verdict::Missed);
        assert_eq!(get(UPLOAD), Verdict::Missed);
        assert_eq!(get(PRG), Verdict::Met);
        assert_eq!(get(SMALL_GROUP), Verdict::Met);
        let text = r.render(&refs());
        assert!(text.contains("baseline") && text.contains("MET"), "{text}");
    }

    #[test]
    fn chart_has_one_line_per_client_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.svg");
        let mut results = vec![
            result(5, 1000, 2.0, 1.0),
            result(5, 100_000, 3.0, 2.0),
            result(10, 1000, 2.0, 1.0),
            result(10, 100_000, 5.0, 2.0),
        ];
        for r in &mut results {
            r.judge(&refs());
        }
        latency_chart(&path, &results).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("5 clients") && svg.contains("10 clients"));
        assert!(latency_chart(&path, &[]).is_err());
    }
}
