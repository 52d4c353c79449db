//! Pinned test vectors (tests/vectors/mpc.json): field encoding, message
//! framing, program hashing, the preprocessing batch digest (which pins the
//! PRSS derivation, the batch circuit and the openings) and the client
//! sketch. A change that breaks wire or derivation compatibility fails here.
//! Regenerate deliberately with `SEALROOM_REGEN_VECTORS=1 cargo test -p
//! sealroom-mpc --test integration vectors::` and review the diff.
#![allow(missing_docs)]

use crate::common;

use common::*;
use sealroom_mpc::F127;
use sealroom_mpc::client::sketch;
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::Counts;
use sealroom_mpc::program::ProgramBuilder;
use sealroom_mpc::wire::{Body, Message, MsgKind};
use serde_json::{Value, json};

fn compute() -> Value {
    let elems = [
        F127::ZERO,
        F127::ONE,
        F127::ONE.neg(),
        F127::from_i64(-5),
        F127::pow2(126),
    ];
    let encodings: Vec<String> = elems.iter().map(|e| hex::encode(e.to_le_bytes())).collect();
    let msg = Message {
        protocol: 2,
        sender: 1,
        session: [0xab; 32],
        round: 7,
        body: Body::new(
            MsgKind::Open,
            vec![F127::from_u64(3), F127::from_i64(-3)],
            vec![[0x11; 32]],
        ),
    };
    let mut p = ProgramBuilder::new("vector", 3);
    let a = p.helper_input(HelperIndex::ALL[0], 0, 2);
    let b = p.helper_input(HelperIndex::ALL[1], 0, 2);
    let m = p.mul(a, b);
    let l = p.lt(a, b, 16);
    p.output(m);
    p.output(l);
    let prog = p.build().expect("builds");
    let keys = keys(1);
    let batch = preprocess(
        &keys,
        1,
        Counts {
            triples: 3,
            bits: 2,
            randoms: 1,
            masks: [1, 1, 1],
        },
    );
    let kappa = F127::from_u64(123_456_789);
    json!({
        "field_le": encodings,
        "message_hex": hex::encode(msg.encode()),
        "program_hash": hex::encode(prog.hash()),
        "program_rounds": prog.rounds(),
        "program_triples": prog.needs().triples,
        "program_bits": prog.needs().bits,
        "batch_digest": hex::encode(batch[0].digest()),
        "sketch": hex::encode(sketch(kappa, &[1, -2, 3]).to_le_bytes()),
    })
}

#[test]
fn pinned_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mpc.json");
    let got = compute();
    if std::env::var_os("SEALROOM_REGEN_VECTORS").is_some() {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&got).expect("json") + "\n",
        )
        .expect("write vectors");
    }
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).expect("json");
    assert_eq!(got, want);
    // Independent checks of the pinned values themselves.
    assert_eq!(want["field_le"][2], "feffffffffffffffffffffffffffff7f"); // p − 1
    assert_eq!(want["field_le"][4], "00000000000000000000000000000040"); // 2^126
    let kappa = 123_456_789i128;
    let p = i128::MAX; // 2^127 − 1
    let k2 = (kappa * kappa) % p;
    let k3 = (k2 * kappa) % p;
    let tau = (kappa - 2 * k2 + 3 * k3) % p; // positive here
    assert_eq!(want["sketch"], hex::encode((tau as u128).to_le_bytes()));
}
