SELECT r.user_id, r.performance_id, r.status, r.amount_krw, r.held_until < now() AS lapsed, now() AS now,
       (SELECT count(*) FROM reservation_seats rs WHERE rs.reservation_id = r.id) AS seat_count
FROM reservations r WHERE r.id = $1
FOR UPDATE OF r NOWAIT
