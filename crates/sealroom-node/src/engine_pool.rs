//! The preprocessing pool in engine rounds (issue #14; docs/mpc.md "The
//! pool in engine rounds").
//!
//! An engine round opens with a one-message exchange between the three
//! helpers: each sends its pool status (its current key epoch, when it
//! agreed it, the highest epoch it ever held, its clock, its configured
//! epoch lifetime and its unconsumed attested batches). Every helper then
//! holds the same three statuses and derives alike, with no further
//! message:
//!
//! * **which batches the round consumes**: the oldest batches that all three
//!   statuses list identically (id, epoch, digest, counts), enough to cover
//!   the program's needs — then the round runs on attested pool material
//!   and nothing is preprocessed inside the aggregation window; otherwise
//!   (a young federation, a drained pool) it preprocesses inline, as before;
//! * **what is produced next**, after the round released its outputs: batches
//!   of exactly the round's needs until the pool holds
//!   [`POOL_ROUNDS_AHEAD`] rounds' worth, so the next round of the same
//!   program runs from the pool;
//! * **whether the key epoch rotates**: when there is no common epoch, or
//!   the current one is older than the smallest configured lifetime, the
//!   helpers agree fresh keys numbered above every epoch any of them held,
//!   produce under them and retire the older epochs (their unused material
//!   expires with them).
//!
//! A helper that lies in its status (claims batches it lacks, sends the two
//! others different statuses) can only make the round abort — the session's
//! hello compares the consumed batches' ids and digests — which a corrupted
//! helper can always do. Batches only some helpers hold (a crash between
//! attestation and storage) are never selected and expire with their epoch.

use sealroom_mpc::error::{Abort, AbortReason};
use sealroom_mpc::machine::HelperIndex;
use sealroom_mpc::material::{BatchId, Counts};
use sealroom_protocol::pb;
use zeroize::Zeroizing;

use super::{Engine, EngineError, ROUND_EPOCH_BASE, add_counts};

/// Rounds' worth of material the helpers keep in the pool after a round.
pub const POOL_ROUNDS_AHEAD: usize = 2;

/// Batches a pool status lists at most (the oldest).
pub const MAX_STATUS_BATCHES: usize = 64;

/// Largest pool status accepted from a peer, bytes.
pub const MAX_STATUS_BYTES: usize = 16 * 1024;

/// The three helpers' pool statuses at the start of one engine round.
#[derive(Clone, Debug)]
pub struct PoolView {
    statuses: [pb::EnginePoolStatus; 3],
}

/// What the helpers do with the key epoch after the round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Keep producing under this epoch.
    Keep(u64),
    /// Agree this new epoch, produce under it, retire the older ones.
    New(u64),
}

fn counts_of(b: &pb::EngineBatch) -> Counts {
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Counts {
        triples: n(b.triples),
        bits: n(b.bits),
        randoms: n(b.randoms),
        masks: [0, 1, 2].map(|k| n(b.masks.get(k).copied().unwrap_or(0))),
    }
}

/// `need` times `n`, saturating.
pub fn times(need: &Counts, n: usize) -> Counts {
    Counts {
        triples: need.triples.saturating_mul(n),
        bits: need.bits.saturating_mul(n),
        randoms: need.randoms.saturating_mul(n),
        masks: need.masks.map(|m| m.saturating_mul(n)),
    }
}

fn is_zero(c: &Counts) -> bool {
    c.triples == 0 && c.bits == 0 && c.randoms == 0 && c.masks == [0; 3]
}

/// Whether `a` and `b` describe the same batch (the sender field aside).
fn same_batch(a: &pb::EngineBatch, b: &pb::EngineBatch) -> bool {
    a.epoch == b.epoch
        && a.batch_id == b.batch_id
        && a.digest == b.digest
        && counts_of(a) == counts_of(b)
}

/// Decodes and checks the pool status helper `from` sent for round
/// `round` of `federation` ([`MAX_STATUS_BYTES`] at most, then as
/// `check_status`): a description of what is wrong otherwise.
pub fn decode_status(
    bytes: &[u8],
    federation: &str,
    round: u64,
    from: HelperIndex,
) -> Result<pb::EnginePoolStatus, String> {
    if bytes.len() > MAX_STATUS_BYTES {
        return Err(format!("{} bytes, above {MAX_STATUS_BYTES}", bytes.len()));
    }
    let status = <pb::EnginePoolStatus as prost::Message>::decode(bytes)
        .map_err(|e| format!("undecodable: {e}"))?;
    check_status(&status, federation, round, from)?;
    Ok(status)
}

/// Checks a peer's status: its own federation and round, well-formed batch
/// descriptions of its stated epoch, at most [`MAX_STATUS_BATCHES`].
fn check_status(
    s: &pb::EnginePoolStatus,
    federation: &str,
    round: u64,
    from: HelperIndex,
) -> Result<(), String> {
    if s.federation_id != federation {
        return Err("another federation".into());
    }
    if s.round_id != round {
        return Err(format!("round {} instead of {round}", s.round_id));
    }
    if s.epoch >= ROUND_EPOCH_BASE || s.highest_epoch >= ROUND_EPOCH_BASE {
        return Err("a pool epoch in the range of round epochs".into());
    }
    if s.batches.len() > MAX_STATUS_BATCHES {
        return Err(format!("{} batches listed", s.batches.len()));
    }
    if s.epoch == 0 && !s.batches.is_empty() {
        return Err("batches without a key epoch".into());
    }
    for b in &s.batches {
        if b.epoch != s.epoch
            || b.batch_id.len() != 16
            || b.digest.len() != 32
            || b.masks.len() != 3
            || b.helper != from.index() as u32
            || b.federation_id != federation
        {
            return Err("a malformed batch description".into());
        }
    }
    Ok(())
}

impl PoolView {
    /// The view from the three statuses (index = helper).
    pub fn new(statuses: [pb::EnginePoolStatus; 3]) -> PoolView {
        PoolView { statuses }
    }

    /// The key epoch all three helpers hold, if any.
    pub fn common_epoch(&self) -> Option<u64> {
        let e = self.statuses[0].epoch;
        (e != 0 && self.statuses.iter().all(|s| s.epoch == e)).then_some(e)
    }

    /// The batches all three list identically, in helper 0's order (oldest
    /// first).
    fn common_batches(&self) -> Vec<&pb::EngineBatch> {
        if self.common_epoch().is_none() {
            return Vec::new();
        }
        self.statuses[0]
            .batches
            .iter()
            .filter(|b| {
                self.statuses[1..]
                    .iter()
                    .all(|s| s.batches.iter().any(|o| same_batch(b, o)))
            })
            .collect()
    }

    /// The pool batches this round consumes: the oldest common batches that
    /// cover `need`, under the common epoch; `None` when the pool cannot
    /// cover it (the round preprocesses inline).
    pub fn select(&self, need: &Counts) -> Option<(u64, Vec<BatchId>)> {
        let epoch = self.common_epoch()?;
        let mut have = Counts::default();
        let mut ids = Vec::new();
        for b in self.common_batches() {
            if have.covers(need) {
                break;
            }
            have = add_counts(&have, &super::pool_counts(&counts_of(b)));
            let mut id = [0u8; 16];
            id.copy_from_slice(&b.batch_id);
            ids.push(BatchId(id));
        }
        have.covers(need).then_some((epoch, ids))
    }

    /// What the common batches other than `used` hold together.
    pub fn remaining(&self, used: &[BatchId]) -> Counts {
        let mut have = Counts::default();
        for b in self.common_batches() {
            if !used.iter().any(|u| u.0[..] == b.batch_id[..]) {
                have = add_counts(&have, &super::pool_counts(&counts_of(b)));
            }
        }
        have
    }

    /// Whether the key epoch rotates after this round, and to which.
    pub fn rotation(&self) -> Rotation {
        let next = self
            .statuses
            .iter()
            .map(|s| s.highest_epoch.max(s.epoch))
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let Some(epoch) = self.common_epoch() else {
            return Rotation::New(next);
        };
        let now = self.statuses.iter().map(|s| s.now_ms).max().unwrap_or(0);
        let created = self
            .statuses
            .iter()
            .map(|s| s.epoch_created_ms)
            .min()
            .unwrap_or(0);
        let lifetime = self
            .statuses
            .iter()
            .map(|s| s.key_epoch_max_age_ms)
            .min()
            .unwrap_or(0);
        if now.saturating_sub(created) >= lifetime {
            Rotation::New(next)
        } else {
            Rotation::Keep(epoch)
        }
    }
}

impl Engine {
    /// This helper's pool status for round `round`.
    async fn pool_status(&self, round: u64) -> Result<pb::EnginePoolStatus, EngineError> {
        let ctx = &self.inner.ctx;
        let store = &ctx.store;
        let current = store
            .engine_key_epochs(ROUND_EPOCH_BASE)
            .await?
            .last()
            .copied();
        let highest = store.engine_highest_epoch(ROUND_EPOCH_BASE).await?;
        let me = self.inner.me.index() as u32;
        let federation = ctx.directory.federation_id.clone();
        let batches = match current {
            Some((epoch, _)) => store
                .engine_available(epoch)
                .await?
                .into_iter()
                .take(MAX_STATUS_BATCHES)
                .map(|b| pb::EngineBatch {
                    federation_id: federation.clone(),
                    epoch: b.epoch,
                    batch_id: b.id.to_vec(),
                    digest: b.digest.to_vec(),
                    triples: b.counts.triples,
                    bits: b.counts.bits,
                    randoms: b.counts.randoms,
                    masks: b.counts.masks.to_vec(),
                    helper: me,
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(pb::EnginePoolStatus {
            federation_id: federation,
            round_id: round,
            epoch: current.map_or(0, |c| c.0),
            epoch_created_ms: current.map_or(0, |c| c.1),
            highest_epoch: highest,
            now_ms: crate::context::now().0,
            key_epoch_max_age_ms: ctx.federation.engine_key_epoch_s.saturating_mul(1000),
            batches,
        })
    }

    /// Exchanges pool statuses with the other two helpers at the start of
    /// engine round `round` (session derived from the round and `extra`).
    /// A malformed status aborts, naming its sender.
    pub(super) async fn pool_view(
        &self,
        round: u64,
        extra: &[u8],
    ) -> Result<Result<PoolView, Abort>, EngineError> {
        let mine = self.pool_status(round).await?;
        let me = self.inner.me;
        let session = self.derived_session("sealroom 2026-12 engine pool status v1", round, extra);
        let bytes = Zeroizing::new(prost::Message::encode_to_vec(&mine));
        let received = match self.broadcast(session, MAX_STATUS_BYTES, bytes).await? {
            Ok(r) => r,
            Err(abort) => return Ok(Err(abort)),
        };
        let federation = &self.inner.ctx.directory.federation_id;
        let mut statuses: [pb::EnginePoolStatus; 3] = Default::default();
        statuses[me.index()] = mine;
        for (from, msg) in received {
            match decode_status(&msg, federation, round, from) {
                Ok(s) => statuses[from.index()] = s,
                Err(problem) => {
                    tracing::warn!(round, peer = from.index(), %problem, "a helper sent an unusable pool status");
                    return Ok(Err(Abort {
                        reason: AbortReason::ParameterMismatch { peer: from },
                        round: 0,
                    }));
                }
            }
        }
        Ok(Ok(PoolView::new(statuses)))
    }

    /// After a round that released its outputs: rotates the key epoch if
    /// the view says so, then produces batches of exactly `need` until the
    /// pool holds [`POOL_ROUNDS_AHEAD`] rounds' worth (all three helpers
    /// do the same from the same view). One top-up runs at a time on a
    /// helper. A failure is logged and counted; the next round then
    /// preprocesses inline.
    pub(super) async fn top_up(
        &self,
        view: PoolView,
        need: Counts,
        used: Vec<BatchId>,
        round_session: [u8; 32],
    ) -> Result<(), EngineError> {
        if is_zero(&need) {
            return Ok(());
        }
        let _one_at_a_time = self.inner.pool_lock.lock().await;
        let (epoch, keys, mut have) = match view.rotation() {
            Rotation::Keep(epoch) => {
                let Some(keys) = self.epoch_keys(epoch).await? else {
                    // Retired meanwhile by a later rotation.
                    return Ok(());
                };
                (epoch, keys, view.remaining(&used))
            }
            Rotation::New(epoch) if epoch >= ROUND_EPOCH_BASE => {
                // Only a status claiming the highest pool epoch leads here
                // (a helper that lies: the pool stays as it is, the next
                // rounds preprocess inline).
                tracing::warn!(
                    epoch,
                    "the next pool key epoch would enter the range of round epochs; not rotating"
                );
                return Ok(());
            }
            Rotation::New(epoch) => {
                let keys = match self.epoch_keys(epoch).await? {
                    Some(keys) => keys,
                    None => match self.agree_keys(epoch).await? {
                        Ok(keys) => keys,
                        Err(abort) => {
                            tracing::warn!(epoch, reason = %abort.reason, "the helpers could not agree the pool's next key epoch; the next engine round preprocesses inline");
                            return Ok(());
                        }
                    },
                };
                let older: Vec<u64> = self
                    .inner
                    .ctx
                    .store
                    .engine_key_epochs(epoch)
                    .await?
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect();
                for old in older {
                    self.retire_epoch(old).await?;
                }
                tracing::info!(epoch, "engine pool key epoch agreed");
                (epoch, keys, Counts::default())
            }
        };
        let target = times(&need, POOL_ROUNDS_AHEAD);
        let mut k = 0u32;
        while !have.covers(&target) && (k as usize) < POOL_ROUNDS_AHEAD {
            let mut id = blake3::Hasher::new_derive_key("sealroom 2026-12 engine pool batch id v1");
            id.update(&round_session);
            id.update(&epoch.to_le_bytes());
            id.update(&k.to_le_bytes());
            let mut batch = [0u8; 16];
            batch.copy_from_slice(&id.finalize().as_bytes()[..16]);
            match self.produce(&keys, BatchId(batch), need).await? {
                Ok(stored) => have = add_counts(&have, &stored.counts),
                Err(abort) => {
                    tracing::warn!(epoch, batch = %hex::encode(batch), reason = %abort.reason, "producing a pool batch failed; the next engine round preprocesses inline if the pool cannot cover it");
                    break;
                }
            }
            k += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: u8, epoch: u64, helper: u32, triples: u64) -> pb::EngineBatch {
        pb::EngineBatch {
            federation_id: "f".into(),
            epoch,
            batch_id: vec![id; 16],
            digest: vec![id; 32],
            triples,
            bits: 1,
            randoms: 0,
            masks: vec![1, 1, 1],
            helper,
        }
    }

    fn status(helper: u32, epoch: u64, ids: &[u8]) -> pb::EnginePoolStatus {
        pb::EnginePoolStatus {
            federation_id: "f".into(),
            round_id: 7,
            epoch,
            epoch_created_ms: 1_000,
            highest_epoch: epoch,
            now_ms: 2_000,
            key_epoch_max_age_ms: 10_000,
            batches: ids.iter().map(|&i| batch(i, epoch, helper, 10)).collect(),
        }
    }

    fn need(triples: usize) -> Counts {
        Counts {
            triples,
            bits: 1,
            randoms: 0,
            masks: [1, 1, 1],
        }
    }

    #[test]
    fn the_oldest_batches_all_three_hold_are_selected() {
        let view = PoolView::new([
            status(0, 4, &[1, 2, 3]),
            status(1, 4, &[2, 3]),
            status(2, 4, &[1, 2, 3]),
        ]);
        // Batch 1 is missing at helper 1: never selected.
        let (epoch, ids) = view.select(&need(15)).expect("covered");
        assert_eq!(epoch, 4);
        assert_eq!(ids, vec![BatchId([2; 16]), BatchId([3; 16])]);
        assert!(view.select(&need(21)).is_none(), "20 triples in common");
        assert_eq!(view.remaining(&ids).triples, 0);
        assert_eq!(view.remaining(&[BatchId([2; 16])]).triples, 10);
        assert_eq!(view.rotation(), Rotation::Keep(4));
    }

    #[test]
    fn a_batch_described_differently_is_not_common() {
        let mut other = status(1, 4, &[1]);
        other.batches[0].digest = vec![9; 32];
        let view = PoolView::new([status(0, 4, &[1]), other, status(2, 4, &[1])]);
        assert!(view.select(&need(1)).is_none());
    }

    #[test]
    fn the_epoch_rotates_without_a_common_one_or_when_old() {
        let mut fresh = [status(0, 0, &[]), status(1, 0, &[]), status(2, 0, &[])];
        fresh[2].highest_epoch = 6;
        let view = PoolView::new(fresh.clone());
        assert_eq!(view.common_epoch(), None);
        assert!(view.select(&need(0)).is_none());
        assert_eq!(view.rotation(), Rotation::New(7));

        let view = PoolView::new([status(0, 4, &[]), status(1, 3, &[]), status(2, 4, &[])]);
        assert_eq!(view.rotation(), Rotation::New(5));

        // The highest epoch a (lying) helper may claim passes the checks;
        // the next one is in the round range, where `top_up` stops.
        fresh[1].highest_epoch = ROUND_EPOCH_BASE - 1;
        let h1 = HelperIndex::new(1).expect("index");
        assert!(check_status(&fresh[1], "f", 7, h1).is_ok());
        assert_eq!(
            PoolView::new(fresh).rotation(),
            Rotation::New(ROUND_EPOCH_BASE)
        );

        let mut old = [status(0, 4, &[1]), status(1, 4, &[1]), status(2, 4, &[1])];
        // The smallest configured lifetime counts: 1 s < 2 s − 1 s.
        old[1].key_epoch_max_age_ms = 1_000;
        let view = PoolView::new(old);
        assert_eq!(view.rotation(), Rotation::New(5));
        assert!(
            view.select(&need(5)).is_some(),
            "material of the old epoch is still used until it is retired"
        );
    }

    #[test]
    fn malformed_statuses_are_refused() {
        let h1 = HelperIndex::new(1).expect("index");
        let good = status(1, 4, &[1]);
        assert!(check_status(&good, "f", 7, h1).is_ok());
        let mut s = good.clone();
        s.round_id = 8;
        assert!(check_status(&s, "f", 7, h1).is_err());
        assert!(check_status(&good, "g", 7, h1).is_err());
        let mut s = good.clone();
        s.batches[0].helper = 2;
        assert!(check_status(&s, "f", 7, h1).is_err());
        let mut s = good.clone();
        s.batches[0].batch_id.pop();
        assert!(check_status(&s, "f", 7, h1).is_err());
        let mut s = good.clone();
        s.epoch = ROUND_EPOCH_BASE;
        assert!(check_status(&s, "f", 7, h1).is_err());
        let mut s = good.clone();
        s.batches = (0..=MAX_STATUS_BATCHES as u8)
            .map(|i| batch(i, 4, 1, 1))
            .collect();
        assert!(check_status(&s, "f", 7, h1).is_err());
        let mut s = status(1, 0, &[]);
        s.batches.push(batch(1, 0, 1, 1));
        assert!(check_status(&s, "f", 7, h1).is_err());

        // The bytes a peer sends.
        let bytes = prost::Message::encode_to_vec(&good);
        assert_eq!(decode_status(&bytes, "f", 7, h1), Ok(good));
        assert!(decode_status(&bytes[..bytes.len() - 1], "f", 7, h1).is_err());
        assert!(decode_status(&[0xff; 9], "f", 7, h1).is_err());
        assert!(decode_status(&vec![0; MAX_STATUS_BYTES + 1], "f", 7, h1).is_err());
    }
}
