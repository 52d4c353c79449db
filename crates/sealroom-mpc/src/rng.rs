//! Randomness: every random choice the engine makes comes from a 32-byte
//! [`Seed`] the caller drew from the operating system, expanded with
//! `sealroom_core`'s AES-128-CTR PRG ([`sealroom_core::prg`]). Nothing in this
//! crate reads the OS generator itself, so a caller can record the seed for
//! replay, and tests are deterministic.
//!
//! Streams are domain-separated by a label and indices hashed with BLAKE3's
//! key-derivation mode under an MPC-specific context string, so they can
//! never coincide with a client's seed-compression stream (whose context is a
//! round descriptor hash).

use sealroom_core::Seed;
use sealroom_core::prg::{PrgDomain, PrgStream, Purpose};

use crate::field::{ELEMENT_BYTES, F127};

const KDF_CONTEXT: &str = "sealroom 2026-12 mpc prg domain v1";

/// Derives the 32-byte PRG context for `label` and `parts`.
pub fn derive_context(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
    h.update(&(label.len() as u64).to_le_bytes());
    h.update(label.as_bytes());
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    *h.finalize().as_bytes()
}

/// A stream of uniformly random field elements and bytes.
pub struct FieldPrg {
    stream: PrgStream,
    words: Vec<u64>,
}

impl FieldPrg {
    /// Opens the stream of `seed` under `context` (see [`derive_context`]).
    pub fn new(seed: &Seed, context: [u8; 32]) -> FieldPrg {
        let domain = PrgDomain {
            context,
            sender: 0,
            receiver: 0,
            purpose: Purpose::AdditiveMask,
        };
        FieldPrg {
            stream: PrgStream::new(seed, &domain),
            words: Vec::new(),
        }
    }

    /// Overwrites `out` with uniform elements (rejection sampling: each
    /// candidate is 16 keystream bytes with the top bit dropped; the single
    /// value p is rejected, probability 2^−127).
    pub fn fill(&mut self, out: &mut [F127]) {
        // Bounded chunks keep the keystream buffer in cache; the element
        // sequence is the same however the output is chunked.
        for part in out.chunks_mut(2048) {
            self.fill_chunk(part);
        }
    }

    fn fill_chunk(&mut self, out: &mut [F127]) {
        let mut filled = 0;
        while filled < out.len() {
            let need = out.len() - filled;
            self.words.resize(2 * need, 0);
            self.stream.fill(&mut self.words[..]);
            // Fast path (all but probability ~need·2^−127): every candidate
            // is accepted, so convert with a branch-free loop.
            let candidates = self
                .words
                .chunks_exact(2)
                .map(|p| ((u128::from(p[1]) << 64) | u128::from(p[0])) & crate::field::P);
            if !candidates
                .clone()
                .fold(false, |r, v| r | (v == crate::field::P))
            {
                for (slot, v) in out[filled..].iter_mut().zip(candidates) {
                    *slot = F127::from_reduced(v);
                }
                filled += need;
                continue;
            }
            for pair in self.words.chunks_exact(2) {
                let v = (u128::from(pair[1]) << 64) | u128::from(pair[0]);
                if let (Some(e), Some(slot)) = (
                    F127::from_canonical(v & crate::field::P),
                    out.get_mut(filled),
                ) {
                    *slot = e;
                    filled += 1;
                }
            }
        }
    }

    /// `acc[i] += next element`.
    pub fn add_into(&mut self, acc: &mut [F127]) {
        let mut tmp = vec![F127::ZERO; acc.len()];
        self.fill(&mut tmp);
        crate::field::kernels::add_assign(acc, &tmp);
        zeroize::Zeroize::zeroize(&mut tmp);
    }

    /// One element.
    pub fn element(&mut self) -> F127 {
        let mut one = [F127::ZERO];
        self.fill(&mut one);
        one[0]
    }

    /// `n` elements.
    pub fn elements(&mut self, n: usize) -> Vec<F127> {
        let mut v = vec![F127::ZERO; n];
        self.fill(&mut v);
        v
    }

    /// 32 random bytes (seeds, salts).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut w = [0u64; 4];
        self.stream.fill(&mut w);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(8).zip(w) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A fresh 32-byte seed.
    pub fn seed(&mut self) -> Seed {
        Seed::from_bytes(self.bytes32())
    }
}

impl Drop for FieldPrg {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.words);
    }
}

impl core::fmt::Debug for FieldPrg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FieldPrg(<redacted>)")
    }
}

/// `ELEMENT_BYTES` re-exported for callers sizing buffers.
pub const BYTES_PER_ELEMENT: usize = ELEMENT_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_separated_and_canonical() {
        let seed = Seed::from_bytes([1; 32]);
        let a = FieldPrg::new(&seed, derive_context("a", &[])).elements(1000);
        let b = FieldPrg::new(&seed, derive_context("a", &[])).elements(1000);
        let c = FieldPrg::new(&seed, derive_context("b", &[])).elements(1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|x| x.value() < crate::field::P));
        // Bit 126 is set in about half of uniform elements.
        let high = a.iter().filter(|x| x.value() >> 126 == 1).count();
        assert!((400..600).contains(&high), "{high}");
        // Chunked reads continue the same stream.
        let mut s = FieldPrg::new(&seed, derive_context("a", &[]));
        let mut first = s.elements(10);
        first.extend(s.elements(990));
        assert_eq!(first, a);
    }

    #[test]
    fn context_parts_are_length_prefixed() {
        assert_ne!(
            derive_context("x", &[b"ab", b"c"]),
            derive_context("x", &[b"a", b"bc"])
        );
    }
}
