//! The non-IID Dirichlet partition: a true partition, skewed by label as α
//! says, with a guaranteed minimum per client, deterministic in its seed.

use ndarray::Array1;
use sealroom_analytics::fl::{DatasetKind, FlError, dirichlet_split, load};

/// Mean total-variation distance between each client's label shares and the
/// pooled shares.
fn skew(y: &Array1<usize>, n_classes: usize, parts: &[Vec<usize>]) -> f64 {
    let shares = |rows: &mut dyn Iterator<Item = usize>, n: usize| -> Vec<f64> {
        let mut counts = vec![0.0; n_classes];
        for r in rows {
            counts[y[r]] += 1.0;
        }
        counts.iter().map(|c| c / n as f64).collect()
    };
    let pooled = shares(&mut (0..y.len()), y.len());
    let total: f64 = parts
        .iter()
        .map(|p| {
            let s = shares(&mut p.iter().copied(), p.len());
            0.5 * s
                .iter()
                .zip(&pooled)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
        })
        .sum();
    total / parts.len() as f64
}

#[test]
fn every_row_is_assigned_exactly_once() {
    let wine = load(DatasetKind::Wine);
    for (alpha, clients) in [(0.1, 10), (0.5, 7), (100.0, 3), (1.0, 1)] {
        let parts = dirichlet_split(&wine.y, wine.n_classes, clients, alpha, 10, 1).unwrap();
        assert_eq!(parts.len(), clients);
        let mut seen = vec![0u8; wine.n_rows()];
        for part in &parts {
            assert!(
                part.len() >= 10,
                "alpha {alpha}: a client has {}",
                part.len()
            );
            assert!(part.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
            for &r in part {
                seen[r] += 1;
            }
        }
        assert!(seen.iter().all(|&s| s == 1), "alpha {alpha}");
    }
}

#[test]
fn small_alpha_is_non_iid_and_large_alpha_is_nearly_iid() {
    let wine = load(DatasetKind::Wine);
    let skew_at = |alpha: f64| {
        let parts = dirichlet_split(&wine.y, wine.n_classes, 10, alpha, 10, 4).unwrap();
        skew(&wine.y, wine.n_classes, &parts)
    };
    let (skewed, mild, iid) = (skew_at(0.1), skew_at(1.0), skew_at(1000.0));
    assert!(skewed > 0.4, "alpha 0.1: skew {skewed}");
    assert!(iid < 0.05, "alpha 1000: skew {iid}");
    assert!(skewed > mild && mild > iid, "{skewed} > {mild} > {iid}");
}

#[test]
fn deterministic_in_the_seed() {
    let iris = load(DatasetKind::Iris);
    let a = dirichlet_split(&iris.y, 3, 5, 0.5, 5, 17).unwrap();
    let b = dirichlet_split(&iris.y, 3, 5, 0.5, 5, 17).unwrap();
    let c = dirichlet_split(&iris.y, 3, 5, 0.5, 5, 18).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn extreme_settings_still_meet_the_minimum() {
    // α = 0.01 with 30 clients of iris: redraws rarely succeed, so the top-up
    // runs; every client still gets its 5 rows and the partition holds.
    let iris = load(DatasetKind::Iris);
    let parts = dirichlet_split(&iris.y, 3, 30, 0.01, 5, 2).unwrap();
    assert!(parts.iter().all(|p| p.len() >= 5));
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 150);
}

#[test]
fn impossible_requests_are_refused() {
    let iris = load(DatasetKind::Iris);
    assert_eq!(
        dirichlet_split(&iris.y, 3, 16, 1.0, 10, 0).unwrap_err(),
        FlError::NotEnoughRows {
            n_rows: 150,
            n_clients: 16,
            min_rows: 10
        }
    );
    assert!(matches!(
        dirichlet_split(&iris.y, 3, 0, 1.0, 1, 0),
        Err(FlError::Empty { .. })
    ));
    for alpha in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        assert!(matches!(
            dirichlet_split(&iris.y, 3, 2, alpha, 1, 0),
            Err(FlError::InvalidParameter { name: "alpha", .. })
        ));
    }
    assert!(matches!(
        dirichlet_split(&iris.y, 2, 2, 1.0, 1, 0),
        Err(FlError::LabelOutOfRange { label: 2, .. })
    ));
}
