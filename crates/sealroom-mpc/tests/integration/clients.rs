//! Client uploads: conversion from Z_2^k shares, the sketch check, and
//! exclusion that blames no helper.
#![allow(missing_docs)]

use crate::common;

use common::*;
use rand::SeedableRng;
use sealroom_core::additive::AdditiveShare;
use sealroom_mpc::F127;
use sealroom_mpc::client::{SketchShare, UploadRing, UploadShare, share_upload};
use sealroom_mpc::program::{Program, ProgramBuilder};
use sealroom_mpc::session::{Outcome, SessionInputs};

const CTX: [u8; 32] = [42; 32];

fn program(clients: usize, len: usize, bits: u32) -> Program {
    let mut p = ProgramBuilder::new("clients", 1);
    let x = p.client_inputs(clients, len, bits);
    p.output(x);
    let m = p.max(x, bits);
    p.output(m);
    p.build().expect("builds")
}

fn uploads(data: &[Vec<i64>], ring: UploadRing) -> [SessionInputs; 3] {
    let mut rng = rand::rngs::ChaCha20Rng::from_seed([8; 32]);
    let mut ins: [SessionInputs; 3] = Default::default();
    for (c, x) in data.iter().enumerate() {
        let ups = share_upload(x, ring, c as u32, CTX, &mut rng).expect("in range");
        for (h, u) in ups.into_iter().enumerate() {
            ins[h].clients.push(u);
            ins[h].client_context = CTX;
        }
    }
    ins
}

#[test]
fn uploads_convert_exactly_at_the_ring_edges() {
    for (ring, bits) in [(UploadRing::Z32, 32u32), (UploadRing::Z64, 64)] {
        let half = 1i64.checked_shl(bits - 1).unwrap_or(i64::MIN);
        let (lo, hi) = if bits == 64 {
            (i64::MIN, i64::MAX)
        } else {
            (-half, half - 1)
        };
        let data = vec![vec![0, 1, -1], vec![lo, hi, 7], vec![-5, 0, lo + 1]];
        let out = outputs(run_with(&program(3, 3, bits), uploads(&data, ring), None));
        let flat: Vec<i128> = data.iter().flatten().map(|&v| i128::from(v)).collect();
        assert_eq!(out[0], flat);
        assert_eq!(out[1], vec![i128::from(hi)]);
    }
}

#[test]
fn a_client_with_a_bad_sketch_is_excluded_and_no_helper_is_blamed() {
    let data = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
    let mut ins = uploads(&data, UploadRing::Z32);
    ins[0].clients[1].tau = SketchShare::new(F127::from_u64(12345));
    let report = run_with(&program(3, 2, 32), ins, None);
    for o in &report.outcomes {
        match o {
            Some(Outcome::ClientsExcluded { clients }) => assert_eq!(clients, &vec![1]),
            other => panic!("expected exclusion, got {other:?}"),
        }
    }
    assert!(
        report.aborts.iter().all(Vec::is_empty),
        "no abort, no blame"
    );
}

#[test]
fn a_helper_that_inputs_a_wrong_share_gets_the_client_excluded_not_a_wrong_value() {
    let data = vec![vec![10, 20], vec![30, 40]];
    // Helper 2 inputs a different share vector for client 0 than the one it
    // received (client 0's correction goes to helper 0; helper 2 holds a seed).
    let mut ins = uploads(&data, UploadRing::Z32);
    ins[2].clients[0].share = UploadShare::Z32(AdditiveShare::Seed(
        sealroom_core::Seed::from_bytes([99; 32]),
    ));
    let report = run_with(&program(2, 2, 32), ins, None);
    for h in [0, 1] {
        match &report.outcomes[h] {
            Some(Outcome::ClientsExcluded { clients }) => assert_eq!(clients, &vec![0]),
            other => panic!("expected exclusion, got {other:?}"),
        }
    }
}
