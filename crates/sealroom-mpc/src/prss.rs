//! Key epochs and pseudo-random secret sharing (Cramer, Damgård, Ishai, TCC
//! 2005, §3) for 2-out-of-3 replicated sharing.
//!
//! There are three PRF keys k_0, k_1, k_2. Helper i holds k_i and k_{i+1}
//! (indices mod 3): it generates k_i and sends it to helper i − 1 over the
//! authenticated channel, and receives k_{i+1} from helper i + 1 — that
//! exchange is the shell's job; this module takes the two keys as
//! [`PrssKeys::new`]. A replicated sharing of x is x = x_0 + x_1 + x_2 with
//! helper i holding (x_i, x_{i+1}); PRSS makes a random one without
//! interaction by setting x_j = PRF(k_j, ·), and a zero-sharing by
//! z_i = PRF(k_i, ·) − PRF(k_{i+1}, ·). Any single helper misses one key, so
//! the value is pseudorandom to it.
//!
//! `products_into` is the semi-honest multiplication of Araki, Furukawa,
//! Lindell, Nof and Ohara (CCS 2016, §2.2): helper i computes
//! t_i = x_i(y_i + y_{i+1}) + x_{i+1} y_i + z_i, which sums to xy, and sends
//! t_i to helper i − 1 (one element per product). It is secure up to an
//! additive attack, which the Chida et al. verification in [`crate::preproc`]
//! catches.
//!
//! The epoch's SPDZ MAC key α is such a PRSS value under the label
//! "mac key" and the epoch number: rotating the epoch rotates α. Helper i's
//! additive SPDZ key share is α_i, the first component it holds.

use sealroom_core::Seed;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::field::F127;
use crate::machine::HelperIndex;
use crate::rng::{FieldPrg, derive_context};
use crate::share::MacKeyShare;

/// Helper i's two PRSS keys (k_i, k_{i+1}).
pub struct PrssKeys {
    me: HelperIndex,
    own: Seed,
    next: Seed,
}

impl core::fmt::Debug for PrssKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PrssKeys({:?}, <redacted>)", self.me)
    }
}

impl PrssKeys {
    /// `own` = k_i (drawn by this helper from the OS and sent to helper
    /// i − 1), `from_next` = k_{i+1} (received from helper i + 1).
    pub fn new(me: HelperIndex, own: Seed, from_next: Seed) -> PrssKeys {
        PrssKeys {
            me,
            own,
            next: from_next,
        }
    }

    /// This helper.
    pub fn me(&self) -> HelperIndex {
        self.me
    }

    /// The two streams (component i, component i+1) for `label` in `context`.
    pub(crate) fn streams(&self, label: &str, context: &[u8]) -> (FieldPrg, FieldPrg) {
        let own_idx = [self.me.index() as u8];
        let next_idx = [self.me.next().index() as u8];
        (
            FieldPrg::new(&self.own, derive_context(label, &[context, &own_idx])),
            FieldPrg::new(&self.next, derive_context(label, &[context, &next_idx])),
        )
    }
}

/// A key epoch: the PRSS keys and the epoch's replicated MAC key.
pub struct EpochKeys {
    prss: PrssKeys,
    epoch: u64,
    /// (α_i, α_{i+1}).
    alpha: Rss,
}

impl core::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "EpochKeys(epoch {}, {:?}, <redacted>)",
            self.epoch, self.prss.me
        )
    }
}

impl EpochKeys {
    /// Derives epoch `epoch`'s MAC key sharing from the PRSS keys.
    pub fn derive(prss: PrssKeys, epoch: u64) -> EpochKeys {
        let alpha = Prss::new(&prss, "mac key", &epoch.to_le_bytes()).random(1);
        EpochKeys { prss, epoch, alpha }
    }

    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This helper.
    pub fn me(&self) -> HelperIndex {
        self.prss.me
    }

    /// α_i, this helper's additive SPDZ key share.
    pub fn mac_key_share(&self) -> MacKeyShare {
        MacKeyShare(self.alpha.c0[0])
    }

    pub(crate) fn alpha(&self) -> &Rss {
        &self.alpha
    }

    pub(crate) fn prss(&self) -> &PrssKeys {
        &self.prss
    }
}

/// Helper i's components (x_i, x_{i+1}) of a replicated vector.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Rss {
    pub c0: Vec<F127>,
    pub c1: Vec<F127>,
}

impl Rss {
    pub fn len(&self) -> usize {
        self.c0.len()
    }

    /// Splits into consecutive pieces of the given lengths (one copy).
    pub fn split(self, sizes: &[usize]) -> Vec<Rss> {
        let mut out = Vec::with_capacity(sizes.len());
        let mut at = 0usize;
        for &s in sizes {
            let end = (at + s).min(self.c0.len()).min(self.c1.len());
            let from = at.min(end);
            out.push(Rss {
                c0: self.c0[from..end].to_vec(),
                c1: self.c1[from..end].to_vec(),
            });
            at += s;
        }
        out
    }
}

/// PRSS streams for one purpose.
pub(crate) struct Prss {
    random: (FieldPrg, FieldPrg),
    zero: (FieldPrg, FieldPrg),
}

impl Prss {
    pub fn new(keys: &PrssKeys, label: &str, context: &[u8]) -> Prss {
        let random = keys.streams(&format!("prss random {label}"), context);
        let zero = keys.streams(&format!("prss zero {label}"), context);
        Prss { random, zero }
    }

    /// A fresh random replicated vector.
    pub fn random(&mut self, n: usize) -> Rss {
        Rss {
            c0: self.random.0.elements(n),
            c1: self.random.1.elements(n),
        }
    }

    /// Overwrites `out` with this helper's shares z_i of zero-sharings
    /// (Σ z_i = 0); `scratch` is a reusable buffer.
    pub fn zero_fill(&mut self, out: &mut [F127], scratch: &mut Vec<F127>) {
        self.zero.0.fill(out);
        scratch.resize(out.len(), F127::ZERO);
        self.zero.1.fill(scratch);
        crate::field::kernels::sub_assign(out, scratch);
    }
}

/// The left operand of a product: a replicated vector, or one replicated
/// value broadcast over the right operand (r·a, α·b without copies).
pub(crate) enum Left<'a> {
    Vec(&'a Rss),
    Scalar(F127, F127),
}

/// Appends t_i of the AFLNO product of every `(x, y)` in `specs` to `out`
/// (zero-sharing streamed in chunks that stay in cache).
pub(crate) fn products_into(prss: &mut Prss, specs: &[(Left<'_>, &Rss)], out: &mut Vec<F127>) {
    const CHUNK: usize = 2048;
    let total: usize = specs.iter().map(|(_, y)| y.len()).sum();
    out.reserve(total);
    let mut zero = vec![F127::ZERO; CHUNK];
    let mut scratch = Vec::with_capacity(CHUNK);
    for (x, y) in specs {
        for start in (0..y.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(y.len());
            let z = &mut zero[..end - start];
            prss.zero_fill(z, &mut scratch);
            let (y0, y1) = (&y.c0[start..end], &y.c1[start..end]);
            match x {
                Left::Vec(x) => {
                    let (x0, x1) = (&x.c0[start..end], &x.c1[start..end]);
                    out.extend(x0.iter().zip(x1).zip(y0.iter().zip(y1)).zip(z.iter()).map(
                        |(((&a0, &a1), (&b0, &b1)), &z)| a0.mul(b0.add(b1)).add(a1.mul(b0)).add(z),
                    ));
                }
                Left::Scalar(a0, a1) => {
                    out.extend(
                        y0.iter()
                            .zip(y1)
                            .zip(z.iter())
                            .map(|((&b0, &b1), &z)| a0.mul(b0.add(b1)).add(a1.mul(b0)).add(z)),
                    );
                }
            }
        }
    }
}
