//! Kernel benchmarks for sealroom-core (issue #3, DESIGN.md §9).
//!
//! `cargo bench -p sealroom-core --bench core`
//!
//! After criterion's own report, prints a summary of the figures that have
//! targets — PRG expansion in GB/s (target ≥ 4 GB/s per core) and vector add
//! as a fraction of the `copy_from_slice` baseline measured in the same run
//! (target ≥ 50%) — read back from criterion's estimates.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_core::additive;
use sealroom_core::prg::{self, PrgDomain, Purpose};
use sealroom_core::shamir::{self, ShamirParams};
use sealroom_core::{Fp, Ring, Seed, vector};

const LEN: usize = 1 << 20;
const CTX: [u8; 32] = [1; 32];

fn domain() -> PrgDomain {
    PrgDomain {
        context: CTX,
        sender: 0,
        receiver: 1,
        purpose: Purpose::AdditiveMask,
    }
}

fn bench_prg(c: &mut Criterion) {
    let mut group = c.benchmark_group("prg_expand");
    let seed = Seed::from_bytes([7; 32]);
    fn run<R: Ring>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        seed: &Seed,
        name: &str,
    ) {
        let mut out = vec![R::ZERO; LEN];
        group.throughput(Throughput::Bytes((LEN * R::BYTES) as u64));
        group.bench_function(name, |b| {
            b.iter(|| prg::PrgStream::new(seed, &domain()).fill(black_box(&mut out)))
        });
    }
    run::<u32>(&mut group, &seed, "z2_32");
    run::<u64>(&mut group, &seed, "z2_64");
    run::<Fp>(&mut group, &seed, "fp61");
    group.finish();
}

fn bench_vector_add(c: &mut Criterion) {
    let mut group = c.benchmark_group("vector_add_1m");
    fn run<R: Ring>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
    ) {
        let seed = Seed::from_bytes([9; 32]);
        let x = prg::expand::<R>(&seed, &domain(), LEN);
        let mut acc = vec![R::ZERO; LEN];
        group.throughput(Throughput::Bytes((LEN * R::BYTES) as u64));
        group.bench_function(format!("copy_baseline_{name}"), |b| {
            b.iter(|| acc.copy_from_slice(black_box(x.expose())))
        });
        group.bench_function(format!("add_{name}"), |b| {
            b.iter(|| vector::add_assign(black_box(&mut acc), black_box(x.expose())))
        });
    }
    run::<u32>(&mut group, "z2_32");
    run::<u64>(&mut group, "z2_64");
    run::<Fp>(&mut group, "fp61");
    group.finish();
}

fn bench_additive(c: &mut Criterion) {
    let mut group = c.benchmark_group("additive_share_reconstruct_1m");
    group.throughput(Throughput::Bytes((LEN * 8) as u64));
    let input = prg::expand::<u64>(&Seed::from_bytes([3; 32]), &domain(), LEN);
    for helpers in [3usize, 5] {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::from_parameter(helpers), &helpers, |b, &h| {
            b.iter(|| {
                let shares = additive::share(input.expose(), h, 0, CTX, &mut rng).expect("valid");
                let aggregates: Vec<Vec<u64>> = shares
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        let mut acc = vec![0u64; LEN];
                        s.accumulate_into(&mut acc, CTX, 0, j).expect("length");
                        acc
                    })
                    .collect();
                let refs: Vec<&[u64]> = aggregates.iter().map(Vec::as_slice).collect();
                black_box(additive::reconstruct(&refs, h).expect("all helpers"))
            })
        });
    }
    group.finish();
}

fn bench_shamir(c: &mut Criterion) {
    let mut group = c.benchmark_group("shamir_share_reconstruct_1m");
    group.throughput(Throughput::Bytes((LEN * 8) as u64));
    let input = prg::expand::<Fp>(&Seed::from_bytes([4; 32]), &domain(), LEN);
    for (t, h) in [(2usize, 3usize), (3, 5)] {
        let params = ShamirParams::new(t, h).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        group.bench_function(format!("t{t}_h{h}"), |b| {
            b.iter(|| {
                let shares =
                    shamir::share(params, input.expose(), 0, CTX, &mut rng).expect("valid");
                let aggregates: Vec<Vec<Fp>> = shares
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        let mut acc = vec![Fp::ZERO; LEN];
                        s.accumulate_into(&mut acc, CTX, 0, j).expect("length");
                        acc
                    })
                    .collect();
                let all: Vec<(usize, &[Fp])> = aggregates
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (j, a.as_slice()))
                    .collect();
                black_box(shamir::reconstruct_checked(params, &all).expect("consistent"))
            })
        });
    }
    group.finish();
}

/// Mean time per iteration (ns) of a finished benchmark, from criterion's files.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn summary() {
    println!("\n== sealroom-core kernel summary (targets: DESIGN.md §9) ==");
    for ring in ["z2_32", "z2_64", "fp61"] {
        let bytes = LEN as f64 * if ring == "z2_32" { 4.0 } else { 8.0 };
        if let Some(ns) = mean_ns("prg_expand", ring) {
            let gbs = bytes / ns;
            let verdict = if gbs >= 4.0 { "MET" } else { "MISSED" };
            println!(
                "PRG expansion {ring:6}: {gbs:6.2} GB/s   (target >= 4 GB/s per core: {verdict})"
            );
        }
    }
    for ring in ["z2_32", "z2_64", "fp61"] {
        let bytes = LEN as f64 * if ring == "z2_32" { 4.0 } else { 8.0 };
        let copy = mean_ns("vector_add_1m", &format!("copy_baseline_{ring}"));
        let add = mean_ns("vector_add_1m", &format!("add_{ring}"));
        if let (Some(copy), Some(add)) = (copy, add) {
            let ratio = copy / add;
            let verdict = if ratio >= 0.5 { "MET" } else { "MISSED" };
            println!(
                "vector add {ring:6}: {:6.2} GB/s, copy baseline {:6.2} GB/s, ratio {:5.1}%   (target >= 50%: {verdict})",
                bytes / add,
                bytes / copy,
                ratio * 100.0
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_prg(&mut criterion);
    bench_vector_add(&mut criterion);
    bench_additive(&mut criterion);
    bench_shamir(&mut criterion);
    criterion.final_summary();
    summary();
}
