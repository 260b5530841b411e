DROP INDEX idx_flow_unfinished;
DROP INDEX idx_cluster_mesh;
