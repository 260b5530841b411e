-- Append-only history of every event of every mesh, beside the seed's mesh_events snapshot.
CREATE TABLE mesh_event_log (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  event_id varchar(36) NOT NULL,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  kind varchar(64) NOT NULL,
  correlation_id varchar(36) NULL DEFAULT NULL,
  flow_id bigint(20) NULL DEFAULT NULL,
  payload mediumtext NOT NULL,
  occurred_at timestamp(6) NOT NULL DEFAULT current_timestamp(6),
  PRIMARY KEY (id),
  UNIQUE KEY idx_mesh_event_log_event (event_id),
  KEY idx_mesh_event_log_mesh (mesh_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
