-- Athena (engine v3, Trino SQL) version of sql/analytics/creditworthiness.sql: the same columns,
-- rows and order. {database} is the quoted database name (fxpipe catalog athena fills it in).
-- > 1.5 High, 1.0 to 1.5 inclusive Moderate, otherwise Low. Deposits and no withdrawals is High
-- (ratio NULL), neither is 'No Activity'. The bands compare exact decimals with integer factors
-- (deposits × 2 > withdrawals × 3): Trino multiplies decimal(38,2) by an integer exactly too.
--
-- The ratio: Trino divides decimals at the LARGER scale of the two operands, rounding half up
-- (decimal(38,2) / decimal(38,2) would keep 2 places, 1.2345 would show as 1.23). The dividend
-- is therefore cast to 4 places: the quotient is the exact ratio rounded half away from zero to
-- 4 places, which is what fxpipe report shows. round(…, 4) changes nothing in Trino and makes
-- the query give the same answer on DataFusion too (it truncates its 8-place quotient there),
-- which the tests use to compare this query with the report row by row.
WITH totals AS (
    SELECT base_currency,
           account_no,
           coalesce(sum(withdrawal_sgd_amt), 0) AS withdrawals_sgd,
           coalesce(sum(deposit_sgd_amt), 0) AS deposits_sgd,
           sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
             + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
    FROM {database}.processed
    GROUP BY base_currency, account_no
)
SELECT base_currency,
       account_no,
       withdrawals_sgd,
       deposits_sgd,
       CASE WHEN withdrawals_sgd > 0
            THEN round(CAST(deposits_sgd AS DECIMAL(38, 4)) / CAST(withdrawals_sgd AS DECIMAL(38, 2)), 4)
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
