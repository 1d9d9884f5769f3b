-- 0005: security events: refused authentications, refused admin calls and
-- credential changes, for auditors (internal/audit, SecurityLog).
--
-- Listings page by id. Writers insert under a transaction-scoped advisory
-- lock taken before the ids are drawn, so ids are drawn and committed in
-- the same order: a listing that has seen an id never meets a smaller one
-- committing later. The identity keeps the default cache of one id for the
-- same reason (a larger cache hands each session its own block of ids).
--
-- tenant_id is '' for the events that concern no tenant (an unknown key).
-- No column ever holds a secret: keys are named by their id. The service
-- bounds the text before writing it (cut at a character boundary); the
-- CHECKs repeat the bounds. The decision log's hourly housekeeping deletes
-- the events older than decision_log_retention_days.

CREATE TABLE security_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    kind       text COLLATE "C" NOT NULL CHECK (octet_length(kind) <= 64),
    tenant_id  text COLLATE "C" NOT NULL CHECK (octet_length(tenant_id) <= 64),
    credential text COLLATE "C" NOT NULL CHECK (octet_length(credential) <= 256),
    actor      text COLLATE "C" NOT NULL CHECK (octet_length(actor) <= 256),
    method     text COLLATE "C" NOT NULL CHECK (octet_length(method) <= 256),
    reason     text COLLATE "C" NOT NULL CHECK (octet_length(reason) <= 64),
    message    text NOT NULL CHECK (octet_length(message) <= 1024),
    request_id text COLLATE "C" NOT NULL CHECK (octet_length(request_id) <= 128),
    peer       text COLLATE "C" NOT NULL CHECK (octet_length(peer) <= 128),
    count      bigint NOT NULL CHECK (count >= 1)
);

-- Listing a tenant's events by id (every tenant's: the primary key);
-- retention by time.
CREATE INDEX security_events_tenant_order ON security_events (tenant_id, id);
CREATE INDEX security_events_at ON security_events (at);
