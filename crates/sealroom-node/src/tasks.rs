//! Named tasks: what a round computes. The coordinator turns a task name into
//! a round's [`Task`] (length, ring, quantization); each client turns the
//! same name into its input vector through its [`InputSource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_core::{QuantSpec, RingKind};
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::coordinator::Task;

/// The built-in synthetic task: deterministic public test vectors, for
/// benchmarks and end-to-end tests (never private data).
pub const SYNTHETIC: &str = "synthetic";

/// How a named task becomes a round.
#[derive(Clone, Debug)]
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
    /// use Z_2^32 runs this task over Z_2^64 instead.
    pub wide: bool,
}

/// The tasks a coordinator can run.
#[derive(Clone, Debug, Default)]
pub struct TaskCatalog {
    defs: BTreeMap<String, TaskDef>,
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
        });
        c
    }

    /// Adds or replaces a task.
    pub fn register(&mut self, def: TaskDef) {
        self.defs.insert(def.name.clone(), def);
    }

    /// Names of the known tasks.
    pub fn names(&self) -> Vec<String> {
        self.defs.keys().cloned().collect()
    }

    /// The round task for `name` with an optional requested length.
    pub fn task(
        &self,
        name: &str,
        requested_len: u64,
        ring: RingKind,
        default_spec: QuantSpec,
    ) -> Result<Task, String> {
        let def = self.defs.get(name).ok_or_else(|| {
            format!(
                "unknown task {name:?}; known tasks: {}",
                self.names().join(", ")
            )
        })?;
        let vector_len = match requested_len {
            0 => def.default_len,
            n if def.fixed_len && n != def.default_len => {
                return Err(format!(
                    "task {name:?} has a fixed length of {}",
                    def.default_len
                ));
            }
            n => n,
        };
        let ring = if def.wide && ring == RingKind::Z2_32 {
            RingKind::Z2_64
        } else {
            ring
        };
        Ok(Task {
            name: name.into(),
            vector_len,
            ring,
            spec: def.spec.unwrap_or(default_spec),
        })
    }
}

/// Where a client's input for a round comes from.
pub trait InputSource: Send + Sync {
    /// The client's vector for this round, or why it cannot contribute (the
    /// client then sits the round out; the round proceeds without it).
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, String>;
}

/// Input for the synthetic task: a deterministic function of the client's
/// name and the round id, so tests can recompute the plaintext sum.
#[derive(Clone, Debug)]
pub struct SyntheticInput {
    /// The client's name.
    pub client: String,
}

/// The synthetic vector of `client` in `round` (values within ±clip/2).
pub fn synthetic_vector(client: &str, round_id: u64, len: usize, clip: f64) -> Vec<f64> {
    let mut hasher = blake3::Hasher::new_derive_key("sealroom 2026-11 synthetic test input v1");
    hasher.update(client.as_bytes());
    hasher.update(&round_id.to_le_bytes());
    let mut reader = hasher.finalize_xof();
    (0..len)
        .map(|_| {
            let mut b = [0u8; 8];
            reader.fill(&mut b);
            let unit = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            (unit - 0.5) * clip
        })
        .collect()
}

impl InputSource for SyntheticInput {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, String> {
        if descriptor.task_name() != SYNTHETIC {
            return Err(format!(
                "this client only has data for the {SYNTHETIC:?} task"
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

impl InputSource for InputRouter {
    fn input(&self, descriptor: &VerifiedDescriptor) -> Result<Vec<f64>, String> {
        match self.sources.get(descriptor.task_name()) {
            Some(source) => source.input(descriptor),
            None => Err(format!(
                "no data source for task {:?}",
                descriptor.task_name()
            )),
        }
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
    fn catalog_resolves_lengths() {
        let spec = QuantSpec::new(8, 1.0, 16).expect("valid");
        let c = TaskCatalog::with_builtins();
        assert_eq!(
            c.task(SYNTHETIC, 0, RingKind::Z2_64, spec)
                .expect("known")
                .vector_len,
            1000
        );
        assert_eq!(
            c.task(SYNTHETIC, 7, RingKind::Z2_64, spec)
                .expect("known")
                .vector_len,
            7
        );
        assert!(c.task("nope", 0, RingKind::Z2_64, spec).is_err());
    }
}
