-- 0003: the decision log, its writers' hash chains and retention anchors,
-- and the hash chain of the change log.
--
-- Each writer process appends decisions to its own chain: chain_id with
-- positions 1, 2, 3 ... in write order, each entry's hash covering its
-- canonical content and the previous entry's hash (internal/audit/chain).
-- A batch of entries is written in one transaction, as one row per tenant
-- in decision_batches: the row holds the tenant's entries of the batch
-- (their canonical encodings and hashes, in position order) and the columns
-- queries select rows by. A row per entry would cost PostgreSQL ten times
-- more per decision (README, Benchmarks).
--
-- decision_batches is partitioned by day of logged_at (when the batch was
-- written, never before its decisions); the service creates the partitions
-- of the coming days and drops those past the retention. txid, the writing
-- transaction's id, orders listings: a batch becomes listable once every
-- older transaction that may write decisions has ended, so pages never skip
-- a batch that commits late.

CREATE TABLE audit_chains (
    chain_id       text COLLATE "C" NOT NULL PRIMARY KEY CHECK (chain_id ~ '^[0-9a-f]{16}$'),
    started_at     timestamptz NOT NULL,
    last_pos       bigint NOT NULL DEFAULT 0 CHECK (last_pos >= 0),
    last_hash      bytea NOT NULL DEFAULT ''::bytea,
    last_logged_at timestamptz
);

-- The last link of each chain in a partition dropped by retention: the
-- chain verifies onwards from it.
CREATE TABLE audit_anchors (
    chain_id   text COLLATE "C" NOT NULL REFERENCES audit_chains (chain_id),
    pos        bigint NOT NULL CHECK (pos >= 1),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    kept_from  timestamptz NOT NULL, -- entries logged before this were dropped
    dropped_at timestamptz NOT NULL,
    PRIMARY KEY (chain_id, pos)
);

CREATE TABLE decision_batches (
    logged_at   timestamptz NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    chain_id    text COLLATE "C" NOT NULL,
    batch_first bigint NOT NULL CHECK (batch_first >= 1), -- the batch's first position, in every row of the batch
    tenant_id   text COLLATE "C" NOT NULL,
    first_pos   bigint NOT NULL, -- the tenant's first and last positions in the batch
    last_pos    bigint NOT NULL CHECK (last_pos >= first_pos AND first_pos >= batch_first),
    min_seq     bigint NOT NULL, -- the range of the entries' id sequence numbers
    max_seq     bigint NOT NULL,
    min_at      timestamptz NOT NULL, -- the range of the entries' decision times
    max_at      timestamptz NOT NULL,
    entries     integer NOT NULL CHECK (entries >= 1),
    last_hash   bytea NOT NULL CHECK (octet_length(last_hash) = 32), -- the hash of the entry at last_pos
    data        bytea NOT NULL, -- per entry: uvarint length, canonical encoding, 32-byte hash
    PRIMARY KEY (chain_id, batch_first, tenant_id, logged_at)
) PARTITION BY RANGE (logged_at);

-- The entries are hashed and compact already: store them uncompressed.
ALTER TABLE decision_batches ALTER COLUMN data SET STORAGE EXTERNAL;

-- Listing a tenant's log; finding an entry by its id.
CREATE INDEX decision_batches_tenant_order ON decision_batches (tenant_id, txid);
CREATE INDEX decision_batches_id ON decision_batches (chain_id, tenant_id, max_seq);

-- The change log's hash chain, one per tenant: each entry's hash covers its
-- canonical content and the hash of the tenant's previous revision. Filled
-- in the admin write's transaction; NULL for entries written before this
-- migration.
ALTER TABLE change_log
    ADD COLUMN hash bytea CHECK (hash IS NULL OR octet_length(hash) = 32);
