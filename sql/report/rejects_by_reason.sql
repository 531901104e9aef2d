-- Rejected rows per reason code, most first.
-- Registered: rejects.
SELECT reason,
       count(*) AS rows_rejected
FROM rejects
GROUP BY reason
ORDER BY rows_rejected DESC, reason
