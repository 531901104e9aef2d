-- What a normalize run converted, per currency: the job report's counts.
-- Registered by the job: normalized (the rows just written, with the default column names).
SELECT side,
       currency,
       sum(amounts) AS amounts,
       sum(converted) AS converted,
       sum(earlier_rate) AS earlier_rate
FROM (
    SELECT 'withdrawal' AS side,
           withdrawal_currency AS currency,
           1 AS amounts,
           CASE WHEN withdrawal_sgd_amt IS NOT NULL THEN 1 ELSE 0 END AS converted,
           CASE WHEN withdrawal_rate_date < value_date THEN 1 ELSE 0 END AS earlier_rate
    FROM normalized WHERE withdrawal_amt IS NOT NULL
    UNION ALL
    SELECT 'deposit' AS side,
           deposit_currency AS currency,
           1 AS amounts,
           CASE WHEN deposit_sgd_amt IS NOT NULL THEN 1 ELSE 0 END AS converted,
           CASE WHEN deposit_rate_date < value_date THEN 1 ELSE 0 END AS earlier_rate
    FROM normalized WHERE deposit_amt IS NOT NULL
) amounts
GROUP BY side, currency
ORDER BY side, currency
