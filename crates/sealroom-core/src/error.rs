//! The error type of the sharing schemes ([`crate::additive`], [`crate::shamir`]).

use crate::vector::LengthMismatch;

/// Why a sharing or reconstruction request was refused.
///
/// Every variant names what was wrong in terms a caller can act on; none
/// carries a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SharingError {
    /// Fewer helpers than the scheme needs for any privacy at all.
    #[error("{helpers} helper(s) configured; at least {min} are required")]
    TooFewHelpers {
        /// Helpers configured.
        helpers: usize,
        /// Minimum allowed.
        min: usize,
    },
    /// More helpers than sealroom supports.
    #[error("{helpers} helpers configured; at most {max} are supported")]
    TooManyHelpers {
        /// Helpers configured.
        helpers: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// A threshold larger than the number of helpers can never reconstruct.
    #[error("threshold {threshold} exceeds the number of helpers {helpers}")]
    ThresholdAboveHelpers {
        /// Threshold requested.
        threshold: usize,
        /// Helpers configured.
        helpers: usize,
    },
    /// A threshold below 2 would hand the secret to a single helper.
    #[error("threshold {threshold} is below 2: a single helper would learn the input")]
    ThresholdTooSmall {
        /// Threshold requested.
        threshold: usize,
    },
    /// A helper index outside `0..helpers`.
    #[error("helper index {index} is out of range for {helpers} helpers")]
    HelperOutOfRange {
        /// Index supplied.
        index: usize,
        /// Helpers configured.
        helpers: usize,
    },
    /// The same helper (x-coordinate) appears twice.
    #[error("helper {index} appears more than once")]
    DuplicateHelper {
        /// The repeated helper index.
        index: usize,
    },
    /// Fewer shares than the threshold: reconstruction is impossible.
    #[error("{got} share(s) supplied; {needed} are needed to reconstruct")]
    NotEnoughShares {
        /// Shares needed.
        needed: usize,
        /// Shares supplied.
        got: usize,
    },
    /// Additive reconstruction needs exactly one aggregate from every helper.
    #[error("{got} aggregate share(s) supplied; additive reconstruction needs all {expected}")]
    WrongShareCount {
        /// Shares required.
        expected: usize,
        /// Shares supplied.
        got: usize,
    },
    /// A share has the wrong number of elements.
    #[error("share of helper {helper} has the wrong length: {source}")]
    ShareLength {
        /// The helper whose share is malformed.
        helper: usize,
        /// Expected and actual lengths.
        source: LengthMismatch,
    },
    /// More than `t` shares were supplied and they do not lie on one polynomial
    /// of degree `t − 1`: at least one helper returned a wrong share.
    #[error("shares are inconsistent: {0}")]
    Inconsistent(InconsistencyReport),
}

/// Evidence of a Shamir consistency failure: which groups of `t + 1` helpers
/// disagree, and which helper (if it can be pinned down) is to blame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InconsistencyReport {
    /// Every set of `t + 1` helper indices whose shares do not lie on one
    /// polynomial of degree `t − 1` at some element.
    pub disagreeing_sets: Vec<Vec<usize>>,
    /// Helpers whose removal makes all remaining shares consistent. Empty when
    /// the data does not single anyone out (e.g. only `t + 1` shares).
    pub suspects: Vec<usize>,
    /// Number of element positions at which the shares disagree.
    pub inconsistent_elements: usize,
}

impl core::fmt::Display for InconsistencyReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} element(s) disagree; disagreeing helper sets {:?}",
            self.inconsistent_elements, self.disagreeing_sets
        )?;
        if self.suspects.is_empty() {
            f.write_str("; culprit not identifiable from these shares")
        } else {
            write!(f, "; suspect helper(s) {:?}", self.suspects)
        }
    }
}
