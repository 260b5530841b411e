-- Every command mesh-manager accepted, keyed by its envelope id (see the MySQL migration).
CREATE TABLE command_log (
  command_id varchar(36) PRIMARY KEY NOT NULL,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  kind varchar(64) NOT NULL,
  status varchar(32) NOT NULL,
  result text NULL,
  flow_id bigint NULL DEFAULT NULL,
  created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_command_log_mesh ON command_log (tenant_id, mesh_name, created_at);
