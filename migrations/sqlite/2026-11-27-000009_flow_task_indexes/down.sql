DROP INDEX idx_flow_mesh;
DROP INDEX idx_task_flow;
