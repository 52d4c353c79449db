//! The public post-processing of secure sums the coordinator reconstructs
//! (a malicious helper or coordinator chooses them): a query's counts and
//! stats sums, a DP round's noised outputs, and a FedAvg sum. Each is decoded
//! or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_analytics::fl::{FedAvgSpec, Model, ModelKind, apply_sum};
use sealroom_analytics::query::dp::{DpSpec, finish_noised, noise_plan};
use sealroom_analytics::query::{Policy, counts_len, finish, released_cells};
use sealroom_fuzz::csv_plan;

fuzz_target!(|input: (Vec<f64>, Vec<f64>, Vec<usize>)| {
    let (counts, stats, released) = input;
    let plan = csv_plan();
    let policy = Policy::new(5, 2).expect("a valid policy");
    if counts.len() == counts_len(plan) {
        let _ = released_cells(plan, &counts, &policy);
    }
    let _ = finish(plan, &counts, &released, &stats, &policy);
    // A DP round's outputs (the coordinator hands them to the admin).
    let dp = DpSpec {
        epsilon: 1.0,
        delta: 1e-6,
    };
    if let Ok(noise) = noise_plan(plan, &dp) {
        let outputs: Vec<i128> = stats
            .iter()
            .map(|v| *v as i128)
            .chain(released.iter().map(|&r| r as i128 - (1 << 60)))
            .take(noise.len() + usize::from(counts.len() % 2 == 1))
            .collect();
        let _ = finish_noised(plan, &noise, &outputs, &policy, released.len());
    }
    let spec = FedAvgSpec {
        bits: 12,
        delta_clip: 1.0,
        max_weight: 4096,
    };
    let global = Model::new(ModelKind::Logistic, 2, 3, 0).expect("a valid model");
    let _ = apply_sum(&spec, &global, &stats);
});
