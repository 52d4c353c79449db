//! In-process measurement of the engine (the CLI bench calls [`run`]).
//!
//! Three helpers run in one process on the [`crate::sim`] network, in turn
//! on one thread, so the figures are *aggregate* throughput of all three
//! helpers sharing a core; a helper on its own core would do about three
//! times the work per second minus transport costs. Each figure is measured
//! beside a semi-honest baseline of the same code (no MACs, no checks, no
//! Chida verification), and the report prints the ratio. This module is the
//! only place in the crate that reads a clock.

use std::sync::Arc;
use std::time::Instant;

use sealroom_core::Seed;

use crate::machine::HelperIndex;
use crate::material::{Batch, BatchId, Counts};
use crate::preproc::{BatchParams, Mode, Preprocessing};
use crate::program::{Program, ProgramBuilder, ProgramError};
use crate::prss::{EpochKeys, PrssKeys};
use crate::session::{Outcome, Session, SessionConfig, SessionInputs};
use crate::sim;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Products per multiplication layer (vector length).
    pub mul_width: usize,
    /// Multiplication layers (rounds).
    pub mul_depth: usize,
    /// Triples per preprocessing batch.
    pub triples: usize,
    /// Random bits per batch.
    pub bits: usize,
    /// Comparisons (vector length of one LT).
    pub comparisons: usize,
    /// Data bits of the compared values.
    pub compare_bits: u32,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            mul_width: 1 << 18,
            mul_depth: 4,
            triples: 1 << 18,
            bits: 1 << 16,
            comparisons: 4096,
            compare_bits: 32,
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub name: &'static str,
    /// Items processed.
    pub items: u64,
    /// Wall time, malicious (seconds).
    pub seconds: f64,
    /// Wall time, semi-honest baseline (seconds), if there is one.
    pub baseline_seconds: Option<f64>,
    /// Bytes sent by one helper (average of three) per item.
    pub bytes_per_item: f64,
    /// Communication rounds of the run.
    pub rounds: u64,
}

impl Figure {
    /// Items per second (all three helpers together, one core).
    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.seconds
    }
    /// Malicious time over baseline time.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline_seconds.map(|b| self.seconds / b)
    }
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Where the helpers ran (the table's first column header).
    pub layout: &'static str,
    /// All figures.
    pub figures: Vec<Figure>,
}

/// The online multiplication benchmark program: `depth` layers of `width`
/// products of random shared values, one output (their sum).
pub fn mul_program(width: usize, depth: usize) -> Result<Program, ProgramError> {
    let mut p = ProgramBuilder::new("bench mul", 1);
    let a = p.random_values(width);
    let b = p.random_values(width);
    let mut x = p.mul(a, b);
    for _ in 1..depth {
        x = p.mul(x, b);
    }
    let s = p.sum(x);
    p.output(s);
    p.build()
}

/// The comparison benchmark program: `n` LT comparisons of `bits`-bit
/// values (random shared bits as operands), one output (their count).
pub fn compare_program(n: usize, bits: u32) -> Result<Program, ProgramError> {
    let mut p = ProgramBuilder::new("bench lt", 1);
    let a = p.random_bits(n);
    let b = p.random_bits(n);
    let lt = p.lt(a, b, bits);
    let s = p.sum(lt);
    p.output(s);
    p.build()
}

impl core::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "{:<34} {:>12} {:>14} {:>14} {:>10} {:>12} {:>7}",
            self.layout, "items", "items/s", "baseline/s", "mal/semi", "B/item/hlp", "rounds"
        )?;
        for g in &self.figures {
            let base = g
                .baseline_seconds
                .map(|b| format!("{:.3e}", g.items as f64 / b))
                .unwrap_or_else(|| "-".into());
            let ratio = g
                .ratio()
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:<34} {:>12} {:>14.3e} {:>14} {:>10} {:>12.1} {:>7}",
                g.name,
                g.items,
                g.per_second(),
                base,
                ratio,
                g.bytes_per_item,
                g.rounds
            )?;
        }
        Ok(())
    }
}

fn keys() -> [EpochKeys; 3] {
    let k = [
        Seed::from_bytes([11; 32]),
        Seed::from_bytes([12; 32]),
        Seed::from_bytes([13; 32]),
    ];
    HelperIndex::ALL.map(|h| {
        let i = h.index();
        EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 1)
    })
}

fn preprocess(
    keys: &[EpochKeys; 3],
    id: u8,
    counts: Counts,
    mode: Mode,
) -> (Option<[Batch; 3]>, f64, u64, u64) {
    let params = BatchParams {
        id: BatchId([id; 16]),
        counts,
        round_timeout_ms: 60_000,
    };
    let start = Instant::now();
    let machines = [0, 1, 2]
        .map(|i| Preprocessing::with_mode(&keys[i], params, Seed::from_bytes([i as u8; 32]), mode));
    let report = sim::run(machines, None, usize::MAX);
    let secs = start.elapsed().as_secs_f64();
    let bytes = report.bytes_sent.iter().sum::<u64>() / 3;
    let rounds = report.messages_sent[0] / 2;
    let [a, b, c] = report.outcomes;
    let batches = match (a, b, c) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some([a, b, c]),
        _ => None,
    };
    (batches, secs, bytes, rounds)
}

fn sessions(
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    batches: [Batch; 3],
    malicious: bool,
    mut inputs: [SessionInputs; 3],
) -> Option<[Session; 3]> {
    let mut it = batches.into_iter();
    let list: Vec<Session> = (0..3)
        .filter_map(|i| {
            let b = it.next()?;
            let config = SessionConfig {
                session_id: [3; 32],
                round_timeout_ms: 600_000,
            };
            let seed = Seed::from_bytes([20 + i as u8; 32]);
            let inputs = std::mem::take(&mut inputs[i]);
            if malicious {
                Session::new(program.clone(), &keys[i], vec![b], inputs, config, seed).ok()
            } else {
                Session::baseline(program.clone(), &keys[i], vec![b], inputs, config, seed).ok()
            }
        })
        .collect();
    <[Session; 3]>::try_from(list).ok()
}

/// Runs a program with each helper on its own thread; (seconds, completed).
fn run_program_threaded(
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    batches: [Batch; 3],
    malicious: bool,
) -> (f64, bool) {
    let Some(s) = sessions(keys, program, batches, malicious, Default::default()) else {
        return (0.0, false);
    };
    let start = Instant::now();
    let (outcomes, _) = sim::run_threaded(s);
    let secs = start.elapsed().as_secs_f64();
    let ok = outcomes.iter().all(|o| {
        matches!(
            o,
            Some(Outcome::Completed { .. }) | Some(Outcome::BaselineDone)
        )
    });
    (secs, ok)
}

fn run_program(
    keys: &[EpochKeys; 3],
    program: &Arc<Program>,
    batches: [Batch; 3],
    malicious: bool,
) -> (f64, u64, u64, bool) {
    let Some(sessions) = sessions(keys, program, batches, malicious, Default::default()) else {
        return (0.0, 0, 0, false);
    };
    let start = Instant::now();
    let report = sim::run(sessions, None, usize::MAX);
    let secs = start.elapsed().as_secs_f64();
    let ok = report.outcomes.iter().all(|o| {
        matches!(
            o,
            Some(Outcome::Completed { .. }) | Some(Outcome::BaselineDone)
        )
    });
    (
        secs,
        report.bytes_sent.iter().sum::<u64>() / 3,
        report.messages_sent[0] / 2,
        ok,
    )
}

/// Runs every measurement of `config`.
pub fn run(config: &BenchConfig) -> BenchReport {
    let keys = keys();
    let mut figures = Vec::new();

    // Actively secure triples vs semi-honest triples.
    let counts = Counts {
        triples: config.triples,
        ..Counts::default()
    };
    let (_, secs, bytes, rounds) = preprocess(&keys, 1, counts, Mode::Malicious);
    let (_, base, _, _) = preprocess(&keys, 2, counts, Mode::SemiHonestBaseline);
    figures.push(Figure {
        name: "triples (Chida-verified)",
        items: config.triples as u64,
        seconds: secs,
        baseline_seconds: Some(base),
        bytes_per_item: bytes as f64 / config.triples as f64,
        rounds,
    });

    // Random bits.
    let counts = Counts {
        bits: config.bits,
        ..Counts::default()
    };
    let (_, secs, bytes, rounds) = preprocess(&keys, 3, counts, Mode::Malicious);
    figures.push(Figure {
        name: "random bits (verified)",
        items: config.bits as u64,
        seconds: secs,
        baseline_seconds: None,
        bytes_per_item: bytes as f64 / config.bits as f64,
        rounds,
    });

    // Online multiplications.
    if let Ok(prog) = mul_program(config.mul_width, config.mul_depth) {
        let prog = Arc::new(prog);
        let items = (config.mul_width * config.mul_depth) as u64;
        let mat = preprocess(&keys, 4, prog.needs(), Mode::Malicious).0;
        let mat2 = preprocess(&keys, 5, prog.needs(), Mode::Malicious).0;
        if let (Some(m1), Some(m2)) = (mat, mat2) {
            let (secs, bytes, rounds, ok1) = run_program(&keys, &prog, m1, true);
            let (base, _, _, ok2) = run_program(&keys, &prog, m2, false);
            if ok1 && ok2 {
                figures.push(Figure {
                    name: "online multiplications (verified)",
                    items,
                    seconds: secs,
                    baseline_seconds: Some(base),
                    bytes_per_item: bytes as f64 / items as f64,
                    rounds,
                });
            }
        }
        // The same with each helper on its own thread (2 cores here).
        let mat = preprocess(&keys, 8, prog.needs(), Mode::Malicious).0;
        let mat2 = preprocess(&keys, 9, prog.needs(), Mode::Malicious).0;
        if let (Some(m1), Some(m2)) = (mat, mat2) {
            let (secs, ok1) = run_program_threaded(&keys, &prog, m1, true);
            let (base, ok2) = run_program_threaded(&keys, &prog, m2, false);
            if ok1 && ok2 {
                figures.push(Figure {
                    name: "online mults, 3 threads (verified)",
                    items,
                    seconds: secs,
                    baseline_seconds: Some(base),
                    bytes_per_item: 64.0,
                    rounds: prog.rounds() as u64,
                });
            }
        }
    }

    // Comparisons (online; material from preprocessing, not timed).
    if let Ok(prog) = compare_program(config.comparisons, config.compare_bits) {
        let prog = Arc::new(prog);
        let needs = prog.needs();
        let mat = preprocess(&keys, 6, needs, Mode::Malicious).0;
        let mat2 = preprocess(&keys, 7, needs, Mode::Malicious).0;
        if let (Some(m1), Some(m2)) = (mat, mat2) {
            let (secs, bytes, rounds, ok1) = run_program(&keys, &prog, m1, true);
            let (base, _, _, ok2) = run_program(&keys, &prog, m2, false);
            if ok1 && ok2 {
                figures.push(Figure {
                    name: "comparisons LT (online)",
                    items: config.comparisons as u64,
                    seconds: secs,
                    baseline_seconds: Some(base),
                    bytes_per_item: bytes as f64 / config.comparisons as f64,
                    rounds,
                });
            }
        }
    }
    BenchReport {
        layout: "figure (3 helpers, 1 thread)",
        figures,
    }
}

/// What one client's update costs the helpers in the FedAvg validity
/// program (`weighted_norm_bounded_sum`, L2 bound), measured in-process:
/// the material it needs, the time to make it (actively secure, the three
/// helpers on one thread) and to run the program on it (each helper on
/// its own thread).
#[derive(Clone, Debug)]
pub struct ClientCost {
    /// Parameters of the update.
    pub elements: usize,
    /// Material the program needs per client.
    pub needs: Counts,
    /// Preprocessing seconds (three helpers, one thread).
    pub preprocessing_s: f64,
    /// Preprocessing bytes each helper sent.
    pub preprocessing_bytes: u64,
    /// Online seconds (one thread per helper).
    pub online_s: f64,
    /// Whether the program completed with the expected verdict.
    pub ok: bool,
}

/// [`ClientCost`] for one client's update of `elements` parameters.
pub fn validity_client_cost(elements: usize) -> Result<ClientCost, ProgramError> {
    use crate::client::{UploadRing, share_upload};
    use crate::validity::{UpdateBounds, weighted_norm_bounded_sum};
    let bounds = UpdateBounds {
        l2_sq: Some(1 << 40),
        linf_sq: None,
        max_weight: 128,
    };
    let program = Arc::new(weighted_norm_bounded_sum(1, elements + 1, bounds)?);
    let needs = program.needs();
    let keys = keys();
    let (batches, preprocessing_s, preprocessing_bytes, _) =
        preprocess(&keys, 10, needs, Mode::Malicious);
    let Some(batches) = batches else {
        return Err(ProgramError::Unsupported("preprocessing failed"));
    };
    // An in-bound update: small values, weight 3.
    let mut update: Vec<i64> = (0..elements).map(|j| (j % 7) as i64 - 3).collect();
    update.push(3);
    let context = [17u8; 32];
    let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::from_seed([4; 32]);
    let uploads = share_upload(&update, UploadRing::Z32, 0, context, &mut rng)
        .map_err(|_| ProgramError::Unsupported("the update does not fit Z_2^32"))?;
    let mut inputs: [SessionInputs; 3] = Default::default();
    for (h, u) in uploads.into_iter().enumerate() {
        inputs[h].clients.push(u);
        inputs[h].client_context = context;
    }
    let Some(sessions) = sessions(&keys, &program, batches, true, inputs) else {
        return Err(ProgramError::Unsupported("sessions did not start"));
    };
    let start = Instant::now();
    let (outcomes, _) = sim::run_threaded(sessions);
    let online_s = start.elapsed().as_secs_f64();
    // Kept: output 1 is the client's verdict.
    let ok = outcomes.iter().all(|o| match o {
        Some(Outcome::Completed { outputs }) => outputs.get(1).is_some_and(|v| v.signed() == [1]),
        _ => false,
    });
    Ok(ClientCost {
        elements,
        needs,
        preprocessing_s,
        preprocessing_bytes,
        online_s,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cost_of_a_small_update_is_measured_and_it_is_kept() {
        let c = validity_client_cost(8).expect("measures");
        assert!(c.ok, "{c:?}");
        assert!(c.needs.triples > 8 && c.needs.bits > 8, "{c:?}");
    }

    /// The bench runs end to end on tiny sizes and every figure is present.
    #[test]
    fn tiny_bench_produces_every_figure() {
        let r = run(&BenchConfig {
            mul_width: 16,
            mul_depth: 2,
            triples: 16,
            bits: 8,
            comparisons: 4,
            compare_bits: 8,
        });
        let names: Vec<&str> = r.figures.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), 5, "{names:?}");
    }
}
