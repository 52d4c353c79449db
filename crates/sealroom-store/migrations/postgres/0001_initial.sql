-- sealroom-store schema, version 1 (PostgreSQL dialect).
-- migrations/sqlite/0001_initial.sql holds the same schema for SQLite:
-- change both together, and never edit a migration that has shipped (sqlx
-- checks their checksums); add a new one instead.
--
-- Round ids are protocol u64 values stored as BIGINT; the store refuses ids
-- above i64::MAX before they reach SQL.

-- Monotonic counters: the highest round id each role persisted
-- ('client': Persist::ClientRound, 'coordinator': Persist::CoordinatorRound,
-- 'helper': the highest Persist::HelperRound, kept even after pruning).
CREATE TABLE round_counters (
    role TEXT PRIMARY KEY CHECK (role IN ('client', 'coordinator', 'helper')),
    last_round_id BIGINT NOT NULL CHECK (last_round_id >= 0)
);

-- Helper: the descriptors it accepted (encoded SignedEnvelope) and the hash of
-- the one inclusion set it answered, once it has.
CREATE TABLE helper_rounds (
    round_id BIGINT PRIMARY KEY CHECK (round_id >= 0),
    descriptor BYTEA NOT NULL,
    answered_inclusion_hash BYTEA
        CHECK (answered_inclusion_hash IS NULL OR octet_length(answered_inclusion_hash) = 32)
);

-- Helper: accepted uploads (encoded pb::Upload: these hold shares).
CREATE TABLE helper_uploads (
    round_id BIGINT NOT NULL REFERENCES helper_rounds (round_id) ON DELETE CASCADE,
    client_index BIGINT NOT NULL CHECK (client_index BETWEEN 0 AND 4294967295),
    upload BYTEA NOT NULL,
    PRIMARY KEY (round_id, client_index)
);

-- Coordinator: the inclusion set it signed for a round (encoded SignedEnvelope).
CREATE TABLE coordinator_inclusions (
    round_id BIGINT PRIMARY KEY CHECK (round_id >= 0),
    inclusion_set BYTEA NOT NULL
);

-- Coordinator: a round's final signed record (result or abort).
CREATE TABLE coordinator_outcomes (
    round_id BIGINT PRIMARY KEY CHECK (round_id >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('result', 'abort')),
    record BYTEA NOT NULL
);
