-- Status poll; also proves the fan is still there. ARGV[1] = user id.
-- Replies: {'no_room'} | {'closed'} | {'paused'} | {'gone'} | {'sold_out'}
--   (a waiting fan of an event with no seat left and no live hold, or a
--   fan no longer in its line while it is sold out)
--   {'active', '0', sid, expiry_ms} | {'pre_queue', '0', opens_at_ms,
--   silence_window_seconds} | {'waiting', '0', seq, ...} (see waiting_reply)
local user = ARGV[1]
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
if cfg.state == 'closed' then
  return {'closed'}
end
local now = now_ms()

local expiry = redis.call('ZSCORE', K_ACTIVE, user)
if expiry then
  if tonumber(expiry) > now then
    return active_reply(user, expiry, '0')
  end
  expire_active(user, now)
  return {'gone'}
end

local pre = pre_queue_reply(cfg, user, now, false)
if pre then
  if pre[1] == 'waiting' and cfg.state == 'paused' then
    return {'paused'}
  end
  return pre
end

local seq = redis.call('ZSCORE', K_WAITING, user)
if not seq then
  -- A fan told sold_out has left the line (below); asking again gets the
  -- same answer while the show stays sold out.
  if cfg.state == 'open' and sold_out(cfg, now) then
    return {'sold_out'}
  end
  return {'gone'}
end
seq = tonumber(seq)
if not is_present(cfg, seq, now) then
  -- Polled too late: the place was already lost, even if not yet swept.
  redis.call('ZREM', K_WAITING, user)
  redis.call('HINCRBY', K_STATS, 'abandoned', 1)
  return {'gone'}
end
-- A poll during a pause still counts as presence, so fans who obey
-- Retry-After keep their place.
mark_seen(cfg, seq, now)
if cfg.state == 'paused' then
  return {'paused'}
end
if sold_out(cfg, now) then
  -- The answer is final (410), so the fan leaves the line with it and
  -- counts as an exit at once, instead of waiting there until the
  -- abandonment sweep finds them silent.
  redis.call('ZREM', K_WAITING, user)
  redis.call('HINCRBY', K_STATS, 'sold_out', 1)
  return {'sold_out'}
end
local ahead = redis.call('ZCOUNT', K_WAITING, '-inf', '(' .. int(seq))
return waiting_reply(cfg, '0', seq, ahead, now)
