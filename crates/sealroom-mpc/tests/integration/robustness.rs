//! Arbitrary peer bytes never panic a session: each is refused with typed
//! evidence (or buffered if it parses as an early message), and a session
//! never completes on forged input.
#![allow(missing_docs)]

use crate::common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use sealroom_core::Seed;
use sealroom_mpc::machine::{HelperIndex, Input, Machine, Millis, Step};
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::session::{Outcome, Session};
use sealroom_mpc::wire::{Body, Message, MsgKind};

fn session() -> Session {
    let mut p = ProgramBuilder::new("robust", 1);
    let a = p.helper_input(HelperIndex::ALL[1], 0, 2);
    let b = p.mul(a, a);
    p.output(b);
    let prog = Arc::new(p.build().expect("builds"));
    let keys = keys(1);
    let [b0, _, _] = preprocess(&keys, 9, prog.needs());
    Session::new(
        prog,
        &keys[0],
        vec![b0],
        Default::default(),
        config(5),
        Seed::from_bytes([1; 32]),
    )
    .expect("session")
}

fn feed(bytes: Vec<u8>) {
    let s = session();
    let s = match s.handle(Millis(0), Input::Start) {
        Ok(Step::Continue(s, actions)) => {
            assert_eq!(actions.len(), 2, "hello to both peers");
            s
        }
        other => panic!("start failed: {other:?}"),
    };
    match s.handle(
        Millis(1),
        Input::Inbound {
            from: HelperIndex::ALL[2],
            msg: bytes,
        },
    ) {
        Ok(Step::Continue(..)) => {}
        Ok(Step::Finish(Outcome::Aborted(_), actions)) => assert!(!actions.is_empty()),
        Ok(Step::Finish(other, _)) => panic!("finished on forged input: {other:?}"),
        Err((_, e)) => panic!("usage error on peer input: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        feed(bytes);
    }

    #[test]
    fn well_framed_garbage_never_panics(round in 0u32..5, kind in 1u8..9, elems in 0usize..6, blobs in 0usize..8, flip in any::<u8>()) {
        let kinds = [MsgKind::Hello, MsgKind::Open, MsgKind::Reshare, MsgKind::RssOpen, MsgKind::CoinReveal, MsgKind::CheckCommit, MsgKind::CheckOpen, MsgKind::Confirm];
        let msg = Message {
            protocol: 2,
            sender: 2,
            session: [5; 32],
            round,
            body: Body::new(kinds[(kind as usize - 1) % kinds.len()], vec![sealroom_mpc::F127::from_u64(u64::from(flip)); elems], vec![[flip; 32]; blobs]),
        };
        feed(msg.encode());
    }
}
