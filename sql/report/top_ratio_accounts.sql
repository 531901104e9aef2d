-- Accounts by deposit/withdrawal ratio, highest first (the report keeps the first few).
-- Registered: creditworthiness (the view of sql/analytics/creditworthiness.sql).
-- Deposits without withdrawals have no ratio (it is unbounded) and come first; accounts with
-- neither come last. Ties by the larger deposits, then the account number, so the order is
-- the same on every run.
SELECT base_currency,
       account_no,
       deposits_sgd,
       withdrawals_sgd,
       deposit_withdrawal_ratio,
       creditworthiness,
       unconverted_amounts
FROM creditworthiness
ORDER BY CASE WHEN withdrawals_sgd = 0 AND deposits_sgd > 0 THEN 0
              WHEN deposit_withdrawal_ratio IS NULL THEN 2
              ELSE 1
         END,
         deposit_withdrawal_ratio DESC,
         deposits_sgd DESC,
         account_no
