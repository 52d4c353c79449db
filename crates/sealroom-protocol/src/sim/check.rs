//! Checks each round's outcome against the simulator's own account of
//! who uploaded in time and what they held.

use super::world::{Behaviour, RoundState, World};
use super::{RoundReport, SimError, SimOutcome, plaintext_sum};
use crate::coordinator::{Outcome, sum_digest};
use crate::pb;
use crate::pb::AbortReason;

impl World<'_> {
    /// Checks the round's outcome against the simulator's own account.
    pub(super) fn check(&self, state: &RoundState) -> Result<RoundReport, SimError> {
        let config = self.config;
        let round_id = state.round_id;
        let violation = |detail: String| SimError::Violation {
            round: round_id,
            detail,
        };
        let inclusion_helpers: Option<Vec<u32>> = match &state.inclusion_set {
            Some(env) => Some(
                self.coordinator_key
                    .verify::<pb::InclusionSet>(env)
                    .map_err(|e| violation(format!("the inclusion set does not verify: {e}")))?
                    .message()
                    .helpers
                    .clone(),
            ),
            None => None,
        };
        let outcome = state
            .outcome
            .as_ref()
            .ok_or_else(|| violation("the round ended without an outcome".into()))?;

        let alive: Vec<usize> = (0..config.helpers).filter(|&h| !state.down[h]).collect();
        let down: Vec<u32> = (0..config.helpers)
            .filter(|&h| state.down[h])
            .map(|h| h as u32)
            .collect();
        let needed = config.threshold.unwrap_or(config.helpers);
        // The helper set the coordinator's policy must pick among the live
        // ones: the most clients in common, with at least `needed` helpers —
        // or, in threshold mode when more than `needed` are alive, at least
        // `needed + 1`, so that the answers can be checked.
        let redundant = match config.threshold {
            Some(t) if alive.len() > t => t + 1,
            _ => needed,
        };
        let best = best_common(&state.held, &alive, redundant);

        let (sim_outcome, included) = match outcome {
            Outcome::Completed(summary) => {
                if alive.len() < needed {
                    return Err(violation(format!(
                        "completed with only {} of the {needed} helpers needed alive",
                        alive.len()
                    )));
                }
                let chosen: Vec<usize> = inclusion_helpers
                    .ok_or_else(|| violation("completed without an inclusion set".into()))?
                    .iter()
                    .map(|&h| h as usize)
                    .collect();
                if chosen.iter().any(|h| state.down[*h]) || chosen.len() < redundant {
                    return Err(violation(format!(
                        "inclusion set names helpers {chosen:?}; live helpers are {alive:?}"
                    )));
                }
                let expected = common(&state.held, &chosen);
                if summary.included != expected {
                    return Err(violation(format!(
                        "{} clients included; the chosen helpers {chosen:?} all hold {}",
                        summary.included.len(),
                        expected.len()
                    )));
                }
                if Some(expected.len()) != best {
                    return Err(violation(format!(
                        "the inclusion set has {} clients, but a helper set with {best:?} was available",
                        expected.len()
                    )));
                }
                if expected.len() < config.min_clients {
                    return Err(violation(format!(
                        "released a sum over {} clients, below min_clients {}",
                        expected.len(),
                        config.min_clients
                    )));
                }
                let answering: Vec<usize> = summary
                    .answering_helpers
                    .iter()
                    .map(|&h| h as usize)
                    .collect();
                if answering != chosen {
                    return Err(violation(format!(
                        "helpers {answering:?} answered, {chosen:?} were asked"
                    )));
                }
                let sum = plaintext_sum(&config.spec, &state.inputs, &summary.included)
                    .ok_or_else(|| {
                        violation("the included clients' inputs have no plaintext sum".into())
                    })?;
                if summary.sum != sum {
                    return Err(violation(
                        "the released sum differs from the plaintext sum of the included clients' quantized inputs".into(),
                    ));
                }
                let exact = summary.values.len() == sum.len()
                    && summary
                        .values
                        .iter()
                        .zip(&sum)
                        .all(|(v, &q)| v.to_bits() == config.spec.dequantize(q).to_bits());
                if !exact {
                    return Err(violation(
                        "the released values are not the dequantized exact sum".into(),
                    ));
                }
                let record = self
                    .coordinator_key
                    .verify::<pb::RoundResult>(&summary.result)
                    .map_err(|e| violation(format!("the result record does not verify: {e}")))?;
                let r = record.message();
                if r.round_id != round_id
                    || r.included_clients != expected
                    || r.sum_digest != sum_digest(&sum).0
                    || r.sum_length != sum.len() as u64
                    || r.unverified != (config.threshold.is_some() && chosen.len() == needed)
                {
                    return Err(violation(
                        "the signed result record does not match the round".into(),
                    ));
                }
                (SimOutcome::Completed, expected.len())
            }
            Outcome::Aborted(abort) => {
                let record = self
                    .coordinator_key
                    .verify::<pb::AbortRecord>(&abort.record)
                    .map_err(|e| violation(format!("the abort record does not verify: {e}")))?;
                let r = record.message();
                if r.round_id != round_id || r.reason != abort.reason as i32 {
                    return Err(violation(
                        "the signed abort record does not match the round".into(),
                    ));
                }
                let expected_reason = if config.threshold.is_none() && !down.is_empty() {
                    AbortReason::HelperMissing
                } else if alive.len() < needed {
                    AbortReason::Deadline
                } else if config.threshold.is_some()
                    && alive.len() == needed
                    && !config.allow_unverified
                {
                    AbortReason::Unverifiable
                } else if best.is_some_and(|b| b < config.min_clients) {
                    AbortReason::NotEnoughClients
                } else {
                    return Err(violation(format!(
                        "aborted ({:?}: {}) although {best:?} clients were held by {} live helpers",
                        abort.reason,
                        abort.detail,
                        alive.len()
                    )));
                };
                if abort.reason != expected_reason {
                    return Err(violation(format!(
                        "aborted with {:?} ({}), expected {expected_reason:?}",
                        abort.reason, abort.detail
                    )));
                }
                if abort.missing_helpers != down {
                    return Err(violation(format!(
                        "abort names missing helpers {:?}; down were {down:?}",
                        abort.missing_helpers
                    )));
                }
                if expected_reason == AbortReason::NotEnoughClients
                    && Some(r.included_clients as usize) != best
                {
                    return Err(violation(format!(
                        "abort record counts {} clients; the best helper set held {best:?}",
                        r.included_clients
                    )));
                }
                (
                    SimOutcome::Aborted {
                        reason: abort.reason,
                        detail: abort.detail.clone(),
                    },
                    r.included_clients as usize,
                )
            }
        };

        // A receipt means the share is stored: the sampled clients hold one
        // from exactly the helpers that accepted their upload.
        for (&c, receipts) in &state.receipts {
            for (h, receipt) in receipts.iter().enumerate() {
                if *receipt != state.held[h][c] {
                    return Err(violation(format!(
                        "client {c} {} a receipt from helper {h}, which {} its upload in time",
                        if *receipt { "holds" } else { "lacks" },
                        if state.held[h][c] { "got" } else { "never got" },
                    )));
                }
            }
        }

        let on_time = (0..config.clients)
            .filter(|&c| alive.iter().all(|&h| state.held[h][c]))
            .count();
        let count = |b: fn(&Behaviour) -> bool| state.behaviour.iter().filter(|x| b(x)).count();
        Ok(RoundReport {
            round_id,
            outcome: sim_outcome,
            included,
            on_time,
            no_shows: count(|b| *b == Behaviour::NoShow),
            late: count(|b| matches!(b, Behaviour::Late(_))),
            late_uploads_refused: state.late_refused,
            helpers_down: down.iter().map(|&h| h as usize).collect(),
            messages: state.messages,
        })
    }

    /// A helper's signed report must list exactly the clients whose uploads
    /// reached it in time.
    pub(super) fn check_report(
        &self,
        state: &RoundState,
        h: usize,
        envelope: &pb::SignedEnvelope,
    ) -> Result<(), SimError> {
        let violation = |detail: String| SimError::Violation {
            round: state.round_id,
            detail,
        };
        let verified = self.helpers[h]
            .key
            .verify::<pb::HelperReport>(envelope)
            .map_err(|e| violation(format!("helper {h}'s report does not verify: {e}")))?;
        let expected: Vec<u32> = members(&state.held[h]);
        if verified.message().received != expected {
            return Err(violation(format!(
                "helper {h} reported {} clients, but {} uploads reached it in time",
                verified.message().received.len(),
                expected.len()
            )));
        }
        Ok(())
    }
}

fn members(held: &[bool]) -> Vec<u32> {
    held.iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(c, _)| c as u32)
        .collect()
}

/// Clients every helper in `helpers` holds.
fn common(held: &[Vec<bool>], helpers: &[usize]) -> Vec<u32> {
    let n = held.first().map_or(0, Vec::len);
    (0..n)
        .filter(|&c| helpers.iter().all(|&h| held[h][c]))
        .map(|c| c as u32)
        .collect()
}

/// The most clients any set of at least `needed` of the `alive` helpers holds
/// in common; `None` if fewer than `needed` helpers are alive.
fn best_common(held: &[Vec<bool>], alive: &[usize], needed: usize) -> Option<usize> {
    let k = alive.len();
    (1u32..(1 << k))
        .filter(|mask| mask.count_ones() as usize >= needed)
        .map(|mask| {
            let set: Vec<usize> = (0..k)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| alive[i])
                .collect();
            common(held, &set).len()
        })
        .max()
}
