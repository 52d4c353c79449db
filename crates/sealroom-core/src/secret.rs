//! Secret newtypes: [`Seed`] and [`ShareVec`].
//!
//! Both zeroize their memory when dropped, print as `<redacted>` under
//! `Debug`, implement neither `Display` nor `Serialize`, and compare in
//! constant time ([`subtle::ConstantTimeEq`]). Getting the bytes out takes an
//! explicit, greppable call (`expose_*`), so a secret cannot reach a log line by
//! accident.

use core::fmt;

use rand::CryptoRng;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ring::Ring;

/// A 32-byte PRG seed. Expands to a pseudorandom share with [`crate::prg`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; Seed::LEN]);

impl Seed {
    /// Length of a seed in bytes.
    pub const LEN: usize = 32;

    /// Draws a fresh seed from a cryptographic RNG (the OS, or a CSPRNG seeded
    /// from it).
    pub fn random<G: CryptoRng + ?Sized>(rng: &mut G) -> Seed {
        let mut bytes = [0u8; Seed::LEN];
        rng.fill_bytes(&mut bytes);
        Seed(bytes)
    }

    /// Wraps bytes received from a peer or read from disk.
    pub fn from_bytes(bytes: [u8; Seed::LEN]) -> Seed {
        Seed(bytes)
    }

    /// Parses a seed from a slice, refusing any length other than 32.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Seed> {
        Some(Seed(bytes.try_into().ok()?))
    }

    /// The raw bytes, for the wire encoder and the PRG only.
    pub fn expose_bytes(&self) -> &[u8; Seed::LEN] {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

impl ConstantTimeEq for Seed {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

/// A vector of secret ring elements: one party's share, a correction vector,
/// or a not-yet-revealed aggregate share.
#[derive(Clone, Default)]
pub struct ShareVec<R: Ring>(Vec<R>);

impl<R: Ring> ShareVec<R> {
    /// Takes ownership of a vector of secret elements.
    pub fn new(elements: Vec<R>) -> Self {
        ShareVec(elements)
    }

    /// An all-zero vector of `len` elements (an empty accumulator).
    pub fn zeros(len: usize) -> Self {
        ShareVec(vec![R::ZERO; len])
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Read access to the elements.
    pub fn expose(&self) -> &[R] {
        &self.0
    }

    /// Write access to the elements.
    pub fn expose_mut(&mut self) -> &mut [R] {
        &mut self.0
    }

    /// Declares the vector public (e.g. a reconstructed aggregate) and hands
    /// out the elements. The copy left behind is zeroized.
    pub fn into_revealed(mut self) -> Vec<R> {
        core::mem::take(&mut self.0)
    }
}

impl<R: Ring> Zeroize for ShareVec<R> {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl<R: Ring> Drop for ShareVec<R> {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl<R: Ring> ZeroizeOnDrop for ShareVec<R> {}

impl<R: Ring> fmt::Debug for ShareVec<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareVec<{}>(len={}, <redacted>)", R::KIND, self.0.len())
    }
}

impl<R: Ring> ConstantTimeEq for ShareVec<R> {
    fn ct_eq(&self, other: &Self) -> Choice {
        // Lengths are public; contents are compared without early exit.
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Fp;

    #[test]
    fn debug_is_redacted() {
        let seed = Seed::from_bytes([0xAB; 32]);
        let text = format!("{seed:?}");
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("ab"),
            "{text}"
        );
        let share = ShareVec::new(vec![123_456_789u64, 987_654_321]);
        let text = format!("{share:?}");
        assert!(
            !text.contains("123456789") && !text.contains("987654321"),
            "{text}"
        );
        assert!(text.contains("len=2"));
    }

    #[test]
    fn constant_time_equality() {
        let a = Seed::from_bytes([1; 32]);
        let b = Seed::from_bytes([1; 32]);
        let c = Seed::from_bytes([2; 32]);
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
        let x = ShareVec::new(vec![Fp::new(1), Fp::new(2)]);
        let y = ShareVec::new(vec![Fp::new(1), Fp::new(2)]);
        let z = ShareVec::new(vec![Fp::new(1)]);
        assert!(bool::from(x.ct_eq(&y)));
        assert!(!bool::from(x.ct_eq(&z)));
    }

    #[test]
    fn zeroize_clears_contents() {
        let mut seed = Seed::from_bytes([7; 32]);
        seed.zeroize();
        assert_eq!(seed.expose_bytes(), &[0; 32]);
        let mut share = ShareVec::new(vec![5u32; 4]);
        share.zeroize();
        assert!(share.is_empty());
    }

    #[test]
    fn seed_slices_must_be_32_bytes() {
        assert!(Seed::try_from_slice(&[0; 31]).is_none());
        assert!(Seed::try_from_slice(&[0; 33]).is_none());
        assert!(Seed::try_from_slice(&[0; 32]).is_some());
    }
}
