-- Creates or updates a room. ARGV = state, capacity, admit_per_second,
-- access_ttl_seconds, abandon_after_seconds, presence grain (s),
-- claim_within_seconds.
-- Admission bookkeeping (token bucket, sweep cursor) survives updates.
-- Replies: {'created'} | {'updated'}.
local existed = redis.call('EXISTS', K_CFG)
local old_grain = redis.call('HGET', K_CFG, 'grain')
redis.call('HSET', K_CFG, 'state', ARGV[1], 'capacity', ARGV[2], 'rate', ARGV[3],
  'ttl', ARGV[4], 'abandon', ARGV[5], 'grain', ARGV[6], 'claim', ARGV[7])
if existed == 1 then
  if old_grain and old_grain ~= ARGV[6] then
    -- A new abandonment window changed the presence window width, and
    -- bitmaps of the old width are not read under the new one. Nobody is
    -- considered absent until one full window of polls has been recorded.
    redis.call('HSET', K_CFG, 'grace_until', int(now_ms() + tonumber(ARGV[5]) * 1000))
  end
  return {'updated'}
end
return {'created'}
