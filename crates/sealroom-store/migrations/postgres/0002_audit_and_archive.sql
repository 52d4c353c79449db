-- sealroom-store schema, version 2 (PostgreSQL dialect): the signed,
-- hash-chained audit log and the per-round replay archive. See
-- migrations/sqlite/0002_audit_and_archive.sql for the commentary.

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY CHECK (seq >= 0),
    at_ms BIGINT NOT NULL CHECK (at_ms >= 0),
    kind TEXT NOT NULL,
    round_id BIGINT CHECK (round_id IS NULL OR round_id >= 0),
    artifact BYTEA NOT NULL,
    prev_hash BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE INDEX audit_log_round ON audit_log (round_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE round_archive (
    round_id BIGINT NOT NULL CHECK (round_id >= 0),
    step BIGINT NOT NULL CHECK (step >= 0),
    role TEXT NOT NULL CHECK (role IN ('client', 'coordinator', 'helper')),
    data BYTEA NOT NULL,
    PRIMARY KEY (round_id, step)
);
