-- 0010: a decision batch's rows no longer grow with its tenants.
--
-- A batch stored one row per tenant it held, so with thousands of tenants a
-- batch of 1,000 decisions became about 1,000 rows, and PostgreSQL's work
-- per decision grew eightfold. A tenant with few entries in a batch now
-- shares the batch's one shared row: tenant_id is '' there, and tenants
-- lists the tenants whose entries the row holds (sorted, each once); a
-- tenant with many entries keeps a row of its own (tenants NULL). Queries
-- of a tenant read its own rows and the shared rows that list it.
ALTER TABLE decision_batches ADD COLUMN tenants text[];
ALTER TABLE decision_batches ADD CONSTRAINT decision_batches_shared_lists_tenants
    CHECK ((tenant_id = '') = (tenants IS NOT NULL));
CREATE INDEX decision_batches_shared ON decision_batches USING gin (tenants) WHERE tenant_id = '';
