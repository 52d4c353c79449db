//! Robust aggregation inside the engine (issue #15, second part): norm
//! clipping and the coordinate-wise trimmed mean (and median) of the
//! clients' updates, computed on the shares.
//!
//! **Clipping** (the bounded-contribution step of DP-FedAvg, McMahan,
//! Ramage, Talwar, Zhang, "Learning differentially private recurrent
//! language models", ICLR 2018, Alg. 1 `ClipFn`; Abadi et al., CCS 2016,
//! §3.1): each update `q` is scaled by `min(1, C/‖q‖)`. The engine has no
//! square root or division; it picks the factor from a public geometric
//! grid instead. With `S_1 < … < S_K = 2^16` (16 points per octave, from
//! the hard L2 bound `B` up to `C`), the client's factor is
//! `S/2^16` with `S` the largest grid point such that `S²·‖q‖² ≤ C²·2^32`
//! — one exact comparison per grid point, all in one parallel layer
//! (Catrina & de Hoogh's LTZ, [`crate::ops`]), and `S = Σ_k [pass_k]·(S_k −
//! S_{k−1})` is a public linear combination of the verdicts because the
//! passing grid points form a prefix. So the clipped update's norm is
//! **never above C** (exact integer comparison); an in-norm update is never
//! scaled (`S = 2^16` passes), and an over-norm one lands at most one grid
//! step below C: within 4.4 % (`2^(−1/16)`) plus the grid's integer
//! resolution, `2^(−16)/s` relative at factor `s` (0.015 % at `B = 10·C`,
//! but 100 % at the extreme `B = 2^16·C`, where the lowest point is 1).
//!
//! The output is `Σ_c ok_c·w_c·S_c·q_c` per element and `Σ_c ok_c·w_c`:
//! the clipped, weighted FedAvg numerator (in units of 2^−16 quanta) and
//! its denominator. Dividing by `2^16·Σ w` is public post-processing.
//! Before the grid, each client's norm is multiplied by its validity
//! verdict (`ok_c`), so the comparisons only ever see norms within the hard
//! bound `B` and the masked openings stay statistically hiding for every
//! client, excluded or not.
//!
//! What it reveals: the clipped weighted sum over the clients within the
//! hard bounds, its total weight, and per client which hard bound failed
//! (as [`crate::validity::weighted_norm_bounded_sum`]). Whether or by how
//! much a client was clipped is not output.
//!
//! Cost per client of `d` elements: `2d + 3` multiplications, one
//! comparison per hard bound check (plus `d` with an L∞ bound) and one per
//! grid point (16 per octave between `C` and `B`, plus one).
//!
//! **Trimmed mean and median** (Yin, Chen, Ramchandran, Bartlett,
//! "Byzantine-robust distributed learning: towards optimal statistical
//! rates", ICML 2018, §3, Definition 2 and 1): per coordinate, the clients'
//! values are sorted with Batcher's network ([`crate::ops`]) and the sum of
//! the ranks `t..n−t` is output; the median is the case `t = ⌊(n−1)/2⌋`
//! (for even `n` the two middle values, whose mean is the median). Values
//! are the converted signed 32-bit elements, so a client's arbitrary upload
//! is still a well-defined (and, beyond `t` attackers, trimmed) input.
//! Reveals only the trimmed sums. Cost: per coordinate, one 32-bit
//! comparison and one multiplication per comparator of the network
//! (`n = 5`: 9; `n = 10`: 32).

use crate::F127;
use crate::program::{Program, ProgramBuilder, ProgramError, Secret};
use crate::validity::MAX_ELEMENTS;

/// The clipped FedAvg program's name in descriptors and session ids.
pub const CLIPPED_SUM: &str = "clipped-weighted-sum";
/// Its version.
pub const CLIPPED_SUM_VERSION: u32 = 1;
/// Fractional bits of the clipping factor (`S/2^16`).
pub const SCALE_BITS: u32 = 16;
/// `round(2^16 · 2^(−j/16))` for `j = 0..16`: one octave of the grid. Grid
/// point `16·o + j` below the top is this entry shifted right by `o`
/// (integers only, so every helper and every twin builds the same grid).
const OCTAVE: [u64; 16] = [
    65536, 62757, 60097, 57549, 55109, 52773, 50535, 48393, 46341, 44376, 42495, 40693, 38968,
    37316, 35734, 34219,
];
/// The hard bound may be at most 2^16 times the clip norm (the lowest grid
/// point is 1).
const MAX_OCTAVES: u32 = 16;
/// Squared hard bounds below this keep `S²·‖q‖² < 2^82`.
const MAX_L2_SQ: u128 = 1 << 50;
/// Bits of the norm comparisons (as in [`crate::validity`]).
pub(crate) const NORM_BITS: u32 = 84;
/// Bits of the weight range checks (a converted Z_2^32 element).
const WEIGHT_BITS: u32 = 33;

/// The bounds of a clipped FedAvg round, on an update's unweighted
/// quantized delta `q` (integers) and its weight `w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipBounds {
    /// `C²`: updates are scaled to an L2 norm of at most `C`.
    pub clip_sq: u128,
    /// `B²`: updates with `Σ q_j² > B²` are left out (a hard bound, `≥ C²`).
    pub l2_sq: u128,
    /// `q_j² ≤ linf_sq` for every j, when set (left out otherwise).
    pub linf_sq: Option<u128>,
    /// `0 ≤ w ≤ max_weight` (left out otherwise).
    pub max_weight: u32,
}

impl ClipBounds {
    /// The names of the hard checks, in the order of the verdicts output:
    /// `"l2"`, `"linf"` (if set), `"weight"`.
    pub fn checks(&self) -> Vec<&'static str> {
        let mut out = vec!["l2"];
        if self.linf_sq.is_some() {
            out.push("linf");
        }
        out.push("weight");
        out
    }

    /// Refuses bounds the program cannot check exactly.
    pub fn check(&self) -> Result<(), ProgramError> {
        if self.clip_sq == 0 || self.clip_sq > self.l2_sq {
            return Err(ProgramError::Unsupported(
                "the clip norm must be positive and at most the hard L2 bound",
            ));
        }
        if self.l2_sq >= MAX_L2_SQ {
            return Err(ProgramError::Unsupported(
                "the hard L2 bound must be below 2^25 quanta",
            ));
        }
        if self.octaves() > MAX_OCTAVES {
            return Err(ProgramError::Unsupported(
                "the hard L2 bound may be at most 2^16 times the clip norm",
            ));
        }
        if let Some(linf_sq) = self.linf_sq
            && linf_sq >= 1 << 62
        {
            return Err(ProgramError::Unsupported(
                "the L∞ bound must be below 2^31 quanta",
            ));
        }
        Ok(())
    }

    /// Octaves of the grid: the least `o` with `(2^o·C)² ≥ B²`.
    fn octaves(&self) -> u32 {
        let mut o = 0;
        while o <= MAX_OCTAVES && self.clip_sq << (2 * o) < self.l2_sq {
            o += 1;
        }
        o
    }

    /// The grid of clipping factors (times 2^16), ascending and distinct,
    /// ending at 2^16 (no scaling); its lowest point is at most `2^16·C/B`.
    pub fn grid(&self) -> Vec<u64> {
        let o = self.octaves().min(MAX_OCTAVES);
        let mut down: Vec<u64> = (0..16 * o)
            .map(|i| OCTAVE[(i % 16) as usize] >> (i / 16))
            .chain([OCTAVE[0] >> o])
            .filter(|&s| s > 0)
            .collect();
        down.dedup();
        down.reverse();
        down
    }

    /// The factor (times 2^16) the program applies to an update with
    /// squared norm `norm_sq` within the hard bounds: the largest grid
    /// point `S` with `S²·norm_sq ≤ C²·2^32` (0 if none).
    pub fn scale(&self, norm_sq: u128) -> u64 {
        let limit = self.clip_sq << (2 * SCALE_BITS);
        self.grid()
            .into_iter()
            .rev()
            .find(|&s| u128::from(s) * u128::from(s) * norm_sq <= limit)
            .unwrap_or(0)
    }
}

/// The clipped weighted sum of `clients` FedAvg updates of `len` elements
/// over Z_2^32, each `[q_0, …, q_{d−1}, w]` (the **unweighted** quantized
/// delta, then the weight). Outputs: 0, `len` values — `Σ_c ok_c·w_c·S_c·q_{c,j}`
/// for each j (the clipped weighted numerator, in 2^−16 quanta), then
/// `Σ_c ok_c·w_c`; 1, the clients' verdicts (1 kept, 0 left out); 2, per
/// client the verdict of each check in [`ClipBounds::checks`] order.
pub fn clipped_weighted_sum(
    clients: usize,
    len: usize,
    bounds: ClipBounds,
) -> Result<Program, ProgramError> {
    if !(2..=MAX_ELEMENTS).contains(&len) {
        return Err(ProgramError::Unsupported(
            "a clipped sum takes 2 to 2^20 elements per client (the weight last)",
        ));
    }
    bounds.check()?;
    let d = len - 1;
    let mut p = ProgramBuilder::new(CLIPPED_SUM, CLIPPED_SUM_VERSION);
    let x = p.client_inputs(clients, len, 32);
    let (deltas, w) = split_weight(&mut p, x, clients, len);
    let (squares, norms, within) = p.l2_verdicts(deltas, d, bounds.l2_sq);
    let mut checks = vec![within];
    if let Some(linf_sq) = bounds.linf_sq {
        let excess = p.add_const(squares, F127::new(linf_sq + 1).neg());
        checks.push(p.none_positive(excess, d));
    }
    checks.push(p.weight_in_range(w, bounds.max_weight));
    let mut ok = checks[0];
    for &c in &checks[1..] {
        ok = p.mul(ok, c);
    }
    // Norms of excluded clients become 0: the grid comparisons only see
    // values within the hard bound.
    let kept_norms = p.mul(ok, norms);
    let scale = p.clip_scale(kept_norms, &bounds);
    let ws = p.mul(w, scale);
    let factor = p.mul(ok, ws);
    let scaled = p.scale_per_client(deltas, factor, d);
    let sums = p.client_sum(scaled, clients, d);
    let kept_w = p.mul(ok, w);
    let total = p.sum(kept_w);
    let out = p.concat(&[sums, total]);
    p.output(out);
    p.output(ok);
    p.output_per_client_checks(&checks, clients);
    p.build()
}

/// The plaintext twin of [`clipped_weighted_sum`]: for `updates` (each the
/// unweighted delta then the weight, as signed integers) the same outputs,
/// from the same integers.
pub fn clipped_weighted_sum_plain(
    updates: &[Vec<i64>],
    bounds: &ClipBounds,
) -> (Vec<i128>, Vec<bool>, Vec<Vec<bool>>) {
    let len = updates.first().map_or(0, Vec::len);
    let d = len.saturating_sub(1);
    let mut out = vec![0i128; len];
    let mut verdicts = Vec::with_capacity(updates.len());
    let mut per_check = Vec::with_capacity(updates.len());
    for u in updates {
        let (q, w) = (&u[..d], u[d]);
        let norm: u128 = q
            .iter()
            .map(|&v| (i128::from(v) * i128::from(v)) as u128)
            .sum();
        let mut checks = vec![norm <= bounds.l2_sq];
        if let Some(linf_sq) = bounds.linf_sq {
            checks.push(
                q.iter()
                    .all(|&v| (i128::from(v) * i128::from(v)) as u128 <= linf_sq),
            );
        }
        checks.push((0..=i64::from(bounds.max_weight)).contains(&w));
        let ok = checks.iter().all(|&c| c);
        if ok {
            let f = i128::from(w) * i128::from(bounds.scale(norm));
            for (o, &v) in out.iter_mut().zip(q) {
                *o += f * i128::from(v);
            }
            out[d] += i128::from(w);
        }
        verdicts.push(ok);
        per_check.push(checks);
    }
    (out, verdicts, per_check)
}

/// The trimmed-sum program's name in descriptors and session ids.
pub const TRIMMED_SUM: &str = "trimmed-sum";
/// Its version.
pub const TRIMMED_SUM_VERSION: u32 = 1;
/// Bits of the sorted values (converted Z_2^32 elements).
const VALUE_BITS: u32 = 32;

/// Per coordinate `j < used`, the sum of the values of rank `trim` to
/// `clients − trim − 1` among the `clients` uploads (of `len` elements
/// over Z_2^32; elements from `used` on are not read). Output 0: the
/// `used` trimmed sums (each over `clients − 2·trim` values).
pub fn trimmed_sum(
    clients: usize,
    len: usize,
    used: usize,
    trim: usize,
) -> Result<Program, ProgramError> {
    if !(1..=MAX_ELEMENTS).contains(&len) || used == 0 || used > len {
        return Err(ProgramError::Unsupported(
            "a trimmed sum reads 1 to len of 1 to 2^20 elements per client",
        ));
    }
    if clients <= 2 * trim {
        return Err(ProgramError::Unsupported(
            "a trimmed sum needs more clients than twice the trim",
        ));
    }
    let mut p = ProgramBuilder::new(TRIMMED_SUM, TRIMMED_SUM_VERSION);
    let x = p.client_inputs(clients, len, 32);
    // Element-major: coordinate j's values at j·n .. (j+1)·n.
    let columns: Vec<u32> = (0..used)
        .flat_map(|j| (0..clients).map(move |c| (c * len + j) as u32))
        .collect();
    let columns = p.gather(x, &columns);
    let sorted = p.sort_segments(columns, clients, VALUE_BITS);
    let kept = clients - 2 * trim;
    let middle: Vec<u32> = (0..used)
        .flat_map(|j| (trim..clients - trim).map(move |r| (j * clients + r) as u32))
        .collect();
    let middle = p.gather(sorted, &middle);
    let sums = p.segment_sum(middle, kept);
    p.output(sums);
    p.build()
}

/// The plaintext twin of [`trimmed_sum`] on signed integer uploads.
pub fn trimmed_sum_plain(updates: &[Vec<i64>], used: usize, trim: usize) -> Vec<i128> {
    let n = updates.len();
    (0..used)
        .map(|j| {
            let mut col: Vec<i64> = updates.iter().map(|u| u[j]).collect();
            col.sort_unstable();
            col[trim.min(n)..n.saturating_sub(trim)]
                .iter()
                .map(|&v| i128::from(v))
                .sum()
        })
        .collect()
}

impl ProgramBuilder {
    /// For `deltas` (each client's `d` values in a row): the squares, each
    /// client's squared L2 norm and its verdict `[Σ q² ≤ l2_sq]` (an exact
    /// comparison at [`NORM_BITS`]).
    pub(crate) fn l2_verdicts(
        &mut self,
        deltas: Secret,
        d: usize,
        l2_sq: u128,
    ) -> (Secret, Secret, Secret) {
        let squares = self.mul(deltas, deltas);
        let norms = self.segment_sum(squares, d);
        // [Σ q² − B² − 1 < 0].
        let excess = self.add_const(norms, F127::new(l2_sq + 1).neg());
        let within = self.ltz(excess, NORM_BITS);
        (squares, norms, within)
    }

    /// Each client's `d` deltas times its one `factor` (one per client).
    pub(crate) fn scale_per_client(&mut self, deltas: Secret, factor: Secret, d: usize) -> Secret {
        let spread: Vec<u32> = (0..factor.len() as u32)
            .flat_map(|c| std::iter::repeat_n(c, d))
            .collect();
        let factors = self.gather(factor, &spread);
        self.mul(deltas, factors)
    }

    /// `[0 ≤ w ≤ max]` per element of `w` (converted Z_2^32 values).
    pub(crate) fn weight_in_range(&mut self, w: Secret, max: u32) -> Secret {
        let negative = self.ltz(w, WEIGHT_BITS);
        let above = self.public_sub_const(w, u64::from(max));
        let too_heavy = self.ltz(above, WEIGHT_BITS);
        let not_negative = self.one_minus(negative);
        let not_heavy = self.one_minus(too_heavy);
        self.mul(not_negative, not_heavy)
    }

    /// Outputs, per client, its verdict for each check in `checks` order.
    pub(crate) fn output_per_client_checks(&mut self, checks: &[Secret], clients: usize) {
        let all = self.concat(checks);
        let k = checks.len() as u32;
        let per_client: Vec<u32> = (0..clients as u32)
            .flat_map(|c| (0..k).map(move |i| i * clients as u32 + c))
            .collect();
        let verdicts = self.gather(all, &per_client);
        self.output(verdicts);
    }

    /// Per client, the clipping factor (times 2^16) for squared norms
    /// `norms`, each at most `bounds.l2_sq`: `Σ_k [S_k²·norm ≤ C²·2^32]·(S_k
    /// − S_{k−1})` over the grid (one comparison layer).
    pub(crate) fn clip_scale(&mut self, norms: Secret, bounds: &ClipBounds) -> Secret {
        let grid = bounds.grid();
        let limit = F127::new((bounds.clip_sq << (2 * SCALE_BITS)) + 1).neg();
        let tests: Vec<Secret> = grid
            .iter()
            .map(|&s| {
                let scaled = self.mul_const(norms, F127::new(u128::from(s) * u128::from(s)));
                self.add_const(scaled, limit)
            })
            .collect();
        let all = self.concat(&tests);
        let pass = self.ltz(all, NORM_BITS);
        let n = norms.len();
        let mut scale: Option<Secret> = None;
        let mut below = 0u64;
        for (k, &s) in grid.iter().enumerate() {
            let bit = self.slice(pass, k * n, n);
            let step = self.mul_const(bit, F127::from_u64(s - below));
            below = s;
            scale = Some(match scale {
                Some(acc) => self.add(acc, step),
                None => step,
            });
        }
        scale.unwrap_or(norms)
    }
}

pub(crate) fn split_weight(
    p: &mut ProgramBuilder,
    x: Secret,
    clients: usize,
    len: usize,
) -> (Secret, Secret) {
    let d = len - 1;
    let delta_idx: Vec<u32> = (0..clients)
        .flat_map(|c| (0..d).map(move |j| (c * len + j) as u32))
        .collect();
    let weight_idx: Vec<u32> = (0..clients).map(|c| (c * len + d) as u32).collect();
    (p.gather(x, &delta_idx), p.gather(x, &weight_idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_octave_table_is_two_to_the_minus_j_over_sixteen() {
        for (j, &s) in OCTAVE.iter().enumerate() {
            let want = 65536.0 * 2f64.powf(-(j as f64) / 16.0);
            assert!((s as f64 - want).abs() <= 0.5, "entry {j}: {s} vs {want}");
        }
    }

    #[test]
    fn the_grid_spans_the_hard_bound_and_never_scales_an_in_norm_update() {
        let b = ClipBounds {
            clip_sq: 100,
            l2_sq: 100 * 1000,
            linf_sq: None,
            max_weight: 10,
        };
        let grid = b.grid();
        assert!(grid.windows(2).all(|w| w[0] < w[1]), "{grid:?}");
        assert_eq!(*grid.last().unwrap(), 1 << 16);
        // Lowest point ≤ 2^16·C/B.
        let low = grid[0] as f64 / 65536.0;
        assert!(low <= (100f64 / 100_000f64).sqrt(), "{low}");
        // No scaling within the clip; at most C after scaling; within
        // 2^(−1/16) of C (plus the factor's resolution) above it.
        assert_eq!(b.scale(0), 1 << 16);
        assert_eq!(b.scale(100), 1 << 16);
        for norm_sq in [101u128, 150, 400, 10_000, 99_999, 100_000] {
            let s = b.scale(norm_sq) as f64 / 65536.0;
            let clipped = s * (norm_sq as f64).sqrt();
            assert!(clipped <= 10.0, "{norm_sq}: {clipped}");
            assert!(
                clipped >= 10.0 * 2f64.powf(-1.0 / 16.0) - 0.01,
                "{norm_sq}: {clipped}"
            );
        }
    }

    #[test]
    fn bounds_the_program_cannot_check_exactly_are_refused() {
        let ok = ClipBounds {
            clip_sq: 4,
            l2_sq: 400,
            linf_sq: Some(9),
            max_weight: 100,
        };
        assert!(ok.check().is_ok());
        for bad in [
            ClipBounds { clip_sq: 0, ..ok },
            ClipBounds { clip_sq: 401, ..ok },
            ClipBounds {
                l2_sq: 1 << 50,
                ..ok
            },
            ClipBounds {
                clip_sq: 1,
                l2_sq: 1 << 40,
                ..ok
            },
            ClipBounds {
                linf_sq: Some(1 << 62),
                ..ok
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
