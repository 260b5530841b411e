-- The lease epoch of the worker that recorded each event (NULL: recorded outside a fenced step).
-- Steps and their events commit together, so along a mesh's history the epochs never go down:
-- a write from an owner older than one that already wrote would show as a step back.
ALTER TABLE mesh_event_log ADD COLUMN epoch bigint(20) NULL DEFAULT NULL;
