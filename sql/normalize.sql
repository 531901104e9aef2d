-- Transactions converted to the base currency, exactly, with the rate date used.
--
-- Registered by the job: transactions (a Delta table) and rate_calendar (sql/rate_calendar.sql,
-- computed once by the job: one row per currency and day a transaction can use, with that day's
-- rate). Parameter, bound by the planner: $1 the base currency (ISO code).
--
-- amount_in_base = amount × rate_usd[base] / rate_usd[currency], evaluated by fx_convert on
-- exact integers and rounded half away from zero to the cent. A transaction uses the rate of its
-- value date from the calendar; with none, the amount stays NULL (and the job counts it per
-- currency).
SELECT t.account_no,
       t.date,
       t.transaction_details,
       t.chq_no,
       t.value_date,
       t.withdrawal_amt,
       t.withdrawal_currency,
       t.deposit_amt,
       t.deposit_currency,
       t.balance_amt,
       CASE WHEN t.withdrawal_currency = CAST($1 AS VARCHAR)
            THEN CAST(t.withdrawal_amt AS DECIMAL(38, 2))
            ELSE fx_convert(t.withdrawal_amt, w.base_per_usd, w.currency_per_usd,
                            t.source_file, t.source_line)
       END AS withdrawal_sgd_amt,
       CASE WHEN t.deposit_currency = CAST($1 AS VARCHAR)
            THEN CAST(t.deposit_amt AS DECIMAL(38, 2))
            ELSE fx_convert(t.deposit_amt, d.base_per_usd, d.currency_per_usd,
                            t.source_file, t.source_line)
       END AS deposit_sgd_amt,
       CASE WHEN t.withdrawal_amt IS NULL THEN NULL
            WHEN t.withdrawal_currency = CAST($1 AS VARCHAR) THEN t.value_date
            ELSE w.rate_date
       END AS withdrawal_rate_date,
       CASE WHEN t.deposit_amt IS NULL THEN NULL
            WHEN t.deposit_currency = CAST($1 AS VARCHAR) THEN t.value_date
            ELSE d.rate_date
       END AS deposit_rate_date,
       -- Recorded per row so every reader (Athena, Spark) sees which currency the amounts are in.
       CAST($1 AS VARCHAR) AS base_currency,
       t.source_file,
       t.source_line,
       CAST(date_part('year', t.date) AS INT) AS year,
       CAST(date_part('month', t.date) AS INT) AS month
-- The small rate calendar is the left (hash-build) side of each join and the transactions
-- stream through as the probe side: `transactions LEFT JOIN rate_calendar` would build hash
-- tables of every transaction (gigabytes at 10M rows).
FROM rate_calendar d
RIGHT JOIN (
    rate_calendar w
    RIGHT JOIN transactions t
           ON w.currency = t.withdrawal_currency AND w.day = t.value_date
) ON d.currency = t.deposit_currency AND d.day = t.value_date
