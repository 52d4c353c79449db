//! Seed expansion: a 32-byte [`Seed`] becomes a pseudorandom vector of ring or
//! field elements with AES-128 in counter mode (the `aes` crate uses AES-NI /
//! ARMv8 AES where the CPU has it, detected at run time).
//!
//! **Domain separation.** The AES key and initial counter are derived from the
//! seed *and* a [`PrgDomain`] — the round's context hash (the descriptor hash),
//! the sender and receiver indices, and a [`Purpose`] — with BLAKE3's key
//! derivation mode. The same seed used for two helpers, two rounds or two
//! purposes therefore yields independent streams.
//!
//! **Sampling.** Z_2^32 and Z_2^64 take 4 or 8 keystream bytes per element
//! verbatim. F_p takes 8 bytes, keeps the low 61 bits and *rejects* the single
//! out-of-range value p (probability 2^-61 per element), so elements are
//! exactly uniform — never `word mod p`.
//!
//! The element stream is a pure function of `(seed, domain)`, pinned by the
//! vectors in `tests/vectors/prg.json`.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Block};

use crate::ring::Ring;
use crate::secret::{Seed, ShareVec};

/// Keystream is produced in blocks of this many bytes (fits in L1).
const BLOCK_BYTES: usize = 8 * 1024;

/// BLAKE3 key-derivation context; changing it changes every stream.
const KDF_CONTEXT: &str = "sealroom 2026-11 prg aes-128-ctr v1";

/// What a PRG stream is used for. Part of the domain separation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// A helper's pseudorandom additive share (seed compression).
    AdditiveMask,
    /// A helper's pseudorandom Shamir share (seed compression).
    ShamirShare,
}

impl Purpose {
    /// Stable numeric code mixed into the key derivation.
    pub const fn code(self) -> u32 {
        match self {
            Purpose::AdditiveMask => 1,
            Purpose::ShamirShare => 2,
        }
    }
}

/// Everything a stream is bound to besides its seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrgDomain {
    /// Hash of the context the stream belongs to (the round descriptor's hash).
    pub context: [u8; 32],
    /// Index of the party that drew the seed (the client's index in the round).
    pub sender: u32,
    /// Index of the party that expands it (the helper's index).
    pub receiver: u32,
    /// What the stream is for.
    pub purpose: Purpose,
}

impl PrgDomain {
    fn derive_key_iv(&self, seed: &Seed) -> zeroize::Zeroizing<[u8; 32]> {
        let mut hasher = blake3::Hasher::new_derive_key(KDF_CONTEXT);
        hasher.update(seed.expose_bytes());
        hasher.update(&self.context);
        hasher.update(&self.sender.to_le_bytes());
        hasher.update(&self.receiver.to_le_bytes());
        hasher.update(&self.purpose.code().to_le_bytes());
        zeroize::Zeroizing::new(*hasher.finalize().as_bytes())
    }
}

/// Expands `seed` into a fresh secret vector of `len` elements.
pub fn expand<R: Ring>(seed: &Seed, domain: &PrgDomain, len: usize) -> ShareVec<R> {
    let mut out = ShareVec::zeros(len);
    PrgStream::new(seed, domain).fill(out.expose_mut());
    out
}

/// `acc += stream`, without materialising the stream (fused expansion).
pub fn expand_add_into<R: Ring>(seed: &Seed, domain: &PrgDomain, acc: &mut [R]) {
    PrgStream::new(seed, domain).add_into(acc);
}

/// `acc −= stream`, without materialising the stream (fused expansion).
pub fn expand_sub_into<R: Ring>(seed: &Seed, domain: &PrgDomain, acc: &mut [R]) {
    PrgStream::new(seed, domain).sub_into(acc);
}

/// An open stream, for consuming the elements in chunks (e.g. to keep a fused
/// interpolation loop in cache). Consecutive calls continue the same element
/// sequence: filling 10 then 20 elements equals filling 30 at once.
///
/// The keystream is AES-128 in counter mode with a 128-bit big-endian
/// counter starting at the derived IV (exactly `ctr::Ctr128BE<Aes128>`, which
/// the tests check), generated here a buffer at a time: counters written
/// straight into the buffer and encrypted in place with the cipher's widest
/// parallel backend (AES-NI or VAES), with no per-block stream plumbing.
pub struct PrgStream {
    cipher: Aes128,
    /// The counter of the next block to generate.
    counter: u128,
    /// Keystream not yet consumed: `buffer[pos..]`.
    buffer: zeroize::Zeroizing<[u8; BLOCK_BYTES]>,
    pos: usize,
}

impl PrgStream {
    /// Opens the stream of `(seed, domain)` at its first element.
    pub fn new(seed: &Seed, domain: &PrgDomain) -> PrgStream {
        let key_iv = domain.derive_key_iv(seed);
        let (key, iv) = key_iv.split_at(16);
        let cipher = Aes128::new_from_slice(key).expect("AES-128 keys are 16 bytes");
        let mut counter = [0u8; 16];
        counter.copy_from_slice(iv);
        let stream = PrgStream {
            cipher,
            counter: u128::from_be_bytes(counter),
            buffer: zeroize::Zeroizing::new([0u8; BLOCK_BYTES]),
            pos: BLOCK_BYTES,
        };
        zeroize::Zeroize::zeroize(&mut counter);
        stream
    }

    /// Overwrites `out` with the next `out.len()` elements.
    pub fn fill<R: Ring>(&mut self, out: &mut [R]) {
        self.drive(out, |o, e| *o = e);
    }

    /// Adds the next `acc.len()` elements into `acc`.
    pub fn add_into<R: Ring>(&mut self, acc: &mut [R]) {
        self.drive(acc, |o, e| *o = o.add(e));
    }

    /// Subtracts the next `acc.len()` elements from `acc`.
    pub fn sub_into<R: Ring>(&mut self, acc: &mut [R]) {
        self.drive(acc, |o, e| *o = o.sub(e));
    }

    /// Refills the whole buffer with the next keystream blocks.
    fn refill(&mut self) {
        let (blocks, rest) = Block::slice_as_chunks_mut(&mut self.buffer[..]);
        debug_assert!(rest.is_empty(), "the buffer holds whole blocks");
        for block in blocks.iter_mut() {
            block.copy_from_slice(&self.counter.to_be_bytes());
            self.counter = self.counter.wrapping_add(1);
        }
        self.cipher.encrypt_blocks(blocks);
        self.pos = 0;
    }

    /// Drives the keystream through `apply`, one element per accepted word.
    #[inline(always)]
    fn drive<R: Ring, F: FnMut(&mut R, R)>(&mut self, out: &mut [R], mut apply: F) {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == BLOCK_BYTES {
                self.refill();
            }
            let available = (BLOCK_BYTES - self.pos) / R::WORD_BYTES;
            if available == 0 {
                // A word straddles two buffers (only when one stream is read
                // with words of different sizes): assemble it by hand.
                let mut word = [0u8; 8];
                let head = BLOCK_BYTES - self.pos;
                word[..head].copy_from_slice(&self.buffer[self.pos..]);
                self.refill();
                word[head..R::WORD_BYTES].copy_from_slice(&self.buffer[..R::WORD_BYTES - head]);
                self.pos = R::WORD_BYTES - head;
                filled += consume_block(&word[..R::WORD_BYTES], &mut out[filled..], &mut apply);
                zeroize::Zeroize::zeroize(&mut word);
                continue;
            }
            // Never draw more words than elements still needed, so the stream
            // consumed is exactly "accepted words plus rejected ones" and a
            // later call continues where this one stopped.
            let words = (out.len() - filled).min(available);
            let end = self.pos + words * R::WORD_BYTES;
            let bytes = &self.buffer[self.pos..end];
            let target = &mut out[filled..filled + words];
            filled += consume_block(bytes, target, &mut apply);
            self.pos = end;
        }
    }
}

impl Drop for PrgStream {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.counter);
    }
}

impl core::fmt::Debug for PrgStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrgStream(<redacted>)")
    }
}

/// Turns a block of keystream into elements applied to `target` (at least
/// as long as the block has words) and returns how many were accepted.
#[inline(always)]
fn consume_block<R: Ring, F: FnMut(&mut R, R)>(
    bytes: &[u8],
    target: &mut [R],
    apply: &mut F,
) -> usize {
    // Fast path: every word accepted (always, except for F_p with probability
    // 2^-61 per word), so apply the block with a plain zip that vectorises.
    // The acceptance test is a separate cheap pass over the block.
    let words = bytes.chunks_exact(R::WORD_BYTES);
    let rejected: usize = words
        .clone()
        .map(|w| usize::from(R::is_rejected_word(read_word(w))))
        .sum();
    if rejected == 0 {
        let n = words.len();
        for (o, w) in target.iter_mut().zip(words) {
            apply(o, R::from_accepted_word(read_word(w)));
        }
        return n;
    }
    let mut accepted = 0;
    for word in words {
        if let Some(e) = R::from_uniform_word(read_word(word)) {
            apply(&mut target[accepted], e);
            accepted += 1;
        }
    }
    accepted
}

#[inline(always)]
fn read_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Fp;

    fn domain(sender: u32, receiver: u32, purpose: Purpose) -> PrgDomain {
        PrgDomain {
            context: [9; 32],
            sender,
            receiver,
            purpose,
        }
    }

    #[test]
    fn deterministic_and_domain_separated() {
        let seed = Seed::from_bytes([42; 32]);
        let d = domain(1, 2, Purpose::AdditiveMask);
        let a = expand::<u64>(&seed, &d, 1000);
        let b = expand::<u64>(&seed, &d, 1000);
        assert_eq!(a.expose(), b.expose());
        for other in [
            domain(2, 2, Purpose::AdditiveMask),
            domain(1, 3, Purpose::AdditiveMask),
            domain(1, 2, Purpose::ShamirShare),
            PrgDomain {
                context: [8; 32],
                ..d
            },
        ] {
            assert_ne!(expand::<u64>(&seed, &other, 8).expose(), &a.expose()[..8]);
        }
        assert_ne!(
            expand::<u64>(&Seed::from_bytes([43; 32]), &d, 8).expose(),
            &a.expose()[..8]
        );
    }

    #[test]
    fn prefixes_agree_across_lengths_and_block_boundaries() {
        let seed = Seed::from_bytes([5; 32]);
        let d = domain(0, 0, Purpose::ShamirShare);
        let long = expand::<Fp>(&seed, &d, 5000);
        let short = expand::<Fp>(&seed, &d, 1500);
        assert_eq!(&long.expose()[..1500], short.expose());
        let long32 = expand::<u32>(&seed, &d, 5000);
        let short32 = expand::<u32>(&seed, &d, 2049);
        assert_eq!(&long32.expose()[..2049], short32.expose());
    }

    #[test]
    fn fused_add_and_sub_match_materialised_stream() {
        let seed = Seed::from_bytes([3; 32]);
        let d = domain(4, 1, Purpose::AdditiveMask);
        let stream = expand::<u32>(&seed, &d, 3000);
        let mut acc = vec![7u32; 3000];
        expand_add_into(&seed, &d, &mut acc);
        for (a, s) in acc.iter().zip(stream.expose()) {
            assert_eq!(*a, 7u32.wrapping_add(*s));
        }
        expand_sub_into(&seed, &d, &mut acc);
        assert_eq!(acc, vec![7u32; 3000]);
    }

    #[test]
    fn field_stream_is_canonical_and_spread() {
        let seed = Seed::from_bytes([11; 32]);
        let v = expand::<Fp>(&seed, &domain(0, 1, Purpose::ShamirShare), 20_000);
        assert!(v.expose().iter().all(|x| x.value() < crate::field::P));
        // The top bit (bit 60) is set in about half of uniform elements.
        let high = v.expose().iter().filter(|x| x.value() >> 60 == 1).count();
        assert!((9_000..11_000).contains(&high), "{high}");
    }

    #[test]
    fn chunked_stream_equals_one_shot() {
        let seed = Seed::from_bytes([12; 32]);
        let d = domain(3, 0, Purpose::ShamirShare);
        let whole = expand::<Fp>(&seed, &d, 3001);
        let mut stream = PrgStream::new(&seed, &d);
        let mut parts = vec![Fp::ZERO; 3001];
        let (a, rest) = parts.split_at_mut(10);
        let (b, c) = rest.split_at_mut(1200);
        stream.fill(a);
        stream.fill(b);
        stream.fill(c);
        assert_eq!(parts, whole.expose());
    }

    #[test]
    fn rejected_words_are_skipped_not_reduced() {
        use crate::field::P;
        let words = [5u64, P, u64::MAX, 7, P + 1];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut target = [Fp::ZERO; 5];
        let accepted = consume_block(&bytes, &mut target, &mut |o: &mut Fp, e| *o = e);
        // P and u64::MAX (whose low 61 bits are P) are rejected; P + 1 keeps its low 61 bits.
        assert_eq!(accepted, 3);
        assert_eq!(
            &target[..3],
            &[Fp::new(5), Fp::new(7), Fp::new((P + 1) & P)]
        );
        let mut target32 = [0u32; 2];
        let accepted = consume_block(
            &[1, 0, 0, 0, 2, 0, 0, 0],
            &mut target32,
            &mut |o: &mut u32, e| *o = e,
        );
        assert_eq!((accepted, target32), (2, [1, 2]));
    }

    /// The keystream is exactly AES-128-CTR with a 128-bit big-endian
    /// counter (the `ctr` crate's `Ctr128BE`), including across buffer
    /// refills, a counter that wraps, and reads with mixed word sizes.
    #[test]
    fn keystream_is_ctr128be() {
        use ctr::cipher::{KeyIvInit, StreamCipher};
        let seed = Seed::from_bytes([21; 32]);
        let d = domain(7, 1, Purpose::AdditiveMask);
        let key_iv = d.derive_key_iv(&seed);
        let (key, iv) = key_iv.split_at(16);
        let mut reference =
            ctr::Ctr128BE::<Aes128>::new_from_slices(key, iv).expect("16-byte key and iv");
        let mut expected = vec![0u8; 3 * BLOCK_BYTES + 40];
        reference.write_keystream(&mut expected);
        let mut stream = PrgStream::new(&seed, &d);
        // u32 words, then u64 words from an offset of 4 bytes mod 8, so one
        // u64 word straddles a buffer refill.
        let mut first = vec![0u32; BLOCK_BYTES / 4 - 1];
        stream.fill(&mut first);
        let mut second = vec![0u64; (2 * BLOCK_BYTES + 36) / 8];
        stream.fill(&mut second);
        let got: Vec<u8> = first
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .chain(second.iter().flat_map(|w| w.to_le_bytes()))
            .collect();
        assert_eq!(got, expected[..got.len()]);

        // A counter about to wrap keeps following the reference.
        let mut stream = PrgStream::new(&seed, &d);
        stream.counter = u128::MAX - 1;
        let mut a = vec![0u8; 64];
        let mut after =
            ctr::Ctr128BE::<Aes128>::new_from_slices(key, &(u128::MAX - 1).to_be_bytes())
                .expect("16-byte key and iv");
        after.write_keystream(&mut a);
        let mut words = [0u64; 8];
        stream.fill(&mut words);
        let got: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(got, a);
    }

    #[test]
    fn empty_expansion_is_empty() {
        let seed = Seed::from_bytes([0; 32]);
        assert!(expand::<u64>(&seed, &domain(0, 0, Purpose::AdditiveMask), 0).is_empty());
    }
}
