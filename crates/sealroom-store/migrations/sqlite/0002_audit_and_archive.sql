-- sealroom-store schema, version 2 (SQLite dialect): the signed, hash-chained
-- audit log and the per-round replay archive. migrations/postgres holds the
-- same schema for PostgreSQL.

-- Append-only audit log (DESIGN.md §6). Each entry's hash covers its fields
-- and the previous entry's hash (see sealroom_store::audit::entry_hash);
-- entries of kind 'checkpoint' carry the node's signature over the chain.
-- No entry ever holds a share, a seed, a key's secret half or an input.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 0),
    at_ms INTEGER NOT NULL CHECK (at_ms >= 0),
    kind TEXT NOT NULL,
    round_id INTEGER CHECK (round_id IS NULL OR round_id >= 0),
    artifact BLOB NOT NULL,
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX audit_log_round ON audit_log (round_id);

-- The database refuses edits and deletions; the hash chain and the signed
-- checkpoints catch whoever drops these triggers first.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Replay archive: what this node's state machine consumed in a round, step
-- by step (an encoded sealroom.v1.ArchivedStep), with digests of what it
-- sent. Holds this node's own shares, seeds and inputs only; pruned by
-- round like the helper's uploads.
CREATE TABLE round_archive (
    round_id INTEGER NOT NULL CHECK (round_id >= 0),
    step INTEGER NOT NULL CHECK (step >= 0),
    role TEXT NOT NULL CHECK (role IN ('client', 'coordinator', 'helper')),
    data BLOB NOT NULL,
    PRIMARY KEY (round_id, step)
) STRICT;
