-- Open a live session (one login) and append its `login` event, atomically.
-- Idempotent: replaying it (after a Redis outage at login) never resets counters.
-- KEYS: 1 session hash, 2 active index, 3 started index, 4 user's session set, 5 dirty set,
--       6 event stream, 7 stats hash
-- ARGV: 1 sid, 2 user id, 3 started_at, 4 ip, 5 user agent, 6 stream max length, 7 event JSON
local sid = ARGV[1]
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'st', ARGV[3], 'ip', ARGV[4], 'ua', ARGV[5])
redis.call('HSETNX', KEYS[1], 'n', 0)
redis.call('HSETNX', KEYS[1], 'la', ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'end') == 0 then
  redis.call('ZADD', KEYS[2], 'GT', redis.call('HGET', KEYS[1], 'la'), sid)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[3], sid)
  redis.call('SADD', KEYS[4], sid)
end
redis.call('SADD', KEYS[5], sid)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'd', ARGV[7])
redis.call('HINCRBY', KEYS[7], 'sessions_started', 1)
return 1
