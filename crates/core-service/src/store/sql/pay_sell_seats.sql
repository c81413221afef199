UPDATE seats SET status = 'sold', held_until = NULL
WHERE id IN (
  SELECT id FROM seats WHERE reservation_id = $1 AND status = 'held' ORDER BY id FOR UPDATE SKIP LOCKED
)
RETURNING id
