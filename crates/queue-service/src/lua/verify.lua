-- Revocation check behind a valid access JWT. ARGV[1] = user, ARGV[2] = sid,
-- ARGV[3] = '1' to accept a session whose purchase completed.
-- Replies: {'ok'} | {'expired'} (slot lapsed) | {'released'} (no such
-- session: released, revoked, or replaced by a newer admission) |
-- {'completed'} (released by a completed purchase, token not yet expired;
-- only with ARGV[3] = '1').
local user, sid, accept_completed = ARGV[1], ARGV[2], ARGV[3] == '1'
local function not_active()
  if accept_completed then
    local until_ms = redis.call('ZSCORE', K_DONE, sid)
    if until_ms and tonumber(until_ms) > now_ms() then
      return {'completed'}
    end
  end
  return {'released'}
end
local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if not expiry then
  return not_active()
end
if redis.call('HGET', K_SESSIONS, user) ~= sid then
  return not_active()
end
if tonumber(expiry) <= now_ms() then
  return {'expired'}
end
return {'ok'}
