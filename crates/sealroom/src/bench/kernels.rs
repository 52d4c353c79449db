//! Phases a round runs inside a node that the bench cannot time from
//! outside, timed here on the same shapes with the same sealroom-core
//! kernels the protocol state machines call — **kernel, measured
//! in-process**, single-threaded, so wall time here is also CPU time:
//!
//! * client share: quantize, embed, share (PRG expansion of every seed),
//!   encode the vector share — what `Client::participate` does besides the
//!   descriptor check, digests and protobuf framing;
//! * helper aggregation: helper 0's `aggregate_in` — expand-and-add each
//!   seed share, decode-and-add each vector share, encode the sum;
//! * coordinator reconstruction: add (additive) or interpolate with the
//!   consistency check (threshold, every helper answering) the helpers'
//!   aggregates, then dequantize;
//! * references: PRG expansion alone, and the plain vector sum of
//!   in-memory vectors on one core (the memory-bandwidth reference of
//!   DESIGN.md §9), measured in the same run.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Result, anyhow};
use rand::SeedableRng as _;
use rand::rngs::ChaCha20Rng;
use sealroom_core::additive::{self, AdditiveShare};
use sealroom_core::prg::{self, PrgDomain};
use sealroom_core::shamir::{self, ShamirParams, ShamirShare};
use sealroom_core::{Fp, Ring, RingKind, RoundEncoding, Seed, vector};
use serde::Serialize;

/// Kernel timings for one configuration, seconds (median over repetitions).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KernelTimes {
    /// One client's share generation.
    pub client_share_s: f64,
    /// One helper's aggregation over every client.
    pub helper_aggregate_s: f64,
    /// Bytes of shares that aggregation sums (clients × dims × element size).
    pub helper_aggregate_bytes: u64,
    /// How many of helper 0's shares are seeds (expanded), and vectors.
    pub helper_seed_shares: usize,
    /// See `helper_seed_shares`.
    pub helper_vector_shares: usize,
    /// Reconstruction and dequantization at the coordinator.
    pub reconstruct_s: f64,
}

/// Run-wide reference figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct References {
    /// Plain vector sum (u64 `vector::add_assign`) of in-memory vectors far
    /// larger than the caches, one core: bytes of addends per second.
    pub vector_sum_bytes_per_s: f64,
    /// Total bytes summed for that figure.
    pub vector_sum_total_bytes: u64,
    /// PRG expand-add (`prg::expand_add_into`) in the rounds' ring, 2^20
    /// elements: output bytes per second, one core.
    pub prg_bytes_per_s: f64,
    /// The ring of that figure.
    pub prg_ring: &'static str,
}

/// The sharing of a configuration.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Clients.
    pub clients: usize,
    /// Elements per vector.
    pub dims: usize,
    /// Helpers.
    pub helpers: usize,
    /// `Some(t)`: Shamir t-of-h over F_p; `None`: additive in `ring`.
    pub threshold: Option<usize>,
    /// The rounds' encoding.
    pub encoding: RoundEncoding,
}

/// Median of `reps` timed runs of `f` (after one untimed warm-up).
fn time_median<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Repetitions that keep one kernel near `budget` in total.
fn reps_for(dims: usize, clients: usize) -> usize {
    let work = dims.saturating_mul(clients.max(1));
    match work {
        0..=1_000_000 => 9,
        1_000_001..=20_000_000 => 5,
        _ => 3,
    }
}

/// Times the kernels of `shape` (inputs drawn like the synthetic task's).
pub fn measure(shape: &Shape, clip: f64) -> Result<KernelTimes> {
    let input = sealroom_node::tasks::synthetic_vector("client-0", 1, shape.dims, clip);
    // Vectors travel at the round's share width, as the nodes send them.
    let packing = shape.encoding.packing();
    match (shape.threshold, shape.encoding.ring()) {
        (Some(t), _) => measure_threshold(shape, t, &input),
        (None, RingKind::Z2_32) => measure_additive::<u32>(
            shape,
            &input,
            |v| vector::encode_packed(v, packing),
            |acc, b| vector::add_packed_assign(acc, b, packing),
        ),
        (None, RingKind::Z2_64) => measure_additive::<u64>(
            shape,
            &input,
            |v| vector::encode_packed(v, packing),
            |acc, b| vector::add_packed_assign(acc, b, packing),
        ),
        (None, RingKind::Fp61) => measure_additive::<Fp>(
            shape,
            &input,
            vector::encode_le,
            vector::add_le_bytes_assign,
        ),
    }
}

fn seed_of(i: usize) -> Seed {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8] = 0x5e;
    Seed::from_bytes(b)
}

/// A canonical share vector's bytes (values below every ring's modulus),
/// written by `encode`.
fn vector_bytes<R: Ring>(dims: usize, salt: u64, encode: impl Fn(&[R]) -> Vec<u8>) -> Vec<u8> {
    let values: Vec<R> = (0..dims as u64)
        .map(|i| R::from_i64(((i ^ salt).wrapping_mul(0x9e37_79b9) & 0x7fff_ffff) as i64))
        .collect();
    encode(&values)
}

/// The additive kernels, with vectors written by `encode` and added by
/// `add` (the round's share width).
fn measure_additive<R: Ring>(
    shape: &Shape,
    input: &[f64],
    encode: impl Fn(&[R]) -> Vec<u8>,
    add: impl Fn(&mut [R], &[u8]) -> Result<(), vector::DecodeError>,
) -> Result<KernelTimes> {
    let context = [7u8; 32];
    let encoding = shape.encoding;
    let client_share_s = time_median(reps_for(shape.dims, 1), || -> Result<usize> {
        let quantized = encoding.spec().quantize(input)?;
        let embedded: Vec<R> = encoding.embed(&quantized)?;
        let mut rng = ChaCha20Rng::from_seed([1u8; 32]);
        let shares = additive::share(&embedded, shape.helpers, 0, context, &mut rng)?;
        let mut bytes = 0;
        for s in &shares {
            if let AdditiveShare::Correction(v) = s {
                bytes += encode(v.expose()).len();
            }
        }
        Ok(bytes)
    });
    // Helper 0 holds a seed from every client whose correction goes elsewhere.
    let helper = 0usize;
    let mut seeds = Vec::new();
    let mut vectors = Vec::new();
    for c in 0..shape.clients as u32 {
        if additive::correction_holder(c, shape.helpers) == helper {
            vectors.push((c, vector_bytes::<R>(shape.dims, u64::from(c), &encode)));
        } else {
            seeds.push((c, seed_of(c as usize)));
        }
    }
    let reps = reps_for(shape.dims, shape.clients);
    let mut failed = None;
    let helper_aggregate_s = time_median(reps, || {
        let mut acc = vec![R::ZERO; shape.dims];
        for (c, seed) in &seeds {
            prg::expand_add_into(seed, &additive::domain(context, *c, helper), &mut acc);
        }
        for (_, bytes) in &vectors {
            if let Err(e) = add(&mut acc, bytes) {
                failed = Some(e.to_string());
            }
        }
        encode(&acc)
    });
    if let Some(e) = failed {
        return Err(anyhow!("helper kernel: {e}"));
    }
    let aggregates: Vec<Vec<R>> = (0..shape.helpers)
        .map(|h| {
            (0..shape.dims as u64)
                .map(|i| R::from_i64((i * 31 + h as u64) as i64 & 0xffff))
                .collect()
        })
        .collect();
    let reconstruct_s = time_median(reps_for(shape.dims, shape.helpers), || -> Result<usize> {
        let refs: Vec<&[R]> = aggregates.iter().map(Vec::as_slice).collect();
        let sum = additive::reconstruct(&refs, shape.helpers)?;
        Ok(encoding.decode_sum(&sum)?.len())
    });
    Ok(KernelTimes {
        client_share_s,
        helper_aggregate_s,
        helper_aggregate_bytes: (shape.clients * shape.dims * R::BYTES) as u64,
        helper_seed_shares: seeds.len(),
        helper_vector_shares: vectors.len(),
        reconstruct_s,
    })
}

fn measure_threshold(shape: &Shape, t: usize, input: &[f64]) -> Result<KernelTimes> {
    let context = [7u8; 32];
    let encoding = shape.encoding;
    let params = ShamirParams::new(t, shape.helpers)?;
    let client_share_s = time_median(reps_for(shape.dims, 1), || -> Result<usize> {
        let quantized = encoding.spec().quantize(input)?;
        let embedded: Vec<Fp> = encoding.embed(&quantized)?;
        let mut rng = ChaCha20Rng::from_seed([1u8; 32]);
        let shares = shamir::share(params, &embedded, 0, context, &mut rng)?;
        let mut bytes = 0;
        for s in &shares {
            if let ShamirShare::Vector(v) = s {
                bytes += vector::encode_le(v.expose()).len();
            }
        }
        Ok(bytes)
    });
    let helper = 0usize;
    let mut seeds = Vec::new();
    let mut vectors = Vec::new();
    for c in 0..shape.clients as u32 {
        if params.seeded_helpers(c).any(|h| h == helper) {
            seeds.push((c, seed_of(c as usize)));
        } else {
            vectors.push((
                c,
                vector_bytes::<Fp>(shape.dims, u64::from(c), vector::encode_le),
            ));
        }
    }
    let reps = reps_for(shape.dims, shape.clients);
    let mut failed = None;
    let helper_aggregate_s = time_median(reps, || {
        let mut acc = vec![Fp::ZERO; shape.dims];
        for (c, seed) in &seeds {
            prg::expand_add_into(seed, &shamir::domain(context, *c, helper), &mut acc);
        }
        for (_, bytes) in &vectors {
            if let Err(e) = vector::add_le_bytes_assign(&mut acc, bytes) {
                failed = Some(e.to_string());
            }
        }
        vector::encode_le(&acc)
    });
    if let Some(e) = failed {
        return Err(anyhow!("helper kernel: {e}"));
    }
    // Consistent aggregates: shares of one random polynomial per element.
    let secret: Vec<Fp> = (0..shape.dims as u64)
        .map(|i| Fp::from_i64((i * 31) as i64 & 0xffff))
        .collect();
    let mut rng = ChaCha20Rng::from_seed([2u8; 32]);
    let shares = shamir::share(params, &secret, 0, context, &mut rng)?;
    let aggregates: Vec<Vec<Fp>> = shares
        .iter()
        .enumerate()
        .map(|(h, s)| {
            let mut acc = vec![Fp::ZERO; shape.dims];
            s.accumulate_into(&mut acc, context, 0, h).map(|()| acc)
        })
        .collect::<Result<_, _>>()?;
    let reconstruct_s = time_median(reps_for(shape.dims, shape.helpers), || -> Result<usize> {
        let refs: Vec<(usize, &[Fp])> = aggregates
            .iter()
            .enumerate()
            .map(|(h, a)| (h, a.as_slice()))
            .collect();
        let sum = shamir::reconstruct_checked(params, &refs)?;
        Ok(encoding.decode_sum(&sum)?.len())
    });
    Ok(KernelTimes {
        client_share_s,
        helper_aggregate_s,
        helper_aggregate_bytes: (shape.clients * shape.dims * Fp::BYTES) as u64,
        helper_seed_shares: seeds.len(),
        helper_vector_shares: vectors.len(),
        reconstruct_s,
    })
}

/// Measures the run-wide references: the plain vector sum over `total_bytes`
/// of in-memory u64 vectors (one core), and PRG expansion in `ring`.
pub fn references(ring: RingKind, total_bytes: usize) -> References {
    const LEN: usize = 1 << 20;
    let count = (total_bytes / (LEN * 8)).max(2);
    let vectors: Vec<Vec<u64>> = (0..count)
        .map(|k| (0..LEN as u64).map(|i| i ^ k as u64).collect())
        .collect();
    let sum_s = time_median(5, || {
        let mut acc = vec![0u64; LEN];
        for v in &vectors {
            let _ = vector::add_assign(&mut acc, v);
        }
        acc
    });
    let summed = (count * LEN * 8) as u64;
    drop(vectors);
    let domain = PrgDomain {
        context: [3u8; 32],
        sender: 0,
        receiver: 1,
        purpose: prg::Purpose::AdditiveMask,
    };
    let seed = seed_of(99);
    let (prg_s, bytes) = match ring {
        RingKind::Z2_32 => (prg_time::<u32>(&seed, &domain, LEN), LEN * 4),
        RingKind::Z2_64 => (prg_time::<u64>(&seed, &domain, LEN), LEN * 8),
        _ => (prg_time::<Fp>(&seed, &domain, LEN), LEN * 8),
    };
    References {
        vector_sum_bytes_per_s: summed as f64 / sum_s,
        vector_sum_total_bytes: summed,
        prg_bytes_per_s: bytes as f64 / prg_s,
        prg_ring: ring.name(),
    }
}

fn prg_time<R: Ring>(seed: &Seed, domain: &PrgDomain, len: usize) -> f64 {
    let mut acc = vec![R::ZERO; len];
    time_median(9, || {
        prg::expand_add_into(seed, domain, &mut acc);
        acc[0]
    })
}

/// Formats a duration in milliseconds with sensible precision.
pub fn ms(seconds: f64) -> String {
    let ms = seconds * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    }
}
