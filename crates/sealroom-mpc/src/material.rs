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
