-- Revocation check behind a valid access JWT. ARGV[1] = user, ARGV[2] = sid.
-- Replies: {'ok'} | {'expired'} (slot lapsed) | {'released'} (no such
-- session: released, revoked, or replaced by a newer admission).
local user, sid = ARGV[1], ARGV[2]
local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if not expiry then
  return {'released'}
end
if redis.call('HGET', K_SESSIONS, user) ~= sid then
  return {'released'}
end
if tonumber(expiry) <= now_ms() then
  return {'expired'}
end
return {'ok'}
