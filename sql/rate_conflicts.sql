-- Currencies and days with more than one distinct rate (at most 10 of them, for the message).
-- normalize refuses to run on such a table: its as-of join would pick one rate arbitrarily.
-- Only the dates the run can use ($1 to $2, as in rate_calendar.sql) are checked: a conflict in
-- years no transaction needs cannot change a result.
SELECT CAST(run_date AS VARCHAR) AS run_date, target_currency
FROM rates
WHERE run_date BETWEEN CAST($1 AS DATE) AND CAST($2 AS DATE)
GROUP BY run_date, target_currency
HAVING count(DISTINCT rates_base_usd) > 1
ORDER BY run_date, target_currency
LIMIT 10
