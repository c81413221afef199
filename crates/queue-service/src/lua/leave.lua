-- A fan leaves the line or gives up the active slot. ARGV[1] = user id.
-- Replies: {'waiting'} | {'active'} | {'none'} (what the fan left).
local user = ARGV[1]
if redis.call('ZREM', K_WAITING, user) == 1 then
  redis.call('HINCRBY', K_STATS, 'left_waiting', 1)
  return {'waiting'}
end
if redis.call('ZREM', K_ACTIVE, user) == 1 then
  redis.call('HDEL', K_SESSIONS, user)
  redis.call('ZREM', K_UNCLAIMED, user)
  redis.call('HINCRBY', K_STATS, 'exited_left', 1)
  return {'active'}
end
return {'none'}
