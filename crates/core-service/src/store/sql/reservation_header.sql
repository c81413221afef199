SELECT user_id, performance_id FROM reservations WHERE id = $1
