-- fxpipe report balance-history --account-currency CODE: the month-end balance_amt, taken to be in CODE,
-- converted to the base currency at the month-end rate.
--
-- Registered: balance_history (the view of balance_history.sql), rates. Parameters, bound by
-- the planner: $1 the account currency (ISO code), $2 max_rate_age (days, 0 to 366).
--
-- The month-end rate is the one normalize would use for an amount dated the month's last day:
-- that day's, else the latest earlier day's not older than max_rate_age days, never a later
-- one, with CODE's and the base currency's rates from the same day. fx_convert computes on
-- exact integers and rounds half away from zero to the cent. A balance that cannot be
-- converted says why in note, never a bare NULL.
WITH months AS (
    SELECT *,
           CAST(CAST(CAST(make_date(year, month, 1) + INTERVAL '1 month' AS DATE) AS INT) - 1 AS BIGINT) AS month_end_day
    FROM balance_history
),
rate_pairs AS (
    SELECT r.run_date,
           CAST(CAST(r.run_date AS INT) AS BIGINT) AS run_day,
           r.rates_base_usd AS currency_per_usd,
           base.target_currency AS base_currency,
           base.rates_base_usd AS base_per_usd
    FROM rates r
    JOIN rates base ON base.run_date = r.run_date
    WHERE r.target_currency = CAST($1 AS VARCHAR)
),
month_end_rates AS (
    SELECT m.base_currency,
           m.account_no,
           m.year,
           m.month,
           p.run_date,
           p.currency_per_usd,
           p.base_per_usd,
           row_number() OVER (
               PARTITION BY m.base_currency, m.account_no, m.year, m.month
               ORDER BY p.run_day DESC
           ) AS latest
    FROM months m
    JOIN rate_pairs p
      ON p.base_currency = m.base_currency
     AND p.run_day <= m.month_end_day
     AND p.run_day >= m.month_end_day - CAST($2 AS BIGINT)
)
SELECT m.base_currency,
       m.account_no,
       m.year,
       m.month,
       m.transactions,
       m.net_sgd,
       m.running_balance_sgd,
       m.unconverted_to_date,
       m.balance_amt,
       m.balance_date,
       CAST($1 AS VARCHAR) AS account_currency,
       CASE WHEN CAST($1 AS VARCHAR) = m.base_currency THEN CAST(m.balance_amt AS DECIMAL(38, 2))
            ELSE fx_convert(m.balance_amt, r.base_per_usd, r.currency_per_usd)
       END AS balance_sgd,
       CASE WHEN m.balance_amt IS NULL THEN NULL
            WHEN CAST($1 AS VARCHAR) = m.base_currency THEN m.balance_date
            ELSE r.run_date
       END AS balance_rate_date,
       CASE WHEN m.balance_amt IS NULL THEN 'no balance_amt in this month'
            WHEN CAST($1 AS VARCHAR) <> m.base_currency AND r.run_date IS NULL
            THEN concat('no ', CAST($1 AS VARCHAR), ' and ', m.base_currency, ' rates from ',
                        CAST(CAST(CAST(m.month_end_day - CAST($2 AS BIGINT) AS INT) AS DATE) AS VARCHAR),
                        ' to ', CAST(CAST(CAST(m.month_end_day AS INT) AS DATE) AS VARCHAR))
       END AS note
FROM months m
LEFT JOIN month_end_rates r
       ON r.base_currency = m.base_currency
      AND r.account_no = m.account_no
      AND r.year = m.year
      AND r.month = m.month
      AND r.latest = 1
ORDER BY m.base_currency, m.account_no, m.year, m.month
