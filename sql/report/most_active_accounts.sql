-- Accounts by number of transactions, most first (the report charts the first few).
-- Registered: processed. Ties by account number, so the choice is the same on every run.
SELECT base_currency,
       account_no,
       count(*) AS transactions
FROM processed
GROUP BY base_currency, account_no
ORDER BY transactions DESC, account_no
