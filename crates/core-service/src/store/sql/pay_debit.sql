UPDATE users SET balance_krw = balance_krw - $2, updated_at = now()
WHERE id = $1 AND balance_krw >= $2
RETURNING balance_krw
