//! The online phase: one helper's computation session, a sans-IO machine
//! that runs a [`Program`] on SPDZ shares with preprocessed material.
//!
//! * Beaver multiplication (Beaver, CRYPTO 1991; as in SPDZ, DPSZ 2012 §3):
//!   for each product, open ε = x − a and δ = y − b (each helper sends its
//!   two value shares to both others; every product of a round travels in
//!   the same message) and set z = c + ε·b + δ·a + ε·δ, MACs alike.
//! * Helper-private input via an input mask \[m\] whose value only the owner
//!   knows: the owner broadcasts ε = x − m and all set \[x\] = \[m\] + ε. The two
//!   receivers hash ε into their transcripts, so an owner that told them
//!   different ε is caught by the transcript comparison of the next check.
//! * Every opening goes into the [`crate::verify`] log; MAC checks run where
//!   the program put them and always at the end, before any output leaves.
//!
//! Round 0 is a hello in which helpers compare the program hash, the
//! material (batch ids and digests), the key epoch, and exchange their
//! commitments to the check coin seeds and to their client κ shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_core::Seed;

use crate::client::HelperUpload;
use crate::error::{Abort, AbortReason};
use crate::field::{F127, kernels};
use crate::machine::{
    Driver, DriverStep, HelperIndex, Input, Machine, Millis, Outgoing, Progress, Rounds, Step,
    UsageError,
};
use crate::material::{Batch, Pool, Provenance};
use crate::program::{Op, Program, RoundPlan};
use crate::prss::EpochKeys;
use crate::rng::{FieldPrg, derive_context};
use crate::share::{AuthVec, MacKeyShare};
use crate::verify::{self, CheckPassed, OpenLog, Opened, Output, PeerCheck, commit, joint_coins};
use crate::wire::{Body, Expect, MsgKind};

const PROTOCOL_TAG: u8 = 2;

/// Session parameters.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Unique id of this computation (the node derives it from the signed
    /// round descriptor); every message carries it.
    pub session_id: [u8; 32],
    /// Per-round deadline in milliseconds.
    pub round_timeout_ms: u64,
}

/// This helper's private inputs.
#[derive(Default)]
pub struct SessionInputs {
    /// Vectors for the program's `helper_input` slots this helper owns.
    pub helper: BTreeMap<u32, Vec<F127>>,
    /// Client uploads in client order (for programs with `client_inputs`).
    pub clients: Vec<HelperUpload>,
    /// The PRG context of the client uploads (the round descriptor hash).
    pub client_context: [u8; 32],
}

impl core::fmt::Debug for SessionInputs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SessionInputs(slots={:?}, clients={}, <redacted>)",
            self.helper.keys().collect::<Vec<_>>(),
            self.clients.len()
        )
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every output, each verified by the final MAC check.
    Completed {
        /// The outputs in id order.
        outputs: Vec<Output>,
    },
    /// The client sketch check failed for these clients (indices into the
    /// program's client list). Verified; blames no helper. Nothing else was
    /// computed or released; rerun without them (fresh material).
    ClientsExcluded {
        /// Excluded clients.
        clients: Vec<u32>,
    },
    /// Aborted with evidence.
    Aborted(Abort),
    /// Benchmark baseline finished (no MACs, nothing released).
    BaselineDone,
}

/// Why a session could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The batches hold less than the program needs.
    #[error("preprocessing material does not cover the program's needs")]
    InsufficientMaterial,
    /// A batch is from another key epoch.
    #[error("a batch belongs to key epoch {batch}, the keys to {keys}")]
    EpochMismatch {
        /// Batch epoch.
        batch: u64,
        /// Keys' epoch.
        keys: u64,
    },
    /// A batch belongs to another helper.
    #[error("a batch belongs to another helper")]
    WrongHelper,
    /// A helper-input slot this helper owns has no vector, or the wrong length.
    #[error("input slot {slot} is missing or has the wrong length")]
    BadInput {
        /// The slot.
        slot: u32,
    },
    /// Client uploads do not match the program's client declaration.
    #[error("client uploads do not match the program (count, ring or length)")]
    BadClientUploads,
}

/// One helper's online session.
pub struct Session {
    driver: Driver<Engine>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Session(round {})", self.driver.round())
    }
}

impl Session {
    /// A session running `program` for helper `keys.me()`, consuming
    /// `material` (taken by value: it cannot be used again). `rng` is a seed
    /// the shell drew from the OS.
    pub fn new(
        program: Arc<Program>,
        keys: &EpochKeys,
        material: Vec<Batch>,
        inputs: SessionInputs,
        config: SessionConfig,
        rng: Seed,
    ) -> Result<Session, SessionError> {
        Session::build(program, keys, material, inputs, config, rng, true)
    }

    /// The semi-honest baseline of the same code (no MACs, no checks), for
    /// benchmarks only: it releases nothing (its outcome is
    /// [`Outcome::BaselineDone`]), so it cannot leak what it computed.
    pub fn baseline(
        program: Arc<Program>,
        keys: &EpochKeys,
        material: Vec<Batch>,
        inputs: SessionInputs,
        config: SessionConfig,
        rng: Seed,
    ) -> Result<Session, SessionError> {
        Session::build(program, keys, material, inputs, config, rng, false)
    }

    fn build(
        program: Arc<Program>,
        keys: &EpochKeys,
        material: Vec<Batch>,
        inputs: SessionInputs,
        config: SessionConfig,
        rng: Seed,
        macs: bool,
    ) -> Result<Session, SessionError> {
        let me = keys.me();
        let mut binding =
            blake3::Hasher::new_derive_key("sealroom 2026-12 mpc material binding v1");
        for b in &material {
            if b.epoch != keys.epoch() {
                return Err(SessionError::EpochMismatch {
                    batch: b.epoch,
                    keys: keys.epoch(),
                });
            }
            if b.me != me {
                return Err(SessionError::WrongHelper);
            }
            binding.update(&b.id.0);
            binding.update(&b.digest);
            binding.update(&[match b.provenance {
                Provenance::Helpers => 1,
            }]);
        }
        let pool = Pool::merge(material);
        if !pool.counts.covers(&program.needs()) {
            return Err(SessionError::InsufficientMaterial);
        }
        for op in &program.ops {
            if let Op::HelperInput { owner, slot, len } = op
                && usize::from(*owner) == me.index()
                && inputs.helper.get(slot).map(Vec::len) != Some(*len as usize)
            {
                return Err(SessionError::BadInput { slot: *slot });
            }
        }
        let mut prg = FieldPrg::new(&rng, derive_context("session local", &[&config.session_id]));
        // Client uploads → my share vector, τ_i and κ_i.
        let (mut client_shares, mut taus, mut kappas) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(spec) = program.clients() {
            if inputs.clients.len() != spec.clients as usize {
                return Err(SessionError::BadClientUploads);
            }
            for up in &inputs.clients {
                if up.ring().bits() != spec.ring_bits {
                    return Err(SessionError::BadClientUploads);
                }
                let v = up
                    .expand(me, spec.len as usize, inputs.client_context)
                    .ok_or(SessionError::BadClientUploads)?;
                client_shares.extend(v);
                taus.push(up.tau.get());
                kappas.push(up.kappa.get());
            }
        }
        let coin_seeds: Vec<[u8; 32]> = (0..program.checks).map(|_| prg.bytes32()).collect();
        let kappa_salt = prg.bytes32();
        let mut kappa_bytes = Vec::new();
        kernels::encode_into(&kappas, &mut kappa_bytes);
        kappa_bytes.extend_from_slice(&kappa_salt);
        let session = config.session_id;
        let kappa_commit = commit("client kappa", &session, 0, me, &kappa_bytes);
        let mut eh = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc epoch binding v1");
        eh.update(&keys.epoch().to_le_bytes());
        eh.update(&[u8::from(macs)]);
        let regs = (0..program.ops.len()).map(|_| Reg::Empty).collect();
        let engine = Engine {
            me,
            session,
            key: keys.mac_key_share(),
            program_hash: program.hash(),
            material_binding: *binding.finalize().as_bytes(),
            epoch_binding: *eh.finalize().as_bytes(),
            pool,
            regs,
            log: OpenLog::new(&session),
            helper_inputs: inputs
                .helper
                .into_iter()
                .map(|(k, v)| (k, zeroize::Zeroizing::new(v)))
                .collect(),
            client_shares: zeroize::Zeroizing::new(client_shares),
            taus: zeroize::Zeroizing::new(taus),
            kappas: zeroize::Zeroizing::new(kappas),
            kappa_salt,
            kappa_commit,
            peer_kappa_commits: [[0; 32]; 3],
            coin_seeds,
            peer_coin_commits: Vec::new(),
            pending: Vec::new(),
            coins: None,
            sigma: F127::ZERO,
            salt: [0; 32],
            peer_sigma: [[0; 32]; 3],
            peer_transcript: [[0; 32]; 3],
            my_transcript: [0; 32],
            outputs: Vec::new(),
            prg,
            macs,
            program,
        };
        Ok(Session {
            driver: Driver::new(engine, me, session, PROTOCOL_TAG, config.round_timeout_ms),
        })
    }

    /// The largest message a peer may send this machine (framing
    /// included): what the shell's transport buffers per message at most.
    pub fn max_inbound_bytes(&self) -> usize {
        self.driver.max_inbound_bytes()
    }

    /// Communication rounds this session will run.
    pub fn rounds(&self) -> usize {
        self.driver.proto.program.rounds()
    }
}

impl Machine for Session {
    type Outcome = Outcome;

    fn handle(mut self, now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)> {
        match self.driver.step(now, input) {
            Err(e) => Err((self, e)),
            Ok(DriverStep::Continue(actions)) => Ok(Step::Continue(self, actions)),
            Ok(DriverStep::Finish(Ok(outcome), actions)) => Ok(Step::Finish(outcome, actions)),
            Ok(DriverStep::Finish(Err(abort), actions)) => {
                Ok(Step::Finish(Outcome::Aborted(abort), actions))
            }
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.driver.deadline()
    }
}

enum Reg {
    Empty,
    Secret(AuthVec),
    Public(Opened<Vec<F127>>),
}

/// The second half of an interactive operation, waiting for the peers' shares.
enum Pending {
    Mul {
        at: usize,
        eps: Vec<F127>,
        delta: Vec<F127>,
        mac_eps: Vec<F127>,
        mac_delta: Vec<F127>,
    },
    Open {
        mine: Vec<F127>,
        macs: Vec<F127>,
        output: Option<u32>,
    },
    Input {
        owner: HelperIndex,
        mask: AuthVec,
        eps: Vec<F127>,
    },
    Kappa,
}

struct Engine {
    me: HelperIndex,
    session: [u8; 32],
    key: MacKeyShare,
    program: Arc<Program>,
    program_hash: [u8; 32],
    material_binding: [u8; 32],
    epoch_binding: [u8; 32],
    pool: Pool,
    regs: Vec<Reg>,
    log: OpenLog,
    helper_inputs: BTreeMap<u32, zeroize::Zeroizing<Vec<F127>>>,
    client_shares: zeroize::Zeroizing<Vec<F127>>,
    taus: zeroize::Zeroizing<Vec<F127>>,
    kappas: zeroize::Zeroizing<Vec<F127>>,
    kappa_salt: [u8; 32],
    kappa_commit: [u8; 32],
    peer_kappa_commits: [[u8; 32]; 3],
    coin_seeds: Vec<[u8; 32]>,
    peer_coin_commits: Vec<[[u8; 32]; 3]>,
    pending: Vec<(u32, Pending)>,
    coins: Option<Seed>,
    sigma: F127,
    salt: [u8; 32],
    peer_sigma: [[u8; 32]; 3],
    peer_transcript: [[u8; 32]; 3],
    my_transcript: [u8; 32],
    outputs: Vec<(u32, Opened<Vec<F127>>)>,
    prg: FieldPrg,
    macs: bool,
}

const HELLO_FIXED: usize = 4;

impl Engine {
    fn first(&self) -> bool {
        self.me.index() == 0
    }

    fn secret(&self, r: u32) -> Result<&AuthVec, AbortReason> {
        match self.regs.get(r as usize) {
            Some(Reg::Secret(v)) => Ok(v),
            _ => Err(AbortReason::Internal),
        }
    }

    fn public(&self, r: u32) -> Result<&[F127], AbortReason> {
        match self.regs.get(r as usize) {
            Some(Reg::Public(v)) => Ok(v.local()),
            _ => Err(AbortReason::Internal),
        }
    }

    /// Drops registers op `k` was the last to read (shares are zeroized on drop).
    fn free_after(&mut self, k: u32) {
        let program = Arc::clone(&self.program);
        for &r in program
            .free_after
            .get(k as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(slot) = self.regs.get_mut(r as usize) {
                *slot = Reg::Empty;
            }
        }
    }

    fn coin_commitment(&self, check: u32, who: HelperIndex, seed: &[u8; 32]) -> [u8; 32] {
        commit("mac check coins", &self.session, check, who, seed)
    }

    fn run_local(&mut self, k: u32) -> Result<(), AbortReason> {
        let op = self
            .program
            .ops
            .get(k as usize)
            .cloned()
            .ok_or(AbortReason::Internal)?;
        let first = self.first();
        let value = match &op {
            Op::Add(a, b) => Reg::Secret(self.secret(*a)?.add(self.secret(*b)?)),
            Op::Sub(a, b) => Reg::Secret(self.secret(*a)?.sub(self.secret(*b)?)),
            Op::AddPublic(a, p) => {
                let mut v = self.secret(*a)?.duplicate();
                v.add_public(self.public(*p)?, first, &self.key);
                Reg::Secret(v)
            }
            Op::SubFromPublic(p, a) => {
                let mut v = self.secret(*a)?.scale(F127::ONE.neg());
                v.add_public(self.public(*p)?, first, &self.key);
                Reg::Secret(v)
            }
            Op::MulPublic(a, p) => Reg::Secret(self.secret(*a)?.mul_public(self.public(*p)?)),
            Op::AddConst(a, c) => {
                let mut v = self.secret(*a)?.duplicate();
                v.add_const(*c, first, &self.key);
                Reg::Secret(v)
            }
            Op::MulConst(a, c) => Reg::Secret(self.secret(*a)?.scale(*c)),
            Op::SegmentSum(a, seg) => {
                let v = self.secret(*a)?;
                let seg = (*seg as usize).max(1);
                let values = v.values.chunks(seg).map(kernels::sum).collect();
                let macs = v.macs.chunks(seg).map(kernels::sum).collect();
                Reg::Secret(AuthVec::new(values, macs))
            }
            Op::Gather(a, idx) => Reg::Secret(self.secret(*a)?.gather(idx)),
            Op::Concat(parts) => {
                let mut out = AuthVec::default();
                for p in parts {
                    out.extend_from(self.secret(*p)?);
                }
                Reg::Secret(out)
            }
            Op::BitCompose { src, blocks, shift } => {
                let v = self.secret(*src)?;
                let n = v.len() / (*blocks as usize).max(1);
                let mut out = AuthVec::zeros(n);
                for i in 0..*blocks as usize {
                    let w = F127::pow2(shift + i as u32);
                    kernels::mul_add_assign(&mut out.values, w, &v.values[i * n..(i + 1) * n]);
                    kernels::mul_add_assign(&mut out.macs, w, &v.macs[i * n..(i + 1) * n]);
                }
                Reg::Secret(out)
            }
            Op::RandomBits(n) => Reg::Secret(self.pool.take_bits(*n as usize)),
            Op::RandomValues(n) => Reg::Secret(self.pool.take_randoms(*n as usize)),
            Op::PubBits { src, bits } => {
                let p = self.public(*src)?;
                let mut out = Vec::with_capacity(p.len() * *bits as usize);
                for j in 0..*bits {
                    out.extend(
                        p.iter()
                            .map(|v| F127::from_u64(((v.value() >> j) & 1) as u64)),
                    );
                }
                Reg::Public(Opened::new(out, 0))
            }
            Op::PubMod2m { src, m } => {
                let mask = (1u128 << m) - 1;
                let out = self
                    .public(*src)?
                    .iter()
                    .map(|v| F127::new(v.value() & mask))
                    .collect();
                Reg::Public(Opened::new(out, 0))
            }
            Op::PubAffine { src, a, b } => {
                let out = self
                    .public(*src)?
                    .iter()
                    .map(|v| v.mul(*a).add(*b))
                    .collect();
                Reg::Public(Opened::new(out, 0))
            }
            Op::PubKappaPowers { kappa } => {
                let len = self.program.clients().map(|c| c.len).unwrap_or(0) as usize;
                let mut out = Vec::new();
                for &kc in self.public(*kappa)? {
                    let mut p = kc;
                    for _ in 0..len {
                        out.push(p);
                        p = p.mul(kc);
                    }
                }
                Reg::Public(Opened::new(out, 0))
            }
            _ => return Err(AbortReason::Internal),
        };
        self.regs[k as usize] = value;
        Ok(())
    }

    /// First half of an interactive op: appends this helper's elements.
    fn begin_op(
        &mut self,
        k: u32,
        out: &mut Vec<F127>,
        blobs: &mut Vec<[u8; 32]>,
    ) -> Result<(), AbortReason> {
        let op = self
            .program
            .ops
            .get(k as usize)
            .cloned()
            .ok_or(AbortReason::Internal)?;
        let pending = match op {
            Op::Mul(a, b) => {
                let n = self.secret(a)?.len();
                let at = self.pool.take_triples(n);
                let (x, y) = (self.secret(a)?, self.secret(b)?);
                let t = &self.pool.triples;
                let ta = t[0].slice(at, n).ok_or(AbortReason::Internal)?;
                let tb = t[1].slice(at, n).ok_or(AbortReason::Internal)?;
                let mut eps = vec![F127::ZERO; n];
                let mut delta = vec![F127::ZERO; n];
                kernels::sub_into(&mut eps, &x.values, ta.0);
                kernels::sub_into(&mut delta, &y.values, tb.0);
                let (mut mac_eps, mut mac_delta) = (Vec::new(), Vec::new());
                if self.macs {
                    mac_eps = vec![F127::ZERO; n];
                    mac_delta = vec![F127::ZERO; n];
                    kernels::sub_into(&mut mac_eps, &x.macs, ta.1);
                    kernels::sub_into(&mut mac_delta, &y.macs, tb.1);
                }
                out.extend_from_slice(&eps);
                out.extend_from_slice(&delta);
                Pending::Mul {
                    at,
                    eps,
                    delta,
                    mac_eps,
                    mac_delta,
                }
            }
            Op::Open(a) | Op::Output(a, _) => {
                let v = self.secret(a)?;
                out.extend_from_slice(&v.values);
                let output = if let Op::Output(_, id) = op {
                    Some(id)
                } else {
                    None
                };
                Pending::Open {
                    mine: v.values.clone(),
                    macs: v.macs.clone(),
                    output,
                }
            }
            Op::HelperInput { owner, slot, len } => {
                let owner = HelperIndex::new(usize::from(owner)).ok_or(AbortReason::Internal)?;
                let mine = owner == self.me;
                let (mask, clear) = self.pool.take_masks(owner, len as usize, mine);
                let mut eps = Vec::new();
                if mine {
                    let x = self.helper_inputs.get(&slot).ok_or(AbortReason::Internal)?;
                    eps = x.iter().zip(&clear).map(|(x, m)| x.sub(*m)).collect();
                    out.extend_from_slice(&eps);
                }
                Pending::Input { owner, mask, eps }
            }
            Op::ClientShares { owner } | Op::ClientTau { owner } => {
                let owner = HelperIndex::new(usize::from(owner)).ok_or(AbortReason::Internal)?;
                let mine = owner == self.me;
                let len = self.program.lens.get(k as usize).copied().unwrap_or(0) as usize;
                let (mask, clear) = self.pool.take_masks(owner, len, mine);
                let mut eps = Vec::new();
                if mine {
                    let x: &[F127] = if matches!(op, Op::ClientShares { .. }) {
                        &self.client_shares
                    } else {
                        &self.taus
                    };
                    eps = x.iter().zip(&clear).map(|(x, m)| x.sub(*m)).collect();
                    out.extend_from_slice(&eps);
                }
                Pending::Input { owner, mask, eps }
            }
            Op::RevealKappa { .. } => {
                out.extend_from_slice(&self.kappas);
                blobs.push(self.kappa_salt);
                Pending::Kappa
            }
            _ => return Err(AbortReason::Internal),
        };
        self.pending.push((k, pending));
        Ok(())
    }

    /// Second half: `next` and `prev` are the peers' elements for this op.
    fn finish_op(
        &mut self,
        k: u32,
        p: Pending,
        next: &[F127],
        prev: &[F127],
        blobs: [Option<&[u8; 32]>; 2],
    ) -> Result<(), AbortReason> {
        let first = self.first();
        let value = match p {
            Pending::Mul {
                at,
                mut eps,
                mut delta,
                mac_eps,
                mac_delta,
            } => {
                let n = eps.len();
                let (ne, nd) = next.split_at(n.min(next.len()));
                let (pe, pd) = prev.split_at(n.min(prev.len()));
                kernels::add_assign(&mut eps, ne);
                kernels::add_assign(&mut eps, pe);
                kernels::add_assign(&mut delta, nd);
                kernels::add_assign(&mut delta, pd);
                if self.macs {
                    self.log.record(&eps, &mac_eps);
                    self.log.record(&delta, &mac_delta);
                }
                let t = &self.pool.triples;
                let (Some(a), Some(b), Some(c)) =
                    (t[0].slice(at, n), t[1].slice(at, n), t[2].slice(at, n))
                else {
                    return Err(AbortReason::Internal);
                };
                let alpha = self.key.0;
                // z = c + ε·b + δ·a + ε·δ; helper 0 adds the public ε·δ to its
                // value share, every helper α_i·ε·δ to its MAC share. Helper
                // index and MAC mode are public, so branching on them is fine.
                let mut values = Vec::with_capacity(n);
                let mut macs = Vec::with_capacity(n);
                for i in 0..n {
                    let (e, d) = (eps[i], delta[i]);
                    let ed = e.mul(d);
                    let v = c.0[i].add(e.mul(b.0[i])).add(d.mul(a.0[i]));
                    values.push(if first { v.add(ed) } else { v });
                    if self.macs {
                        macs.push(
                            c.1[i]
                                .add(e.mul(b.1[i]))
                                .add(d.mul(a.1[i]))
                                .add(alpha.mul(ed)),
                        );
                    }
                }
                if !self.macs {
                    macs = vec![F127::ZERO; n];
                }
                Reg::Secret(AuthVec::new(values, macs))
            }
            Pending::Open {
                mut mine,
                macs,
                output,
            } => {
                kernels::add_assign(&mut mine, next);
                kernels::add_assign(&mut mine, prev);
                let seq = if self.macs {
                    self.log.record(&mine, &macs)
                } else {
                    0
                };
                let opened = Opened::new(mine, seq);
                match output {
                    Some(id) => {
                        self.outputs.push((id, opened));
                        Reg::Empty
                    }
                    None => Reg::Public(opened),
                }
            }
            Pending::Input {
                owner,
                mut mask,
                eps,
            } => {
                let eps: Vec<F127> = if owner == self.me {
                    eps
                } else if owner == self.me.next() {
                    next.to_vec()
                } else {
                    prev.to_vec()
                };
                self.log.record_broadcast(&eps);
                mask.add_public(&eps, first, &self.key);
                Reg::Secret(mask)
            }
            Pending::Kappa => {
                let mut kappa: Vec<F127> = self.kappas.to_vec();
                for (peer, elems, salt) in [
                    (self.me.next(), next, blobs[0]),
                    (self.me.prev(), prev, blobs[1]),
                ] {
                    let mut bytes = Vec::new();
                    kernels::encode_into(elems, &mut bytes);
                    bytes.extend_from_slice(salt.ok_or(AbortReason::Internal)?);
                    if commit("client kappa", &self.session, 0, peer, &bytes)
                        != self.peer_kappa_commits[peer.index()]
                    {
                        return Err(AbortReason::CommitmentMismatch { peer });
                    }
                    kernels::add_assign(&mut kappa, elems);
                }
                self.log.record_broadcast(&kappa);
                Reg::Public(Opened::new(kappa, 0))
            }
        };
        self.regs[k as usize] = value;
        Ok(())
    }

    fn plan(&self, round: u32) -> Result<&RoundPlan, AbortReason> {
        self.program
            .rounds
            .get(round as usize)
            .ok_or(AbortReason::Internal)
    }

    fn conclude(
        &mut self,
        check: u32,
        from_next: &Body,
        from_prev: &Body,
    ) -> Result<CheckPassed, AbortReason> {
        let peer = |h: HelperIndex, b: &Body| PeerCheck {
            peer: h,
            sigma_commitment: self.peer_sigma[h.index()],
            transcript: self.peer_transcript[h.index()],
            sigma: b.elems.first().copied().unwrap_or(F127::ZERO),
            salt: b.blobs.first().copied().unwrap_or_default(),
        };
        let peers = [
            peer(self.me.next(), from_next),
            peer(self.me.prev(), from_prev),
        ];
        verify::conclude(
            &mut self.log,
            &self.session,
            check,
            self.sigma,
            self.my_transcript,
            peers,
        )
    }
}

impl Rounds for Engine {
    type Outcome = Outcome;

    fn round_count(&self) -> u32 {
        self.program.rounds.len() as u32
    }

    fn expect(&self, round: u32, from: HelperIndex) -> Expect {
        let e = |kind, elems, blobs| Expect { kind, elems, blobs };
        match self.program.rounds.get(round as usize) {
            Some(RoundPlan::Hello) => e(
                MsgKind::Hello,
                0,
                HELLO_FIXED + self.program.checks as usize,
            ),
            Some(RoundPlan::Stage { ops, .. }) => e(
                MsgKind::Open,
                self.program.stage_elems(ops, from.index()),
                self.program.stage_blobs(ops),
            ),
            Some(RoundPlan::CoinReveal { .. }) => e(MsgKind::CoinReveal, 0, 1),
            Some(RoundPlan::SigmaCommit { .. }) => e(MsgKind::CheckCommit, 0, 2),
            Some(RoundPlan::SigmaOpen { .. }) => e(MsgKind::CheckOpen, 1, 1),
            // No such round: nothing can match.
            None => e(MsgKind::Confirm, usize::MAX, usize::MAX),
        }
    }

    fn begin(&mut self, round: u32) -> Result<Outgoing, AbortReason> {
        let plan = self.plan(round)?.clone();
        Ok(match plan {
            RoundPlan::Hello => {
                let mut blobs = vec![
                    self.program_hash,
                    self.material_binding,
                    self.epoch_binding,
                    self.kappa_commit,
                ];
                for (c, seed) in self.coin_seeds.iter().enumerate() {
                    blobs.push(self.coin_commitment(c as u32, self.me, seed));
                }
                Outgoing::same(Body::new(MsgKind::Hello, Vec::new(), blobs))
            }
            RoundPlan::Stage { locals, ops } => {
                for k in locals {
                    self.run_local(k)?;
                    self.free_after(k);
                }
                let mut out = Vec::new();
                let mut blobs = Vec::new();
                for k in ops {
                    self.begin_op(k, &mut out, &mut blobs)?;
                    self.free_after(k);
                }
                Outgoing::same(Body::new(MsgKind::Open, out, blobs))
            }
            RoundPlan::CoinReveal { check, locals } => {
                for k in locals {
                    self.run_local(k)?;
                    self.free_after(k);
                }
                let seed = self
                    .coin_seeds
                    .get(check as usize)
                    .copied()
                    .ok_or(AbortReason::Internal)?;
                Outgoing::same(Body::new(MsgKind::CoinReveal, Vec::new(), vec![seed]))
            }
            RoundPlan::SigmaCommit { check } => {
                let coins = self.coins.take().ok_or(AbortReason::Internal)?;
                self.sigma = if self.macs {
                    self.log.sigma(&coins, &self.key)
                } else {
                    F127::ZERO
                };
                self.salt = self.prg.bytes32();
                self.my_transcript = self.log.transcript_hash();
                let c =
                    verify::sigma_commitment(&self.session, check, self.me, self.sigma, &self.salt);
                Outgoing::same(Body::new(
                    MsgKind::CheckCommit,
                    Vec::new(),
                    vec![c, self.my_transcript],
                ))
            }
            RoundPlan::SigmaOpen { .. } => Outgoing::same(Body::new(
                MsgKind::CheckOpen,
                vec![self.sigma],
                vec![self.salt],
            )),
        })
    }

    fn finish(
        &mut self,
        round: u32,
        from_next: Body,
        from_prev: Body,
    ) -> Result<Progress<Outcome>, AbortReason> {
        let plan = self.plan(round)?.clone();
        let (next, prev) = (self.me.next(), self.me.prev());
        match plan {
            RoundPlan::Hello => {
                self.peer_coin_commits = vec![[[0; 32]; 3]; self.program.checks as usize];
                for (peer, body) in [(next, &from_next), (prev, &from_prev)] {
                    let b = &body.blobs;
                    if b.first() != Some(&self.program_hash) {
                        return Err(AbortReason::ProgramMismatch { peer });
                    }
                    if b.get(1) != Some(&self.material_binding) {
                        return Err(AbortReason::MaterialMismatch { peer });
                    }
                    if b.get(2) != Some(&self.epoch_binding) {
                        return Err(AbortReason::ParameterMismatch { peer });
                    }
                    self.peer_kappa_commits[peer.index()] = b.get(3).copied().unwrap_or_default();
                    for c in 0..self.program.checks as usize {
                        self.peer_coin_commits[c][peer.index()] =
                            b.get(HELLO_FIXED + c).copied().unwrap_or_default();
                    }
                }
            }
            RoundPlan::Stage { ops, .. } => {
                let pending = core::mem::take(&mut self.pending);
                let (mut off_n, mut off_p) = (0usize, 0usize);
                let mut blob_i = 0usize;
                for (k, p) in pending {
                    let nn = self.program.op_elems(k, next.index());
                    let np = self.program.op_elems(k, prev.index());
                    let en = from_next
                        .elems
                        .get(off_n..off_n + nn)
                        .ok_or(AbortReason::Internal)?;
                    let ep = from_prev
                        .elems
                        .get(off_p..off_p + np)
                        .ok_or(AbortReason::Internal)?;
                    off_n += nn;
                    off_p += np;
                    let blobs = if matches!(p, Pending::Kappa) {
                        let b = [from_next.blobs.get(blob_i), from_prev.blobs.get(blob_i)];
                        blob_i += 1;
                        b
                    } else {
                        [None, None]
                    };
                    self.finish_op(k, p, en, ep, blobs)?;
                }
                let _ = ops;
            }
            RoundPlan::CoinReveal { check, .. } => {
                let mut seeds = [[0u8; 32]; 3];
                seeds[self.me.index()] = self
                    .coin_seeds
                    .get(check as usize)
                    .copied()
                    .ok_or(AbortReason::Internal)?;
                for (peer, body) in [(next, &from_next), (prev, &from_prev)] {
                    let seed = body.blobs.first().copied().unwrap_or_default();
                    let want = self
                        .peer_coin_commits
                        .get(check as usize)
                        .map(|c| c[peer.index()]);
                    if Some(self.coin_commitment(check, peer, &seed)) != want {
                        return Err(AbortReason::CommitmentMismatch { peer });
                    }
                    seeds[peer.index()] = seed;
                }
                self.coins = Some(joint_coins(
                    "mac check",
                    &self.session,
                    check,
                    [&seeds[0], &seeds[1], &seeds[2]],
                ));
            }
            RoundPlan::SigmaCommit { .. } => {
                for (peer, body) in [(next, &from_next), (prev, &from_prev)] {
                    self.peer_sigma[peer.index()] = body.blobs.first().copied().unwrap_or_default();
                    self.peer_transcript[peer.index()] =
                        body.blobs.get(1).copied().unwrap_or_default();
                }
            }
            RoundPlan::SigmaOpen { check, gate } => {
                if !self.macs {
                    if round + 1 == self.round_count() {
                        return Ok(Progress::Done(Outcome::BaselineDone));
                    }
                    return Ok(Progress::Next);
                }
                let passed = self.conclude(check, &from_next, &from_prev)?;
                if let Some(g) = gate {
                    let z = match core::mem::replace(&mut self.regs[g as usize], Reg::Empty) {
                        Reg::Public(z) => z,
                        _ => return Err(AbortReason::Internal),
                    };
                    let z = passed.verify(z).map_err(|_| AbortReason::Internal)?;
                    let excluded: Vec<u32> = z
                        .value()
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v != F127::ZERO)
                        .map(|(i, _)| i as u32)
                        .collect();
                    if !excluded.is_empty() {
                        return Ok(Progress::Done(Outcome::ClientsExcluded {
                            clients: excluded,
                        }));
                    }
                }
                if round + 1 == self.round_count() {
                    let mut outputs = Vec::new();
                    let mut pending = core::mem::take(&mut self.outputs);
                    pending.sort_by_key(|(id, _)| *id);
                    for (id, opened) in pending {
                        let v = passed.verify(opened).map_err(|_| AbortReason::Internal)?;
                        outputs.push(Output::new(id, v));
                    }
                    return Ok(Progress::Done(Outcome::Completed { outputs }));
                }
            }
        }
        Ok(Progress::Next)
    }
}
