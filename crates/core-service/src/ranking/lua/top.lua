-- The best ARGV[1] members of the union of the bucket sets KEYS[2..], and
-- whether the ready marker KEYS[1] exists (see buckets.rs). Read-only.
-- Reply: {ready ("1" or "0"), member, score, member, score, ...}: every
-- member scoring above the limit-th best score, then, of the members tied
-- at that score, the lowest (by member, hence by concert id) until the
-- limit is filled. The caller sorts them: score descending, member
-- ascending.
local limit = tonumber(ARGV[1])
local reply = {tostring(redis.call('EXISTS', KEYS[1]))}
local command = {'ZUNION', #KEYS - 1}
for i = 2, #KEYS do
  command[#command + 1] = KEYS[i]
end
command[#command + 1] = 'WITHSCORES'
-- Ascending by score, then by member.
local union = redis.call(unpack(command))
local count = #union / 2
local function score(i)
  return tonumber(union[2 * i])
end
local function push(i)
  reply[#reply + 1] = union[2 * i - 1]
  reply[#reply + 1] = union[2 * i]
end
if count <= limit then
  for i = 1, count do
    push(i)
  end
  return reply
end
-- Pair b holds the limit-th best score; lo..hi are the pairs tied with it.
local b = count - limit + 1
local boundary = score(b)
local lo, hi = b, b
while lo > 1 and score(lo - 1) == boundary do
  lo = lo - 1
end
while hi < count and score(hi + 1) == boundary do
  hi = hi + 1
end
for i = hi + 1, count do
  push(i)
end
for i = lo, lo + limit - (count - hi) - 1 do
  push(i)
end
return reply
