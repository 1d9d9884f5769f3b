-- 0007: the decision spool.
--
-- The decision spool ships entries to PostgreSQL from local disk, also the
-- entries an earlier process of a chain left there when it stopped. Each
-- chain's head records the highest entry sequence number written, so that
-- shipping a spool again writes nothing twice.
ALTER TABLE audit_chains ADD COLUMN last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0);

UPDATE audit_chains c SET last_seq = coalesce((SELECT max(b.max_seq) FROM decision_batches b WHERE b.chain_id = c.chain_id), 0);
