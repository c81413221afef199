-- Enter the line (idempotent). ARGV[1] = user id.
-- Replies:
--   {'no_room'} | {'closed'} | {'paused'} | {'sold_out'} (no seat left and
--   no live hold: no place is made)
--   {'active', created, sid, expiry_ms}            already admitted
--   {'pre_queue', created, opens_at_ms, silence_window_seconds} before opening
--   {'waiting', created, seq, ...} (see waiting_reply)  created is '1' for a
--   new place
local user = ARGV[1]
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
if cfg.state == 'closed' then
  return {'closed'}
end
if cfg.state == 'paused' then
  return {'paused'}
end
local now = now_ms()

local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if expiry then
  if tonumber(expiry) > now then
    return active_reply(user, expiry, '0')
  end
  -- The admission lapsed but housekeeping has not reached it yet; the fan
  -- starts over at the back like anyone else.
  expire_active(user, now)
end
if sold_out(cfg, now) then
  return {'sold_out'}
end
local pre = pre_queue_reply(cfg, user, now, true)
if pre then
  return pre
end

local created = '0'
local seq = redis.call('ZSCORE', K_WAITING, user)
if seq then
  seq = tonumber(seq)
  if not is_present(cfg, seq, now) then
    -- Abandoned earlier but not yet swept: the old place is gone.
    redis.call('ZREM', K_WAITING, user)
    redis.call('HINCRBY', K_STATS, 'abandoned', 1)
    seq = nil
  end
end
if not seq then
  seq = redis.call('INCR', K_SEQ)
  redis.call('ZADD', K_WAITING, int(seq), user)
  redis.call('HINCRBY', K_STATS, 'entered', 1)
  bump_rate('in', now, 1)
  created = '1'
end
mark_seen(cfg, seq, now)
-- Sequence numbers are unique, so the fans ahead are exactly those with a
-- smaller score: O(log n), exact.
local ahead = redis.call('ZCOUNT', K_WAITING, '-inf', '(' .. int(seq))
return waiting_reply(cfg, created, seq, ahead, now)
