//! Programs: vectorised operations on shared and public registers, built
//! with [`ProgramBuilder`], named and versioned, hashed, and scheduled into
//! the fewest communication rounds.
//!
//! **Registers** hold vectors. A [`Secret`] register holds authenticated
//! shares; a [`Public`] register holds an opened (not yet verified) value,
//! usable only for local computation (see [`crate::verify`]).
//!
//! **Scheduling.** Every operation is local (free) or interactive (one round:
//! Beaver multiplication, opening, input). An interactive operation runs in
//! the first round after all its inputs exist, and *all* interactive
//! operations of one round travel in one message per peer — so independent
//! products, comparisons and sorting-network layers of a program share their
//! rounds (ASAP list scheduling over the data-dependency graph; the program
//! is data-independent, so the schedule is fixed when the program is built).
//! A MAC check is a barrier: three rounds after which everything opened
//! before is verified. Every program ends with one.
//!
//! **Identity.** [`Program::hash`] is BLAKE3 over the name, version and a
//! canonical encoding of every operation; the node binds it in the signed
//! round descriptor, and helpers compare it in the session hello.
//!
//! The higher-level operations (comparison, equality, bit decomposition,
//! truncation, sorting) are in [`crate::ops`], written on top of this builder.

use crate::field::F127;
use crate::material::Counts;

/// A shared vector register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secret {
    pub(crate) reg: u32,
    pub(crate) len: u32,
}

/// A public (opened, unverified) vector register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Public {
    pub(crate) reg: u32,
    pub(crate) len: u32,
}

impl Secret {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Public {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a program could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// Two operands of an element-wise operation differ in length.
    #[error("operand lengths differ: {0} vs {1}")]
    LengthMismatch(usize, usize),
    /// A gather index is out of range.
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// Index.
        index: u32,
        /// Register length.
        len: u32,
    },
    /// A parameter is outside what the protocols support.
    #[error("unsupported parameter: {0}")]
    Unsupported(&'static str),
    /// Client inputs may be declared once per program.
    #[error("client inputs were already declared")]
    ClientInputsTwice,
    /// A vector longer than the engine supports (2^28 elements).
    #[error("vector too long")]
    TooLong,
}

/// The data sizes and statistical parameter the comparison protocols use.
pub const KAPPA: u32 = 40;
/// Largest vector length of one register.
pub const MAX_LEN: u32 = 1 << 28;

/// Client inputs a program declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSpec {
    /// Number of clients.
    pub clients: u32,
    /// Elements per client.
    pub len: u32,
    /// Ring bits of the upload (32 or 64).
    pub ring_bits: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add(u32, u32),
    Sub(u32, u32),
    AddPublic(u32, u32),
    SubFromPublic(u32, u32),
    MulPublic(u32, u32),
    AddConst(u32, F127),
    MulConst(u32, F127),
    SegmentSum(u32, u32),
    Gather(u32, Vec<u32>),
    Concat(Vec<u32>),
    BitCompose { src: u32, blocks: u32, shift: u32 },
    RandomBits(u32),
    RandomValues(u32),
    Mul(u32, u32),
    Open(u32),
    Output(u32, u32),
    HelperInput { owner: u8, slot: u32, len: u32 },
    ClientShares { owner: u8 },
    ClientTau { owner: u8 },
    RevealKappa { after: u32 },
    PubBits { src: u32, bits: u32 },
    PubMod2m { src: u32, m: u32 },
    PubAffine { src: u32, a: F127, b: F127 },
    PubKappaPowers { kappa: u32 },
    Check { gate: Option<u32> },
}

impl Op {
    fn inputs(&self) -> Vec<u32> {
        use Op::*;
        match self {
            Add(a, b)
            | Sub(a, b)
            | AddPublic(a, b)
            | SubFromPublic(a, b)
            | MulPublic(a, b)
            | Mul(a, b) => vec![*a, *b],
            AddConst(a, _)
            | MulConst(a, _)
            | SegmentSum(a, _)
            | Gather(a, _)
            | Open(a)
            | Output(a, _) => vec![*a],
            BitCompose { src, .. }
            | PubBits { src, .. }
            | PubMod2m { src, .. }
            | PubAffine { src, .. } => vec![*src],
            Concat(v) => v.clone(),
            RevealKappa { after } => vec![*after],
            PubKappaPowers { kappa } => vec![*kappa],
            Check { gate } => gate.iter().copied().collect(),
            RandomBits(_)
            | RandomValues(_)
            | HelperInput { .. }
            | ClientShares { .. }
            | ClientTau { .. } => Vec::new(),
        }
    }

    pub(crate) fn is_interactive(&self) -> bool {
        matches!(
            self,
            Op::Mul(..)
                | Op::Open(_)
                | Op::Output(..)
                | Op::HelperInput { .. }
                | Op::ClientShares { .. }
                | Op::ClientTau { .. }
                | Op::RevealKappa { .. }
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        use Op::*;
        let mut w = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        let (tag, words, field): (u8, Vec<u32>, Vec<F127>) = match self {
            Add(a, b) => (1, vec![*a, *b], vec![]),
            Sub(a, b) => (2, vec![*a, *b], vec![]),
            AddPublic(a, b) => (3, vec![*a, *b], vec![]),
            SubFromPublic(a, b) => (4, vec![*a, *b], vec![]),
            MulPublic(a, b) => (5, vec![*a, *b], vec![]),
            AddConst(a, c) => (6, vec![*a], vec![*c]),
            MulConst(a, c) => (7, vec![*a], vec![*c]),
            SegmentSum(a, s) => (8, vec![*a, *s], vec![]),
            Gather(a, idx) => (
                9,
                [vec![*a, idx.len() as u32], idx.clone()].concat(),
                vec![],
            ),
            Concat(v) => (10, [vec![v.len() as u32], v.clone()].concat(), vec![]),
            BitCompose { src, blocks, shift } => (11, vec![*src, *blocks, *shift], vec![]),
            RandomBits(n) => (12, vec![*n], vec![]),
            RandomValues(n) => (13, vec![*n], vec![]),
            Mul(a, b) => (14, vec![*a, *b], vec![]),
            Open(a) => (15, vec![*a], vec![]),
            Output(a, id) => (16, vec![*a, *id], vec![]),
            HelperInput { owner, slot, len } => (17, vec![u32::from(*owner), *slot, *len], vec![]),
            ClientShares { owner } => (18, vec![u32::from(*owner)], vec![]),
            ClientTau { owner } => (19, vec![u32::from(*owner)], vec![]),
            RevealKappa { after } => (20, vec![*after], vec![]),
            PubBits { src, bits } => (21, vec![*src, *bits], vec![]),
            PubMod2m { src, m } => (22, vec![*src, *m], vec![]),
            PubAffine { src, a, b } => (23, vec![*src], vec![*a, *b]),
            PubKappaPowers { kappa } => (24, vec![*kappa], vec![]),
            Check { gate } => (25, gate.iter().copied().collect(), vec![]),
        };
        w(u32::from(tag));
        w(words.len() as u32);
        for x in words {
            w(x);
        }
        for f in field {
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
}

/// One round of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RoundPlan {
    Hello,
    /// Run `locals`, then the interactive ops' first halves; exchange; second halves.
    Stage {
        locals: Vec<u32>,
        ops: Vec<u32>,
    },
    CoinReveal {
        check: u32,
        locals: Vec<u32>,
    },
    SigmaCommit {
        check: u32,
    },
    SigmaOpen {
        check: u32,
        gate: Option<u32>,
    },
}

/// A built, scheduled, hashed program.
#[derive(Clone, Debug)]
pub struct Program {
    name: String,
    version: u32,
    pub(crate) ops: Vec<Op>,
    pub(crate) lens: Vec<u32>,
    pub(crate) rounds: Vec<RoundPlan>,
    pub(crate) checks: u32,
    pub(crate) clients: Option<ClientSpec>,
    /// Registers whose last reader is op k: free them once op k has read
    /// its inputs (after a local op runs, after an interactive op begins).
    pub(crate) free_after: Vec<Vec<u32>>,
    needs: Counts,
    hash: [u8; 32],
}

impl Program {
    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// BLAKE3 of name, version and the operations (bind this in the descriptor).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
    /// Preprocessed material one run consumes.
    pub fn needs(&self) -> Counts {
        self.needs
    }
    /// Communication rounds of one run (hello and MAC checks included).
    pub fn rounds(&self) -> usize {
        self.rounds.len()
    }
    /// Client inputs declared, if any.
    pub fn clients(&self) -> Option<ClientSpec> {
        self.clients
    }
    /// Largest message this program's session can send or accept, in bytes
    /// (the shell sets its transport limit from this).
    pub fn max_message_bytes(&self) -> usize {
        let mut max = 0usize;
        for r in &self.rounds {
            if let RoundPlan::Stage { ops, .. } = r {
                let per = (0..3).map(|h| self.stage_elems(ops, h)).max().unwrap_or(0);
                max = max.max(per * 16 + 32);
            }
        }
        max.max(32 * (5 + self.checks as usize)) + crate::wire::HEADER_BYTES
    }

    /// Elements helper `sender` sends (to each peer) in a stage.
    pub(crate) fn stage_elems(&self, ops: &[u32], sender: usize) -> usize {
        ops.iter().map(|&k| self.op_elems(k, sender)).sum()
    }

    pub(crate) fn op_elems(&self, k: u32, sender: usize) -> usize {
        let len = |r: u32| self.lens.get(r as usize).copied().unwrap_or(0) as usize;
        let c = self.clients.unwrap_or(ClientSpec {
            clients: 0,
            len: 0,
            ring_bits: 0,
        });
        match self.ops.get(k as usize) {
            Some(Op::Mul(a, _)) => 2 * len(*a),
            Some(Op::Open(a)) | Some(Op::Output(a, _)) => len(*a),
            Some(Op::HelperInput { owner, len: n, .. }) if usize::from(*owner) == sender => {
                *n as usize
            }
            Some(Op::ClientShares { owner }) if usize::from(*owner) == sender => {
                (c.clients * c.len) as usize
            }
            Some(Op::ClientTau { owner }) if usize::from(*owner) == sender => c.clients as usize,
            Some(Op::RevealKappa { .. }) => c.clients as usize,
            _ => 0,
        }
    }

    pub(crate) fn stage_blobs(&self, ops: &[u32]) -> usize {
        ops.iter()
            .filter(|&&k| matches!(self.ops.get(k as usize), Some(Op::RevealKappa { .. })))
            .count()
    }
}

/// Builds a program from vectorised operations.
#[derive(Debug)]
pub struct ProgramBuilder {
    name: String,
    version: u32,
    ops: Vec<Op>,
    lens: Vec<u32>,
    clients: Option<ClientSpec>,
    outputs: u32,
    error: Option<ProgramError>,
}

impl ProgramBuilder {
    /// A new program `name`, `version`.
    pub fn new(name: &str, version: u32) -> ProgramBuilder {
        ProgramBuilder {
            name: name.to_owned(),
            version,
            ops: Vec::new(),
            lens: Vec::new(),
            clients: None,
            outputs: 0,
            error: None,
        }
    }

    pub(crate) fn record_error(&mut self, e: ProgramError) {
        self.fail(e);
    }

    fn fail(&mut self, e: ProgramError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn push(&mut self, op: Op, len: u32) -> u32 {
        if len > MAX_LEN {
            self.fail(ProgramError::TooLong);
        }
        self.ops.push(op);
        self.lens.push(len);
        (self.ops.len() - 1) as u32
    }

    fn secret(&mut self, op: Op, len: u32) -> Secret {
        Secret {
            reg: self.push(op, len),
            len,
        }
    }

    fn public(&mut self, op: Op, len: u32) -> Public {
        Public {
            reg: self.push(op, len),
            len,
        }
    }

    fn same(&mut self, a: u32, b: u32) {
        if a != b {
            self.fail(ProgramError::LengthMismatch(a as usize, b as usize));
        }
    }

    /// A vector input by helper `owner` from its input slot `slot`.
    pub fn helper_input(
        &mut self,
        owner: crate::machine::HelperIndex,
        slot: u32,
        len: usize,
    ) -> Secret {
        self.secret(
            Op::HelperInput {
                owner: owner.index() as u8,
                slot,
                len: len as u32,
            },
            len as u32,
        )
    }

    /// `n` random shared bits.
    pub fn random_bits(&mut self, n: usize) -> Secret {
        self.secret(Op::RandomBits(n as u32), n as u32)
    }

    /// `n` random shared field elements.
    pub fn random_values(&mut self, n: usize) -> Secret {
        self.secret(Op::RandomValues(n as u32), n as u32)
    }

    /// `a + b`.
    pub fn add(&mut self, a: Secret, b: Secret) -> Secret {
        self.same(a.len, b.len);
        self.secret(Op::Add(a.reg, b.reg), a.len)
    }

    /// `a − b`.
    pub fn sub(&mut self, a: Secret, b: Secret) -> Secret {
        self.same(a.len, b.len);
        self.secret(Op::Sub(a.reg, b.reg), a.len)
    }

    /// `a + p` for public `p`.
    pub fn add_public(&mut self, a: Secret, p: Public) -> Secret {
        self.same(a.len, p.len);
        self.secret(Op::AddPublic(a.reg, p.reg), a.len)
    }

    /// `p − a` for public `p`.
    pub fn public_sub(&mut self, p: Public, a: Secret) -> Secret {
        self.same(a.len, p.len);
        self.secret(Op::SubFromPublic(p.reg, a.reg), a.len)
    }

    /// `a ⊙ p` for public `p`.
    pub fn mul_public(&mut self, a: Secret, p: Public) -> Secret {
        self.same(a.len, p.len);
        self.secret(Op::MulPublic(a.reg, p.reg), a.len)
    }

    /// `a + c`.
    pub fn add_const(&mut self, a: Secret, c: F127) -> Secret {
        self.secret(Op::AddConst(a.reg, c), a.len)
    }

    /// `c · a` (scalar multiply).
    pub fn mul_const(&mut self, a: Secret, c: F127) -> Secret {
        self.secret(Op::MulConst(a.reg, c), a.len)
    }

    /// `a ⊙ b`: one Beaver multiplication per element, one round.
    pub fn mul(&mut self, a: Secret, b: Secret) -> Secret {
        self.same(a.len, b.len);
        self.secret(Op::Mul(a.reg, b.reg), a.len)
    }

    /// `Σ a_i b_i` (a length-1 vector).
    pub fn inner_product(&mut self, a: Secret, b: Secret) -> Secret {
        let p = self.mul(a, b);
        self.sum(p)
    }

    /// `Σ a_i` (a length-1 vector).
    pub fn sum(&mut self, a: Secret) -> Secret {
        self.segment_sum(a, a.len as usize)
    }

    /// Sums of consecutive segments of `seg` elements.
    pub fn segment_sum(&mut self, a: Secret, seg: usize) -> Secret {
        if seg == 0 || !(a.len as usize).is_multiple_of(seg) {
            self.fail(ProgramError::Unsupported(
                "segment length must divide the vector length",
            ));
            return self.secret(Op::SegmentSum(a.reg, 1), a.len);
        }
        self.secret(Op::SegmentSum(a.reg, seg as u32), a.len / seg as u32)
    }

    /// Elements of `a` at `idx`.
    pub fn gather(&mut self, a: Secret, idx: &[u32]) -> Secret {
        if let Some(&bad) = idx.iter().find(|&&i| i >= a.len) {
            self.fail(ProgramError::IndexOutOfRange {
                index: bad,
                len: a.len,
            });
        }
        self.secret(Op::Gather(a.reg, idx.to_vec()), idx.len() as u32)
    }

    /// `a[start..start+len]`.
    pub fn slice(&mut self, a: Secret, start: usize, len: usize) -> Secret {
        let idx: Vec<u32> = (start as u32..(start + len) as u32).collect();
        self.gather(a, &idx)
    }

    /// Concatenation.
    pub fn concat(&mut self, parts: &[Secret]) -> Secret {
        let len = parts.iter().map(|p| p.len).sum();
        self.secret(Op::Concat(parts.iter().map(|p| p.reg).collect()), len)
    }

    /// Σ_{i<blocks} 2^(shift+i) · a[i·n .. (i+1)·n] for n = len/blocks.
    pub(crate) fn bit_compose(&mut self, a: Secret, blocks: u32, shift: u32) -> Secret {
        if blocks == 0 || !a.len.is_multiple_of(blocks) {
            self.fail(ProgramError::Unsupported("bit blocks"));
            return a;
        }
        self.secret(
            Op::BitCompose {
                src: a.reg,
                blocks,
                shift,
            },
            a.len / blocks,
        )
    }

    /// Opens `a` for local use inside the program (not an output).
    pub fn open(&mut self, a: Secret) -> Public {
        self.public(Op::Open(a.reg), a.len)
    }

    /// Marks `a` as output `id`: opened, and released only after the
    /// program's final MAC check covered it. Returns the output id.
    pub fn output(&mut self, a: Secret) -> u32 {
        let id = self.outputs;
        self.outputs += 1;
        self.push(Op::Output(a.reg, id), 0);
        id
    }

    /// Bits `0..bits` of each public element (bit-major: all bit 0s, then all bit 1s, …).
    pub(crate) fn public_bits(&mut self, p: Public, bits: u32) -> Public {
        self.public(Op::PubBits { src: p.reg, bits }, p.len * bits)
    }

    /// Each public element mod 2^m.
    pub(crate) fn public_mod2m(&mut self, p: Public, m: u32) -> Public {
        self.public(Op::PubMod2m { src: p.reg, m }, p.len)
    }

    /// `a·p + b` element-wise on a public vector.
    pub(crate) fn public_affine(&mut self, p: Public, a: F127, b: F127) -> Public {
        self.public(Op::PubAffine { src: p.reg, a, b }, p.len)
    }

    /// A MAC check barrier here (everything opened so far is verified
    /// before any later operation runs).
    pub fn check(&mut self) {
        self.push(Op::Check { gate: None }, 0);
    }

    pub(crate) fn declare_clients(&mut self, spec: ClientSpec) -> bool {
        if self.clients.is_some() {
            self.fail(ProgramError::ClientInputsTwice);
            return false;
        }
        if spec.ring_bits != 32 && spec.ring_bits != 64 {
            self.fail(ProgramError::Unsupported(
                "client ring must be Z_2^32 or Z_2^64",
            ));
            return false;
        }
        self.clients = Some(spec);
        true
    }

    pub(crate) fn client_shares(&mut self, owner: u8, len: u32) -> Secret {
        self.secret(Op::ClientShares { owner }, len)
    }

    pub(crate) fn client_tau(&mut self, owner: u8, clients: u32) -> Secret {
        self.secret(Op::ClientTau { owner }, clients)
    }

    pub(crate) fn reveal_kappa(&mut self, after: Secret, clients: u32) -> Public {
        self.public(Op::RevealKappa { after: after.reg }, clients)
    }

    pub(crate) fn kappa_powers(&mut self, kappa: Public, len: u32) -> Public {
        self.public(Op::PubKappaPowers { kappa: kappa.reg }, kappa.len * len)
    }

    pub(crate) fn check_gate(&mut self, gate: Public) {
        self.push(
            Op::Check {
                gate: Some(gate.reg),
            },
            0,
        );
    }

    /// Checks, schedules and hashes the program.
    pub fn build(self) -> Result<Program, ProgramError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let ProgramBuilder {
            name,
            version,
            ops,
            lens,
            clients,
            ..
        } = self;
        // Material needs.
        let mut needs = Counts::default();
        let cs = clients.unwrap_or(ClientSpec {
            clients: 0,
            len: 0,
            ring_bits: 0,
        });
        for op in &ops {
            match op {
                Op::Mul(a, _) => needs.triples += lens[*a as usize] as usize,
                Op::RandomBits(n) => needs.bits += *n as usize,
                Op::RandomValues(n) => needs.randoms += *n as usize,
                Op::HelperInput { owner, len, .. } => {
                    needs.masks[usize::from(*owner)] += *len as usize
                }
                Op::ClientShares { owner } => {
                    needs.masks[usize::from(*owner)] += (cs.clients * cs.len) as usize
                }
                Op::ClientTau { owner } => needs.masks[usize::from(*owner)] += cs.clients as usize,
                _ => {}
            }
        }
        // ASAP schedule with check barriers.
        let mut ready = vec![0u32; ops.len()];
        let mut stage_of = vec![0u32; ops.len()];
        let mut floor = 0u32;
        let mut frontier = 0u32;
        let mut check_at: Vec<(u32, u32)> = Vec::new(); // (stage, op index)
        for (k, op) in ops.iter().enumerate() {
            let inputs_ready = op
                .inputs()
                .iter()
                .map(|&r| ready[r as usize])
                .max()
                .unwrap_or(0);
            if let Op::Check { .. } = op {
                let s = frontier.max(floor).max(inputs_ready);
                check_at.push((s, k as u32));
                floor = s;
                stage_of[k] = s;
                ready[k] = s;
                continue;
            }
            let s = inputs_ready.max(floor);
            stage_of[k] = s;
            ready[k] = if op.is_interactive() { s + 1 } else { s };
            frontier = frontier.max(ready[k]);
        }
        let max_stage = stage_of.iter().copied().max().unwrap_or(0);
        let mut rounds = vec![RoundPlan::Hello];
        let mut pending: Vec<u32> = Vec::new();
        let mut checks = 0u32;
        for s in 0..=max_stage + 1 {
            for &(cs_stage, k) in &check_at {
                if cs_stage == s {
                    let gate = match &ops[k as usize] {
                        Op::Check { gate } => *gate,
                        _ => None,
                    };
                    rounds.push(RoundPlan::CoinReveal {
                        check: checks,
                        locals: core::mem::take(&mut pending),
                    });
                    rounds.push(RoundPlan::SigmaCommit { check: checks });
                    rounds.push(RoundPlan::SigmaOpen {
                        check: checks,
                        gate,
                    });
                    checks += 1;
                }
            }
            let mut inter = Vec::new();
            for (k, op) in ops.iter().enumerate() {
                if stage_of[k] != s || matches!(op, Op::Check { .. }) {
                    continue;
                }
                if op.is_interactive() {
                    inter.push(k as u32);
                } else {
                    pending.push(k as u32);
                }
            }
            if !inter.is_empty() {
                rounds.push(RoundPlan::Stage {
                    locals: core::mem::take(&mut pending),
                    ops: inter,
                });
            }
        }
        rounds.push(RoundPlan::CoinReveal {
            check: checks,
            locals: pending,
        });
        rounds.push(RoundPlan::SigmaCommit { check: checks });
        rounds.push(RoundPlan::SigmaOpen {
            check: checks,
            gate: None,
        });
        checks += 1;
        // Last reader of every register, in execution order.
        let mut last_reader: Vec<Option<u32>> = vec![None; ops.len()];
        for r in &rounds {
            let order: Vec<u32> = match r {
                RoundPlan::Stage { locals, ops } => locals.iter().chain(ops).copied().collect(),
                RoundPlan::CoinReveal { locals, .. } => locals.clone(),
                _ => Vec::new(),
            };
            for k in order {
                for input in ops[k as usize].inputs() {
                    last_reader[input as usize] = Some(k);
                }
            }
            // A gate register is taken by the check itself; never free it early.
            if let RoundPlan::SigmaOpen { gate: Some(g), .. } = r {
                last_reader[*g as usize] = None;
            }
        }
        let mut free_after = vec![Vec::new(); ops.len()];
        for (reg, reader) in last_reader.iter().enumerate() {
            if let Some(k) = reader {
                free_after[*k as usize].push(reg as u32);
            }
        }
        let mut h = blake3::Hasher::new_derive_key("sealroom 2026-12 mpc program v1");
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&version.to_le_bytes());
        let mut enc = Vec::new();
        if let Some(c) = clients {
            enc.extend_from_slice(
                &[c.clients, c.len, c.ring_bits]
                    .map(u32::to_le_bytes)
                    .concat(),
            );
        }
        for op in &ops {
            op.encode(&mut enc);
        }
        h.update(&enc);
        Ok(Program {
            name,
            version,
            ops,
            lens,
            rounds,
            checks,
            clients,
            free_after,
            needs,
            hash: *h.finalize().as_bytes(),
        })
    }
}
