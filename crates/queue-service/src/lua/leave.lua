-- A fan leaves the line or gives up the active slot. ARGV[1] = user id.
-- Replies: {'waiting'} | {'active'} | {'none'} (what the fan left).
local user = ARGV[1]
if redis.call('ZREM', K_WAITING, user) == 1 or redis.call('ZREM', K_PRE, user) == 1 then
  redis.call('HINCRBY', K_STATS, 'left_waiting', 1)
  return {'waiting'}
end
if redis.call('ZSCORE', K_ACTIVE, user) then
  free_slots({user}, 'left', now_ms())
  return {'active'}
end
return {'none'}
