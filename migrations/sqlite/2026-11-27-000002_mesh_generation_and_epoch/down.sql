ALTER TABLE mesh DROP COLUMN owner_epoch;
ALTER TABLE mesh DROP COLUMN generation;
