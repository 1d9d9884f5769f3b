-- 0009: the rows a write left behind, with the change-log entry.
--
-- rows is the JSON of every row the write set (with its new value) and
-- every row it removed (store.Rows); NULL for a tenant's creation and for
-- writes that replace the whole state (a restore). A process holding the
-- tenant at the previous revision applies it instead of reading the whole
-- tenant again. rows_mac seals it under the entry's key (key_id), so that
-- an edit in the database is refused rather than applied. It is json, not
-- jsonb, so that it keeps the exact text the seal covers.
ALTER TABLE change_log ADD COLUMN rows json;
ALTER TABLE change_log ADD COLUMN rows_mac bytea;
