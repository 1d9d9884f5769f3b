-- 0011: access requests.
--
-- A role may be requestable: its request policy (who approves, the longest
-- grant an approval gives, how long a request waits) is NULL otherwise.
-- A request is kept whole as JSON (model.AccessRequest); its state moves
-- pending -> approved, denied or cancelled, and a pending request past
-- pending_until reads as lapsed. Every step is also in the change log.

ALTER TABLE roles ADD COLUMN request jsonb CHECK (request IS NULL OR jsonb_typeof(request) = 'object');

CREATE TABLE access_requests (
    tenant_id  text COLLATE "C" NOT NULL REFERENCES tenants (id),
    request_id text COLLATE "C" NOT NULL CHECK (request_id ~ '^req_[0-9a-f]{16}$'),
    body       jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object' AND body->>'id' = request_id),
    PRIMARY KEY (tenant_id, request_id)
);
