//! Element-wise vector kernels over any [`Ring`], in place and allocation-free.
//!
//! These are the hot loops of a round (a helper adds hundreds of share vectors).
//! They are written as plain zipped iterations over equal-length slices so that
//! LLVM drops the bounds checks and vectorises them; the length check happens
//! once, up front, and a mismatch is a typed error rather than a silent
//! truncation.

use crate::ring::Ring;

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
}

/// Decodes exactly `len` packed little-endian elements, refusing wrong lengths
/// and non-canonical field elements.
pub fn decode_le<R: Ring>(bytes: &[u8], len: usize) -> Result<Vec<R>, DecodeError> {
    let expected_bytes = len.checked_mul(R::BYTES).ok_or(DecodeError::Length {
        expected_bytes: usize::MAX,
        actual_bytes: bytes.len(),
    })?;
    if bytes.len() != expected_bytes {
        return Err(DecodeError::Length {
            expected_bytes,
            actual_bytes: bytes.len(),
        });
    }
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
