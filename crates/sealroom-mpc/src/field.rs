//! The Mersenne prime field F_p, p = 2^127 − 1, every MPC value lives in.
//!
//! **Why this field.** Statistically masked comparison and truncation
//! (Catrina & de Hoogh, FC 2010, §3; Catrina & Saxena, FC 2010, §3) open
//! `a + r` with `r` chosen κ = 40 bits wider than the data, and need
//! `p > 2^(k+κ+1)`; client uploads in Z_2^64 are summed over the integers
//! before reduction (`k' = 66`), so 127 bits leave ≥ 20 bits of headroom. The
//! field is also large enough that one MAC check and one Chida et al.
//! verification each fail to catch a cheat with probability ≈ t/2^127.
//! `sealroom_core`'s p = 2^61 − 1 is too small: 61 − 40 leaves 20 data bits.
//!
//! **Representation.** A canonical `u128` in `[0, p)`. The wire encoding is
//! 16 bytes little endian, and [`F127::from_le_bytes`] refuses values ≥ p so
//! every element has exactly one encoding.
//!
//! **Constant time.** `add`, `sub`, `neg` and `mul` contain no branches or
//! table lookups on their operands: reductions use the top bit of a wrapped
//! difference as a mask. The 254-bit product is assembled from four 64×64
//! multiplies and reduced with 2^127 ≡ 1 (mod p). [`F127::inverse`] and
//! [`F127::sqrt`] are fixed exponentiations (`x^(p−2)` and `x^((p+1)/4)`,
//! p ≡ 3 mod 4), so their operation sequence is independent of `x`.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};

/// The modulus p = 2^127 − 1.
pub const P: u128 = (1u128 << 127) - 1;

/// An element of F_p (p = 2^127 − 1) in canonical form.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct F127(u128);

/// Bytes of one encoded element.
pub const ELEMENT_BYTES: usize = 16;

impl F127 {
    /// Zero.
    pub const ZERO: F127 = F127(0);
    /// One.
    pub const ONE: F127 = F127(1);
    /// The inverse of 2, (p + 1) / 2.
    pub const INV2: F127 = F127((P >> 1) + 1);

    /// Reduces any `u128` into the field (branch-free).
    #[inline(always)]
    pub const fn new(v: u128) -> F127 {
        F127(reduce_once((v & P) + (v >> 127)))
    }

    /// Wraps a value the caller guarantees is `< p` (crate-internal fast
    /// paths that have already checked it).
    #[inline(always)]
    pub(crate) const fn from_reduced(v: u128) -> F127 {
        debug_assert!(v < P);
        F127(v)
    }

    /// Accepts only canonical values (`v < p`).
    #[inline]
    pub const fn from_canonical(v: u128) -> Option<F127> {
        if v < P { Some(F127(v)) } else { None }
    }

    /// The canonical representative.
    #[inline(always)]
    pub const fn value(self) -> u128 {
        self.0
    }

    /// Embeds a signed integer (`p − |v|` for negatives).
    #[inline]
    pub fn from_i128(v: i128) -> F127 {
        let magnitude = F127::new(v.unsigned_abs());
        let neg = magnitude.neg();
        // Select without a branch on the sign.
        let mask = (v >> 127) as u128; // arithmetic shift: all ones iff v < 0
        F127(magnitude.0 ^ ((magnitude.0 ^ neg.0) & mask))
    }

    /// Embeds a signed 64-bit integer.
    #[inline]
    pub fn from_i64(v: i64) -> F127 {
        F127::from_i128(i128::from(v))
    }

    /// Embeds an unsigned 64-bit integer.
    #[inline(always)]
    pub const fn from_u64(v: u64) -> F127 {
        F127(v as u128)
    }

    /// The signed integer of smallest magnitude congruent to `self`
    /// (in `[−(p−1)/2, (p−1)/2]`). Variable time: for public values only.
    pub fn vartime_to_i128(self) -> i128 {
        if self.0 <= P >> 1 {
            self.0 as i128
        } else {
            -((P - self.0) as i128)
        }
    }

    /// `2^k` for `k < 127`.
    #[inline]
    pub const fn pow2(k: u32) -> F127 {
        F127(1u128 << (k % 127))
    }

    /// `self + rhs`.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub const fn add(self, rhs: F127) -> F127 {
        // Both < 2^127, so the sum fits in a u128.
        F127(reduce_once(self.0 + rhs.0))
    }

    /// `self − rhs`.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub const fn sub(self, rhs: F127) -> F127 {
        let t = self.0.wrapping_sub(rhs.0);
        // A borrow leaves bit 127 set (the difference is within ±2^127).
        let mask = (t >> 127).wrapping_neg();
        F127(t.wrapping_add(P & mask))
    }

    /// `−self`.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub const fn neg(self) -> F127 {
        F127::ZERO.sub(self)
    }

    /// `self · rhs`: four 64×64-bit products, then Mersenne reduction.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub const fn mul(self, rhs: F127) -> F127 {
        let (a0, a1) = (self.0 as u64 as u128, self.0 >> 64);
        let (b0, b1) = (rhs.0 as u64 as u128, rhs.0 >> 64);
        let p00 = a0 * b0;
        // a1, b1 < 2^63, so each cross product is < 2^127 and their sum fits.
        let mid = a0 * b1 + a1 * b0;
        let (lo, carry) = p00.overflowing_add(mid << 64);
        let hi = a1 * b1 + (mid >> 64) + carry as u128;
        // product = hi·2^128 + lo = (2·hi + lo_127)·2^127 + (lo mod 2^127),
        // and 2^127 ≡ 1. The product is < 2^254, so 2·hi + 1 < 2^127.
        let folded = (lo & P) + ((hi << 1) | (lo >> 127));
        F127(reduce_once((folded & P) + (folded >> 127)))
    }

    /// `self²`.
    #[inline(always)]
    pub const fn square(self) -> F127 {
        self.mul(self)
    }

    /// `self^exp` by square-and-multiply over all 128 bits of the public
    /// exponent (same operation sequence for every `self`).
    pub fn pow(self, exp: u128) -> F127 {
        let mut result = F127::ONE;
        let mut base = self;
        let mut e = exp;
        for _ in 0..128 {
            let m = result.mul(base);
            let mask = (e & 1).wrapping_neg();
            result = F127(result.0 ^ ((result.0 ^ m.0) & mask));
            base = base.square();
            e >>= 1;
        }
        result
    }

    /// Multiplicative inverse (`x^(p−2)`); `None` for zero.
    pub fn inverse(self) -> Option<F127> {
        let inv = self.pow(P - 2);
        if bool::from(self.ct_eq(&F127::ZERO)) {
            None
        } else {
            Some(inv)
        }
    }

    /// A square root, `x^((p+1)/4) = x^(2^125)` (125 squarings), or `None`
    /// if `self` is not a square. Of the two roots ±y this returns whichever
    /// the exponentiation yields; every party computes the same one.
    pub fn sqrt(self) -> Option<F127> {
        let mut y = self;
        for _ in 0..125 {
            y = y.square();
        }
        if y.square() == self { Some(y) } else { None }
    }

    /// The canonical 16-byte little-endian encoding.
    #[inline]
    pub const fn to_le_bytes(self) -> [u8; ELEMENT_BYTES] {
        self.0.to_le_bytes()
    }

    /// Parses a 16-byte little-endian encoding, refusing values ≥ p.
    #[inline]
    pub const fn from_le_bytes(bytes: [u8; ELEMENT_BYTES]) -> Option<F127> {
        F127::from_canonical(u128::from_le_bytes(bytes))
    }

    /// Maps 16 uniformly random bytes to an element, or `None` for the one
    /// rejected pattern (127 ones after dropping the top bit; probability
    /// 2^−127), so sampling is exactly uniform.
    #[inline(always)]
    pub const fn from_uniform_bytes(bytes: [u8; ELEMENT_BYTES]) -> Option<F127> {
        F127::from_canonical(u128::from_le_bytes(bytes) & P)
    }
}

/// Reduces `v < 2p + 2` to `[0, p)` without branching.
#[inline(always)]
const fn reduce_once(v: u128) -> u128 {
    let t = v.wrapping_sub(P);
    // v < p  ⇔  the subtraction wrapped  ⇔  bit 127 of t is set.
    let mask = (t >> 127).wrapping_neg();
    t.wrapping_add(P & mask)
}

impl fmt::Debug for F127 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Elements are public values (coefficients, opened values); secret
        // shares live in the redacted types of `crate::share`.
        write!(f, "F127({})", self.0)
    }
}

impl ConstantTimeEq for F127 {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl zeroize::DefaultIsZeroes for F127 {}

/// Element-wise kernels over slices. Each is a plain zip over equal-length
/// slices (lengths are checked by the callers, which own the shapes) so LLVM
/// removes bounds checks and vectorises the add/sub loops.
pub mod kernels {
    use super::F127;

    /// `acc[i] += x[i]`.
    #[inline]
    pub fn add_assign(acc: &mut [F127], x: &[F127]) {
        debug_assert_eq!(acc.len(), x.len());
        for (a, &b) in acc.iter_mut().zip(x) {
            *a = a.add(b);
        }
    }

    /// `acc[i] −= x[i]`.
    #[inline]
    pub fn sub_assign(acc: &mut [F127], x: &[F127]) {
        debug_assert_eq!(acc.len(), x.len());
        for (a, &b) in acc.iter_mut().zip(x) {
            *a = a.sub(b);
        }
    }

    /// `out[i] = a[i] − b[i]`.
    #[inline]
    pub fn sub_into(out: &mut [F127], a: &[F127], b: &[F127]) {
        debug_assert!(out.len() == a.len() && a.len() == b.len());
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x.sub(y);
        }
    }

    /// `acc[i] += c · x[i]`.
    #[inline]
    pub fn mul_add_assign(acc: &mut [F127], c: F127, x: &[F127]) {
        debug_assert_eq!(acc.len(), x.len());
        for (a, &b) in acc.iter_mut().zip(x) {
            *a = a.add(c.mul(b));
        }
    }

    /// `x[i] *= c`.
    #[inline]
    pub fn scale(x: &mut [F127], c: F127) {
        for a in x.iter_mut() {
            *a = a.mul(c);
        }
    }

    /// `acc[i] *= y[i]`.
    #[inline]
    pub fn mul_assign(acc: &mut [F127], y: &[F127]) {
        debug_assert_eq!(acc.len(), y.len());
        for (a, &b) in acc.iter_mut().zip(y) {
            *a = a.mul(b);
        }
    }

    /// `Σ a[i]·b[i]` (sums of products reduced after every product).
    #[inline]
    pub fn dot(a: &[F127], b: &[F127]) -> F127 {
        debug_assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .fold(F127::ZERO, |acc, (&x, &y)| acc.add(x.mul(y)))
    }

    /// `Σ x[i]`.
    #[inline]
    pub fn sum(x: &[F127]) -> F127 {
        x.iter().fold(F127::ZERO, |acc, &v| acc.add(v))
    }

    /// Appends the packed little-endian encoding of `x` to `out`.
    pub fn encode_into(x: &[F127], out: &mut Vec<u8>) {
        out.reserve(x.len() * super::ELEMENT_BYTES);
        for v in x {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes exactly `out.len()` packed elements from `bytes`; `None` if
    /// the length differs or any element is not canonical.
    pub fn decode_into(bytes: &[u8], out: &mut [F127]) -> Option<()> {
        if bytes.len() != out.len() * super::ELEMENT_BYTES {
            return None;
        }
        let mut bad = 0u8;
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(super::ELEMENT_BYTES)) {
            let mut word = [0u8; super::ELEMENT_BYTES];
            word.copy_from_slice(chunk);
            let v = u128::from_le_bytes(word);
            bad |= u8::from(v >= super::P);
            *o = F127(v & super::P);
        }
        if bad == 0 { Some(()) } else { None }
    }
}

/// Inverts every element of `values` with one inversion (Montgomery's
/// trick); `None` (input unchanged) if any element is zero.
pub fn batch_inverse(values: &mut [F127]) -> Option<()> {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = F127::ONE;
    for &v in values.iter() {
        prefix.push(acc);
        acc = acc.mul(v);
    }
    let mut inv = acc.inverse()?;
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let original = *v;
        *v = inv.mul(before);
        inv = inv.mul(original);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn big(v: u128) -> BigUint {
        BigUint::from(v)
    }
    fn p() -> BigUint {
        big(P)
    }
    fn back(v: BigUint) -> u128 {
        let digits = v.to_u64_digits();
        let lo = u128::from(*digits.first().unwrap_or(&0));
        let hi = u128::from(*digits.get(1).unwrap_or(&0));
        lo | (hi << 64)
    }
    fn elem() -> impl Strategy<Value = u128> {
        prop_oneof![
            0..P,
            Just(0u128),
            Just(1),
            Just(P - 1),
            Just(P - 2),
            Just(1u128 << 126),
            Just(u64::MAX as u128),
            Just((1u128 << 64) - 1 + (1u128 << 100)),
        ]
    }

    proptest! {
        #[test]
        fn mul_matches_bigint(a in elem(), b in elem()) {
            let want = back(big(a) * big(b) % p());
            prop_assert_eq!(F127(a).mul(F127(b)).value(), want);
        }

        #[test]
        fn add_sub_neg_match_bigint(a in elem(), b in elem()) {
            prop_assert_eq!(F127(a).add(F127(b)).value(), back((big(a) + big(b)) % p()));
            prop_assert_eq!(F127(a).sub(F127(b)).value(), back((big(a) + p() - big(b)) % p()));
            prop_assert_eq!(F127(a).neg().value(), back((p() - big(a)) % p()));
        }

        #[test]
        fn new_reduces_every_u128(v in any::<u128>()) {
            prop_assert_eq!(F127::new(v).value(), back(big(v) % p()));
        }

        #[test]
        fn field_laws(a in elem(), b in elem(), c in elem()) {
            let (a, b, c) = (F127(a), F127(b), F127(c));
            prop_assert_eq!(a.mul(b.add(c)), a.mul(b).add(a.mul(c)));
            prop_assert_eq!(a.mul(b).mul(c), a.mul(b.mul(c)));
            prop_assert_eq!(a.mul(b), b.mul(a));
            prop_assert_eq!(a.add(b).sub(b), a);
        }

        #[test]
        fn inverse_matches_bigint(a in 1..P) {
            let inv = F127(a).inverse().expect("nonzero");
            prop_assert_eq!(inv.value(), back(big(a).modpow(&(p() - 2u32), &p())));
            prop_assert_eq!(F127(a).mul(inv), F127::ONE);
        }

        #[test]
        fn sqrt_of_square(a in elem()) {
            let sq = F127(a).square();
            let r = sq.sqrt().expect("a square has a root");
            prop_assert_eq!(r.square(), sq);
            prop_assert!(r == F127(a) || r == F127(a).neg());
        }

        #[test]
        fn signed_embedding(v in any::<i64>()) {
            prop_assert_eq!(F127::from_i64(v).vartime_to_i128(), i128::from(v));
            let want = if v < 0 { back(p() - big(v.unsigned_abs() as u128)) } else { v as u128 };
            prop_assert_eq!(F127::from_i64(v).value(), want);
        }

        #[test]
        fn encoding_round_trips(a in elem()) {
            prop_assert_eq!(F127::from_le_bytes(F127(a).to_le_bytes()), Some(F127(a)));
        }

        #[test]
        fn kernels_match_scalar(xs in proptest::collection::vec(elem(), 0..20), c in elem()) {
            let xs: Vec<F127> = xs.into_iter().map(F127).collect();
            let c = F127(c);
            let mut acc = vec![F127::ONE; xs.len()];
            kernels::mul_add_assign(&mut acc, c, &xs);
            for (a, x) in acc.iter().zip(&xs) {
                prop_assert_eq!(*a, F127::ONE.add(c.mul(*x)));
            }
            let d = kernels::dot(&xs, &acc);
            let want = xs.iter().zip(&acc).fold(big(0), |s, (x, y)| s + big(x.0) * big(y.0)) % p();
            prop_assert_eq!(d.value(), back(want));
            let mut bytes = Vec::new();
            kernels::encode_into(&xs, &mut bytes);
            let mut back_again = vec![F127::ZERO; xs.len()];
            prop_assert!(kernels::decode_into(&bytes, &mut back_again).is_some());
            prop_assert_eq!(back_again, xs);
        }
    }

    #[test]
    fn edges() {
        assert_eq!(F127::new(P), F127::ZERO);
        assert_eq!(F127::new(u128::MAX).value(), 1);
        assert_eq!(F127::from_canonical(P), None);
        assert_eq!(F127::from_le_bytes(P.to_le_bytes()), None);
        assert_eq!(F127::from_le_bytes(u128::MAX.to_le_bytes()), None);
        assert_eq!(F127::ZERO.inverse(), None);
        assert_eq!(F127(P - 1).mul(F127(P - 1)), F127::ONE);
        assert_eq!(F127::INV2.mul(F127::from_u64(2)), F127::ONE);
        // −1 is not a square when p ≡ 3 (mod 4).
        assert_eq!(F127::ONE.neg().sqrt(), None);
        assert_eq!(F127::from_uniform_bytes([0xff; 16]), None);
        assert_eq!(
            F127::from_uniform_bytes([0xfe; 16]).map(F127::value),
            Some(u128::from_le_bytes([0xfe; 16]) & P)
        );
        assert_eq!(F127::from_i128(-1), F127(P - 1));
        assert_eq!(
            F127::from_i128(i128::from(i64::MIN)).vartime_to_i128(),
            i128::from(i64::MIN)
        );
    }

    #[test]
    fn decode_rejects_bad_lengths_and_noncanonical() {
        let mut out = [F127::ZERO; 2];
        assert!(kernels::decode_into(&[0u8; 31], &mut out).is_none());
        assert!(kernels::decode_into(&[0u8; 33], &mut out).is_none());
        let mut bytes = vec![0u8; 32];
        bytes[16..].copy_from_slice(&P.to_le_bytes());
        assert!(kernels::decode_into(&bytes, &mut out).is_none());
    }
}
