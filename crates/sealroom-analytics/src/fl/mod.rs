//! Federated learning on top of secure aggregation (DESIGN.md §8): data
//! ([`data`], [`split`]), models ([`model`]), FedAvg of quantized deltas
//! ([`fedavg`]) and an in-process simulation ([`sim`]). Everything here is
//! pure: no I/O, no network, no async, no logging.
//!
//! # The FedAvg encoding, and why it is exact
//!
//! FedAvg (McMahan et al., "Communication-Efficient Learning of Deep
//! Networks from Decentralized Data", AISTATS 2017) moves the global model
//! by the sample-weighted average of the clients' deltas. Secure aggregation
//! reveals only a sum, so each client sends its *weighted* delta and its
//! weight in one vector, and the average is formed after the sum:
//!
//! 1. Client `i` quantizes its delta `Δ_i = local_i − global` with the
//!    *delta spec* ([`FedAvgSpec::delta_spec`], `bits` signed bits, clip
//!    `delta_clip`, step `s = 2^−scale_bits`) to integers `q_ik` with
//!    `|q_ik| ≤ M` (with error feedback, it quantizes `Δ_i + residual_i`).
//! 2. Its weight is `w_i = min(n_samples_i, max_weight)`; it sends
//!    `v_ik = (w_i·q_ik)·s` for each parameter `k` and `v_in = w_i·s`.
//!    Each value is an integer multiple of `s` of magnitude at most
//!    `max_weight·M`, which is exactly the grid and clip of the *wire spec*
//!    ([`FedAvgSpec::wire_spec`]: same scale, clip `max_weight·M·s`). The
//!    secure layer's quantization of `v_ik` therefore recovers the integer
//!    `w_i·q_ik` with no rounding and no clipping.
//! 3. The secure sum adds these integers in a ring whose headroom check
//!    ([`sealroom_core::fits`], via [`FedAvgSpec::round_encoding`]) rules
//!    out overflow and keeps every sum below 2^53, so the decoded sum
//!    `S_k·s` with `S_k = Σ_i w_i·q_ik`, and `W·s` with `W = Σ_i w_i`, are
//!    exact `f64` values.
//! 4. [`apply_sum`] sets `global_k + (S_k·s) / W`: the weighted average of
//!    the quantized deltas. Its only roundings (one division, one addition,
//!    in that order) depend on the sum alone.
//!
//! Up to step 4 nothing is rounded, so any two ways of computing the sum
//! agree exactly: [`plaintext_fedavg`] (which sums the same integers in
//! `i128`) and a secure round give the same model **bit for bit**. The
//! quantization of step 1 is the only approximation, and it happens at the
//! client. Because the weight travels inside the sum, a client that drops
//! out of a round is simply absent from both `S_k` and `W`: the result is
//! the exact weighted average over the clients included.
//!
//! What the sum reveals beyond the average: the total weight `W` (the capped
//! number of training rows of the included clients).
//!
//! # Randomness
//!
//! Seeds here choose public things only (the train/test split, the non-IID
//! partition, SGD batch order, the MLP's initial weights) and must be
//! replayable, so they drive ChaCha20 from a `u64`. They are never used for
//! a secret.

pub mod data;
pub mod error;
pub mod fedavg;
pub mod model;
pub mod sim;
pub mod split;

pub use data::{
    Dataset, DatasetKind, FeatureMoments, STD_FLOOR, Standardizer, load, train_test_split,
};
pub use error::FlError;
pub use fedavg::{
    Defences, EncodedUpdate, FedAvgSpec, RobustAggregation, apply_robust_to, apply_sum,
    apply_sum_to, encode_delta, encode_unweighted_delta, encode_unweighted_update, encode_update,
    plaintext_fedavg, plaintext_sum, unquantized_fedavg, wire_integers,
};
pub use model::{MAX_EPOCHS, Model, ModelKind, TrainConfig};
pub use sim::{Aggregation, RoundReport, Setting, SimConfig, SimReport, centralized, simulate};
pub use split::{MAX_DRAWS, derive_seed, dirichlet_split};
