-- Currencies and days with more than one distinct rate (at most 10 of them, for the message).
-- normalize refuses to run on such a table: its as-of join would pick one rate arbitrarily.
SELECT CAST(run_date AS VARCHAR) AS run_date, target_currency
FROM rates
GROUP BY run_date, target_currency
HAVING count(DISTINCT rates_base_usd) > 1
ORDER BY run_date, target_currency
LIMIT 10
