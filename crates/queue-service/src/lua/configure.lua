-- Creates or updates a room. ARGV = state, capacity, admit_per_second,
-- access_ttl_seconds, abandon_after_seconds, presence grain (s),
-- claim_within_seconds, opens_at (ms since the epoch, '' for none), a
-- fresh random shuffle seed, kept only by a room that has none yet, and
-- latency_target_ms.
-- Admission bookkeeping (token bucket, sweep cursor) survives updates.
-- opens_at may be set, moved or dropped only until the first fan is placed
-- in the line: the pre-queue's order, and the promise made to the fans in
-- it, are fixed from then on. Dropping it with fans in the pre-queue opens
-- the room now.
-- Replies: {'created'} | {'updated'} | {'already_open'} (opens_at changed
-- after fans were placed in the line; nothing is written).
local now = now_ms()
local opens_at = ARGV[8]
local stored_opens = redis.call('HGET', K_CFG, 'opens_at')
local placed = redis.call('HEXISTS', K_CFG, 'pre_next') == 1
  or tonumber(redis.call('GET', K_SEQ) or '0') > 0
if placed and opens_at ~= '' and opens_at ~= stored_opens then
  return {'already_open'}
end
local existed = redis.call('EXISTS', K_CFG)
local old_grain = redis.call('HGET', K_CFG, 'grain')
redis.call('HSET', K_CFG, 'state', ARGV[1], 'capacity', ARGV[2], 'rate', ARGV[3],
  'ttl', ARGV[4], 'abandon', ARGV[5], 'grain', ARGV[6], 'claim', ARGV[7], 'target', ARGV[10])
redis.call('HSETNX', K_CFG, 'seed', ARGV[9])
if not placed then
  if opens_at ~= '' then
    redis.call('HSET', K_CFG, 'opens_at', opens_at)
  elseif redis.call('ZCARD', K_PRE) > 0 then
    redis.call('HSET', K_CFG, 'opens_at', int(now))
  else
    redis.call('HDEL', K_CFG, 'opens_at')
  end
end
-- A closed room is no longer ticked, so its keys would stay forever. They
-- expire once every admitted fan's access has run out (ARGV[4]) plus a
-- day in which late polls are still told the room closed; reopening the
-- room keeps them again. (The presence bitmaps expire by themselves.)
local room_keys = {K_CFG, K_WAITING, K_ACTIVE, K_SESSIONS, K_STATS, K_SEQ, K_RATES, K_DONE,
  K_UNCLAIMED, K_PRE}
local CLOSED_KEEP_SECONDS = 86400
for _, key in ipairs(room_keys) do
  if ARGV[1] == 'closed' then
    redis.call('EXPIRE', key, tonumber(ARGV[4]) + CLOSED_KEEP_SECONDS)
  else
    redis.call('PERSIST', key)
  end
end
if existed == 1 then
  if old_grain and old_grain ~= ARGV[6] then
    -- A new abandonment window changed the presence window width, and
    -- bitmaps of the old width are not read under the new one. Nobody is
    -- considered absent until one full window of polls has been recorded.
    redis.call('HSET', K_CFG, 'grace_until', int(now + tonumber(ARGV[5]) * 1000))
  end
  return {'updated'}
end
return {'created'}
