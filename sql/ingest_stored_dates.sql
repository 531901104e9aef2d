-- The days in a range that the rates table already holds: a backfill skips them unless --force.
-- $1 and $2 are the range's first and last dates.
SELECT DISTINCT run_date
FROM rates
WHERE run_date BETWEEN $1 AND $2
