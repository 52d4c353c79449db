//! The Mersenne prime field F_p, p = 2^61 − 1, used by Shamir sharing
//! ([`crate::shamir`]).
//!
//! Elements are kept canonical (`0 ≤ x < p`). Reduction after a product uses
//! the Mersenne identity 2^61 ≡ 1 (mod p): a 122-bit product `hi·2^61 + lo`
//! reduces to `hi + lo` followed by one conditional subtraction, written as a
//! branch-free `min` so the vector loops stay vectorisable.
//!
//! Inversion is Fermat's little theorem (`x^(p−2)`) with a fixed exponent, so
//! its running time does not depend on `x`; [`batch_inverse`] uses
//! Montgomery's trick to invert many elements with one exponentiation.

use core::fmt;

use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

use crate::ring::{Ring, RingKind};

/// The modulus p = 2^61 − 1.
pub const P: u64 = (1u64 << 61) - 1;

/// An element of F_p in canonical form.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Fp(u64);

impl Fp {
    /// Zero.
    pub const ZERO: Fp = Fp(0);
    /// One.
    pub const ONE: Fp = Fp(1);

    /// Reduces any `u64` into the field.
    #[inline(always)]
    pub const fn new(v: u64) -> Fp {
        // v < 2^64 = 8·2^61, so fold the top 3 bits once, then one conditional subtract.
        let folded = (v & P) + (v >> 61);
        Fp(reduce_once(folded))
    }

    /// Accepts only canonical values (`v < p`), as a decoder must.
    #[inline]
    pub const fn from_canonical(v: u64) -> Option<Fp> {
        if v < P { Some(Fp(v)) } else { None }
    }

    /// The canonical representative.
    #[inline(always)]
    pub const fn value(self) -> u64 {
        self.0
    }

    /// `self^exp` by square-and-multiply over all 64 bits of `exp` (the
    /// sequence of operations depends only on the public exponent).
    pub fn pow(self, exp: u64) -> Fp {
        let mut result = Fp::ONE;
        let mut base = self;
        let mut e = exp;
        for _ in 0..64 {
            let mul = Ring::mul(result, base);
            // Select without branching on the exponent bit.
            let bit = e & 1;
            result = Fp(result.0 ^ ((result.0 ^ mul.0) & bit.wrapping_neg()));
            base = Ring::mul(base, base);
            e >>= 1;
        }
        result
    }

    /// Multiplicative inverse; `None` for zero.
    pub fn inverse(self) -> Option<Fp> {
        if self.0 == 0 {
            None
        } else {
            Some(self.pow(P - 2))
        }
    }
}

/// Reduces `v < 2p` to `[0, p)`. Branch-free with only operations SSE2 has
/// for 64-bit lanes (subtract, logical shift, and, add), so loops over it
/// vectorise even without SSE4.2's 64-bit compares: `v − p` has its top bit set
/// exactly when `v < p` (the difference is within ±2^62), and then `p` is
/// added back.
#[inline(always)]
const fn reduce_once(v: u64) -> u64 {
    let t = v.wrapping_sub(P);
    let borrow = (t >> 63).wrapping_neg();
    t.wrapping_add(P & borrow)
}

/// Inverts every element of `values` in place with one field inversion
/// (Montgomery's trick). Fails, leaving `values` unchanged, if any is zero;
/// the error carries the index of the first zero.
pub fn batch_inverse(values: &mut [Fp]) -> Result<(), ZeroElement> {
    if let Some(index) = values.iter().position(|v| v.0 == 0) {
        return Err(ZeroElement { index });
    }
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Fp::ONE;
    for &v in values.iter() {
        prefix.push(acc);
        acc = Ring::mul(acc, v);
    }
    let mut inv = acc.inverse().ok_or(ZeroElement { index: 0 })?;
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let original = *v;
        *v = Ring::mul(inv, before);
        inv = Ring::mul(inv, original);
    }
    Ok(())
}

/// A zero where an invertible element was required.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("element {index} is zero and has no inverse")]
pub struct ZeroElement {
    /// Position of the first zero element.
    pub index: usize,
}

impl fmt::Debug for Fp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field elements are public values (coefficients, reconstructed sums);
        // secret vectors wrap them in `ShareVec`, whose Debug is redacted.
        write!(f, "Fp({})", self.0)
    }
}

impl From<Fp> for u64 {
    fn from(v: Fp) -> u64 {
        v.0
    }
}

impl TryFrom<u64> for Fp {
    type Error = NonCanonical;
    fn try_from(v: u64) -> Result<Fp, NonCanonical> {
        Fp::from_canonical(v).ok_or(NonCanonical)
    }
}

/// A value ≥ p where a canonical field element was required.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("value is not a canonical element of F_p (must be < 2^61 - 1)")]
pub struct NonCanonical;

impl ConstantTimeEq for Fp {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl zeroize::DefaultIsZeroes for Fp {}

impl Ring for Fp {
    const KIND: RingKind = RingKind::Fp61;
    const ZERO: Self = Fp(0);
    const ONE: Self = Fp(1);
    const BYTES: usize = 8;
    const SIGNED_MAX: u64 = (P - 1) / 2;
    const WORD_BYTES: usize = 8;

    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        Fp(reduce_once(self.0 + rhs.0))
    }
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        // Both operands are < 2^61, so the difference's sign is its top bit.
        let t = self.0.wrapping_sub(rhs.0);
        let borrow = (t >> 63).wrapping_neg();
        Fp(t.wrapping_add(P & borrow))
    }
    #[inline(always)]
    fn neg(self) -> Self {
        Ring::sub(Fp::ZERO, self)
    }
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        let wide = (self.0 as u128) * (rhs.0 as u128);
        let lo = (wide as u64) & P;
        let hi = (wide >> 61) as u64;
        // lo ≤ p and, as both factors are < p, hi ≤ p − 1: lo + hi < 2p.
        Fp(reduce_once(lo + hi))
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        let magnitude = Fp::new(v.unsigned_abs());
        if v < 0 { magnitude.neg() } else { magnitude }
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        if self.0 <= Self::SIGNED_MAX {
            self.0 as i64
        } else {
            -((P - self.0) as i64)
        }
    }
    #[inline(always)]
    fn write_le(self, out: &mut [u8]) {
        out.copy_from_slice(&self.0.to_le_bytes());
    }
    #[inline(always)]
    fn read_le(bytes: &[u8]) -> Option<Self> {
        Fp::from_canonical(u64::from_le_bytes(bytes.try_into().ok()?))
    }
    #[inline(always)]
    fn is_rejected_word(word: u64) -> bool {
        // Keep 61 uniform bits; the only 61-bit value outside the field is p
        // itself (all ones), rejected with probability 2^-61. Tested as a
        // carry out of bit 60 so the check vectorises with SSE2 alone.
        ((word & P) + 1) >> 61 != 0
    }
    #[inline(always)]
    fn from_accepted_word(word: u64) -> Self {
        Fp(word & P)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_mul(a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % P as u128) as u64
    }

    proptest! {
        #[test]
        fn mul_matches_u128_reference(a in 0..P, b in 0..P) {
            prop_assert_eq!(Ring::mul(Fp(a), Fp(b)).value(), reference_mul(a, b));
        }

        #[test]
        fn add_sub_neg_match_reference(a in 0..P, b in 0..P) {
            prop_assert_eq!(Ring::add(Fp(a), Fp(b)).value(), ((a as u128 + b as u128) % P as u128) as u64);
            prop_assert_eq!(Ring::sub(Fp(a), Fp(b)).value(), ((a as u128 + P as u128 - b as u128) % P as u128) as u64);
            prop_assert_eq!(Ring::add(Fp(a), Ring::neg(Fp(a))), Fp::ZERO);
        }

        #[test]
        fn new_reduces_every_u64(v in any::<u64>()) {
            prop_assert_eq!(Fp::new(v).value(), v % P);
        }

        #[test]
        fn inverse_is_inverse(a in 1..P) {
            let inv = Fp(a).inverse().expect("nonzero");
            prop_assert_eq!(Ring::mul(Fp(a), inv), Fp::ONE);
        }

        #[test]
        fn batch_inverse_matches_single(values in proptest::collection::vec(1..P, 0..40)) {
            let mut batch: Vec<Fp> = values.iter().map(|&v| Fp(v)).collect();
            batch_inverse(&mut batch).expect("no zeros");
            for (&v, inv) in values.iter().zip(&batch) {
                prop_assert_eq!(Some(*inv), Fp(v).inverse());
            }
        }

        #[test]
        fn signed_embedding_round_trips(v in -(Fp::SIGNED_MAX as i64)..=(Fp::SIGNED_MAX as i64)) {
            prop_assert_eq!(Fp::from_i64(v).to_i64(), v);
        }
    }

    #[test]
    fn edges() {
        assert_eq!(Fp::new(P), Fp::ZERO);
        assert_eq!(Fp::new(u64::MAX).value(), u64::MAX % P);
        assert_eq!(Fp::from_canonical(P), None);
        assert_eq!(Fp::ZERO.inverse(), None);
        assert_eq!(Ring::neg(Fp::ZERO), Fp::ZERO);
        assert_eq!(Ring::mul(Fp(P - 1), Fp(P - 1)), Fp::ONE);
        assert_eq!(Fp::from_uniform_word(P), None);
        assert_eq!(Fp::from_uniform_word(u64::MAX), None);
        assert_eq!(Fp::from_uniform_word(P - 1), Some(Fp(P - 1)));
        assert_eq!(<Fp as Ring>::read_le(&P.to_le_bytes()), None);
    }

    #[test]
    fn batch_inverse_reports_the_first_zero_and_leaves_input_alone() {
        let mut values = vec![Fp(3), Fp(0), Fp(5)];
        assert_eq!(batch_inverse(&mut values), Err(ZeroElement { index: 1 }));
        assert_eq!(values, vec![Fp(3), Fp(0), Fp(5)]);
    }
}
