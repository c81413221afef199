-- Records the booking core's count of this event's seats.
-- ARGV[1] = seats available (free, or held by a lapsed hold),
-- ARGV[2] = seats in live holds, ARGV[3] = fans with a live hold.
-- Admission then admits no more fans than there are seats for: the seats
-- available, less the fans admitted in the last 30 s who hold nothing yet
-- (each wants at least one), re-counted at every tick.
-- Replies: {'no_room'} | {'recorded'}.
local cfg = load_cfg()
if not cfg then
  return {'no_room'}
end
redis.call('HSET', K_CFG, 'inv_available', ARGV[1], 'inv_held', ARGV[2],
  'inv_holders', ARGV[3], 'inv_at', int(now_ms()))
return {'recorded'}
