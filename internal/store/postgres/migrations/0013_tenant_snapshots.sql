-- 0013: tenant snapshots, from which the change log replays history.
--
-- A tenant's whole state at a revision (store.EncodeState), sealed like
-- the change log's rows under the key key_id names. One is written when a
-- tenant is created, when a write replaces its whole state (an import),
-- and, for a tenant created before this migration, by its first write
-- after it. With the rows every later change-log entry carries, the state
-- at any revision from the first snapshot on can be rebuilt: a logged
-- decision is explained after the fact at its revision.

CREATE TABLE tenant_snapshots (
    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants (id),
    revision  bigint NOT NULL CHECK (revision >= 1),
    rows      json NOT NULL,
    rows_mac  bytea NOT NULL,
    key_id    text NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);
