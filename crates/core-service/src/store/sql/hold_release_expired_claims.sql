WITH released AS (
  UPDATE reservation_seats SET active = false
  WHERE seat_id = ANY($1) AND active
  RETURNING reservation_id
)
UPDATE reservations SET status = 'expired', updated_at = now()
WHERE id IN (SELECT reservation_id FROM released) AND status = 'held'
