-- Every command mesh-manager accepted, keyed by its envelope id, so a redelivery long after the
-- JetStream duplicate window still has exactly one effect.
CREATE TABLE command_log (
  command_id varchar(36) NOT NULL,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  kind varchar(64) NOT NULL,
  status varchar(32) NOT NULL,
  result text NULL,
  flow_id bigint(20) NULL DEFAULT NULL,
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  updated_at timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (command_id),
  KEY idx_command_log_mesh (tenant_id, mesh_name, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
