//! A helper's durable state (DESIGN.md §2 steps 3–5): the descriptors it
//! accepted, the uploads it accepted (these hold shares), and the one
//! inclusion set it answered per round — read back as a
//! [`HelperState`] for [`Helper::restore`](sealroom_protocol::helper::Helper::restore).

use std::collections::BTreeMap;

use sealroom_protocol::Digest;
use sealroom_protocol::action::SecretBytes;
use sealroom_protocol::helper::{HelperState, PersistedRound};

use crate::error::db;
use crate::rows::{column, decode_envelope, descriptor_round, from_sql_round, round_key};
use crate::{Store, StoreError};

const ROUNDS: &str = "helper_rounds";
const UPLOADS: &str = "helper_uploads";

impl Store {
    /// Everything a helper persisted, rounds in increasing round-id order
    /// (the order they were accepted: helper round ids only increase), each
    /// with its uploads in client-index order and its answer, if any — one
    /// consistent snapshot, for
    /// [`Helper::restore`](sealroom_protocol::helper::Helper::restore).
    ///
    /// A stored row that does not decode, or a descriptor stored under
    /// another round's id, is a [`StoreError::CorruptRow`].
    pub async fn helper_state(&self) -> Result<HelperState, StoreError> {
        self.read_helper_state(false).await
    }

    /// What a restarting helper needs: [`Store::helper_state`] with the
    /// uploads of the newest round only. `Helper::restore` restores every
    /// older round closed without looking at its uploads (a later
    /// descriptor closed it), so they stay on disk instead of passing
    /// through memory — up to `archive_rounds` rounds of shares.
    pub async fn helper_restore_state(&self) -> Result<HelperState, StoreError> {
        self.read_helper_state(true).await
    }

    async fn read_helper_state(
        &self,
        newest_uploads_only: bool,
    ) -> Result<HelperState, StoreError> {
        let backend = self.backend();
        let operation = "read the helper state";
        let (round_rows, upload_rows) = read_transaction!(self, operation, |tx| {
            let rounds = sqlx::query(
                "SELECT round_id, descriptor, report, answered_inclusion_hash \
                 FROM helper_rounds ORDER BY round_id",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db(backend, operation))?;
            let mut round_rows = Vec::with_capacity(rounds.len());
            for row in &rounds {
                let id: i64 = column(row, "round_id", ROUNDS, "key unreadable")?;
                let key = round_key(id);
                let descriptor: Vec<u8> = column(row, "descriptor", ROUNDS, &key)?;
                let report: Option<Vec<u8>> = column(row, "report", ROUNDS, &key)?;
                let answered: Option<Vec<u8>> =
                    column(row, "answered_inclusion_hash", ROUNDS, &key)?;
                round_rows.push((id, descriptor, report, answered));
            }
            drop(rounds);
            let uploads = sqlx::query(if newest_uploads_only {
                "SELECT round_id, client_index, upload FROM helper_uploads \
                 WHERE round_id = (SELECT MAX(round_id) FROM helper_rounds) \
                 ORDER BY round_id, client_index"
            } else {
                "SELECT round_id, client_index, upload \
                 FROM helper_uploads ORDER BY round_id, client_index"
            })
            .fetch_all(&mut *tx)
            .await
            .map_err(db(backend, operation))?;
            let mut upload_rows = Vec::with_capacity(uploads.len());
            for row in &uploads {
                let id: i64 = column(row, "round_id", UPLOADS, "key unreadable")?;
                let client: i64 = column(row, "client_index", UPLOADS, &round_key(id))?;
                let key = format!("round_id = {id}, client_index = {client}");
                let upload = SecretBytes::new(column(row, "upload", UPLOADS, &key)?);
                upload_rows.push((id, client, upload));
            }
            (round_rows, upload_rows)
        });

        let mut rounds: Vec<PersistedRound> = Vec::with_capacity(round_rows.len());
        let mut position = BTreeMap::new();
        for (id, descriptor, report, answered) in round_rows {
            let round = from_sql_round(ROUNDS, id)?;
            let key = round_key(round);
            let descriptor = decode_envelope(ROUNDS, &key, &descriptor)?;
            let corrupt = |reason: String| StoreError::CorruptRow {
                table: ROUNDS,
                key: key.clone(),
                reason,
            };
            let named = descriptor_round(&descriptor)
                .map_err(|e| corrupt(format!("descriptor body does not decode: {e}")))?;
            if named != round {
                return Err(corrupt(format!("descriptor is for round {named}")));
            }
            let answered = answered
                .map(|hash| {
                    Digest::from_slice(&hash)
                        .ok_or_else(|| corrupt("answered inclusion hash is not 32 bytes".into()))
                })
                .transpose()?;
            let report = report
                .map(|bytes| decode_envelope(ROUNDS, &key, &bytes))
                .transpose()?;
            position.insert(round, rounds.len());
            rounds.push(PersistedRound {
                descriptor,
                uploads: Vec::new(),
                report,
                answered,
            });
        }
        for (id, client, upload) in upload_rows {
            let round = from_sql_round(UPLOADS, id)?;
            let corrupt = |reason: &str| StoreError::CorruptRow {
                table: UPLOADS,
                key: format!("round_id = {round}, client_index = {client}"),
                reason: reason.into(),
            };
            let client = u32::try_from(client).map_err(|_| corrupt("client index out of range"))?;
            let &index = position
                .get(&round)
                .ok_or_else(|| corrupt("upload for a round that is not stored"))?;
            rounds[index].uploads.push((client, upload));
        }
        Ok(HelperState { rounds })
    }

    /// Deletes all but the `keep` most recent helper rounds, with their
    /// uploads, in one transaction; returns how many rounds were deleted.
    ///
    /// The helper's round counter is kept, so a descriptor for a pruned (or
    /// any older) round is still refused by [`Store::apply`].
    pub async fn prune_helper_rounds(&self, keep: usize) -> Result<u64, StoreError> {
        let backend = self.backend();
        let operation = "prune helper rounds";
        let offset = i64::try_from(keep).unwrap_or(i64::MAX);
        let deleted = write_transaction!(self, operation, |tx| {
            // The newest round to delete: the (keep + 1)-th newest.
            let cutoff = sqlx::query(
                "SELECT round_id FROM helper_rounds ORDER BY round_id DESC LIMIT 1 OFFSET $1",
            )
            .bind(offset)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(backend, operation))?;
            match cutoff {
                None => 0,
                Some(row) => {
                    let cutoff: i64 = column(&row, "round_id", ROUNDS, "key unreadable")?;
                    sqlx::query("DELETE FROM helper_uploads WHERE round_id <= $1")
                        .bind(cutoff)
                        .execute(&mut *tx)
                        .await
                        .map_err(db(backend, operation))?;
                    sqlx::query("DELETE FROM helper_rounds WHERE round_id <= $1")
                        .bind(cutoff)
                        .execute(&mut *tx)
                        .await
                        .map_err(db(backend, operation))?
                        .rows_affected()
                }
            }
        });
        tracing::info!(backend, keep, deleted, "pruned helper rounds");
        Ok(deleted)
    }
}
