//! The MPC engine between helpers (issue #14, `docs/mpc.md` "Transport"):
//! runs `sealroom-mpc`'s sans-IO machines — key agreement, preprocessing,
//! online sessions — over the federation's mutual-TLS gRPC stack.
//!
//! * **Who.** Only the federation's three helpers take part, in the order
//!   `federation.toml` lists them (engine index 0, 1, 2). A peer's index
//!   comes from the certificate it authenticated with (`EngineService`
//!   admits helpers only, [`crate::context::authorize`]); outgoing streams use
//!   [`tls::channel_to`], pinned to the peer's registered certificate. The
//!   coordinator never sees an engine message.
//! * **Streams.** One client-streaming `Exchange` per session and direction:
//!   the first frame names the session; a message is the concatenation of
//!   frames up to one marked `end`, at most the session's own bound
//!   ([`sealroom_mpc::session::Session::max_inbound_bytes`]); only the
//!   session parses it (sender, session id, round, kind and sizes are checked
//!   there before any element is decoded).
//! * **Bounds.** A stream that names a session this helper has not started
//!   waits for it at most [`ATTACH_WAIT`], and at most
//!   [`MAX_WAITING_STREAMS_PER_PEER`] such streams per peer; one stream per
//!   (session, peer) at a time; a session's inbox holds [`INBOX`] messages
//!   (the lock-step driver accepts one round ahead), so a fast or hostile
//!   peer is slowed down by HTTP/2 flow control, never buffered without end.
//! * **Failures.** A lost stream loses messages; the machine's per-round
//!   deadline then aborts the session with `Timeout` naming the silent peer.
//!   Nothing is retried inside a session (a retry would need fresh material).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealroom_core::Seed;
use sealroom_mpc::error::{Abort, AbortReason};
use sealroom_mpc::machine::{Action, HelperIndex, Input, Machine, Millis, Step, UsageError};
use sealroom_mpc::material::{Batch, BatchId, Counts, MaterialError};
use sealroom_mpc::preproc::{BatchParams, PreprocOutcome, Preprocessing};
use sealroom_mpc::program::Program;
use sealroom_mpc::prss::{EpochKeys, PrssKeys};
use sealroom_mpc::session::{Outcome, Session, SessionConfig, SessionError, SessionInputs};
use sealroom_protocol::action::SecretBytes;
use sealroom_protocol::envelope::SignerExt as _;
use sealroom_protocol::{PartyId, pb};
use sealroom_store::engine::{PoolBatch, PoolCounts};
use sealroom_store::{AuditKind, AuditRecord};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use zeroize::{Zeroize, Zeroizing};

use crate::config::Role;
use crate::context::NodeContext;
use crate::grpc::pb::engine_service_client::EngineServiceClient;
use crate::grpc::pb::engine_service_server::{EngineService, EngineServiceServer};
use crate::grpc::pb::{Empty, EngineFrame};
use crate::grpc::{self, MAX_MESSAGE_BYTES};
use crate::tls;

/// Messages a session's inbox holds before its peers' streams wait.
pub const INBOX: usize = 4;
/// How long a stream naming a session not (yet) started here waits for it.
pub const ATTACH_WAIT: Duration = Duration::from_secs(60);
/// Streams per peer that may wait for a session at once.
pub const MAX_WAITING_STREAMS_PER_PEER: usize = 16;
/// Per-round deadline of every engine session (key agreement, batch
/// attestation, preprocessing, online): a helper silent this long makes the
/// others abort with `Timeout` naming it.
pub const ROUND_TIMEOUT_MS: u64 = 60_000;

#[path = "engine_pool.rs"]
mod pool;
pub use pool::{
    MAX_STATUS_BATCHES, MAX_STATUS_BYTES, POOL_ROUNDS_AHEAD, PoolView, Rotation, decode_status,
    times,
};

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine's protocols are for exactly three helpers.
    #[error("the MPC engine needs exactly three helpers; this federation has {0}")]
    HelperCount(usize),
    /// This node is not one of the federation's helpers.
    #[error("the MPC engine runs on helpers only; this node is not one")]
    NotAHelper,
    /// A session with this id already runs here.
    #[error("engine session {0} is already running on this helper")]
    SessionInUse(String),
    /// The OS generator failed.
    #[error("randomness: {0}")]
    Randomness(String),
    /// A peer has no usable endpoint or TLS material.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The session's machine ended without an outcome (the node stops).
    #[error("engine session {0} stopped before it finished")]
    Stopped(String),
    /// Keys for this epoch were already agreed here; a new agreement needs
    /// a new epoch (material of an epoch is bound to its keys).
    #[error("engine key epoch {0} already has keys on this helper; use a new epoch")]
    EpochExists(u64),
    /// The pool does not hold what a computation needs.
    #[error(
        "the preprocessing pool cannot cover this computation: it needs {need}, the pool holds {have}"
    )]
    Backlog {
        /// What the computation needs.
        need: String,
        /// What the pool holds.
        have: String,
    },
    /// The helper's store refused or failed.
    #[error("store: {0}")]
    Store(#[from] sealroom_store::StoreError),
    /// Stored material did not decode (a corrupt or foreign record).
    #[error("stored preprocessing batch {batch}: {error}")]
    Material {
        /// The batch id (hex).
        batch: String,
        /// What was wrong.
        error: MaterialError,
    },
    /// This helper has no signing key (it signs its batch attestations).
    #[error("this helper has no signing key")]
    NoSigner,
    /// Signing failed (an HSM error).
    #[error("signing: {0}")]
    Sign(String),
}

/// A helper's MPC engine: its place among the three helpers, the channels to
/// the other two, and the sessions running here. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.inner.me)
            .finish_non_exhaustive()
    }
}

struct Inner {
    ctx: NodeContext,
    me: HelperIndex,
    /// The other two helpers' channels, by engine index (`None` for self).
    peers: [Option<Channel>; 3],
    sessions: Mutex<HashMap<[u8; 32], Entry>>,
    registered: Notify,
    waiting: [AtomicUsize; 3],
    /// Engine message bytes this helper sent (framing of gRPC excluded).
    bytes_sent: AtomicU64,
    /// One pool top-up at a time (docs/mpc.md "The pool in engine rounds").
    pool_lock: tokio::sync::Mutex<()>,
}

struct Entry {
    inbox: mpsc::Sender<(HelperIndex, Vec<u8>)>,
    max_message: usize,
    attached: [bool; 3],
}

/// The engine index of `id` among `helpers` (the federation's order).
fn index_of(helpers: &[crate::directory::Party], id: &PartyId) -> Option<HelperIndex> {
    if helpers.len() != 3 {
        return None;
    }
    helpers
        .iter()
        .position(|p| p.id == *id)
        .and_then(HelperIndex::new)
}

fn hex_id(session: &[u8; 32]) -> String {
    hex::encode(&session[..8])
}

/// What an engine abort record names.
#[derive(Clone, Copy)]
enum Subject {
    /// A key agreement or an online computation.
    Session([u8; 32]),
    /// A preprocessing batch (its production or attestation).
    Batch(BatchId),
}

fn pool_counts(c: &Counts) -> PoolCounts {
    PoolCounts {
        triples: c.triples as u64,
        bits: c.bits as u64,
        randoms: c.randoms as u64,
        masks: c.masks.map(|m| m as u64),
    }
}

fn add_counts(a: &Counts, b: &PoolCounts) -> Counts {
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Counts {
        triples: a.triples.saturating_add(n(b.triples)),
        bits: a.bits.saturating_add(n(b.bits)),
        randoms: a.randoms.saturating_add(n(b.randoms)),
        masks: [0, 1, 2].map(|k| a.masks[k].saturating_add(n(b.masks[k]))),
    }
}

/// A seed from the OS generator.
pub fn os_seed() -> Result<Seed, EngineError> {
    let mut bytes = [0u8; 32];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes)
        .map_err(|e| EngineError::Randomness(e.to_string()))?;
    let seed = Seed::from_bytes(bytes);
    bytes.zeroize();
    Ok(seed)
}

impl Engine {
    /// The engine of helper `ctx` (lazily connecting channels to the other
    /// two helpers; nothing is sent until a session runs).
    pub fn new(ctx: &NodeContext) -> Result<Engine, EngineError> {
        let helpers = &ctx.directory.helpers;
        if helpers.len() != 3 {
            return Err(EngineError::HelperCount(helpers.len()));
        }
        let me = index_of(helpers, &ctx.me).ok_or(EngineError::NotAHelper)?;
        let mut peers: [Option<Channel>; 3] = [None, None, None];
        for (i, party) in helpers.iter().enumerate() {
            if i != me.index() {
                peers[i] = Some(tls::channel_to(ctx, party)?);
            }
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                me,
                peers,
                sessions: Mutex::new(HashMap::new()),
                registered: Notify::new(),
                waiting: Default::default(),
                bytes_sent: AtomicU64::new(0),
                pool_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// This helper's engine index.
    pub fn me(&self) -> HelperIndex {
        self.inner.me
    }

    /// Engine message bytes this helper has sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent.load(Ordering::Relaxed)
    }

    /// The gRPC service the other helpers stream to.
    pub fn service(&self) -> EngineServiceServer<EngineSvc> {
        EngineServiceServer::new(EngineSvc {
            engine: self.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Agrees on the pseudo-random secret-sharing keys of key epoch `epoch`
    /// with the other two helpers (all three call this): this helper draws
    /// its own key k_i from the OS and sends it to the previous helper, and
    /// receives k_{i+1} from the next, over the pinned mutual-TLS channel;
    /// so each key is known to exactly the two helpers that hold it
    /// (Cramer–Damgård–Ishai, TCC 2005, §3, for three parties and one
    /// corruption). The epoch's MAC key α is then a PRSS value nobody knows.
    /// The keys are stored before they are used, and an epoch is agreed
    /// once ([`EngineError::EpochExists`]; see [`Engine::epoch_keys`]).
    pub async fn agree_keys(&self, epoch: u64) -> Result<Result<EpochKeys, Abort>, EngineError> {
        if self.inner.ctx.store.engine_keys(epoch).await?.is_some() {
            return Err(EngineError::EpochExists(epoch));
        }
        let session = self.derived_session("sealroom 2026-12 engine key agreement v1", epoch, &[]);
        let result = self.exchange_keys(epoch, session).await?;
        let outcome = result.as_ref().map(|_| ());
        self.finished("keys", Subject::Session(session), epoch, outcome)
            .await?;
        Ok(result)
    }

    async fn exchange_keys(
        &self,
        epoch: u64,
        session: [u8; 32],
    ) -> Result<Result<EpochKeys, Abort>, EngineError> {
        let own = os_seed()?;
        let me = self.inner.me;
        let machine = OneRound::new(
            vec![(me.prev(), Zeroizing::new(own.expose_bytes().to_vec()))],
            vec![me.next()],
        );
        let received = match self.run(session, Seed::LEN, machine).await? {
            Ok(r) => r,
            Err(abort) => return Ok(Err(abort)),
        };
        let from_next = received
            .into_iter()
            .find(|(from, _)| *from == me.next())
            .and_then(|(_, m)| Seed::try_from_slice(&m));
        let Some(from_next) = from_next else {
            let abort = Abort {
                reason: AbortReason::Malformed {
                    peer: me.next(),
                    error: sealroom_mpc::wire::WireError::TooShort,
                },
                round: 0,
            };
            return Ok(Err(abort));
        };
        let mut both = Zeroizing::new(own.expose_bytes().to_vec());
        both.extend_from_slice(from_next.expose_bytes());
        self.inner
            .ctx
            .store
            .engine_put_keys(epoch, &SecretBytes::new(both.to_vec()))
            .await?;
        Ok(Ok(EpochKeys::derive(
            PrssKeys::new(me, own, from_next),
            epoch,
        )))
    }

    /// The keys of epoch `epoch` agreed earlier (read from the store), if any.
    pub async fn epoch_keys(&self, epoch: u64) -> Result<Option<EpochKeys>, EngineError> {
        let Some(both) = self.inner.ctx.store.engine_keys(epoch).await? else {
            return Ok(None);
        };
        let bytes = both.expose();
        let (own, from_next) = match (
            Seed::try_from_slice(bytes.get(..32).unwrap_or_default()),
            Seed::try_from_slice(bytes.get(32..).unwrap_or_default()),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(EngineError::Store(sealroom_store::StoreError::CorruptRow {
                    table: "engine_epochs",
                    key: format!("epoch = {epoch}"),
                    reason: "keys are not 64 bytes".into(),
                }));
            }
        };
        Ok(Some(EpochKeys::derive(
            PrssKeys::new(self.inner.me, own, from_next),
            epoch,
        )))
    }

    /// The session in which the three helpers exchange their signed
    /// attestations of batch `id` (after producing it).
    pub fn attestation_session(&self, epoch: u64, id: BatchId) -> [u8; 32] {
        self.derived_session("sealroom 2026-12 engine batch attestation v1", epoch, &id.0)
    }

    /// A session id all three helpers derive alike for a one-off exchange.
    fn derived_session(&self, label: &str, epoch: u64, extra: &[u8]) -> [u8; 32] {
        let mut id = blake3::Hasher::new_derive_key(label);
        id.update(self.inner.ctx.directory.federation_id.as_bytes());
        id.update(&epoch.to_le_bytes());
        id.update(extra);
        *id.finalize().as_bytes()
    }

    /// Counts a finished session; an abort is also signed into this
    /// helper's audit log as evidence (`engine_abort`: the session, the
    /// failed check and its round — never a value).
    async fn finished(
        &self,
        protocol: &str,
        subject: Subject,
        epoch: u64,
        result: Result<(), &Abort>,
    ) -> Result<(), EngineError> {
        let ctx = &self.inner.ctx;
        let abort = match result {
            Ok(()) => {
                ctx.metrics.engine_session(protocol, "completed", "");
                return Ok(());
            }
            Err(abort) => abort,
        };
        ctx.metrics
            .engine_session(protocol, "aborted", abort.reason.code());
        let signer = ctx.signer.clone().ok_or(EngineError::NoSigner)?;
        let evidence = pb::EngineAbort {
            federation_id: ctx.directory.federation_id.clone(),
            epoch,
            session: match subject {
                Subject::Session(s) => s.to_vec(),
                Subject::Batch(_) => Vec::new(),
            },
            batch_id: match subject {
                Subject::Batch(b) => b.0.to_vec(),
                Subject::Session(_) => Vec::new(),
            },
            protocol: protocol.to_string(),
            reason: abort.reason.code().to_string(),
            detail: abort.reason.to_string(),
            round: abort.round,
            helper: self.inner.me.index() as u32,
            at_ms: crate::context::now().0,
        };
        let record = AuditRecord {
            kind: AuditKind::EngineAbort,
            round_id: None,
            artifact: signer
                .sign(&evidence)
                .map_err(|e| EngineError::Sign(e.to_string()))?,
        };
        let appended = ctx
            .store
            .record(None, &[record], ctx.audit_signer().as_ref(), None)
            .await?;
        ctx.metrics
            .audit_appended(appended.entries, appended.checkpoint_at_ms);
        Ok(())
    }

    /// Produces preprocessing batch `id` with `counts` items under `keys`
    /// with the other two helpers (all three call this with the same
    /// arguments). `baseline`: the semi-honest benchmark variant.
    pub async fn preprocess(
        &self,
        keys: &EpochKeys,
        id: BatchId,
        counts: Counts,
        baseline: bool,
    ) -> Result<PreprocOutcome, EngineError> {
        let params = BatchParams {
            id,
            counts,
            round_timeout_ms: ROUND_TIMEOUT_MS,
        };
        let machine = Box::new(if baseline {
            Preprocessing::baseline(keys, params, os_seed()?)
        } else {
            Preprocessing::new(keys, params, os_seed()?)
        });
        let (session, max) = (machine.session_id(), machine.max_inbound_bytes());
        Box::pin(self.drive(session, max, machine)).await
    }

    /// Runs `program` as session `session` over `material` (consumed) and
    /// this helper's `inputs` with the other two helpers. `baseline`: the
    /// semi-honest benchmark variant (releases nothing).
    pub async fn compute(
        &self,
        keys: &EpochKeys,
        session: [u8; 32],
        program: Arc<Program>,
        material: Vec<Batch>,
        inputs: SessionInputs,
        baseline: bool,
    ) -> Result<Result<Outcome, SessionError>, EngineError> {
        let config = SessionConfig {
            session_id: session,
            round_timeout_ms: ROUND_TIMEOUT_MS,
        };
        let seed = os_seed()?;
        let machine = if baseline {
            Session::baseline(program, keys, material, inputs, config, seed)
        } else {
            Session::new(program, keys, material, inputs, config, seed)
        };
        let machine = match machine {
            Ok(m) => Box::new(m),
            Err(e) => return Ok(Err(e)),
        };
        let max = machine.max_inbound_bytes();
        Ok(Ok(Box::pin(self.drive(session, max, machine)).await?))
    }

    /// Produces batch `id` (actively secure, with the other two helpers,
    /// who call this with the same arguments), has each of the three
    /// helpers sign its id, epoch, digest and counts, checks the other two
    /// signatures against `federation.toml`, and stores the batch with all
    /// three attestations in the audit log (one transaction). A peer that
    /// signs anything else, or does not sign, aborts it: nothing is stored.
    pub async fn produce(
        &self,
        keys: &EpochKeys,
        id: BatchId,
        counts: Counts,
    ) -> Result<Result<PoolBatch, Abort>, EngineError> {
        let result = self.produce_attested(keys, id, counts).await?;
        let outcome = result.as_ref().map(|_| ());
        self.finished("preprocessing", Subject::Batch(id), keys.epoch(), outcome)
            .await?;
        if result.is_ok() {
            self.update_backlog(keys.epoch()).await?;
        }
        Ok(result)
    }

    async fn produce_attested(
        &self,
        keys: &EpochKeys,
        id: BatchId,
        counts: Counts,
    ) -> Result<Result<PoolBatch, Abort>, EngineError> {
        let batch = match self.preprocess(keys, id, counts, false).await? {
            Ok(b) => b,
            Err(abort) => return Ok(Err(abort)),
        };
        let ctx = &self.inner.ctx;
        let me = self.inner.me;
        let attestation = |helper: HelperIndex| pb::EngineBatch {
            federation_id: ctx.directory.federation_id.clone(),
            epoch: batch.epoch(),
            batch_id: id.0.to_vec(),
            digest: batch.digest().to_vec(),
            triples: counts.triples as u64,
            bits: counts.bits as u64,
            randoms: counts.randoms as u64,
            masks: counts.masks.iter().map(|&m| m as u64).collect(),
            helper: helper.index() as u32,
        };
        let signer = ctx.signer.clone().ok_or(EngineError::NoSigner)?;
        let mine = signer
            .sign(&attestation(me))
            .map_err(|e| EngineError::Sign(e.to_string()))?;
        let bytes = Zeroizing::new(prost::Message::encode_to_vec(&mine));
        let session = self.attestation_session(batch.epoch(), id);
        let received = match self.broadcast(session, ONE_ROUND_MAX, bytes).await? {
            Ok(r) => r,
            Err(abort) => return Ok(Err(abort)),
        };
        let helpers = ctx.live_directory().helpers.clone();
        let mut records = vec![mine];
        for (from, bytes) in received {
            let expected = attestation(from);
            let verified = sealroom_protocol::envelope::decode_limited::<pb::SignedEnvelope>(
                &bytes,
                ONE_ROUND_MAX,
            )
            .ok()
            .and_then(|env| {
                let keys = helpers.get(from.index())?.keys()?;
                let v = keys.verify::<pb::EngineBatch>(&env).ok()?;
                (*v.message() == expected).then(|| v.envelope().clone())
            });
            match verified {
                Some(env) => records.push(env),
                None => {
                    let abort = Abort {
                        reason: AbortReason::ParameterMismatch { peer: from },
                        round: 0,
                    };
                    tracing::warn!(batch = %hex::encode(id.0), peer = from.index(), "a helper did not attest the batch this helper produced; discarded");
                    return Ok(Err(abort));
                }
            }
        }
        let pool_batch = PoolBatch {
            id: id.0,
            epoch: batch.epoch(),
            digest: batch.digest(),
            counts: pool_counts(&counts),
        };
        let audit: Vec<AuditRecord> = records
            .into_iter()
            .map(|artifact| AuditRecord {
                kind: AuditKind::EngineBatch,
                round_id: None,
                artifact,
            })
            .collect();
        let material = SecretBytes::new(batch.to_bytes().to_vec());
        let appended = ctx
            .store
            .engine_put_batch(&pool_batch, &material, &audit, ctx.audit_signer().as_ref())
            .await?;
        ctx.metrics
            .audit_appended(appended.entries, appended.checkpoint_at_ms);
        let c = pool_batch.counts;
        ctx.metrics.engine_material(
            "produced",
            c.triples,
            c.bits,
            c.randoms,
            c.masks.iter().sum(),
        );
        Ok(Ok(pool_batch))
    }

    /// Sends `bytes` to both other helpers in session `session` and
    /// returns what each of them sent (at most `max` bytes each).
    async fn broadcast(
        &self,
        session: [u8; 32],
        max: usize,
        bytes: Zeroizing<Vec<u8>>,
    ) -> Result<Result<Vec<(HelperIndex, Zeroizing<Vec<u8>>)>, Abort>, EngineError> {
        let me = self.inner.me;
        let machine = OneRound::new(
            vec![(me.next(), bytes.clone()), (me.prev(), bytes)],
            vec![me.next(), me.prev()],
        );
        self.run(session, max, machine).await
    }

    /// The oldest unconsumed batches of `epoch` that together cover `need`
    /// (the same on every helper whose pool holds the same batches: the
    /// one computation names them all, and the session's hello compares
    /// ids and digests).
    pub async fn select(&self, epoch: u64, need: Counts) -> Result<Vec<BatchId>, EngineError> {
        let available = self.inner.ctx.store.engine_available(epoch).await?;
        let mut have = Counts::default();
        let mut ids = Vec::new();
        for b in &available {
            if have.covers(&need) {
                break;
            }
            have = add_counts(&have, &b.counts);
            ids.push(BatchId(b.id));
        }
        if !have.covers(&need) {
            return Err(EngineError::Backlog {
                need: format!("{need:?}"),
                have: format!("{have:?}"),
            });
        }
        Ok(ids)
    }

    /// Takes pool batches `ids` for computation `session`: durably and
    /// once (the same id again, also after a restart, is refused before
    /// anything runs and nothing is taken; the audit log records which
    /// batches the session consumed), then decodes them. Material of an
    /// aborted session is never reused.
    pub async fn take(
        &self,
        epoch: u64,
        session: [u8; 32],
        ids: &[BatchId],
    ) -> Result<Vec<Batch>, EngineError> {
        let ctx = &self.inner.ctx;
        let signer = ctx.signer.clone().ok_or(EngineError::NoSigner)?;
        let record = pb::EngineUse {
            federation_id: ctx.directory.federation_id.clone(),
            epoch,
            session: session.to_vec(),
            batch_ids: ids.iter().map(|b| b.0.to_vec()).collect(),
            helper: self.inner.me.index() as u32,
            at_ms: crate::context::now().0,
        };
        let audit = [AuditRecord {
            kind: AuditKind::EngineUse,
            round_id: None,
            artifact: signer
                .sign(&record)
                .map_err(|e| EngineError::Sign(e.to_string()))?,
        }];
        let raw: Vec<[u8; 16]> = ids.iter().map(|b| b.0).collect();
        let taken = ctx
            .store
            .engine_take_batches(epoch, &raw, &session, &audit, ctx.audit_signer().as_ref())
            .await?;
        let mut batches = Vec::with_capacity(taken.len());
        let mut used = Counts::default();
        for (id, bytes) in ids.iter().zip(&taken) {
            let batch =
                Batch::from_bytes(bytes.expose(), self.inner.me, *id, epoch).map_err(|error| {
                    EngineError::Material {
                        batch: hex::encode(id.0),
                        error,
                    }
                })?;
            used = add_counts(&used, &pool_counts(&batch.counts()));
            batches.push(batch);
        }
        drop(taken);
        ctx.metrics.engine_material(
            "consumed",
            used.triples as u64,
            used.bits as u64,
            used.randoms as u64,
            used.masks.iter().sum::<usize>() as u64,
        );
        self.update_backlog(epoch).await?;
        Ok(batches)
    }

    /// Runs `program` as session `session` on pool batches `ids`
    /// ([`Engine::take`]) and this helper's `inputs`; an abort is signed
    /// into the audit log as evidence.
    pub async fn compute_pooled(
        &self,
        keys: &EpochKeys,
        session: [u8; 32],
        program: Arc<Program>,
        ids: &[BatchId],
        inputs: SessionInputs,
    ) -> Result<Result<Outcome, SessionError>, EngineError> {
        let batches = self.take(keys.epoch(), session, ids).await?;
        let outcome = self
            .compute(keys, session, program, batches, inputs, false)
            .await?;
        self.count_outcome(session, keys.epoch(), &outcome).await?;
        Ok(outcome)
    }

    /// Retires key epoch `epoch`: its keys are deleted and its unconsumed
    /// material expires (never taken afterwards). Run it on every helper
    /// once the next epoch's keys are agreed.
    pub async fn retire_epoch(&self, epoch: u64) -> Result<u64, EngineError> {
        let expired = self.inner.ctx.store.engine_retire_epoch(epoch).await?;
        tracing::info!(
            epoch,
            expired,
            "engine key epoch retired; its unused material expired"
        );
        if epoch < ROUND_EPOCH_BASE {
            // A round's own epoch holds no pool material.
            self.update_backlog(epoch).await?;
        }
        Ok(expired)
    }

    async fn update_backlog(&self, epoch: u64) -> Result<(), EngineError> {
        let b = self.inner.ctx.store.engine_backlog(epoch).await?;
        self.inner
            .ctx
            .metrics
            .engine_backlog(b.triples, b.bits, b.randoms, b.masks.iter().sum());
        Ok(())
    }

    /// Runs `machine` (started here) as session `session` with the other
    /// two helpers until it finishes, accepting messages of at most
    /// `max_message` bytes. Abort evidence is logged (it names the failed
    /// check, never a value) and is also in the machine's outcome.
    pub async fn run<M: Machine>(
        &self,
        session: [u8; 32],
        max_message: usize,
        machine: M,
    ) -> Result<M::Outcome, EngineError> {
        // Machines are large (a preprocessing machine holds tens of kB
        // inline): keep them and this future on the heap, not on the stack
        // of whatever task awaits several sessions at once.
        Box::pin(self.drive(session, max_message, Box::new(machine))).await
    }

    async fn drive<M: Machine>(
        &self,
        session: [u8; 32],
        max_message: usize,
        mut machine: Box<M>,
    ) -> Result<M::Outcome, EngineError> {
        let (tx, mut rx) = mpsc::channel(INBOX);
        let _registration = self.register(session, tx, max_message)?;
        let mut out = Outbox::new(self, session);
        let mut input = Input::Start;
        loop {
            // A step can compute for a long time (a preprocessing round over
            // a large batch takes seconds): on a multi-threaded runtime it
            // runs in place while the runtime hands this worker's other
            // tasks (uploads, keep-alives, the other helpers' streams) to
            // another thread; the machine's buffers stay on this thread.
            let now = clock();
            let current = *machine;
            let step = move || current.handle(now, input);
            let stepped = match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(step),
                _ => step(),
            };
            match stepped {
                Ok(Step::Continue(m, actions)) => {
                    *machine = m;
                    out.act(actions).await;
                }
                Ok(Step::Finish(outcome, actions)) => {
                    out.act(actions).await;
                    out.finish().await;
                    return Ok(outcome);
                }
                Err((m, usage)) => {
                    // Only this shell can misuse the machine; say so loudly.
                    tracing::error!(session = %hex_id(&session), error = %usage, "engine shell misused its machine");
                    if usage == UsageError::NotStarted {
                        return Err(EngineError::Stopped(hex_id(&session)));
                    }
                    *machine = m;
                }
            }
            let deadline = machine.next_deadline();
            input = tokio::select! {
                received = rx.recv() => match received {
                    Some((from, msg)) => Input::Inbound { from, msg },
                    None => return Err(EngineError::Stopped(hex_id(&session))),
                },
                () = sleep_until(deadline) => Input::Timer,
            };
        }
    }

    fn register(
        &self,
        session: [u8; 32],
        inbox: mpsc::Sender<(HelperIndex, Vec<u8>)>,
        max_message: usize,
    ) -> Result<Registration, EngineError> {
        let mut sessions = lock(&self.inner.sessions);
        if sessions.contains_key(&session) {
            return Err(EngineError::SessionInUse(hex_id(&session)));
        }
        sessions.insert(
            session,
            Entry {
                inbox,
                max_message,
                attached: [false; 3],
            },
        );
        drop(sessions);
        self.inner.registered.notify_waiters();
        Ok(Registration {
            engine: self.clone(),
            session,
        })
    }

    /// Attaches a peer's stream to a session, waiting for it to start here.
    async fn attach(&self, session: [u8; 32], from: HelperIndex) -> Result<Attached, Status> {
        let waiting = &self.inner.waiting[from.index()];
        if waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING_STREAMS_PER_PEER {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(
                "too many engine streams wait for sessions not started on this helper",
            ));
        }
        let attached = tokio::time::timeout(ATTACH_WAIT, async {
            loop {
                let notified = self.inner.registered.notified();
                if let Some(a) = self.try_attach(session, from)? {
                    return Ok(a);
                }
                notified.await;
            }
        })
        .await;
        waiting.fetch_sub(1, Ordering::SeqCst);
        attached.unwrap_or_else(|_| {
            Err(Status::not_found(format!(
                "engine session {} did not start on this helper within {} s",
                hex_id(&session),
                ATTACH_WAIT.as_secs()
            )))
        })
    }

    fn try_attach(&self, session: [u8; 32], from: HelperIndex) -> Result<Option<Attached>, Status> {
        let mut sessions = lock(&self.inner.sessions);
        let Some(entry) = sessions.get_mut(&session) else {
            return Ok(None);
        };
        if entry.attached[from.index()] {
            return Err(Status::already_exists(format!(
                "a stream from this helper for engine session {} is already open",
                hex_id(&session)
            )));
        }
        entry.attached[from.index()] = true;
        Ok(Some(Attached {
            engine: self.clone(),
            session,
            from,
            inbox: entry.inbox.clone(),
            max_message: entry.max_message,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The machines' clock: milliseconds since the Unix epoch.
fn clock() -> Millis {
    Millis(crate::context::now().0)
}

async fn sleep_until(deadline: Option<Millis>) {
    match deadline {
        Some(d) => {
            tokio::time::sleep_until(crate::context::instant_of(sealroom_protocol::Millis(d.0)))
                .await;
        }
        None => std::future::pending().await,
    }
}

/// Removes a session from the hub when its runner ends (also on panic or
/// cancellation), so its id can never be fed again.
struct Registration {
    engine: Engine,
    session: [u8; 32],
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.engine.inner.sessions).remove(&self.session);
    }
}

/// A peer's stream attached to a session; detaches on drop.
struct Attached {
    engine: Engine,
    session: [u8; 32],
    from: HelperIndex,
    inbox: mpsc::Sender<(HelperIndex, Vec<u8>)>,
    max_message: usize,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(entry) = lock(&self.engine.inner.sessions).get_mut(&self.session) {
            entry.attached[self.from.index()] = false;
        }
    }
}

/// A session's outgoing streams, opened on first use.
struct Outbox<'a> {
    engine: &'a Engine,
    session: [u8; 32],
    streams: [Option<mpsc::Sender<EngineFrame>>; 3],
    /// Whether the next frame to each peer is its stream's first.
    first: [bool; 3],
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<'a> Outbox<'a> {
    fn new(engine: &'a Engine, session: [u8; 32]) -> Outbox<'a> {
        Outbox {
            engine,
            session,
            streams: [None, None, None],
            first: [false; 3],
            tasks: Vec::new(),
        }
    }

    async fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, msg } => self.send(to, msg).await,
                Action::Abort(abort) => {
                    tracing::warn!(session = %hex_id(&self.session), reason = %abort.reason, round = abort.round, "engine session aborted");
                }
            }
        }
    }

    async fn send(&mut self, to: HelperIndex, msg: Vec<u8>) {
        let Some(channel) = self.engine.inner.peers[to.index()].clone() else {
            return;
        };
        if self.streams[to.index()].is_none() {
            let (tx, rx) = mpsc::channel(INBOX * 4);
            let session = self.session;
            self.tasks.push(tokio::spawn(async move {
                let mut client = EngineServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                if let Err(status) = client.exchange(ReceiverStream::new(rx)).await {
                    tracing::warn!(session = %hex_id(&session), peer = to.index(), code = ?status.code(), message = status.message(), "engine stream to a helper failed");
                }
            }));
            self.streams[to.index()] = Some(tx);
            self.first[to.index()] = true;
        }
        let Some(sender) = self.streams[to.index()].clone() else {
            return;
        };
        self.engine
            .inner
            .bytes_sent
            .fetch_add(msg.len() as u64, Ordering::Relaxed);
        let chunks = grpc::split(&msg);
        let last = chunks.len() - 1;
        for (i, data) in chunks.into_iter().enumerate() {
            let frame = EngineFrame {
                session: if std::mem::take(&mut self.first[to.index()]) {
                    self.session.to_vec()
                } else {
                    Vec::new()
                },
                data,
                end: i == last,
            };
            if sender.send(frame).await.is_err() {
                // The stream failed (logged by its task); the session's
                // deadline turns the loss into a Timeout abort.
                return;
            }
        }
    }

    /// Closes the streams and waits until the peers have everything sent.
    async fn finish(self) {
        drop(self.streams);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// `EngineService` on a helper.
#[derive(Clone, Debug)]
pub struct EngineSvc {
    engine: Engine,
}

#[tonic::async_trait]
impl EngineService for EngineSvc {
    async fn exchange(
        &self,
        request: Request<Streaming<EngineFrame>>,
    ) -> Result<Response<Empty>, Status> {
        let inner = &self.engine.inner;
        let party = inner.ctx.authorize(&request, "Exchange", &[Role::Helper])?;
        let from = index_of(&inner.ctx.live_directory().helpers, &party.id)
            .filter(|i| *i != inner.me)
            .ok_or_else(|| {
                Status::permission_denied(
                    "the MPC engine runs between the federation's three helpers only",
                )
            })?;
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(Empty {}));
        };
        let session: [u8; 32] = first.session.as_slice().try_into().map_err(|_| {
            Status::invalid_argument("the first engine frame must name a 32-byte session")
        })?;
        let attached = self.engine.attach(session, from).await?;
        let mut message = Vec::new();
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match stream.message().await? {
                    Some(f) if f.session.is_empty() => f,
                    Some(_) => {
                        return Err(Status::invalid_argument(
                            "only the first engine frame of a stream names the session",
                        ));
                    }
                    None => break,
                },
            };
            grpc::append(&mut message, &frame.data, attached.max_message)?;
            if frame.end
                && attached
                    .inbox
                    .send((from, std::mem::take(&mut message)))
                    .await
                    .is_err()
            {
                // The session finished here; what the peer still sends is
                // not needed (a lock-step peer sends nothing more).
                break;
            }
        }
        Ok(Response::new(Empty {}))
    }
}

/// A one-round exchange as a machine: send each of `sends`, wait for one
/// message from each of `expect` (at most [`ONE_ROUND_MAX`] bytes each, the
/// shell's bound); outcome: what each sent. Key agreement and batch
/// attestation use it. Messages may be secret (a key): they are zeroized.
struct OneRound {
    sends: Vec<(HelperIndex, Zeroizing<Vec<u8>>)>,
    expect: Vec<HelperIndex>,
    received: Vec<(HelperIndex, Zeroizing<Vec<u8>>)>,
    deadline: Option<Millis>,
}

/// Largest message of a [`OneRound`] exchange (a signed attestation).
const ONE_ROUND_MAX: usize = 4096;

impl OneRound {
    fn new(sends: Vec<(HelperIndex, Zeroizing<Vec<u8>>)>, expect: Vec<HelperIndex>) -> OneRound {
        OneRound {
            sends,
            expect,
            received: Vec::new(),
            deadline: None,
        }
    }
}

impl Machine for OneRound {
    type Outcome = Result<Vec<(HelperIndex, Zeroizing<Vec<u8>>)>, Abort>;

    fn handle(mut self, now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)> {
        let abort = |reason| {
            let abort = Abort { reason, round: 0 };
            Step::Finish(Err(abort.clone()), vec![Action::Abort(abort)])
        };
        match input {
            Input::Start => {
                if self.deadline.is_some() {
                    return Err((self, UsageError::AlreadyStarted));
                }
                self.deadline = Some(Millis(now.0.saturating_add(ROUND_TIMEOUT_MS)));
                let actions = self
                    .sends
                    .drain(..)
                    .map(|(to, msg)| Action::Send {
                        to,
                        msg: msg.to_vec(),
                    })
                    .collect();
                Ok(Step::Continue(self, actions))
            }
            Input::Inbound { from, msg } => {
                let msg = Zeroizing::new(msg);
                if self.deadline.is_none() {
                    return Err((self, UsageError::NotStarted));
                }
                if !self.expect.contains(&from) {
                    // Nothing is expected from this helper in this exchange.
                    return Ok(Step::Continue(self, Vec::new()));
                }
                if self.received.iter().any(|(f, _)| *f == from) {
                    return Ok(abort(AbortReason::Duplicate {
                        peer: from,
                        round: 0,
                    }));
                }
                self.received.push((from, msg));
                if self.received.len() == self.expect.len() {
                    Ok(Step::Finish(Ok(self.received), Vec::new()))
                } else {
                    Ok(Step::Continue(self, Vec::new()))
                }
            }
            Input::Timer => match self.deadline {
                Some(d) if now >= d => {
                    let missing = self
                        .expect
                        .iter()
                        .filter(|h| !self.received.iter().any(|(f, _)| f == *h))
                        .copied()
                        .collect();
                    Ok(abort(AbortReason::Timeout { missing }))
                }
                _ => Ok(Step::Continue(self, Vec::new())),
            },
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.deadline
    }
}

/// Key epochs of engine rounds: `ROUND_EPOCH_BASE | round id`. Each engine
/// round agrees its own MAC key and retires it when the program ends, so
/// these never collide with the pool's epochs (small numbers).
pub const ROUND_EPOCH_BASE: u64 = 1 << 62;

impl Engine {
    /// Runs an engine round's program (asked for by the helper's state
    /// machine, [`sealroom_protocol::action::Action::Engine`]) with the
    /// other two helpers, who run it for the same signed inclusion set:
    /// agrees the round's key epoch (or reads it back after a restart),
    /// preprocesses exactly what the program needs (actively secure,
    /// dealer-free), converts and checks the clients' uploads, runs the
    /// program, and retires the epoch. Returns the verified outputs, or why
    /// there are none (the abort is also signed into the audit log).
    pub async fn run_round(
        &self,
        job: &sealroom_protocol::action::EngineJob,
        program: Program,
    ) -> Result<sealroom_protocol::machine::EngineResult, EngineError> {
        use sealroom_protocol::machine::{EngineOutcome, EngineResult};
        let d = &job.descriptor;
        let round = d.round_id();
        let program_hash = program.hash();
        let failed = |code: &str, detail: String, excluded: Vec<u32>| EngineResult {
            round,
            program_hash,
            outcome: EngineOutcome::Failed {
                code: code.to_string(),
                detail,
                excluded,
            },
        };
        let mut extra = d.hash().0.to_vec();
        extra.extend_from_slice(&job.inclusion_hash.0);
        extra.extend_from_slice(&program_hash);
        let session = self.derived_session("sealroom 2026-12 engine round v1", round, &extra);
        let need = program.needs();
        self.inner.ctx.metrics.engine_round_need(
            need.triples as u64,
            need.bits as u64,
            need.randoms as u64,
            need.masks.iter().sum::<usize>() as u64,
        );
        // The clients' inputs are read before any material is consumed.
        let inputs = match session_inputs(job) {
            Ok(inputs) => inputs,
            Err(detail) => return Ok(failed("bad_stored_upload", detail, vec![])),
        };
        let view = match self.pool_view(round, &extra).await? {
            Ok(view) => view,
            Err(abort) => {
                self.finished("pool_status", Subject::Session(session), 0, Err(&abort))
                    .await?;
                return Ok(failed(
                    abort.reason.code(),
                    abort.reason.to_string(),
                    vec![],
                ));
            }
        };
        let program = Arc::new(program);
        let (outcome, used) = match view.select(&need) {
            Some((epoch, ids)) => {
                let Some(keys) = self.epoch_keys(epoch).await? else {
                    return Ok(failed(
                        "pool_epoch_retired",
                        format!("this helper no longer holds key epoch {epoch} of the pool"),
                        vec![],
                    ));
                };
                self.inner.ctx.metrics.engine_round_material("pool");
                let batches = match self.take(epoch, session, &ids).await {
                    Ok(batches) => batches,
                    Err(EngineError::Store(
                        e @ sealroom_store::StoreError::EngineBatchUnavailable { .. },
                    )) => return Ok(failed("pool_batch_unavailable", e.to_string(), vec![])),
                    Err(e) => return Err(e),
                };
                let outcome = self
                    .compute(&keys, session, program, batches, inputs, false)
                    .await?;
                self.count_outcome(session, epoch, &outcome).await?;
                (outcome, ids)
            }
            None => {
                self.inner.ctx.metrics.engine_round_material("inline");
                match self.run_inline(session, program, inputs, round).await? {
                    Ok(outcome) => (outcome, Vec::new()),
                    Err(abort) => {
                        return Ok(failed(
                            abort.reason.code(),
                            abort.reason.to_string(),
                            vec![],
                        ));
                    }
                }
            }
        };
        let result = match outcome {
            Err(e) => failed("program_refused", e.to_string(), vec![]),
            Ok(Outcome::Completed { outputs }) => {
                // Material for the next rounds, outside this round's window.
                let engine = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.top_up(view, need, used, session).await {
                        tracing::warn!(round, error = %e, "topping up the engine pool failed; the next engine round preprocesses inline if the pool cannot cover it");
                    }
                });
                EngineResult {
                    round,
                    program_hash,
                    outcome: EngineOutcome::Outputs(
                        outputs.iter().flat_map(|o| o.signed()).collect(),
                    ),
                }
            }
            Ok(Outcome::Aborted(abort)) => {
                failed(abort.reason.code(), abort.reason.to_string(), vec![])
            }
            Ok(Outcome::ClientsExcluded { clients }) => {
                // Positions in the program's client list → client indices.
                let excluded = clients
                    .iter()
                    .filter_map(|&c| job.uploads.get(c as usize).map(|u| u.client_index))
                    .collect();
                failed(
                    "clients_excluded",
                    "the sketch check of these clients' uploads failed (a client's own doing, or a helper that input a wrong share: no helper is blamed)".into(),
                    excluded,
                )
            }
            Ok(Outcome::BaselineDone) => {
                failed("baseline", "a baseline run releases nothing".into(), vec![])
            }
        };
        Ok(result)
    }

    /// Counts an online computation's outcome; an abort is signed into the
    /// audit log as evidence.
    async fn count_outcome(
        &self,
        session: [u8; 32],
        epoch: u64,
        outcome: &Result<Outcome, SessionError>,
    ) -> Result<(), EngineError> {
        let subject = Subject::Session(session);
        match outcome {
            Ok(Outcome::Completed { .. }) => self.finished("online", subject, epoch, Ok(())).await,
            Ok(Outcome::Aborted(abort)) => {
                self.finished("online", subject, epoch, Err(abort)).await
            }
            Ok(Outcome::ClientsExcluded { .. }) => {
                self.inner.ctx.metrics.engine_session(
                    "online",
                    "clients_excluded",
                    "client_check_failed",
                );
                Ok(())
            }
            Ok(Outcome::BaselineDone) | Err(_) => Ok(()),
        }
    }

    /// An engine round the pool cannot cover: agrees the round's own key
    /// epoch (or reads it back after a restart), preprocesses exactly what
    /// the program needs (actively secure, dealer-free), runs the program
    /// and retires the epoch.
    async fn run_inline(
        &self,
        session: [u8; 32],
        program: Arc<Program>,
        inputs: SessionInputs,
        round: u64,
    ) -> Result<Result<Result<Outcome, SessionError>, Abort>, EngineError> {
        let epoch = ROUND_EPOCH_BASE | round;
        let keys = match self.epoch_keys(epoch).await? {
            Some(keys) => keys,
            None => match self.agree_keys(epoch).await? {
                Ok(keys) => keys,
                Err(abort) => return Ok(Err(abort)),
            },
        };
        let mut batch_id = [0u8; 16];
        batch_id.copy_from_slice(&session[..16]);
        let batch = match self
            .preprocess(&keys, BatchId(batch_id), program.needs(), false)
            .await?
        {
            Ok(batch) => batch,
            Err(abort) => {
                self.finished(
                    "preprocess",
                    Subject::Batch(BatchId(batch_id)),
                    epoch,
                    Err(&abort),
                )
                .await?;
                self.retire_epoch(epoch).await?;
                return Ok(Err(abort));
            }
        };
        let outcome = self
            .compute(&keys, session, program, vec![batch], inputs, false)
            .await?;
        self.count_outcome(session, epoch, &outcome).await?;
        self.retire_epoch(epoch).await?;
        Ok(Ok(outcome))
    }
}

/// This helper's engine inputs from the stored uploads of an engine job.
fn session_inputs(job: &sealroom_protocol::action::EngineJob) -> Result<SessionInputs, String> {
    use sealroom_core::additive::AdditiveShare;
    use sealroom_core::{RingKind, ShareVec};
    use sealroom_mpc::client::{HelperUpload, UploadShare, decode_sketch};
    let d = &job.descriptor;
    let len = d.vector_len();
    let ring = d.encoding().ring();
    let mut clients = Vec::with_capacity(job.uploads.len());
    for u in &job.uploads {
        let bad = |what: &str| format!("client {}'s stored upload: {what}", u.client_index);
        let share = match (ring, u.seed) {
            (RingKind::Z2_32 | RingKind::Z2_64, true) => {
                let seed = Seed::try_from_slice(u.share.expose()).ok_or_else(|| bad("seed"))?;
                match ring {
                    RingKind::Z2_32 => UploadShare::Z32(AdditiveShare::Seed(seed)),
                    _ => UploadShare::Z64(AdditiveShare::Seed(seed)),
                }
            }
            (RingKind::Z2_32, false) => UploadShare::Z32(AdditiveShare::Correction(ShareVec::new(
                sealroom_core::vector::decode_le::<u32>(u.share.expose(), len)
                    .map_err(|_| bad("vector"))?,
            ))),
            (RingKind::Z2_64, false) => UploadShare::Z64(AdditiveShare::Correction(ShareVec::new(
                sealroom_core::vector::decode_le::<u64>(u.share.expose(), len)
                    .map_err(|_| bad("vector"))?,
            ))),
            (RingKind::Fp61, _) => return Err("engine rounds run over Z_2^32 or Z_2^64".into()),
        };
        let (kappa, tau) = decode_sketch(u.sketch.expose()).ok_or_else(|| bad("sketch"))?;
        clients.push(HelperUpload {
            client_index: u.client_index,
            share,
            kappa,
            tau,
        });
    }
    Ok(SessionInputs {
        helper: Default::default(),
        clients,
        client_context: d.hash().0,
    })
}
