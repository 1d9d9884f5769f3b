-- 0016: decision batches are stored compressed with lz4.
--
-- 0003 stored a batch's data uncompressed, out of line (EXTERNAL): its
-- entries looked compact already. They are not: the method, the caller's
-- key id, the tenant and the reasons repeat from entry to entry, and lz4
-- stores a decision in 86 bytes instead of 227 (the 32-byte hash of each
-- entry is what stays). Writing the smaller row is also cheaper for
-- PostgreSQL: two fifths of a decision's cost to it was cutting the row
-- into TOAST chunks, and its CPU per decision falls from 5.0 to 3.6 us
-- (BenchmarkPostgresWrite in internal/audit).
--
-- New partitions take the settings from the parent; the existing ones are
-- set here. Rows already written stay as they are: the setting applies to
-- rows written from now on, and reads take either. A server built without
-- lz4 keeps the uncompressed storage: its only other method, pglz, costs
-- more CPU than it saves.
DO $$
DECLARE
    part regclass;
BEGIN
    BEGIN
        ALTER TABLE decision_batches ALTER COLUMN data SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported THEN
        RAISE NOTICE 'this PostgreSQL has no lz4: decision batches stay uncompressed';
        RETURN;
    END;
    ALTER TABLE decision_batches ALTER COLUMN data SET STORAGE MAIN;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'decision_batches'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN data SET COMPRESSION lz4', part);
    END LOOP;
END
$$;
