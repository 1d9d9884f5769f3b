-- 0002: data permissions: the tenant's manager depth, its department tree,
-- user memberships and managers, sharing rules and record shares.
--
-- As in 0001, every primary key starts with tenant_id and identifier
-- columns use the "C" collation. Principals (who a rule or share names) are
-- stored as kind + id + include_subs. A department's parent and a
-- membership's primary department are foreign keys; the other references
-- (other departments, managers, principals, which may name a user, a
-- department or a role) are checked by the service inside the write
-- transaction, which holds the tenant's row lock.

ALTER TABLE tenants
    ADD COLUMN manager_depth integer NOT NULL DEFAULT 2
        CHECK (manager_depth BETWEEN 0 AND 16);

CREATE TABLE departments (
    tenant_id     text COLLATE "C" NOT NULL REFERENCES tenants (id),
    department_id text COLLATE "C" NOT NULL
                  CHECK (octet_length(department_id) BETWEEN 1 AND 64),
    name          text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 256),
    parent_id     text COLLATE "C" CHECK (parent_id <> department_id), -- NULL at the top
    PRIMARY KEY (tenant_id, department_id),
    -- Deferred to the commit, so that a write may insert a tenant's
    -- departments in any order.
    FOREIGN KEY (tenant_id, parent_id) REFERENCES departments (tenant_id, department_id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE memberships (
    tenant_id   text COLLATE "C" NOT NULL REFERENCES tenants (id),
    user_id     text COLLATE "C" NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 128),
    primary_department_id text COLLATE "C" NOT NULL,
    other_department_ids  text[] COLLATE "C" NOT NULL CHECK (cardinality(other_department_ids) <= 16),
    manager_id  text COLLATE "C" NOT NULL CHECK (octet_length(manager_id) <= 128), -- '' for none
    CHECK (manager_id <> user_id),
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, primary_department_id) REFERENCES departments (tenant_id, department_id)
);

CREATE TABLE sharing_rules (
    tenant_id    text COLLATE "C" NOT NULL REFERENCES tenants (id),
    rule_id      text COLLATE "C" NOT NULL CHECK (octet_length(rule_id) BETWEEN 1 AND 64),
    module       text COLLATE "C" NOT NULL CHECK (octet_length(module) BETWEEN 1 AND 64),
    owner_kind   text NOT NULL CHECK (owner_kind IN ('user', 'department', 'role')),
    owner_id     text COLLATE "C" NOT NULL CHECK (octet_length(owner_id) BETWEEN 1 AND 128),
    owner_subs   boolean NOT NULL,
    shared_kind  text NOT NULL CHECK (shared_kind IN ('user', 'department', 'role')),
    shared_id    text COLLATE "C" NOT NULL CHECK (octet_length(shared_id) BETWEEN 1 AND 128),
    shared_subs  boolean NOT NULL,
    access       text NOT NULL CHECK (access IN ('read', 'read_write')),
    CHECK (NOT owner_subs OR owner_kind = 'department'),
    CHECK (NOT shared_subs OR shared_kind = 'department'),
    PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE record_shares (
    tenant_id      text COLLATE "C" NOT NULL REFERENCES tenants (id),
    module         text COLLATE "C" NOT NULL CHECK (octet_length(module) BETWEEN 1 AND 64),
    record_id      text COLLATE "C" NOT NULL CHECK (octet_length(record_id) BETWEEN 1 AND 128),
    principal_kind text NOT NULL CHECK (principal_kind IN ('user', 'department', 'role')),
    principal_id   text COLLATE "C" NOT NULL CHECK (octet_length(principal_id) BETWEEN 1 AND 128),
    principal_subs boolean NOT NULL,
    access         text NOT NULL CHECK (access IN ('read', 'read_write')),
    expires_at     timestamptz, -- NULL: never expires
    shared_by      text NOT NULL CHECK (octet_length(shared_by) <= 256),
    shared_at      timestamptz, -- NULL: not recorded
    CHECK (NOT principal_subs OR principal_kind = 'department'),
    PRIMARY KEY (tenant_id, module, record_id, principal_kind, principal_id, principal_subs)
);
