DROP TABLE mesh_event_log;
