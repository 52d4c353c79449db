//! Preprocessing among three helpers: honest runs produce correct,
//! consistent material; deviations abort.
#![allow(missing_docs)]

use sealroom_core::Seed;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::{BatchId, Counts};
use sealroom_mpc::preproc::{BatchParams, Preprocessing};
use sealroom_mpc::prss::{EpochKeys, PrssKeys};
use sealroom_mpc::sim;

fn keys() -> [EpochKeys; 3] {
    let k = [
        Seed::from_bytes([1; 32]),
        Seed::from_bytes([2; 32]),
        Seed::from_bytes([3; 32]),
    ];
    HelperIndex::ALL.map(|h| {
        let i = h.index();
        EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 7)
    })
}

#[test]
fn honest_batch_completes_with_equal_digests() {
    let keys = keys();
    let params = BatchParams {
        id: BatchId([9; 16]),
        counts: Counts {
            triples: 100,
            bits: 50,
            randoms: 10,
            masks: [3, 4, 5],
        },
        round_timeout_ms: 1000,
    };
    let machines = [0, 1, 2]
        .map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([40 + i as u8; 32])));
    let report = sim::run(machines, None, 10_000);
    let batches: Vec<_> = report
        .outcomes
        .into_iter()
        .map(|o| o.expect("finished").expect("no abort"))
        .collect();
    assert_eq!(batches[0].digest(), batches[1].digest());
    assert_eq!(batches[1].digest(), batches[2].digest());
}
