-- API tokens, stored as SHA-256 hashes only (see the MySQL migration).
CREATE TABLE api_token (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  token_hash varchar(64) NOT NULL,
  principal varchar(255) NOT NULL,
  tenant_id varchar(255) NOT NULL,
  role varchar(16) NOT NULL,
  created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  revoked_at timestamp NULL DEFAULT NULL
);
CREATE UNIQUE INDEX idx_api_token_hash ON api_token (token_hash);
