-- Amounts normalize could not convert (no usable rate), per currency: what every total in the
-- report is missing.
-- Registered: processed.
WITH amounts AS (
    SELECT withdrawal_currency AS currency, withdrawal_amt AS amount
    FROM processed WHERE withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL
    UNION ALL
    SELECT deposit_currency, deposit_amt
    FROM processed WHERE deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL
)
SELECT currency,
       count(*) AS amounts,
       sum(amount) AS total
FROM amounts
GROUP BY currency
ORDER BY amounts DESC, currency
