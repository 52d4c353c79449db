//! Deterministic replay (DESIGN.md §6): re-runs one node's state machine
//! for one round from that node's own round archive and checks that every
//! message it sent — descriptors, uploads, receipts, reports, inclusion sets,
//! aggregate shares, results, aborts — and every refusal is reproduced byte
//! for byte (compared by BLAKE3 digest).
//!
//! Replay reads only this node's archive: a helper replays with its own
//! shares, a client with its own input and seed, the coordinator with the
//! aggregate shares it received (whose combination is the round's released
//! aggregate). It never combines two helpers' shares of an input, so it
//! cannot reveal one.

use core::fmt;

use sealroom_core::{QuantSpec, RingKind, Seed};
use sealroom_protocol::action::Action;
use sealroom_protocol::client::{Client, ClientRound};
use sealroom_protocol::coordinator::{Coordinator, CoordinatorRound, Task};
use sealroom_protocol::helper::Helper;
use sealroom_protocol::pb::archived_step::Input;
use sealroom_protocol::{Millis, PartyId, pb};

use crate::NodeError;
use crate::config::{NodeConfig, Role};
use crate::context::NodeContext;
use crate::metrics::Metrics;
use crate::record::{outputs, party};

/// What a replay found.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// Round replayed.
    pub round: u64,
    /// Role of the node.
    pub role: Role,
    /// Node name.
    pub name: String,
    /// Steps replayed.
    pub steps: usize,
    /// Outputs compared.
    pub outputs: usize,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
}

/// Where a replay first differed from the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Step index (from 0).
    pub step: usize,
    /// What the step consumed.
    pub input: &'static str,
    /// What differed.
    pub detail: String,
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.divergence {
            None => write!(
                f,
                "replay of round {} as {} {}: {} steps, {} outputs, identical",
                self.round,
                self.role.as_str(),
                self.name,
                self.steps,
                self.outputs
            ),
            Some(d) => write!(
                f,
                "replay of round {} as {} {} DIVERGES at step {} ({}): {}",
                self.round,
                self.role.as_str(),
                self.name,
                d.step,
                d.input,
                d.detail
            ),
        }
    }
}

/// Why a replay could not run (as opposed to running and diverging).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The node could not be opened.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Nothing is archived for the round.
    #[error(
        "no archive for round {round} in this node's store (archived rounds: {available}); archives older than the newest `archive_rounds` are pruned"
    )]
    NoArchive {
        /// Round asked for.
        round: u64,
        /// Rounds there are.
        available: String,
    },
    /// An archived step is unusable.
    #[error("archived step {step} of round {round}: {reason}")]
    BadStep {
        /// Round.
        round: u64,
        /// Step index.
        step: usize,
        /// What is wrong.
        reason: String,
    },
    /// This role keeps no archive.
    #[error("a node of role {0} runs no protocol state machine")]
    NoStateMachine(&'static str),
}

fn input_name(input: &Input) -> &'static str {
    match input {
        Input::Start(_) => "start",
        Input::Descriptor(_) => "descriptor",
        Input::Upload(_) => "upload",
        Input::Report(_) => "report",
        Input::InclusionSet(_) => "inclusion_set",
        Input::AggregateShare(_) => "aggregate_share",
        Input::Timer(_) => "timer",
        Input::Participate(_) => "participate",
        Input::Receipt(_) => "receipt",
    }
}

/// Opens `config`'s store and replays `round`.
pub async fn replay(config: &NodeConfig, round: u64) -> Result<ReplayReport, ReplayError> {
    let ctx = crate::local::open_context(config, Metrics::new()).await?;
    let result = replay_with(&ctx, round).await;
    ctx.store.close().await;
    result
}

/// Replays `round` with an open context.
pub async fn replay_with(ctx: &NodeContext, round: u64) -> Result<ReplayReport, ReplayError> {
    let steps = ctx
        .store
        .archived_steps(round)
        .await
        .map_err(NodeError::from)?;
    if steps.is_empty() {
        let rounds = ctx.store.archived_rounds().await.map_err(NodeError::from)?;
        let available = match (rounds.first(), rounds.last()) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "none".into(),
        };
        return Err(ReplayError::NoArchive { round, available });
    }
    let mut machine = match ctx.role {
        Role::Coordinator => Machine::Coordinator {
            config: Box::new(crate::coordinator_node::coordinator_config(ctx)?),
            round: None,
        },
        Role::Helper => Machine::Helper(Box::new(Helper::new(crate::helper_node::helper_config(
            ctx,
        )?))),
        Role::Client => Machine::Client {
            client: Box::new(Client::new(crate::client_node::client_config(ctx), None)),
            round: None,
        },
        other => return Err(ReplayError::NoStateMachine(other.as_str())),
    };
    let mut report = ReplayReport {
        round,
        role: ctx.role,
        name: ctx.name.clone(),
        steps: 0,
        outputs: 0,
        divergence: None,
    };
    for (index, (_, step)) in steps.iter().enumerate() {
        let bad = |reason: &str| ReplayError::BadStep {
            round,
            step: index,
            reason: reason.into(),
        };
        let input = step.input.as_ref().ok_or_else(|| bad("no input"))?;
        // A helper's accepted upload is read from its stored uploads.
        let mut resolved = None;
        let input = match input {
            Input::Upload(m) if m.stored => {
                let bytes = ctx
                    .store
                    .helper_upload(round, m.client_index)
                    .await
                    .map_err(NodeError::from)?
                    .ok_or_else(|| {
                        bad("the stored upload it refers to was pruned (helpers keep 16 rounds)")
                    })?;
                &*resolved.insert(Input::Upload(pb::ArchivedMessage {
                    from: m.from.clone(),
                    bytes: bytes.expose().to_vec(),
                    ..Default::default()
                }))
            }
            other => other,
        };
        let now = Millis(step.now_ms);
        let name = input_name(input);
        let stepped = machine.step(round, now, input);
        if let Some(Input::Upload(m)) = resolved.as_mut() {
            zeroize::Zeroize::zeroize(&mut m.bytes);
        }
        let (actions, refused) = stepped.map_err(|r| bad(&r))?;
        let replayed = outputs(&actions, machine.filter(round));
        report.steps += 1;
        report.outputs += step.outputs.len();
        if let Some(detail) = compare(&step.outputs, &replayed, &step.refused, &refused) {
            report.divergence = Some(Divergence {
                step: index,
                input: name,
                detail,
            });
            break;
        }
    }
    Ok(report)
}

enum Machine {
    Coordinator {
        config: Box<sealroom_protocol::coordinator::CoordinatorConfig>,
        round: Option<Box<CoordinatorRound>>,
    },
    Helper(Box<Helper>),
    Client {
        client: Box<Client>,
        round: Option<Box<ClientRound>>,
    },
}

fn parse_ring(name: &str) -> Result<RingKind, String> {
    match name {
        "z2_32" => Ok(RingKind::Z2_32),
        "z2_64" => Ok(RingKind::Z2_64),
        "fp61" => Ok(RingKind::Fp61),
        other => Err(format!("unknown ring {other:?}")),
    }
}

fn sender(bytes: &[u8]) -> Result<PartyId, String> {
    party(bytes).ok_or_else(|| "malformed party id".to_string())
}

fn envelope(bytes: &[u8]) -> Result<pb::SignedEnvelope, String> {
    prost::Message::decode(bytes).map_err(|e| format!("archived envelope does not decode: {e}"))
}

impl Machine {
    /// Helpers' timers touch every open round: only this round's outputs
    /// are compared.
    fn filter(&self, round: u64) -> Option<u64> {
        matches!(self, Machine::Helper(_)).then_some(round)
    }

    /// Feeds one archived input; returns the actions and the refusal text.
    fn step(
        &mut self,
        round_id: u64,
        now: Millis,
        input: &Input,
    ) -> Result<(Vec<Action>, String), String> {
        let done = |r: Result<Vec<Action>, String>| match r {
            Ok(actions) => (actions, String::new()),
            Err(refused) => (Vec::new(), refused),
        };
        match (self, input) {
            (Machine::Coordinator { config, round }, Input::Start(start)) => {
                let spec = QuantSpec::new(
                    i8::try_from(start.scale_bits).map_err(|_| "scale bits out of range")?,
                    start.clip,
                    u8::try_from(start.bits).map_err(|_| "bits out of range")?,
                )
                .map_err(|e| e.to_string())?;
                let task = Task {
                    name: start.task_name.clone(),
                    vector_len: start.vector_len,
                    ring: parse_ring(&start.ring)?,
                    spec,
                    params: start.params.clone(),
                    min_clients: (start.min_clients > 0).then_some(start.min_clients as usize),
                };
                let clients = start
                    .clients
                    .iter()
                    .map(|c| sender(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let nonce: [u8; 32] = start
                    .nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| "nonce is not 32 bytes")?;
                let mut coordinator = Coordinator::new((**config).clone(), start.round_id);
                Ok(done(
                    match coordinator.start_round(now, task, clients, nonce) {
                        Ok((r, actions)) => {
                            *round = Some(Box::new(r));
                            Ok(actions)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                ))
            }
            (Machine::Coordinator { round, .. }, input) => {
                let r = round
                    .as_mut()
                    .ok_or("a coordinator step before the round started")?;
                let result = match input {
                    Input::Report(m) => r.on_report(now, sender(&m.from)?, &envelope(&m.bytes)?),
                    Input::AggregateShare(m) => r.on_aggregate(now, sender(&m.from)?, &m.bytes),
                    Input::Timer(_) => Ok(r.on_timer(now)),
                    other => {
                        return Err(format!(
                            "a coordinator never consumes {}",
                            input_name(other)
                        ));
                    }
                };
                Ok(done(result.map_err(|e| e.to_string())))
            }
            (Machine::Helper(helper), input) => {
                let result = match input {
                    Input::Descriptor(env) => helper.on_descriptor(now, env),
                    Input::Upload(m) => helper.on_upload(now, sender(&m.from)?, &m.bytes),
                    Input::InclusionSet(env) => helper.on_inclusion_set(now, env),
                    Input::Timer(_) => Ok(helper.on_timer(now)),
                    other => return Err(format!("a helper never consumes {}", input_name(other))),
                };
                let _ = round_id;
                Ok(done(result.map_err(|e| e.to_string())))
            }
            (Machine::Client { client, round }, Input::Participate(p)) => {
                let descriptor = p.descriptor.as_ref().ok_or("no descriptor")?;
                if p.input.len() % 8 != 0 {
                    return Err("input is not whole f64 values".into());
                }
                let values: zeroize::Zeroizing<Vec<f64>> = zeroize::Zeroizing::new(
                    p.input
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                );
                let seed: [u8; 32] = p
                    .seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| "seed is not 32 bytes")?;
                let seed = Seed::from_bytes(seed);
                Ok(done(
                    match client.participate(now, descriptor, &values, None, &seed) {
                        Ok((r, actions)) => {
                            *round = Some(Box::new(r));
                            Ok(actions)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                ))
            }
            (Machine::Client { round, .. }, Input::Receipt(m)) => {
                let r = round.as_mut().ok_or("a receipt before participation")?;
                Ok(done(
                    r.on_receipt(sender(&m.from)?, &envelope(&m.bytes)?)
                        .map(|()| Vec::new())
                        .map_err(|e| e.to_string()),
                ))
            }
            (Machine::Client { .. }, other) => {
                Err(format!("a client never consumes {}", input_name(other)))
            }
        }
    }
}

fn short(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn describe(o: &pb::ArchivedOutput) -> String {
    format!(
        "{} to {}… (digest {}…)",
        o.kind,
        short(&o.to),
        short(&o.digest)
    )
}

/// The first difference between what was archived and what the replay
/// produced, if any.
fn compare(
    archived: &[pb::ArchivedOutput],
    replayed: &[pb::ArchivedOutput],
    archived_refusal: &str,
    replayed_refusal: &str,
) -> Option<String> {
    if archived_refusal != replayed_refusal {
        return Some(format!(
            "recorded {}, replay {}",
            if archived_refusal.is_empty() {
                "accepted".to_string()
            } else {
                format!("refused ({archived_refusal})")
            },
            if replayed_refusal.is_empty() {
                "accepted".to_string()
            } else {
                format!("refused ({replayed_refusal})")
            }
        ));
    }
    for (i, pair) in archived.iter().zip(replayed).enumerate() {
        if pair.0 != pair.1 {
            return Some(format!(
                "output {i}: recorded {}, replayed {}",
                describe(pair.0),
                describe(pair.1)
            ));
        }
    }
    if archived.len() != replayed.len() {
        return Some(format!(
            "recorded {} outputs, replay produced {}",
            archived.len(),
            replayed.len()
        ));
    }
    None
}
