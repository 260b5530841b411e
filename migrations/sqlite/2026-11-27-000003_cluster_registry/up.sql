-- Clusters registered with mesh-manager; credentials sealed with an AEAD key (see the MySQL migration).
CREATE TABLE registered_cluster (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  tenant_id varchar(255) NOT NULL,
  name varchar(64) NOT NULL,
  region varchar(64) NOT NULL DEFAULT '',
  server varchar(1024) NOT NULL,
  auth_kind varchar(32) NOT NULL,
  credentials_sealed text NOT NULL,
  key_id varchar(64) NOT NULL,
  status varchar(32) NOT NULL DEFAULT '',
  status_message varchar(2048) NOT NULL DEFAULT '',
  deleted_flag bigint NOT NULL DEFAULT 0,
  deleted_at timestamp NULL DEFAULT NULL,
  created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX idx_registered_cluster_name ON registered_cluster (name, deleted_flag);
CREATE INDEX idx_registered_cluster_tenant ON registered_cluster (tenant_id);
