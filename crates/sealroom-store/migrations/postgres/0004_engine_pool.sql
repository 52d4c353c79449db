-- sealroom-store schema, version 4 (PostgreSQL dialect). See
-- migrations/sqlite/0004_engine_pool.sql for the commentary.

CREATE TABLE engine_epochs (
    epoch BIGINT PRIMARY KEY CHECK (epoch >= 0),
    keys BYTEA NOT NULL CHECK (octet_length(keys) = 64),
    created_ms BIGINT NOT NULL
);

CREATE TABLE engine_batches (
    batch_id BYTEA PRIMARY KEY CHECK (octet_length(batch_id) = 16),
    epoch BIGINT NOT NULL CHECK (epoch >= 0),
    digest BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    triples BIGINT NOT NULL CHECK (triples >= 0),
    bits BIGINT NOT NULL CHECK (bits >= 0),
    randoms BIGINT NOT NULL CHECK (randoms >= 0),
    masks0 BIGINT NOT NULL CHECK (masks0 >= 0),
    masks1 BIGINT NOT NULL CHECK (masks1 >= 0),
    masks2 BIGINT NOT NULL CHECK (masks2 >= 0),
    produced_ms BIGINT NOT NULL,
    material BYTEA,
    consumed_by BYTEA CHECK (consumed_by IS NULL OR octet_length(consumed_by) = 32),
    consumed_ms BIGINT,
    CHECK ((material IS NULL) = (consumed_by IS NOT NULL))
);

CREATE INDEX engine_batches_available ON engine_batches (epoch, consumed_by, produced_ms);
