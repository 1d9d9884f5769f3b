-- 0004: the credentials callers authenticate with, and the credential of
-- each admin write in the change log.
--
-- A credential is an API key (only the SHA-256 of its secret is kept: the
-- secret is shown once, at creation) or a client certificate identity (a
-- URI SAN or common name). Either carries scopes, the tenants it may act in
-- (empty: every tenant, for platform credentials), an optional bound user
-- and expiry. Revoking keeps the row, for the record.

CREATE TABLE credentials (
    id          text COLLATE "C" NOT NULL PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name        text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 64),
    secret_hash bytea CHECK (octet_length(secret_hash) = 32),
    certificate text COLLATE "C" CHECK (octet_length(certificate) BETWEEN 1 AND 1024),
    scopes      text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 4),
    tenants     text[] NOT NULL CHECK (cardinality(tenants) <= 1000),
    user_id     text COLLATE "C" NOT NULL DEFAULT '' CHECK (octet_length(user_id) <= 128),
    expires_at  timestamptz, -- NULL: never expires
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL CHECK (octet_length(created_by) <= 256),
    revoked_at  timestamptz, -- NULL: in force
    revoked_by  text NOT NULL DEFAULT '' CHECK (octet_length(revoked_by) <= 256),
    CHECK ((secret_hash IS NULL) <> (certificate IS NULL))
);

-- One credential in force per certificate identity.
CREATE UNIQUE INDEX credentials_certificate ON credentials (certificate)
    WHERE certificate IS NOT NULL AND revoked_at IS NULL;

ALTER TABLE change_log ADD COLUMN credential text NOT NULL DEFAULT ''
    CHECK (octet_length(credential) <= 1100);
