-- API tokens. Only the SHA-256 of a token is stored (hex), never the token itself; a token maps
-- to a principal, the tenant it acts for and a role (admin, editor, viewer). Revoked tokens keep
-- their row (revoked_at set) so listings show who had access.
CREATE TABLE api_token (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  token_hash varchar(64) NOT NULL,
  principal varchar(255) NOT NULL,
  tenant_id varchar(255) NOT NULL,
  role varchar(16) NOT NULL,
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  revoked_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY idx_api_token_hash (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
