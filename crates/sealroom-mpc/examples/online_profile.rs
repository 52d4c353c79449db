//! Runs only the online phase of a wide multiplication program many times
//! after generating its material, for `perf record -D <ms>`:
//! `cargo run --release -p sealroom-mpc --example online_profile`
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use sealroom_core::Seed;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::BatchId;
use sealroom_mpc::preproc::{BatchParams, Preprocessing};
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::prss::{EpochKeys, PrssKeys};
use sealroom_mpc::session::{Session, SessionConfig, SessionInputs};
use sealroom_mpc::sim;

fn main() {
    let width = 1 << 16;
    let runs = 12;
    let k = [
        Seed::from_bytes([1; 32]),
        Seed::from_bytes([2; 32]),
        Seed::from_bytes([3; 32]),
    ];
    let keys = HelperIndex::ALL.map(|h| {
        let i = h.index();
        EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 1)
    });
    let mut p = ProgramBuilder::new("profile", 1);
    let a = p.random_values(width);
    let b = p.random_values(width);
    let x = p.mul(a, b);
    let x = p.mul(x, b);
    let s = p.sum(x);
    p.output(s);
    let prog = Arc::new(p.build().expect("builds"));
    let start = Instant::now();
    let mut materials = Vec::new();
    for r in 0..runs {
        let params = BatchParams {
            id: BatchId([r as u8; 16]),
            counts: prog.needs(),
            round_timeout_ms: 60_000,
        };
        let m = [0, 1, 2]
            .map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([i as u8; 32])));
        let rep = sim::run(m, None, usize::MAX);
        materials.push(rep.outcomes.map(|o| o.expect("done").expect("ok")));
    }
    eprintln!(
        "preprocessing done after {} ms",
        start.elapsed().as_millis()
    );
    let online = Instant::now();
    for mat in materials {
        let mut it = mat.into_iter();
        let sessions = [0, 1, 2].map(|i| {
            let config = SessionConfig {
                session_id: [9; 32],
                round_timeout_ms: 60_000,
            };
            Session::new(
                prog.clone(),
                &keys[i],
                vec![it.next().expect("batch")],
                SessionInputs::default(),
                config,
                Seed::from_bytes([7; 32]),
            )
            .expect("session")
        });
        let _ = sim::run(sessions, None, usize::MAX);
    }
    let secs = online.elapsed().as_secs_f64();
    eprintln!(
        "online: {:.3e} verified mult/s (3 helpers, 1 thread)",
        (2 * width * runs) as f64 / secs
    );
}
