-- Room settings and live numbers (admin GET, stats, GetStats). No ARGV.
-- Replies: {'no_room'} or {'room', state, capacity, rate, ttl, abandon,
--   claim, waiting, active, entered, admitted, left_waiting, exited_left,
--   exited_expired, exited_completed, exited_revoked, exited_no_show,
--   abandoned, entry_rate, exit_rate, sold_out, pre_queue, opens_at,
--   shuffle seed, departure_rate, latency_target, admission_rate,
--   admission_rate_reason, core hold p95, core payment p95, core pool
--   saturated, sold_out_total}; the core's health is '' when no report is fresh; claim is '0' for a room without claim
--   deadlines; sold_out is '1' or '0'; opens_at is '' for none (ms since
--   the epoch otherwise); the seed is '' until the pre-queue has opened, so
--   nobody can compute the order in advance.
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
reply[#reply + 1] = sold_out(cfg, now) and '1' or '0'
reply[#reply + 1] = int(redis.call('ZCARD', K_PRE))
reply[#reply + 1] = cfg.opens_at and int(cfg.opens_at) or ''
reply[#reply + 1] = (cfg.pre_next and cfg.opens_at and cfg.seed) or ''
reply[#reply + 1] = redis.call('HGET', K_STATS, 'dep_rate') or '0'
reply[#reply + 1] = int(cfg.target)
local rate = admission_rate(cfg, now)
reply[#reply + 1] = tostring(rate)
local h = redis.call('HMGET', K_CFG, 'core_hold_p95', 'core_payment_p95', 'core_saturated')
local fresh = health_fresh(cfg, now)
reply[#reply + 1] = admission_reason(cfg, now)
reply[#reply + 1] = (fresh and h[1]) or ''
reply[#reply + 1] = (fresh and h[2]) or ''
reply[#reply + 1] = (fresh and h[3]) or ''
reply[#reply + 1] = redis.call('HGET', K_STATS, 'sold_out') or '0'
return reply
