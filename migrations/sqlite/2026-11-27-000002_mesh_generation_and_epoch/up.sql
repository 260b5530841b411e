-- generation: bumped by every change of a mesh's desired state; owner_epoch: fencing token.
ALTER TABLE mesh ADD COLUMN generation bigint NOT NULL DEFAULT 1;
ALTER TABLE mesh ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;
