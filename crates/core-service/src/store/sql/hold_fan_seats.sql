SELECT now() AS now,
       coalesce(sum(c.seats) FILTER (WHERE r.session_id = $3), 0)::int8 AS session_seats,
       coalesce(sum(c.seats), 0)::int8 AS fan_seats
FROM reservations r
CROSS JOIN LATERAL (
  SELECT count(*) AS seats FROM reservation_seats rs WHERE rs.reservation_id = r.id
) c
WHERE r.user_id = $1 AND r.performance_id = $2 AND r.status IN ('held', 'confirmed')
  AND (r.status = 'confirmed' OR r.held_until >= now())
