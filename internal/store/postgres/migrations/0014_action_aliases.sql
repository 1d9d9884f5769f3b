-- 0014: a tenant's action aliases (model.Settings.ActionAliases).
--
-- The action names a tenant's callers use (an API gateway's
-- can_update_todo) and what each stands for (todo.update, or a function
-- id), as one JSON object: a setting of the tenant like its manager depth,
-- read with it and written with it.

ALTER TABLE tenants ADD COLUMN action_aliases jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(action_aliases) = 'object');
