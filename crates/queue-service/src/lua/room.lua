-- Room settings and live numbers (admin GET, stats, GetStats). No ARGV.
-- Replies: {'no_room'} or {'room', state, capacity, rate, ttl, abandon,
--   claim, waiting, active, entered, admitted, left_waiting, exited_left,
--   exited_expired, exited_completed, exited_revoked, exited_no_show,
--   abandoned, entry_rate, exit_rate, sold_out}; claim is '0' for a room
--   without claim deadlines; sold_out is '1' or '0'.
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
local now = now_ms()
local s = redis.call('HMGET', K_STATS, 'entered', 'admitted', 'left_waiting', 'exited_left',
  'exited_expired', 'exited_completed', 'exited_revoked', 'exited_no_show', 'abandoned')
local reply = {'room', cfg.state, int(cfg.capacity), tostring(cfg.rate), int(cfg.ttl), int(cfg.abandon),
  int(cfg.claim or 0), int(redis.call('ZCARD', K_WAITING)), int(redis.call('ZCARD', K_ACTIVE))}
for i = 1, #s do
  reply[#reply + 1] = s[i] or '0'
end
reply[#reply + 1] = tostring(read_rate('in', now))
reply[#reply + 1] = tostring(read_rate('out', now))
reply[#reply + 1] = sold_out(now) and '1' or '0'
return reply
