-- Counts sales in the ranking, each payment at most once (see buckets.rs).
-- KEYS: for sale i, KEYS[2i-1] is its seen key, KEYS[2i] its bucket.
-- ARGV[1]: the seen keys' TTL, in seconds; for sale i, ARGV[3i-1] is its
-- tickets, ARGV[3i] its member (the padded concert id), ARGV[3i+1] its
-- bucket's expiry (Unix seconds).
-- Reply: how many of the sales this call counted; the others had been
-- counted before (a redelivery, a replay racing the consumer, a rebuild).
local ttl = ARGV[1]
local counted = 0
for i = 1, #KEYS / 2 do
  if redis.call('SET', KEYS[2 * i - 1], '1', 'NX', 'EX', ttl) then
    local bucket = KEYS[2 * i]
    redis.call('ZINCRBY', bucket, ARGV[3 * i - 1], ARGV[3 * i])
    redis.call('EXPIREAT', bucket, ARGV[3 * i + 1])
    counted = counted + 1
  end
end
return counted
