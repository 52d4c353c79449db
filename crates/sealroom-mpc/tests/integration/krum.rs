//! Multi-Krum in the engine (issue #15) against its plaintext twin: the
//! attackers' far-away updates are never selected, ties are broken by
//! client index, an update beyond the hard bound enters as zero.
#![allow(missing_docs)]

use crate::common;

use common::*;
use sealroom_mpc::krum::{KrumParams, multi_krum, multi_krum_plain};
use sealroom_mpc::session::SessionInputs;

const CTX: [u8; 32] = [29; 32];

fn uploads(data: &[Vec<i64>]) -> [SessionInputs; 3] {
    client_uploads(data, CTX, 8)
}

fn run(data: &[Vec<i64>], params: KrumParams) -> (Vec<i128>, Vec<i128>) {
    let program = multi_krum(data.len(), data[0].len(), params).expect("builds");
    let mut out = outputs(run_with(&program, uploads(data), None));
    let checks = out.pop().expect("per-check verdicts");
    let ok = out.pop().expect("verdicts");
    assert_eq!(checks, ok, "one check: the hard bound");
    (out.pop().expect("sums"), ok)
}

#[test]
fn krum_selects_an_honest_update_and_multi_krum_averages_honest_ones() {
    // Five honest updates near (10, 10, 10) and two attackers far away.
    let data = vec![
        vec![10, 11, 9, 1],
        vec![11, 10, 10, 1],
        vec![9, 10, 11, 1],
        vec![10, 9, 10, 1],
        vec![12, 10, 9, 1],
        vec![-400, 300, -200, 1],
        vec![500, -500, 500, 1],
    ];
    for selected in [1, 3, 5] {
        let params = KrumParams {
            byzantine: 2,
            selected,
            l2_sq: 1 << 40,
        };
        let (sums, ok) = run(&data, params);
        let (want, verdicts, chosen) = multi_krum_plain(&data, &params);
        assert_eq!(sums, want, "m = {selected}");
        assert_eq!(ok, vec![1; 7]);
        assert!(verdicts.iter().all(|&v| v));
        assert_eq!(chosen.len(), selected);
        assert!(chosen.iter().all(|&c| c < 5), "m = {selected}: {chosen:?}");
    }
}

#[test]
fn equal_scores_are_broken_by_client_index_and_over_bound_updates_enter_as_zero() {
    // Identical updates: every score ties; m = 2 takes clients 0 and 1.
    // Client 3 is beyond the hard bound (norm² 8 > 4): it enters as zero.
    let data = vec![
        vec![1, 1, 7],
        vec![1, 1, 7],
        vec![1, 1, 7],
        vec![2, 2, 7],
        vec![1, 1, 7],
    ];
    let params = KrumParams {
        byzantine: 1,
        selected: 2,
        l2_sq: 4,
    };
    let (sums, ok) = run(&data, params);
    let (want, verdicts, chosen) = multi_krum_plain(&data, &params);
    assert_eq!(sums, want);
    assert_eq!(ok, vec![1, 1, 1, 0, 1]);
    assert_eq!(verdicts, vec![true, true, true, false, true]);
    assert_eq!(chosen, vec![0, 1]);
    assert_eq!(sums, vec![2, 2]);
}

#[test]
fn krum_parameters_out_of_range_are_refused() {
    let ok = KrumParams {
        byzantine: 1,
        selected: 1,
        l2_sq: 100,
    };
    assert!(multi_krum(5, 3, ok).is_ok());
    assert!(multi_krum(4, 3, ok).is_err(), "n must exceed 2f + 2");
    assert!(multi_krum(5, 1, ok).is_err());
    assert!(multi_krum(5, 3, KrumParams { selected: 0, ..ok }).is_err());
    assert!(multi_krum(5, 3, KrumParams { selected: 5, ..ok }).is_err());
    assert!(
        multi_krum(
            5,
            3,
            KrumParams {
                l2_sq: 1 << 50,
                ..ok
            }
        )
        .is_err()
    );
}
