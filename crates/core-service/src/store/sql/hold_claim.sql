WITH candidates AS (
  SELECT id, reservation_id AS previous
  FROM seats
  WHERE id = ANY($1) AND performance_id = $2
    AND (status = 'free' OR (status = 'held' AND held_until < now()))
  ORDER BY id
  FOR UPDATE SKIP LOCKED
)
UPDATE seats s
SET status = 'held', reservation_id = $3, held_until = now() + make_interval(secs => $4)
FROM candidates c
WHERE s.id = c.id
RETURNING s.id, s.section, s.row_label, s.number, s.grade, s.price_krw, s.held_until, c.previous
