//! Named tasks: what a round computes. The coordinator turns a task name into
//! a round's [`Task`] (length, ring, quantization); each client turns the
//! same name into its input vector through its [`InputSource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_core::{QuantSpec, RingKind};
use sealroom_mpc::program::{Program, ProgramBuilder};
use sealroom_protocol::coordinator::{RoundSummary, Task};
use sealroom_protocol::descriptor::EngineRef;
use sealroom_protocol::evidence::FederationKeys;
use sealroom_protocol::machine::SitOut;
use sealroom_protocol::{PartyId, VerifiedDescriptor, pb};

/// The built-in synthetic task: deterministic public test vectors, for
/// benchmarks and end-to-end tests (never private data).
pub const SYNTHETIC: &str = "synthetic";

/// The built-in synthetic engine task: the element-wise maximum of the
/// clients' synthetic vectors, computed by the MPC engine (an engine round
/// end to end, for tests and benchmarks; never private data).
pub const SYNTHETIC_MAX: &str = "synthetic-max";

/// The built-in synthetic validity task (issue #15): the sum of the
/// clients' synthetic vectors whose exact squared L2 norm is within
/// `len · (max_abs / 2)²` in quantized units — every honest synthetic
/// vector (elements within ±clip/2) is, a vector at the clip is not — and
/// each client's verdict, computed by the MPC engine
/// ([`sealroom_mpc::validity::norm_bounded_sum`]). Outputs: the `len`
/// sums, then one verdict per included client (1: within the bound).
pub const SYNTHETIC_BOUNDED: &str = "synthetic-bounded";

/// The built-in synthetic noised-sum task (issue #15): the sum of the
/// clients' synthetic vectors with binomial noise added inside the MPC
/// engine to every element ([`SyntheticNoised`]), for benchmarks and tests
/// of the noise's cost (never private data).
pub const SYNTHETIC_NOISED: &str = "synthetic-noised";

/// The bits of an engine round's upload ring (32 or 64).
pub fn upload_bits(descriptor: &VerifiedDescriptor) -> Result<u32, String> {
    match descriptor.encoding().ring() {
        RingKind::Z2_32 => Ok(32),
        RingKind::Z2_64 => Ok(64),
        RingKind::Fp61 => Err("engine rounds run over Z_2^32 or Z_2^64".into()),
    }
}

/// A norm bound is exact only over Z_2^32 uploads (see
/// [`sealroom_mpc::validity`]): refuses any other round.
pub fn require_z32(descriptor: &VerifiedDescriptor) -> Result<(), String> {
    match upload_bits(descriptor)? {
        32 => Ok(()),
        _ => Err(
            "the norm bound is exact only over Z_2^32 uploads (this round's values are wider)"
                .into(),
        ),
    }
}

/// The engine program of [`SYNTHETIC_BOUNDED`].
#[derive(Clone, Copy, Debug)]
pub struct SyntheticBounded;

impl SyntheticBounded {
    /// The squared L2 bound, in quantized units, of a `len`-element round
    /// quantized with `spec`.
    pub fn bound_sq(spec: &QuantSpec, len: usize) -> u128 {
        let half = u128::from(spec.max_abs() / 2);
        half * half * len as u128
    }
}

impl EngineProgram for SyntheticBounded {
    fn name(&self) -> &str {
        sealroom_mpc::validity::NORM_BOUNDED_SUM
    }

    fn version(&self) -> u32 {
        sealroom_mpc::validity::NORM_BOUNDED_SUM_VERSION
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        _keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        require_z32(descriptor)?;
        let len = descriptor.vector_len();
        let bound_sq = SyntheticBounded::bound_sq(&descriptor.encoding().spec(), len);
        sealroom_mpc::validity::norm_bounded_sum(clients, len, bound_sq).map_err(|e| e.to_string())
    }
}

/// The engine program of [`SYNTHETIC_NOISED`]: the clients' vectors summed
/// in the engine, each element plus one sample of centred binomial noise
/// calibrated for `(ε, δ) = (1, 10⁻⁶)` at sensitivity one quantization
/// step ([`sealroom_mpc::noise::coins_for`]), opened after the MAC check.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticNoised;

impl SyntheticNoised {
    /// The coins of each element's noise.
    pub fn coins() -> usize {
        // (1, 1e-6) is calibrated well below MAX_COINS.
        sealroom_mpc::noise::coins_for(1.0, 1e-6)
            .map_or(sealroom_mpc::noise::MAX_COINS, |n| n as usize)
    }
}

impl EngineProgram for SyntheticNoised {
    fn name(&self) -> &str {
        SYNTHETIC_NOISED
    }

    fn version(&self) -> u32 {
        1
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        _keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        let ring_bits = upload_bits(descriptor)?;
        let len = descriptor.vector_len();
        let mut p = ProgramBuilder::new(SYNTHETIC_NOISED, self.version());
        let x = p.client_inputs(clients, len, ring_bits);
        let sum = p.client_sum(x, clients, len);
        let noise = p.binomial_noise(len, Self::coins());
        let noised = p.add(sum, noise);
        p.output(noised);
        p.build().map_err(|e| e.to_string())
    }
}

/// The engine program of [`SYNTHETIC_MAX`]: a tournament of secure
/// comparisons across the clients, vectorised over the elements.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticMax;

impl SyntheticMax {
    /// The task's quantization: 16 signed bits over ±100.
    pub fn spec() -> QuantSpec {
        QuantSpec::for_bits(16, 100.0).expect("16 bits over ±100 is a valid spec")
    }
}

impl EngineProgram for SyntheticMax {
    fn name(&self) -> &str {
        SYNTHETIC_MAX
    }

    fn version(&self) -> u32 {
        1
    }

    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        _keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String> {
        let ring_bits = upload_bits(descriptor)?;
        let len = descriptor.vector_len();
        let max_abs = descriptor.encoding().spec().max_abs();
        // Signed values within ±max_abs compare exactly with k bits.
        let k = 65 - max_abs.leading_zeros();
        let mut p = ProgramBuilder::new(SYNTHETIC_MAX, self.version());
        let x = p.client_inputs(clients, len, ring_bits);
        let mut parts: Vec<_> = (0..clients).map(|c| p.slice(x, c * len, len)).collect();
        while parts.len() > 1 {
            let mut next = Vec::with_capacity(parts.len().div_ceil(2));
            for pair in parts.chunks(2) {
                match *pair {
                    [a, b] => {
                        let s = p.lt(a, b, k);
                        let d = p.sub(b, a);
                        let m = p.mul(s, d);
                        next.push(p.add(a, m));
                    }
                    [a] => next.push(a),
                    _ => {}
                }
            }
            parts = next;
        }
        if let Some(&max) = parts.first() {
            p.output(max);
        }
        p.build().map_err(|e| e.to_string())
    }
}

/// What a task's parameters make of a round.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskShape {
    /// Elements per client vector.
    pub vector_len: u64,
    /// Quantization of the round.
    pub spec: QuantSpec,
    /// The registered engine program these parameters ask for (an engine
    /// round), overriding the task's own; `None`: the task's.
    pub engine: Option<String>,
}

/// Validates a task's parameters and derives the round's shape from them
/// (for example a query's vector layout, or a model's parameter count).
pub trait TaskPlanner: Send + Sync {
    /// The round's shape for `params`, or why they are refused.
    fn plan(&self, params: &[u8]) -> Result<TaskShape, String>;
}

/// How a named task becomes a round.
#[derive(Clone)]
pub struct TaskDef {
    /// Task name, as it appears in descriptors.
    pub name: String,
    /// Vector length when the request does not give one.
    pub default_len: u64,
    /// Whether the length is fixed by the task (requests may not change it).
    pub fixed_len: bool,
    /// Quantization; `None` uses the federation's default.
    pub spec: Option<QuantSpec>,
    /// Whether the task's sums need a 64-bit ring: a federation whose rounds
    /// use Z_2^32 runs this task over Z_2^64 instead. (A task whose spec does
    /// not fit Z_2^32 for the round's clients is widened in any case.)
    pub wide: bool,
    /// Derives length and quantization from the request's parameters; a
    /// task without a planner takes no parameters.
    pub planner: Option<Arc<dyn TaskPlanner>>,
    /// For a task that runs in phases: the next round after one completes
    /// (the coordinator runs it itself; an admin cannot ask for a later
    /// phase directly).
    pub followup: Option<Arc<dyn Followup>>,
    /// For a task whose rounds run an MPC engine program instead of a sum:
    /// the program's name (registered with
    /// [`TaskCatalog::register_program`]).
    pub engine: Option<String>,
}

/// An MPC engine program as helpers build it for an engine round
/// (`docs/mpc.md`, "Engine rounds"). Every helper builds the same program
/// from the same signed descriptor and inclusion-set size; its hash goes
/// into each helper's signed answer, and the coordinator releases the
/// outputs only if all three agree.
pub trait EngineProgram: Send + Sync {
    /// The name descriptors use.
    fn name(&self) -> &str;
    /// The version descriptors use.
    fn version(&self) -> u32;
    /// The program for `descriptor` over `clients` included clients (their
    /// uploads are the program's client inputs, in increasing client
    /// index). `keys` lets a program check evidence its parameters carry.
    /// An error refuses the round at this helper (nothing runs).
    fn program(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: &FederationKeys,
        clients: usize,
    ) -> Result<Program, String>;
}

/// A completed round of a task that runs in phases.
#[derive(Debug)]
pub struct FinishedRound<'a> {
    /// The round's task parameters.
    pub params: &'a [u8],
    /// The round's clients (position = client index).
    pub clients: &'a [PartyId],
    /// What it released, with the helpers' signed answers.
    pub summary: &'a RoundSummary,
}

/// The next phase of a task: its parameters, shape, clients and floor.
#[derive(Clone, Debug)]
pub struct NextRound {
    /// Task parameters (signed into the next descriptor).
    pub params: Vec<u8>,
    /// Elements per client vector.
    pub vector_len: u64,
    /// Quantization.
    pub spec: QuantSpec,
    /// The clients to invite.
    pub clients: Vec<PartyId>,
    /// The round's `min_clients`.
    pub min_clients: usize,
    /// An engine round: the registered program it runs.
    pub engine: Option<String>,
}

/// Decides a task's next phase from the phase that just completed.
pub trait Followup: Send + Sync {
    /// The next round, or `None` when the task is done.
    fn next(&self, finished: &FinishedRound<'_>) -> Result<Option<NextRound>, String>;
}

/// Why a client gives no input for a round: the typed reason the
/// coordinator is told (about the task, never about the client's rows),
/// and a detail for this client's own log only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// What the coordinator (and its admin) is told.
    pub sit_out: SitOut,
    /// The full account, for this client's own log (it may name local files
    /// or lines; it never leaves the client).
    pub detail: String,
}

impl InputError {
    /// A reason about `subject` (a table or column name from the task), with
    /// a local `detail`.
    pub fn new(reason: pb::SitOutReason, subject: &str, detail: impl Into<String>) -> InputError {
        InputError {
            sit_out: SitOut::new(reason, subject),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDef")
            .field("name", &self.name)
            .field("default_len", &self.default_len)
            .field("fixed_len", &self.fixed_len)
            .field("spec", &self.spec)
            .field("wide", &self.wide)
            .field("planner", &self.planner.is_some())
            .field("followup", &self.followup.is_some())
            .finish()
    }
}

/// What a round is asked to compute.
#[derive(Clone, Debug, Default)]
pub struct TaskRequest {
    /// Task name.
    pub name: String,
    /// Requested vector length (0: the task's default).
    pub vector_len: u64,
    /// Task parameters (signed into the descriptor).
    pub params: Vec<u8>,
    /// Raises `min_clients` for this round (0: the federation's).
    pub min_clients: usize,
}

/// The tasks a coordinator can run, and the engine programs helpers build.
#[derive(Clone, Default)]
pub struct TaskCatalog {
    defs: BTreeMap<String, TaskDef>,
    programs: BTreeMap<String, Arc<dyn EngineProgram>>,
}

impl std::fmt::Debug for TaskCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCatalog")
            .field("tasks", &self.defs.keys().collect::<Vec<_>>())
            .field("programs", &self.programs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TaskCatalog {
    /// A catalog with the built-in tasks.
    pub fn with_builtins() -> TaskCatalog {
        let mut c = TaskCatalog::default();
        c.register(TaskDef {
            name: SYNTHETIC.into(),
            default_len: 1000,
            fixed_len: false,
            spec: None,
            wide: false,
            planner: None,
            followup: None,
            engine: None,
        });
        c.register(TaskDef {
            name: SYNTHETIC_MAX.into(),
            default_len: 16,
            fixed_len: false,
            spec: Some(SyntheticMax::spec()),
            wide: true,
            planner: None,
            followup: None,
            engine: Some(SYNTHETIC_MAX.into()),
        });
        c.register(TaskDef {
            name: SYNTHETIC_BOUNDED.into(),
            default_len: 16,
            fixed_len: false,
            spec: Some(SyntheticMax::spec()),
            wide: false,
            planner: None,
            followup: None,
            engine: Some(sealroom_mpc::validity::NORM_BOUNDED_SUM.into()),
        });
        c.register(TaskDef {
            name: SYNTHETIC_NOISED.into(),
            default_len: 16,
            fixed_len: false,
            spec: Some(SyntheticMax::spec()),
            wide: false,
            planner: None,
            followup: None,
            engine: Some(SYNTHETIC_NOISED.into()),
        });
        c.register_program(Arc::new(SyntheticMax));
        c.register_program(Arc::new(SyntheticNoised));
        c.register_program(Arc::new(SyntheticBounded));
        c
    }

    /// Adds or replaces an engine program (helpers build engine rounds'
    /// programs from it; the coordinator names it in descriptors).
    pub fn register_program(&mut self, program: Arc<dyn EngineProgram>) {
        self.programs.insert(program.name().to_string(), program);
    }

    /// The engine program a descriptor names, if this catalog has that
    /// name at that version.
    pub fn program(&self, engine: &EngineRef) -> Option<Arc<dyn EngineProgram>> {
        self.programs
            .get(&engine.program)
            .filter(|p| p.version() == engine.version)
            .cloned()
    }

    /// The descriptor's reference to a registered program.
    fn engine_ref(&self, name: &str) -> Result<EngineRef, String> {
        let p = self
            .programs
            .get(name)
            .ok_or_else(|| format!("engine program {name:?} is not registered"))?;
        Ok(EngineRef {
            program: p.name().to_string(),
            version: p.version(),
        })
    }

    /// Adds or replaces a task.
    pub fn register(&mut self, def: TaskDef) {
        self.defs.insert(def.name.clone(), def);
    }

    /// Names of the known tasks.
    pub fn names(&self) -> Vec<String> {
        self.defs.keys().cloned().collect()
    }

    /// The round task for `request` over `n_clients` clients, in the
    /// federation's `ring` and default `spec` unless the task says otherwise.
    pub fn task(
        &self,
        request: &TaskRequest,
        n_clients: usize,
        ring: RingKind,
        default_spec: QuantSpec,
    ) -> Result<Task, String> {
        let name = request.name.as_str();
        let def = self.defs.get(name).ok_or_else(|| {
            format!(
                "unknown task {name:?}; known tasks: {}",
                self.names().join(", ")
            )
        })?;
        let mut planned_engine = None;
        let (vector_len, spec) = match &def.planner {
            Some(planner) => {
                let shape = planner
                    .plan(&request.params)
                    .map_err(|e| format!("task {name:?}: {e}"))?;
                if request.vector_len != 0 && request.vector_len != shape.vector_len {
                    return Err(format!(
                        "task {name:?}: its parameters fix the length at {}",
                        shape.vector_len
                    ));
                }
                planned_engine = shape.engine;
                (shape.vector_len, shape.spec)
            }
            None => {
                if !request.params.is_empty() {
                    return Err(format!("task {name:?} takes no parameters"));
                }
                let len = match request.vector_len {
                    0 => def.default_len,
                    n if def.fixed_len && n != def.default_len => {
                        return Err(format!(
                            "task {name:?} has a fixed length of {}",
                            def.default_len
                        ));
                    }
                    n => n,
                };
                (len, def.spec.unwrap_or(default_spec))
            }
        };
        let engine = planned_engine
            .as_deref()
            .or(def.engine.as_deref())
            .map(|p| self.engine_ref(p))
            .transpose()?;
        Ok(Task {
            ring: round_ring(def, ring, n_clients, spec, engine.is_some()),
            engine,
            name: name.into(),
            vector_len,
            spec,
            params: request.params.clone(),
            min_clients: (request.min_clients > 0).then_some(request.min_clients),
        })
    }

    /// The follow-up of a task, if it runs in phases.
    pub fn followup(&self, name: &str) -> Option<Arc<dyn Followup>> {
        self.defs.get(name).and_then(|d| d.followup.clone())
    }

    /// The round task of a later phase of `name` (decided by the task's own
    /// [`Followup`], never asked for by an admin).
    pub fn next_phase(&self, name: &str, next: &NextRound, ring: RingKind) -> Result<Task, String> {
        let def = self
            .defs
            .get(name)
            .ok_or_else(|| format!("unknown task {name:?}"))?;
        let engine = next
            .engine
            .as_deref()
            .map(|p| self.engine_ref(p))
            .transpose()?;
        Ok(Task {
            ring: round_ring(def, ring, next.clients.len(), next.spec, engine.is_some()),
            engine,
            name: name.into(),
            vector_len: next.vector_len,
            spec: next.spec,
            params: next.params.clone(),
            min_clients: Some(next.min_clients),
        })
    }
}

/// The federation's ring, widened to Z_2^64 for a task that needs it. An
/// engine round sums (if at all) inside the engine, in F_p: its uploads
/// need only hold one client's values, so it is widened only when those do
/// not fit (a norm bound is exact only over Z_2^32 uploads).
fn round_ring(
    def: &TaskDef,
    ring: RingKind,
    n_clients: usize,
    spec: QuantSpec,
    engine: bool,
) -> RingKind {
    let holders = if engine { 1 } else { n_clients as u64 };
    let widen = (def.wide && !engine) || sealroom_core::fits(ring, holders, spec).is_err();
    match ring {
        RingKind::Z2_32 if widen => RingKind::Z2_64,
        RingKind::Z2_32 | RingKind::Z2_64 | RingKind::Fp61 => ring,
    }
}

/// Where a client's input for a round comes from.
pub trait InputSource: Send + Sync {
    /// The client's vector for this round, or why it cannot contribute (the
    /// client then sits the round out, telling the coordinator the typed
    /// reason; the round proceeds without it).
    ///
    /// Whether a client contributes must never depend on its rows (only on
    /// the task and the client's own policy): a refusal that does would tell
    /// the coordinator something about them.
    ///
    /// Called on a blocking thread inside the node's tokio runtime, so an
    /// implementation may train a model, read files, or run async database
    /// I/O through `tokio::runtime::Handle::current().block_on`.
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError>;

    /// [`InputSource::input`] with the federation's keys, for a task whose
    /// later phases carry evidence of an earlier one that the client checks
    /// itself (a query's stats round re-derives its released cells from the
    /// helper-signed counts round: see [`sealroom_protocol::evidence`]). The
    /// client node calls this; the default ignores the keys.
    fn input_with_keys(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: &FederationKeys,
    ) -> Result<Vec<f64>, InputError> {
        let _ = keys;
        self.input(descriptor)
    }
}

/// Input for the synthetic task: a deterministic function of the client's
/// name and the round id, so tests can recompute the plaintext sum.
#[derive(Clone, Debug)]
pub struct SyntheticInput {
    /// The client's name.
    pub client: String,
}

/// The synthetic inputs of clients `client-0` … `client-{n-1}` (the names
/// `sealroom init` gives them), one per client of a local federation.
pub fn synthetic_inputs(n: usize) -> Vec<std::sync::Arc<dyn InputSource>> {
    (0..n)
        .map(|i| {
            std::sync::Arc::new(SyntheticInput {
                client: format!("client-{i}"),
            }) as std::sync::Arc<dyn InputSource>
        })
        .collect()
}

/// The synthetic vector of `client` in `round` (values within ±clip/2).
pub fn synthetic_vector(client: &str, round_id: u64, len: usize, clip: f64) -> Vec<f64> {
    let mut hasher = blake3::Hasher::new_derive_key("sealroom 2026-11 synthetic test input v1");
    hasher.update(client.as_bytes());
    hasher.update(&round_id.to_le_bytes());
    let mut reader = hasher.finalize_xof();
    // One XOF read for the whole vector: the same stream as eight bytes at
    // a time (an XOF's output does not depend on how it is read), without
    // recomputing an output block for every value.
    let mut bytes = vec![0u8; len * 8];
    reader.fill(&mut bytes);
    bytes
        .chunks_exact(8)
        .map(|b| {
            let word = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let unit = (word >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            (unit - 0.5) * clip
        })
        .collect()
}

impl InputSource for SyntheticInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        if ![
            SYNTHETIC,
            SYNTHETIC_MAX,
            SYNTHETIC_BOUNDED,
            SYNTHETIC_NOISED,
        ]
        .contains(&descriptor.task_name())
        {
            return Err(InputError::new(
                pb::SitOutReason::UnsupportedTask,
                descriptor.task_name(),
                format!("this client only has data for the {SYNTHETIC:?} task"),
            ));
        }
        let clip = descriptor.encoding().spec().clip();
        Ok(synthetic_vector(
            &self.client,
            descriptor.round_id(),
            descriptor.vector_len(),
            clip,
        ))
    }
}

/// Dispatches on the task name to one source per task.
#[derive(Clone, Default)]
pub struct InputRouter {
    sources: BTreeMap<String, Arc<dyn InputSource>>,
}

impl std::fmt::Debug for InputRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputRouter")
            .field("tasks", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl InputRouter {
    /// Routes `task` to `source`.
    pub fn with(mut self, task: &str, source: Arc<dyn InputSource>) -> InputRouter {
        self.sources.insert(task.to_string(), source);
        self
    }
}

impl InputRouter {
    fn source(&self, descriptor: &VerifiedDescriptor) -> Result<&dyn InputSource, InputError> {
        self.sources
            .get(descriptor.task_name())
            .map(|s| s.as_ref())
            .ok_or_else(|| {
                InputError::new(
                    pb::SitOutReason::UnsupportedTask,
                    descriptor.task_name(),
                    format!("no data source for task {:?}", descriptor.task_name()),
                )
            })
    }
}

impl InputSource for InputRouter {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, InputError> {
        self.source(descriptor)?.input(descriptor)
    }

    fn input_with_keys(
        &self,
        descriptor: &VerifiedDescriptor,
        keys: &FederationKeys,
    ) -> Result<Vec<f64>, InputError> {
        self.source(descriptor)?.input_with_keys(descriptor, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_vectors_are_deterministic_and_bounded() {
        let a = synthetic_vector("client-0", 3, 100, 8.0);
        assert_eq!(a, synthetic_vector("client-0", 3, 100, 8.0));
        assert_ne!(a, synthetic_vector("client-1", 3, 100, 8.0));
        assert_ne!(a, synthetic_vector("client-0", 4, 100, 8.0));
        assert!(a.iter().all(|v| v.abs() <= 4.0));
    }

    #[test]
    fn synthetic_vectors_are_the_values_read_eight_bytes_at_a_time() {
        // The inputs every earlier run used (demo, bench, tests): one XOF
        // read per value. Reading the stream at once must give them exactly.
        let mut hasher = blake3::Hasher::new_derive_key("sealroom 2026-11 synthetic test input v1");
        hasher.update(b"client-2");
        hasher.update(&7u64.to_le_bytes());
        let mut reader = hasher.finalize_xof();
        let earlier: Vec<f64> = (0..1000)
            .map(|_| {
                let mut b = [0u8; 8];
                reader.fill(&mut b);
                ((u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 8.0
            })
            .collect();
        assert_eq!(synthetic_vector("client-2", 7, 1000, 8.0), earlier);
    }

    #[test]
    fn catalog_resolves_lengths() {
        let spec = QuantSpec::new(8, 1.0, 16).expect("valid");
        let c = TaskCatalog::with_builtins();
        let req = |len| TaskRequest {
            name: SYNTHETIC.into(),
            vector_len: len,
            ..TaskRequest::default()
        };
        let task = c.task(&req(0), 3, RingKind::Z2_64, spec).expect("known");
        assert_eq!(task.vector_len, 1000);
        assert_eq!(
            c.task(&req(7), 3, RingKind::Z2_64, spec)
                .expect("known")
                .vector_len,
            7
        );
        let unknown = TaskRequest {
            name: "nope".into(),
            ..TaskRequest::default()
        };
        assert!(c.task(&unknown, 3, RingKind::Z2_64, spec).is_err());
        let with_params = TaskRequest {
            params: vec![1],
            ..req(0)
        };
        let err = c
            .task(&with_params, 3, RingKind::Z2_64, spec)
            .expect_err("parameters refused");
        assert!(err.contains("takes no parameters"), "{err}");
    }

    struct Fixed;
    impl TaskPlanner for Fixed {
        fn plan(&self, params: &[u8]) -> Result<TaskShape, String> {
            match params {
                [n] => Ok(TaskShape {
                    engine: None,
                    vector_len: u64::from(*n),
                    spec: QuantSpec::new(0, 1e12, 41).map_err(|e| e.to_string())?,
                }),
                _ => Err("one byte expected".into()),
            }
        }
    }

    #[test]
    fn planners_shape_rounds_and_widen_the_ring() {
        let spec = QuantSpec::new(8, 1.0, 16).expect("valid");
        let mut c = TaskCatalog::with_builtins();
        c.register(TaskDef {
            engine: None,
            name: "planned".into(),
            default_len: 1,
            fixed_len: true,
            spec: None,
            wide: false,
            planner: Some(Arc::new(Fixed)),
            followup: None,
        });
        let req = |params: Vec<u8>, len| TaskRequest {
            name: "planned".into(),
            vector_len: len,
            params,
            min_clients: 4,
        };
        let task = c
            .task(&req(vec![9], 0), 5, RingKind::Z2_32, spec)
            .expect("planned");
        assert_eq!(task.vector_len, 9);
        // Five sums of values up to 10^12 do not fit Z_2^32: the round is widened.
        assert_eq!(task.ring, RingKind::Z2_64);
        assert_eq!(task.min_clients, Some(4));
        assert_eq!(task.params, vec![9]);
        let err = c
            .task(&req(vec![9], 8), 5, RingKind::Z2_32, spec)
            .expect_err("length conflicts with the parameters");
        assert!(err.contains("fix the length at 9"), "{err}");
        let err = c
            .task(&req(vec![], 0), 5, RingKind::Z2_32, spec)
            .expect_err("bad parameters");
        assert!(err.contains("one byte expected"), "{err}");
    }
}
