-- sealroom-store schema, version 3 (PostgreSQL dialect). See
-- migrations/sqlite/0003_reports_and_digests.sql for the commentary.

ALTER TABLE helper_rounds ADD COLUMN report BYTEA;

CREATE TABLE audit_digests (
    digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32)
);
