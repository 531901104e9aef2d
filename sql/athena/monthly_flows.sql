-- Athena (engine v3, Trino SQL) version of sql/analytics/monthly_flows.sql: the same columns,
-- rows and order. {database} is the quoted database name (fxpipe catalog athena fills it in).
-- year and month are the Hive partition columns, which Athena reads from the Delta log.
SELECT base_currency,
       account_no,
       year,
       month,
       count(*) AS transactions,
       coalesce(sum(deposit_sgd_amt), 0) AS deposits_sgd,
       coalesce(sum(withdrawal_sgd_amt), 0) AS withdrawals_sgd,
       coalesce(sum(deposit_sgd_amt), 0) - coalesce(sum(withdrawal_sgd_amt), 0) AS net_sgd
FROM {database}.processed
GROUP BY base_currency, account_no, year, month
ORDER BY base_currency, account_no, year, month
