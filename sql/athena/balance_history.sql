-- Athena (engine v3, Trino SQL) version of sql/analytics/balance_history.sql: the same columns,
-- rows and order. {database} is the quoted database name (fxpipe catalog athena fills it in).
-- "date" is quoted: in Trino it is also a type name. --account-currency has no Athena
-- version: it needs fx_convert, fxpipe's exact conversion.
WITH monthly AS (
    SELECT base_currency,
           account_no,
           year,
           month,
           count(*) AS transactions,
           coalesce(sum(deposit_sgd_amt), 0) - coalesce(sum(withdrawal_sgd_amt), 0) AS net_sgd,
           sum(CASE WHEN withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL THEN 1 ELSE 0 END
             + CASE WHEN deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL THEN 1 ELSE 0 END) AS unconverted_amounts
    FROM {database}.processed
    GROUP BY base_currency, account_no, year, month
),
stated AS (
    SELECT base_currency,
           account_no,
           year,
           month,
           balance_amt,
           "date" AS balance_date,
           row_number() OVER (
               PARTITION BY base_currency, account_no, year, month
               ORDER BY "date" DESC, source_file DESC, source_line DESC
           ) AS from_last
    FROM {database}.processed
    WHERE balance_amt IS NOT NULL
)
SELECT m.base_currency,
       m.account_no,
       m.year,
       m.month,
       m.transactions,
       m.net_sgd,
       sum(m.net_sgd) OVER (
           PARTITION BY m.base_currency, m.account_no ORDER BY m.year, m.month
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
       ) AS running_balance_sgd,
       sum(m.unconverted_amounts) OVER (
           PARTITION BY m.base_currency, m.account_no ORDER BY m.year, m.month
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
       ) AS unconverted_to_date,
       s.balance_amt,
       s.balance_date
FROM monthly m
LEFT JOIN stated s
       ON s.base_currency = m.base_currency
      AND s.account_no = m.account_no
      AND s.year = m.year
      AND s.month = m.month
      AND s.from_last = 1
ORDER BY m.base_currency, m.account_no, m.year, m.month
