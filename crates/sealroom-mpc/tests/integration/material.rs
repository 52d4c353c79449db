//! Preprocessing material at rest: a batch written with `Batch::to_bytes`
//! and read back computes exactly as the original; every malformed or
//! misplaced record is refused with a typed error, never a panic.
#![allow(missing_docs)]

use crate::common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use sealroom_core::Seed;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::{Batch, BatchId, Counts, MaterialError};
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::session::Session;
use sealroom_mpc::sim;

fn counts() -> Counts {
    Counts {
        triples: 20,
        bits: 70,
        randoms: 3,
        masks: [2, 5, 1],
    }
}

#[test]
fn stored_and_restored_material_computes_like_the_original() {
    let keys = keys(1);
    let mut p = ProgramBuilder::new("stored", 1);
    let x = p.helper_input(HelperIndex::ALL[0], 0, 4);
    let y = p.helper_input(HelperIndex::ALL[2], 0, 4);
    let m = p.mul(x, y);
    let lt = p.lt(x, y, 16);
    p.output(m);
    p.output(lt);
    let program = Arc::new(p.build().expect("builds"));
    let batches = preprocess(&keys, 3, program.needs());
    let restored: Vec<Batch> = batches
        .iter()
        .map(|b| {
            let bytes = b.to_bytes();
            let back = Batch::from_bytes(&bytes, b.helper(), b.id(), b.epoch()).expect("decodes");
            assert_eq!(back.digest(), b.digest());
            assert_eq!(back.counts(), b.counts());
            assert_eq!(*back.to_bytes(), *bytes, "re-encodes identically");
            back
        })
        .collect();
    let mut inputs = helper_inputs(&[(0, 0, vec![3, -7, 100, 0]), (2, 0, vec![5, 2, -1, 0])]);
    let mut it = restored.into_iter();
    let sessions = [0, 1, 2].map(|i| {
        Session::new(
            program.clone(),
            &keys[i],
            vec![it.next().expect("three")],
            std::mem::take(&mut inputs[i]),
            config(9),
            Seed::from_bytes([77 + i as u8; 32]),
        )
        .expect("session")
    });
    let out = outputs(sim::run(sessions, None, 1_000_000));
    assert_eq!(out, vec![vec![15, -14, -100, 0], vec![1, 1, 0, 0]]);
}

#[test]
fn malformed_or_misplaced_records_are_refused() {
    let keys = keys(1);
    let batches = preprocess(&keys, 4, counts());
    let b = &batches[1];
    let good = b.to_bytes().to_vec();
    let (me, id, epoch) = (b.helper(), b.id(), b.epoch());
    let decode = |bytes: &[u8]| Batch::from_bytes(bytes, me, id, epoch).map(|_| ());
    assert_eq!(decode(&good), Ok(()));
    assert_eq!(decode(&[]), Err(MaterialError::BadHeader));
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert_eq!(decode(&bad), Err(MaterialError::BadHeader));
    let mut bad = good.clone();
    bad[5] = 3;
    assert_eq!(decode(&bad), Err(MaterialError::BadField));
    // Another helper's, another batch's or another epoch's record.
    assert_eq!(
        Batch::from_bytes(&good, HelperIndex::ALL[0], id, epoch).map(|_| ()),
        Err(MaterialError::Mismatch)
    );
    assert_eq!(
        Batch::from_bytes(&good, me, BatchId([0; 16]), epoch).map(|_| ()),
        Err(MaterialError::Mismatch)
    );
    assert_eq!(
        Batch::from_bytes(&good, me, id, epoch + 1).map(|_| ()),
        Err(MaterialError::Mismatch)
    );
    // Truncated, extended, or counts that claim more than is there.
    assert!(matches!(
        decode(&good[..good.len() - 1]),
        Err(MaterialError::WrongLength { .. })
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer),
        Err(MaterialError::WrongLength { .. })
    ));
    let mut huge = good.clone();
    huge[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(&huge),
        Err(MaterialError::Overflow | MaterialError::WrongLength { .. })
    ));
    // A non-canonical element (p itself) in the first value share.
    let mut noncanonical = good.clone();
    let p = (1u128 << 127) - 1;
    noncanonical[112..128].copy_from_slice(&p.to_le_bytes());
    assert_eq!(decode(&noncanonical), Err(MaterialError::NonCanonical));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary bytes, and arbitrary single-byte corruptions of a real
    /// record, never panic the decoder.
    #[test]
    fn arbitrary_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                     at in any::<usize>(), flip in 1u8..) {
        let _ = Batch::from_bytes(&bytes, HelperIndex::ALL[0], BatchId([0; 16]), 0);
        let mut header = b"SRMB\x01\x00\x01\x00".to_vec();
        header.extend_from_slice(&bytes);
        let _ = Batch::from_bytes(&header, HelperIndex::ALL[0], BatchId([0; 16]), 0);
        let at = at % header.len();
        header[at] ^= flip;
        let _ = Batch::from_bytes(&header, HelperIndex::ALL[0], BatchId([0; 16]), 0);
    }
}
