-- The rate calendar: for each currency and each day a transaction can use, the rate to use.
--
-- Computed once per normalize run, in the client process, from the rates table alone; the job
-- then joins the transactions with it (sql/normalize.sql) wherever they are (here or on the
-- executors). Parameters, bound by the job: $1 the base currency (ISO code), $2 max_rate_age
-- (days, 0 to 366), $3 and $4 the first and last rate dates the transactions can use (the
-- earliest value date minus $2, the latest value date): only those rates are read, so a rates
-- table holding decades of history costs what the transactions' own years cost. A value date V
-- uses a rate of [V - $2, V], always in the range: the rate of the value date, else the latest
-- earlier one not older than max_rate_age days, never a later one.
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
SELECT currency, day, rate_date, currency_per_usd, base_per_usd
FROM rate_calendar
