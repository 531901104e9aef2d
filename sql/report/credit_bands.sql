-- The creditworthiness distribution: accounts per band, the bands in their order of merit.
-- Registered: creditworthiness (the view of sql/analytics/creditworthiness.sql).
SELECT base_currency,
       creditworthiness,
       count(*) AS accounts
FROM creditworthiness
GROUP BY base_currency, creditworthiness
ORDER BY base_currency,
         CASE creditworthiness
              WHEN 'High Creditworthiness' THEN 1
              WHEN 'Moderate Creditworthiness' THEN 2
              WHEN 'Low Creditworthiness' THEN 3
              ELSE 4
         END
