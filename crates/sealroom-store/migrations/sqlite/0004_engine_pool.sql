-- sealroom-store schema, version 4 (SQLite dialect): the MPC engine's
-- durable state on a helper (issue #14). migrations/postgres holds the same
-- schema for PostgreSQL.

-- The pseudo-random secret-sharing keys of each key epoch (secret: this
-- helper's two 32-byte keys, own then the next helper's). Written once.
CREATE TABLE engine_epochs (
    epoch INTEGER PRIMARY KEY NOT NULL CHECK (epoch >= 0),
    keys BLOB NOT NULL CHECK (length(keys) = 64),
    created_ms INTEGER NOT NULL
) STRICT;

-- The preprocessing pool: one row per batch this helper holds a part of,
-- written once when the batch is produced and attested. `material` (secret:
-- the helper's shares and MAC shares) is set to NULL in the transaction that
-- marks the batch consumed by a computation, so a batch id is taken at most
-- once, also across restarts (secure_delete overwrites the freed pages).
CREATE TABLE engine_batches (
    batch_id BLOB PRIMARY KEY NOT NULL CHECK (length(batch_id) = 16),
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    triples INTEGER NOT NULL CHECK (triples >= 0),
    bits INTEGER NOT NULL CHECK (bits >= 0),
    randoms INTEGER NOT NULL CHECK (randoms >= 0),
    masks0 INTEGER NOT NULL CHECK (masks0 >= 0),
    masks1 INTEGER NOT NULL CHECK (masks1 >= 0),
    masks2 INTEGER NOT NULL CHECK (masks2 >= 0),
    produced_ms INTEGER NOT NULL,
    material BLOB,
    consumed_by BLOB CHECK (consumed_by IS NULL OR length(consumed_by) = 32),
    consumed_ms INTEGER,
    CHECK ((material IS NULL) = (consumed_by IS NOT NULL))
) STRICT;

CREATE INDEX engine_batches_available ON engine_batches (epoch, consumed_by, produced_ms);
