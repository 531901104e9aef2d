-- Per deposit currency: number of deposits, total in that currency and in the base currency.
-- Grouped by base_currency too, so amounts in two base currencies are never added together.
-- {processed} is the table as the dialect names it: `processed` here, `"db".processed` in
-- the Athena text `fxpipe catalog athena` renders from this file.
-- On Athena, Trino puts NULLs last in a descending order where DataFusion puts them first: the
-- descending key is a coalesce, never NULL, so the order is the same on both.
SELECT base_currency,
       deposit_currency,
       count(*) AS deposits,
       sum(deposit_amt) AS total_deposits,
       coalesce(sum(deposit_sgd_amt), 0) AS total_deposits_sgd,
       count(*) - count(deposit_sgd_amt) AS unconverted
FROM {processed}
WHERE deposit_amt IS NOT NULL
GROUP BY base_currency, deposit_currency
ORDER BY base_currency, total_deposits_sgd DESC, deposit_currency
