-- sealroom-store schema, version 3 (SQLite dialect). migrations/postgres
-- holds the same schema for PostgreSQL.

-- Helper: the signed report it sent for a round (an encoded
-- SignedEnvelope), so that a restarted helper re-sends the same bytes
-- instead of reporting again.
ALTER TABLE helper_rounds ADD COLUMN report BLOB;

-- The digest (BLAKE3) of every artifact in the audit log but checkpoints:
-- an artifact already in the log is never appended again (a re-sent message
-- is not news), which is what keeps `audit verify` from flagging a repeat
-- after an ordinary restart. Filled for existing logs when the store opens.
CREATE TABLE audit_digests (
    digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32)
) STRICT;
