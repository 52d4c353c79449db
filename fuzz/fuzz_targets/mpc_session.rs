#![no_main]
//! A started MPC session fed arbitrary bytes from a peer never panics and
//! never completes on them (it buffers, continues or aborts with evidence).

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sealroom_core::Seed;
use sealroom_mpc::machine::{HelperIndex, Input, Machine, Millis, Step};
use sealroom_mpc::material::BatchId;
use sealroom_mpc::preproc::{BatchParams, Preprocessing};
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::prss::{EpochKeys, PrssKeys};
use sealroom_mpc::session::{Outcome, Session, SessionConfig};
use sealroom_mpc::sim;

fuzz_target!(|data: &[u8]| {
    let k = [
        Seed::from_bytes([1; 32]),
        Seed::from_bytes([2; 32]),
        Seed::from_bytes([3; 32]),
    ];
    let keys = HelperIndex::ALL.map(|h| {
        let i = h.index();
        EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 1)
    });
    let mut p = ProgramBuilder::new("fuzz", 1);
    let a = p.random_values(2);
    let b = p.mul(a, a);
    p.output(b);
    let prog = Arc::new(p.build().expect("builds"));
    let params = BatchParams {
        id: BatchId([1; 16]),
        counts: prog.needs(),
        round_timeout_ms: 10,
    };
    let machines =
        [0, 1, 2].map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([i as u8; 32])));
    let [Some(Ok(b0)), _, _] = sim::run(machines, None, 10_000).outcomes else {
        return;
    };
    let config = SessionConfig {
        session_id: [5; 32],
        round_timeout_ms: 10,
    };
    let Ok(s) = Session::new(
        prog,
        &keys[0],
        vec![b0],
        Default::default(),
        config,
        Seed::from_bytes([9; 32]),
    ) else {
        return;
    };
    let Ok(Step::Continue(mut s, _)) = s.handle(Millis(0), Input::Start) else {
        return;
    };
    // Split the input into up to four messages from alternating peers.
    for (i, chunk) in data.chunks(data.len() / 4 + 1).enumerate() {
        let from = HelperIndex::ALL[1 + i % 2];
        match s.handle(
            Millis(1),
            Input::Inbound {
                from,
                msg: chunk.to_vec(),
            },
        ) {
            Ok(Step::Continue(next, _)) => s = next,
            Ok(Step::Finish(outcome, _)) => {
                assert!(
                    matches!(outcome, Outcome::Aborted(_)),
                    "completed on forged input"
                );
                return;
            }
            Err((next, _)) => s = next,
        }
    }
});
