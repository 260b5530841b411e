-- Clusters registered with mesh-manager and their credentials. The kubeconfig is sealed with an
-- AEAD key from the configuration (never stored in the clear); key_id names the key that sealed it.
CREATE TABLE registered_cluster (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  tenant_id varchar(255) NOT NULL,
  name varchar(64) NOT NULL,
  region varchar(64) NOT NULL DEFAULT '',
  server varchar(1024) NOT NULL,
  auth_kind varchar(32) NOT NULL,
  credentials_sealed mediumtext NOT NULL,
  key_id varchar(64) NOT NULL,
  status varchar(32) NOT NULL DEFAULT '',
  status_message varchar(2048) NOT NULL DEFAULT '',
  deleted_flag bigint(20) NOT NULL DEFAULT 0,
  deleted_at timestamp NULL DEFAULT NULL,
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  updated_at timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (id),
  UNIQUE KEY idx_registered_cluster_name (name, deleted_flag),
  KEY idx_registered_cluster_tenant (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
