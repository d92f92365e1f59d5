-- Apply one flush of a web process's aggregated tracking: one round trip for many requests.
-- For each entry: api_call_count += calls, the hour bucket += calls, last_active = max(),
-- the active index (unless ended) and the dirty mark for the sync. A session unknown to Redis
-- (login while Redis was away, or Redis lost its data) is rebuilt from the token's claims, as a
-- new generation (g = now in ms): its count starts again from zero, and the sync adds it to
-- what PostgreSQL holds of the earlier generations instead of taking the larger of the two.
-- Then the process's counters and the events it held back during a Redis outage.
-- Returns {calls counted, {sid, user id, …} of entries naming another user's session}.
-- Exactly once: the batch carries the process's sequence number; a number already applied
-- (the reply to an earlier try was lost) is skipped.
-- KEYS: 1 active index, 2 started index, 3 dirty set, 4 stats hash, 5 event stream,
--       6 this process's last applied sequence
-- ARGV: 1 session key prefix, 2 user-set key prefix, 3 sequence, 4 sequence key TTL,
--       5 stream max length, 6 entry count, 7 counter count, 8 event count, then
--       8 values per entry: sid, user id, started_at, ip, user agent, hour, calls, last_active;
--       2 per counter: name, increment; 1 per event: its JSON
local sequence = tonumber(ARGV[3])
local applied = tonumber(redis.call('GET', KEYS[6]) or '-1')
if sequence <= applied then return -1 end
redis.call('SET', KEYS[6], ARGV[3], 'EX', ARGV[4])

local prefix, uprefix = ARGV[1], ARGV[2]
local total = 0
local foreign = {}
local i = 9
for _ = 1, tonumber(ARGV[6]) do
  local sid, uid, st, ip, ua = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local hour, calls, last = ARGV[i + 5], tonumber(ARGV[i + 6]), ARGV[i + 7]
  i = i + 8
  local key = prefix .. sid
  -- Six cheap calls per session in the usual case: Redis runs this for every flush of every
  -- web process, on the same cores as they do.
  local owner = redis.call('HGET', key, 'u')
  if owner and owner ~= uid then
    -- A session belongs to the user that opened it: a token naming another user's session
    -- counts nothing and is reported, so that its web process refuses it from then on.
    foreign[#foreign + 1] = sid
    foreign[#foreign + 1] = uid
    calls = 0
  elseif not owner then
    local time = redis.call('TIME')
    local generation = time[1] .. string.format('%03d', math.floor(tonumber(time[2]) / 1000))
    redis.call('HSET', key, 'u', uid, 'st', st, 'la', st, 'n', 0, 'ip', ip, 'ua', ua,
               'g', generation)
    redis.call('ZADD', KEYS[2], 'NX', st, sid)
    redis.call('ZADD', KEYS[1], 'GT', st, sid)
    redis.call('SADD', uprefix .. uid, sid)
    redis.call('HINCRBY', KEYS[4], 'sessions_rebuilt', 1)
  end
  if calls > 0 then
    redis.call('HINCRBY', key, 'n', calls)
    redis.call('HINCRBY', key, 'h:' .. hour, calls)
    -- Flushes of two processes may cross: last activity may step back by up to one flush
    -- interval, never more (the index below only moves forward).
    redis.call('HSET', key, 'la', last)
    -- XX: an ended session has left the index and must not come back.
    redis.call('ZADD', KEYS[1], 'XX', 'GT', last, sid)
  end
  redis.call('SADD', KEYS[3], sid)
  total = total + calls
end
if total > 0 then
  redis.call('HINCRBY', KEYS[4], 'api_calls', total)
end
for _ = 1, tonumber(ARGV[7]) do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, tonumber(ARGV[8]) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'd', ARGV[i])
  i = i + 1
end
return {total, foreign}
