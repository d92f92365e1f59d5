-- end_session: end one live session exactly once, whoever ends it (logout, revocation, a
-- timeout job, a new login over the user's session limit). Included at the top of
-- session_end.lua and session_start.lua, so both end a session the same way.
-- Records end time and reason, removes it from the live indexes and its user's set, remembers
-- it as recently ended (every process reloads that set), observes its duration in the shared
-- histogram, appends the event, marks it for the sync and tells every process through pub/sub.
-- k: session, active, started, ended, dirty, events, stats, histogram (key names)
-- a: sid, ended_at, reason, uprefix (user-set key prefix), maxlen (stream), channel,
--    event (JSON without user id and duration), idle ('' or the idle timeout for an
--    idle-timeout end), now, buckets (histogram upper bounds, ascending)
-- Returns 1 ended now, 0 already ended, -1 unknown, 2 not idle after all (activity raced).
local function end_session(k, a)
  if redis.call('EXISTS', k.session) == 0 then return -1 end
  if redis.call('HEXISTS', k.session, 'end') == 1 then return 0 end
  local fields = redis.call('HMGET', k.session, 'u', 'st', 'la')
  local uid, st, la = fields[1], tonumber(fields[2]), tonumber(fields[3])
  local ended_at = tonumber(a.ended_at)
  if a.idle ~= '' then
    if tonumber(a.now) - la < tonumber(a.idle) then return 2 end
    ended_at = la + tonumber(a.idle)
  end
  redis.call('HSET', k.session, 'end', string.format('%.6f', ended_at), 'why', a.reason)
  redis.call('ZREM', k.active, a.sid)
  redis.call('ZREM', k.started, a.sid)
  redis.call('ZADD', k.ended, ended_at, a.sid)
  redis.call('SREM', a.uprefix .. uid, a.sid)
  redis.call('SADD', k.dirty, a.sid)
  -- Duration is the time the session was in use: first to last activity.
  local duration = math.max(0, la - st)
  local bucket = '+Inf'
  for _, bound in ipairs(a.buckets) do
    if duration <= tonumber(bound) then bucket = bound; break end
  end
  redis.call('HINCRBY', k.histogram, bucket, 1)
  redis.call('HINCRBY', k.histogram, 'count', 1)
  redis.call('HINCRBYFLOAT', k.histogram, 'sum', duration)
  local event = cjson.decode(a.event)
  event['sid'] = a.sid
  event['uid'] = tonumber(uid)
  event['ts'] = ended_at
  event['duration'] = duration
  redis.call('XADD', k.events, 'MAXLEN', '~', a.maxlen, '*', 'd', cjson.encode(event))
  redis.call('HINCRBY', k.stats, 'sessions_ended:' .. a.reason, 1)
  redis.call('PUBLISH', a.channel, a.sid)
  return 1
end
