//! Additive n-of-n secret sharing over Z_2^32, Z_2^64 (or F_p), with seed
//! compression (DESIGN.md §2 step 2, "additive mode").
//!
//! A client with input `x` and `h` helpers draws `h − 1` seeds from a
//! cryptographic RNG. Helper `i` (all but one) receives seed `s_i`, which it
//! expands to `PRG(s_i)` under a domain bound to the round, the client and the
//! helper. The remaining helper — `client_index mod h`, so the load rotates —
//! receives the correction vector `x − Σ PRG(s_i)`. The upload is one vector
//! plus `h − 1` seeds: the size of the plaintext.
//!
//! Any `h − 1` shares are independent of `x` (each seed stream is
//! pseudorandom and the correction is masked by the missing one), so privacy
//! holds unless all helpers collude. Shares add: the sum over clients of each
//! helper's shares, summed over helpers, is the sum of the inputs.

use rand::CryptoRng;

use crate::error::SharingError;
use crate::prg::{self, PrgDomain, Purpose};
use crate::ring::Ring;
use crate::secret::{Seed, ShareVec};
use crate::vector;

/// Most helpers a round may have (DESIGN.md expects 2–7).
pub const MAX_HELPERS: usize = 16;

/// One helper's additive share of one client's input.
#[derive(Debug, Clone)]
pub enum AdditiveShare<R: Ring> {
    /// A seed; the share is its PRG expansion.
    Seed(Seed),
    /// The correction vector `x − Σ PRG(seed_i)`.
    Correction(ShareVec<R>),
}

/// Checks a helper count for additive sharing.
pub fn check_helpers(helpers: usize) -> Result<(), SharingError> {
    if helpers < 2 {
        return Err(SharingError::TooFewHelpers { helpers, min: 2 });
    }
    if helpers > MAX_HELPERS {
        return Err(SharingError::TooManyHelpers {
            helpers,
            max: MAX_HELPERS,
        });
    }
    Ok(())
}

/// The helper that receives client `client_index`'s correction vector.
pub fn correction_holder(client_index: u32, helpers: usize) -> usize {
    client_index as usize % helpers
}

/// The PRG domain of the seed that `client_index` sends to `helper`.
pub fn domain(context: [u8; 32], client_index: u32, helper: usize) -> PrgDomain {
    PrgDomain {
        context,
        sender: client_index,
        receiver: helper as u32,
        purpose: Purpose::AdditiveMask,
    }
}

/// Splits `input` into one share per helper (index = helper index).
pub fn share<R: Ring, G: CryptoRng + ?Sized>(
    input: &[R],
    helpers: usize,
    client_index: u32,
    context: [u8; 32],
    rng: &mut G,
) -> Result<Vec<AdditiveShare<R>>, SharingError> {
    check_helpers(helpers)?;
    let holder = correction_holder(client_index, helpers);
    let mut correction = ShareVec::new(input.to_vec());
    let mut shares = Vec::with_capacity(helpers);
    for helper in (0..helpers).filter(|&h| h != holder) {
        let seed = Seed::random(rng);
        prg::expand_sub_into(
            &seed,
            &domain(context, client_index, helper),
            correction.expose_mut(),
        );
        shares.push(AdditiveShare::Seed(seed));
    }
    shares.insert(holder, AdditiveShare::Correction(correction));
    Ok(shares)
}

impl<R: Ring> AdditiveShare<R> {
    /// Adds this share (of client `client_index`, held by `helper`) into a
    /// helper's running aggregate. Seeds are expanded fused with the addition.
    pub fn accumulate_into(
        &self,
        acc: &mut [R],
        context: [u8; 32],
        client_index: u32,
        helper: usize,
    ) -> Result<(), SharingError> {
        match self {
            AdditiveShare::Seed(seed) => {
                prg::expand_add_into(seed, &domain(context, client_index, helper), acc);
                Ok(())
            }
            AdditiveShare::Correction(v) => vector::add_assign(acc, v.expose())
                .map_err(|source| SharingError::ShareLength { helper, source }),
        }
    }
}

/// Adds the helpers' aggregate shares (one per helper, all required) into the
/// aggregate of the inputs.
pub fn reconstruct<R: Ring>(aggregates: &[&[R]], helpers: usize) -> Result<Vec<R>, SharingError> {
    check_helpers(helpers)?;
    if aggregates.len() != helpers {
        return Err(SharingError::WrongShareCount {
            expected: helpers,
            got: aggregates.len(),
        });
    }
    let len = aggregates[0].len();
    let mut sum = vec![R::ZERO; len];
    for (helper, agg) in aggregates.iter().enumerate() {
        vector::add_assign(&mut sum, agg)
            .map_err(|source| SharingError::ShareLength { helper, source })?;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Fp;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    const CTX: [u8; 32] = [7; 32];

    fn aggregate<R: Ring>(
        per_client: &[Vec<AdditiveShare<R>>],
        helper: usize,
        len: usize,
    ) -> Vec<R> {
        let mut acc = vec![R::ZERO; len];
        for (client, shares) in per_client.iter().enumerate() {
            shares[helper]
                .accumulate_into(&mut acc, CTX, client as u32, helper)
                .expect("lengths match");
        }
        acc
    }

    fn sum_of_shares<R: Ring>(inputs: &[Vec<R>], helpers: usize, seed: u64) -> Vec<R> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let len = inputs[0].len();
        let per_client: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| share(x, helpers, i as u32, CTX, &mut rng).expect("valid"))
            .collect();
        let aggs: Vec<Vec<R>> = (0..helpers)
            .map(|h| aggregate(&per_client, h, len))
            .collect();
        let refs: Vec<&[R]> = aggs.iter().map(Vec::as_slice).collect();
        reconstruct(&refs, helpers).expect("all helpers")
    }

    proptest! {
        #[test]
        fn share_then_reconstruct_is_identity_u32(x in proptest::collection::vec(any::<u32>(), 1..50), h in 2usize..8, seed in any::<u64>()) {
            prop_assert_eq!(sum_of_shares(std::slice::from_ref(&x), h, seed), x);
        }

        #[test]
        fn sharewise_sum_is_share_of_sum_u64(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 20), 1..12),
            h in 2usize..6,
            seed in any::<u64>(),
        ) {
            let mut expected = vec![0u64; 20];
            for x in &inputs {
                vector::add_assign(&mut expected, x).expect("same length");
            }
            prop_assert_eq!(sum_of_shares(&inputs, h, seed), expected);
        }

        #[test]
        fn works_in_the_field_too(x in proptest::collection::vec(0..crate::field::P, 1..30), seed in any::<u64>()) {
            let x: Vec<Fp> = x.into_iter().map(Fp::new).collect();
            prop_assert_eq!(sum_of_shares(std::slice::from_ref(&x), 3, seed), x);
        }
    }

    #[test]
    fn correction_rotates_with_the_client_index() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for client in 0..6u32 {
            let shares = share(&[1u32, 2, 3], 3, client, CTX, &mut rng).expect("valid");
            for (h, s) in shares.iter().enumerate() {
                let is_correction = matches!(s, AdditiveShare::Correction(_));
                assert_eq!(is_correction, h == client as usize % 3);
            }
        }
    }

    #[test]
    fn correction_of_a_zero_input_is_masked() {
        // The correction of an all-zero input is the negated seed streams, not zeros.
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let shares = share(&[0u64; 8], 3, 0, CTX, &mut rng).expect("valid");
        let AdditiveShare::Correction(c) = &shares[0] else {
            panic!("holder is helper 0")
        };
        assert!(c.expose().iter().all(|&v| v != 0), "correction is masked");
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        assert_eq!(
            share(&[1u32], 0, 0, CTX, &mut rng).err(),
            Some(SharingError::TooFewHelpers { helpers: 0, min: 2 })
        );
        assert_eq!(
            share(&[1u32], 1, 0, CTX, &mut rng).err(),
            Some(SharingError::TooFewHelpers { helpers: 1, min: 2 })
        );
        assert!(matches!(
            share(&[1u32], 17, 0, CTX, &mut rng),
            Err(SharingError::TooManyHelpers { .. })
        ));
        let a = [1u32, 2];
        let b = [1u32];
        assert_eq!(
            reconstruct(&[&a[..], &a[..]], 3).err(),
            Some(SharingError::WrongShareCount {
                expected: 3,
                got: 2
            })
        );
        assert!(matches!(
            reconstruct(&[&a[..], &b[..]], 2),
            Err(SharingError::ShareLength { helper: 1, .. })
        ));
        let correction = AdditiveShare::Correction(ShareVec::new(vec![1u32; 3]));
        let mut acc = vec![0u32; 2];
        assert!(matches!(
            correction.accumulate_into(&mut acc, CTX, 0, 0),
            Err(SharingError::ShareLength { helper: 0, .. })
        ));
    }
}
