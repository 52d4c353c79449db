//! # sealroom-mpc
//!
//! The core of sealroom's MPC engine (issue #14): three helpers, at most one
//! corrupted, **malicious security with abort** under an honest majority.
//! Sans-IO: every protocol is a state machine fed `(now, Input)` that returns
//! messages for the other two helpers ([`machine`]).
//!
//! * [`field`] — F_p, p = 2^127 − 1, constant-time arithmetic and kernels;
//! * [`prss`] — key epochs, pseudo-random replicated sharing, the epoch MAC key;
//! * [`preproc`] — dealer-free preprocessing (AFLNO multiplication verified
//!   with Chida et al. 2018) of triples, random bits, random values and input
//!   masks into [`material::Batch`]es with ids and digests;
//! * [`share`], [`verify`] — additive SPDZ shares and the batched MAC check;
//!   verify-before-reveal is a type rule (`Opened` → `Verified` → `Output`);
//! * [`program`], [`ops`] — the program builder (vectorised operations,
//!   ASAP round scheduling, hashing), comparisons, equality, bit
//!   decomposition, truncation, Batcher sorting, rank selection;
//! * [`session`] — the online session (Beaver multiplication, inputs,
//!   checks, outputs); [`client`] — client uploads with the integrity sketch;
//! * [`wire`] — the one message format, with a decoder that never panics;
//! * [`sim`] — in-memory three-helper harness with corruption hooks;
//!   [`mod@bench`] — in-process measurements; [`validity`] — the
//!   norm-bounded sum (input validity inside the engine); [`noise`] — binomial
//!   differential-privacy noise from shared random bits, known to nobody;
//!   [`robust`] — norm clipping and the coordinate-wise trimmed mean and
//!   median of the clients' updates; [`krum`] — Krum and multi-Krum;
//!   [`dp_fedavg`] — DP-FedAvg: clipping, a lattice and binomial noise, all
//!   inside the engine.
//!
//! ## What this crate must never do
//!
//! No I/O, no async, no clock (except [`mod@bench`], which measures), no OS
//! randomness: every random choice comes from a seed the caller drew from the
//! OS, expanded with `sealroom_core`'s AES-CTR PRG. No value derived from a
//! secret leaves a session except inside a message to another helper or as an
//! [`verify::Output`] after a MAC check that covered it. Secrets live in
//! zeroizing types with redacted `Debug`. Peer bytes never panic the crate and
//! never size an allocation before they are checked against the program.
//! It depends on no other sealroom crate than `sealroom-core`.
//! See `docs/mpc.md` for the security argument, costs and references.

#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod dp_fedavg;
pub mod error;
pub mod field;
pub mod krum;
pub mod machine;
pub mod material;
pub mod noise;
pub mod ops;
pub mod preproc;
pub mod program;
pub mod prss;
pub mod rng;
pub mod robust;
pub mod session;
pub mod share;
pub mod sim;
pub mod validity;
pub mod verify;
pub mod wire;

pub use field::F127;
