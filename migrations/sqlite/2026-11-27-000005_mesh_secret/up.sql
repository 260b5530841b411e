-- Secrets mesh-manager keeps per mesh, sealed (see the MySQL migration).
CREATE TABLE mesh_secret (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  mesh_name varchar(64) NOT NULL,
  name varchar(255) NOT NULL,
  sealed text NOT NULL,
  key_id varchar(64) NOT NULL,
  created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX idx_mesh_secret_name ON mesh_secret (mesh_name, name);
