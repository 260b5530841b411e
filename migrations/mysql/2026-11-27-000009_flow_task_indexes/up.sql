-- A mesh's flows and a flow's tasks are read on every command and every step: index them, so those
-- reads do not scan every flow and task ever recorded.
CREATE INDEX idx_flow_mesh ON flow (mesh_name, id);
CREATE INDEX idx_task_flow ON task (flow_id, id);
