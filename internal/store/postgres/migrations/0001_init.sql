-- 0001: tenants, their roles and grants, and the change log.
--
-- Every primary key starts with the tenant id: tenants are the shard key
-- when the data outgrows one PostgreSQL (Citus distributes these tables by
-- tenant_id). Identifier columns use the "C" collation so that ordering and
-- uniqueness are bytewise, as in Go. The CHECK constraints repeat the
-- model's limits (internal/model/ids.go, in bytes) so that the database
-- refuses oversize values even when a caller skipped validation.

CREATE TABLE tenants (
    id         text COLLATE "C" NOT NULL PRIMARY KEY
               CHECK (octet_length(id) BETWEEN 1 AND 64),
    name       text NOT NULL CHECK (octet_length(name) <= 256),
    revision   bigint NOT NULL CHECK (revision >= 1),
    created_at timestamptz NOT NULL
);

CREATE TABLE roles (
    tenant_id    text COLLATE "C" NOT NULL REFERENCES tenants (id),
    role_id      text COLLATE "C" NOT NULL
                 CHECK (octet_length(role_id) BETWEEN 1 AND 64),
    display_name text NOT NULL CHECK (octet_length(display_name) <= 256),
    description  text NOT NULL CHECK (octet_length(description) <= 256),
    template     text COLLATE "C" NOT NULL CHECK (octet_length(template) <= 64),
    inherits     text[] NOT NULL CHECK (cardinality(inherits) <= 16),
    permissions  jsonb NOT NULL CHECK (jsonb_typeof(permissions) = 'object'),
    PRIMARY KEY (tenant_id, role_id)
);

CREATE TABLE grants (
    tenant_id  text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL
               CHECK (octet_length(user_id) BETWEEN 1 AND 128),
    role_id    text COLLATE "C" NOT NULL,
    expires_at timestamptz, -- NULL: never expires
    granted_by text NOT NULL CHECK (octet_length(granted_by) <= 256),
    granted_at timestamptz, -- NULL: not recorded
    PRIMARY KEY (tenant_id, user_id, role_id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, role_id)
);

CREATE TABLE change_log (
    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants (id),
    revision  bigint NOT NULL CHECK (revision >= 1),
    at        timestamptz NOT NULL,
    actor     text NOT NULL CHECK (octet_length(actor) <= 256),
    reason    text NOT NULL CHECK (octet_length(reason) <= 1024),
    action    text NOT NULL CHECK (octet_length(action) BETWEEN 1 AND 64),
    target    text NOT NULL CHECK (octet_length(target) <= 512),
    before    jsonb, -- NULL: the target did not exist before
    after     jsonb, -- NULL: the target no longer exists
    PRIMARY KEY (tenant_id, revision)
);
