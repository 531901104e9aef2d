-- Per account and month: deposits, withdrawals and net flow in the base currency.
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
-- {processed} is the table as the dialect names it: `processed` here, `"db".processed` in
-- the Athena text `fxpipe catalog athena` renders from this file.
-- year and month are the Hive partition columns, which Athena reads from the Delta log.
SELECT base_currency,
       account_no,
       year,
       month,
       count(*) AS transactions,
       coalesce(sum(deposit_sgd_amt), 0) AS deposits_sgd,
       coalesce(sum(withdrawal_sgd_amt), 0) AS withdrawals_sgd,
       coalesce(sum(deposit_sgd_amt), 0) - coalesce(sum(withdrawal_sgd_amt), 0) AS net_sgd
FROM {processed}
GROUP BY base_currency, account_no, year, month
ORDER BY base_currency, account_no, year, month
