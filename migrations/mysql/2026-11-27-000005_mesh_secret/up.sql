-- Secrets mesh-manager keeps per mesh (root CA, per-cluster intermediate CAs, reader tokens),
-- sealed with the AEAD key like cluster credentials. One row per (mesh, name).
CREATE TABLE mesh_secret (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  mesh_name varchar(64) NOT NULL,
  name varchar(255) NOT NULL,
  sealed mediumtext NOT NULL,
  key_id varchar(64) NOT NULL,
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  updated_at timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (id),
  UNIQUE KEY idx_mesh_secret_name (mesh_name, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
