//! The coordinator's task planners on arbitrary parameters (the JSON a
//! `StartRound` request carries into a descriptor): a training's moments and
//! FedAvg rounds, both query phases, a table training's rounds (with their
//! defences and DP-FedAvg noise) and a framework's FedAvg rounds. Nothing
//! may panic; a planned round must have a positive length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_core::{QuantSpec, RingKind};
use sealroom_fuzz::analytics_catalog;
use sealroom_node::tasks::TaskRequest;

fuzz_target!(|input: (u8, &[u8])| {
    let (which, params) = input;
    const TASKS: [&str; 7] = [
        "feature-moments",
        "fedavg",
        "query",
        "table-moments",
        "table-fedavg",
        "table-validate",
        "vector-fedavg",
    ];
    let name = TASKS[usize::from(which) % TASKS.len()];
    let request = TaskRequest {
        name: name.into(),
        vector_len: 0,
        params: params.to_vec(),
        min_clients: 0,
    };
    let spec = QuantSpec::new(16, 8.0, 24).expect("a valid spec");
    if let Ok(task) = analytics_catalog().task(&request, 5, RingKind::Z2_32, spec) {
        assert!(task.vector_len > 0);
    }
});
