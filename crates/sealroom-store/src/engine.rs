//! A helper's MPC engine state (issue #14): the pseudo-random secret-sharing
//! keys of each key epoch, and the preprocessing pool.
//!
//! * Keys are written once per epoch and read back after a restart, so
//!   material produced before it stays usable.
//! * A batch is stored once, with the attestations every helper signed over
//!   its id and digest appended to the audit log **in the same
//!   transaction**; it is taken once: the transaction that hands its
//!   material to a computation also marks it consumed by that computation,
//!   clears the material and appends the signed use record. A second take —
//!   the same session again, another session, after a restart — is refused
//!   ([`StoreError::EngineBatchUnavailable`]) and takes nothing.
//!
//! Material and keys are secrets: they go in and come out as
//! [`SecretBytes`], never appear in an error or a log, and are overwritten
//! in the SQLite file when cleared (`secure_delete`).

use sealroom_protocol::action::SecretBytes;

use super::{
    AUDIT, Appended, AuditRecord, AuditSigner, PreparedStep, artifact_digest, hash_of, now_ms,
    plan_append,
};
use crate::error::db;
use crate::rows::column;
use crate::{Store, StoreError};

const EPOCHS: &str = "engine_epochs";
const BATCHES: &str = "engine_batches";
/// The "consumed by" of a batch whose key epoch was retired.
pub const RETIRED: [u8; 32] = [0xff; 32];

/// What a batch holds (the engine's `Counts`, as the store keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Beaver triples.
    pub triples: u64,
    /// Random shared bits.
    pub bits: u64,
    /// Random shared values.
    pub randoms: u64,
    /// Input masks per owner helper.
    pub masks: [u64; 3],
}

impl PoolCounts {
    fn columns(&self) -> Result<[i64; 6], StoreError> {
        let c = [
            self.triples,
            self.bits,
            self.randoms,
            self.masks[0],
            self.masks[1],
            self.masks[2],
        ];
        let mut out = [0i64; 6];
        for (o, v) in out.iter_mut().zip(c) {
            *o = i64::try_from(v).map_err(|_| StoreError::CorruptRow {
                table: BATCHES,
                key: "new batch".into(),
                reason: "count above i64::MAX".into(),
            })?;
        }
        Ok(out)
    }

    fn add(&mut self, o: &PoolCounts) {
        self.triples += o.triples;
        self.bits += o.bits;
        self.randoms += o.randoms;
        for k in 0..3 {
            self.masks[k] += o.masks[k];
        }
    }
}

/// A stored batch's public description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolBatch {
    /// Its id.
    pub id: [u8; 16],
    /// Its key epoch.
    pub epoch: u64,
    /// The digest the three helpers attested.
    pub digest: [u8; 32],
    /// What it holds.
    pub counts: PoolCounts,
}

fn batch_key(id: &[u8]) -> String {
    format!("batch_id = {}", hex::encode(id))
}

fn to_sql(v: u64, table: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::CorruptRow {
        table,
        key: "new row".into(),
        reason: format!("{v} is above i64::MAX"),
    })
}

fn from_sql(v: i64, table: &'static str, key: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::CorruptRow {
        table,
        key: key.into(),
        reason: format!("negative value {v}"),
    })
}

impl Store {
    /// Stores key epoch `epoch`'s keys (64 secret bytes); an epoch's keys
    /// are written once ([`StoreError::EngineEpochExists`]).
    pub async fn engine_put_keys(&self, epoch: u64, keys: &SecretBytes) -> Result<(), StoreError> {
        let backend = self.backend();
        let operation = "store engine epoch keys";
        let e = to_sql(epoch, EPOCHS)?;
        let inserted = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO engine_epochs (epoch, keys, created_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (epoch) DO NOTHING",
            )
            .bind(e)
            .bind(keys.expose())
            .bind(to_sql(now_ms(), EPOCHS)?)
            .execute(pool)
            .await
            .map_err(db(backend, operation))?
            .rows_affected()
        });
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::EngineEpochExists { epoch })
        }
    }

    /// Key epoch `epoch`'s keys, if stored.
    pub async fn engine_keys(&self, epoch: u64) -> Result<Option<SecretBytes>, StoreError> {
        let backend = self.backend();
        let operation = "read engine epoch keys";
        let e = to_sql(epoch, EPOCHS)?;
        let keys: Option<Vec<u8>> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT keys FROM engine_epochs WHERE epoch = $1")
                .bind(e)
                .fetch_optional(pool)
                .await
                .map_err(db(backend, operation))?
        });
        Ok(keys.map(SecretBytes::new))
    }

    /// The key epochs below `below` whose keys are stored (not retired),
    /// oldest first, each with the time its keys were stored (ms).
    pub async fn engine_key_epochs(&self, below: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let backend = self.backend();
        let operation = "list engine key epochs";
        let b = to_sql(below, EPOCHS)?;
        let rows: Vec<(i64, i64)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT epoch, created_ms FROM engine_epochs WHERE epoch < $1 ORDER BY epoch",
            )
            .bind(b)
            .fetch_all(pool)
            .await
            .map_err(db(backend, operation))?
        });
        rows.into_iter()
            .map(|(e, c)| {
                let key = format!("epoch = {e}");
                Ok((from_sql(e, EPOCHS, &key)?, from_sql(c, EPOCHS, &key)?))
            })
            .collect()
    }

    /// The highest key epoch below `below` this store has ever held keys or
    /// batches of (retired epochs included: their batch rows stay), 0 if
    /// none. A new epoch is numbered above it, so numbers are never reused.
    pub async fn engine_highest_epoch(&self, below: u64) -> Result<u64, StoreError> {
        let backend = self.backend();
        let operation = "read the highest engine key epoch";
        let b = to_sql(below, EPOCHS)?;
        let highest: i64 = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT COALESCE(MAX(epoch), 0) FROM (\
                 SELECT epoch FROM engine_epochs WHERE epoch < $1 \
                 UNION ALL SELECT epoch FROM engine_batches WHERE epoch < $1) AS e",
            )
            .bind(b)
            .fetch_one(pool)
            .await
            .map_err(db(backend, operation))?
        });
        from_sql(highest, EPOCHS, "highest epoch")
    }

    /// Stores a produced batch's `material` (this helper's part, secret)
    /// and appends `attestations` (every helper's signed
    /// [`sealroom_protocol::pb::EngineBatch`]) to the audit log, in one
    /// transaction. A batch id already stored is refused
    /// ([`StoreError::EngineBatchExists`]) and nothing is written.
    pub async fn engine_put_batch(
        &self,
        batch: &PoolBatch,
        material: &SecretBytes,
        attestations: &[AuditRecord],
        signer: Option<&AuditSigner>,
    ) -> Result<Appended, StoreError> {
        let backend = self.backend();
        let operation = "store an engine batch";
        let step = PreparedStep::new(None, attestations, signer, None)?;
        let c = batch.counts.columns()?;
        let epoch = to_sql(batch.epoch, BATCHES)?;
        let at = to_sql(now_ms(), BATCHES)?;
        let appended = write_transaction!(self, operation, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO engine_batches (batch_id, epoch, digest, triples, bits, randoms, \
                 masks0, masks1, masks2, produced_ms, material) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (batch_id) DO NOTHING",
            )
            .bind(&batch.id[..])
            .bind(epoch)
            .bind(&batch.digest[..])
            .bind(c[0])
            .bind(c[1])
            .bind(c[2])
            .bind(c[3])
            .bind(c[4])
            .bind(c[5])
            .bind(at)
            .bind(material.expose())
            .execute(&mut *tx)
            .await
            .map_err(db(backend, operation))?
            .rows_affected();
            if inserted != 1 {
                return Err(StoreError::EngineBatchExists {
                    batch: hex::encode(batch.id),
                });
            }
            record_in_tx!(tx, backend, operation, step)
        });
        Ok(appended)
    }

    /// Takes batches `ids` of key epoch `epoch` for computation `session`:
    /// in one transaction, checks that every one is stored, of that epoch
    /// and not consumed, marks each consumed by `session`, clears its
    /// material, and appends `use_record` (the signed
    /// [`sealroom_protocol::pb::EngineUse`]). Returns the material in the
    /// order of `ids`. If any id cannot be taken, nothing is taken
    /// ([`StoreError::EngineBatchUnavailable`]).
    pub async fn engine_take_batches(
        &self,
        epoch: u64,
        ids: &[[u8; 16]],
        session: &[u8; 32],
        use_record: &[AuditRecord],
        signer: Option<&AuditSigner>,
    ) -> Result<Vec<SecretBytes>, StoreError> {
        let backend = self.backend();
        let operation = "take engine batches";
        let step = PreparedStep::new(None, use_record, signer, None)?;
        let epoch_sql = to_sql(epoch, BATCHES)?;
        let at = to_sql(now_ms(), BATCHES)?;
        let taken = write_transaction!(self, operation, |tx| {
            let mut taken = Vec::with_capacity(ids.len());
            for id in ids {
                let key = batch_key(id);
                let unavailable = |reason: String| StoreError::EngineBatchUnavailable {
                    batch: hex::encode(id),
                    reason,
                };
                let row = sqlx::query(
                    "SELECT epoch, material, consumed_by FROM engine_batches WHERE batch_id = $1",
                )
                .bind(&id[..])
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(backend, operation))?
                .ok_or_else(|| unavailable("not in this helper's pool".into()))?;
                let stored_epoch: i64 = column(&row, "epoch", BATCHES, &key)?;
                let material: Option<Vec<u8>> = column(&row, "material", BATCHES, &key)?;
                let consumed: Option<Vec<u8>> = column(&row, "consumed_by", BATCHES, &key)?;
                if let Some(by) = consumed {
                    return Err(unavailable(if by[..] == RETIRED[..] {
                        format!("it expired with key epoch {stored_epoch}")
                    } else {
                        format!(
                            "already consumed by computation {}",
                            hex::encode(&by[..by.len().min(8)])
                        )
                    }));
                }
                if stored_epoch != epoch_sql {
                    return Err(unavailable(format!(
                        "it belongs to key epoch {stored_epoch}, the computation to {epoch}"
                    )));
                }
                let material = material.ok_or_else(|| StoreError::CorruptRow {
                    table: BATCHES,
                    key: key.clone(),
                    reason: "unconsumed batch without material".into(),
                })?;
                let marked = sqlx::query(
                    "UPDATE engine_batches SET material = NULL, consumed_by = $1, \
                     consumed_ms = $2 WHERE batch_id = $3 AND consumed_by IS NULL",
                )
                .bind(&session[..])
                .bind(at)
                .bind(&id[..])
                .execute(&mut *tx)
                .await
                .map_err(db(backend, operation))?
                .rows_affected();
                if marked != 1 {
                    // Taken concurrently (PostgreSQL, READ COMMITTED).
                    return Err(unavailable("consumed concurrently".into()));
                }
                taken.push(SecretBytes::new(material));
            }
            record_in_tx!(tx, backend, operation, step);
            taken
        });
        Ok(taken)
    }

    /// The unconsumed batches of key epoch `epoch`, oldest first.
    pub async fn engine_available(&self, epoch: u64) -> Result<Vec<PoolBatch>, StoreError> {
        let backend = self.backend();
        let operation = "read the engine pool";
        let e = to_sql(epoch, BATCHES)?;
        let out = with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT batch_id, digest, triples, bits, randoms, masks0, masks1, masks2 \
                 FROM engine_batches WHERE epoch = $1 AND consumed_by IS NULL \
                 ORDER BY produced_ms, batch_id",
            )
            .bind(e)
            .fetch_all(pool)
            .await
            .map_err(db(backend, operation))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: Vec<u8> = column(row, "batch_id", BATCHES, "key unreadable")?;
                let key = batch_key(&id);
                let digest: Vec<u8> = column(row, "digest", BATCHES, &key)?;
                let mut n = [0u64; 6];
                for (v, name) in n
                    .iter_mut()
                    .zip(["triples", "bits", "randoms", "masks0", "masks1", "masks2"])
                {
                    *v = from_sql(column(row, name, BATCHES, &key)?, BATCHES, &key)?;
                }
                let corrupt = |reason: &str| StoreError::CorruptRow {
                    table: BATCHES,
                    key: key.clone(),
                    reason: reason.into(),
                };
                out.push(PoolBatch {
                    id: id
                        .try_into()
                        .map_err(|_| corrupt("batch id is not 16 bytes"))?,
                    epoch,
                    digest: digest
                        .try_into()
                        .map_err(|_| corrupt("digest is not 32 bytes"))?,
                    counts: PoolCounts {
                        triples: n[0],
                        bits: n[1],
                        randoms: n[2],
                        masks: [n[3], n[4], n[5]],
                    },
                });
            }
            out
        });
        Ok(out)
    }

    /// Retires key epoch `epoch` (its material expires with it): in one
    /// transaction, deletes its keys and the material of its unconsumed
    /// batches (their rows stay, marked consumed by the all-ones
    /// "retired" id, so the ids are never taken or produced again).
    /// Returns how many batches expired.
    pub async fn engine_retire_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        let backend = self.backend();
        let operation = "retire an engine key epoch";
        let e = to_sql(epoch, EPOCHS)?;
        let at = to_sql(now_ms(), BATCHES)?;
        let expired = write_transaction!(self, operation, |tx| {
            sqlx::query("DELETE FROM engine_epochs WHERE epoch = $1")
                .bind(e)
                .execute(&mut *tx)
                .await
                .map_err(db(backend, operation))?;
            sqlx::query(
                "UPDATE engine_batches SET material = NULL, consumed_by = $1, consumed_ms = $2 \
                 WHERE epoch = $3 AND consumed_by IS NULL",
            )
            .bind(&RETIRED[..])
            .bind(at)
            .bind(e)
            .execute(&mut *tx)
            .await
            .map_err(db(backend, operation))?
            .rows_affected()
        });
        Ok(expired)
    }

    /// What the unconsumed batches of `epoch` hold together.
    pub async fn engine_backlog(&self, epoch: u64) -> Result<PoolCounts, StoreError> {
        let mut total = PoolCounts::default();
        for b in self.engine_available(epoch).await? {
            total.add(&b.counts);
        }
        Ok(total)
    }
}
