-- 0017: the shared row's tenant list is compressed with lz4, as its data is.
--
-- At 10,000 tenants a batch's shared row lists some 1,800 tenants (about
-- 36 kB), which PostgreSQL compressed with its default method, pglz: under
-- check-8 load that compression was the largest single cost of the log's
-- writes to PostgreSQL, ahead of lz4 compressing the entries themselves
-- (perf: pglz_compress 11% of the backend's CPU, LZ4 7%). The setting
-- applies to rows written from now on; reads take either. A server built
-- without lz4 keeps pglz.
DO $$
DECLARE
    part regclass;
BEGIN
    BEGIN
        ALTER TABLE decision_batches ALTER COLUMN tenants SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported THEN
        RAISE NOTICE 'this PostgreSQL has no lz4: the shared rows keep pglz';
        RETURN;
    END;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'decision_batches'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN tenants SET COMPRESSION lz4', part);
    END LOOP;
END
$$;
