-- Rows per year/month partition of a normalize run (registered: normalized).
SELECT year, month, count(*) AS row_count
FROM normalized
GROUP BY year, month
ORDER BY year, month
