-- Athena (engine v3, Trino SQL) version of sql/analytics/account_summary.sql: the same columns,
-- rows and order. {database} is the quoted database name (fxpipe catalog athena fills it in).
-- Trino sums decimal(38,2) into decimal(38,2), exactly, as DataFusion does.
SELECT base_currency,
       account_no,
       count(*) AS transactions,
       coalesce(sum(withdrawal_sgd_amt), 0) AS total_withdrawals_sgd,
       coalesce(sum(deposit_sgd_amt), 0) AS total_deposits_sgd,
       sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
         + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
FROM {database}.processed
GROUP BY base_currency, account_no
ORDER BY base_currency, account_no
