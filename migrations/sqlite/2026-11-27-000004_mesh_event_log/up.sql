-- Append-only history of every event of every mesh, beside the seed's mesh_events snapshot.
CREATE TABLE mesh_event_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  event_id varchar(36) NOT NULL,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  kind varchar(64) NOT NULL,
  correlation_id varchar(36) NULL DEFAULT NULL,
  flow_id bigint NULL DEFAULT NULL,
  payload text NOT NULL,
  occurred_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX idx_mesh_event_log_event ON mesh_event_log (event_id);
CREATE INDEX idx_mesh_event_log_mesh ON mesh_event_log (mesh_name, id);
