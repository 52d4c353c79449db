//! Dealer-free preprocessing among the three helpers, actively secure with
//! abort under an honest majority.
//!
//! One batch, in lock-step rounds (all vectorised over the batch):
//!
//! | round | what |
//! |---|---|
//! | 0 `Hello` | batch parameters hash, commitment to this helper's coin seed |
//! | 1 `Reshare` | layer 1 of the batch circuit (below), AFLNO multiplication |
//! | 2 `Reshare` | layer 2 |
//! | 3 `RssOpen` | coin seeds revealed; Chida et al.'s random `r` opened |
//! | 4 `Reshare` | CheckZero: `s·T` for a fresh random `s` |
//! | 5 `RssOpen` | `s·T` opened; must be 0 |
//! | 6 `RssOpen` | verified: `ρ²` opened (random bits), masks opened to their owners |
//! | 7 `Confirm` | every helper sends its batch digest; all must agree |
//!
//! **Randomness** is PRSS ([`crate::prss`]): random `a`, `b` (triples), `ρ`
//! (bit candidates), `m` (input masks), `v` (random values) and the epoch
//! key `α`, all replicated 2-out-of-3, with no interaction.
//!
//! **The batch circuit** computes `c = a·b`, and MACs `α·a, α·b, α·c, α·ρ,
//! α·m, α·v` and `ρ²`, by the semi-honest replicated multiplication of Araki,
//! Furukawa, Lindell, Nof and Ohara (CCS 2016, §2.2; one element sent per
//! product), which is secure up to additive attacks.
//!
//! **Malicious security** for the whole batch comes from Chida, Genkin,
//! Hamada, Ikarashi, Kikuchi, Lindell and Nof, "Fast large-scale
//! honest-majority MPC for malicious adversaries" (CRYPTO 2018, §3, the
//! protocol for large fields): a random shared `r` randomises every input
//! wire (`r·v`) and every multiplication gate is computed twice (`z = x·y`
//! and `r·z = (r·x)·y`). After all products are fixed the helpers toss
//! public coefficients χ, open `r`, and check `Σχ_k (r·z_k) + Σβ_j (r·v_j) −
//! r·(Σχ_k z_k + Σβ_j v_j) = 0` with CheckZero (multiply by a random `s`,
//! open, compare to 0). An additive attack survives with probability
//! O(gates/p) ≈ 2^−100 for any batch this crate can hold.
//!
//! Only after verification are values opened (`ρ²`, masks to their owners;
//! each missing component arrives from its two holders — as the vector from
//! one and a BLAKE3 hash from the other — so a wrong component is caught)
//! and the replicated shares converted to additive SPDZ shares: helper i
//! keeps component i of every value and MAC, and α_i as its key share.
//!
//! **Random bits** follow Damgård, Fitzi, Kiltz, Nielsen and Toft (TCC 2006,
//! §5): open `ρ²`, take `v = √(ρ²)` and `b = (ρ/v + 1)/2 ∈ {0, 1}`; the MAC of
//! `b` is `(α·ρ/v + α)/2`. A zero `ρ` (probability 2^−127) aborts the batch
//! with [`AbortReason::ZeroSquare`] so the shell retries it.

use sealroom_core::Seed;

use crate::error::{Abort, AbortReason};
use crate::field::{F127, batch_inverse, kernels};
use crate::machine::{
    Driver, DriverStep, HelperIndex, Input, Machine, Millis, Outgoing, Progress, Rounds, Step,
    UsageError,
};
use crate::material::{Batch, BatchId, Counts, Provenance};
use crate::prss::{EpochKeys, Left, Prss, Rss, products_into};
use crate::rng::{FieldPrg, derive_context};
use crate::share::AuthVec;
use crate::verify::{commit, joint_coins};
use crate::wire::{Body, Expect, MsgKind};

/// Parameters of one batch (all three helpers must use the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchParams {
    /// The batch id (the node tracks that it is produced and used once).
    pub id: BatchId,
    /// What to produce.
    pub counts: Counts,
    /// Per-round deadline in milliseconds.
    pub round_timeout_ms: u64,
}

/// The outcome of a preprocessing machine.
pub type PreprocOutcome = Result<Batch, Abort>;

/// One helper's preprocessing machine for one batch.
pub struct Preprocessing {
    driver: Driver<BatchProtocol>,
}

impl core::fmt::Debug for Preprocessing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Preprocessing(round {})", self.driver.round())
    }
}

const PROTOCOL_TAG: u8 = 1;

/// Communication rounds of an actively secure batch, whatever its size.
pub const ROUNDS: u32 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Malicious,
    /// Benchmark baseline: triples only, no MACs, no verification.
    SemiHonestBaseline,
}

impl Preprocessing {
    /// A machine producing `params` under `keys`' epoch. `rng` is a seed the
    /// shell drew from the OS (used for this helper's coin seed).
    pub fn new(keys: &EpochKeys, params: BatchParams, rng: Seed) -> Preprocessing {
        Preprocessing::with_mode(keys, params, rng, Mode::Malicious)
    }

    /// The semi-honest baseline of the same code, for benchmarks only:
    /// triples without MACs or verification, for
    /// [`Session::baseline`](crate::session::Session::baseline) only.
    pub fn baseline(keys: &EpochKeys, params: BatchParams, rng: Seed) -> Preprocessing {
        Preprocessing::with_mode(keys, params, rng, Mode::SemiHonestBaseline)
    }

    pub(crate) fn with_mode(
        keys: &EpochKeys,
        params: BatchParams,
        rng: Seed,
        mode: Mode,
    ) -> Preprocessing {
        let proto = BatchProtocol::new(keys, params, rng, mode);
        let session = proto.session;
        Preprocessing {
            driver: Driver::new(
                proto,
                keys.me(),
                session,
                PROTOCOL_TAG,
                params.round_timeout_ms,
            ),
        }
    }

    /// The id every message of this batch carries (derived from the batch
    /// id, epoch and counts).
    pub fn session_id(&self) -> [u8; 32] {
        self.driver.proto.session
    }

    /// The largest message a peer may send this machine (framing
    /// included): what the shell's transport buffers per message at most.
    pub fn max_inbound_bytes(&self) -> usize {
        self.driver.max_inbound_bytes()
    }
}

impl Machine for Preprocessing {
    type Outcome = PreprocOutcome;

    fn handle(mut self, now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)> {
        match self.driver.step(now, input) {
            Err(e) => Err((self, e)),
            Ok(DriverStep::Continue(actions)) => Ok(Step::Continue(self, actions)),
            Ok(DriverStep::Finish(outcome, actions)) => Ok(Step::Finish(outcome, actions)),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.driver.deadline()
    }
}

struct Inputs {
    a: Rss,
    b: Rss,
    rho: Rss,
    masks: [Rss; 3],
    vals: Rss,
    alpha: Rss,
    r: Rss,
    s: Rss,
}

struct BatchProtocol {
    me: HelperIndex,
    params: BatchParams,
    epoch: u64,
    mode: Mode,
    session: [u8; 32],
    params_hash: [u8; 32],
    prss: Prss,
    coin_seed: [u8; 32],
    peer_coin_commits: [[u8; 32]; 3],
    inputs: Inputs,
    /// Products awaiting the next helper's reshare.
    pending_t: Vec<F127>,
    l1: Vec<Rss>,
    l2: Vec<Rss>,
    t: Rss,
    st: Rss,
    public_log: blake3::Hasher,
    digest: [u8; 32],
    result: Option<Batch>,
    alpha_share: F127,
}

// Index of each product in layer 1 and layer 2.
mod l1 {
    pub const RA: usize = 0;
    pub const RB: usize = 1;
    pub const RALPHA: usize = 2;
    pub const C: usize = 3;
    pub const AA: usize = 4;
    pub const AB: usize = 5;
    pub const RRHO: usize = 6;
    pub const RHO2: usize = 7;
    pub const ARHO: usize = 8;
    pub const RM: usize = 9; // 9, 10, 11: r·m per owner
    pub const AM: usize = 12; // 12, 13, 14: α·m per owner
    pub const RV: usize = 15;
    pub const AV: usize = 16;
}
mod l2 {
    pub const RC: usize = 0;
    pub const RAA: usize = 1;
    pub const RAB: usize = 2;
    pub const AC: usize = 3;
    pub const RAC: usize = 4;
    pub const RRHO2: usize = 5;
    pub const RARHO: usize = 6;
    pub const RAM: usize = 7; // 7, 8, 9
    pub const RAV: usize = 10;
}

impl BatchProtocol {
    fn new(keys: &EpochKeys, params: BatchParams, rng: Seed, mode: Mode) -> BatchProtocol {
        let me = keys.me();
        let epoch = keys.epoch();
        let mut ph = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc batch params v1");
        ph.update(&params.id.0);
        ph.update(&epoch.to_le_bytes());
        ph.update(&params.counts.encode());
        ph.update(&[mode as u8]);
        let params_hash = *ph.finalize().as_bytes();
        let session = params_hash;
        let ctx = session.as_slice();
        let mut rand_prss = Prss::new(keys.prss(), "batch inputs", ctx);
        let c = params.counts;
        let inputs = Inputs {
            a: rand_prss.random(c.triples),
            b: rand_prss.random(c.triples),
            rho: rand_prss.random(c.bits),
            masks: [0, 1, 2].map(|k| rand_prss.random(c.masks[k])),
            vals: rand_prss.random(c.randoms),
            alpha: Rss {
                c0: keys.alpha().c0.clone(),
                c1: keys.alpha().c1.clone(),
            },
            r: rand_prss.random(1),
            s: rand_prss.random(1),
        };
        let mut local = FieldPrg::new(&rng, derive_context("preproc local", &[ctx]));
        let coin_seed = local.bytes32();
        BatchProtocol {
            me,
            params,
            epoch,
            mode,
            session,
            params_hash,
            prss: Prss::new(keys.prss(), "batch zero", ctx),
            coin_seed,
            peer_coin_commits: [[0; 32]; 3],
            inputs,
            pending_t: Vec::new(),
            l1: Vec::new(),
            l2: Vec::new(),
            t: Rss::default(),
            st: Rss::default(),
            public_log: blake3::Hasher::new_derive_key("sealroom 2026-12 mpc batch digest v1"),
            digest: [0; 32],
            result: None,
            alpha_share: keys.alpha().c0.first().copied().unwrap_or(F127::ZERO),
        }
    }

    fn counts(&self) -> Counts {
        self.params.counts
    }

    fn coin_commitment(&self, who: HelperIndex, seed: &[u8; 32]) -> [u8; 32] {
        commit("preproc coins", &self.session, 0, who, seed)
    }

    fn l1_sizes(&self) -> Vec<usize> {
        let c = self.counts();
        match self.mode {
            Mode::SemiHonestBaseline => vec![c.triples],
            Mode::Malicious => {
                let mut s = vec![
                    c.triples, c.triples, 1, c.triples, c.triples, c.triples, c.bits, c.bits,
                    c.bits,
                ];
                s.extend(c.masks);
                s.extend(c.masks);
                s.extend([c.randoms, c.randoms]);
                s
            }
        }
    }

    fn l2_sizes(&self) -> Vec<usize> {
        let c = self.counts();
        let mut s = vec![c.triples; 5];
        s.extend([c.bits, c.bits]);
        s.extend(c.masks);
        s.push(c.randoms);
        s
    }

    fn bits_plus_my_masks(&self) -> usize {
        self.counts().bits + self.counts().masks[self.me.index()]
    }

    /// Local products of a layer; the body goes to the previous helper.
    fn send_products(&mut self, t: Vec<F127>) -> Outgoing {
        self.pending_t = t;
        Outgoing::Split {
            to_next: Body::new(MsgKind::Reshare, Vec::new(), Vec::new()),
            to_prev: Body::new(MsgKind::Reshare, self.pending_t.clone(), Vec::new()),
        }
    }

    fn take_reshared(&mut self, from_next: Body) -> Rss {
        Rss {
            c0: core::mem::take(&mut self.pending_t),
            c1: from_next.elems,
        }
    }

    fn layer1(&mut self) -> Outgoing {
        let i = &self.inputs;
        let mut t = Vec::new();
        match self.mode {
            Mode::SemiHonestBaseline => {
                products_into(&mut self.prss, &[(Left::Vec(&i.a), &i.b)], &mut t)
            }
            Mode::Malicious => {
                let r = Left::Scalar(i.r.c0[0], i.r.c1[0]);
                let al = || Left::Scalar(i.alpha.c0[0], i.alpha.c1[0]);
                let rr = || Left::Scalar(i.r.c0[0], i.r.c1[0]);
                let specs = [
                    (r, &i.a),
                    (rr(), &i.b),
                    (rr(), &i.alpha),
                    (Left::Vec(&i.a), &i.b),
                    (al(), &i.a),
                    (al(), &i.b),
                    (rr(), &i.rho),
                    (Left::Vec(&i.rho), &i.rho),
                    (al(), &i.rho),
                    (rr(), &i.masks[0]),
                    (rr(), &i.masks[1]),
                    (rr(), &i.masks[2]),
                    (al(), &i.masks[0]),
                    (al(), &i.masks[1]),
                    (al(), &i.masks[2]),
                    (rr(), &i.vals),
                    (al(), &i.vals),
                ];
                products_into(&mut self.prss, &specs, &mut t);
            }
        }
        self.send_products(t)
    }

    fn layer2(&mut self) -> Outgoing {
        let (i, l1) = (&self.inputs, &self.l1);
        let ra = &l1[l1::RALPHA];
        let ra = || Left::Scalar(ra.c0[0], ra.c1[0]);
        let al = Left::Scalar(i.alpha.c0[0], i.alpha.c1[0]);
        let specs = [
            (Left::Vec(&l1[l1::RA]), &i.b),
            (ra(), &i.a),
            (ra(), &i.b),
            (al, &l1[l1::C]),
            (ra(), &l1[l1::C]),
            (Left::Vec(&l1[l1::RRHO]), &i.rho),
            (ra(), &i.rho),
            (ra(), &i.masks[0]),
            (ra(), &i.masks[1]),
            (ra(), &i.masks[2]),
            (ra(), &i.vals),
        ];
        let mut t = Vec::new();
        products_into(&mut self.prss, &specs, &mut t);
        self.send_products(t)
    }

    /// Chida et al.'s u and w: Σχ(r·z) + Σβ(r·v) and Σχ z + Σβ v.
    fn verification_sums(&self, coins: &Seed) -> (Rss, Rss) {
        let mut prg = FieldPrg::new(
            coins,
            derive_context("chida coefficients", &[&self.session]),
        );
        let (l1, l2, i) = (&self.l1, &self.l2, &self.inputs);
        let pairs: Vec<(&Rss, &Rss)> = vec![
            // gates (z, r·z)
            (&l1[l1::C], &l2[l2::RC]),
            (&l1[l1::AA], &l2[l2::RAA]),
            (&l1[l1::AB], &l2[l2::RAB]),
            (&l2[l2::AC], &l2[l2::RAC]),
            (&l1[l1::RHO2], &l2[l2::RRHO2]),
            (&l1[l1::ARHO], &l2[l2::RARHO]),
            (&l1[l1::AM], &l2[l2::RAM]),
            (&l1[l1::AM + 1], &l2[l2::RAM + 1]),
            (&l1[l1::AM + 2], &l2[l2::RAM + 2]),
            (&l1[l1::AV], &l2[l2::RAV]),
            // inputs (v, r·v)
            (&i.a, &l1[l1::RA]),
            (&i.b, &l1[l1::RB]),
            (&i.alpha, &l1[l1::RALPHA]),
            (&i.rho, &l1[l1::RRHO]),
            (&i.masks[0], &l1[l1::RM]),
            (&i.masks[1], &l1[l1::RM + 1]),
            (&i.masks[2], &l1[l1::RM + 2]),
            (&i.vals, &l1[l1::RV]),
        ];
        let (mut u0, mut u1, mut w0, mut w1) = (F127::ZERO, F127::ZERO, F127::ZERO, F127::ZERO);
        let mut chi = Vec::new();
        for (z, rz) in pairs {
            for start in (0..z.len()).step_by(4096) {
                let end = (start + 4096).min(z.len());
                chi.resize(end - start, F127::ZERO);
                prg.fill(&mut chi);
                u0 = u0.add(kernels::dot(&chi, &rz.c0[start..end]));
                u1 = u1.add(kernels::dot(&chi, &rz.c1[start..end]));
                w0 = w0.add(kernels::dot(&chi, &z.c0[start..end]));
                w1 = w1.add(kernels::dot(&chi, &z.c1[start..end]));
            }
        }
        (
            Rss {
                c0: vec![u0],
                c1: vec![u1],
            },
            Rss {
                c0: vec![w0],
                c1: vec![w1],
            },
        )
    }

    fn rss_hash(&self, round: u32, values: &[F127]) -> [u8; 32] {
        let mut bytes = Vec::with_capacity(values.len() * 16);
        kernels::encode_into(values, &mut bytes);
        commit("replicated open", &self.session, round, self.me, &bytes)
    }

    /// Checks a replicated opening: the vector from prev against the hash
    /// from next (which hashed under its own index, so recompute that way).
    fn check_rss(
        &self,
        round: u32,
        from_prev: &[F127],
        hash_from_next: &[u8; 32],
    ) -> Result<(), AbortReason> {
        let mut bytes = Vec::with_capacity(from_prev.len() * 16);
        kernels::encode_into(from_prev, &mut bytes);
        if commit(
            "replicated open",
            &self.session,
            round,
            self.me.next(),
            &bytes,
        ) == *hash_from_next
        {
            Ok(())
        } else {
            Err(AbortReason::ReplicatedOpenMismatch {
                a: self.me.prev(),
                b: self.me.next(),
            })
        }
    }

    fn finish_batch(&mut self, opened: Vec<F127>) -> Result<(), AbortReason> {
        let c = self.counts();
        let first = self.me.index() == 0;
        let alpha_i = self.alpha_share;
        let mut l1 = core::mem::take(&mut self.l1);
        let mut l2 = core::mem::take(&mut self.l2);
        let take = |v: &mut Rss| core::mem::take(&mut v.c0);
        // Bits: v = √(ρ²); b = (ρ/v + 1)/2.
        let (squares, my_mask_missing) = opened.split_at(c.bits.min(opened.len()));
        let mut roots = Vec::with_capacity(squares.len());
        for (k, sq) in squares.iter().enumerate() {
            let total = sq.add(self.inputs.rho2_known(k, &l1));
            if total == F127::ZERO {
                return Err(AbortReason::ZeroSquare);
            }
            self.public_log.update(&total.to_le_bytes());
            roots.push(total.sqrt().ok_or(AbortReason::NotASquare)?);
        }
        batch_inverse(&mut roots).ok_or(AbortReason::ZeroSquare)?;
        let rho0 = take(&mut self.inputs.rho);
        let arho0 = take(&mut l1[l1::ARHO]);
        let mut bv = Vec::with_capacity(c.bits);
        let mut bm = Vec::with_capacity(c.bits);
        for ((r, m), vinv) in rho0.iter().zip(&arho0).zip(&roots) {
            let one = if first { F127::ONE } else { F127::ZERO };
            bv.push(r.mul(*vinv).add(one).mul(F127::INV2));
            bm.push(m.mul(*vinv).add(alpha_i).mul(F127::INV2));
        }
        // Masks owned by me: m = m_i + m_{i+1} + received m_{i−1}.
        let mine = &self.inputs.masks[self.me.index()];
        let my_masks: Vec<F127> = mine
            .c0
            .iter()
            .zip(&mine.c1)
            .zip(my_mask_missing)
            .map(|((a, b), m)| a.add(*b).add(*m))
            .collect();
        let masks = [0, 1, 2]
            .map(|k| AuthVec::new(take(&mut self.inputs.masks[k]), take(&mut l1[l1::AM + k])));
        let triples = [
            AuthVec::new(take(&mut self.inputs.a), take(&mut l1[l1::AA])),
            AuthVec::new(take(&mut self.inputs.b), take(&mut l1[l1::AB])),
            AuthVec::new(take(&mut l1[l1::C]), take(&mut l2[l2::AC])),
        ];
        let randoms = AuthVec::new(take(&mut self.inputs.vals), take(&mut l1[l1::AV]));
        self.digest = *self.public_log.finalize().as_bytes();
        self.result = Some(Batch {
            id: self.params.id,
            epoch: self.epoch,
            me: self.me,
            counts: c,
            digest: self.digest,
            provenance: Provenance::Helpers,
            triples,
            bits: AuthVec::new(bv, bm),
            randoms,
            masks,
            my_masks: zeroize::Zeroizing::new(my_masks),
        });
        Ok(())
    }

    fn finish_baseline(&mut self) {
        let c = self.counts();
        let mut l1 = core::mem::take(&mut self.l1);
        let zeros = |n| vec![F127::ZERO; n];
        let triples = [
            AuthVec::new(core::mem::take(&mut self.inputs.a.c0), zeros(c.triples)),
            AuthVec::new(core::mem::take(&mut self.inputs.b.c0), zeros(c.triples)),
            AuthVec::new(core::mem::take(&mut l1[0].c0), zeros(c.triples)),
        ];
        self.digest = *self.public_log.finalize().as_bytes();
        self.result = Some(Batch {
            id: self.params.id,
            epoch: self.epoch,
            me: self.me,
            counts: c,
            digest: self.digest,
            provenance: Provenance::Helpers,
            triples,
            bits: AuthVec::default(),
            randoms: AuthVec::default(),
            masks: Default::default(),
            my_masks: zeroize::Zeroizing::new(Vec::new()),
        });
    }
}

impl Inputs {
    /// The two components of ρ²_k this helper holds (added to the received third).
    fn rho2_known(&self, k: usize, l1: &[Rss]) -> F127 {
        let r = &l1[l1::RHO2];
        r.c0.get(k)
            .copied()
            .unwrap_or(F127::ZERO)
            .add(r.c1.get(k).copied().unwrap_or(F127::ZERO))
    }
}

impl Rounds for BatchProtocol {
    type Outcome = Batch;

    fn round_count(&self) -> u32 {
        match self.mode {
            Mode::Malicious => ROUNDS,
            Mode::SemiHonestBaseline => 3,
        }
    }

    fn expect(&self, round: u32, from: HelperIndex) -> Expect {
        let from_next = from == self.me.next();
        let e = |kind, elems, blobs| Expect { kind, elems, blobs };
        let reshare = |n: usize| e(MsgKind::Reshare, if from_next { n } else { 0 }, 0);
        match (self.mode, round) {
            (_, 0) => e(MsgKind::Hello, 0, 2),
            (_, 1) => reshare(self.l1_sizes().iter().sum()),
            (Mode::SemiHonestBaseline, _) => e(MsgKind::Confirm, 0, 1),
            (Mode::Malicious, 2) => reshare(self.l2_sizes().iter().sum()),
            (Mode::Malicious, 3) => {
                if from_next {
                    e(MsgKind::RssOpen, 0, 2)
                } else {
                    e(MsgKind::RssOpen, 1, 1)
                }
            }
            (Mode::Malicious, 4) => reshare(1),
            (Mode::Malicious, 5) => {
                if from_next {
                    e(MsgKind::RssOpen, 0, 1)
                } else {
                    e(MsgKind::RssOpen, 1, 0)
                }
            }
            (Mode::Malicious, 6) => {
                if from_next {
                    e(MsgKind::RssOpen, 0, 1)
                } else {
                    e(MsgKind::RssOpen, self.bits_plus_my_masks(), 0)
                }
            }
            (Mode::Malicious, _) => e(MsgKind::Confirm, 0, 1),
        }
    }

    fn begin(&mut self, round: u32) -> Result<Outgoing, AbortReason> {
        let me = self.me;
        Ok(match (self.mode, round) {
            (_, 0) => {
                let c = self.coin_commitment(me, &self.coin_seed);
                Outgoing::same(Body::new(
                    MsgKind::Hello,
                    Vec::new(),
                    vec![self.params_hash, c],
                ))
            }
            (_, 1) => self.layer1(),
            (Mode::SemiHonestBaseline, _) => {
                Outgoing::same(Body::new(MsgKind::Confirm, Vec::new(), vec![self.digest]))
            }
            (Mode::Malicious, 2) => self.layer2(),
            (Mode::Malicious, 3) => {
                let r = &self.inputs.r;
                Outgoing::Split {
                    to_next: Body::new(MsgKind::RssOpen, r.c0.clone(), vec![self.coin_seed]),
                    to_prev: Body::new(
                        MsgKind::RssOpen,
                        Vec::new(),
                        vec![self.coin_seed, self.rss_hash(3, &r.c1)],
                    ),
                }
            }
            (Mode::Malicious, 4) => {
                let (s, t) = (
                    core::mem::take(&mut self.inputs.s),
                    core::mem::take(&mut self.t),
                );
                let mut prod = Vec::new();
                products_into(&mut self.prss, &[(Left::Vec(&s), &t)], &mut prod);
                self.send_products(prod)
            }
            (Mode::Malicious, 5) => Outgoing::Split {
                to_next: Body::new(MsgKind::RssOpen, self.st.c0.clone(), Vec::new()),
                to_prev: Body::new(
                    MsgKind::RssOpen,
                    Vec::new(),
                    vec![self.rss_hash(5, &self.st.c1)],
                ),
            },
            (Mode::Malicious, 6) => {
                let rho2 = &self.l1[l1::RHO2];
                let next = me.next().index();
                let prev = me.prev().index();
                let mut to_next = rho2.c0.clone();
                to_next.extend_from_slice(&self.inputs.masks[next].c0);
                let mut for_prev = rho2.c1.clone();
                for_prev.extend_from_slice(&self.inputs.masks[prev].c1);
                Outgoing::Split {
                    to_next: Body::new(MsgKind::RssOpen, to_next, Vec::new()),
                    to_prev: Body::new(
                        MsgKind::RssOpen,
                        Vec::new(),
                        vec![self.rss_hash(6, &for_prev)],
                    ),
                }
            }
            (Mode::Malicious, _) => {
                Outgoing::same(Body::new(MsgKind::Confirm, Vec::new(), vec![self.digest]))
            }
        })
    }

    fn finish(
        &mut self,
        round: u32,
        from_next: Body,
        from_prev: Body,
    ) -> Result<Progress<Batch>, AbortReason> {
        let (next, prev) = (self.me.next(), self.me.prev());
        match (self.mode, round) {
            (_, 0) => {
                for (peer, body) in [(next, &from_next), (prev, &from_prev)] {
                    if body.blobs.first() != Some(&self.params_hash) {
                        return Err(AbortReason::ParameterMismatch { peer });
                    }
                    self.peer_coin_commits[peer.index()] =
                        body.blobs.get(1).copied().unwrap_or_default();
                }
            }
            (_, 1) => {
                let product = self.take_reshared(from_next);
                self.l1 = product.split(&self.l1_sizes());
                if self.mode == Mode::SemiHonestBaseline {
                    self.finish_baseline();
                }
            }
            (Mode::SemiHonestBaseline, _) | (Mode::Malicious, 7) => {
                for (peer, body) in [(next, &from_next), (prev, &from_prev)] {
                    if body.blobs.first() != Some(&self.digest) {
                        return Err(AbortReason::ParameterMismatch { peer });
                    }
                }
                return self
                    .result
                    .take()
                    .map(Progress::Done)
                    .ok_or(AbortReason::Internal);
            }
            (Mode::Malicious, 2) => {
                let product = self.take_reshared(from_next);
                self.l2 = product.split(&self.l2_sizes());
            }
            (Mode::Malicious, 3) => {
                // Coins: check each revealed seed against its commitment.
                let mut seeds = [[0u8; 32]; 3];
                seeds[self.me.index()] = self.coin_seed;
                for (peer, seed) in [
                    (next, from_next.blobs.first()),
                    (prev, from_prev.blobs.first()),
                ] {
                    let seed = seed.copied().unwrap_or_default();
                    if self.coin_commitment(peer, &seed) != self.peer_coin_commits[peer.index()] {
                        return Err(AbortReason::CommitmentMismatch { peer });
                    }
                    seeds[peer.index()] = seed;
                }
                let hash = from_next.blobs.get(1).copied().unwrap_or_default();
                self.check_rss(3, &from_prev.elems, &hash)?;
                let r_missing = from_prev.elems.first().copied().unwrap_or(F127::ZERO);
                let r = self.inputs.r.c0[0].add(self.inputs.r.c1[0]).add(r_missing);
                self.public_log.update(&r.to_le_bytes());
                let coins = joint_coins(
                    "preproc chida",
                    &self.session,
                    0,
                    [&seeds[0], &seeds[1], &seeds[2]],
                );
                let (u, w) = self.verification_sums(&coins);
                // T = u − r·w.
                self.t = Rss {
                    c0: vec![u.c0[0].sub(r.mul(w.c0[0]))],
                    c1: vec![u.c1[0].sub(r.mul(w.c1[0]))],
                };
            }
            (Mode::Malicious, 4) => {
                self.st = self.take_reshared(from_next);
            }
            (Mode::Malicious, 5) => {
                let hash = from_next.blobs.first().copied().unwrap_or_default();
                self.check_rss(5, &from_prev.elems, &hash)?;
                let missing = from_prev.elems.first().copied().unwrap_or(F127::ZERO);
                let st = self.st.c0[0].add(self.st.c1[0]).add(missing);
                if st != F127::ZERO {
                    return Err(AbortReason::MultiplicationVerificationFailed);
                }
            }
            (Mode::Malicious, 6) => {
                let hash = from_next.blobs.first().copied().unwrap_or_default();
                self.check_rss(6, &from_prev.elems, &hash)?;
                self.finish_batch(from_prev.elems)?;
            }
            (Mode::Malicious, _) => return Err(AbortReason::Internal),
        }
        Ok(Progress::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prss::PrssKeys;
    use crate::sim;

    /// Reconstructs the material from all three helpers' parts and checks it
    /// against plain field arithmetic: c = a·b, every MAC is α·value with
    /// α = Σα_i, bits are 0 or 1 (and not all equal), masks equal the
    /// owner's clear value.
    #[test]
    fn material_reconstructs_to_correct_values_and_macs() {
        let k = [
            Seed::from_bytes([1; 32]),
            Seed::from_bytes([2; 32]),
            Seed::from_bytes([3; 32]),
        ];
        let keys = HelperIndex::ALL.map(|h| {
            let i = h.index();
            EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 4)
        });
        let alpha = keys
            .iter()
            .fold(F127::ZERO, |s, k| s.add(k.mac_key_share().0));
        let counts = Counts {
            triples: 50,
            bits: 64,
            randoms: 5,
            masks: [3, 0, 2],
        };
        let params = BatchParams {
            id: BatchId([1; 16]),
            counts,
            round_timeout_ms: 10,
        };
        let machines = [0, 1, 2]
            .map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([i as u8; 32])));
        let b = sim::run(machines, None, 10_000)
            .outcomes
            .map(|o| o.expect("done").expect("ok"));
        let open = |f: &dyn Fn(&Batch) -> &AuthVec| -> (Vec<F127>, Vec<F127>) {
            let n = f(&b[0]).len();
            let sum = |g: &dyn Fn(&AuthVec) -> &Vec<F127>| {
                (0..n)
                    .map(|j| b.iter().fold(F127::ZERO, |s, x| s.add(g(f(x))[j])))
                    .collect::<Vec<_>>()
            };
            (sum(&|v| &v.values), sum(&|v| &v.macs))
        };
        let check_macs = |(v, m): &(Vec<F127>, Vec<F127>)| {
            for (x, mx) in v.iter().zip(m) {
                assert_eq!(*mx, alpha.mul(*x), "MAC is α·x");
            }
        };
        let (ta, tb, tc) = (
            open(&|x| &x.triples[0]),
            open(&|x| &x.triples[1]),
            open(&|x| &x.triples[2]),
        );
        for j in 0..counts.triples {
            assert_eq!(tc.0[j], ta.0[j].mul(tb.0[j]), "c = a·b");
        }
        for t in [&ta, &tb, &tc] {
            check_macs(t);
        }
        let bits = open(&|x| &x.bits);
        assert!(bits.0.iter().all(|v| *v == F127::ZERO || *v == F127::ONE));
        let ones = bits.0.iter().filter(|v| **v == F127::ONE).count();
        assert!((10..54).contains(&ones), "{ones} ones in 64 random bits");
        check_macs(&bits);
        check_macs(&open(&|x| &x.randoms));
        for owner in [0usize, 2] {
            let m = open(&|x| &x.masks[owner]);
            check_macs(&m);
            assert_eq!(&m.0, &*b[owner].my_masks, "owner knows its masks");
        }
        assert!(b[1].my_masks.is_empty());
    }
}

#[cfg(test)]
mod vectors {
    use super::*;
    use crate::prss::PrssKeys;
    use crate::sim;

    /// Pins the SPDZ sharing and MAC format: helper 0's key share α_0 and its
    /// value and MAC shares of the first triple, bit and input mask of a
    /// fixed batch (tests/vectors/mpc_shares.json). Regenerate deliberately
    /// with `SEALROOM_REGEN_VECTORS=1`.
    #[test]
    fn pinned_share_and_mac_vectors() {
        let k = [
            Seed::from_bytes([1; 32]),
            Seed::from_bytes([2; 32]),
            Seed::from_bytes([3; 32]),
        ];
        let keys = HelperIndex::ALL.map(|h| {
            let i = h.index();
            EpochKeys::derive(PrssKeys::new(h, k[i].clone(), k[(i + 1) % 3].clone()), 1)
        });
        let counts = Counts {
            triples: 1,
            bits: 1,
            randoms: 1,
            masks: [1, 0, 0],
        };
        let params = BatchParams {
            id: BatchId([2; 16]),
            counts,
            round_timeout_ms: 10,
        };
        let machines = [0, 1, 2]
            .map(|i| Preprocessing::new(&keys[i], params, Seed::from_bytes([i as u8; 32])));
        let [b0, _, _] = sim::run(machines, None, 10_000)
            .outcomes
            .map(|o| o.expect("done").expect("ok"));
        let hex = |v: F127| {
            v.to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let got = format!(
            "{{\n  \"alpha_0\": \"{}\",\n  \"triple_a_value_0\": \"{}\",\n  \"triple_a_mac_0\": \"{}\",\n  \"triple_c_value_0\": \"{}\",\n  \"triple_c_mac_0\": \"{}\",\n  \"bit_value_0\": \"{}\",\n  \"bit_mac_0\": \"{}\",\n  \"mask_clear_0\": \"{}\",\n  \"digest\": \"{}\"\n}}\n",
            hex(keys[0].mac_key_share().0),
            hex(b0.triples[0].values[0]),
            hex(b0.triples[0].macs[0]),
            hex(b0.triples[2].values[0]),
            hex(b0.triples[2].macs[0]),
            hex(b0.bits.values[0]),
            hex(b0.bits.macs[0]),
            hex(b0.my_masks[0]),
            b0.digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mpc_shares.json");
        if std::env::var_os("SEALROOM_REGEN_VECTORS").is_some() {
            std::fs::write(path, &got).expect("write vectors");
        }
        assert_eq!(got, std::fs::read_to_string(path).expect("vectors file"));
    }
}
