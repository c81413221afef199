-- Records the booking core's count of this event's seats, and its health.
-- ARGV[1] = seats available (free, or held by a lapsed hold),
-- ARGV[2] = seats in live holds, ARGV[3] = fans with a live hold.
-- Admission then admits no more fans than there are seats for: the seats
-- available, less the fans admitted in the last 30 s who hold nothing yet
-- (each wants at least one), re-counted at every tick.
-- ARGV[4] = the reporting instance's hold p95 (ms), ARGV[5] = its payment
-- p95 (ms), ARGV[6] = '1' when its pool saturated; ARGV[4] is '' for a
-- report without health, which leaves the admission rate as it is.
-- Replies: {'no_room'} | {'recorded', rate, reason, cut} where rate is the
-- admission rate now (fans per second), reason why it last changed, and
-- cut '1' when this report cut it.
--
-- Admission control is AIMD, as TCP's congestion control: the rate halves
-- when a p95 passes the room's target or the pool saturated, at most once
-- a second (several instances report the same overload, and one cut per
-- round is enough, as TCP cuts once per round trip), down to 1 % of the
-- ceiling (at least one fan a second); while the core is healthy it rises
-- by 5 % of the ceiling per second, counted from the last change, so the
-- climb does not speed up with the number of reporting instances. While
-- a slow start ramps up (admission_rate.lua), a healthy report leaves the ramp to
-- set the rate and replies reason 'slow_start'.
local MD_FACTOR = 0.5
local CUT_EVERY_MS = 1000
local AI_SHARE_PER_SECOND = 0.05
local MIN_SHARE = 0.01
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
local now = now_ms()
redis.call('HSET', K_CFG, 'inv_available', ARGV[1], 'inv_held', ARGV[2],
  'inv_holders', ARGV[3], 'inv_at', int(now))
if ARGV[4] == '' then
  return {'recorded', tostring(admission_rate(cfg, now)), admission_reason(cfg, now), '0'}
end

local hold, pay, saturated = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local rate = admission_rate(cfg, now)
local v = redis.call('HMGET', K_CFG, 'aimd_at', 'aimd_reason')
local at, cut_at, reason = tonumber(v[1]) or now, cfg.aimd_cut_at or 0, v[2] or 'ceiling'
local fresh = health_fresh(cfg, now)
if not fresh then
  -- After a silence the rate starts again from the ceiling.
  at, reason = now, 'ceiling'
end
local overload
if saturated then
  overload = 'pool_saturated'
elseif hold > cfg.target then
  overload = 'hold_p95'
elseif pay > cfg.target then
  overload = 'payment_p95'
end
local cut = '0'
-- During a slow start (admission_rate.lua) the ramp sets the rate; a cut halves
-- the ramped rate and ends the ramp.
local ramp = slow_start_rate(cfg, now)
if overload then
  if now - cut_at >= CUT_EVERY_MS then
    rate = math.max(math.min(cfg.rate, math.max(1, cfg.rate * MIN_SHARE)), rate * MD_FACTOR)
    reason, cut_at, cut = overload, now, '1'
  end
elseif ramp then
  -- AIMD's own rate waits at the ceiling, so the end of the ramp is no
  -- dip back to a rate grown from the ramp's start.
  rate, reason = cfg.rate, 'slow_start'
else
  -- At most two report periods of growth at once: a late report after a
  -- pause does not jump to the ceiling.
  local grown = rate + cfg.rate * AI_SHARE_PER_SECOND * math.min(2000, math.max(0, now - at)) / 1000
  if grown >= cfg.rate then
    rate, reason = cfg.rate, 'ceiling'
  else
    rate, reason = grown, 'healthy'
  end
end
redis.call('HSET', K_CFG, 'aimd_rate', tostring(rate), 'aimd_at', int(now), 'aimd_cut_at', int(cut_at),
  'aimd_reason', reason, 'health_at', int(now), 'core_hold_p95', ARGV[4], 'core_payment_p95', ARGV[5],
  'core_saturated', saturated and '1' or '0')
cfg.aimd_rate, cfg.aimd_cut_at, cfg.health_at = rate, cut_at, now
return {'recorded', tostring(admission_rate(cfg, now)), reason, cut}
