-- Desired Istio resources (service governance): one row per object a mesh carries to its
-- clusters. cluster_name '' = mesh-wide (every target cluster of the mesh); a cluster name =
-- only that member. The row is the desired state; generation counts its accepted changes.
CREATE TABLE istio_resource (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  tenant_id varchar(255) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  cluster_name varchar(64) NOT NULL DEFAULT '',
  kind varchar(32) NOT NULL,
  namespace varchar(63) NOT NULL,
  name varchar(253) NOT NULL,
  body mediumtext NOT NULL,
  generation bigint(20) NOT NULL DEFAULT 1,
  content_hash varchar(64) NOT NULL,
  updated_by varchar(255) NOT NULL DEFAULT '',
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  updated_at timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (id),
  UNIQUE KEY idx_istio_resource_key (mesh_name, cluster_name, kind, namespace, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The changes one resource flow carries out, with the version before, so a failed rollout can
-- put every cluster and the desired state back. before_body NULL = the object did not exist;
-- after_body NULL = the change deletes it.
CREATE TABLE resource_change (
  id bigint(20) NOT NULL AUTO_INCREMENT,
  flow_id bigint(20) NOT NULL,
  mesh_name varchar(64) NOT NULL,
  cluster_name varchar(64) NOT NULL DEFAULT '',
  kind varchar(32) NOT NULL,
  namespace varchar(63) NOT NULL,
  name varchar(253) NOT NULL,
  before_body mediumtext NULL,
  before_generation bigint(20) NULL,
  before_updated_by varchar(255) NULL,
  after_body mediumtext NULL,
  PRIMARY KEY (id),
  KEY idx_resource_change_flow (flow_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
