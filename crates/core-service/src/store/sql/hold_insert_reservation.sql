WITH r AS (
  INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until, session_id)
  VALUES ($1, $2, $3, 'held', $4, $5, $13)
  RETURNING id
), o AS (
  INSERT INTO outbox (event_id, topic, aggregate_key, payload, headers)
  VALUES ($8, $9, $10, $11, $12)
)
INSERT INTO reservation_seats (reservation_id, seat_id, price_krw)
SELECT (SELECT id FROM r), seat, price FROM unnest($6::bigint[], $7::bigint[]) AS t(seat, price)
