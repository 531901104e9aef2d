-- The newest day the rates table holds: the sidecar's health and its last-stored-date metric.
SELECT max(run_date) AS last_date
FROM rates
