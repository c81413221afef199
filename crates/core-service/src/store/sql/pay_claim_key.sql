INSERT INTO idempotency_keys (user_id, key, fingerprint, state, locked_until)
VALUES ($1, $2, $3, 'in_flight', now() + make_interval(secs => $4))
ON CONFLICT (user_id, key) DO UPDATE
  SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until
  WHERE idempotency_keys.state = 'in_flight' AND idempotency_keys.locked_until < now()
RETURNING 1
