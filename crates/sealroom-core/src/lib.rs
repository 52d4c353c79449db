//! # sealroom-core
//!
//! The arithmetic every other sealroom crate stands on:
//!
//! * [`ring`] and [`field`]: Z_2^32, Z_2^64 and F_p (p = 2^61 − 1);
//! * [`vector`]: allocation-free element-wise kernels and the packed
//!   little-endian wire encoding of vectors;
//! * [`prg`]: AES-128-CTR seed expansion with domain separation;
//! * [`additive`] and [`shamir`]: the two sharing schemes of DESIGN.md §2, both
//!   with seed compression;
//! * [`quant`]: fixed-point quantization and the headroom check that makes
//!   overflow impossible by construction;
//! * [`secret`]: the secret newtypes (`Seed`, `ShareVec`).
//!
//! ## What this crate must never do
//!
//! It performs no I/O, no async, no logging, and never draws randomness on its
//! own: every random choice comes from a `rand::CryptoRng` the caller supplies
//! (the OS generator, or a CSPRNG seeded from it), so the protocol layer can
//! record and replay it. Secret values are only ever held in the types of
//! [`secret`], whose `Debug` is redacted and whose memory is zeroized on drop.
//! Nothing here panics on peer-supplied input: lengths, indices and encodings
//! are checked and reported through typed errors.

#![forbid(unsafe_code)]

pub mod additive;
pub mod error;
pub mod field;
pub mod prg;
pub mod quant;
pub mod ring;
pub mod secret;
pub mod shamir;
pub mod vector;

pub use error::{InconsistencyReport, SharingError};
pub use field::Fp;
pub use quant::{QuantError, QuantSpec, RoundEncoding, fits};
pub use ring::{Ring, RingKind, WrappingRing};
pub use secret::{Seed, ShareVec};
