-- Apply one flush of a web process's aggregated tracking: one round trip for many requests.
-- For each entry: api_call_count += calls, the hour bucket += calls, last_active = max(),
-- the active index (unless ended) and the dirty mark for the sync. A session unknown to Redis
-- (login while Redis was away, or Redis lost its data) is rebuilt from the token's claims, as a
-- new generation (g = now in ms): its count starts again from zero, and the sync adds it to
-- what PostgreSQL holds of the earlier generations instead of taking the larger of the two.
-- The session's last client fingerprint (network, user-agent digest) is kept in its hash: a
-- session used from another network AND another user agent within the anomaly window is a
-- stolen token's signal — a session_anomaly event (once per window), counted, and its sid
-- returned so the web process can end it if so configured.
-- The user's calls per minute over the last hour go to a ring of per-minute slots in the same
-- call (no extra round trip): a hash per user, field = minute index modulo the ring size, value
-- '<minute epoch>:<calls>'. A slot holding an older minute is overwritten, so the hash never
-- holds more than the ring's fields; the key expires an hour after its last new minute, so
-- users who stop calling cost nothing.
-- Then the process's counters and the events it held back during a Redis outage.
-- Exactly once: the batch carries the process's sequence number; a number already applied
-- (the reply to an earlier try was lost) is skipped.
-- KEYS: 1 active index, 2 started index, 3 dirty set, 4 stats hash, 5 event stream,
--       6 this process's last applied sequence, 7 this minute's API call counter (the live
--       "calls per minute" of the admin's overview; it expires by itself)
-- ARGV: 1 session key prefix, 2 user-set key prefix, 3 sequence, 4 sequence key TTL,
--       5 stream max length, 6 entry count, 7 counter count, 8 event count,
--       9 anomaly window (seconds), 10 session_anomaly event JSON (accounts.events),
--       11 per-minute key prefix, 12 ring size (minutes), 13 per-minute key TTL, then
--       9 values per entry: sid, user id, started_at, ip, user agent, minute, calls,
--       last_active, fingerprint ('<network> <user-agent digest>', '' when the IP is unknown);
--       2 per counter: name, increment; 1 per event: its JSON
-- Returns {calls counted, {sid, user id, …} of entries naming another user's session,
--          {sids of the sessions found used from two places at once}}.
local sequence = tonumber(ARGV[3])
local applied = tonumber(redis.call('GET', KEYS[6]) or '-1')
if sequence <= applied then return {-1} end
redis.call('SET', KEYS[6], ARGV[3], 'EX', ARGV[4])

local prefix, uprefix = ARGV[1], ARGV[2]
local window = tonumber(ARGV[9])
local mprefix, slots, mttl = ARGV[11], tonumber(ARGV[12]), ARGV[13]
local total = 0
local anomalies, foreign = {}, {}
local i = 14
for _ = 1, tonumber(ARGV[6]) do
  local sid, uid, st, ip, ua = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local minute, calls, last = ARGV[i + 5], tonumber(ARGV[i + 6]), ARGV[i + 7]
  local minute_n = tonumber(minute)
  local hour = string.format('%d', minute_n - minute_n % 3600)
  local fp = ARGV[i + 8]
  i = i + 9
  local key = prefix .. sid
  -- Seven cheap calls per session in the usual case: Redis runs this for every flush of every
  -- web process, on the same cores as they do.
  local owner = redis.call('HGET', key, 'u')
  local mine = not owner or owner == uid
  if not mine then
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
  -- The usual case is one HGET: the same client as last time. (A foreign token's client says
  -- nothing about the session's own: it is not compared.)
  if mine and fp ~= '' then
    local seen = redis.call('HGET', key, 'fp')
    if seen ~= fp then
      if seen then
        local net, uad = string.match(fp, '^(%S+) (%S+)$')
        local seen_net, seen_uad = string.match(seen, '^(%S+) (%S+)$')
        -- Before la moves: la is when the session was last used, by the client seen.
        local f = redis.call('HMGET', key, 'la', 'fx', 'end')
        local t = tonumber(last)
        if net ~= seen_net and uad ~= seen_uad and not f[3]
            and t - (tonumber(f[1]) or 0) < window and (not f[2] or t - tonumber(f[2]) >= window)
        then
          local event = cjson.decode(ARGV[10])
          event['uid'] = tonumber(uid)
          event['sid'] = sid
          event['ts'] = t
          event['ip'] = ip
          event['ua'] = ua
          event['reason'] = seen_net
          redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'd', cjson.encode(event))
          redis.call('HINCRBY', KEYS[4], 'session_anomalies', 1)
          redis.call('HSET', key, 'fx', last)
          anomalies[#anomalies + 1] = sid
        end
      end
      redis.call('HSET', key, 'fp', fp)
    end
  end
  if calls > 0 then
    redis.call('HINCRBY', key, 'n', calls)
    redis.call('HINCRBY', key, 'h:' .. hour, calls)
    -- Flushes of two processes may cross: last activity may step back by up to one flush
    -- interval, never more (the index below only moves forward).
    redis.call('HSET', key, 'la', last)
    -- XX: an ended session has left the index and must not come back.
    redis.call('ZADD', KEYS[1], 'XX', 'GT', last, sid)
    -- calls per minute: begin (bench_calls_per_minute strips this block to compare)
    -- Usually one HGET and one HSET; an EXPIRE once per user and minute.
    local mkey = mprefix .. uid
    local slot = string.format('%d', (minute_n / 60) % slots)
    local seen = redis.call('HGET', mkey, slot)
    local seen_minute, seen_calls = nil, 0
    if seen then
      local m, n = string.match(seen, '^(%d+):(%d+)$')
      seen_minute, seen_calls = tonumber(m), tonumber(n)
    end
    if seen_minute == minute_n then
      redis.call('HSET', mkey, slot, minute .. ':' .. (seen_calls + calls))
    elseif not seen_minute or seen_minute < minute_n then
      redis.call('HSET', mkey, slot, minute .. ':' .. calls)
      redis.call('EXPIRE', mkey, mttl)
    end
    -- calls per minute: end
  end
  if mine then
    redis.call('SADD', KEYS[3], sid)
  end
  total = total + calls
end
if total > 0 then
  redis.call('HINCRBY', KEYS[4], 'api_calls', total)
  redis.call('INCRBY', KEYS[7], total)
  redis.call('EXPIRE', KEYS[7], 7200)
end
for _ = 1, tonumber(ARGV[7]) do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, tonumber(ARGV[8]) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'd', ARGV[i])
  i = i + 1
end
return {total, foreign, anomalies}
