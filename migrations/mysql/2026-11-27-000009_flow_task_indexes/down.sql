DROP INDEX idx_flow_mesh ON flow;
DROP INDEX idx_task_flow ON task;
