//! Verify before reveal, as a type rule, and the batched MAC check that
//! enforces it (Damgård, Keller, Larraia, Pastro, Scholl, Smart, ESORICS 2013,
//! §3, protocol "MACCheck").
//!
//! # The rule
//!
//! * An opening of a shared value yields an [`Opened<T>`]. Its value can be
//!   read only inside this crate (`pub(crate)`), for local computation and for
//!   the shares the engine sends to the *other helpers*. It has no public
//!   accessor, no `Display`, and its `Debug` is redacted.
//! * A [`Verified<T>`] can only be made by [`CheckPassed::verify`], and a
//!   [`CheckPassed`] only by this module's `conclude` after a batched MAC
//!   check succeeded. `verify` refuses an opening that the check did not
//!   cover (one recorded after the check's snapshot).
//! * An [`Output`] — the only thing a session hands to its shell besides
//!   messages for the other helpers — is made only from a `Verified` value.
//!
//! So a value derived from secrets can leave an honest helper in exactly two
//! ways: as a share inside a helper-to-helper message, or as an `Output` after
//! a MAC check that covered it *and every opening before it* (the check is
//! over the whole log since the previous check, and checks happen in order).
//! Turning an unverified opening into an output does not compile:
//!
//! ```compile_fail
//! use sealroom_mpc::verify::{Opened, Output};
//! use sealroom_mpc::F127;
//! fn leak(o: Opened<Vec<F127>>) -> Output {
//!     Output::new(0, o) // expected `Verified<Vec<F127>>`, found `Opened<..>`
//! }
//! ```
//!
//! nor does forging a `Verified` or a `CheckPassed`:
//!
//! ```compile_fail
//! use sealroom_mpc::verify::Verified;
//! use sealroom_mpc::F127;
//! let v = Verified { value: vec![F127::ONE] }; // private field
//! ```
//!
//! ```compile_fail
//! use sealroom_mpc::verify::{Opened, Verified};
//! use sealroom_mpc::F127;
//! fn peek(o: &Opened<Vec<F127>>) -> Vec<F127> {
//!     o.local().clone() // `local` is crate-private
//! }
//! ```
//!
//! # The check
//!
//! After openings a_1..a_t (helper i holding MAC shares m_{j,i}):
//! 1. coins: each helper committed (in the session hello) to a 32-byte seed;
//!    it reveals the seed only after it has received every opening of the
//!    batch, so no helper can choose its shares knowing the coefficients. The
//!    coefficients ρ_j = PRG(H(seed_0, seed_1, seed_2)) never depend on opened
//!    values.
//! 2. σ_i = Σ ρ_j m_{j,i} − α_i Σ ρ_j a_j; each helper commits to
//!    BLAKE3(σ_i ‖ salt) and sends its running transcript hash of every value
//!    opened so far (catches a helper that sent different shares to the two
//!    others: their reconstructions, hence transcripts, differ).
//! 3. σ_i and salt are opened; every commitment is checked; Σσ_i must be 0.
//!
//! A wrong opened value a'_j = a_j + e passes with probability 1/p over ρ.
//! The check opens only σ_i, which are fresh random-looking shares: it never
//! reveals an unverified value itself.

use core::fmt;

use sealroom_core::Seed;

use crate::error::AbortReason;
use crate::field::{F127, kernels};
use crate::machine::HelperIndex;
use crate::rng::{FieldPrg, derive_context};
use crate::share::MacKeyShare;

/// A value reconstructed by an opening and not yet covered by a MAC check.
pub struct Opened<T> {
    value: T,
    /// Log position just after this opening.
    seq_end: u64,
}

impl<T> Opened<T> {
    pub(crate) fn new(value: T, seq_end: u64) -> Opened<T> {
        Opened { value, seq_end }
    }

    /// The value, for local computation and helper-to-helper messages only.
    pub(crate) fn local(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Debug for Opened<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Opened(seq_end={}, <unverified, redacted>)",
            self.seq_end
        )
    }
}

/// A value covered by a successful MAC check.
pub struct Verified<T> {
    value: T,
}

impl<T> Verified<T> {
    /// The verified value.
    pub fn value(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verified(..)")
    }
}

/// Proof that a MAC check covering the first `covers` openings succeeded.
#[derive(Debug)]
pub struct CheckPassed {
    covers: u64,
}

impl CheckPassed {
    /// Turns an opening the check covered into a [`Verified`] value; gives the
    /// opening back if it was recorded after the check's snapshot.
    pub fn verify<T>(&self, opened: Opened<T>) -> Result<Verified<T>, Opened<T>> {
        if opened.seq_end <= self.covers {
            Ok(Verified {
                value: opened.value,
            })
        } else {
            Err(opened)
        }
    }
}

/// A released result: a vector of field elements named by the program's
/// output id. Only a [`Verified`] value becomes one.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// The program's output id.
    pub id: u32,
    values: Vec<F127>,
}

impl Output {
    /// Wraps a verified vector.
    pub fn new(id: u32, verified: Verified<Vec<F127>>) -> Output {
        Output {
            id,
            values: verified.value,
        }
    }

    /// The field elements.
    pub fn values(&self) -> &[F127] {
        &self.values
    }

    /// The values as signed integers (smallest magnitude representative).
    pub fn signed(&self) -> Vec<i128> {
        self.values.iter().map(|v| v.vartime_to_i128()).collect()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Outputs are public by definition (released after verification).
        write!(
            f,
            "Output {{ id: {}, values: {:?} }}",
            self.id,
            self.signed()
        )
    }
}

/// The running log of a helper's openings since the last check, and its
/// transcript hash of everything opened or broadcast since the start.
pub(crate) struct OpenLog {
    values: Vec<F127>,
    macs: Vec<F127>,
    total: u64,
    transcript: blake3::Hasher,
    scratch: Vec<u8>,
}

impl OpenLog {
    pub fn new(session: &[u8; 32]) -> OpenLog {
        let mut transcript = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc transcript v1");
        transcript.update(session);
        OpenLog {
            values: Vec::new(),
            macs: Vec::new(),
            total: 0,
            transcript,
            scratch: Vec::new(),
        }
    }

    /// Records MAC-carrying openings; returns the log position after them.
    pub fn record(&mut self, values: &[F127], mac_shares: &[F127]) -> u64 {
        debug_assert_eq!(values.len(), mac_shares.len());
        self.values.extend_from_slice(values);
        self.macs.extend_from_slice(mac_shares);
        self.total += values.len() as u64;
        self.hash(0, values);
        self.total
    }

    /// Records public broadcasts (input differences, revealed client keys)
    /// in the transcript only: they carry no MAC, but a helper that
    /// broadcast different values to the two others is caught here.
    pub fn record_broadcast(&mut self, values: &[F127]) {
        self.hash(1, values);
    }

    fn hash(&mut self, tag: u8, values: &[F127]) {
        self.scratch.clear();
        self.scratch.push(tag);
        self.scratch
            .extend_from_slice(&(values.len() as u64).to_le_bytes());
        kernels::encode_into(values, &mut self.scratch);
        self.transcript.update(&self.scratch);
    }

    pub fn transcript_hash(&self) -> [u8; 32] {
        *self.transcript.finalize().as_bytes()
    }

    /// σ_i = Σ ρ_j m_j − α_i Σ ρ_j a_j for coefficients from `coin_seed`.
    pub fn sigma(&self, coin_seed: &Seed, key: &MacKeyShare) -> F127 {
        let mut prg = FieldPrg::new(coin_seed, derive_context("mac check coefficients", &[]));
        let mut rho = vec![F127::ZERO; 4096.min(self.values.len())];
        let (mut sm, mut sa) = (F127::ZERO, F127::ZERO);
        for (vals, macs) in self.values.chunks(4096).zip(self.macs.chunks(4096)) {
            let r = &mut rho[..vals.len()];
            prg.fill(r);
            sm = sm.add(kernels::dot(r, macs));
            sa = sa.add(kernels::dot(r, vals));
        }
        sm.sub(key.0.mul(sa))
    }
}

/// Commitment to `data` by `sender` for purpose `label` in `session`.
pub(crate) fn commit(
    label: &str,
    session: &[u8; 32],
    index: u32,
    sender: HelperIndex,
    data: &[u8],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc commitment v1");
    h.update(&(label.len() as u64).to_le_bytes());
    h.update(label.as_bytes());
    h.update(session);
    h.update(&index.to_le_bytes());
    h.update(&[sender.index() as u8]);
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(data);
    *h.finalize().as_bytes()
}

/// The joint coin seed from all three revealed seeds (in helper order).
pub(crate) fn joint_coins(
    label: &str,
    session: &[u8; 32],
    index: u32,
    seeds: [&[u8; 32]; 3],
) -> Seed {
    let mut h = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc coin toss v1");
    h.update(label.as_bytes());
    h.update(session);
    h.update(&index.to_le_bytes());
    for s in seeds {
        h.update(s);
    }
    Seed::from_bytes(*h.finalize().as_bytes())
}

/// Commitment to σ_i with a salt.
pub(crate) fn sigma_commitment(
    session: &[u8; 32],
    check: u32,
    sender: HelperIndex,
    sigma: F127,
    salt: &[u8; 32],
) -> [u8; 32] {
    let mut data = [0u8; 48];
    data[..16].copy_from_slice(&sigma.to_le_bytes());
    data[16..].copy_from_slice(salt);
    commit("mac check sigma", session, check, sender, &data)
}

/// What a peer contributed to a MAC check.
pub(crate) struct PeerCheck {
    pub peer: HelperIndex,
    pub sigma_commitment: [u8; 32],
    pub transcript: [u8; 32],
    pub sigma: F127,
    pub salt: [u8; 32],
}

/// Concludes a MAC check: verifies both peers' commitments and transcripts
/// and that Σσ_i = 0; on success empties the pending log and returns the
/// only way to make [`Verified`] values.
pub(crate) fn conclude(
    log: &mut OpenLog,
    session: &[u8; 32],
    check: u32,
    my_sigma: F127,
    my_transcript: [u8; 32],
    peers: [PeerCheck; 2],
) -> Result<CheckPassed, AbortReason> {
    let mut total = my_sigma;
    for p in &peers {
        if sigma_commitment(session, check, p.peer, p.sigma, &p.salt) != p.sigma_commitment {
            return Err(AbortReason::CommitmentMismatch { peer: p.peer });
        }
    }
    for p in &peers {
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &p.transcript[..],
            &my_transcript[..],
        )) {
            return Err(AbortReason::TranscriptMismatch { peer: p.peer });
        }
        total = total.add(p.sigma);
    }
    if total != F127::ZERO {
        return Err(AbortReason::MacCheckFailed);
    }
    log.values.clear();
    log.macs.clear();
    Ok(CheckPassed { covers: log.total })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-party MAC check over honest shares passes, and one flipped
    /// opened value or MAC share makes it fail.
    #[test]
    fn mac_check_detects_a_wrong_opening() {
        let session = [1; 32];
        let alpha = [F127::from_u64(11), F127::from_u64(22), F127::from_u64(33)];
        let alpha_sum = alpha[0].add(alpha[1]).add(alpha[2]);
        let values = [F127::from_u64(5), F127::from_u64(7)];
        // MAC shares: helper 0 holds α·v − (others' shares).
        let other = [
            [F127::from_u64(100), F127::from_u64(200)],
            [F127::from_u64(3), F127::from_u64(4)],
        ];
        let mac0: Vec<F127> = values
            .iter()
            .enumerate()
            .map(|(j, v)| alpha_sum.mul(*v).sub(other[0][j]).sub(other[1][j]))
            .collect();
        let macs = [mac0, other[0].to_vec(), other[1].to_vec()];
        let coin = Seed::from_bytes([3; 32]);
        let run = |values: [F127; 2], tamper_mac: bool| {
            let mut logs: Vec<OpenLog> = (0..3).map(|_| OpenLog::new(&session)).collect();
            let mut sigmas = Vec::new();
            for i in 0..3 {
                let mut m = macs[i].clone();
                if tamper_mac && i == 2 {
                    m[1] = m[1].add(F127::ONE);
                }
                logs[i].record(&values, &m);
                sigmas.push(logs[i].sigma(&coin, &MacKeyShare(alpha[i])));
            }
            let t = logs[0].transcript_hash();
            let salt = [5u8; 32];
            let peer = |i: usize| PeerCheck {
                peer: HelperIndex::ALL[i],
                sigma_commitment: sigma_commitment(
                    &session,
                    0,
                    HelperIndex::ALL[i],
                    sigmas[i],
                    &salt,
                ),
                transcript: t,
                sigma: sigmas[i],
                salt,
            };
            conclude(&mut logs[0], &session, 0, sigmas[0], t, [peer(1), peer(2)])
        };
        let passed = run(values, false).expect("honest check passes");
        let opened = Opened::new(vec![F127::ONE], 2);
        assert!(passed.verify(opened).is_ok());
        assert!(
            passed.verify(Opened::new(vec![F127::ONE], 3)).is_err(),
            "an opening after the snapshot is not covered"
        );
        assert_eq!(
            run([values[0], values[1].add(F127::ONE)], false).err(),
            Some(AbortReason::MacCheckFailed)
        );
        assert_eq!(run(values, true).err(), Some(AbortReason::MacCheckFailed));
    }
}
