-- The network of each member cluster (topology.istio.io/network); empty means the cluster's own name.
ALTER TABLE cluster ADD COLUMN network varchar(64) NOT NULL DEFAULT '';
