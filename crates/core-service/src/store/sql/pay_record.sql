WITH ledger AS (
  INSERT INTO ledger_entries (user_id, kind, amount_krw, balance_after_krw, payment_id, created_at, price_krw, discount_krw, coupon_code)
  VALUES ($1, 'spend', $2, $3, $4, $5, $14, $15, $16)
), confirmed AS (
  UPDATE reservations SET status = 'confirmed', updated_at = $5 WHERE id = $6
), payment AS (
  INSERT INTO payments (id, user_id, reservation_id, idempotency_key, amount_krw, status, paid_at, price_krw, discount_krw, coupon_code)
  VALUES ($4, $1, $6, $7, $2, 'completed', $5, $14, $15, $16)
), event AS (
  INSERT INTO outbox (event_id, topic, aggregate_key, payload, headers) VALUES ($8, $9, $10, $11, $12)
)
UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = $13
WHERE user_id = $1 AND key = $7
