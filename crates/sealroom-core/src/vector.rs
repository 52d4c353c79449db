//! Element-wise vector kernels over any [`Ring`], in place and allocation-free.
//!
//! These are the hot loops of a round (a helper adds hundreds of share vectors).
//! They are written as plain zipped iterations over equal-length slices so that
//! LLVM drops the bounds checks and vectorises them; the length check happens
//! once, up front, and a mismatch is a typed error rather than a silent
//! truncation.

use crate::ring::{Ring, WrappingRing};

/// Two vectors that had to be the same length were not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("vector length mismatch: expected {expected} elements, got {actual}")]
pub struct LengthMismatch {
    /// The length required (that of the destination).
    pub expected: usize,
    /// The length supplied.
    pub actual: usize,
}

#[inline]
fn check(expected: usize, actual: usize) -> Result<(), LengthMismatch> {
    if expected == actual {
        Ok(())
    } else {
        Err(LengthMismatch { expected, actual })
    }
}

/// `acc[i] += x[i]` for every i.
#[inline]
pub fn add_assign<R: Ring>(acc: &mut [R], x: &[R]) -> Result<(), LengthMismatch> {
    check(acc.len(), x.len())?;
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = a.add(b);
    }
    Ok(())
}

/// `acc[i] -= x[i]` for every i.
#[inline]
pub fn sub_assign<R: Ring>(acc: &mut [R], x: &[R]) -> Result<(), LengthMismatch> {
    check(acc.len(), x.len())?;
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = a.sub(b);
    }
    Ok(())
}

/// `out[i] = a[i] + b[i]` for every i.
#[inline]
pub fn add_into<R: Ring>(out: &mut [R], a: &[R], b: &[R]) -> Result<(), LengthMismatch> {
    check(out.len(), a.len())?;
    check(out.len(), b.len())?;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x.add(y);
    }
    Ok(())
}

/// `x[i] = −x[i]` for every i.
#[inline]
pub fn neg_in_place<R: Ring>(x: &mut [R]) {
    for a in x.iter_mut() {
        *a = a.neg();
    }
}

/// `x[i] = c · x[i]` for every i.
#[inline]
pub fn scale_in_place<R: Ring>(x: &mut [R], c: R) {
    for a in x.iter_mut() {
        *a = a.mul(c);
    }
}

/// `acc[i] += c · x[i]` for every i (the kernel of Lagrange interpolation).
#[inline]
pub fn mul_add_assign<R: Ring>(acc: &mut [R], c: R, x: &[R]) -> Result<(), LengthMismatch> {
    check(acc.len(), x.len())?;
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = a.add(c.mul(b));
    }
    Ok(())
}

/// Encodes a vector as packed little-endian bytes (the wire format).
pub fn encode_le<R: Ring>(x: &[R]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() * R::BYTES];
    for (chunk, &v) in out.chunks_exact_mut(R::BYTES).zip(x) {
        v.write_le(chunk);
    }
    out
}

/// Why a packed vector failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The byte length is not `expected_elements × element size`.
    #[error("packed vector has {actual_bytes} bytes, expected {expected_bytes}")]
    Length {
        /// Bytes required.
        expected_bytes: usize,
        /// Bytes supplied.
        actual_bytes: usize,
    },
    /// An element is not a canonical encoding (a field value ≥ p).
    #[error("element {index} is not canonical")]
    NonCanonical {
        /// Position of the offending element.
        index: usize,
    },
    /// A bit-packed vector's padding bits (after its last element) are not
    /// zero: not the canonical encoding.
    #[error("the padding bits after the last packed element are not zero")]
    NonZeroPadding,
}

/// Refuses `bytes` unless it is exactly `expected` bytes long (`None`: a
/// length that overflows `usize`); the expected length.
fn check_length(bytes: &[u8], expected: Option<usize>) -> Result<usize, DecodeError> {
    match expected {
        Some(expected_bytes) if bytes.len() == expected_bytes => Ok(expected_bytes),
        expected => Err(DecodeError::Length {
            expected_bytes: expected.unwrap_or(usize::MAX),
            actual_bytes: bytes.len(),
        }),
    }
}

/// Decodes exactly `len` packed little-endian elements, refusing wrong lengths
/// and non-canonical field elements.
pub fn decode_le<R: Ring>(bytes: &[u8], len: usize) -> Result<Vec<R>, DecodeError> {
    check_length(bytes, len.checked_mul(R::BYTES))?;
    bytes
        .chunks_exact(R::BYTES)
        .enumerate()
        .map(|(index, chunk)| R::read_le(chunk).ok_or(DecodeError::NonCanonical { index }))
        .collect()
}

/// `acc[i] += decode(bytes[i])`: decodes a packed little-endian vector and
/// adds it in one pass, without materialising it (the helper's hot loop for
/// vector shares). Refuses a wrong length or a non-canonical element, leaving
/// `acc` unspecified only in the non-canonical case (the caller discards it).
pub fn add_le_bytes_assign<R: Ring>(acc: &mut [R], bytes: &[u8]) -> Result<(), DecodeError> {
    let expected_bytes = acc.len() * R::BYTES;
    if bytes.len() != expected_bytes {
        return Err(DecodeError::Length {
            expected_bytes,
            actual_bytes: bytes.len(),
        });
    }
    let mut all_canonical = true;
    for (a, chunk) in acc.iter_mut().zip(bytes.chunks_exact(R::BYTES)) {
        match R::read_le(chunk) {
            Some(v) => *a = a.add(v),
            None => all_canonical = false,
        }
    }
    if all_canonical {
        Ok(())
    } else {
        let index = bytes
            .chunks_exact(R::BYTES)
            .position(|c| R::read_le(c).is_none())
            .unwrap_or(0);
        Err(DecodeError::NonCanonical { index })
    }
}

/// Checks that `bytes` is exactly `len` canonical packed elements, without
/// decoding into a vector.
pub fn check_le<R: Ring>(bytes: &[u8], len: usize) -> Result<(), DecodeError> {
    let expected_bytes = len.saturating_mul(R::BYTES);
    if bytes.len() != expected_bytes {
        return Err(DecodeError::Length {
            expected_bytes,
            actual_bytes: bytes.len(),
        });
    }
    match bytes
        .chunks_exact(R::BYTES)
        .position(|c| R::read_le(c).is_none())
    {
        Some(index) => Err(DecodeError::NonCanonical { index }),
        None => Ok(()),
    }
}

/// How a vector over Z_2^k travels: each element in its ring's full
/// little-endian encoding ([`encode_le`]), or only its low `bits` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Packing {
    /// `len × k/8` bytes, exactly [`encode_le`].
    Full,
    /// Each element reduced mod 2^bits, the elements' bits concatenated
    /// least significant first, the last byte zero-padded: ⌈len·bits/8⌉
    /// bytes. At `bits` = k this is [`encode_le`] again; a width of 0 or
    /// above k is read as k.
    Bits(u8),
}

impl Packing {
    /// The width an element of `R` travels at.
    fn width<R: WrappingRing>(self) -> u32 {
        match self {
            Packing::Full => R::BITS,
            Packing::Bits(b) if b == 0 || u32::from(b) > R::BITS => R::BITS,
            Packing::Bits(b) => u32::from(b),
        }
    }

    /// Bytes of a packed vector of `len` elements of `R` (`None` if that
    /// overflows `usize`).
    pub fn bytes<R: WrappingRing>(self, len: usize) -> Option<usize> {
        let bits = len.checked_mul(self.width::<R>() as usize)?;
        Some(bits.div_ceil(8))
    }
}

/// Encodes a vector over Z_2^k with `packing` (the wire format of narrowed
/// shares, docs/protocol.md "Narrow shares").
pub fn encode_packed<R: WrappingRing>(x: &[R], packing: Packing) -> Vec<u8> {
    let bits = packing.width::<R>();
    if bits == R::BITS {
        return encode_le(x);
    }
    let mask = (1u128 << bits) - 1;
    let mut out = Vec::with_capacity(x.len().saturating_mul(bits as usize).div_ceil(8));
    let (mut acc, mut have) = (0u128, 0u32);
    for &v in x {
        acc |= (u128::from(v.low_bits()) & mask) << have;
        have += bits;
        while have >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            have -= 8;
        }
    }
    if have > 0 {
        out.push(acc as u8);
    }
    out
}

/// Reads `len` packed elements, calling `each(index, element)` in order;
/// refuses a wrong length or non-zero padding. Nothing is allocated.
fn unpack<R: WrappingRing>(
    bytes: &[u8],
    len: usize,
    packing: Packing,
    mut each: impl FnMut(R),
) -> Result<(), DecodeError> {
    let bits = packing.width::<R>();
    let expected_bytes = check_length(bytes, packing.bytes::<R>(len))?;
    let mask = (1u128 << bits) - 1;
    let (mut acc, mut have) = (0u128, 0u32);
    let mut next = bytes.iter();
    for _ in 0..len {
        while have < bits {
            // The length check above guarantees the bytes are there.
            let Some(&b) = next.next() else {
                return Err(DecodeError::Length {
                    expected_bytes,
                    actual_bytes: bytes.len(),
                });
            };
            acc |= u128::from(b) << have;
            have += 8;
        }
        each(R::from_low_bits((acc & mask) as u64));
        acc >>= bits;
        have -= bits;
    }
    if acc == 0 {
        Ok(())
    } else {
        Err(DecodeError::NonZeroPadding)
    }
}

/// Decodes exactly `len` elements packed with `packing`.
pub fn decode_packed<R: WrappingRing>(
    bytes: &[u8],
    len: usize,
    packing: Packing,
) -> Result<Vec<R>, DecodeError> {
    if packing.width::<R>() == R::BITS {
        return decode_le(bytes, len);
    }
    let mut out = Vec::with_capacity(len.min(bytes.len().saturating_mul(8)));
    unpack(bytes, len, packing, |v| out.push(v))?;
    Ok(out)
}

/// `acc[i] += decode(bytes)[i]` for a vector packed with `packing`, in one
/// pass; refuses a wrong length or non-zero padding (leaving `acc`
/// unspecified only for bad padding: the caller discards it).
pub fn add_packed_assign<R: WrappingRing>(
    acc: &mut [R],
    bytes: &[u8],
    packing: Packing,
) -> Result<(), DecodeError> {
    if packing.width::<R>() == R::BITS {
        return add_le_bytes_assign(acc, bytes);
    }
    let mut slots = acc.iter_mut();
    let len = slots.len();
    unpack(bytes, len, packing, |v: R| {
        if let Some(a) = slots.next() {
            *a = a.add(v);
        }
    })
}

/// Checks that `bytes` is exactly `len` elements packed with `packing`.
pub fn check_packed<R: WrappingRing>(
    bytes: &[u8],
    len: usize,
    packing: Packing,
) -> Result<(), DecodeError> {
    if packing.width::<R>() == R::BITS {
        return check_le::<R>(bytes, len);
    }
    unpack::<R>(bytes, len, packing, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{Fp, P};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in proptest::collection::vec(any::<u64>(), 0..64), seed in any::<u64>()) {
            let b: Vec<u64> = a.iter().map(|v| v.rotate_left(7) ^ seed).collect();
            let mut acc = a.clone();
            add_assign(&mut acc, &b).expect("same length");
            sub_assign(&mut acc, &b).expect("same length");
            prop_assert_eq!(acc, a);
        }

        #[test]
        fn le_round_trip(a in proptest::collection::vec(0..P, 0..64)) {
            let v: Vec<Fp> = a.into_iter().map(Fp::new).collect();
            prop_assert_eq!(decode_le::<Fp>(&encode_le(&v), v.len()).expect("valid"), v);
        }
    }

    #[test]
    fn mismatched_lengths_are_errors_not_truncation() {
        let mut acc = vec![1u32; 3];
        assert_eq!(
            add_assign(&mut acc, &[1, 2]),
            Err(LengthMismatch {
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(acc, vec![1, 1, 1]);
        assert!(mul_add_assign(&mut acc, 2, &[1; 4]).is_err());
        let mut out = [0u32; 2];
        assert!(add_into(&mut out, &[1, 2], &[1]).is_err());
    }

    #[test]
    fn decode_rejects_bad_lengths_and_non_canonical_field_elements() {
        assert_eq!(
            decode_le::<u32>(&[0; 7], 2),
            Err(DecodeError::Length {
                expected_bytes: 8,
                actual_bytes: 7
            })
        );
        let mut bytes = encode_le(&[Fp::ONE, Fp::ONE]);
        bytes[8..].copy_from_slice(&P.to_le_bytes());
        assert_eq!(
            decode_le::<Fp>(&bytes, 2),
            Err(DecodeError::NonCanonical { index: 1 })
        );
        assert!(decode_le::<u64>(&[], usize::MAX).is_err());
    }

    #[test]
    fn fused_decode_add_matches_decode_then_add() {
        let x = vec![Fp::new(5), Fp::new(P - 1), Fp::new(3)];
        let bytes = encode_le(&x);
        let mut acc = vec![Fp::ONE; 3];
        add_le_bytes_assign(&mut acc, &bytes).expect("valid");
        assert_eq!(acc, vec![Fp::new(6), Fp::ZERO, Fp::new(4)]);
        assert!(check_le::<Fp>(&bytes, 3).is_ok());
        assert!(matches!(
            check_le::<Fp>(&bytes, 2),
            Err(DecodeError::Length { .. })
        ));
        let mut bad = bytes.clone();
        bad[16..].copy_from_slice(&P.to_le_bytes());
        assert_eq!(
            add_le_bytes_assign(&mut acc, &bad),
            Err(DecodeError::NonCanonical { index: 2 })
        );
        assert_eq!(
            check_le::<Fp>(&bad, 3),
            Err(DecodeError::NonCanonical { index: 2 })
        );
        assert!(add_le_bytes_assign(&mut acc, &bytes[..8]).is_err());
    }

    proptest! {
        #[test]
        fn packed_round_trip_keeps_the_low_bits(
            a in proptest::collection::vec(any::<u32>(), 0..80),
            bits in 1u8..=40,
        ) {
            let packing = Packing::Bits(bits);
            let bytes = encode_packed(&a, packing);
            let width = u32::from(bits).min(32);
            prop_assert_eq!(bytes.len(), (a.len() * width as usize).div_ceil(8));
            prop_assert_eq!(Some(bytes.len()), packing.bytes::<u32>(a.len()));
            let mask = if width == 32 { u32::MAX } else { (1u32 << width) - 1 };
            let low: Vec<u32> = a.iter().map(|v| v & mask).collect();
            prop_assert_eq!(decode_packed::<u32>(&bytes, a.len(), packing).expect("valid"), low.clone());
            prop_assert!(check_packed::<u32>(&bytes, a.len(), packing).is_ok());
            let mut acc = vec![1u32; a.len()];
            add_packed_assign(&mut acc, &bytes, packing).expect("valid");
            let plus_one: Vec<u32> = low.iter().map(|v| v.wrapping_add(1)).collect();
            prop_assert_eq!(acc, plus_one);
        }

        #[test]
        fn narrowed_shares_sum_to_the_low_bits_of_the_sum(
            a in proptest::collection::vec(any::<u64>(), 1..20),
            b in proptest::collection::vec(any::<u64>(), 1..20),
            bits in 2u8..64,
        ) {
            // Reduction mod 2^bits is a ring homomorphism: packing each
            // share and adding the unpacked values gives the low bits of
            // the sum.
            let n = a.len().min(b.len());
            let packing = Packing::Bits(bits);
            let mut acc = vec![0u64; n];
            add_packed_assign(&mut acc, &encode_packed(&a[..n], packing), packing).expect("valid");
            add_packed_assign(&mut acc, &encode_packed(&b[..n], packing), packing).expect("valid");
            let mask = (1u64 << bits) - 1;
            for i in 0..n {
                prop_assert_eq!(acc[i] & mask, a[i].wrapping_add(b[i]) & mask);
            }
        }
    }

    #[test]
    fn packed_decoding_refuses_wrong_lengths_and_padding() {
        let packing = Packing::Bits(12);
        let bytes = encode_packed(&[0xfffu32, 0x123, 0x456], packing);
        assert_eq!(bytes.len(), 5, "36 bits in 5 bytes");
        assert_eq!(
            decode_packed::<u32>(&bytes, 3, packing),
            Ok(vec![0xfff, 0x123, 0x456])
        );
        assert_eq!(
            decode_packed::<u32>(&bytes[..4], 3, packing),
            Err(DecodeError::Length {
                expected_bytes: 5,
                actual_bytes: 4
            })
        );
        let mut padded = bytes.clone();
        padded[4] |= 0x80;
        assert_eq!(
            decode_packed::<u32>(&padded, 3, packing),
            Err(DecodeError::NonZeroPadding)
        );
        assert_eq!(
            check_packed::<u32>(&padded, 3, packing),
            Err(DecodeError::NonZeroPadding)
        );
        let mut acc = vec![0u32; 3];
        assert_eq!(
            add_packed_assign(&mut acc, &padded, packing),
            Err(DecodeError::NonZeroPadding)
        );
        assert!(add_packed_assign(&mut [0u32; 2], &bytes, packing).is_err());
        assert!(decode_packed::<u64>(&[], usize::MAX, packing).is_err());
        // Full width is exactly the little-endian encoding.
        assert_eq!(
            encode_packed(&[7u32, 9], Packing::Bits(32)),
            encode_le(&[7u32, 9])
        );
        assert_eq!(encode_packed(&[7u64], Packing::Full), encode_le(&[7u64]));
    }

    #[test]
    fn neg_scale_and_mul_add() {
        let mut x = vec![Fp::new(3), Fp::new(5)];
        neg_in_place(&mut x);
        assert_eq!(x, vec![Fp::new(P - 3), Fp::new(P - 5)]);
        scale_in_place(&mut x, Fp::new(P - 1));
        assert_eq!(x, vec![Fp::new(3), Fp::new(5)]);
        let mut acc = vec![Fp::ONE; 2];
        mul_add_assign(&mut acc, Fp::new(2), &x).expect("same length");
        assert_eq!(acc, vec![Fp::new(7), Fp::new(11)]);
    }
}
