-- Transactions converted to the base currency, exactly, with the rate date used.
--
-- Registered by the job: transactions, rates (Delta tables). Parameters, bound by the planner:
-- $1 the base currency (ISO code), $2 max_rate_age (days, 0 to 366), $3 and $4 the first and
-- last rate dates the transactions can use (the earliest value date minus $2, the latest value
-- date): only those rates are read, so a rates table holding decades of history costs what the
-- transactions' own years cost. A value date V uses a rate of [V - $2, V], always in the range.
--
-- amount_in_base = amount × rate_usd[base] / rate_usd[currency], evaluated by fx_convert on
-- exact integers and rounded half away from zero to the cent. The rate used is the one of the
-- value date, else the latest earlier one not older than max_rate_age days, never a later one;
-- with none, the amount stays NULL (and the job counts it per currency).
WITH base_rates AS (
    -- The base currency's rate per day (filtered first: pairing every currency with every
    -- other one of the same day would be ~170² rows a day).
    SELECT run_date, rates_base_usd AS base_per_usd
    FROM rates
    WHERE target_currency = CAST($1 AS VARCHAR)
      AND run_date BETWEEN CAST($3 AS DATE) AND CAST($4 AS DATE)
),
rate_pairs AS (
    -- Both rates of a cross rate come from the same day: only days that have the base's rate.
    SELECT r.run_date,
           r.target_currency AS currency,
           r.rates_base_usd AS currency_per_usd,
           base.base_per_usd,
           lead(r.run_date) OVER (PARTITION BY r.target_currency ORDER BY r.run_date) AS next_run_date
    FROM rates r
    JOIN base_rates base ON base.run_date = r.run_date
    -- A pair's validity ends at the next pair's day, and days after $4 are never looked up, so
    -- leaving later pairs out changes no used day's rate.
    WHERE r.run_date BETWEEN CAST($3 AS DATE) AND CAST($4 AS DATE)
),
rate_calendar AS (
    -- Each pair is the rate of the days [run_date, min(next pair's day - 1, run_date + age)]:
    -- one row per currency and covered day, so transactions join on equality. Daily rates give
    -- one day per pair whatever the age; the age only adds days after a pair with a gap behind it.
    SELECT currency,
           CAST(CAST(day_number AS INT) AS DATE) AS day,
           run_date AS rate_date,
           currency_per_usd,
           base_per_usd
    FROM (
        SELECT currency, run_date, currency_per_usd, base_per_usd,
               unnest(generate_series(
                   CAST(CAST(run_date AS INT) AS BIGINT),
                   -- least() skips the NULL of a currency's last pair.
                   least(CAST(CAST(next_run_date AS INT) AS BIGINT) - 1,
                         CAST(CAST(run_date AS INT) AS BIGINT) + CAST($2 AS BIGINT))
               )) AS day_number
        FROM rate_pairs
    ) valid_days
)
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
-- stream through as the probe side: DataFusion has no row count for the unnested calendar, so
-- it keeps the written order, and `transactions LEFT JOIN rate_calendar` would build hash
-- tables of every transaction (gigabytes at 10M rows).
FROM rate_calendar d
RIGHT JOIN (
    rate_calendar w
    RIGHT JOIN transactions t
           ON w.currency = t.withdrawal_currency AND w.day = t.value_date
) ON d.currency = t.deposit_currency AND d.day = t.value_date
