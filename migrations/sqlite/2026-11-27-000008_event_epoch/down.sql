ALTER TABLE mesh_event_log DROP COLUMN epoch;
