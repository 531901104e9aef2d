-- Per account: deposits / withdrawals in the base currency.
-- > 1.5 High, 1.0 to 1.5 inclusive Moderate, otherwise Low. Unlike the original, an account
-- with deposits and no withdrawals is High (its ratio is unbounded, shown as NULL), and an
-- account with neither is 'No Activity', not Low.
-- The bands compare exact decimals with integer factors (deposits × 2 > withdrawals × 3), never
-- a float: 4.95 against 3.30 × 1.5 in Float64 is 4.95 > 4.949999…, which would say High.
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
WITH totals AS (
    SELECT base_currency,
           account_no,
           coalesce(sum(withdrawal_sgd_amt), 0) AS withdrawals_sgd,
           coalesce(sum(deposit_sgd_amt), 0) AS deposits_sgd,
           sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
             + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
    FROM processed
    GROUP BY base_currency, account_no
)
SELECT base_currency,
       account_no,
       withdrawals_sgd,
       deposits_sgd,
       CASE WHEN withdrawals_sgd > 0
            THEN round(CAST(deposits_sgd AS DECIMAL(38, 2)) / CAST(withdrawals_sgd AS DECIMAL(24, 2)), 4)
       END AS deposit_withdrawal_ratio,
       CASE WHEN withdrawals_sgd = 0 AND deposits_sgd > 0 THEN 'High Creditworthiness'
            WHEN withdrawals_sgd = 0 THEN 'No Activity'
            WHEN deposits_sgd * 2 > withdrawals_sgd * 3 THEN 'High Creditworthiness'
            WHEN deposits_sgd >= withdrawals_sgd THEN 'Moderate Creditworthiness'
            ELSE 'Low Creditworthiness'
       END AS creditworthiness,
       unconverted_amounts
FROM totals
ORDER BY base_currency, account_no
