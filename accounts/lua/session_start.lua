-- Open a live session (one login), append its `login` event and, when the user now holds more
-- live sessions than the limit, end the oldest ones (reason session_limit), all atomically:
-- two logins at once can never leave the user above the limit, nor end one session too many.
-- Idempotent: replaying it never resets counters. A session is bound to the user that opened
-- it: a sid already held by another user is refused (returns {0, {}}).
-- end_session.lua is included above.
-- KEYS: 1 session hash, 2 active index, 3 started index, 4 user's session set, 5 dirty set,
--       6 event stream, 7 stats hash, 8 ended index, 9 duration histogram hash
-- ARGV: 1 sid, 2 user id, 3 started_at, 4 ip, 5 user agent, 6 stream max length,
--       7 login event JSON, 8 live sessions allowed per user (0: no limit),
--       9 session key prefix, 10 user-set key prefix, 11 revocation channel,
--       12 end event JSON for a session ended by the limit (sid, user id, duration set here),
--       13.. histogram bucket upper bounds (ascending)
-- Returns {1, {sids of the sessions the limit ended}}.
local sid = ARGV[1]
local owner = redis.call('HGET', KEYS[1], 'u')
if owner and owner ~= ARGV[2] then return {0, {}} end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'st', ARGV[3], 'ip', ARGV[4], 'ua', ARGV[5])
redis.call('HSETNX', KEYS[1], 'n', 0)
redis.call('HSETNX', KEYS[1], 'la', ARGV[3])
redis.call('SADD', KEYS[5], sid)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'd', ARGV[7])
redis.call('HINCRBY', KEYS[7], 'sessions_started', 1)
local evicted = {}
if redis.call('HEXISTS', KEYS[1], 'end') == 0 then
  redis.call('ZADD', KEYS[2], 'GT', redis.call('HGET', KEYS[1], 'la'), sid)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[3], sid)
  redis.call('SADD', KEYS[4], sid)
  local limit = tonumber(ARGV[8])
  local excess = limit > 0 and redis.call('SCARD', KEYS[4]) - limit or 0
  if excess > 0 then
    -- Session ids begin with their creation time in fixed-width hex: sorted, oldest first.
    local sids = redis.call('SMEMBERS', KEYS[4])
    table.sort(sids)
    local buckets = {}
    for j = 13, #ARGV do buckets[#buckets + 1] = ARGV[j] end
    for _, other in ipairs(sids) do
      if excess <= 0 then break end
      if other ~= sid then
        local result = end_session(
          {session = ARGV[9] .. other, active = KEYS[2], started = KEYS[3], ended = KEYS[8],
           dirty = KEYS[5], events = KEYS[6], stats = KEYS[7], histogram = KEYS[9]},
          {sid = other, ended_at = ARGV[3], reason = 'session_limit', uprefix = ARGV[10],
           maxlen = ARGV[6], channel = ARGV[11], event = ARGV[12], idle = '', now = ARGV[3],
           buckets = buckets})
        if result == 1 then
          evicted[#evicted + 1] = other
        else
          redis.call('SREM', KEYS[4], other)  -- a stale entry: its session is gone or ended
        end
        excess = excess - 1
      end
    end
  end
end
return {1, evicted}
