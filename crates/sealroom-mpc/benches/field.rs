//! Field kernels: `cargo bench -p sealroom-mpc --bench field`.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sealroom_core::Seed;
use sealroom_mpc::field::{F127, kernels};
use sealroom_mpc::rng::{FieldPrg, derive_context};
use std::hint::black_box;

fn field(c: &mut Criterion) {
    let n = 1 << 14;
    let mut prg = FieldPrg::new(&Seed::from_bytes([7; 32]), derive_context("bench", &[]));
    let a = prg.elements(n);
    let b = prg.elements(n);
    let mut g = c.benchmark_group("f127");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("mul_assign", |bench| {
        let mut acc = a.clone();
        bench.iter(|| kernels::mul_assign(black_box(&mut acc), black_box(&b)))
    });
    g.bench_function("add_assign", |bench| {
        let mut acc = a.clone();
        bench.iter(|| kernels::add_assign(black_box(&mut acc), black_box(&b)))
    });
    g.bench_function("mul_add_assign", |bench| {
        let mut acc = a.clone();
        bench.iter(|| kernels::mul_add_assign(black_box(&mut acc), F127::INV2, black_box(&b)))
    });
    g.bench_function("dot", |bench| {
        bench.iter(|| kernels::dot(black_box(&a), black_box(&b)))
    });
    g.bench_function("prg_fill", |bench| {
        let mut out = vec![F127::ZERO; n];
        bench.iter(|| prg.fill(black_box(&mut out)))
    });
    g.bench_function("encode_decode", |bench| {
        let mut bytes = Vec::with_capacity(n * 16);
        let mut out = vec![F127::ZERO; n];
        bench.iter(|| {
            bytes.clear();
            kernels::encode_into(black_box(&a), &mut bytes);
            kernels::decode_into(&bytes, &mut out)
        })
    });
    g.finish();
    let mut g = c.benchmark_group("f127_scalar");
    g.bench_function("inverse", |bench| bench.iter(|| black_box(a[1]).inverse()));
    g.bench_function("sqrt", |bench| {
        bench.iter(|| black_box(a[2]).square().sqrt())
    });
    g.finish();
}

criterion_group!(benches, field);
criterion_main!(benches);
