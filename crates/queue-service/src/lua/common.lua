-- Prelude shared by every waiting-room script, first of its three parts
-- (then admission_rate.lua and replies.lua; joined by script_source).
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
--  11 pre      ZSET  user -> shuffle key of the fans who entered before the
--                    room's opens_at (the pre-queue); see shuffle_key
--
-- Time always comes from the Redis server (TIME), never from the caller:
-- all instances then agree on one clock per event, because an event lives on
-- one shard. Every reply is an array of strings, so Rust parses one shape.
local K_CFG, K_WAITING, K_ACTIVE, K_SESSIONS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_STATS, K_SEQ, K_SEEN, K_RATES = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_DONE, K_UNCLAIMED, K_PRE = KEYS[9], KEYS[10], KEYS[11]

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
  local v = redis.call('HMGET', K_CFG, 'state', 'capacity', 'rate', 'ttl', 'abandon', 'grain',
    'grace_until', 'claim', 'opens_at', 'seed', 'pre_next', 'pre_end',
    'inv_available', 'inv_held', 'inv_holders', 'inv_at', 'target', 'aimd_rate', 'health_at',
    'ss_at', 'aimd_cut_at')
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
    -- A scheduled sale: ms since the epoch when the pre-queue opens, and
    -- the room's shuffle seed (hex). pre_next..pre_end are the arrival
    -- numbers reserved for the pre-queue at opening that are not yet given
    -- out; both are absent until the pre-queue has opened.
    opens_at = tonumber(v[9]),
    seed = v[10],
    pre_next = tonumber(v[11]),
    pre_end = tonumber(v[12]),
    -- The booking core's last inventory report (inventory.lua), read with
    -- the settings so that a poll costs no extra call for it.
    inv_available = tonumber(v[13]),
    inv_held = tonumber(v[14]),
    inv_holders = tonumber(v[15]),
    inv_at = tonumber(v[16]),
    -- Admission control (inventory.lua): the booking core's latency
    -- target (ms; a room stored before targets existed has 200), the rate
    -- the core's health allows, and when its last health report came.
    target = tonumber(v[17]) or 200,
    aimd_rate = tonumber(v[18]),
    health_at = tonumber(v[19]),
    -- Slow start (slow_start_rate): when the pre-queue opened with fans
    -- in it (ms), and when admission control last cut the rate (ms).
    ss_at = tonumber(v[20]),
    aimd_cut_at = tonumber(v[21]),
  }
end

-- The pre-queue's order: the first 52 bits of SHA-1(seed ':' user), exact
-- in a Lua number (a double). Sorting fans by a keyed hash of a random
-- seed is a uniformly random permutation (up to hash collisions: about
-- n^2 / 2^53, 1e-5 for 300,000 fans), fixed by the seed, so anyone with
-- the seed and the list of pre-queued fans can reproduce it
-- (queue_service::domain::shuffle_key is the same function). Keeping the
-- pre-queue sorted by it from the first entry means that opening needs no
-- shuffle pass at all.
local function shuffle_key(seed, user)
  return tonumber(string.sub(redis.sha1hex(seed .. ':' .. user), 1, 13), 16)
end

-- Opens the pre-queue once its time has come: reserves one arrival number
-- per pre-queued fan, right after the numbers given so far, so that every
-- fan entering from now on (INCR) queues behind all of them. The admission
-- tick then moves the pre-queue into the line in shuffle order, a bounded
-- slice per call (place_pre_queue in admit.lua). Called by entry, status
-- and the tick, whichever comes first.
local function open_pre_queue(cfg, now)
  if cfg.pre_next or not cfg.opens_at or now < cfg.opens_at then
    return
  end
  local n = redis.call('ZCARD', K_PRE)
  local base = tonumber(redis.call('GET', K_SEQ) or '0')
  redis.call('SET', K_SEQ, int(base + n))
  cfg.pre_next, cfg.pre_end = base + 1, base + n
  redis.call('HSET', K_CFG, 'pre_next', int(cfg.pre_next), 'pre_end', int(cfg.pre_end))
  -- A pre-queue is a backlog present all at once: admission starts slowly
  -- (slow_start_rate) instead of sending the booking core a whole second
  -- of fans at the ceiling rate in the first instant.
  if n > 0 then
    cfg.ss_at = now
    redis.call('HSET', K_CFG, 'ss_at', int(now))
  end
end

-- Whether fans are still being moved from the pre-queue into the line.
local function placing(cfg)
  return cfg.pre_next ~= nil and cfg.pre_next <= cfg.pre_end
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

-- Ends the admissions of `users` (every one of them active now): frees the
-- slots, counts them once under `exited_<reason>`, and records them as
-- departures from the active set, the rate the ETA is computed from.
local function free_slots(users, reason, now)
  if #users == 0 then
    return
  end
  bulk('ZREM', K_ACTIVE, users, 1)
  bulk('HDEL', K_SESSIONS, users, 1)
  bulk('ZREM', K_UNCLAIMED, users, 1)
  redis.call('HINCRBY', K_STATS, 'exited_' .. reason, #users)
  bump_rate('dep', now, #users)
end

-- Departures from the active set per second over the rate window, for the
-- ETA: the mean since the first departure counted, and a low and a high
-- rate for its range, the lowest and the highest rate of the window's
-- complete 5-second buckets since then (with six buckets, p10 and p90 by
-- nearest rank). All 0 when nobody has left yet.
local BUCKET_SECONDS = 5
local function departure_rates(now)
  local sec = math.floor(now / 1000)
  local total, oldest, buckets = 0, nil, {}
  for _, slot in ipairs(rate_slots('dep', now)) do
    total = total + slot[1]
    if not oldest or slot[2] < oldest then
      oldest = slot[2]
    end
    if slot[2] < sec then
      local b = math.floor((sec - 1 - slot[2]) / BUCKET_SECONDS)
      buckets[b] = (buckets[b] or 0) + slot[1]
    end
  end
  if total == 0 then
    return 0, 0, 0
  end
  local mean = total / math.max(1, (now - oldest * 1000) / 1000)
  local lo, hi
  for b = 0, math.floor(RATE_WINDOW / BUCKET_SECONDS) - 1 do
    -- Bucket b spans the seconds sec-1-5b-4 .. sec-1-5b.
    if sec - BUCKET_SECONDS * (b + 1) >= oldest then
      local r = (buckets[b] or 0) / BUCKET_SECONDS
      lo = math.min(lo or r, r)
      hi = math.max(hi or r, r)
    end
  end
  if not lo then
    return mean, mean, mean
  end
  return mean, lo, hi
end

-- Removes a lapsed admission and counts it once as expired.
local function expire_active(user, now)
  free_slots({user}, 'expired', now)
end
