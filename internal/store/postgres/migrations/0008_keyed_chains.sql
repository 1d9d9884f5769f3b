-- 0008: keyed chains, sealed heads, registered chains, checkpoints.
--
-- Entry hashes become HMAC-SHA-256 under a key the service holds and the
-- database never sees (internal/audit/chain): key_id names the key of each
-- decision batch and change-log entry, so that a key can be rotated while
-- older entries keep verifying under theirs. An entry hashed without a key
-- (key_id '') verifies as unkeyed: anyone who can write the database could
-- have computed it.
--
-- Heads are sealed with the same keys: a decision chain's head
-- (head_key, head_mac over its position, hash and sequence number), a
-- tenant's change-log head (over its revision and that revision's hash)
-- and each retention anchor. Moving a head back to hide a cut-off tail,
-- lowering a tenant's revision, or inventing an anchor breaks its seal.
--
-- Decision chains are registered in order: reg_seq numbers them 1, 2, 3
-- ... and reg_mac seals each registration together with the seal of the
-- one before it, so that deleting a whole chain leaves a gap.
--
-- audit_checkpoints keeps the signed checkpoints the service issues (on a
-- schedule and on demand): Ed25519 signatures over every chain's head. An
-- auditor keeps copies outside the database; the copies here are for
-- convenience, since whoever can write the database can delete them.
ALTER TABLE decision_batches ADD COLUMN key_id text COLLATE "C" NOT NULL DEFAULT '';

ALTER TABLE change_log ADD COLUMN key_id text COLLATE "C" NOT NULL DEFAULT '';

ALTER TABLE tenants
    ADD COLUMN head_key text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN head_mac bytea NOT NULL DEFAULT ''::bytea;

ALTER TABLE audit_chains
    ADD COLUMN head_key text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN head_mac bytea NOT NULL DEFAULT ''::bytea,
    ADD COLUMN reg_seq bigint,
    ADD COLUMN reg_key text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN reg_mac bytea NOT NULL DEFAULT ''::bytea;

UPDATE audit_chains c SET reg_seq = o.n
FROM (SELECT chain_id, row_number() OVER (ORDER BY started_at, chain_id) AS n FROM audit_chains) o
WHERE o.chain_id = c.chain_id;

ALTER TABLE audit_chains ALTER COLUMN reg_seq SET NOT NULL;
CREATE UNIQUE INDEX audit_chains_reg_seq ON audit_chains (reg_seq);

ALTER TABLE audit_anchors
    ADD COLUMN key_id text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN mac bytea NOT NULL DEFAULT ''::bytea;

CREATE TABLE audit_checkpoints (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issued_at timestamptz NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    content   bytea NOT NULL,
    signature bytea NOT NULL
);
