-- Athena (engine v3, Trino SQL) version of sql/analytics/deposits_by_currency.sql: the same
-- columns, rows and order. {database} is the quoted database name (fxpipe catalog athena fills
-- it in). Trino puts NULLs last in a descending order where DataFusion puts them first: the
-- descending key is a coalesce, never NULL, so the order is the same.
SELECT base_currency,
       deposit_currency,
       count(*) AS deposits,
       sum(deposit_amt) AS total_deposits,
       coalesce(sum(deposit_sgd_amt), 0) AS total_deposits_sgd,
       count(*) - count(deposit_sgd_amt) AS unconverted
FROM {database}.processed
WHERE deposit_amt IS NOT NULL
GROUP BY base_currency, deposit_currency
ORDER BY base_currency, total_deposits_sgd DESC, deposit_currency
