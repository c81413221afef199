-- One admission tick for one event. Safe to run from any number of instances
-- at once: the script is atomic, so the active set never exceeds capacity
-- and a fan leaves the waiting set in the same step that admits them.
-- Every call touches at most `budget` fans (expired, admitted or dropped,
-- swept), with bulk commands, so one call stays short however long the line
-- is; when work remains it replies more = '1' and the caller calls again.
-- ARGV[1] = tick ms, ARGV[2] = budget (fans per call), ARGV[3] = minimum
-- sweep slice, ARGV[4] = pre-queued fans placed in the line per call.
-- Replies: {'no_room'} or {state, admitted, expired, abandoned, waiting,
--   active, exit_rate, more, no_shows}
local tick_ms, budget, min_sweep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local place_batch = tonumber(ARGV[4])
local more = '0'
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
local now = now_ms()

-- 0. Once the room opens, the pre-queue moves into the line in shuffle
-- order, onto the arrival numbers reserved for it at opening, a bounded
-- slice per call so that no call blocks the shard for long; entry and
-- status answer meanwhile. Each placed fan counts as seen now: nobody
-- loses a place for not having polled during the countdown.
open_pre_queue(cfg, now)
if placing(cfg) then
  local popped = redis.call('ZPOPMIN', K_PRE, place_batch)
  local zadd, seq = {}, cfg.pre_next
  local seen = seen_key(cfg, math.floor(now / 1000 / cfg.grain))
  for i = 1, #popped, 2 do
    zadd[#zadd + 1] = int(seq)
    zadd[#zadd + 1] = popped[i]
    redis.call('SETBIT', seen, int(seq), 1)
    seq = seq + 1
  end
  if #zadd > 0 then
    bulk('ZADD', K_WAITING, zadd, 2)
    redis.call('EXPIRE', seen, cfg.abandon + 2 * cfg.grain)
  end
  -- Fans who left the pre-queue after opening leave their numbers unused.
  if #popped < 2 * place_batch then
    seq = cfg.pre_end + 1
  end
  cfg.pre_next = seq
  redis.call('HSET', K_CFG, 'pre_next', int(seq))
  if placing(cfg) then
    more = '1'
  end
end

-- 1. Lapsed admissions free their slots (bounded batch; the rest next tick).
local expire_batch = math.floor(budget / 2)
local lapsed = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', int(now), 'LIMIT', 0, expire_batch)
if #lapsed == expire_batch then
  more = '1'
end
free_slots(lapsed, 'expired', now)

-- 1b. Admissions nobody claimed by their deadline are reclaimed: the fan
-- stopped polling before being admitted (but within the abandonment
-- window), so the slot would otherwise sit idle for the whole access TTL.
-- An entry whose fan is no longer active (left, released, lapsed) is only
-- forgotten.
local claim_batch = math.max(1, math.floor(budget / 4))
local unclaimed = redis.call('ZRANGEBYSCORE', K_UNCLAIMED, '-inf', int(now), 'LIMIT', 0, claim_batch)
local no_shows = 0
if #unclaimed == claim_batch then
  more = '1'
end
if #unclaimed > 0 then
  local absent = {}
  for i = 1, #unclaimed do
    if redis.call('ZSCORE', K_ACTIVE, unclaimed[i]) then
      absent[#absent + 1] = unclaimed[i]
    end
  end
  bulk('ZREM', K_UNCLAIMED, unclaimed, 1)
  free_slots(absent, 'no_show', now)
  no_shows = #absent
end

local admitted, abandoned = 0, 0
if cfg.state == 'open' then
  -- 2. Token bucket in Redis, so N instances together still admit at most
  -- the admission rate per second; it holds at most one tick's worth (at least one
  -- fan, so slow rooms still move).
  -- The rate is the ceiling, or less while the booking core is unhealthy.
  local rate = admission_rate(cfg, now)
  local burst = math.max(1, rate * tick_ms / 1000)
  local b = redis.call('HMGET', K_CFG, 'tokens', 'tokens_at')
  local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + rate * (now - at) / 1000)
  end
  local active = redis.call('ZCARD', K_ACTIVE)
  local free = cfg.capacity - active
  local want = math.min(math.floor(tokens), free)
  -- No more fans than there are seats for: the seats the booking core can
  -- still sell, less one for each fan admitted in the last RATE_WINDOW
  -- seconds who holds nothing yet (still on the way to a seat). Fans
  -- admitted earlier who hold nothing (their hold lapsed, they browse) do
  -- not block the line for the rest of their admission.
  local inv = inventory(cfg, now)
  if inv then
    local unseated = math.max(0, math.min(active - inv.holders, window_total('out', now)))
    want = math.max(0, math.min(want, inv.available - unseated))
  end
  -- While the pre-queue is still being placed, nobody who arrived after
  -- opening may pass a pre-queued fan who is not in the line yet.
  if placing(cfg) then
    want = math.min(want, redis.call('ZCOUNT', K_WAITING, '-inf', int(cfg.pre_end)))
  end
  local expiry = int(now + cfg.ttl * 1000)
  local claim_by = cfg.claim and int(now + cfg.claim * 1000)

  -- 3. Admit from the head in FIFO order. Absent fans popped on the way are
  -- dropped, so no slot goes to someone who left without saying so; if many
  -- were absent, the next round pops further, within the budget.
  local max_scan = budget - #lapsed - #unclaimed
  local scanned = 0
  while admitted < want and scanned < max_scan do
    local head = redis.call('ZPOPMIN', K_WAITING, math.min(want - admitted, max_scan - scanned))
    if #head == 0 then
      break
    end
    local users, seqs = {}, {}
    for i = 1, #head, 2 do
      users[#users + 1] = head[i]
      seqs[#seqs + 1] = tonumber(head[i + 1])
    end
    scanned = scanned + #users
    local present = presence(cfg, seqs, now)
    local zadd, hset, claims = {}, {}, {}
    for i = 1, #users do
      if present[i] then
        zadd[#zadd + 1] = expiry
        zadd[#zadd + 1] = users[i]
        if claim_by then
          claims[#claims + 1] = claim_by
          claims[#claims + 1] = users[i]
        end
        -- The arrival number doubles as session id: unique per admission
        -- of this event, and a re-entry gets a new one.
        hset[#hset + 1] = users[i]
        hset[#hset + 1] = int(seqs[i])
        admitted = admitted + 1
      else
        abandoned = abandoned + 1
      end
    end
    if #zadd > 0 then
      bulk('ZADD', K_ACTIVE, zadd, 2)
      bulk('HSET', K_SESSIONS, hset, 2)
    end
    if #claims > 0 then
      bulk('ZADD', K_UNCLAIMED, claims, 2)
    end
  end
  redis.call('HSET', K_CFG, 'tokens', tostring(tokens - admitted), 'tokens_at', int(now))
  if admitted < want and scanned >= max_scan then
    more = '1'
  end

  -- 4. Sweep a bounded slice of the line for abandoned fans, resuming where
  -- the previous tick stopped, so positions stay exact without ever scanning
  -- the whole line in one call.
  local sweep_batch = math.max(min_sweep, budget - #lapsed - #unclaimed - scanned)
  local cursor = redis.call('HGET', K_CFG, 'sweep') or '0'
  local slice = redis.call('ZRANGEBYSCORE', K_WAITING, '(' .. cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, sweep_batch)
  local users, seqs = {}, {}
  for i = 1, #slice, 2 do
    users[#users + 1] = slice[i]
    seqs[#seqs + 1] = tonumber(slice[i + 1])
  end
  local present = presence(cfg, seqs, now)
  local gone = {}
  for i = 1, #users do
    if not present[i] then
      gone[#gone + 1] = users[i]
    end
  end
  if #gone > 0 then
    bulk('ZREM', K_WAITING, gone, 1)
    abandoned = abandoned + #gone
  end
  if #users < sweep_batch then
    cursor = '0'
  else
    cursor = int(seqs[#seqs])
  end
  redis.call('HSET', K_CFG, 'sweep', cursor)
end

if admitted > 0 then
  redis.call('HINCRBY', K_STATS, 'admitted', admitted)
  bump_rate('out', now, admitted)
end
if abandoned > 0 then
  redis.call('HINCRBY', K_STATS, 'abandoned', abandoned)
end
local exit_rate = tostring(read_rate('out', now))
local dep_rate, dep_lo, dep_hi = departure_rates(now)
redis.call('HSET', K_STATS, 'exit_rate', exit_rate, 'dep_rate', tostring(dep_rate),
  'dep_lo', tostring(dep_lo), 'dep_hi', tostring(dep_hi))
return {cfg.state, int(admitted), int(#lapsed), int(abandoned),
  int(redis.call('ZCARD', K_WAITING)), int(redis.call('ZCARD', K_ACTIVE)), exit_rate, more,
  int(no_shows)}
