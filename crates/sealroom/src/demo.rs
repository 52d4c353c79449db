//! `sealroom demo`: joint wine analytics by secure aggregation, in process.
//!
//! Each winery quantizes its rows and computes its per-grade sums locally
//! ([`crate::wine`]), then secret-shares that vector to the helpers — additive
//! n-of-n over Z_2^64 or Shamir t-of-h over F_p, both with seed compression.
//! Each helper adds up the shares it holds, seeing only pseudorandom vectors;
//! the reconstruction of the helpers' aggregate shares is the joint sum, and
//! nothing else. The demo then checks the secure result against the same
//! computation in the clear: the quantized sums must agree bit for bit, and the
//! averages within half a quantization step.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use rand::SeedableRng;
use rand::rngs::{ChaCha20Rng, SysRng};
use sealroom_core::additive;
use sealroom_core::shamir::{self, ShamirParams};
use sealroom_core::{Fp, Ring, RingKind, RoundEncoding, fits};

use crate::table::human_bytes;
use crate::wine;

/// Options of `sealroom demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Sharing scheme: additive n-of-n over Z_2^64 (all helpers needed), or
    /// Shamir threshold t-of-h over F_p (any t helpers suffice).
    #[arg(long, value_enum, default_value_t = Mode::Additive)]
    pub mode: Mode,
    /// Number of helpers (independent organisations holding shares), 2..=16.
    #[arg(long, default_value_t = 3)]
    pub helpers: usize,
    /// Threshold t for `--mode threshold` (2 ≤ t ≤ helpers).
    #[arg(long, default_value_t = 2)]
    pub threshold: usize,
    /// Number of wineries (clients) the data set is split across.
    #[arg(long, default_value_t = 3)]
    pub wineries: usize,
}

/// The sharing scheme of a round.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Additive n-of-n sharing over Z_2^64.
    Additive,
    /// Shamir t-of-h sharing over F_p, p = 2^61 − 1.
    Threshold,
}

/// Runs the demo; an error (non-zero exit) if any secure result differs from
/// its plaintext twin.
pub fn run(args: &DemoArgs) -> Result<()> {
    if args.wineries == 0 {
        bail!("--wineries must be at least 1");
    }
    let rows = wine::load()?;
    let slices = wine::partition(&rows, args.wineries);
    let spec = wine::spec();
    let ring = match args.mode {
        Mode::Additive => RingKind::Z2_64,
        Mode::Threshold => RingKind::Fp61,
    };
    // Every row is one addend of the joint sum: that is what must not overflow.
    let encoding = fits(ring, rows.len() as u64, spec)
        .context("the demo's quantization does not fit the ring")?;

    println!("sealroom demo — joint wine analytics by secure aggregation (in process)");
    println!(
        "data: red-wine quality (linfa-datasets), {} rows split across {} wineries: {}",
        rows.len(),
        slices.len(),
        slices
            .iter()
            .map(|s| s.len().to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    );
    match args.mode {
        Mode::Additive => println!(
            "sharing: additive {h}-of-{h} over Z_2^64, {h} helpers, seed-compressed",
            h = args.helpers
        ),
        Mode::Threshold => println!(
            "sharing: Shamir {}-of-{} over F_p (p = 2^61 - 1), seed-compressed",
            args.threshold, args.helpers
        ),
    }
    println!(
        "quantization: clip ±{}, step 2^-{}, {} bits per value; headroom checked for {} addends",
        spec.clip(),
        spec.scale_bits(),
        spec.bits(),
        rows.len()
    );

    let local: Vec<_> = slices
        .iter()
        .map(|slice| wine::local_sums(slice, &spec))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let outcome = match args.mode {
        Mode::Additive => secure_sum_additive::<u64>(&encoding, &local, args.helpers)?,
        Mode::Threshold => secure_sum_shamir(&encoding, &local, args.threshold, args.helpers)?,
    };
    let elapsed = started.elapsed();

    // Bit-exact check: the secure sum equals the plaintext sum of the same
    // quantized vectors.
    let mut plain_sum = vec![0i64; wine::vector_len()];
    for q in &local {
        for (s, v) in plain_sum.iter_mut().zip(&q.values) {
            *s += v;
        }
    }
    let exact = outcome.sum == plain_sum;

    let secure_sums: Vec<f64> = outcome.sum.iter().map(|&q| spec.dequantize(q)).collect();
    let secure = wine::averages(&secure_sums);
    let plain = wine::plaintext_averages(&rows);
    println!();
    print!("{}", wine::render(&secure, &plain));
    println!();
    let worst = wine::max_difference(&secure, &plain)?;
    let bound = spec.step() / 2.0;
    println!(
        "secure round: {} wineries, {} helpers, {:.1} ms (share + aggregate + reconstruct)",
        local.len(),
        args.helpers,
        elapsed.as_secs_f64() * 1e3
    );
    println!(
        "upload per winery: {} secure vs {} plaintext (f64 vector); each helper saw only pseudorandom shares",
        human_bytes(outcome.upload_bytes_per_client),
        human_bytes((wine::vector_len() * 8) as u64)
    );
    println!(
        "secure sum == plaintext sum of the quantized values: {}",
        if exact { "yes (bit for bit)" } else { "NO" }
    );
    println!(
        "largest |secure − plaintext| average: {worst:.3e} (bound: half a step = {bound:.3e}) — {}",
        if worst <= bound {
            "within bound"
        } else {
            "OUT OF BOUND"
        }
    );
    if !exact {
        bail!("the secure sum differs from the plaintext sum of the quantized inputs");
    }
    if worst > bound {
        bail!("secure averages differ from plaintext by {worst:e}, more than {bound:e}");
    }
    Ok(())
}

/// What a secure sum produced.
struct Outcome {
    /// The reconstructed sum, as exact integers.
    sum: Vec<i64>,
    /// Bytes one client uploads (vectors plus seeds), averaged over clients.
    upload_bytes_per_client: u64,
}

/// A context hash for the PRG domains; in a networked round this is the
/// signed descriptor's hash. Here it is fresh per run.
fn fresh_context(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut context = [0u8; 32];
    rand::Rng::fill_bytes(rng, &mut context);
    context
}

/// A CSPRNG seeded from the operating system.
fn os_seeded_rng() -> Result<ChaCha20Rng> {
    ChaCha20Rng::try_from_rng(&mut SysRng).context("the OS random number generator failed")
}

fn secure_sum_additive<R: Ring>(
    encoding: &RoundEncoding,
    local: &[sealroom_core::quant::Quantized],
    helpers: usize,
) -> Result<Outcome> {
    let mut rng = os_seeded_rng()?;
    let context = fresh_context(&mut rng);
    let len = wine::vector_len();
    let mut aggregates = vec![vec![R::ZERO; len]; helpers];
    let mut upload = 0u64;
    for (client, q) in local.iter().enumerate() {
        let input = encoding.embed::<R>(q)?;
        let shares = additive::share(&input, helpers, client as u32, context, &mut rng)?;
        for (helper, (share, acc)) in shares.iter().zip(aggregates.iter_mut()).enumerate() {
            upload += match share {
                additive::AdditiveShare::Seed(_) => 32,
                additive::AdditiveShare::Correction(v) => (v.len() * R::BYTES) as u64,
            };
            share.accumulate_into(acc, context, client as u32, helper)?;
        }
    }
    let refs: Vec<&[R]> = aggregates.iter().map(Vec::as_slice).collect();
    let sum = additive::reconstruct(&refs, helpers)?;
    Ok(Outcome {
        sum: encoding.decode_sum_integers(&sum)?,
        upload_bytes_per_client: upload / local.len() as u64,
    })
}

fn secure_sum_shamir(
    encoding: &RoundEncoding,
    local: &[sealroom_core::quant::Quantized],
    threshold: usize,
    helpers: usize,
) -> Result<Outcome> {
    let params = ShamirParams::new(threshold, helpers)?;
    let mut rng = os_seeded_rng()?;
    let context = fresh_context(&mut rng);
    let len = wine::vector_len();
    let mut aggregates = vec![vec![Fp::ZERO; len]; helpers];
    let mut upload = 0u64;
    for (client, q) in local.iter().enumerate() {
        let input = encoding.embed::<Fp>(q)?;
        let shares = shamir::share(params, &input, client as u32, context, &mut rng)?;
        for (helper, (share, acc)) in shares.iter().zip(aggregates.iter_mut()).enumerate() {
            upload += match share {
                shamir::ShamirShare::Seed(_) => 32,
                shamir::ShamirShare::Vector(v) => (v.len() * 8) as u64,
            };
            share.accumulate_into(acc, context, client as u32, helper)?;
        }
    }
    // Every helper answers here, so reconstruction also checks consistency.
    let all: Vec<(usize, &[Fp])> = aggregates
        .iter()
        .enumerate()
        .map(|(j, a)| (j, a.as_slice()))
        .collect();
    let sum = shamir::reconstruct_checked(params, &all)?;
    Ok(Outcome {
        sum: encoding.decode_sum_integers(&sum)?,
        upload_bytes_per_client: upload / local.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_succeed() {
        for (mode, helpers, threshold) in [
            (Mode::Additive, 3, 2),
            (Mode::Threshold, 3, 2),
            (Mode::Threshold, 5, 3),
        ] {
            run(&DemoArgs {
                mode,
                helpers,
                threshold,
                wineries: 3,
            })
            .expect("demo passes");
        }
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(
            run(&DemoArgs {
                mode: Mode::Additive,
                helpers: 1,
                threshold: 2,
                wineries: 3
            })
            .is_err()
        );
        assert!(
            run(&DemoArgs {
                mode: Mode::Threshold,
                helpers: 3,
                threshold: 4,
                wineries: 3
            })
            .is_err()
        );
        assert!(
            run(&DemoArgs {
                mode: Mode::Additive,
                helpers: 3,
                threshold: 2,
                wineries: 0
            })
            .is_err()
        );
    }
}
