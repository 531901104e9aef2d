-- balance-history of the charted accounts, most active first, each account's months in order.
-- Registered: balance_history (sql/analytics/balance_history.sql) and chart_accounts (the
-- first rows of most_active_accounts.sql).
SELECT h.base_currency,
       h.account_no,
       h.year,
       h.month,
       h.net_sgd,
       h.running_balance_sgd,
       h.unconverted_to_date
FROM balance_history h
JOIN chart_accounts a
  ON a.base_currency = h.base_currency
 AND a.account_no = h.account_no
ORDER BY a.transactions DESC, h.account_no, h.year, h.month
