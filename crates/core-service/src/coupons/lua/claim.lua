-- Reserves one coupon of a first-come campaign for one fan, atomically.
-- KEYS[1]: the campaign's issued counter; KEYS[2]: the set of fans holding
-- a reservation. ARGV[1]: the fan; ARGV[2]: the campaign's quantity;
-- ARGV[3]: key lifetime in seconds (set when the keys are created).
-- Replies {status, issued}: status 'reserved', 'already' (the fan is in the
-- set) or 'sold_out' (the counter reached the quantity).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {'already', tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local issued = tonumber(redis.call('GET', KEYS[1]) or '0')
if issued >= tonumber(ARGV[2]) then
  return {'sold_out', issued}
end
issued = redis.call('INCR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
if issued == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return {'reserved', issued}
