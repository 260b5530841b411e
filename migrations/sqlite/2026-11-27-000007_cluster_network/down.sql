ALTER TABLE cluster DROP COLUMN network;
