-- Third part of the prelude (after admission_rate.lua): the replies that
-- entry and status share, and the pre-queue's part of them.

-- The longest a waiting fan may stay silent, in seconds: within the
-- abandonment window (or the fan is dropped), and within twice the claim
-- window, so that a fan polling at a third of it sees an admission well
-- before the claim deadline. Sent with every waiting reply; the service
-- caps the poll interval at a third of it.
local function silence_window(cfg)
  if cfg.claim then
    return math.min(cfg.abandon, 2 * cfg.claim)
  end
  return cfg.abandon
end

-- The fan has seen (or used) the admission: it is no longer a no-show
-- candidate.
local function claim(user)
  redis.call('ZREM', K_UNCLAIMED, user)
end

-- Reply for an active fan: {'active', created, session id, expiry ms}. The
-- fan receives the access token with it, so this claims the admission.
local function active_reply(user, expiry, created)
  claim(user)
  local sid = redis.call('HGET', K_SESSIONS, user) or ''
  return {'active', created, sid, expiry}
end

-- Reply for a waiting fan: {'waiting', created, seq, ahead,
-- admission rate, silence_window_seconds, free slots, departure rate,
-- its low and high, capacity, access ttl}. The admission rate is the mean
-- over the fans ahead who fill free slots (mean_admission_rate), so the
-- ETA follows the admission control and a slow start. The departure rates are those
-- of the last tick (admit.lua); the service turns them into the ETA and
-- its range (queue_service::eta).
local function waiting_reply(cfg, created, seq, ahead, now)
  local r = redis.call('HMGET', K_STATS, 'dep_rate', 'dep_lo', 'dep_hi')
  local free = math.max(0, cfg.capacity - redis.call('ZCARD', K_ACTIVE))
  local rate = mean_admission_rate(cfg, now, math.min(ahead, free))
  return {'waiting', created, int(seq), int(ahead), tostring(rate),
    int(silence_window(cfg)), int(free), r[1] or '0', r[2] or '0', r[3] or '0',
    int(cfg.capacity), int(cfg.ttl)}
end

-- The pre-queue's part of entry and status, or nil when the fan is not (or
-- no longer) in it. Before opening, entry adds the fan (idempotently) and
-- both reply {'pre_queue', created, opens_at ms, silence_window_seconds}:
-- no position, since the order is only drawn at opening. After opening, a
-- fan not yet moved into the line is answered as waiting, behind the fans
-- already placed and those before it in shuffle order.
local function pre_queue_reply(cfg, user, now, entering)
  if not cfg.opens_at then
    return nil
  end
  open_pre_queue(cfg, now)
  if not cfg.pre_next then
    local created = '0'
    if entering then
      if redis.call('ZADD', K_PRE, 'NX', int(shuffle_key(cfg.seed, user)), user) == 1 then
        created = '1'
        redis.call('HINCRBY', K_STATS, 'entered', 1)
        bump_rate('in', now, 1)
      end
    elseif not redis.call('ZSCORE', K_PRE, user) then
      return nil
    end
    return {'pre_queue', created, int(cfg.opens_at), int(silence_window(cfg))}
  end
  local rank = redis.call('ZRANK', K_PRE, user)
  if not rank then
    return nil
  end
  local placed = redis.call('ZCOUNT', K_WAITING, '-inf', '(' .. int(cfg.pre_next))
  return waiting_reply(cfg, '0', 0, placed + rank, now)
end
