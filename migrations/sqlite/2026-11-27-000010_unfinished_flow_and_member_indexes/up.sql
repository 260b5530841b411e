-- Deciding a command asks whether its mesh has an unfinished flow: without the status in the
-- index that read walks back through every flow the mesh ever ran when none is unfinished (the
-- usual case), so each command cost more the longer the mesh's history. A mesh's member clusters
-- are read with it, by mesh name.
CREATE INDEX idx_flow_unfinished ON flow (mesh_name, status, id);
CREATE INDEX idx_cluster_mesh ON cluster (mesh_name, deleted_flag);
