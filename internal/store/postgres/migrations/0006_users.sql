-- 0006: users as records, and deleted tenants.
--
-- A tenant's users are known to the service: grants, memberships, managers,
-- sharing rules and record shares may name only known users (the service
-- checks it inside the write's transaction). An inactive (offboarded)
-- user's grants decide nothing but stay, for the record and for
-- reactivation. Every user the existing rows name becomes a known, active
-- user.
--
-- A deleted tenant keeps its row (deleted_at set) and its change log: the
-- id is not reused, and the history of the tenant stays readable. Its
-- roles, grants, users and organisation are removed.

CREATE TABLE users (
    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants (id),
    user_id   text COLLATE "C" NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 128),
    name      text NOT NULL CHECK (octet_length(name) <= 256),
    status    text NOT NULL CHECK (status IN ('active', 'inactive')),
    PRIMARY KEY (tenant_id, user_id)
);

INSERT INTO users (tenant_id, user_id, name, status)
SELECT DISTINCT tenant_id, user_id, '', 'active' FROM (
    SELECT tenant_id, user_id FROM grants
    UNION SELECT tenant_id, user_id FROM memberships
    UNION SELECT tenant_id, manager_id FROM memberships WHERE manager_id <> ''
    UNION SELECT tenant_id, owner_id FROM sharing_rules WHERE owner_kind = 'user'
    UNION SELECT tenant_id, shared_id FROM sharing_rules WHERE shared_kind = 'user'
    UNION SELECT tenant_id, principal_id FROM record_shares WHERE principal_kind = 'user'
) named (tenant_id, user_id);

ALTER TABLE tenants ADD COLUMN deleted_at timestamptz; -- NULL while the tenant exists
