//! The boundary between SQL values and typed values: round ids in and out of
//! 64-bit signed columns, and stored rows decoded into protocol types — every
//! failure a typed error, never a panic.

use prost::Message as _;
use sealroom_protocol::pb;
use sqlx::Row;

use crate::StoreError;

/// A protocol round id as a column value; ids above `i64::MAX` are refused.
pub(crate) fn to_sql_round(round: u64) -> Result<i64, StoreError> {
    i64::try_from(round).map_err(|_| StoreError::RoundIdOutOfRange { round })
}

/// A stored round id back as a protocol value.
pub(crate) fn from_sql_round(table: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::CorruptRow {
        table,
        key: format!("round_id = {value}"),
        reason: "negative round id".into(),
    })
}

/// Column `name` of `row`, as `T`; a value of the wrong type is a corrupt row.
pub(crate) fn column<'r, R, T>(
    row: &'r R,
    name: &'static str,
    table: &'static str,
    key: &str,
) -> Result<T, StoreError>
where
    R: Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    row.try_get(name).map_err(|e| StoreError::CorruptRow {
        table,
        key: key.to_owned(),
        reason: format!("column {name}: {e}"),
    })
}

/// A stored, encoded [`pb::SignedEnvelope`].
pub(crate) fn decode_envelope(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<pb::SignedEnvelope, StoreError> {
    pb::SignedEnvelope::decode(bytes).map_err(|e| StoreError::CorruptRow {
        table,
        key: key.to_owned(),
        reason: format!("stored envelope does not decode: {e}"),
    })
}

/// The round id named by a descriptor envelope's body.
pub(crate) fn descriptor_round(envelope: &pb::SignedEnvelope) -> Result<u64, prost::DecodeError> {
    pb::RoundDescriptor::decode(envelope.body.as_slice()).map(|d| d.round_id)
}

/// The key text of a row with a round id, for errors.
pub(crate) fn round_key(round: impl std::fmt::Display) -> String {
    format!("round_id = {round}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ids_above_i64_max_are_refused_not_wrapped() {
        assert_eq!(to_sql_round(0).ok(), Some(0));
        assert_eq!(to_sql_round(i64::MAX.unsigned_abs()).ok(), Some(i64::MAX));
        for round in [i64::MAX.unsigned_abs() + 1, u64::MAX] {
            assert!(matches!(
                to_sql_round(round),
                Err(StoreError::RoundIdOutOfRange { round: r }) if r == round
            ));
        }
    }

    #[test]
    fn negative_stored_round_ids_are_corrupt() {
        assert_eq!(from_sql_round("t", 7).ok(), Some(7));
        assert!(matches!(
            from_sql_round("t", -1),
            Err(StoreError::CorruptRow { table: "t", .. })
        ));
    }
}
