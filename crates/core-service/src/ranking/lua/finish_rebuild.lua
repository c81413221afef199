-- Ends a rebuild of the ranking's buckets (see buckets.rs): sets the ready
-- marker KEYS[2] to ARGV[2] only if the rebuild key KEYS[1] still holds
-- this rebuild's token ARGV[1], i.e. Redis kept its data since the rebuild
-- began (and no later rebuild took over).
-- Reply: 1 when the marker was set, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
