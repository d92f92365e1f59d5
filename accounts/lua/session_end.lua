-- End a live session exactly once, whoever ends it (logout, revocation, a timeout job).
-- Records end time and reason, removes it from the live indexes, remembers it as recently
-- ended (every process reloads that set), observes its duration in the shared histogram,
-- appends the event, marks it for the sync and tells every process through pub/sub.
-- KEYS: 1 session hash, 2 active index, 3 started index, 4 ended index, 5 dirty set,
--       6 event stream, 7 stats hash, 8 duration histogram hash
-- ARGV: 1 sid, 2 ended_at, 3 reason, 4 user-set key prefix, 5 stream max length,
--       6 revocation channel, 7 event JSON (without user id and duration),
--       8 idle timeout in seconds for an idle-timeout end ('' otherwise), 9 now,
--       10.. histogram bucket upper bounds (ascending)
-- Returns 1 ended now, 0 already ended, -1 unknown, 2 not idle after all (activity raced).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'end') == 1 then return 0 end
local sid = ARGV[1]
local fields = redis.call('HMGET', KEYS[1], 'u', 'st', 'la')
local uid, st, la = fields[1], tonumber(fields[2]), tonumber(fields[3])
local ended_at = tonumber(ARGV[2])
if ARGV[8] ~= '' then
  local idle = tonumber(ARGV[8])
  if tonumber(ARGV[9]) - la < idle then return 2 end
  ended_at = la + idle
end
redis.call('HSET', KEYS[1], 'end', string.format('%.6f', ended_at), 'why', ARGV[3])
redis.call('ZREM', KEYS[2], sid)
redis.call('ZREM', KEYS[3], sid)
redis.call('ZADD', KEYS[4], ended_at, sid)
redis.call('SREM', ARGV[4] .. uid, sid)
redis.call('SADD', KEYS[5], sid)
-- Duration is the time the session was in use: first to last activity.
local duration = math.max(0, la - st)
local bucket = '+Inf'
for j = 10, #ARGV do
  if duration <= tonumber(ARGV[j]) then bucket = ARGV[j]; break end
end
redis.call('HINCRBY', KEYS[8], bucket, 1)
redis.call('HINCRBY', KEYS[8], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[8], 'sum', duration)
local event = cjson.decode(ARGV[7])
event['uid'] = tonumber(uid)
event['ts'] = ended_at
event['duration'] = duration
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'd', cjson.encode(event))
redis.call('HINCRBY', KEYS[7], 'sessions_ended:' .. ARGV[3], 1)
redis.call('PUBLISH', ARGV[6], sid)
return 1
