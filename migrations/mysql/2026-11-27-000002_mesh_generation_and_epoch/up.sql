-- generation: bumped by every change of a mesh's desired state (compare-and-set by clients);
-- owner_epoch: the lease epoch of the worker that last wrote the mesh (writes are fenced by it).
ALTER TABLE mesh ADD COLUMN generation bigint(20) NOT NULL DEFAULT 1;
ALTER TABLE mesh ADD COLUMN owner_epoch bigint(20) NOT NULL DEFAULT 0;
