//! Local training: determinism, and accuracy well above chance on the real
//! data sets after a short run.

use sealroom_analytics::fl::{
    Dataset, DatasetKind, Model, ModelKind, Standardizer, TrainConfig, load, train_test_split,
};

fn standardized_split(kind: DatasetKind) -> (Dataset, Dataset) {
    let (mut train, mut test) =
        train_test_split(&load(kind), 0.25, 1).expect("test fixture is valid");
    let standardizer = Standardizer::fit(&train.x).expect("test fixture is valid");
    standardizer
        .apply(&mut train.x)
        .expect("test fixture is valid");
    standardizer
        .apply(&mut test.x)
        .expect("test fixture is valid");
    (train, test)
}

fn config(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        learning_rate: 0.05,
        epochs,
        batch_size: 16,
        l2: 1e-4,
        seed,
    }
}

/// Share of the most frequent class in `data`: what always guessing it
/// scores.
fn majority_share(data: &Dataset) -> f64 {
    let counts = data.class_counts();
    *counts.iter().max().expect("test fixture is valid") as f64 / data.n_rows() as f64
}

#[test]
fn training_is_deterministic_bit_for_bit() {
    let (train, _) = standardized_split(DatasetKind::Wine);
    for kind in [ModelKind::Logistic, ModelKind::Mlp { hidden: 8 }] {
        let start = Model::new(kind, train.n_features(), train.n_classes, 3).unwrap();
        let a = start
            .train_local(&train.x, &train.y, &config(2, 9))
            .unwrap();
        let b = start
            .train_local(&train.x, &train.y, &config(2, 9))
            .unwrap();
        let bits = |m: &Model| m.params().iter().map(|p| p.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{kind}");
        // The shuffle seed matters: another seed takes another path.
        let c = start
            .train_local(&train.x, &train.y, &config(2, 10))
            .unwrap();
        assert_ne!(bits(&a), bits(&c), "{kind}");
        // So does the initialization seed of the MLP.
        if kind != ModelKind::Logistic {
            let other = Model::new(kind, train.n_features(), train.n_classes, 4).unwrap();
            assert_ne!(bits(&start), bits(&other));
        }
    }
}

#[test]
fn short_training_beats_chance_on_iris() {
    let (train, test) = standardized_split(DatasetKind::Iris);
    for kind in [ModelKind::Logistic, ModelKind::Mlp { hidden: 8 }] {
        let start = Model::new(kind, 4, 3, 0).unwrap();
        let trained = start
            .train_local(&train.x, &train.y, &config(30, 1))
            .unwrap();
        let accuracy = trained.accuracy(&test.x, &test.y).unwrap();
        // Chance is 1/3; iris is nearly separable.
        assert!(accuracy >= 0.85, "{kind}: accuracy {accuracy}");
        let before = start.loss(&test.x, &test.y).unwrap();
        let after = trained.loss(&test.x, &test.y).unwrap();
        assert!(after < 0.6 * before, "{kind}: loss {before} -> {after}");
    }
}

#[test]
fn short_training_beats_the_majority_class_on_wine() {
    let (train, test) = standardized_split(DatasetKind::Wine);
    let majority = majority_share(&test);
    assert!((0.40..0.45).contains(&majority), "{majority}");
    for kind in [ModelKind::Logistic, ModelKind::Mlp { hidden: 8 }] {
        let start = Model::new(kind, train.n_features(), train.n_classes, 0).unwrap();
        let trained = start
            .train_local(&train.x, &train.y, &config(5, 2))
            .unwrap();
        let accuracy = trained.accuracy(&test.x, &test.y).unwrap();
        assert!(
            accuracy > majority + 0.08,
            "{kind}: accuracy {accuracy}, majority {majority}"
        );
        let predicted = trained.predict_proba(&test.x).unwrap();
        assert_eq!(predicted.dim(), (test.n_rows(), 6));
    }
}

#[test]
fn zero_epochs_returns_the_same_model_and_bad_settings_are_refused() {
    let (train, _) = standardized_split(DatasetKind::Iris);
    let start = Model::new(ModelKind::Mlp { hidden: 3 }, 4, 3, 5).unwrap();
    let same = start
        .train_local(&train.x, &train.y, &config(0, 1))
        .unwrap();
    assert_eq!(same.params(), start.params());
    for bad in [
        TrainConfig {
            learning_rate: 0.0,
            ..config(1, 1)
        },
        TrainConfig {
            batch_size: 0,
            ..config(1, 1)
        },
        TrainConfig {
            l2: f64::NAN,
            ..config(1, 1)
        },
    ] {
        assert!(start.train_local(&train.x, &train.y, &bad).is_err());
    }
}
