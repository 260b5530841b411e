DROP INDEX idx_flow_unfinished ON flow;
DROP INDEX idx_cluster_mesh ON cluster;
