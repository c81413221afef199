-- Revocation checks behind valid access JWTs, for one or more sessions of
-- this event. ARGV holds triples: user, sid, and '1' to accept a session
-- whose purchase completed ('0' otherwise).
-- Replies one status per triple, in order: 'ok' | 'expired' (slot lapsed) |
-- 'released' (no such session: released, revoked, or replaced by a newer
-- admission) | 'completed' (released by a completed purchase, token not yet
-- expired; only when accepted).
local now = now_ms()

local function check(user, sid, accept_completed)
  local expiry = redis.call('ZSCORE', K_ACTIVE, user)
  if expiry and redis.call('HGET', K_SESSIONS, user) == sid then
    if tonumber(expiry) <= now then
      return 'expired'
    end
    -- A first use of the access token claims the admission.
    redis.call('ZREM', K_UNCLAIMED, user)
    return 'ok'
  end
  if accept_completed then
    local until_ms = redis.call('ZSCORE', K_DONE, sid)
    if until_ms and tonumber(until_ms) > now then
      return 'completed'
    end
  end
  return 'released'
end

local replies = {}
for i = 1, #ARGV - 2, 3 do
  replies[#replies + 1] = check(ARGV[i], ARGV[i + 1], ARGV[i + 2] == '1')
end
return replies
