//! Shared test support: keys, preprocessing and three-session runs.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_core::Seed;
use sealroom_mpc::F127;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::{Batch, BatchId, Counts};
use sealroom_mpc::preproc::{BatchParams, Preprocessing};
use sealroom_mpc::program::Program;
use sealroom_mpc::prss::{EpochKeys, PrssKeys};
use sealroom_mpc::session::{Outcome, Session, SessionConfig, SessionInputs};
use sealroom_mpc::sim::{self, Hook, Report};

pub fn keys(epoch: u64) -> [EpochKeys; 3] {
    let k = [
        Seed::from_bytes([1; 32]),
        Seed::from_bytes([2; 32]),
        Seed::from_bytes([3; 32]),
    ];
    HelperIndex::ALL.map(|h| {
        let i = h.index();
        EpochKeys::derive(
            PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()),
            epoch,
        )
    })
}

pub fn preprocess(keys: &[EpochKeys; 3], id: u8, counts: Counts) -> [Batch; 3] {
    let params = BatchParams {
        id: BatchId([id; 16]),
        counts,
        round_timeout_ms: 1000,
    };
    let machines = [0, 1, 2]
        .map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([60 + i as u8 + id; 32])));
    let report = sim::run(machines, None, 100_000);
    let [a, b, c] = report.outcomes.map(|o| {
        o.expect("preprocessing finished")
            .expect("preprocessing succeeded")
    });
    [a, b, c]
}

pub fn config(id: u8) -> SessionConfig {
    SessionConfig {
        session_id: [id; 32],
        round_timeout_ms: 1000,
    }
}

/// Runs `program` with per-helper inputs and an optional hook.
pub fn run_with(
    program: &Program,
    mut inputs: [SessionInputs; 3],
    hook: Option<Hook<'_>>,
) -> Report<Outcome> {
    let keys = keys(1);
    let batches = preprocess(&keys, 7, program.needs());
    let program = Arc::new(program.clone());
    let mut it = batches.into_iter();
    let sessions = [0, 1, 2].map(|i| {
        let b = it.next().expect("three batches");
        Session::new(
            program.clone(),
            &keys[i],
            vec![b],
            std::mem::take(&mut inputs[i]),
            config(5),
            Seed::from_bytes([90 + i as u8; 32]),
        )
        .expect("session")
    });
    sim::run(sessions, hook, 1_000_000)
}

/// Inputs where helper `owner` holds slot `slot`.
pub fn helper_inputs(slots: &[(usize, u32, Vec<i64>)]) -> [SessionInputs; 3] {
    let mut out: [SessionInputs; 3] = Default::default();
    for (owner, slot, v) in slots {
        out[*owner]
            .helper
            .insert(*slot, v.iter().map(|&x| F127::from_i64(x)).collect());
    }
    out
}

pub fn outputs(report: Report<Outcome>) -> Vec<Vec<i128>> {
    let mut all: Vec<Vec<Vec<i128>>> = Vec::new();
    for o in report.outcomes {
        match o {
            Some(Outcome::Completed { outputs }) => {
                all.push(outputs.iter().map(|o| o.signed()).collect())
            }
            other => panic!("expected completion, got {other:?}"),
        }
    }
    assert_eq!(all[0], all[1]);
    assert_eq!(all[1], all[2]);
    all.swap_remove(0)
}

pub fn no_slots() -> BTreeMap<u32, Vec<F127>> {
    BTreeMap::new()
}

/// Each helper's inputs for client uploads of `data` over Z_2^32 (client
/// c's vector `data[c]`), shared with a PRG seeded by `seed` under `ctx`.
pub fn client_uploads(data: &[Vec<i64>], ctx: [u8; 32], seed: u8) -> [SessionInputs; 3] {
    use rand::SeedableRng;
    use sealroom_mpc::client::{UploadRing, share_upload};
    let mut rng = rand::rngs::ChaCha20Rng::from_seed([seed; 32]);
    let mut ins: [SessionInputs; 3] = Default::default();
    for (c, x) in data.iter().enumerate() {
        let ups = share_upload(x, UploadRing::Z32, c as u32, ctx, &mut rng).expect("in range");
        for (h, u) in ups.into_iter().enumerate() {
            ins[h].clients.push(u);
            ins[h].client_context = ctx;
        }
    }
    ins
}
