//! Comparison, equality, bit decomposition, truncation and sorting, built
//! from the primitive operations of [`crate::program`].
//!
//! * **Mod2m, Trunc, LTZ, LT** — Catrina & de Hoogh, "Improved primitives for
//!   secure multiparty integer computation", SCN 2010 (the FC/SCN 2010
//!   paper), §3.2 (Protocol 3.2 Mod2m) and §3.3 (BitLT) with statistical
//!   masking: open `c = a + 2^(k−1) + r' + 2^m r''` with `r'` m random bits and
//!   `r''` k + κ − m random bits, then `a mod 2^m = c' − r' + 2^m·[c' < r']`.
//!   Requires `p > 2^(k+κ+1)`; with κ = 40 and p = 2^127 − 1 any k ≤ 85 works.
//!   BitLT is computed with a logarithmic-depth tree over (equal-so-far,
//!   less-than) pairs: `log2 m` rounds, `2(m − 1)` products.
//!   `LTZ(a) = −Trunc(a, k, k−1)`, `LT(a, b) = LTZ(a − b)` at k + 1 bits.
//! * **EQZ** — Catrina & de Hoogh §3 with the equality test of Nishide &
//!   Ohta (PKC 2007, §4): open `c = a + 2^k + r' + 2^k r''`; then `a = 0`
//!   iff every bit of `c mod 2^k` equals the corresponding bit of `r'`,
//!   an AND of k bits (`log2 k` rounds).
//! * **Bit decomposition** — the same masked opening, then the binary
//!   subtraction `c' − r' = c' + ¬r' + 1 (mod 2^k)` with a Sklansky
//!   parallel-prefix carry computation (Damgård, Fitzi, Kiltz, Nielsen, Toft,
//!   TCC 2006, §6 use the same prefix structure): `log2 k + 1` rounds.
//! * **Probabilistic truncation** — Catrina & Saxena, "Secure computation
//!   with fixed-point numbers", FC 2010, §3.1 (TruncPr): one opening, result
//!   `⌊a/2^m⌋ + u` with `u ∈ {0, 1}` and `Pr[u = 1] = (a mod 2^m)/2^m`.
//! * **Sorting** — Batcher's odd–even merge sort network (AFIPS 1968), every
//!   layer of disjoint compare-exchanges vectorised into one LT and one
//!   product; selection of a public rank reads the sorted vector. MIN/MAX use
//!   a tournament (`⌈log2 n⌉` comparison layers).
//!
//! All values are signed integers of at most k bits embedded in F_p; the
//! caller states k (the data's bit length), and the result is exact (except
//! TruncPr's documented rounding) whenever the inputs are in range.

use crate::field::F127;
use crate::program::{KAPPA, ProgramBuilder, Public, Secret};

fn pow2(k: u32) -> F127 {
    F127::pow2(k)
}

fn inv_pow2(k: u32) -> F127 {
    // 2^−k = (2^−1)^k.
    let mut x = F127::ONE;
    for _ in 0..k {
        x = x.mul(F127::INV2);
    }
    x
}

/// Largest data bit length the statistical masking supports (k + κ + 2 < 127).
pub const MAX_BITS: u32 = 127 - KAPPA - 3;

impl ProgramBuilder {
    fn bits_ok(&mut self, k: u32) -> bool {
        if k == 0 || k > MAX_BITS {
            self.fail_unsupported("bit length must be in 1..=84");
            return false;
        }
        true
    }

    pub(crate) fn fail_unsupported(&mut self, what: &'static str) {
        let _ = self.slice_or_fail(what);
    }

    fn slice_or_fail(&mut self, what: &'static str) -> Option<()> {
        // Record the error through the builder's public path.
        self.record_error(crate::program::ProgramError::Unsupported(what));
        None
    }

    /// Random `r'` (m bits, returned as bits and composed) and `2^m·r''`.
    fn masks(&mut self, n: usize, m: u32, extra: u32) -> (Secret, Secret, Secret) {
        let rb = self.random_bits(n * m as usize);
        let r1 = self.bit_compose(rb, m, 0);
        let rr = self.random_bits(n * extra as usize);
        let r2 = self.bit_compose(rr, extra, m);
        (rb, r1, r2)
    }

    /// `[c < r]` for public bits `c` and shared bits `r` (bit-major, m blocks).
    pub(crate) fn bit_lt(&mut self, c: Public, r: Secret, m: u32) -> Secret {
        let one_minus_c = self.public_affine(c, F127::ONE.neg(), F127::ONE);
        let one_minus_2c = self.public_affine(c, F127::from_u64(2).neg(), F127::ONE);
        let t = self.mul_public(r, one_minus_2c);
        let e = self.public_sub(one_minus_c, t); // 1 − (c ⊕ r)
        let l = self.mul_public(r, one_minus_c); // r ∧ ¬c
        self.lt_tree(e, l, m)
    }

    /// Combines (E, L) blocks from the top: L = L_hi + E_hi·L_lo.
    fn lt_tree(&mut self, mut e: Secret, mut l: Secret, mut blocks: u32) -> Secret {
        let n = e.len() / blocks.max(1) as usize;
        while blocks > 1 {
            let pairs = blocks / 2;
            let idx = |b: u32| (b as usize * n..(b as usize + 1) * n).map(|x| x as u32);
            let hi: Vec<u32> = (0..pairs).flat_map(|j| idx(2 * j + 1)).collect();
            let lo: Vec<u32> = (0..pairs).flat_map(|j| idx(2 * j)).collect();
            let eh = self.gather(e, &hi);
            let el = self.gather(e, &lo);
            let lh = self.gather(l, &hi);
            let ll = self.gather(l, &lo);
            let last = pairs == 1 && blocks.is_multiple_of(2);
            let (ne, nl) = if last {
                let z = self.mul(eh, ll);
                (eh, self.add(lh, z))
            } else {
                let x = self.concat(&[eh, eh]);
                let y = self.concat(&[el, ll]);
                let z = self.mul(x, y);
                let len = pairs as usize * n;
                let ne = self.slice(z, 0, len);
                let zl = self.slice(z, len, len);
                (ne, self.add(lh, zl))
            };
            if blocks % 2 == 1 {
                let top: Vec<u32> = idx(blocks - 1).collect();
                let et = self.gather(e, &top);
                let lt = self.gather(l, &top);
                e = self.concat(&[ne, et]);
                l = self.concat(&[nl, lt]);
            } else {
                e = ne;
                l = nl;
            }
            blocks = blocks.div_ceil(2);
        }
        l
    }

    /// AND of `blocks` bit blocks (product tree).
    fn and_tree(&mut self, mut x: Secret, mut blocks: u32) -> Secret {
        let n = x.len() / blocks.max(1) as usize;
        while blocks > 1 {
            let pairs = blocks / 2;
            let a = self.slice(x, 0, pairs as usize * n);
            let b = self.slice(x, pairs as usize * n, pairs as usize * n);
            let p = self.mul(a, b);
            x = if blocks % 2 == 1 {
                let top = self.slice(x, 2 * pairs as usize * n, n);
                self.concat(&[p, top])
            } else {
                p
            };
            blocks = blocks.div_ceil(2);
        }
        x
    }

    /// `(a + offset) mod 2^m` for `0 ≤ a + offset < 2^k`, `offset ≡ 0 mod 2^m`.
    pub fn mod2m(&mut self, a: Secret, k: u32, m: u32, offset: F127) -> Secret {
        if !self.bits_ok(k) || m == 0 || m > k {
            self.fail_unsupported("mod2m needs 0 < m ≤ k");
            return a;
        }
        let n = a.len();
        let (rb, r1, r2) = self.masks(n, m, k + KAPPA - m);
        let t = self.add(a, r1);
        let t = self.add(t, r2);
        let t = self.add_const(t, offset);
        let c = self.open(t);
        let cm = self.public_mod2m(c, m);
        let cb = self.public_bits(cm, m);
        let u = self.bit_lt(cb, rb, m);
        let d = self.public_sub(cm, r1);
        let u = self.mul_const(u, pow2(m));
        self.add(d, u)
    }

    /// `⌊a / 2^m⌋` exactly, for signed k-bit `a`.
    pub fn trunc(&mut self, a: Secret, k: u32, m: u32) -> Secret {
        if m == 0 || m >= k {
            self.fail_unsupported("trunc needs 0 < m < k");
            return a;
        }
        let r = self.mod2m(a, k, m, pow2(k - 1));
        let d = self.sub(a, r);
        self.mul_const(d, inv_pow2(m))
    }

    /// `[a < 0]` for signed k-bit `a`.
    pub fn ltz(&mut self, a: Secret, k: u32) -> Secret {
        if k < 2 {
            self.fail_unsupported("ltz needs k ≥ 2");
            return a;
        }
        let r = self.mod2m(a, k, k - 1, pow2(k - 1));
        let d = self.sub(r, a);
        self.mul_const(d, inv_pow2(k - 1))
    }

    /// `[a < b]` for signed k-bit `a`, `b`.
    pub fn lt(&mut self, a: Secret, b: Secret, k: u32) -> Secret {
        let d = self.sub(a, b);
        self.ltz(d, k + 1)
    }

    /// `[a = 0]` for signed k-bit `a`.
    pub fn eqz(&mut self, a: Secret, k: u32) -> Secret {
        if !self.bits_ok(k) {
            return a;
        }
        let n = a.len();
        let (rb, r1, r2) = self.masks(n, k, KAPPA + 1);
        let t = self.add(a, r1);
        let t = self.add(t, r2);
        let t = self.add_const(t, pow2(k));
        let c = self.open(t);
        let cm = self.public_mod2m(c, k);
        let cb = self.public_bits(cm, k);
        let one_minus_c = self.public_affine(cb, F127::ONE.neg(), F127::ONE);
        let one_minus_2c = self.public_affine(cb, F127::from_u64(2).neg(), F127::ONE);
        let t = self.mul_public(rb, one_minus_2c);
        let e = self.public_sub(one_minus_c, t);
        self.and_tree(e, k)
    }

    /// `[a = b]` for signed k-bit `a`, `b`.
    pub fn eq(&mut self, a: Secret, b: Secret, k: u32) -> Secret {
        let d = self.sub(a, b);
        self.eqz(d, k + 1)
    }

    /// The k bits of `a mod 2^k` (two's complement for negative `a`),
    /// bit-major: element i's bit j is at `j·n + i`.
    pub fn bit_decompose(&mut self, a: Secret, k: u32) -> Secret {
        if !self.bits_ok(k) {
            return a;
        }
        let n = a.len();
        let (rb, r1, r2) = self.masks(n, k, KAPPA + 1);
        let t = self.add(a, r1);
        let t = self.add(t, r2);
        let t = self.add_const(t, pow2(k));
        let c = self.open(t);
        let cm = self.public_mod2m(c, k);
        let x = self.public_bits(cm, k);
        // y = ¬r; p = x ⊕ y = y(1 − 2x) + x; g = x·y.
        let neg = self.mul_const(rb, F127::ONE.neg());
        let y = self.add_const(neg, F127::ONE);
        let one_minus_2x = self.public_affine(x, F127::from_u64(2).neg(), F127::ONE);
        let t = self.mul_public(y, one_minus_2x);
        let p = self.add_public(t, x);
        let mut g = self.mul_public(y, x);
        // Carry-in 1 folded into position 0: g_0 = x_0 ∨ y_0 = p_0 + g_0.
        let nn = n as u32;
        let block = |b: u32| (b * nn..(b + 1) * nn).collect::<Vec<u32>>();
        {
            let p0 = self.gather(p, &block(0));
            let g0 = self.gather(g, &block(0));
            let g0 = self.add(g0, p0);
            let rest: Vec<u32> = (nn..k * nn).collect();
            let gr = self.gather(g, &rest);
            g = self.concat(&[g0, gr]);
        }
        // Sklansky prefix: G_i ← G_i + P_i·G_j, P_i ← P_i·P_j.
        let mut pp = p;
        let mut level = 0;
        while (1u32 << level) < k {
            let targets: Vec<u32> = (0..k).filter(|i| (i >> level) & 1 == 1).collect();
            let partners: Vec<u32> = targets
                .iter()
                .map(|i| ((i >> level) << level) - 1)
                .collect();
            let t_idx: Vec<u32> = targets.iter().flat_map(|&b| block(b)).collect();
            let j_idx: Vec<u32> = partners.iter().flat_map(|&b| block(b)).collect();
            let pi = self.gather(pp, &t_idx);
            let gj = self.gather(g, &j_idx);
            let pj = self.gather(pp, &j_idx);
            let x2 = self.concat(&[pi, pi]);
            let y2 = self.concat(&[gj, pj]);
            let z = self.mul(x2, y2);
            let len = t_idx.len();
            let pg = self.slice(z, 0, len);
            let newp = self.slice(z, len, len);
            let gi = self.gather(g, &t_idx);
            let newg = self.add(gi, pg);
            // Scatter back: position b takes the new value if b is a target.
            let mut g_src = Vec::with_capacity(k as usize * n);
            let mut p_src = Vec::with_capacity(k as usize * n);
            let total = k * nn;
            for b in 0..k {
                for e in 0..nn {
                    match targets.iter().position(|&t| t == b) {
                        Some(ti) => {
                            g_src.push(total + ti as u32 * nn + e);
                            p_src.push(total + ti as u32 * nn + e);
                        }
                        None => {
                            g_src.push(b * nn + e);
                            p_src.push(b * nn + e);
                        }
                    }
                }
            }
            let gcat = self.concat(&[g, newg]);
            let pcat = self.concat(&[pp, newp]);
            g = self.gather(gcat, &g_src);
            pp = self.gather(pcat, &p_src);
            level += 1;
        }
        // s_0 = 1 − p_0; s_i = p_i ⊕ G_{i−1} = p_i + G_{i−1} − 2 p_i G_{i−1}.
        let p0 = self.gather(p, &block(0));
        let negp0 = self.mul_const(p0, F127::ONE.neg());
        let s0 = self.add_const(negp0, F127::ONE);
        if k == 1 {
            return s0;
        }
        let hi: Vec<u32> = (nn..k * nn).collect();
        let lo: Vec<u32> = (0..(k - 1) * nn).collect();
        let ph = self.gather(p, &hi);
        let gl = self.gather(g, &lo);
        let pg = self.mul(ph, gl);
        let sum = self.add(ph, gl);
        let twice = self.mul_const(pg, F127::from_u64(2));
        let rest = self.sub(sum, twice);
        self.concat(&[s0, rest])
    }

    /// `⌊a / 2^m⌋ + u`, `u ∈ {0,1}` with probability `(a mod 2^m)/2^m` (Catrina–Saxena).
    pub fn trunc_pr(&mut self, a: Secret, k: u32, m: u32) -> Secret {
        if !self.bits_ok(k) || m == 0 || m >= k {
            self.fail_unsupported("trunc_pr needs 0 < m < k");
            return a;
        }
        let n = a.len();
        let (_rb, r1, r2) = self.masks(n, m, k + KAPPA - m);
        let t = self.add(a, r1);
        let t = self.add(t, r2);
        let t = self.add_const(t, pow2(k - 1));
        let c = self.open(t);
        let cm = self.public_mod2m(c, m);
        let neg_cm = self.public_affine(cm, F127::ONE.neg(), F127::ZERO);
        let ar = self.add(a, r1);
        let d = self.add_public(ar, neg_cm);
        self.mul_const(d, inv_pow2(m))
    }

    /// Sorts `x` (signed k-bit values) ascending with Batcher's odd–even merge sort.
    pub fn sort(&mut self, x: Secret, k: u32) -> Secret {
        self.sort_segments(x, x.len(), k)
    }

    /// Sorts each segment of `seg` consecutive elements of `x` (signed
    /// k-bit values) ascending: every layer of the network is one
    /// comparison and one product over all segments at once.
    pub fn sort_segments(&mut self, x: Secret, seg: usize, k: u32) -> Secret {
        let n = x.len();
        if n == 0 {
            return x;
        }
        if seg == 0 || !n.is_multiple_of(seg) {
            self.fail_unsupported("sort segments must divide the vector");
            return x;
        }
        let mut x = x;
        for base in batcher_layers(seg) {
            let layer: Vec<(usize, usize)> = (0..n / seg)
                .flat_map(|s| base.iter().map(move |&(i, j)| (s * seg + i, s * seg + j)))
                .collect();
            let a_idx: Vec<u32> = layer.iter().map(|&(i, _)| i as u32).collect();
            let b_idx: Vec<u32> = layer.iter().map(|&(_, j)| j as u32).collect();
            let a = self.gather(x, &a_idx);
            let b = self.gather(x, &b_idx);
            let s = self.lt(b, a, k);
            let diff = self.sub(b, a);
            let d = self.mul(s, diff);
            let lo = self.add(a, d);
            let hi = self.sub(b, d);
            let l = layer.len() as u32;
            let mut src: Vec<u32> = (0..n as u32).collect();
            for (t, &(i, j)) in layer.iter().enumerate() {
                src[i] = n as u32 + t as u32;
                src[j] = n as u32 + l + t as u32;
            }
            let cat = self.concat(&[x, lo, hi]);
            x = self.gather(cat, &src);
        }
        x
    }

    /// The element of public rank `rank` (0 = smallest) of `x`.
    pub fn select_rank(&mut self, x: Secret, k: u32, rank: usize) -> Secret {
        let sorted = self.sort(x, k);
        if rank >= x.len() {
            self.fail_unsupported("rank out of range");
            return sorted;
        }
        self.gather(sorted, &[rank as u32])
    }

    /// The median (lower median for even n).
    pub fn median(&mut self, x: Secret, k: u32) -> Secret {
        let r = (x.len().max(1) - 1) / 2;
        self.select_rank(x, k, r)
    }

    /// Minimum (tournament).
    pub fn min(&mut self, x: Secret, k: u32) -> Secret {
        self.tournament(x, k, true)
    }

    /// Maximum (tournament).
    pub fn max(&mut self, x: Secret, k: u32) -> Secret {
        self.tournament(x, k, false)
    }

    fn tournament(&mut self, mut x: Secret, k: u32, min: bool) -> Secret {
        if x.is_empty() {
            self.fail_unsupported("min/max of an empty vector");
            return x;
        }
        while x.len() > 1 {
            let pairs = x.len() / 2;
            let a_idx: Vec<u32> = (0..pairs as u32).map(|i| 2 * i).collect();
            let b_idx: Vec<u32> = (0..pairs as u32).map(|i| 2 * i + 1).collect();
            let a = self.gather(x, &a_idx);
            let b = self.gather(x, &b_idx);
            let s = if min {
                self.lt(b, a, k)
            } else {
                self.lt(a, b, k)
            };
            let diff = self.sub(b, a);
            let d = self.mul(s, diff);
            let win = self.add(a, d);
            x = if x.len() % 2 == 1 {
                let last = self.gather(x, &[x.len() as u32 - 1]);
                self.concat(&[win, last])
            } else {
                win
            };
        }
        x
    }
}

impl ProgramBuilder {
    /// The element-wise sum of `clients` client-major vectors of `len`
    /// elements in `x` (as [`ProgramBuilder::client_inputs`] returns them):
    /// local additions, no round.
    pub fn client_sum(&mut self, x: Secret, clients: usize, len: usize) -> Secret {
        let mut sum = self.slice(x, 0, len);
        for c in 1..clients {
            let part = self.slice(x, c * len, len);
            sum = self.add(sum, part);
        }
        sum
    }

    /// Declares `clients` client uploads of `len` elements each over
    /// Z_2^`ring_bits` and returns their converted signed values (client-major:
    /// client c's element j at `c·len + j`). Runs the conversion and the
    /// sketch check of [`crate::client`]; a client whose check fails makes the
    /// session finish with `Outcome::ClientsExcluded` before anything else
    /// runs. Call at most once per program.
    pub fn client_inputs(&mut self, clients: usize, len: usize, ring_bits: u32) -> Secret {
        let spec = crate::program::ClientSpec {
            clients: clients as u32,
            len: len as u32,
            ring_bits,
        };
        let total = clients * len;
        if !self.declare_clients(spec) || clients == 0 || len == 0 {
            self.fail_unsupported("client inputs need at least one client and one element");
            return self.random_values(total);
        }
        let s: Vec<Secret> = (0..3u8)
            .map(|h| self.client_shares(h, total as u32))
            .collect();
        let t: Vec<Secret> = (0..3u8)
            .map(|h| self.client_tau(h, clients as u32))
            .collect();
        let u = self.add(s[0], s[1]);
        let u = self.add(u, s[2]);
        let tau = self.add(t[0], t[1]);
        let tau = self.add(tau, t[2]);
        // u < 3·2^k; x = ((u + 2^(k−1)) mod 2^k) − 2^(k−1).
        let k = ring_bits;
        let m = self.mod2m(u, k + 2, k, pow2(k - 1));
        let x = self.add_const(m, pow2(k - 1).neg());
        // Sketch check.
        let kappa = self.reveal_kappa(tau, clients as u32);
        let powers = self.kappa_powers(kappa, len as u32);
        let weighted = self.mul_public(x, powers);
        let sums = self.segment_sum(weighted, len);
        let delta = self.sub(sums, tau);
        let r = self.random_values(clients);
        let z = self.mul(r, delta);
        let z = self.open(z);
        self.check_gate(z);
        x
    }
}

/// The comparator layers of Batcher's odd–even merge sort for `n` elements
/// (the network for the next power of two, without comparators that touch
/// a padding position — padding acts as +∞ and never moves).
pub fn batcher_layers(n: usize) -> Vec<Vec<(usize, usize)>> {
    let size = n.next_power_of_two();
    let mut layers = Vec::new();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut layer = Vec::new();
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        let (a, b) = (i + j, i + j + k);
                        if b < n {
                            layer.push((a, b));
                        }
                    }
                }
                j += 2 * k;
            }
            if !layer.is_empty() {
                layers.push(layer);
            }
            k /= 2;
        }
        p *= 2;
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The network sorts every input (checked on plain integers).
        #[test]
        fn batcher_network_sorts(v in proptest::collection::vec(-50i64..50, 0..40)) {
            let mut x = v.clone();
            for layer in batcher_layers(x.len()) {
                for (i, j) in layer {
                    if x[j] < x[i] { x.swap(i, j); }
                }
            }
            let mut want = v;
            want.sort();
            prop_assert_eq!(x, want);
        }
    }
}
