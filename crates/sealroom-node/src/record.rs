//! What a step leaves behind (DESIGN.md §6): the replay archive's form of
//! each input a state machine consumed and of what it sent, and the signed
//! artifacts for the audit log — one conversion each way, shared by the
//! driver that writes the archive and the replay that reads it.

use std::sync::Arc;

use sealroom_core::Seed;
use sealroom_protocol::action::{Action, Message, MessageKind, SecretBytes};
use sealroom_protocol::coordinator::Task;
use sealroom_protocol::descriptor::{EngineRef, encoding_to_pb, ring_of_pb};
use sealroom_protocol::machine::{
    Artifact, ClientInput, EngineOutcome, EngineResult, Inbound, Input, Participation, SitOut,
    Start,
};
use sealroom_protocol::{PartyId, pb};
use sealroom_store::audit::output_digest;
use sealroom_store::{AuditKind, AuditRecord};

/// Rounds whose replay archive a node keeps by default.
/// (A helper's archive refers to its stored uploads, which it keeps for
/// [`crate::helper_node::KEEP_ROUNDS`] rounds: the same number.)
pub const DEFAULT_ARCHIVE_ROUNDS: usize = 16;

/// The archive's message kind.
pub fn kind_to_pb(kind: MessageKind) -> pb::MessageKind {
    match kind {
        MessageKind::Descriptor => pb::MessageKind::Descriptor,
        MessageKind::Upload => pb::MessageKind::Upload,
        MessageKind::Receipt => pb::MessageKind::Receipt,
        MessageKind::Report => pb::MessageKind::Report,
        MessageKind::InclusionSet => pb::MessageKind::InclusionSet,
        MessageKind::AggregateShare => pb::MessageKind::AggregateShare,
        MessageKind::Result => pb::MessageKind::Result,
        MessageKind::Abort => pb::MessageKind::Abort,
        MessageKind::SitOut => pb::MessageKind::SitOut,
    }
}

/// The name of an archived message kind ("upload"), for people.
pub fn kind_name(kind: i32) -> &'static str {
    match pb::MessageKind::try_from(kind) {
        Ok(pb::MessageKind::Descriptor) => MessageKind::Descriptor.as_str(),
        Ok(pb::MessageKind::Upload) => MessageKind::Upload.as_str(),
        Ok(pb::MessageKind::Receipt) => MessageKind::Receipt.as_str(),
        Ok(pb::MessageKind::Report) => MessageKind::Report.as_str(),
        Ok(pb::MessageKind::InclusionSet) => MessageKind::InclusionSet.as_str(),
        Ok(pb::MessageKind::AggregateShare) => MessageKind::AggregateShare.as_str(),
        Ok(pb::MessageKind::Result) => MessageKind::Result.as_str(),
        Ok(pb::MessageKind::Abort) => MessageKind::Abort.as_str(),
        Ok(pb::MessageKind::SitOut) => MessageKind::SitOut.as_str(),
        Ok(pb::MessageKind::Unspecified) | Err(_) => "unknown",
    }
}

/// The archived form of an input, as it was before the state machine took
/// it. An upload keeps its bytes by reference (the buffer is shared, not
/// copied); what is finally written depends on the outcome (see
/// [`archived_step`]).
#[derive(Debug)]
pub enum Archived {
    /// A round start.
    Start(pb::ArchivedStart),
    /// A message from a peer.
    Inbound {
        /// Sender.
        from: PartyId,
        /// What it sent.
        msg: Inbound,
    },
    /// A client's input (its own secret: the archive stays on its disk).
    Participate(pb::ArchivedParticipation),
    /// A timer.
    Timer,
    /// A helper's engine result.
    Engine(pb::ArchivedEngineResult),
}

impl Drop for Archived {
    fn drop(&mut self) {
        if let Archived::Participate(p) = self {
            zeroize::Zeroize::zeroize(&mut p.input);
            zeroize::Zeroize::zeroize(&mut p.seed);
        }
    }
}

/// What to keep of `input` for the archive.
pub fn archived_input(input: &Input) -> Archived {
    match input {
        Input::Start(start) => Archived::Start(archived_start(start)),
        Input::Inbound { from, msg } => Archived::Inbound {
            from: *from,
            msg: msg.clone(),
        },
        Input::Participate(p) => Archived::Participate(archived_participation(p)),
        Input::Timer => Archived::Timer,
        Input::Engine(r) => Archived::Engine(archived_engine(r)),
    }
}

fn archived_engine(r: &EngineResult) -> pb::ArchivedEngineResult {
    let (outputs, failure) = r.outcome.to_wire();
    pb::ArchivedEngineResult {
        round_id: r.round,
        program_hash: r.program_hash.to_vec(),
        outputs,
        failure,
    }
}

fn engine_of(e: &pb::ArchivedEngineResult) -> Result<EngineResult, BadArchive> {
    let program_hash: [u8; 32] = e
        .program_hash
        .as_slice()
        .try_into()
        .map_err(|_| bad("engine program hash is not 32 bytes"))?;
    let outcome = EngineOutcome::from_wire(&e.outputs, e.failure.as_ref())
        .ok_or_else(|| bad("engine outputs are not whole i128 values"))?;
    Ok(EngineResult {
        round: e.round_id,
        program_hash,
        outcome,
    })
}

fn archived_start(start: &Start) -> pb::ArchivedStart {
    let task = &start.task;
    pb::ArchivedStart {
        round_id: 0,
        task_name: task.name.clone(),
        vector_len: task.vector_len,
        ring: encoding_to_pb(task.ring) as i32,
        scale_bits: i32::from(task.spec.scale_bits()),
        clip: task.spec.clip(),
        bits: u32::from(task.spec.bits()),
        params: task.params.clone(),
        min_clients: task.min_clients.map_or(0, |m| m as u32),
        clients: start.clients.iter().map(|c| c.0.to_vec()).collect(),
        nonce: start.nonce.to_vec(),
        engine: task.engine.as_ref().map(|e| pb::EngineBinding {
            program: e.program.clone(),
            version: e.version,
        }),
    }
}

fn archived_participation(p: &Participation) -> pb::ArchivedParticipation {
    let (input, sat_out, subject) = match &p.input {
        Ok(values) => (pack_input(values.expose()), 0, String::new()),
        Err(s) => (Vec::new(), s.reason as i32, s.subject.clone()),
    };
    pb::ArchivedParticipation {
        round_id: p.round,
        input,
        seed: p.randomness.expose_bytes().to_vec(),
        sat_out,
        sat_out_subject: subject,
    }
}

/// An input vector as archived: packed little-endian f64.
pub fn pack_input(input: &[f64]) -> Vec<u8> {
    input.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The archive row of a step of `round`: the input (an accepted upload by
/// reference to the helper's stored copy, a refused input by its kind,
/// sender and digest only), `now`, what the step sent in this round, and
/// the refusal code.
pub fn archived_step(
    archived: &Archived,
    round: u64,
    now_ms: u64,
    actions: &[Action],
    refused: Option<pb::RefusalCode>,
) -> pb::ArchivedStep {
    use pb::archived_step::Input as A;
    let stored_upload = actions.iter().find_map(|a| match a {
        Action::Persist(sealroom_protocol::action::Persist::HelperUpload {
            client_index, ..
        }) => Some(*client_index),
        _ => None,
    });
    let (input, refused_digest) = match archived {
        Archived::Start(start) => (
            A::Start(pb::ArchivedStart {
                round_id: round,
                ..start.clone()
            }),
            Vec::new(),
        ),
        Archived::Inbound { from, msg } => {
            let kind = kind_to_pb(msg.kind()) as i32;
            let base = pb::ArchivedInbound {
                from: from.0.to_vec(),
                kind,
                ..Default::default()
            };
            match (refused, stored_upload) {
                (Some(_), _) => (
                    A::Inbound(base),
                    output_digest(&msg.wire_bytes()).0.to_vec(),
                ),
                (None, Some(client_index)) => (
                    A::Inbound(pb::ArchivedInbound {
                        stored: true,
                        client_index,
                        ..base
                    }),
                    Vec::new(),
                ),
                (None, None) => (
                    A::Inbound(pb::ArchivedInbound {
                        bytes: msg.wire_bytes().to_vec(),
                        ..base
                    }),
                    Vec::new(),
                ),
            }
        }
        Archived::Participate(p) => (A::Participate(p.clone()), Vec::new()),
        Archived::Timer => (A::Timer(true), Vec::new()),
        Archived::Engine(e) => (A::Engine(e.clone()), Vec::new()),
    };
    pb::ArchivedStep {
        now_ms,
        input: Some(input),
        outputs: outputs(actions, round),
        refused: refused.unwrap_or(pb::RefusalCode::None) as i32,
        refused_digest,
    }
}

/// The archived form of the messages `actions` send in `round`: recipient,
/// kind and digest — never the bytes. A message shared by many recipients is
/// encoded and hashed once.
pub fn outputs(actions: &[Action], round: u64) -> Vec<pb::ArchivedOutput> {
    let mut last_shared: Option<(&Arc<pb::SignedEnvelope>, Vec<u8>)> = None;
    let mut out = Vec::new();
    for action in actions {
        let Action::Send {
            to,
            round: r,
            message,
        } = action
        else {
            continue;
        };
        if *r != round {
            continue;
        }
        let digest = match (message.shared(), &last_shared) {
            (Some(env), Some((seen, digest))) if Arc::ptr_eq(env, seen) => digest.clone(),
            (Some(env), _) => {
                let digest = output_digest(&message.wire_bytes()).0.to_vec();
                last_shared = Some((env, digest.clone()));
                digest
            }
            (None, _) => output_digest(&message.wire_bytes()).0.to_vec(),
        };
        out.push(pb::ArchivedOutput {
            to: to.0.to_vec(),
            kind: kind_to_pb(message.kind()) as i32,
            digest,
        });
    }
    out
}

/// The audit records of a step in `round`: the signed artifacts it
/// accepted, then those it sent (each once, though a descriptor or result
/// goes to many parties). Shares never are.
pub fn audit_records(accepted: &[Artifact], actions: &[Action], round: u64) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = accepted
        .iter()
        .filter(|a| a.round == round)
        .filter_map(|a| {
            Some(AuditRecord {
                kind: AuditKind::of(a.kind)?,
                round_id: Some(a.round),
                artifact: a.envelope.clone(),
            })
        })
        .collect();
    let mut seen: Vec<&Arc<pb::SignedEnvelope>> = Vec::new();
    for action in actions {
        let Action::Send {
            message, round: r, ..
        } = action
        else {
            continue;
        };
        if *r != round {
            continue;
        }
        if let Some(env) = message.shared() {
            if seen.iter().any(|s| Arc::ptr_eq(s, env)) {
                continue;
            }
            seen.push(env);
        }
        let env = match message {
            Message::Descriptor(env) | Message::Result(env) | Message::Abort(env) => &**env,
            Message::Receipt(env) | Message::Report(env) | Message::InclusionSet(env) => env,
            _ => continue,
        };
        let Some(kind) = AuditKind::of(message.kind()) else {
            continue;
        };
        if records.iter().any(|r| &r.artifact == env) {
            continue;
        }
        records.push(AuditRecord {
            kind,
            round_id: Some(round),
            artifact: env.clone(),
        });
    }
    records
}

/// Why an archived step cannot be turned back into an input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArchive(pub String);

fn bad(reason: impl Into<String>) -> BadArchive {
    BadArchive(reason.into())
}

/// The input an archived step records, back in the form the state machine
/// takes (an accepted upload's bytes come from `stored_upload`, the
/// helper's stored copy). `None` for a refused step: a refusal changed
/// nothing, and its input was recorded by digest only.
pub fn input_of(
    step: &pb::ArchivedStep,
    stored_upload: Option<SecretBytes>,
) -> Result<Option<Input>, BadArchive> {
    use pb::archived_step::Input as A;
    if step.refused != pb::RefusalCode::None as i32 {
        return Ok(None);
    }
    let input = step.input.as_ref().ok_or_else(|| bad("no input"))?;
    Ok(Some(match input {
        A::Start(s) => Input::Start(start_of(s)?),
        A::Inbound(m) => {
            let from = PartyId::from_slice(&m.from).ok_or_else(|| bad("malformed sender"))?;
            let bytes = if m.stored {
                stored_upload.ok_or_else(|| {
                    bad("the stored upload it refers to was pruned (helpers keep 16 rounds)")
                })?
            } else {
                SecretBytes::new(m.bytes.clone())
            };
            let envelope = || {
                prost::Message::decode(bytes.expose())
                    .map_err(|e| bad(format!("archived envelope does not decode: {e}")))
            };
            let msg = match pb::MessageKind::try_from(m.kind) {
                Ok(pb::MessageKind::Descriptor) => Inbound::Descriptor(envelope()?),
                Ok(pb::MessageKind::Upload) => Inbound::Upload(bytes),
                Ok(pb::MessageKind::Receipt) => Inbound::Receipt(envelope()?),
                Ok(pb::MessageKind::Report) => Inbound::Report(envelope()?),
                Ok(pb::MessageKind::InclusionSet) => Inbound::InclusionSet(envelope()?),
                Ok(pb::MessageKind::AggregateShare) => Inbound::AggregateShare(bytes),
                Ok(pb::MessageKind::SitOut) => Inbound::SitOut(bytes.expose().to_vec()),
                _ => return Err(bad(format!("unknown message kind {}", m.kind))),
            };
            Input::Inbound { from, msg }
        }
        A::Participate(p) => Input::Participate(participation_of(p)?),
        A::Timer(_) => Input::Timer,
        A::Engine(e) => Input::Engine(engine_of(e)?),
    }))
}

fn start_of(s: &pb::ArchivedStart) -> Result<Start, BadArchive> {
    let spec = sealroom_core::QuantSpec::new(
        i8::try_from(s.scale_bits).map_err(|_| bad("scale bits out of range"))?,
        s.clip,
        u8::try_from(s.bits).map_err(|_| bad("bits out of range"))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    let task = Task {
        engine: s.engine.as_ref().map(|e| EngineRef {
            program: e.program.clone(),
            version: e.version,
        }),
        name: s.task_name.clone(),
        vector_len: s.vector_len,
        ring: ring_of_pb(s.ring).ok_or_else(|| bad(format!("unknown ring {}", s.ring)))?,
        spec,
        params: s.params.clone(),
        min_clients: (s.min_clients > 0).then_some(s.min_clients as usize),
    };
    let clients = s
        .clients
        .iter()
        .map(|c| PartyId::from_slice(c).ok_or_else(|| bad("malformed client id")))
        .collect::<Result<Vec<_>, _>>()?;
    let nonce: [u8; 32] = s
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| bad("nonce is not 32 bytes"))?;
    Ok(Start {
        task,
        clients,
        nonce,
    })
}

fn participation_of(p: &pb::ArchivedParticipation) -> Result<Participation, BadArchive> {
    let seed: [u8; 32] = p
        .seed
        .as_slice()
        .try_into()
        .map_err(|_| bad("seed is not 32 bytes"))?;
    let input = match pb::SitOutReason::try_from(p.sat_out) {
        Ok(pb::SitOutReason::Unspecified) => {
            if !p.input.len().is_multiple_of(8) {
                return Err(bad("input is not whole f64 values"));
            }
            Ok(ClientInput::new(
                p.input
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ))
        }
        Ok(reason) => Err(SitOut::new(reason, &p.sat_out_subject)),
        Err(_) => return Err(bad(format!("unknown sit-out reason {}", p.sat_out))),
    };
    Ok(Participation {
        round: p.round_id,
        input,
        randomness: Seed::from_bytes(seed),
    })
}
