-- Transactions converted to the base currency, exactly, with the rate date used.
--
-- Registered by the job: transactions, rates (Delta tables), job_params(base_currency,
-- max_rate_age) and rate_lookback(days_back = 0..max_rate_age).
--
-- amount_in_base = amount × rate_usd[base] / rate_usd[currency], evaluated by fx_convert on
-- exact integers and rounded half away from zero to the cent. The rate used is the one of the
-- value date, else the latest earlier one not older than max_rate_age days; with none, the
-- amount stays NULL (and the job counts it per currency).
WITH base_rates AS (
    -- The base currency's rate per day (filtered first: pairing every currency with every
    -- other one of the same day would be ~170² rows a day).
    SELECT b.run_date, b.rates_base_usd AS base_per_usd
    FROM rates b
    JOIN job_params p ON b.target_currency = p.base_currency
),
rate_pairs AS (
    -- Both rates of a cross rate come from the same day.
    SELECT r.run_date,
           r.target_currency AS currency,
           r.rates_base_usd AS currency_per_usd,
           base.base_per_usd
    FROM rates r
    JOIN base_rates base ON base.run_date = r.run_date
),
rate_calendar AS (
    -- For each currency and day: the latest rate date within the allowed age, and its rates.
    SELECT latest.currency, latest.day, latest.rate_date,
           pr.currency_per_usd, pr.base_per_usd
    FROM (
        SELECT currency,
               CAST(CAST(run_date AS INT) + days_back AS DATE) AS day,
               max(run_date) AS rate_date
        FROM rate_pairs CROSS JOIN rate_lookback
        GROUP BY currency, CAST(CAST(run_date AS INT) + days_back AS DATE)
    ) latest
    JOIN rate_pairs pr ON pr.currency = latest.currency AND pr.run_date = latest.rate_date
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
       CASE WHEN t.withdrawal_currency = p.base_currency
            THEN CAST(t.withdrawal_amt AS DECIMAL(38, 2))
            ELSE fx_convert(t.withdrawal_amt, w.base_per_usd, w.currency_per_usd)
       END AS withdrawal_sgd_amt,
       CASE WHEN t.deposit_currency = p.base_currency
            THEN CAST(t.deposit_amt AS DECIMAL(38, 2))
            ELSE fx_convert(t.deposit_amt, d.base_per_usd, d.currency_per_usd)
       END AS deposit_sgd_amt,
       CASE WHEN t.withdrawal_amt IS NULL THEN NULL
            WHEN t.withdrawal_currency = p.base_currency THEN t.value_date
            ELSE w.rate_date
       END AS withdrawal_rate_date,
       CASE WHEN t.deposit_amt IS NULL THEN NULL
            WHEN t.deposit_currency = p.base_currency THEN t.value_date
            ELSE d.rate_date
       END AS deposit_rate_date,
       t.source_file,
       t.source_line,
       CAST(date_part('year', t.date) AS INT) AS year,
       CAST(date_part('month', t.date) AS INT) AS month
FROM transactions t
CROSS JOIN job_params p
LEFT JOIN rate_calendar w
       ON w.currency = t.withdrawal_currency AND w.day = t.value_date
LEFT JOIN rate_calendar d
       ON d.currency = t.deposit_currency AND d.day = t.value_date
