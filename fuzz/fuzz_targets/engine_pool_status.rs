//! A peer helper's pool status at the start of an engine round
//! (`sealroom_node::engine::decode_status`), and the selection and rotation
//! every helper derives from three of them: nothing may panic, what is
//! selected is covered by batches all three listed, and a new epoch is
//! numbered above every epoch listed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::Counts;
use sealroom_node::engine::{PoolView, Rotation, decode_status};

fuzz_target!(|data: &[u8]| {
    // Three length-prefixed statuses (u16 little-endian lengths), then a need.
    let mut rest = data;
    let mut statuses = Vec::new();
    for helper in 0..3 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let from = HelperIndex::new(helper).expect("0..3");
        match decode_status(bytes, "fuzz", 9, from) {
            Ok(status) => statuses.push(status),
            Err(problem) => {
                assert!(!problem.is_empty());
                return;
            }
        }
    }
    let need = Counts {
        triples: usize::from(rest.first().copied().unwrap_or(1)),
        bits: usize::from(rest.get(1).copied().unwrap_or(0)),
        randoms: 0,
        masks: [0; 3],
    };
    let highest = statuses
        .iter()
        .map(|s| s.highest_epoch.max(s.epoch))
        .max()
        .unwrap_or(0);
    let statuses: [_; 3] = statuses.try_into().expect("three");
    let view = PoolView::new(statuses.clone());
    if let Some((epoch, ids)) = view.select(&need) {
        assert!(statuses.iter().all(|s| s.epoch == epoch));
        for id in &ids {
            for s in &statuses {
                assert!(s.batches.iter().any(|b| b.batch_id == id.0));
            }
        }
        let _ = view.remaining(&ids);
    }
    if let Rotation::New(epoch) = view.rotation() {
        assert!(epoch > highest || highest == u64::MAX);
    }
});
