-- End a live session exactly once (see end_session.lua, included above).
-- KEYS: 1 session hash, 2 active index, 3 started index, 4 ended index, 5 dirty set,
--       6 event stream, 7 stats hash, 8 duration histogram hash
-- ARGV: 1 sid, 2 ended_at, 3 reason, 4 user-set key prefix, 5 stream max length,
--       6 revocation channel, 7 event JSON (without user id and duration),
--       8 idle timeout in seconds for an idle-timeout end ('' otherwise), 9 now,
--       10.. histogram bucket upper bounds (ascending)
-- Returns 1 ended now, 0 already ended, -1 unknown, 2 not idle after all (activity raced).
local buckets = {}
for j = 10, #ARGV do buckets[#buckets + 1] = ARGV[j] end
return end_session(
  {session = KEYS[1], active = KEYS[2], started = KEYS[3], ended = KEYS[4], dirty = KEYS[5],
   events = KEYS[6], stats = KEYS[7], histogram = KEYS[8]},
  {sid = ARGV[1], ended_at = ARGV[2], reason = ARGV[3], uprefix = ARGV[4], maxlen = ARGV[5],
   channel = ARGV[6], event = ARGV[7], idle = ARGV[8], now = ARGV[9], buckets = buckets})
