-- Per account: deposits / withdrawals in the base currency.
-- > 1.5 High, 1.0 to 1.5 inclusive Moderate, otherwise Low. Unlike the original, an account
-- with deposits and no withdrawals is High (its ratio is unbounded, shown as NULL), and an
-- account with neither is 'No Activity', not Low.
-- The bands compare exact decimals with integer factors (deposits × 2 > withdrawals × 3), never
-- a float: 4.95 against 3.30 × 1.5 in Float64 is 4.95 > 4.949999…, which would say High.
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
-- {processed} is the table as the dialect names it: `processed` here, `"db".processed` in
-- the Athena text `fxpipe catalog athena` renders from this file.
--
-- The ratio: {ratio_dividend} and {ratio_divisor} are the dialect's decimal types (see
-- jobs/analytics.rs, `Dialect`). DataFusion: DECIMAL(38, 2) / DECIMAL(24, 2), whose quotient has
-- 8 places that round(…, 4) rounds. Trino (Athena) divides decimals at the LARGER scale of the
-- two operands, rounding half up (decimal(38,2) / decimal(38,2) would keep 2 places), so there
-- the dividend is DECIMAL(38, 4): the quotient is the exact ratio rounded half away from zero to
-- 4 places, and round(…, 4) changes nothing. Both show the same ratio (the tests run the Athena
-- text on DataFusion too and compare it with the report row by row).
WITH totals AS (
    SELECT base_currency,
           account_no,
           coalesce(sum(withdrawal_sgd_amt), 0) AS withdrawals_sgd,
           coalesce(sum(deposit_sgd_amt), 0) AS deposits_sgd,
           sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
             + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
    FROM {processed}
    GROUP BY base_currency, account_no
)
SELECT base_currency,
       account_no,
       withdrawals_sgd,
       deposits_sgd,
       CASE WHEN withdrawals_sgd > 0
            THEN round(CAST(deposits_sgd AS {ratio_dividend}) / CAST(withdrawals_sgd AS {ratio_divisor}), 4)
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
