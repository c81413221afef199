-- Frees an active slot (purchase completed, fan left, session revoked).
-- ARGV[1] = user id, ARGV[2] = reason: completed | left | revoked.
-- Replies: {'released'} | {'expired'} (the slot had lapsed) | {'none'}.
local user, reason = ARGV[1], ARGV[2]
local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if not expiry then
  return {'none'}
end
if tonumber(expiry) <= now_ms() then
  expire_active(user)
  return {'expired'}
end
redis.call('ZREM', K_ACTIVE, user)
redis.call('HDEL', K_SESSIONS, user)
redis.call('HINCRBY', K_STATS, 'exited_' .. reason, 1)
return {'released'}
