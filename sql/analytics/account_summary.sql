-- Per account: total withdrawals and deposits in the base currency (missing counted as 0),
-- and how many amounts could not be converted (so a total is never silently short).
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
-- {processed} is the table as the dialect names it: `processed` here, `"db".processed` in
-- the Athena text `fxpipe catalog athena` renders from this file.
-- On Athena (Trino), sums of decimal(38,2) stay decimal(38,2), exactly, as here.
SELECT base_currency,
       account_no,
       count(*) AS transactions,
       coalesce(sum(withdrawal_sgd_amt), 0) AS total_withdrawals_sgd,
       coalesce(sum(deposit_sgd_amt), 0) AS total_deposits_sgd,
       sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
         + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
FROM {processed}
GROUP BY base_currency, account_no
ORDER BY base_currency, account_no
