//! FedAvg through the secure-aggregation encoding equals its plaintext twin
//! bit for bit (DESIGN.md §8: "the secure model must equal the plaintext
//! FedAvg model exactly").

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sealroom_analytics::fl::{
    Dataset, DatasetKind, EncodedUpdate, FedAvgSpec, FlError, Model, ModelKind, Standardizer,
    TrainConfig, apply_sum, dirichlet_split, encode_update, load, plaintext_fedavg,
    unquantized_fedavg,
};
use sealroom_core::additive;
use sealroom_core::quant::ErrorFeedback;
use sealroom_core::{RingKind, RoundEncoding, vector};

const N_CLIENTS: usize = 4;

/// Iris, standardized, split non-IID across four clients.
fn clients() -> Vec<Dataset> {
    let mut data = load(DatasetKind::Iris);
    let standardizer = Standardizer::fit(&data.x).expect("test fixture is valid");
    standardizer
        .apply(&mut data.x)
        .expect("test fixture is valid");
    let parts = dirichlet_split(&data.y, data.n_classes, N_CLIENTS, 0.5, 8, 3)
        .expect("test fixture is valid");
    parts
        .iter()
        .map(|rows| data.select(rows).expect("test fixture is valid"))
        .collect()
}

fn train(global: &Model, client: &Dataset, round: u64, index: u64) -> Model {
    let config = TrainConfig {
        learning_rate: 0.1,
        epochs: 1,
        batch_size: 8,
        l2: 1e-4,
        seed: round * 100 + index,
    };
    global
        .train_local(&client.x, &client.y, &config)
        .expect("test fixture is valid")
}

/// The secure layer's view: quantize each wire vector with the round
/// encoding, add the ring vectors, decode the sum.
fn ring_sum(encoding: &RoundEncoding, updates: &[EncodedUpdate]) -> Vec<f64> {
    let mut acc = vec![0u64; updates[0].values().len()];
    for update in updates {
        let (ring, clipped) = encoding
            .encode::<u64>(update.values())
            .expect("test fixture is valid");
        assert_eq!(clipped, 0, "wire values never clip");
        // Every wire value lies on the wire grid: the secure layer's
        // quantization rounds nothing.
        let spec = encoding.spec();
        let integers = spec
            .quantize(update.values())
            .expect("test fixture is valid");
        for (&q, &v) in integers.values.iter().zip(update.values()) {
            assert_eq!(
                spec.dequantize(q).to_bits(),
                v.to_bits(),
                "off the wire grid"
            );
        }
        vector::add_assign(&mut acc, &ring).expect("test fixture is valid");
    }
    encoding.decode_sum(&acc).expect("test fixture is valid")
}

/// The whole protocol in miniature: every client shares its encoded vector
/// additively among three helpers; each helper sums its shares; the helpers'
/// aggregates are added and decoded.
fn additive_sum(encoding: &RoundEncoding, updates: &[EncodedUpdate]) -> Vec<f64> {
    const HELPERS: usize = 3;
    let context = [9u8; 32];
    let len = updates[0].values().len();
    let mut aggregates = vec![vec![0u64; len]; HELPERS];
    let mut rng = ChaCha20Rng::seed_from_u64(5); // test only; real shares use OS randomness
    for (index, update) in updates.iter().enumerate() {
        let (ring, _) = encoding
            .encode::<u64>(update.values())
            .expect("test fixture is valid");
        let shares = additive::share(&ring, HELPERS, index as u32, context, &mut rng)
            .expect("test fixture is valid");
        for (helper, share) in shares.iter().enumerate() {
            share
                .accumulate_into(&mut aggregates[helper], context, index as u32, helper)
                .expect("test fixture is valid");
        }
    }
    let views: Vec<&[u64]> = aggregates.iter().map(Vec::as_slice).collect();
    encoding
        .decode_sum(&additive::reconstruct(&views, HELPERS).expect("test fixture is valid"))
        .expect("test fixture is valid")
}

fn assert_bit_identical(a: &Model, b: &Model, what: &str) {
    assert_eq!(a.n_params(), b.n_params());
    for (k, (x, y)) in a.params().iter().zip(b.params()).enumerate() {
        assert_eq!(
            x.to_bits(),
            y.to_bits(),
            "{what}: parameter {k}: {x} vs {y}"
        );
    }
}

#[test]
fn secure_sum_equals_plaintext_twin_bit_for_bit() {
    let clients = clients();
    for kind in [ModelKind::Logistic, ModelKind::Mlp { hidden: 6 }] {
        for bits in [8u8, 12, 16] {
            for error_feedback in [false, true] {
                let what = format!("{kind}, {bits} bits, error feedback {error_feedback}");
                let spec = FedAvgSpec {
                    bits,
                    delta_clip: 0.5,
                    max_weight: 64,
                };
                let encoding = spec
                    .round_encoding(RingKind::Z2_64, N_CLIENTS as u64)
                    .unwrap();
                let mut global = Model::new(kind, 4, 3, 1).unwrap();
                let mut feedback: Vec<ErrorFeedback> = (0..N_CLIENTS)
                    .map(|_| ErrorFeedback::new(global.n_params()))
                    .collect();
                // Three rounds, so the residuals (and capped weights) matter.
                for round in 0..3u64 {
                    let mut updates = Vec::new();
                    for (i, client) in clients.iter().enumerate() {
                        let local = train(&global, client, round, i as u64);
                        let ef = error_feedback.then(|| &mut feedback[i]);
                        updates.push(
                            encode_update(&spec, &global, &local, client.n_rows(), ef).unwrap(),
                        );
                    }
                    let twin = plaintext_fedavg(&spec, &global, &updates).unwrap();
                    let secure = apply_sum(&spec, &global, &ring_sum(&encoding, &updates)).unwrap();
                    assert_bit_identical(&secure, &twin, &what);
                    if round == 0 {
                        let shared =
                            apply_sum(&spec, &global, &additive_sum(&encoding, &updates)).unwrap();
                        assert_bit_identical(&shared, &twin, &what);
                    }
                    // Updates actually move the model.
                    assert!(
                        twin.params()
                            .iter()
                            .zip(global.params())
                            .any(|(a, b)| a != b),
                        "{what}"
                    );
                    global = twin;
                }
            }
        }
    }
}

/// Without clipping, capping or error feedback, the quantized average is
/// within half a step of the unquantized one in every parameter (a weighted
/// average of values each off by at most step/2), plus float rounding.
#[test]
fn quantized_average_is_within_half_a_step_of_plain_fedavg() {
    let clients = clients();
    let global = Model::new(ModelKind::Logistic, 4, 3, 0).unwrap();
    let locals: Vec<(Model, usize)> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (train(&global, c, 0, i as u64), c.n_rows()))
        .collect();
    let plain = unquantized_fedavg(&global, &locals).unwrap();
    for bits in [8u8, 12, 16] {
        let spec = FedAvgSpec {
            bits,
            delta_clip: 4.0,
            max_weight: 1000,
        };
        let step = spec.delta_spec().unwrap().step();
        let updates: Vec<EncodedUpdate> = locals
            .iter()
            .map(|(l, n)| encode_update(&spec, &global, l, *n, None).unwrap())
            .collect();
        assert!(updates.iter().all(|u| u.clipped == 0 && !u.weight_capped));
        let quantized = plaintext_fedavg(&spec, &global, &updates).unwrap();
        let worst = quantized
            .params()
            .iter()
            .zip(plain.params())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= step / 2.0 + 1e-12,
            "{bits} bits: {worst} > {}",
            step / 2.0
        );
        if bits == 8 {
            assert!(worst > 0.0, "8-bit quantization is visible");
        }
    }
}

#[test]
fn dropped_clients_leave_the_exact_average_of_the_rest() {
    // The weight travels inside the sum: summing a subset gives that
    // subset's weighted average without knowing who dropped.
    let clients = clients();
    let spec = FedAvgSpec {
        bits: 16,
        delta_clip: 4.0,
        max_weight: 1000,
    };
    let global = Model::new(ModelKind::Logistic, 4, 3, 0).unwrap();
    let updates: Vec<EncodedUpdate> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let local = train(&global, c, 0, i as u64);
            encode_update(&spec, &global, &local, c.n_rows(), None).unwrap()
        })
        .collect();
    let encoding = spec
        .round_encoding(RingKind::Z2_64, N_CLIENTS as u64)
        .unwrap();
    let kept = &updates[1..];
    let secure = apply_sum(&spec, &global, &ring_sum(&encoding, kept)).unwrap();
    let twin = plaintext_fedavg(&spec, &global, kept).unwrap();
    assert_bit_identical(&secure, &twin, "subset");
    let total: u32 = kept.iter().map(|u| u.weight).sum();
    assert_eq!(
        total as usize,
        clients[1..].iter().map(Dataset::n_rows).sum::<usize>()
    );
}

#[test]
fn weights_are_capped_and_reported() {
    let global = Model::new(ModelKind::Logistic, 4, 3, 0).unwrap();
    let local = Model::from_params(ModelKind::Logistic, 4, 3, vec![0.01; 15]).unwrap();
    let spec = FedAvgSpec {
        bits: 12,
        delta_clip: 1.0,
        max_weight: 50,
    };
    let capped = encode_update(&spec, &global, &local, 51, None).unwrap();
    assert_eq!((capped.weight, capped.weight_capped), (50, true));
    let exact = encode_update(&spec, &global, &local, 50, None).unwrap();
    assert_eq!((exact.weight, exact.weight_capped), (50, false));
    let step = spec.delta_spec().unwrap().step();
    assert_eq!(capped.values().last().copied(), Some(50.0 * step));
}

#[test]
fn headroom_and_shapes_are_checked() {
    let spec = FedAvgSpec {
        bits: 16,
        delta_clip: 1.0,
        max_weight: 1 << 20,
    };
    // Deltas up to 2^14 quanta (the finest scale for ±1 in 16 bits) times
    // weights up to 2^20: more than 2^19 clients could exceed 2^53.
    assert_eq!(spec.delta_spec().unwrap().max_abs(), 1 << 14);
    assert!(spec.round_encoding(RingKind::Z2_64, 1 << 19).is_ok());
    assert!(matches!(
        spec.round_encoding(RingKind::Z2_64, (1 << 19) + 1),
        Err(FlError::Quantization(_))
    ));
    assert!(spec.round_encoding(RingKind::Z2_32, 2).is_err());

    let global = Model::new(ModelKind::Logistic, 4, 3, 0).unwrap();
    let other = Model::new(ModelKind::Mlp { hidden: 2 }, 4, 3, 0).unwrap();
    assert!(matches!(
        encode_update(&spec, &global, &other, 10, None),
        Err(FlError::ShapeMismatch { .. })
    ));
    let mut short = ErrorFeedback::new(3);
    assert!(matches!(
        encode_update(&spec, &global, &global, 10, Some(&mut short)),
        Err(FlError::Quantization(_))
    ));
    let update = encode_update(&spec, &other, &other, 10, None).unwrap();
    assert!(matches!(
        plaintext_fedavg(&spec, &global, &[update]),
        Err(FlError::ShapeMismatch { .. })
    ));
    // A diverged local model is refused at the client.
    let diverged = Model::from_params(ModelKind::Logistic, 4, 3, vec![1e308; 15]).unwrap();
    let far = Model::from_params(ModelKind::Logistic, 4, 3, vec![-1e308; 15]).unwrap();
    assert_eq!(
        encode_update(&spec, &far, &diverged, 10, None).unwrap_err(),
        FlError::NonFiniteDelta { index: 0 }
    );
}
