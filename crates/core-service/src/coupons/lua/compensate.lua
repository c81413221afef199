-- Undoes one fan's reservation after its Postgres write failed.
-- KEYS[1]: issued counter; KEYS[2]: fans set; KEYS[3]: the campaign's stats
-- hash. ARGV[1]: the fan; ARGV[2]: key lifetime in seconds.
-- Replies 1 when a reservation was undone, 0 when the fan had none (undone
-- already, or repaired by reconciliation meanwhile).
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then
  return 0
end
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
redis.call('HINCRBY', KEYS[3], 'compensated', 1)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
