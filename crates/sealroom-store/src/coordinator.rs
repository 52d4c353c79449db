//! Round counters (client and coordinator replay protection across restarts)
//! and the coordinator's signed artifacts: the inclusion set it signed for a
//! round and the round's final record (DESIGN.md §2 steps 1, 4 and 6).

use prost::Message as _;

use crate::error::db;
use crate::rows::{column, decode_envelope, from_sql_round, round_key, to_sql_round};
use crate::{SignedEnvelope, Store, StoreError};

const INCLUSIONS: &str = "coordinator_inclusions";
const OUTCOMES: &str = "coordinator_outcomes";
/// The kinds of final record.
const OUTCOME_KINDS: [&str; 2] = ["result", "abort"];

/// Whose round counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Coordinator,
    Helper,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Coordinator => "coordinator",
            Role::Helper => "helper",
        }
    }
}

impl Store {
    /// Coordinator: the id its next round must get — one above the highest
    /// persisted by [`Persist::CoordinatorRound`](sealroom_protocol::action::Persist::CoordinatorRound),
    /// or 1 if there is none.
    pub async fn coordinator_next_round_id(&self) -> Result<u64, StoreError> {
        // The stored value is at most i64::MAX, so adding one cannot overflow.
        Ok(self
            .counter(Role::Coordinator)
            .await?
            .map_or(1, |last| last + 1))
    }

    /// Client: the highest round id persisted by
    /// [`Persist::ClientRound`](sealroom_protocol::action::Persist::ClientRound),
    /// if any.
    pub async fn client_last_round(&self) -> Result<Option<u64>, StoreError> {
        self.counter(Role::Client).await
    }

    /// Coordinator: the inclusion set it signed for `round_id`
    /// ([`Persist::CoordinatorInclusion`](sealroom_protocol::action::Persist::CoordinatorInclusion)),
    /// if any.
    pub async fn coordinator_inclusion(
        &self,
        round_id: u64,
    ) -> Result<Option<SignedEnvelope>, StoreError> {
        let backend = self.backend();
        let operation = "read a coordinator inclusion set";
        let id = to_sql_round(round_id)?;
        let key = round_key(round_id);
        let bytes: Option<Vec<u8>> = with_pool!(self, |pool| {
            let row =
                sqlx::query("SELECT inclusion_set FROM coordinator_inclusions WHERE round_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(db(backend, operation))?;
            match row {
                Some(row) => Some(column(&row, "inclusion_set", INCLUSIONS, &key)?),
                None => None,
            }
        });
        bytes
            .map(|bytes| decode_envelope(INCLUSIONS, &key, &bytes))
            .transpose()
    }

    /// Coordinator: records a round's final signed record — `kind` is
    /// `"result"` (a [`pb::RoundResult`]) or `"abort"` (a [`pb::AbortRecord`]).
    /// Recording the same record again is accepted; a different one for the
    /// same round is [`StoreError::OutcomeConflict`].
    pub async fn record_outcome(
        &self,
        round_id: u64,
        kind: &str,
        record: &SignedEnvelope,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        let operation = "record a round outcome";
        let Some(kind) = OUTCOME_KINDS.into_iter().find(|k| *k == kind) else {
            return Err(StoreError::InvalidOutcomeKind {
                kind: kind.chars().take(32).collect(),
            });
        };
        let id = to_sql_round(round_id)?;
        let key = round_key(round_id);
        let encoded = record.encode_to_vec();
        write_transaction!(self, operation, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO coordinator_outcomes (round_id, kind, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (round_id) DO NOTHING",
            )
            .bind(id)
            .bind(kind)
            .bind(encoded.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db(backend, operation))?;
            if inserted.rows_affected() == 0 {
                let row = sqlx::query(
                    "SELECT kind, record FROM coordinator_outcomes WHERE round_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db(backend, operation))?;
                let stored_kind: String = column(&row, "kind", OUTCOMES, &key)?;
                let stored: Vec<u8> = column(&row, "record", OUTCOMES, &key)?;
                if stored_kind != kind || stored != encoded {
                    return Err(StoreError::OutcomeConflict {
                        round: round_id,
                        existing: stored_kind.chars().take(32).collect(),
                    });
                }
            }
        });
        tracing::debug!(backend, round = round_id, kind, "round outcome recorded");
        Ok(())
    }

    /// Coordinator: the final record stored for `round_id`, with its kind
    /// (`"result"` or `"abort"`), if any.
    pub async fn outcome(
        &self,
        round_id: u64,
    ) -> Result<Option<(String, SignedEnvelope)>, StoreError> {
        let backend = self.backend();
        let operation = "read a round outcome";
        let id = to_sql_round(round_id)?;
        let key = round_key(round_id);
        let stored: Option<(String, Vec<u8>)> = with_pool!(self, |pool| {
            let row =
                sqlx::query("SELECT kind, record FROM coordinator_outcomes WHERE round_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(db(backend, operation))?;
            match row {
                Some(row) => Some((
                    column(&row, "kind", OUTCOMES, &key)?,
                    column(&row, "record", OUTCOMES, &key)?,
                )),
                None => None,
            }
        });
        let Some((kind, bytes)) = stored else {
            return Ok(None);
        };
        if !OUTCOME_KINDS.contains(&kind.as_str()) {
            return Err(StoreError::CorruptRow {
                table: OUTCOMES,
                key,
                reason: "kind is neither \"result\" nor \"abort\"".into(),
            });
        }
        let record = decode_envelope(OUTCOMES, &key, &bytes)?;
        Ok(Some((kind, record)))
    }

    /// The highest round id persisted for `role`, if any.
    async fn counter(&self, role: Role) -> Result<Option<u64>, StoreError> {
        let backend = self.backend();
        let operation = "read a round counter";
        let key = format!("role = {}", role.as_str());
        let last: Option<i64> = with_pool!(self, |pool| {
            let row = sqlx::query("SELECT last_round_id FROM round_counters WHERE role = $1")
                .bind(role.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db(backend, operation))?;
            match row {
                Some(row) => Some(column(&row, "last_round_id", "round_counters", &key)?),
                None => None,
            }
        });
        last.map(|last| from_sql_round("round_counters", last))
            .transpose()
    }
}
