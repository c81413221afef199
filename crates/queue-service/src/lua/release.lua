-- Frees one admission session (purchase completed, fan left, session
-- revoked). ARGV[1] = user id, ARGV[2] = reason: completed | left | revoked,
-- ARGV[3] = session id.
-- Replies: {'released'} | {'expired'} (the session had lapsed) | {'none'}
-- (the fan holds no active slot, or holds one of another session).
--
-- Only the named session is freed: a late, redelivered or replayed release
-- of an earlier session finds the fan's current session id differ and
-- changes nothing, so it never ends a newer admission.
--
-- A completed purchase leaves its session id in K_DONE until the access
-- token expires, so that a payment retried under the same Idempotency-Key
-- still verifies (for a replay only; core-service enforces that). Lapsed
-- markers are pruned here in bounded batches, never by a scan.
local DONE_PRUNE = 20
local user, reason, sid = ARGV[1], ARGV[2], ARGV[3]
local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if not expiry or redis.call('HGET', K_SESSIONS, user) ~= sid then
  return {'none'}
end
local now = now_ms()
if tonumber(expiry) <= now then
  expire_active(user, now)
  return {'expired'}
end
if reason == 'completed' then
  redis.call('ZADD', K_DONE, expiry, sid)
  local lapsed = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', now, 'LIMIT', 0, DONE_PRUNE)
  if #lapsed > 0 then
    redis.call('ZREM', K_DONE, unpack(lapsed))
  end
end
free_slots({user}, reason, now)
-- A closed room's keys expire (configure.lua); a key this release has
-- created afresh expires with them.
local keep = redis.call('TTL', K_CFG)
if keep > 0 then
  for _, key in ipairs({K_DONE, K_STATS, K_RATES}) do
    if redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, keep)
    end
  end
end
return {'released'}
