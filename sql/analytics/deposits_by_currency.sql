-- Per deposit currency: number of deposits, total in that currency and in the base currency.
SELECT deposit_currency,
       count(*) AS deposits,
       sum(deposit_amt) AS total_deposits,
       coalesce(sum(deposit_sgd_amt), 0) AS total_deposits_sgd,
       count(*) - count(deposit_sgd_amt) AS unconverted
FROM processed
WHERE deposit_amt IS NOT NULL
GROUP BY deposit_currency
ORDER BY total_deposits_sgd DESC, deposit_currency
