-- Close lock periods: each writes its lockout_lifted event, with the attempts the lock refused.
-- Mode 'due': every period whose lock has ended by now (run by beat, every 30 s); the event is
--   dated when the lock ended. Mode 'one': one period now, lifted by an admin (the actor).
-- KEYS: 1 lock periods hash, 2 lock periods due (sorted set), 3 event stream
-- ARGV: 1 mode, 2 now, 3 stream max length, 4 batch size ('due') or period id ('one'),
--       5 actor id ('one')
-- Returns the number of events written ('one'), or {events written, periods taken} ('due').
local function close(period, ended_at, actor)
  local template = redis.call('HGET', KEYS[1], period)
  local refused = tonumber(redis.call('HGET', KEYS[1], period .. '|n') or '0')
  redis.call('HDEL', KEYS[1], period, period .. '|n')
  redis.call('ZREM', KEYS[2], period)
  if not template then
    return 0
  end
  local event = cjson.decode(template)
  event['ts'] = ended_at
  event['reason'] = 'refused=' .. string.format('%d', refused)
  if actor then
    event['actor'] = actor
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'd', cjson.encode(event))
  return 1
end

local now = tonumber(ARGV[2])
if ARGV[1] == 'one' then
  if redis.call('ZSCORE', KEYS[2], ARGV[4]) == false then
    return 0
  end
  return close(ARGV[4], now, tonumber(ARGV[5]))
end
local closed = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[4]))
for i = 1, #due, 2 do
  closed = closed + close(due[i], tonumber(due[i + 1]), nil)
end
return {closed, #due / 2}
