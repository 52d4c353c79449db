//! Fixed-point quantization (DESIGN.md §4): floats never enter a share.
//!
//! A [`QuantSpec`] maps a float `v` to the integer
//! `q = round_half_even(clamp(v, −clip, clip) · 2^scale_bits)`, which fits in
//! `bits` signed bits. Rounding is deterministic (ties to even), NaN and
//! infinities are errors rather than being silently clipped, and the error of a
//! value inside the clip range is at most half a step (`2^−scale_bits / 2`).
//!
//! A round never overflows by construction: the only way to encode values for
//! a round is through a [`RoundEncoding`], which [`fits`] builds only after
//! checking that the sum of `n_clients` worst-case values fits the ring's signed
//! range *and* is exactly representable as an `f64`, so that dequantizing the
//! sum is exact.

use core::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ring::{Ring, RingKind};
use crate::vector::Packing;

/// Largest magnitude an `f64` represents exactly with all integers below it.
pub const F64_EXACT_MAX: u64 = 1 << 53;

/// How floats become integers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawQuantSpec")]
pub struct QuantSpec {
    scale_bits: i8,
    clip: f64,
    bits: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuantSpec {
    scale_bits: i8,
    clip: f64,
    bits: u8,
}

impl TryFrom<RawQuantSpec> for QuantSpec {
    type Error = QuantError;
    fn try_from(raw: RawQuantSpec) -> Result<Self, QuantError> {
        QuantSpec::new(raw.scale_bits, raw.clip, raw.bits)
    }
}

/// Why a quantization spec, a value or a round encoding was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// `bits` outside 2..=53.
    #[error("quantization width {bits} bits is outside the supported range 2..=53")]
    BitsOutOfRange {
        /// Width requested.
        bits: u8,
    },
    /// The clip bound is not a positive finite number.
    #[error("clip bound {clip} must be a positive finite number")]
    InvalidClip {
        /// Clip requested.
        clip: f64,
    },
    /// `scale_bits` outside −60..=60.
    #[error("scale of 2^{scale_bits} is outside the supported range 2^-60..=2^60")]
    ScaleOutOfRange {
        /// Scale requested.
        scale_bits: i8,
    },
    /// The clip bound, scaled, does not fit in `bits` signed bits.
    #[error(
        "clip {clip} at scale 2^{scale_bits} quantizes to {max_abs}, which does not fit in {bits} signed bits (max {limit})"
    )]
    ClipExceedsBits {
        /// Clip requested.
        clip: f64,
        /// Scale requested.
        scale_bits: i8,
        /// Width requested.
        bits: u8,
        /// The quantized clip bound.
        max_abs: u128,
        /// The largest magnitude `bits` allows.
        limit: u64,
    },
    /// The clip bound rounds to zero: every value would quantize to 0.
    #[error("clip {clip} at scale 2^{scale_bits} rounds to zero")]
    ClipBelowResolution {
        /// Clip requested.
        clip: f64,
        /// Scale requested.
        scale_bits: i8,
    },
    /// An input value is NaN or infinite.
    #[error("input value at index {index} is not finite (NaN or infinity)")]
    NonFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// The sum over `n_clients` worst-case values could overflow the ring or
    /// lose exactness as an `f64`.
    #[error(
        "{n_clients} contributions of up to {max_abs} each could sum to {worst_case}, beyond the limit {limit} of ring {ring}; lower bits or the number of contributions"
    )]
    Overflow {
        /// The ring of the round.
        ring: RingKind,
        /// Contributions the round admits.
        n_clients: u64,
        /// Largest magnitude of one quantized value.
        max_abs: u64,
        /// The worst-case magnitude of the sum.
        worst_case: u128,
        /// The largest magnitude that is safe.
        limit: u64,
    },
    /// Zero contributions make no round.
    #[error("a round needs at least one contribution")]
    NoClients,
    /// A share width that is not narrower than the ring, or a ring whose
    /// shares cannot be narrowed (F_p).
    #[error(
        "shares of ring {ring} cannot be narrowed to {bits} bits (Z_2^k rings only, 2 <= bits < k)"
    )]
    ShareBits {
        /// The round's ring.
        ring: RingKind,
        /// The width requested.
        bits: u8,
    },
    /// Values were encoded for a ring other than the round's.
    #[error("round encodes into {expected}, not {actual}")]
    RingMismatch {
        /// The round's ring.
        expected: RingKind,
        /// The ring requested.
        actual: RingKind,
    },
    /// The error-feedback residual has a different length than the update.
    #[error("error-feedback residual holds {expected} values, update has {actual}")]
    ResidualLength {
        /// Residual length.
        expected: usize,
        /// Update length.
        actual: usize,
    },
}

/// Quantized values and how many of them were clipped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Quantized {
    /// The fixed-point integers, each within `±max_abs`.
    pub values: Vec<i64>,
    /// How many inputs lay outside `±clip` and were clipped.
    pub clipped: usize,
}

impl fmt::Debug for Quantized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Quantized values are a private input: never print them.
        write!(
            f,
            "Quantized(len={}, clipped={}, <redacted>)",
            self.values.len(),
            self.clipped
        )
    }
}

impl Drop for Quantized {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}

impl QuantSpec {
    /// Validates a spec: `2 ≤ bits ≤ 53`, a positive finite clip, a scale in
    /// 2^±60, and a quantized clip bound that fits in `bits` signed bits.
    pub fn new(scale_bits: i8, clip: f64, bits: u8) -> Result<Self, QuantError> {
        if !(2..=53).contains(&bits) {
            return Err(QuantError::BitsOutOfRange { bits });
        }
        if !(clip.is_finite() && clip > 0.0) {
            return Err(QuantError::InvalidClip { clip });
        }
        if !(-60..=60).contains(&scale_bits) {
            return Err(QuantError::ScaleOutOfRange { scale_bits });
        }
        let scaled = (clip * pow2(scale_bits)).round_ties_even();
        let limit = (1u64 << (bits - 1)) - 1;
        if scaled > limit as f64 {
            return Err(QuantError::ClipExceedsBits {
                clip,
                scale_bits,
                bits,
                max_abs: scaled as u128,
                limit,
            });
        }
        if scaled < 1.0 {
            return Err(QuantError::ClipBelowResolution { clip, scale_bits });
        }
        Ok(QuantSpec {
            scale_bits,
            clip,
            bits,
        })
    }

    /// The finest spec for `bits` signed bits that represents `±clip`: the
    /// largest `scale_bits` whose quantized clip still fits.
    pub fn for_bits(bits: u8, clip: f64) -> Result<Self, QuantError> {
        // Validate bits and clip first, with a scale that cannot be the issue.
        if !(2..=53).contains(&bits) {
            return Err(QuantError::BitsOutOfRange { bits });
        }
        if !(clip.is_finite() && clip > 0.0) {
            return Err(QuantError::InvalidClip { clip });
        }
        let mut last_error = None;
        for scale_bits in (-60..=60).rev() {
            match QuantSpec::new(scale_bits, clip, bits) {
                Ok(spec) => return Ok(spec),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(QuantError::InvalidClip { clip }))
    }

    /// Fractional bits: one step is `2^−scale_bits`.
    pub fn scale_bits(&self) -> i8 {
        self.scale_bits
    }

    /// Values are clipped to `±clip` before scaling.
    pub fn clip(&self) -> f64 {
        self.clip
    }

    /// Signed width of one quantized value.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The quantization step `2^−scale_bits`.
    pub fn step(&self) -> f64 {
        pow2(-self.scale_bits)
    }

    /// Largest magnitude of a quantized value: `round(clip · 2^scale_bits)`.
    pub fn max_abs(&self) -> u64 {
        (self.clip * pow2(self.scale_bits)).round_ties_even() as u64
    }

    /// Quantizes one value (see the module doc): `Some((q, clipped))`, or
    /// `None` for NaN and infinities.
    #[inline]
    pub fn quantize_one(&self, value: f64) -> Option<(i64, bool)> {
        if !value.is_finite() {
            return None;
        }
        let clipped = value.abs() > self.clip;
        let v = value.clamp(-self.clip, self.clip);
        Some((
            (v * pow2(self.scale_bits)).round_ties_even() as i64,
            clipped,
        ))
    }

    /// Quantizes a vector; the first NaN or infinity is an error.
    pub fn quantize(&self, values: &[f64]) -> Result<Quantized, QuantError> {
        let mut out = Quantized {
            values: Vec::with_capacity(values.len()),
            clipped: 0,
        };
        for (index, &v) in values.iter().enumerate() {
            let (q, clipped) = self
                .quantize_one(v)
                .ok_or(QuantError::NonFinite { index })?;
            out.values.push(q);
            out.clipped += usize::from(clipped);
        }
        Ok(out)
    }

    /// Maps an integer (a quantized value or an exact sum of them) back to a
    /// float. Exact whenever `|q| ≤ 2^53`, which [`fits`] guarantees for sums.
    #[inline]
    pub fn dequantize(&self, q: i64) -> f64 {
        q as f64 * pow2(-self.scale_bits)
    }
}

/// `2^e` exactly, for |e| ≤ 60.
fn pow2(e: i8) -> f64 {
    f64::from(2u8).powi(i32::from(e))
}

/// The headroom check: builds the encoding of a round of `n_clients`
/// contributions in `ring` with `spec`, or refuses if their sum could overflow
/// the ring's signed range or exceed 2^53 (where `f64` stops being exact).
pub fn fits(ring: RingKind, n_clients: u64, spec: QuantSpec) -> Result<RoundEncoding, QuantError> {
    RoundEncoding::new(ring, n_clients, spec)
}

/// A checked (ring, contribution count, spec) triple: the only way to encode
/// values for a round, so a round that could overflow cannot be built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundEncoding {
    ring: RingKind,
    n_clients: u64,
    spec: QuantSpec,
    /// Z_2^k only: shares are reduced mod 2^bits (see [`RoundEncoding::narrowed`]).
    share_bits: Option<u8>,
}

impl RoundEncoding {
    /// See [`fits`].
    pub fn new(ring: RingKind, n_clients: u64, spec: QuantSpec) -> Result<Self, QuantError> {
        if n_clients == 0 {
            return Err(QuantError::NoClients);
        }
        let encoding = RoundEncoding {
            ring,
            n_clients,
            spec,
            share_bits: None,
        };
        encoding.check_headroom(ring.signed_max())?;
        Ok(encoding)
    }

    /// The worst-case magnitude of the sum: `n_clients × max_abs`.
    fn worst_case(&self) -> u128 {
        u128::from(self.n_clients) * u128::from(self.spec.max_abs())
    }

    fn check_headroom(&self, signed_max: u64) -> Result<(), QuantError> {
        let limit = signed_max.min(F64_EXACT_MAX);
        let worst_case = self.worst_case();
        if worst_case > u128::from(limit) {
            return Err(QuantError::Overflow {
                ring: self.ring,
                n_clients: self.n_clients,
                max_abs: self.spec.max_abs(),
                worst_case,
                limit,
            });
        }
        Ok(())
    }

    /// The same round with every share reduced mod 2^`bits` (Z_2^k rings,
    /// 2 ≤ `bits` < k): reduction is a ring homomorphism, so the narrowed
    /// shares add up to the sum mod 2^`bits`, which is the sum itself when
    /// its worst case fits `bits` signed bits — checked here exactly as
    /// [`fits`] checks the ring. Shares then travel bit-packed
    /// ([`RoundEncoding::packing`]): the bandwidth of `bits`, not of k.
    /// Privacy is unchanged: a share reduced mod 2^`bits` is uniform in
    /// Z_2^`bits`, as the full share was in Z_2^k.
    pub fn narrowed(mut self, bits: u8) -> Result<Self, QuantError> {
        match self.ring.wrapping_bits() {
            Some(k) if (2..k).contains(&u32::from(bits)) => {}
            _ => {
                return Err(QuantError::ShareBits {
                    ring: self.ring,
                    bits,
                });
            }
        }
        self.check_headroom((1u64 << (bits - 1)) - 1)?;
        self.share_bits = Some(bits);
        Ok(self)
    }

    /// The narrowest share width the headroom check admits: the smallest
    /// `w` with `n_clients × max_abs ≤ 2^(w−1) − 1`, or the ring itself when
    /// no narrower width would hold the sum (and always for F_p).
    pub fn narrowest(self) -> Self {
        // Bits of the worst-case magnitude plus the sign bit; at least 2.
        let magnitude_bits = 128 - self.worst_case().leading_zeros();
        let bits = (magnitude_bits + 1).max(2);
        match u8::try_from(bits) {
            Ok(bits) => self.narrowed(bits).unwrap_or(self),
            Err(_) => self,
        }
    }

    /// The width shares are reduced to, if narrower than the ring.
    pub fn share_bits(&self) -> Option<u8> {
        self.share_bits
    }

    /// How share vectors of this round travel on the wire.
    pub fn packing(&self) -> Packing {
        self.share_bits.map_or(Packing::Full, Packing::Bits)
    }

    /// Bytes of one share vector of `len` elements.
    pub fn vector_bytes(&self, len: usize) -> usize {
        let bits = match self.share_bits {
            Some(b) => usize::from(b),
            None => self.ring.element_bytes() * 8,
        };
        len.saturating_mul(bits).div_ceil(8)
    }

    /// The ring of the round.
    pub fn ring(&self) -> RingKind {
        self.ring
    }

    /// The most contributions the round may sum.
    pub fn n_clients(&self) -> u64 {
        self.n_clients
    }

    /// The quantization spec.
    pub fn spec(&self) -> QuantSpec {
        self.spec
    }

    /// Embeds already-quantized values (each within `±max_abs`, as
    /// [`QuantSpec::quantize`] guarantees) into the round's ring.
    pub fn embed<R: Ring>(&self, quantized: &Quantized) -> Result<Vec<R>, QuantError> {
        self.check_ring::<R>()?;
        Ok(quantized.values.iter().map(|&q| R::from_i64(q)).collect())
    }

    /// Quantizes and embeds in one step.
    pub fn encode<R: Ring>(&self, values: &[f64]) -> Result<(Vec<R>, usize), QuantError> {
        let quantized = self.spec.quantize(values)?;
        Ok((self.embed(&quantized)?, quantized.clipped))
    }

    /// Reads a reconstructed sum back as exact integers.
    pub fn decode_sum_integers<R: Ring>(&self, sum: &[R]) -> Result<Vec<i64>, QuantError> {
        self.check_ring::<R>()?;
        Ok(match self.share_bits {
            None => sum.iter().map(|&v| v.to_i64()).collect(),
            // Narrowed (Z_2^k only): the sum is the low `bits` bits, read
            // as a signed integer. `to_i64` of a Z_2^k element agrees with
            // it mod 2^k, hence mod 2^bits, so sign-extending its low bits
            // is exact.
            Some(bits) => {
                let shift = 64 - u32::from(bits);
                sum.iter()
                    .map(|&v| (v.to_i64() << shift) >> shift)
                    .collect()
            }
        })
    }

    /// Reads a reconstructed sum back as floats, exactly.
    pub fn decode_sum<R: Ring>(&self, sum: &[R]) -> Result<Vec<f64>, QuantError> {
        Ok(self
            .decode_sum_integers(sum)?
            .into_iter()
            .map(|q| self.spec.dequantize(q))
            .collect())
    }

    fn check_ring<R: Ring>(&self) -> Result<(), QuantError> {
        if R::KIND == self.ring {
            Ok(())
        } else {
            Err(QuantError::RingMismatch {
                expected: self.ring,
                actual: R::KIND,
            })
        }
    }
}

/// Error feedback: the quantization error of one round (including what was
/// clipped) is carried into the next, so it is not lost over many rounds.
/// The residual derives from private data: it is zeroized on drop and never
/// printed.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct ErrorFeedback {
    residual: Vec<f64>,
}

impl ErrorFeedback {
    /// An empty residual for updates of `len` values.
    pub fn new(len: usize) -> Self {
        ErrorFeedback {
            residual: vec![0.0; len],
        }
    }

    /// Quantizes `update + residual` and stores the new residual
    /// `(update + residual) − dequantize(q)`. On error the residual is kept.
    pub fn quantize(&mut self, spec: &QuantSpec, update: &[f64]) -> Result<Quantized, QuantError> {
        if update.len() != self.residual.len() {
            return Err(QuantError::ResidualLength {
                expected: self.residual.len(),
                actual: update.len(),
            });
        }
        if let Some(index) = update.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::NonFinite { index });
        }
        let corrected: Vec<f64> = update
            .iter()
            .zip(&self.residual)
            .map(|(u, r)| u + r)
            .collect();
        let quantized = spec.quantize(&corrected)?;
        for ((r, c), &q) in self
            .residual
            .iter_mut()
            .zip(&corrected)
            .zip(&quantized.values)
        {
            *r = c - spec.dequantize(q);
        }
        Ok(quantized)
    }

    /// Values the residual covers.
    pub fn len(&self) -> usize {
        self.residual.len()
    }

    /// Whether the residual covers no values.
    pub fn is_empty(&self) -> bool {
        self.residual.is_empty()
    }

    /// Largest residual magnitude (for reports; not the values themselves).
    pub fn max_abs_residual(&self) -> f64 {
        self.residual.iter().fold(0.0, |m, r| m.max(r.abs()))
    }
}

impl fmt::Debug for ErrorFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorFeedback(len={}, <redacted>)", self.residual.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Fp;
    use proptest::prelude::*;

    fn spec_strategy() -> impl Strategy<Value = QuantSpec> {
        (2u8..=53, -20i8..=40, 0.001f64..1e9)
            .prop_filter_map("valid spec", |(bits, scale, clip)| {
                QuantSpec::new(scale, clip, bits).ok()
            })
    }

    proptest! {
        #[test]
        fn error_is_at_most_half_a_step_inside_the_clip_range(spec in spec_strategy(), frac in -1.0f64..=1.0) {
            let v = frac * spec.clip();
            let (q, clipped) = spec.quantize_one(v).expect("finite");
            prop_assert!(!clipped);
            prop_assert!(q.unsigned_abs() <= spec.max_abs());
            prop_assert!((spec.dequantize(q) - v).abs() <= spec.step() / 2.0, "v={v} q={q}");
        }

        #[test]
        fn clipping_saturates_and_is_counted(spec in spec_strategy(), excess in 1.0f64..1e6, negative in any::<bool>()) {
            let v = if negative { -(spec.clip() + excess) } else { spec.clip() + excess };
            let q = spec.quantize(&[v]).expect("finite");
            prop_assert_eq!(q.values[0].unsigned_abs(), spec.max_abs());
            prop_assert_eq!(q.clipped, 1);
        }

        /// The headroom check never admits an overflowing case: whenever `fits`
        /// accepts, the worst-case sum (every contribution at ±max_abs)
        /// survives the ring exactly, compared with i128 arithmetic; whenever it
        /// refuses, that worst case really exceeds the limit.
        #[test]
        fn headroom_never_admits_overflow(spec in spec_strategy(), n in 1u64..=u64::from(u32::MAX), negative in any::<bool>(), ring in prop_oneof![Just(RingKind::Z2_32), Just(RingKind::Z2_64), Just(RingKind::Fp61)]) {
            let worst = i128::from(n) * i128::from(spec.max_abs()) * if negative { -1 } else { 1 };
            let q = spec.max_abs() as i64 * if negative { -1 } else { 1 };
            match fits(ring, n, spec) {
                Ok(enc) => {
                    let decoded = match ring {
                        RingKind::Z2_32 => sum_in_ring::<u32>(&enc, q, n),
                        RingKind::Z2_64 => sum_in_ring::<u64>(&enc, q, n),
                        _ => sum_in_ring::<Fp>(&enc, q, n),
                    };
                    prop_assert_eq!(i128::from(decoded), worst);
                    // The narrowest width the check admits holds the same sum.
                    let narrow = enc.narrowest();
                    let narrow_decoded = match ring {
                        RingKind::Z2_32 => sum_narrowed::<u32>(&narrow, q, n),
                        RingKind::Z2_64 => sum_narrowed::<u64>(&narrow, q, n),
                        RingKind::Fp61 => decoded,
                    };
                    prop_assert_eq!(i128::from(narrow_decoded), worst);
                    prop_assert!(worst.unsigned_abs() <= u128::from(F64_EXACT_MAX));
                    prop_assert_eq!(spec.dequantize(decoded), worst as f64 * spec.step());
                }
                Err(QuantError::Overflow { .. }) => {
                    let limit = ring.signed_max().min(F64_EXACT_MAX);
                    prop_assert!(worst.unsigned_abs() > u128::from(limit));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        #[test]
        fn error_feedback_keeps_the_running_total(spec in spec_strategy(), rounds in proptest::collection::vec(-0.9f64..0.9, 1..30)) {
            // With error feedback, the sum of dequantized outputs tracks the sum
            // of inputs to within one step, however many rounds pass.
            prop_assume!(spec.max_abs() >= 4);
            let mut ef = ErrorFeedback::new(1);
            let mut magnitude = 0.0;
            let mut sent = 0.0;
            let mut wanted = 0.0;
            for frac in rounds {
                let v = frac * spec.clip() / 2.0;
                wanted += v;
                magnitude += v.abs();
                let q = ef.quantize(&spec, &[v]).expect("finite");
                sent += spec.dequantize(q.values[0]);
            }
            prop_assert!((sent - wanted).abs() <= spec.step() / 2.0 + magnitude * 1e-12);
        }
    }

    /// Sums `n` copies of `q` by repeated doubling in the ring (n can be 2^32).
    /// [`sum_in_ring`] with the sum reduced to the encoding's share width,
    /// as the helpers' narrowed shares add up to it.
    fn sum_narrowed<R: crate::ring::WrappingRing>(enc: &RoundEncoding, q: i64, n: u64) -> i64 {
        let full = RoundEncoding {
            share_bits: None,
            ..*enc
        };
        let sum = R::from_i64(sum_in_ring::<R>(&full, q, n));
        let reduced = match enc.share_bits() {
            Some(bits) => R::from_low_bits(sum.low_bits() & ((1u64 << bits) - 1)),
            None => sum,
        };
        enc.decode_sum_integers(&[reduced]).expect("ring matches")[0]
    }

    fn sum_in_ring<R: Ring>(enc: &RoundEncoding, q: i64, n: u64) -> i64 {
        let quantized = Quantized {
            values: vec![q],
            clipped: 0,
        };
        let one = enc.embed::<R>(&quantized).expect("ring matches")[0];
        let (mut acc, mut base, mut k) = (R::ZERO, one, n);
        while k > 0 {
            if k & 1 == 1 {
                acc = acc.add(base);
            }
            base = base.add(base);
            k >>= 1;
        }
        enc.decode_sum_integers(&[acc]).expect("ring matches")[0]
    }

    #[test]
    fn rounds_half_to_even() {
        let spec = QuantSpec::new(0, 100.0, 16).expect("valid");
        let q = spec
            .quantize(&[0.5, 1.5, 2.5, -0.5, -1.5, 2.4999])
            .expect("finite");
        assert_eq!(q.values, vec![0, 2, 2, 0, -2, 2]);
    }

    #[test]
    fn non_finite_values_are_errors_not_clipped() {
        let spec = QuantSpec::new(8, 1.0, 16).expect("valid");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                spec.quantize(&[0.0, bad]),
                Err(QuantError::NonFinite { index: 1 })
            );
        }
        let mut ef = ErrorFeedback::new(2);
        assert_eq!(
            ef.quantize(&spec, &[f64::NAN, 0.0]),
            Err(QuantError::NonFinite { index: 0 })
        );
        assert_eq!(
            ef.quantize(&spec, &[0.0]),
            Err(QuantError::ResidualLength {
                expected: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn invalid_specs_are_refused() {
        assert_eq!(
            QuantSpec::new(8, 1.0, 1),
            Err(QuantError::BitsOutOfRange { bits: 1 })
        );
        assert_eq!(
            QuantSpec::new(8, 1.0, 54),
            Err(QuantError::BitsOutOfRange { bits: 54 })
        );
        assert!(matches!(
            QuantSpec::new(8, f64::NAN, 16),
            Err(QuantError::InvalidClip { .. })
        ));
        assert!(matches!(
            QuantSpec::new(8, -1.0, 16),
            Err(QuantError::InvalidClip { .. })
        ));
        assert!(matches!(
            QuantSpec::new(8, 0.0, 16),
            Err(QuantError::InvalidClip { .. })
        ));
        assert!(matches!(
            QuantSpec::new(61, 1.0, 16),
            Err(QuantError::ScaleOutOfRange { .. })
        ));
        assert!(matches!(
            QuantSpec::new(15, 1.0, 16),
            Err(QuantError::ClipExceedsBits { .. })
        ));
        assert!(matches!(
            QuantSpec::new(-8, 1.0, 16),
            Err(QuantError::ClipBelowResolution { .. })
        ));
        assert!(QuantSpec::new(14, 1.0, 16).is_ok());
    }

    #[test]
    fn for_bits_picks_the_finest_fitting_scale() {
        let spec = QuantSpec::for_bits(8, 1.0).expect("valid");
        assert_eq!(spec.scale_bits(), 6);
        assert_eq!(spec.max_abs(), 64);
        let spec = QuantSpec::for_bits(16, 1000.0).expect("valid");
        assert_eq!(spec.scale_bits(), 5);
        assert!(QuantSpec::for_bits(1, 1.0).is_err());
    }

    #[test]
    fn headroom_edges() {
        let spec = QuantSpec::new(0, 1.0, 2).expect("valid");
        assert_eq!(spec.max_abs(), 1);
        assert!(fits(RingKind::Z2_32, u64::from(i32::MAX as u32), spec).is_ok());
        assert!(matches!(
            fits(RingKind::Z2_32, u64::from(i32::MAX as u32) + 1, spec),
            Err(QuantError::Overflow { .. })
        ));
        assert!(fits(RingKind::Z2_64, F64_EXACT_MAX, spec).is_ok());
        assert!(fits(RingKind::Z2_64, F64_EXACT_MAX + 1, spec).is_err());
        assert_eq!(fits(RingKind::Fp61, 0, spec), Err(QuantError::NoClients));
        let enc = fits(RingKind::Z2_64, 10, spec).expect("fits");
        assert!(matches!(
            enc.encode::<u32>(&[1.0]),
            Err(QuantError::RingMismatch { .. })
        ));
    }

    #[test]
    fn narrowest_share_width_is_the_headroom_check_at_fewer_bits() {
        // 8-bit quantization (|q| ≤ 127): 256 contributions need 16 bits,
        // 10 need 12, one needs 8.
        let spec = QuantSpec::new(0, 127.0, 8).expect("valid");
        assert_eq!(spec.max_abs(), 127);
        let width = |n| {
            fits(RingKind::Z2_32, n, spec)
                .expect("fits")
                .narrowest()
                .share_bits()
        };
        assert_eq!(width(256), Some(16));
        assert_eq!(width(258), Some(16));
        assert_eq!(width(259), Some(17));
        assert_eq!(width(10), Some(12));
        assert_eq!(width(1), Some(8));
        let enc = fits(RingKind::Z2_32, 256, spec).expect("fits");
        assert!(enc.narrowed(16).is_ok());
        assert!(matches!(
            enc.narrowed(15),
            Err(QuantError::Overflow { limit: 16383, .. })
        ));
        for bits in [0, 1, 32, 40] {
            assert_eq!(
                enc.narrowed(bits),
                Err(QuantError::ShareBits {
                    ring: RingKind::Z2_32,
                    bits
                })
            );
        }
        // F_p shares are never narrowed; a sum that needs the whole ring
        // keeps it.
        let fp = fits(RingKind::Fp61, 256, spec).expect("fits");
        assert_eq!(fp.narrowest().share_bits(), None);
        assert!(matches!(fp.narrowed(16), Err(QuantError::ShareBits { .. })));
        let wide = QuantSpec::for_bits(25, 1.0).expect("valid");
        let full = fits(RingKind::Z2_32, 128, wide).expect("fits");
        assert_eq!(full.narrowest().share_bits(), None);
        assert_eq!(full.narrowest().vector_bytes(3), 12);
        assert_eq!(enc.narrowest().vector_bytes(3), 6);
        assert_eq!(
            fits(RingKind::Z2_32, 10, spec)
                .expect("fits")
                .narrowest()
                .vector_bytes(3),
            5
        );
    }

    #[test]
    fn a_narrowed_sum_is_read_back_signed_from_its_low_bits() {
        let spec = QuantSpec::new(0, 127.0, 8).expect("valid");
        let enc = fits(RingKind::Z2_32, 256, spec)
            .expect("fits")
            .narrowed(16)
            .expect("fits 16 bits");
        // -32512 and +32512 (the worst cases) plus high garbage that the
        // reduction discards.
        let sum = [
            (-32512i32 as u32 & 0xffff) | 0xabcd_0000,
            32512 | 0x1234_0000,
            0xffff,
        ];
        assert_eq!(
            enc.decode_sum_integers(&sum).expect("ring matches"),
            vec![-32512, 32512, -1]
        );
    }

    #[test]
    fn spec_deserialization_validates() {
        let ok: QuantSpec =
            serde_json::from_str(r#"{"scale_bits":8,"clip":1.0,"bits":16}"#).expect("valid");
        assert_eq!(ok.max_abs(), 256);
        assert!(
            serde_json::from_str::<QuantSpec>(r#"{"scale_bits":15,"clip":1.0,"bits":16}"#).is_err()
        );
        assert!(
            serde_json::from_str::<QuantSpec>(r#"{"scale_bits":8,"clip":1.0,"bits":16,"x":1}"#)
                .is_err()
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let q = Quantized {
            values: vec![123456],
            clipped: 0,
        };
        assert!(!format!("{q:?}").contains("123456"));
        let spec = QuantSpec::new(0, 1e6, 32).expect("valid");
        let mut ef = ErrorFeedback::new(1);
        ef.quantize(&spec, &[0.123456]).expect("finite");
        assert!(!format!("{ef:?}").contains("0.123"));
    }
}
