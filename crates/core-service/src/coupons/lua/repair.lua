-- Reconciliation: makes a campaign's Redis state match Postgres, the record.
-- KEYS[1]: issued counter; KEYS[2]: fans set. ARGV[1]: key lifetime in
-- seconds; ARGV[2]: how many fans to add (n); ARGV[3 .. 2+n]: fans to add;
-- the rest: fans to remove. The counter becomes the set's size, so a claim
-- reserved meanwhile (in the set, its Postgres write still running) keeps
-- its place. Replies {added, removed, issued}.
local n = tonumber(ARGV[2])
local added, removed = 0, 0
for i = 3, 2 + n do
  added = added + redis.call('SADD', KEYS[2], ARGV[i])
end
for i = 3 + n, #ARGV do
  removed = removed + redis.call('SREM', KEYS[2], ARGV[i])
end
local issued = redis.call('SCARD', KEYS[2])
redis.call('SET', KEYS[1], issued, 'EX', ARGV[1])
if issued > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return {added, removed, issued}
