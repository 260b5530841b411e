-- Desired Istio resources and the changes of resource flows (see the MySQL migration).
CREATE TABLE istio_resource (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  cluster_name varchar(64) NOT NULL DEFAULT '',
  kind varchar(32) NOT NULL,
  namespace varchar(63) NOT NULL,
  name varchar(253) NOT NULL,
  body text NOT NULL,
  generation bigint NOT NULL DEFAULT 1,
  content_hash varchar(64) NOT NULL,
  updated_by varchar(255) NOT NULL DEFAULT '',
  created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX idx_istio_resource_key ON istio_resource (mesh_name, cluster_name, kind, namespace, name);
CREATE TABLE resource_change (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  flow_id bigint NOT NULL,
  mesh_name varchar(64) NOT NULL,
  cluster_name varchar(64) NOT NULL DEFAULT '',
  kind varchar(32) NOT NULL,
  namespace varchar(63) NOT NULL,
  name varchar(253) NOT NULL,
  before_body text NULL,
  before_generation bigint NULL,
  before_updated_by varchar(255) NULL,
  after_body text NULL
);
CREATE INDEX idx_resource_change_flow ON resource_change (flow_id);
