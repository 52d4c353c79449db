//! Client uploads: seed-compressed additive shares over Z_2^k plus a
//! 32-byte-per-helper integrity sketch, and the helper-side view of them.
//!
//! **Upload.** A client with a signed integer vector x (k = 32 or 64 bits)
//! shares it exactly as DESIGN.md §2 additive mode does
//! ([`sealroom_core::additive::share`], three helpers): two helpers get a
//! 32-byte seed, the helper `client_index mod 3` the correction vector. The
//! upload stays ≈ plaintext size.
//!
//! **Sketch.** The client also samples κ ∈ F_p, computes
//! τ = Σ_j κ^(j+1)·x_j over F_p (x_j the signed integer embedded in F_p),
//! and additively shares κ and τ, sending (κ_i, τ_i) to helper i — 32 extra
//! bytes per helper.
//!
//! **Conversion and check (helpers, see [`crate::program`]'s
//! `client_inputs`).** Each helper inputs its expanded share vector and τ_i
//! as helper-private inputs; the engine computes \[u\] = Σ\[s_i\] over the
//! integers (u = x mod 2^k + w·2^k, w ∈ {0,1,2}), reduces it exactly with
//! Mod2m and maps it to the signed value. Then the helpers reveal κ_i by
//! commit-then-reveal (committed in the session hello, revealed only after
//! every share was input), compute \[Δ\] = Σ_j κ^(j+1)\[x_j\] − \[τ\] and run
//! CheckZero(\[Δ\]) (multiply by a random \[s\], open, MAC-verify, compare with 0).
//!
//! **Soundness.** A helper that inputs a wrong share vector or a wrong τ_i
//! fixes its deviation e (on x) and e_τ before κ is known; the check passes
//! only if Σ_j κ^(j+1) e_j + e_τ = 0, a non-zero polynomial of degree ≤ n + 1
//! in the uniformly random κ (the corrupt helper's κ_i is committed before
//! the honest ones are revealed): probability ≤ (n + 1)/p ≈ n·2^−127.
//!
//! **Blame.** A failed check *excludes the client* and blames no helper: the
//! client controls its sketch, so the failure could be its own. A corrupted
//! helper can therefore have an honest client excluded — exactly as it can
//! already by claiming it never received that client's upload. It cannot make
//! a wrong value count as that client's input.

use rand::CryptoRng;
use sealroom_core::additive::{self, AdditiveShare};
use sealroom_core::{ShareVec, SharingError};

use crate::field::F127;
use crate::machine::HelperIndex;

/// Ring of a client upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadRing {
    /// Z_2^32.
    Z32,
    /// Z_2^64.
    Z64,
}

impl UploadRing {
    /// Bits.
    pub fn bits(self) -> u32 {
        match self {
            UploadRing::Z32 => 32,
            UploadRing::Z64 => 64,
        }
    }
}

/// One helper's additive share of a client's vector.
#[derive(Debug)]
pub enum UploadShare {
    /// Over Z_2^32.
    Z32(AdditiveShare<u32>),
    /// Over Z_2^64.
    Z64(AdditiveShare<u64>),
}

/// What one helper receives from one client.
#[derive(Debug)]
pub struct HelperUpload {
    /// The client's index in the round (selects the correction holder and PRG domain).
    pub client_index: u32,
    /// The share of the vector.
    pub share: UploadShare,
    /// κ_i.
    pub kappa: SketchShare,
    /// τ_i.
    pub tau: SketchShare,
}

/// A helper's additive share of κ or τ (secret: redacted, zeroized).
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SketchShare(F127);

impl SketchShare {
    /// Wraps a decoded share (the node's wire module decodes it).
    pub fn new(v: F127) -> SketchShare {
        SketchShare(v)
    }
    pub(crate) fn get(&self) -> F127 {
        self.0
    }
    /// The 16-byte encoding (for the upload's wire format).
    pub fn expose_bytes(&self) -> [u8; 16] {
        self.0.to_le_bytes()
    }
}

impl core::fmt::Debug for SketchShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SketchShare(<redacted>)")
    }
}

/// Why a client could not share its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A value does not fit the ring's signed range.
    #[error("value at {index} does not fit in {bits} signed bits")]
    OutOfRange {
        /// Position.
        index: usize,
        /// Ring bits.
        bits: u32,
    },
    /// The sharing scheme refused.
    #[error(transparent)]
    Sharing(#[from] SharingError),
}

fn random_element<G: CryptoRng + ?Sized>(rng: &mut G) -> F127 {
    loop {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        if let Some(v) = F127::from_uniform_bytes(b) {
            return v;
        }
    }
}

/// τ = Σ_j κ^(j+1)·x_j over F_p.
pub fn sketch(kappa: F127, x: &[i64]) -> F127 {
    let mut power = kappa;
    let mut tau = F127::ZERO;
    for &v in x {
        tau = tau.add(power.mul(F127::from_i64(v)));
        power = power.mul(kappa);
    }
    tau
}

/// Shares `x` for the three helpers: the additive upload plus the sketch.
/// Index = helper index.
pub fn share_upload<G: CryptoRng + ?Sized>(
    x: &[i64],
    ring: UploadRing,
    client_index: u32,
    context: [u8; 32],
    rng: &mut G,
) -> Result<[HelperUpload; 3], ClientError> {
    let bits = ring.bits();
    let half = 1i128 << (bits - 1);
    if let Some(index) = x
        .iter()
        .position(|&v| i128::from(v) < -half || i128::from(v) >= half)
    {
        return Err(ClientError::OutOfRange { index, bits });
    }
    let kappa = random_element(rng);
    let tau = sketch(kappa, x);
    let split = |v: F127, rng: &mut G| {
        let a = random_element(rng);
        let b = random_element(rng);
        [a, b, v.sub(a).sub(b)]
    };
    let ks = split(kappa, rng);
    let ts = split(tau, rng);
    let shares: Vec<UploadShare> = match ring {
        UploadRing::Z32 => {
            let input = ShareVec::new(x.iter().map(|&v| v as u32).collect::<Vec<u32>>());
            additive::share(input.expose(), 3, client_index, context, rng)?
                .into_iter()
                .map(UploadShare::Z32)
                .collect()
        }
        UploadRing::Z64 => {
            let input = ShareVec::new(x.iter().map(|&v| v as u64).collect::<Vec<u64>>());
            additive::share(input.expose(), 3, client_index, context, rng)?
                .into_iter()
                .map(UploadShare::Z64)
                .collect()
        }
    };
    let mut it = shares.into_iter();
    let mut next = |h: usize| -> Result<HelperUpload, ClientError> {
        let share = it
            .next()
            .ok_or(ClientError::Sharing(SharingError::WrongShareCount {
                expected: 3,
                got: h,
            }))?;
        Ok(HelperUpload {
            client_index,
            share,
            kappa: SketchShare(ks[h]),
            tau: SketchShare(ts[h]),
        })
    };
    Ok([next(0)?, next(1)?, next(2)?])
}

/// Bytes of one helper's sketch shares on the wire: κ_i ‖ τ_i, each a
/// canonical 16-byte little-endian element.
pub const SKETCH_BYTES: usize = 32;

/// The sketch part of an upload for each helper (index = helper index):
/// draws κ, computes τ = Σ_j κ^(j+1)·x_j and splits both additively. For a
/// client whose share vectors are made elsewhere (the round protocol's
/// client), this is [`share_upload`]'s sketch step alone.
pub fn sketch_upload<G: CryptoRng + ?Sized>(
    x: &[i64],
    rng: &mut G,
) -> [zeroize::Zeroizing<[u8; SKETCH_BYTES]>; 3] {
    let kappa = random_element(rng);
    let tau = sketch(kappa, x);
    let (a, b) = (random_element(rng), random_element(rng));
    let ks = [a, b, kappa.sub(a).sub(b)];
    let (a, b) = (random_element(rng), random_element(rng));
    let ts = [a, b, tau.sub(a).sub(b)];
    [0, 1, 2].map(|h| {
        let mut out = zeroize::Zeroizing::new([0u8; SKETCH_BYTES]);
        out[..16].copy_from_slice(&ks[h].to_le_bytes());
        out[16..].copy_from_slice(&ts[h].to_le_bytes());
        out
    })
}

/// Decodes one helper's sketch shares: exactly [`SKETCH_BYTES`] bytes, both
/// elements canonical; `None` otherwise.
pub fn decode_sketch(bytes: &[u8]) -> Option<(SketchShare, SketchShare)> {
    if bytes.len() != SKETCH_BYTES {
        return None;
    }
    let element = |b: &[u8]| {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        let v = F127::from_le_bytes(a);
        zeroize::Zeroize::zeroize(&mut a);
        v
    };
    Some((
        SketchShare(element(&bytes[..16])?),
        SketchShare(element(&bytes[16..])?),
    ))
}

impl HelperUpload {
    /// The helper's share vector embedded in F_p as integers in [0, 2^k).
    pub(crate) fn expand(
        &self,
        helper: HelperIndex,
        len: usize,
        context: [u8; 32],
    ) -> Option<Vec<F127>> {
        match &self.share {
            UploadShare::Z32(s) => {
                let mut acc = vec![0u32; len];
                s.accumulate_into(&mut acc, context, self.client_index, helper.index())
                    .ok()?;
                Some(
                    acc.into_iter()
                        .map(|v| F127::from_u64(u64::from(v)))
                        .collect(),
                )
            }
            UploadShare::Z64(s) => {
                let mut acc = vec![0u64; len];
                s.accumulate_into(&mut acc, context, self.client_index, helper.index())
                    .ok()?;
                Some(acc.into_iter().map(F127::from_u64).collect())
            }
        }
    }

    pub(crate) fn ring(&self) -> UploadRing {
        match self.share {
            UploadShare::Z32(_) => UploadRing::Z32,
            UploadShare::Z64(_) => UploadRing::Z64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shares_reconstruct_and_sketch_matches() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([4; 32]);
        let x = vec![0i64, 1, -1, i64::from(i32::MAX), i64::from(i32::MIN)];
        let ups = share_upload(&x, UploadRing::Z32, 5, [1; 32], &mut rng).expect("in range");
        let mut sum = vec![0u64; x.len()];
        for (h, u) in ups.iter().enumerate() {
            let v = u
                .expand(HelperIndex::ALL[h], x.len(), [1; 32])
                .expect("expands");
            for (s, e) in sum.iter_mut().zip(v) {
                *s = s.wrapping_add(e.value() as u64);
            }
        }
        let back: Vec<i64> = sum.iter().map(|&s| i64::from(s as u32 as i32)).collect();
        assert_eq!(back, x);
        let kappa = ups.iter().fold(F127::ZERO, |a, u| a.add(u.kappa.get()));
        let tau = ups.iter().fold(F127::ZERO, |a, u| a.add(u.tau.get()));
        // Independent reference: Horner evaluation of Σ κ^(j+1) x_j.
        let horner = x
            .iter()
            .rev()
            .fold(F127::ZERO, |acc, &v| acc.add(F127::from_i64(v)).mul(kappa));
        assert_eq!(tau, horner);
        // The sketch step alone: shares of κ and τ = Σ κ^(j+1) x_j that
        // decode, and only from exactly 32 canonical bytes.
        let parts = sketch_upload(&x, &mut rng);
        let decoded: Vec<_> = parts
            .iter()
            .map(|p| decode_sketch(p.as_slice()).expect("canonical"))
            .collect();
        let k = decoded.iter().fold(F127::ZERO, |a, (k, _)| a.add(k.get()));
        let t = decoded.iter().fold(F127::ZERO, |a, (_, t)| a.add(t.get()));
        assert_eq!(t, sketch(k, &x));
        assert!(decode_sketch(&[0u8; 31]).is_none());
        assert!(decode_sketch(&[0u8; 33]).is_none());
        assert!(
            decode_sketch(&[0xff; 32]).is_none(),
            "2^128 - 1 is not canonical"
        );
        assert!(matches!(
            share_upload(&[1i64 << 31], UploadRing::Z32, 0, [0; 32], &mut rng),
            Err(ClientError::OutOfRange { index: 0, bits: 32 })
        ));
    }
}
