//! Preprocessed material: Beaver triples, random bits, random values and
//! input masks, in additive SPDZ form, bound to a key epoch.
//!
//! A [`Batch`] has an id (chosen by the shell, tracked durably by the node)
//! and a digest every helper computes identically from the batch parameters
//! and the values opened while producing it, so the node can sign "batch
//! `id` with digest `d` was produced" and refuse a second use. In memory,
//! reuse is impossible by construction: a `Batch` is not `Clone`, a session
//! takes its batches by value, and inside a session each element is taken
//! once by an advancing cursor.
//!
//! ```compile_fail
//! fn reuse(b: sealroom_mpc::material::Batch) -> (sealroom_mpc::material::Batch, sealroom_mpc::material::Batch) {
//!     (b.clone(), b) // `Batch` is not `Clone`
//! }
//! ```

use core::fmt;

use crate::field::F127;
use crate::machine::HelperIndex;
use crate::share::AuthVec;

/// A batch id (16 bytes, chosen by the shell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub [u8; 16]);

/// How many of each item a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Counts {
    /// Beaver triples.
    pub triples: usize,
    /// Random shared bits.
    pub bits: usize,
    /// Random shared values.
    pub randoms: usize,
    /// Input masks, per owner helper.
    pub masks: [usize; 3],
}

impl Counts {
    /// Whether `self` has at least `need` of everything.
    pub fn covers(&self, need: &Counts) -> bool {
        self.triples >= need.triples
            && self.bits >= need.bits
            && self.randoms >= need.randoms
            && (0..3).all(|i| self.masks[i] >= need.masks[i])
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            self.triples,
            self.bits,
            self.randoms,
            self.masks[0],
            self.masks[1],
            self.masks[2],
        ] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        out
    }

    pub(crate) fn add(&self, o: &Counts) -> Counts {
        Counts {
            triples: self.triples + o.triples,
            bits: self.bits + o.bits,
            randoms: self.randoms + o.randoms,
            masks: [
                self.masks[0] + o.masks[0],
                self.masks[1] + o.masks[1],
                self.masks[2] + o.masks[2],
            ],
        }
    }
}

/// Where a batch came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provenance {
    /// Produced by the three helpers with [`crate::preproc`].
    Helpers,
}

/// One helper's part of a preprocessing batch.
pub struct Batch {
    pub(crate) id: BatchId,
    pub(crate) epoch: u64,
    pub(crate) me: HelperIndex,
    pub(crate) counts: Counts,
    pub(crate) digest: [u8; 32],
    pub(crate) provenance: Provenance,
    pub(crate) triples: [AuthVec; 3],
    pub(crate) bits: AuthVec,
    pub(crate) randoms: AuthVec,
    pub(crate) masks: [AuthVec; 3],
    /// Clear values of the masks this helper owns.
    pub(crate) my_masks: zeroize::Zeroizing<Vec<F127>>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("me", &self.me)
            .field("counts", &self.counts)
            .field("provenance", &self.provenance)
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// The batch id.
    pub fn id(&self) -> BatchId {
        self.id
    }
    /// The key epoch the material is MAC'd under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The digest all three helpers agree on (sign this with the id).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    /// What it holds.
    pub fn counts(&self) -> Counts {
        self.counts
    }
    /// Who made it.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }
    /// Whose part this is.
    pub fn helper(&self) -> HelperIndex {
        self.me
    }
}

/// Why stored material did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// Not a sealroom material record, or a version this build cannot read.
    #[error("not a sealroom preprocessing batch (bad magic or version)")]
    BadHeader,
    /// The record is shorter or longer than its counts say.
    #[error("batch record is {got} bytes, its counts need {expected}")]
    WrongLength {
        /// What the counts need.
        expected: usize,
        /// What the record has.
        got: usize,
    },
    /// Counts too large for this machine.
    #[error("batch counts overflow")]
    Overflow,
    /// An element is not canonical (≥ p).
    #[error("batch holds a non-canonical field element")]
    NonCanonical,
    /// The helper index or provenance byte is invalid.
    #[error("batch names an invalid helper or provenance")]
    BadField,
    /// The record is another helper's, batch or epoch than expected.
    #[error("batch record is not the expected batch of this helper and epoch")]
    Mismatch,
}

const MATERIAL_MAGIC: [u8; 4] = *b"SRMB";
const MATERIAL_VERSION: u8 = 1;
/// magic, version, helper, provenance, reserved, id, epoch, digest, 6 counts.
const MATERIAL_HEADER: usize = 4 + 4 + 16 + 8 + 32 + 6 * 8;

impl Batch {
    /// This helper's part of the batch as bytes for its own store (a
    /// secret: every share and MAC share of the batch; zeroized on drop).
    ///
    /// ```text
    /// "SRMB" | version 1 | helper | provenance 1 | 0 | id (16) | epoch u64 LE
    /// | digest (32) | counts: triples, bits, randoms, masks[0..3] (u64 LE)
    /// | triples a, b, c; bits; randoms; masks[0..3] — each values then MACs
    /// | this helper's clear mask values (masks[helper] of them)
    /// ```
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::new());
        out.extend_from_slice(&MATERIAL_MAGIC);
        out.extend_from_slice(&[
            MATERIAL_VERSION,
            self.me.index() as u8,
            match self.provenance {
                Provenance::Helpers => 1,
            },
            0,
        ]);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.counts.encode());
        for v in self.vectors() {
            crate::field::kernels::encode_into(&v.values, &mut out);
            crate::field::kernels::encode_into(&v.macs, &mut out);
        }
        crate::field::kernels::encode_into(&self.my_masks, &mut out);
        out
    }

    fn vectors(&self) -> [&AuthVec; 8] {
        [
            &self.triples[0],
            &self.triples[1],
            &self.triples[2],
            &self.bits,
            &self.randoms,
            &self.masks[0],
            &self.masks[1],
            &self.masks[2],
        ]
    }

    /// Reads back what [`Batch::to_bytes`] wrote, checking the length
    /// against the counts before allocating, every element's canonical
    /// form, and that it is batch `id` of helper `me` in key epoch `epoch`.
    pub fn from_bytes(
        bytes: &[u8],
        me: HelperIndex,
        id: BatchId,
        epoch: u64,
    ) -> Result<Batch, MaterialError> {
        if bytes.len() < MATERIAL_HEADER
            || bytes[..4] != MATERIAL_MAGIC
            || bytes[4] != MATERIAL_VERSION
        {
            return Err(MaterialError::BadHeader);
        }
        let helper = HelperIndex::new(usize::from(bytes[5])).ok_or(MaterialError::BadField)?;
        if bytes[6] != 1 || bytes[7] != 0 {
            return Err(MaterialError::BadField);
        }
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut got_id = [0u8; 16];
        got_id.copy_from_slice(&bytes[8..24]);
        let got_epoch = u64_at(24);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[32..64]);
        if helper != me || got_id != id.0 || got_epoch != epoch {
            return Err(MaterialError::Mismatch);
        }
        let n = |i: usize| usize::try_from(u64_at(64 + 8 * i)).map_err(|_| MaterialError::Overflow);
        let counts = Counts {
            triples: n(0)?,
            bits: n(1)?,
            randoms: n(2)?,
            masks: [n(3)?, n(4)?, n(5)?],
        };
        let lens = [
            counts.triples,
            counts.triples,
            counts.triples,
            counts.bits,
            counts.randoms,
            counts.masks[0],
            counts.masks[1],
            counts.masks[2],
        ];
        let elements = lens
            .iter()
            .try_fold(0usize, |acc, &l| acc.checked_add(l.checked_mul(2)?))
            .and_then(|e| e.checked_add(counts.masks[me.index()]))
            .ok_or(MaterialError::Overflow)?;
        let expected = elements
            .checked_mul(crate::field::ELEMENT_BYTES)
            .and_then(|b| b.checked_add(MATERIAL_HEADER))
            .ok_or(MaterialError::Overflow)?;
        if bytes.len() != expected {
            return Err(MaterialError::WrongLength {
                expected,
                got: bytes.len(),
            });
        }
        let mut at = MATERIAL_HEADER;
        let mut take = |len: usize| -> Result<Vec<F127>, MaterialError> {
            let mut v = vec![F127::ZERO; len];
            let end = at + len * crate::field::ELEMENT_BYTES;
            crate::field::kernels::decode_into(&bytes[at..end], &mut v)
                .ok_or(MaterialError::NonCanonical)?;
            at = end;
            Ok(v)
        };
        let mut vecs = Vec::with_capacity(8);
        for len in lens {
            let values = take(len)?;
            let macs = take(len)?;
            vecs.push(AuthVec::new(values, macs));
        }
        let my_masks = zeroize::Zeroizing::new(take(counts.masks[me.index()])?);
        let mut vecs = vecs.into_iter();
        let mut next = || vecs.next().unwrap_or_default();
        Ok(Batch {
            id,
            epoch,
            me,
            counts,
            digest,
            provenance: Provenance::Helpers,
            triples: [next(), next(), next()],
            bits: next(),
            randoms: next(),
            masks: [next(), next(), next()],
            my_masks,
        })
    }
}

/// Material a session consumes: one or more batches merged, with cursors.
pub(crate) struct Pool {
    pub counts: Counts,
    pub triples: [AuthVec; 3],
    pub bits: AuthVec,
    pub randoms: AuthVec,
    pub masks: [AuthVec; 3],
    pub my_masks: zeroize::Zeroizing<Vec<F127>>,
    pub cursor: Counts,
}

impl Pool {
    pub fn merge(batches: Vec<Batch>) -> Pool {
        let mut pool = Pool {
            counts: Counts::default(),
            triples: Default::default(),
            bits: AuthVec::default(),
            randoms: AuthVec::default(),
            masks: Default::default(),
            my_masks: zeroize::Zeroizing::new(Vec::new()),
            cursor: Counts::default(),
        };
        for mut b in batches {
            pool.counts = pool.counts.add(&b.counts);
            if pool.triples[0].is_empty()
                && pool.bits.is_empty()
                && pool.randoms.is_empty()
                && pool.masks.iter().all(AuthVec::is_empty)
            {
                // The first batch is moved, not copied.
                pool.triples = core::mem::take(&mut b.triples);
                pool.masks = core::mem::take(&mut b.masks);
                pool.bits = core::mem::take(&mut b.bits);
                pool.randoms = core::mem::take(&mut b.randoms);
                pool.my_masks = core::mem::take(&mut b.my_masks);
                continue;
            }
            for k in 0..3 {
                pool.triples[k].extend_from(&b.triples[k]);
                pool.masks[k].extend_from(&b.masks[k]);
            }
            pool.bits.extend_from(&b.bits);
            pool.randoms.extend_from(&b.randoms);
            pool.my_masks.extend_from_slice(&b.my_masks);
        }
        pool
    }

    fn slice(v: &AuthVec, from: usize, n: usize) -> AuthVec {
        let end = (from + n).min(v.len());
        let from = from.min(end);
        AuthVec::new(v.values[from..end].to_vec(), v.macs[from..end].to_vec())
    }

    /// Reserves the next `n` triples (a, b, c) and returns where they start
    /// in `self.triples`. The session checked the pool covers the program's
    /// needs before starting.
    pub fn take_triples(&mut self, n: usize) -> usize {
        let at = self.cursor.triples;
        self.cursor.triples += n;
        at
    }

    pub fn take_bits(&mut self, n: usize) -> AuthVec {
        let at = self.cursor.bits;
        self.cursor.bits += n;
        Pool::slice(&self.bits, at, n)
    }

    pub fn take_randoms(&mut self, n: usize) -> AuthVec {
        let at = self.cursor.randoms;
        self.cursor.randoms += n;
        Pool::slice(&self.randoms, at, n)
    }

    /// The next `n` masks of `owner`, and their clear values if we own them.
    pub fn take_masks(&mut self, owner: HelperIndex, n: usize, mine: bool) -> (AuthVec, Vec<F127>) {
        let k = owner.index();
        let at = self.cursor.masks[k];
        self.cursor.masks[k] += n;
        let shares = Pool::slice(&self.masks[k], at, n);
        let clear = if mine {
            let end = (at + n).min(self.my_masks.len());
            self.my_masks[at.min(end)..end].to_vec()
        } else {
            Vec::new()
        };
        (shares, clear)
    }
}
