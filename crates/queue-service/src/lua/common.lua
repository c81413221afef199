-- Prelude shared by every waiting-room script (prepended with concat!).
--
-- Every key of one event carries the same hash tag, `{<prefix>evt:<id>}`, so
-- each script touches one cluster slot. KEYS, in this order, for all scripts:
--   1 cfg      HASH  room settings + admission bookkeeping (token bucket,
--                    sweep cursor)
--   2 waiting  ZSET  user -> arrival sequence number (FIFO order)
--   3 active   ZSET  user -> access expiry, ms since the epoch
--   4 sessions HASH  user -> session id of the current admission
--   5 stats    HASH  counters, plus the last measured exit rate
--   6 seq      STRING per-event arrival counter (INCR)
--   7 seen     key prefix of the presence bitmaps, `<seen>:<grain>:<window>`
--   8 rates    HASH  per-second ring buffers of entries and admissions
--   9 done     ZSET  session id -> access expiry (ms) of sessions whose
--                    purchase completed; lets core-service replay a payment
--                    under its Idempotency-Key until the token expires
--  10 unclaimed ZSET user -> claim deadline (ms) of admissions nobody has
--                    claimed yet: a fan claims by seeing the admission (a
--                    poll or entry answered 'active') or by a first use of
--                    the access token; an admission still unclaimed at its
--                    deadline is reclaimed by the next tick (a no-show)
--
-- Time always comes from the Redis server (TIME), never from the caller:
-- all instances then agree on one clock per event, because an event lives on
-- one shard. Every reply is an array of strings, so Rust parses one shape.
local K_CFG, K_WAITING, K_ACTIVE, K_SESSIONS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_STATS, K_SEQ, K_SEEN, K_RATES = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_DONE, K_UNCLAIMED = KEYS[9], KEYS[10]

-- Width of the entry/exit rate window, in seconds.
local RATE_WINDOW = 30

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integral numbers as plain digits (tostring would give 1e+15 for big ones).
local function int(n)
  return string.format('%d', n)
end

local function load_cfg()
  local v = redis.call('HMGET', K_CFG, 'state', 'capacity', 'rate', 'ttl', 'abandon', 'grain', 'grace_until', 'claim')
  if not v[1] then
    return nil
  end
  return {
    state = v[1],
    capacity = tonumber(v[2]),
    rate = tonumber(v[3]),
    ttl = tonumber(v[4]),
    abandon = tonumber(v[5]),
    grain = tonumber(v[6]),
    grace_until = tonumber(v[7]) or 0,
    -- Seconds an admitted fan has to claim the admission; a room written
    -- before claims existed has none, and keeps every admission until it
    -- lapses.
    claim = tonumber(v[8]),
  }
end

-- Presence: instead of a second per-fan sorted set of "last seen" times (as
-- large as the line itself), each window of `grain` seconds has one bitmap
-- indexed by arrival number. A poll sets one bit; a fan is present when a bit
-- is set in any window of the last `abandon` seconds. 300k fans cost ~37 KB
-- per window instead of ~80 bytes each.
local function seen_key(cfg, window)
  return K_SEEN .. ':' .. int(cfg.grain) .. ':' .. int(window)
end

local function mark_seen(cfg, seq, now)
  local key = seen_key(cfg, math.floor(now / 1000 / cfg.grain))
  redis.call('SETBIT', key, int(seq), 1)
  -- The oldest window still consulted is `abandon` seconds behind the
  -- current one; two extra grains cover the partial windows at both ends.
  redis.call('EXPIRE', key, cfg.abandon + 2 * cfg.grain)
end

-- A fan silent for longer than `abandon` seconds (up to one grain later) is
-- absent. Newest window first: a live fan is usually found at once. The
-- grain is at least abandon / 4, so an absent fan costs at most 5 GETBITs.
local function is_present(cfg, seq, now)
  if now < cfg.grace_until then
    return true
  end
  local window = math.floor(now / 1000 / cfg.grain)
  local span = math.ceil(cfg.abandon / cfg.grain)
  for i = 0, span do
    if redis.call('GETBIT', seen_key(cfg, window - i), int(seq)) == 1 then
      return true
    end
  end
  return false
end

-- Batch form of is_present for admission and the sweep: one BITFIELD_RO per
-- window and chunk instead of one GETBIT per fan and window, so a tick's
-- cost is dominated by Redis's C loops, not by Lua->Redis calls. Returns a
-- table of booleans parallel to `seqs`.
local BIT_CHUNK = 500
local function presence(cfg, seqs, now)
  local result = {}
  if now < cfg.grace_until then
    for i = 1, #seqs do
      result[i] = true
    end
    return result
  end
  local pending, offsets = {}, {}
  for i = 1, #seqs do
    pending[i] = i
    offsets[i] = int(seqs[i])
    result[i] = false
  end
  local window = math.floor(now / 1000 / cfg.grain)
  local span = math.ceil(cfg.abandon / cfg.grain)
  for back = 0, span do
    if #pending == 0 then
      break
    end
    local key = seen_key(cfg, window - back)
    -- A window nobody polled in has no bitmap: nothing to read.
    if redis.call('EXISTS', key) == 1 then
      local still = {}
      for from = 1, #pending, BIT_CHUNK do
        local to = math.min(from + BIT_CHUNK - 1, #pending)
        local args = {}
        for j = from, to do
          args[#args + 1] = 'GET'
          args[#args + 1] = 'u1'
          args[#args + 1] = offsets[pending[j]]
        end
        local bits = redis.call('BITFIELD_RO', key, unpack(args))
        for j = from, to do
          if bits[j - from + 1] == 1 then
            result[pending[j]] = true
          else
            still[#still + 1] = pending[j]
          end
        end
      end
      pending = still
    end
  end
  return result
end

-- Runs `cmd key <items...>` in chunks, keeping unpack() well inside Lua's
-- C stack limit. `width` items form one element (2 for ZADD score/member).
local function bulk(cmd, key, items, width)
  local step = 1000 * width
  for from = 1, #items, step do
    redis.call(cmd, key, unpack(items, from, math.min(from + step - 1, #items)))
  end
end

-- Per-second ring buffer: field `<dir><slot>` counts, `<dir><slot>t` names
-- the second the count belongs to, so a stale slot is reset on reuse and the
-- hash never grows past 2 * RATE_WINDOW fields per direction.
local function bump_rate(dir, now, n)
  if n <= 0 then
    return
  end
  local sec = math.floor(now / 1000)
  local field = dir .. int(sec % RATE_WINDOW)
  if tonumber(redis.call('HGET', K_RATES, field .. 't')) == sec then
    redis.call('HINCRBY', K_RATES, field, n)
  else
    redis.call('HSET', K_RATES, field, n, field .. 't', sec)
  end
end

-- The ring's live slots of one direction: {count, second} pairs of the
-- last RATE_WINDOW seconds (stale slots are left out).
local function rate_slots(dir, now)
  local sec = math.floor(now / 1000)
  local fields = {}
  for i = 0, RATE_WINDOW - 1 do
    fields[#fields + 1] = dir .. i
    fields[#fields + 1] = dir .. i .. 't'
  end
  local v = redis.call('HMGET', K_RATES, unpack(fields))
  local slots = {}
  for i = 0, RATE_WINDOW - 1 do
    local t = tonumber(v[2 * i + 2])
    if t and t > sec - RATE_WINDOW and t <= sec then
      slots[#slots + 1] = {tonumber(v[2 * i + 1]), t}
    end
  end
  return slots
end

-- Events counted over the last RATE_WINDOW seconds.
local function window_total(dir, now)
  local total = 0
  for _, slot in ipairs(rate_slots(dir, now)) do
    total = total + slot[1]
  end
  return total
end

-- Events per second over the window, divided by the span actually observed
-- (from the oldest counted second to now) so that a room opened three
-- seconds ago is not diluted over thirty.
local function read_rate(dir, now)
  local total, oldest = 0, nil
  for _, slot in ipairs(rate_slots(dir, now)) do
    total = total + slot[1]
    if not oldest or slot[2] < oldest then
      oldest = slot[2]
    end
  end
  if total == 0 then
    return 0
  end
  local span = math.max(1, (now - oldest * 1000) / 1000)
  return total / span
end

-- Removes a lapsed admission and counts it once as expired.
local function expire_active(user)
  redis.call('ZREM', K_ACTIVE, user)
  redis.call('HDEL', K_SESSIONS, user)
  redis.call('ZREM', K_UNCLAIMED, user)
  redis.call('HINCRBY', K_STATS, 'exited_expired', 1)
end

-- The booking core's last inventory report, while it is fresh (see
-- inventory.lua): {available, held, holders}, or nil when there is none or
-- it is older than INVENTORY_FRESH_MS, so that a silent booking core
-- never stops admission.
local INVENTORY_FRESH_MS = 10000
local function inventory(now)
  local v = redis.call('HMGET', K_CFG, 'inv_available', 'inv_held', 'inv_holders', 'inv_at')
  local at = tonumber(v[4])
  if not at or now - at > INVENTORY_FRESH_MS then
    return nil
  end
  return {available = tonumber(v[1]), held = tonumber(v[2]), holders = tonumber(v[3])}
end

-- No seat can be held and no live hold may bring one back.
local function sold_out(now)
  local inv = inventory(now)
  return inv ~= nil and inv.available == 0 and inv.held == 0
end

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
