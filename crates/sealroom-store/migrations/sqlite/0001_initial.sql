-- sealroom-store schema, version 1 (SQLite dialect).
-- migrations/postgres/0001_initial.sql holds the same schema for PostgreSQL:
-- change both together, and never edit a migration that has shipped (sqlx
-- checks their checksums); add a new one instead.
--
-- Round ids are protocol u64 values stored as signed 64-bit integers; the
-- store refuses ids above i64::MAX before they reach SQL.

-- Monotonic counters: the highest round id each role persisted
-- ('client': Persist::ClientRound, 'coordinator': Persist::CoordinatorRound,
-- 'helper': the highest Persist::HelperRound, kept even after pruning).
CREATE TABLE round_counters (
    role TEXT PRIMARY KEY NOT NULL CHECK (role IN ('client', 'coordinator', 'helper')),
    last_round_id INTEGER NOT NULL CHECK (last_round_id >= 0)
) STRICT;

-- Helper: the descriptors it accepted (encoded SignedEnvelope) and the hash of
-- the one inclusion set it answered, once it has.
CREATE TABLE helper_rounds (
    round_id INTEGER PRIMARY KEY NOT NULL CHECK (round_id >= 0),
    descriptor BLOB NOT NULL,
    answered_inclusion_hash BLOB
        CHECK (answered_inclusion_hash IS NULL OR length(answered_inclusion_hash) = 32)
) STRICT;

-- Helper: accepted uploads (encoded pb::Upload: these hold shares).
CREATE TABLE helper_uploads (
    round_id INTEGER NOT NULL REFERENCES helper_rounds (round_id) ON DELETE CASCADE,
    client_index INTEGER NOT NULL CHECK (client_index BETWEEN 0 AND 4294967295),
    upload BLOB NOT NULL,
    PRIMARY KEY (round_id, client_index)
) STRICT;

-- Coordinator: the inclusion set it signed for a round (encoded SignedEnvelope).
CREATE TABLE coordinator_inclusions (
    round_id INTEGER PRIMARY KEY NOT NULL CHECK (round_id >= 0),
    inclusion_set BLOB NOT NULL
) STRICT;

-- Coordinator: a round's final signed record (result or abort).
CREATE TABLE coordinator_outcomes (
    round_id INTEGER PRIMARY KEY NOT NULL CHECK (round_id >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('result', 'abort')),
    record BLOB NOT NULL
) STRICT;
