//! How much accuracy does FedAvg lose when the model deltas are quantized
//! to 8, 12 or 16 bits for secure aggregation, and how much does error
//! feedback win back?
//!
//! Runs the in-process simulation (`sealroom_analytics::fl::simulate`, which
//! aggregates exactly as a secure round does, bit for bit) on the red wine
//! quality data split non-IID (Dirichlet α = 0.5) across 10 clients, for the
//! logistic model and a small MLP. It prints the final test accuracy (mean ±
//! sample standard deviation over five seeds of split, partition and
//! initialization) and the mean final test loss, next to unquantized FedAvg
//! and centralized training on the pooled rows. The delta clip sets the
//! quantization step (`step = 2^−scale`, the finest scale at which ±clip fits
//! the bits), so a loose clip shows what coarse steps cost.
//!
//! ```text
//! cargo run --release -p sealroom-analytics --example quantization_sweep
//! ```

use sealroom_analytics::fl::{
    Aggregation, DatasetKind, FedAvgSpec, FlError, ModelKind, SimConfig, SimReport, centralized,
    simulate,
};
use sealroom_core::RingKind;

/// Seeds of the split, partition and initialization averaged over.
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
/// Delta clips swept: from about the largest delta seen to far too loose.
const DELTA_CLIPS: [f64; 4] = [0.25, 1.0, 4.0, 16.0];
/// Delta widths swept.
const BITS: [u8; 3] = [8, 12, 16];
/// No client of these splits has more rows, so no weight is capped.
const MAX_WEIGHT: u32 = 4096;

fn main() -> Result<(), FlError> {
    print_wire_widths()?;
    for model in [ModelKind::Logistic, ModelKind::Mlp { hidden: 16 }] {
        let base = SimConfig {
            rounds: 40,
            ..SimConfig::new(DatasetKind::Wine, model)
        };
        println!(
            "\n### {model} on {}: {} clients, α = {}, {} rounds × {} local epoch, batch {}, learning rate {}, L2 {}\n",
            base.dataset,
            base.n_clients,
            base.alpha,
            base.rounds,
            base.local.epochs,
            base.local.batch_size,
            base.local.learning_rate,
            base.local.l2,
        );
        println!(
            "Final test accuracy, mean ± sd over {} seeds (mean final test loss in parentheses).\n",
            SEEDS.len()
        );
        println!(
            "| aggregation | delta clip | error feedback | 8-bit | 12-bit | 16-bit | clipped values / round |"
        );
        println!("|---|---|---|---|---|---|---|");
        let central = run(&base, centralized)?;
        println!(
            "| centralized (pooled rows) | – | – | {} | | | – |",
            cell(&central)
        );
        let plain = run(&base, simulate)?;
        println!("| FedAvg, f64 | – | – | {} | | | – |", cell(&plain));
        for delta_clip in DELTA_CLIPS {
            for error_feedback in [false, true] {
                quantized_row(
                    &base,
                    "FedAvg, quantized",
                    delta_clip,
                    MAX_WEIGHT,
                    error_feedback,
                )?;
            }
        }
        // Uniform weights: the narrowest uploads (8-bit deltas from up to
        // 256 clients travel as 16-bit shares).
        for error_feedback in [false, true] {
            quantized_row(
                &base,
                "FedAvg, quantized, uniform weights",
                1.0,
                1,
                error_feedback,
            )?;
        }
    }
    Ok(())
}

/// One table row: quantized FedAvg at every width of [`BITS`].
fn quantized_row(
    base: &SimConfig,
    label: &str,
    delta_clip: f64,
    max_weight: u32,
    error_feedback: bool,
) -> Result<(), FlError> {
    let mut cells = Vec::new();
    let mut clipped = Vec::new();
    for bits in BITS {
        let config = SimConfig {
            aggregation: Aggregation::Quantized {
                spec: FedAvgSpec {
                    bits,
                    delta_clip,
                    max_weight,
                },
                error_feedback,
            },
            ..*base
        };
        let reports = run(&config, simulate)?;
        // Uniform weights cap every client on purpose.
        if max_weight > 1
            && reports
                .iter()
                .flat_map(|r| &r.rounds)
                .any(|r| r.weights_capped > 0)
        {
            println!("(note: weights were capped at {max_weight})");
        }
        cells.push(cell(&reports));
        clipped.push(format!("{:.1}", clipped_per_round(&reports)));
    }
    println!(
        "| {label} | ±{delta_clip} | {} | {} | {} |",
        if error_feedback { "on" } else { "off" },
        cells.join(" | "),
        clipped.join(" / ")
    );
    Ok(())
}

/// The quantization step of each (clip, bits) pair and the width of the
/// resulting wire values.
fn print_wire_widths() -> Result<(), FlError> {
    println!(
        "| delta clip | bits | step | wire bits | clients a Z_2^32 round admits | share bits at 10 / 256 clients | upload / f32 at 10 / 256 clients |"
    );
    println!("|---|---|---|---|---|---|---|");
    for delta_clip in DELTA_CLIPS {
        for bits in BITS {
            let spec = FedAvgSpec {
                bits,
                delta_clip,
                max_weight: MAX_WEIGHT,
            };
            let wire = spec.wire_spec()?;
            let admits = u64::from(i32::MAX as u32) / wire.max_abs();
            // The headroom check agrees: this many clients fit, one more does not.
            if admits > 0 {
                spec.round_encoding(RingKind::Z2_32, admits)?;
            }
            let (narrow_10, ratio_10) = narrowed(&spec, 10)?;
            let (narrow_256, ratio_256) = narrowed(&spec, 256)?;
            println!(
                "| ±{delta_clip} | {bits} | 2^{} | {} | {admits} | {narrow_10} / {narrow_256} | {ratio_10} / {ratio_256} |",
                -i32::from(wire.scale_bits()),
                wire.bits(),
            );
        }
    }
    println!(
        "\nUniform weights (`max_weight` = 1: each client's delta counts once, the wire value is the delta itself):\n"
    );
    println!("| bits | share bits at 10 / 256 clients | upload / f32 at 10 / 256 clients |");
    println!("|---|---|---|");
    for bits in [4, 8, 12, 16] {
        let spec = FedAvgSpec {
            bits,
            delta_clip: 1.0,
            max_weight: 1,
        };
        let (narrow_10, ratio_10) = narrowed(&spec, 10)?;
        let (narrow_256, ratio_256) = narrowed(&spec, 256)?;
        println!("| {bits} | {narrow_10} / {narrow_256} | {ratio_10} / {ratio_256} |");
    }
    Ok(())
}

/// The share width a Z_2^32 sum of `clients` updates travels at (the
/// narrowest the headroom check admits, as the coordinator picks it) and the
/// share vector's size against an f32 update (`—` if the round does not fit).
fn narrowed(spec: &FedAvgSpec, clients: u64) -> Result<(String, String), FlError> {
    const LEN: usize = 100_000;
    match spec.round_encoding(RingKind::Z2_32, clients) {
        Ok(encoding) => {
            let narrow = encoding.narrowest();
            let bits = narrow.share_bits().map_or(32, u32::from);
            let ratio = narrow.vector_bytes(LEN) as f64 / (4 * LEN) as f64;
            Ok((bits.to_string(), format!("{ratio:.3}×")))
        }
        Err(FlError::Quantization(_)) => Ok(("—".into(), "—".into())),
        Err(e) => Err(e),
    }
}

fn run(
    base: &SimConfig,
    f: fn(&SimConfig) -> Result<SimReport, FlError>,
) -> Result<Vec<SimReport>, FlError> {
    SEEDS
        .iter()
        .map(|&seed| f(&SimConfig { seed, ..*base }))
        .collect()
}

/// "mean% ± sd (loss)" of the final round.
fn cell(reports: &[SimReport]) -> String {
    let accuracies: Vec<f64> = reports.iter().map(SimReport::final_accuracy).collect();
    let n = accuracies.len() as f64;
    let mean = accuracies.iter().sum::<f64>() / n;
    let var = accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let loss = reports
        .iter()
        .filter_map(|r| r.rounds.last())
        .map(|r| r.test_loss)
        .sum::<f64>()
        / n;
    format!(
        "{:.1}% ± {:.1} ({loss:.3})",
        100.0 * mean,
        100.0 * var.sqrt()
    )
}

fn clipped_per_round(reports: &[SimReport]) -> f64 {
    reports
        .iter()
        .map(|r| r.total_clipped() as f64 / r.rounds.len().max(1) as f64)
        .sum::<f64>()
        / reports.len().max(1) as f64
}
