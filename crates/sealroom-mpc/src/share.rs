//! Additive SPDZ sharing among three helpers (Damgård, Pastro, Smart,
//! Zakarias, CRYPTO 2012, §2; Damgård, Keller, Larraia, Pastro, Scholl,
//! Smart, ESORICS 2013, §2).
//!
//! Helper i holds, for each shared x, a value share x_i and a MAC share m_i
//! with Σx_i = x and Σm_i = α·x, where α = α_0 + α_1 + α_2 is the key epoch's
//! MAC key ([`MacKeyShare`] is α_i) and is never opened. Linear operations are
//! local: sums add both components; a public constant c is added by helper 0
//! to its value share and by every helper as α_i·c to its MAC share.
//!
//! [`AuthVec`] stores a vector of such pairs as two arrays (values, macs) so
//! the element-wise kernels vectorise. It is a secret: zeroized on drop,
//! redacted in `Debug`, no `Display`, no serialisation.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::field::{F127, kernels};

/// Helper i's share α_i of the epoch's MAC key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MacKeyShare(pub(crate) F127);

impl fmt::Debug for MacKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKeyShare(<redacted>)")
    }
}

/// One helper's shares of a vector of authenticated values.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub struct AuthVec {
    pub(crate) values: Vec<F127>,
    pub(crate) macs: Vec<F127>,
}

impl fmt::Debug for AuthVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthVec(len={}, <redacted>)", self.values.len())
    }
}

impl AuthVec {
    /// Wraps value and MAC shares of equal length.
    pub(crate) fn new(values: Vec<F127>, macs: Vec<F127>) -> AuthVec {
        debug_assert_eq!(values.len(), macs.len());
        AuthVec { values, macs }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn zeros(n: usize) -> AuthVec {
        AuthVec::new(vec![F127::ZERO; n], vec![F127::ZERO; n])
    }

    /// `self + other`.
    pub(crate) fn add(&self, other: &AuthVec) -> AuthVec {
        let mut out = self.duplicate();
        kernels::add_assign(&mut out.values, &other.values);
        kernels::add_assign(&mut out.macs, &other.macs);
        out
    }

    /// `self − other`.
    pub(crate) fn sub(&self, other: &AuthVec) -> AuthVec {
        let mut out = self.duplicate();
        kernels::sub_assign(&mut out.values, &other.values);
        kernels::sub_assign(&mut out.macs, &other.macs);
        out
    }

    /// `c · self`.
    pub(crate) fn scale(&self, c: F127) -> AuthVec {
        let mut out = self.duplicate();
        kernels::scale(&mut out.values, c);
        kernels::scale(&mut out.macs, c);
        out
    }

    /// `self ⊙ p` for a public vector `p`.
    pub(crate) fn mul_public(&self, p: &[F127]) -> AuthVec {
        let mut out = self.duplicate();
        kernels::mul_assign(&mut out.values, p);
        kernels::mul_assign(&mut out.macs, p);
        out
    }

    /// `self + p` for a public vector `p` (helper 0 adds to its value share).
    pub(crate) fn add_public(&mut self, p: &[F127], is_first: bool, key: &MacKeyShare) {
        if is_first {
            kernels::add_assign(&mut self.values, p);
        }
        kernels::mul_add_assign(&mut self.macs, key.0, p);
    }

    /// `self + c` for a public constant.
    pub(crate) fn add_const(&mut self, c: F127, is_first: bool, key: &MacKeyShare) {
        if is_first {
            for v in &mut self.values {
                *v = v.add(c);
            }
        }
        let ac = key.0.mul(c);
        for m in &mut self.macs {
            *m = m.add(ac);
        }
    }

    /// Value and MAC slices of `n` elements from `at`, if in range.
    pub(crate) fn slice(&self, at: usize, n: usize) -> Option<(&[F127], &[F127])> {
        let end = at.checked_add(n)?;
        Some((self.values.get(at..end)?, self.macs.get(at..end)?))
    }

    /// An explicit copy (shares are not `Clone`, so copies are visible).
    pub(crate) fn duplicate(&self) -> AuthVec {
        AuthVec::new(self.values.clone(), self.macs.clone())
    }

    /// Elements at `idx` (indices are program constants, checked at build).
    pub(crate) fn gather(&self, idx: &[u32]) -> AuthVec {
        let pick = |v: &[F127]| {
            idx.iter()
                .map(|&i| v.get(i as usize).copied().unwrap_or(F127::ZERO))
                .collect()
        };
        AuthVec::new(pick(&self.values), pick(&self.macs))
    }

    pub(crate) fn extend_from(&mut self, other: &AuthVec) {
        self.values.extend_from_slice(&other.values);
        self.macs.extend_from_slice(&other.macs);
    }
}
