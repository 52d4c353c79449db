//! Exact encoding of local statistics for the secure sum.
//!
//! The secure layer sums, exactly, vectors whose elements are integers with
//! |v| < 2^24 ([`wire_spec`]). A statistic `v` becomes the fixed-point integer
//! `q = round_ties_even(v · 2^20)` (an `i128`, refused unless |q| < 2^95),
//! split into four 24-bit limbs: limbs 0..=2 in `[0, 2^24)`, the top limb
//! signed in `[−2^23, 2^23)`, so `q = Σ_k limb_k · 2^(24k)`. The sum over up
//! to 1024 clients of each limb stays below 2^34 in magnitude; recombining
//! `Σ_k S_k · 2^(24k)` in `i128` is exact, and dividing by 2^20 gives the
//! sum of the fixed-point statistics. After the local statistic is rounded to
//! 2^−20, everything is integer arithmetic: the secure result equals a
//! plaintext sum of the same vectors bit for bit.

use core::fmt;

use sealroom_core::QuantSpec;
use zeroize::Zeroize;

use super::MAX_CLIENTS;
use super::error::{Phase, QueryError};

/// Fractional bits of the fixed-point encoding.
pub const FRAC_BITS: u32 = 20;
/// Bits per limb.
pub const LIMB_BITS: u32 = 24;
/// Limbs per encoded statistic.
pub const LIMBS: usize = 4;
/// Every wire element's magnitude is below this bound.
pub const WIRE_CLIP: f64 = (1u64 << LIMB_BITS) as f64;
/// A fixed-point value's magnitude must be below 2^95.
const FIXED_LIMIT: i128 = 1 << 95;
const LIMB_MASK: i128 = (1 << LIMB_BITS) - 1;

/// The quantization of the wire vectors: integers (`scale_bits` 0) clipped at
/// 2^24 in 26 signed bits. No element the query layer produces is ever
/// clipped or rounded by it.
pub fn wire_spec() -> QuantSpec {
    // 2^24 at scale 2^0 needs 25 signed bits; 26 leaves one to spare.
    match QuantSpec::new(0, WIRE_CLIP, 26) {
        Ok(spec) => spec,
        Err(_) => unreachable!("2^24 at scale 0 fits 26 signed bits"),
    }
}

/// A vector of one client's wire elements. It derives from private rows, so
/// it is zeroized on drop and prints as `<redacted>`.
pub struct WireVector(Vec<f64>);

impl WireVector {
    pub(crate) fn new(values: Vec<f64>) -> WireVector {
        WireVector(values)
    }

    pub(crate) fn values_mut(&mut self) -> &mut Vec<f64> {
        &mut self.0
    }

    /// The elements, for the secret-sharing step only.
    pub fn expose_values(&self) -> &[f64] {
        &self.0
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a vector of no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WireVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireVector(len={}, <redacted>)", self.0.len())
    }
}

impl Drop for WireVector {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// `round_ties_even(v · 2^20)`, or `None` if `v` is not finite or the result
/// reaches 2^95.
pub fn to_fixed(v: f64) -> Option<i128> {
    if !v.is_finite() {
        return None;
    }
    // Scaling by a power of two is exact (barring overflow to infinity).
    let scaled = (v * f64::from(1u32 << FRAC_BITS)).round_ties_even();
    if !scaled.is_finite() || scaled.abs() >= FIXED_LIMIT as f64 {
        return None;
    }
    // An integral f64 below 2^95 converts to i128 exactly.
    Some(scaled as i128)
}

/// A fixed-point sum back to a float: `q / 2^20`, rounded once (to nearest).
pub fn from_fixed(q: i128) -> f64 {
    q as f64 / f64::from(1u32 << FRAC_BITS)
}

/// The four limbs of a fixed-point value with |q| < 2^95.
pub fn limbs(q: i128) -> [f64; LIMBS] {
    let mut out = [0.0; LIMBS];
    for (k, limb) in out.iter_mut().enumerate() {
        let shifted = q >> (LIMB_BITS as usize * k);
        // The top limb keeps the sign (arithmetic shift); the others are the
        // low 24 bits. Every limb is below 2^24 in magnitude, exact in f64.
        let v = if k == LIMBS - 1 {
            shifted
        } else {
            shifted & LIMB_MASK
        };
        *limb = v as f64;
    }
    out
}

/// Recombines summed limbs: `Σ_k S_k · 2^(24k)`, exact in `i128` for sums of
/// up to 1024 clients (`|S_k| ≤ 2^34`).
pub fn from_limbs(sums: [i64; LIMBS]) -> i128 {
    sums.iter()
        .enumerate()
        .map(|(k, &s)| i128::from(s) << (LIMB_BITS as usize * k))
        .sum()
}

/// Appends the limbs of `v`, saturated to the encoding's range: a value
/// that is not finite or reaches 2^75 in magnitude is replaced by the
/// nearest representable one (0 for NaN). Returns whether it was, so the
/// caller counts it: encoding never fails on a client's values (issue #12,
/// finding 4).
pub(crate) fn push_saturating(out: &mut Vec<f64>, v: f64) -> bool {
    let (q, saturated) = match to_fixed(v) {
        Some(q) => (q, false),
        None if v.is_nan() => (0, true),
        None if v > 0.0 => (FIXED_LIMIT - 1, true),
        None => (-(FIXED_LIMIT - 1), true),
    };
    out.extend_from_slice(&limbs(q));
    saturated
}

/// Checks a summed vector element by element: finite, integral and within
/// what 1024 clients can produce, returning the exact integers.
pub(crate) fn integers(
    values: &[f64],
    phase: Phase,
    expected: usize,
) -> Result<Vec<i64>, QueryError> {
    if values.len() != expected {
        return Err(QueryError::LengthMismatch {
            phase,
            expected,
            actual: values.len(),
        });
    }
    let bound = f64::from(MAX_CLIENTS) * WIRE_CLIP;
    values
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            if !v.is_finite() || v.fract() != 0.0 {
                return Err(QueryError::MalformedSum {
                    phase,
                    index,
                    reason: "not an integer",
                });
            }
            if v.abs() > bound {
                return Err(QueryError::MalformedSum {
                    phase,
                    index,
                    reason: "larger than 1024 clients can produce",
                });
            }
            // |v| ≤ 2^34 and integral: the conversion is exact.
            Ok(v as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(q: i128) -> i128 {
        let l = limbs(q);
        for (k, v) in l.iter().enumerate() {
            assert_eq!(v.fract(), 0.0);
            if k == LIMBS - 1 {
                assert!(
                    (-(1i64 << 23) as f64..(1i64 << 23) as f64).contains(v),
                    "top limb {v}"
                );
            } else {
                assert!((0.0..WIRE_CLIP).contains(v), "limb {k} = {v}");
            }
        }
        from_limbs(l.map(|v| v as i64))
    }

    #[test]
    fn limbs_roundtrip_at_the_edges() {
        for q in [
            0,
            1,
            -1,
            LIMB_MASK,
            -LIMB_MASK,
            FIXED_LIMIT - 1,
            -FIXED_LIMIT,
            1 << 72,
            -(1 << 72) - 5,
        ] {
            assert_eq!(roundtrip(q), q, "{q}");
        }
    }

    #[test]
    fn limb_sums_recombine_exactly() {
        let values = [
            123_456_789_012_345_678i128,
            -987_654_321_098_765,
            FIXED_LIMIT - 1,
            -FIXED_LIMIT + 7,
        ];
        let mut sums = [0i64; LIMBS];
        for &q in &values {
            for (s, l) in sums.iter_mut().zip(limbs(q)) {
                *s += l as i64;
            }
        }
        assert_eq!(from_limbs(sums), values.iter().sum::<i128>());
    }

    #[test]
    fn fixed_point_rounds_ties_to_even_and_refuses_overflow() {
        let step = 1.0 / f64::from(1u32 << FRAC_BITS);
        assert_eq!(to_fixed(0.5 * step), Some(0));
        assert_eq!(to_fixed(1.5 * step), Some(2));
        assert_eq!(to_fixed(-2.5 * step), Some(-2));
        assert_eq!(to_fixed(f64::NAN), None);
        assert_eq!(to_fixed(f64::INFINITY), None);
        assert_eq!(to_fixed(2f64.powi(75)), None);
        assert!(to_fixed(2f64.powi(74)).is_some());
        assert_eq!(from_fixed(to_fixed(1234.5).unwrap_or(0)), 1234.5);
    }

    #[test]
    fn wire_spec_is_integral() {
        let spec = wire_spec();
        assert_eq!(spec.scale_bits(), 0);
        assert_eq!(spec.bits(), 26);
        assert_eq!(spec.clip(), WIRE_CLIP);
    }

    #[test]
    fn sums_are_checked() {
        assert!(integers(&[1.0, 2.0], Phase::Counts, 2).is_ok());
        assert!(integers(&[1.5], Phase::Counts, 1).is_err());
        assert!(integers(&[f64::NAN], Phase::Stats, 1).is_err());
        assert!(integers(&[1e30], Phase::Stats, 1).is_err());
        assert!(integers(&[1.0], Phase::Stats, 2).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let v = WireVector::new(vec![42.0]);
        assert_eq!(format!("{v:?}"), "WireVector(len=1, <redacted>)");
    }
}
