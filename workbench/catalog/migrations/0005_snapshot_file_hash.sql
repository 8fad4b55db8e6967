-- The sha256 of each snapshot's Parquet file, checked before every read of it. The blob id is a
-- digest of the *data* (schema and rows), not of the file bytes, so it cannot catch a swapped
-- file by itself. NULL for snapshots registered before this column existed: those are checked by
-- recomputing the data digest instead (see workbench/snapshots/store.py).
ALTER TABLE snapshots ADD COLUMN file_sha256 VARCHAR;
