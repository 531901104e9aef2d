-- What the loads of the files in the lake read, loaded and rejected, in total.
-- Registered: loads (one row per source file, its latest load).
SELECT count(*) AS files,
       coalesce(sum(rows_read), 0) AS rows_read,
       coalesce(sum(rows_loaded), 0) AS rows_loaded,
       coalesce(sum(rows_rejected), 0) AS rows_rejected,
       max(loaded_at) AS last_loaded_at
FROM loads
