//! The rings shares live in: Z_2^32 and Z_2^64 (wrapping machine arithmetic) and
//! the prime field F_p with p = 2^61 − 1 ([`crate::field`]).
//!
//! Every element type implements [`Ring`], so sharing, PRG expansion and vector
//! kernels are written once and monomorphised per ring; the element operations
//! are `#[inline(always)]` and branch-free so the vector loops in
//! [`crate::vector`] auto-vectorise.
//!
//! Signed integers (quantized values, see [`crate::quant`]) are embedded with
//! [`Ring::from_i64`] (two's complement in Z_2^k, `p − |x|` for negatives in
//! F_p) and read back with [`Ring::to_i64`]; the round is the same as long as
//! the true sum lies in [`Ring::signed_max`]'s range, which the headroom check
//! of [`crate::quant::RoundEncoding`] guarantees by construction.

use core::fmt::Debug;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::DefaultIsZeroes;

use crate::field::Fp;

/// Which ring a round computes in. Travels in round descriptors.
///
/// Deliberately exhaustive: every `match` on it names each ring, so adding
/// one is a compile error wherever a ring must be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RingKind {
    /// Integers modulo 2^32, for additive sharing of small updates.
    Z2_32,
    /// Integers modulo 2^64, for additive sharing with more headroom.
    Z2_64,
    /// The Mersenne prime field F_p, p = 2^61 − 1, required by Shamir sharing.
    Fp61,
}

impl RingKind {
    /// Bytes one element occupies on the wire (little endian).
    pub const fn element_bytes(self) -> usize {
        match self {
            RingKind::Z2_32 => 4,
            RingKind::Z2_64 | RingKind::Fp61 => 8,
        }
    }

    /// The largest magnitude a signed value (or a sum of them) may have so that
    /// it survives the embedding and comes back unchanged.
    pub const fn signed_max(self) -> u64 {
        match self {
            RingKind::Z2_32 => <u32 as Ring>::SIGNED_MAX,
            RingKind::Z2_64 => <u64 as Ring>::SIGNED_MAX,
            RingKind::Fp61 => <Fp as Ring>::SIGNED_MAX,
        }
    }

    /// Width of an element in bits for Z_2^k (`Some(k)`); `None` for F_p,
    /// whose shares cannot be narrowed.
    pub const fn wrapping_bits(self) -> Option<u32> {
        match self {
            RingKind::Z2_32 => Some(32),
            RingKind::Z2_64 => Some(64),
            RingKind::Fp61 => None,
        }
    }

    /// Stable lower-case name, used in configs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            RingKind::Z2_32 => "z2_32",
            RingKind::Z2_64 => "z2_64",
            RingKind::Fp61 => "fp61",
        }
    }
}

impl core::fmt::Display for RingKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// An element of one of sealroom's rings.
///
/// Implementations must be branch-free in `add`, `sub`, `neg` and `mul` so that
/// share arithmetic is constant-time and vectorisable.
pub trait Ring:
    Copy + Eq + Default + Debug + Send + Sync + DefaultIsZeroes + ConstantTimeEq + 'static
{
    /// Which ring this is.
    const KIND: RingKind;
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Size of the little-endian encoding.
    const BYTES: usize;
    /// Largest |x| for which `to_i64(from_i64(x)) == x`.
    const SIGNED_MAX: u64;

    /// `self + rhs` in the ring.
    fn add(self, rhs: Self) -> Self;
    /// `self − rhs` in the ring.
    fn sub(self, rhs: Self) -> Self;
    /// `−self` in the ring.
    fn neg(self) -> Self;
    /// `self · rhs` in the ring.
    fn mul(self, rhs: Self) -> Self;

    /// Embeds a signed integer (wrapping in Z_2^k, reduced in F_p).
    fn from_i64(v: i64) -> Self;
    /// Reads an element back as the signed integer of smallest magnitude that
    /// maps to it.
    fn to_i64(self) -> i64;

    /// Writes the canonical little-endian encoding into `out` (`BYTES` long).
    fn write_le(self, out: &mut [u8]);
    /// Parses a little-endian encoding; `None` if `bytes` is not `BYTES` long
    /// or (for F_p) not canonical.
    fn read_le(bytes: &[u8]) -> Option<Self>;

    /// Whether a uniformly random keystream word (`WORD_BYTES` little-endian
    /// bytes, zero-extended to `u64`) must be rejected. Only F_p ever rejects;
    /// that is how PRG expansion samples the field without the bias of a `mod`.
    fn is_rejected_word(word: u64) -> bool;
    /// Maps a word that [`Ring::is_rejected_word`] accepted to a uniformly
    /// random element.
    fn from_accepted_word(word: u64) -> Self;
    /// Maps a keystream word to an element, or `None` if it is rejected.
    #[inline(always)]
    fn from_uniform_word(word: u64) -> Option<Self> {
        if Self::is_rejected_word(word) {
            None
        } else {
            Some(Self::from_accepted_word(word))
        }
    }
    /// How many keystream bytes one candidate element consumes.
    const WORD_BYTES: usize;
}

/// A ring Z_2^k. Reducing mod 2^w (w ≤ k) is a ring homomorphism onto
/// Z_2^w, so shares cut to their low w bits still add up to the low w bits
/// of the sum; sealroom narrows a round's shares this way when the headroom
/// check proves that w bits hold the sum ([`crate::RoundEncoding::narrowest`],
/// docs/protocol.md "Narrow shares").
pub trait WrappingRing: Ring {
    /// k.
    const BITS: u32;
    /// The element as an unsigned integer below 2^k.
    fn low_bits(self) -> u64;
    /// The element of an unsigned integer, reduced mod 2^k.
    fn from_low_bits(v: u64) -> Self;
}

macro_rules! impl_wrapping_ring {
    ($t:ty, $kind:expr, $signed:ty) => {
        impl Ring for $t {
            const KIND: RingKind = $kind;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const BYTES: usize = core::mem::size_of::<$t>();
            const SIGNED_MAX: u64 = <$signed>::MAX as u64;
            const WORD_BYTES: usize = core::mem::size_of::<$t>();

            #[inline(always)]
            fn add(self, rhs: Self) -> Self {
                self.wrapping_add(rhs)
            }
            #[inline(always)]
            fn sub(self, rhs: Self) -> Self {
                self.wrapping_sub(rhs)
            }
            #[inline(always)]
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            #[inline(always)]
            fn mul(self, rhs: Self) -> Self {
                self.wrapping_mul(rhs)
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                // Two's complement truncation is the ring homomorphism Z -> Z_2^k.
                v as $t
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as $signed as i64
            }
            #[inline(always)]
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline(always)]
            fn read_le(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
            #[inline(always)]
            fn is_rejected_word(_word: u64) -> bool {
                false
            }
            #[inline(always)]
            fn from_accepted_word(word: u64) -> Self {
                word as $t
            }
        }
    };
}

impl_wrapping_ring!(u32, RingKind::Z2_32, i32);
impl_wrapping_ring!(u64, RingKind::Z2_64, i64);

macro_rules! impl_z2k {
    ($t:ty) => {
        impl WrappingRing for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn low_bits(self) -> u64 {
                u64::from(self)
            }
            #[inline(always)]
            fn from_low_bits(v: u64) -> Self {
                // Truncation is the reduction mod 2^k.
                v as $t
            }
        }
    };
}

impl_z2k!(u32);
impl_z2k!(u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_embedding_round_trips_at_the_edges() {
        for v in [0i64, 1, -1, i32::MAX as i64, i32::MIN as i64 + 1] {
            assert_eq!(<u32 as Ring>::from_i64(v).to_i64(), v);
        }
        for v in [0i64, 1, -1, i64::MAX, i64::MIN + 1] {
            assert_eq!(<u64 as Ring>::from_i64(v).to_i64(), v);
        }
    }

    #[test]
    fn wrapping_is_the_ring_law() {
        assert_eq!(Ring::add(u32::MAX, 1u32), 0);
        assert_eq!(Ring::sub(0u64, 1u64), u64::MAX);
        assert_eq!(Ring::neg(1u32), u32::MAX);
    }

    #[test]
    fn read_le_rejects_wrong_lengths() {
        assert_eq!(<u32 as Ring>::read_le(&[1, 2, 3]), None);
        assert_eq!(<u64 as Ring>::read_le(&[0; 9]), None);
        assert_eq!(<u32 as Ring>::read_le(&[1, 0, 0, 0]), Some(1));
    }
}
