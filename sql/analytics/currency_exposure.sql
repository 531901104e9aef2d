-- Per currency: money in and out, in that currency and in the base currency, and the net.
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
-- {processed} is the table as the dialect names it: `processed` here, `"db".processed` in
-- the Athena text `fxpipe catalog athena` renders from this file.
-- On Athena, UNION ALL gives the integer 0 and the decimal(38,4) amounts the type
-- decimal(38,4) in Trino, so the sums in the currency itself stay exact there too.
WITH flows AS (
    SELECT base_currency, withdrawal_currency AS currency, 0 AS amount_in, withdrawal_amt AS amount_out,
           CAST(0 AS DECIMAL(38, 2)) AS in_sgd, withdrawal_sgd_amt AS out_sgd,
           CASE WHEN withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END AS unconverted
    FROM {processed} WHERE withdrawal_amt IS NOT NULL
    UNION ALL
    SELECT base_currency, deposit_currency, deposit_amt, 0, deposit_sgd_amt, CAST(0 AS DECIMAL(38, 2)),
           CASE WHEN deposit_sgd_amt IS NULL THEN 1 ELSE 0 END
    FROM {processed} WHERE deposit_amt IS NOT NULL
)
SELECT base_currency,
       currency,
       sum(amount_in) AS deposits,
       sum(amount_out) AS withdrawals,
       coalesce(sum(in_sgd), 0) AS deposits_sgd,
       coalesce(sum(out_sgd), 0) AS withdrawals_sgd,
       coalesce(sum(in_sgd), 0) - coalesce(sum(out_sgd), 0) AS net_sgd,
       sum(unconverted) AS unconverted
FROM flows
GROUP BY base_currency, currency
ORDER BY base_currency, currency
