-- Admit or refuse one login attempt before its password is checked, atomically.
-- Refused while the (username, bucket) pair is locked, while the bucket is locked, and — only for
-- buckets the account has not logged in from lately — while it is not the account's turn.
-- The account's slow lane: every admitted attempt enters the account's attempt log (a success
--   takes its entry back, a failure leaves it). Once ACCOUNT_LIMIT entries fall within the
--   window the lane is open: an address the account has not logged in from may then make one
--   attempt per DELAY seconds, whoever takes the turn first, until the log falls below the
--   limit again. Counting at admission, not after the check, is what keeps a burst of
--   simultaneous attempts within the limit.
-- Every refusal is counted (stats, and in its lock period); the first of a lock period also
-- writes an event. Refusals never lengthen a lock.
-- KEYS: 1 pair hash, 2 bucket lock hash, 3 account lane hash, 4 account attempt log,
--       5 account's known buckets, 6 lock periods hash, 7 lock periods due, 8 lockout index,
--       9 stats hash, 10 event stream
-- ARGV: 1 now, 2 bucket, 3 oldest success that still makes a bucket known, 4 window seconds,
--       5 ACCOUNT_LIMIT, 6 DELAY, 7 this attempt's ticket, 8 stream max length,
--       9 refusal event JSON, 10 lock-out event JSON (reason and until set here),
--       11 lockout_lifted event template, 12 username (as typed)
-- Returns {} when admitted, {retry_at, scope, first refusal of its lock period (1/0)} if not.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[4])
local limit, delay = tonumber(ARGV[5]), tonumber(ARGV[6])

local function refuse(key, scope, retry_at)
  redis.call('HINCRBY', KEYS[9], 'login_failures:throttled', 1)
  local first = 0
  local period = redis.call('HGET', key, 'period')
  if period and redis.call('HEXISTS', KEYS[6], period) == 1 then
    if redis.call('HINCRBY', KEYS[6], period .. '|n', 1) == 1 then
      first = 1
      redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[8], '*', 'd', ARGV[9])
    end
  end
  return {string.format('%.6f', retry_at), scope, first}
end

-- The pair's and the bucket's locks: the one that ends last answers.
local refused_by, scope, retry_at = nil, nil, now
for i, name in ipairs({'user_ip', 'ip'}) do
  local locked_until = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
  if locked_until > retry_at then
    refused_by, scope, retry_at = KEYS[i], name, locked_until
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
local attempts = redis.call('ZCARD', KEYS[4])
local known = tonumber(redis.call('HGET', KEYS[5], ARGV[2]) or '0') >= tonumber(ARGV[3])
if attempts >= limit and not known then
  local turn = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')
  if turn > retry_at then
    refused_by, scope, retry_at = KEYS[3], 'account', turn
  end
end
if refused_by then
  return refuse(refused_by, scope, retry_at)
end

redis.call('ZADD', KEYS[4], now, ARGV[7])
redis.call('EXPIRE', KEYS[4], window)
attempts = attempts + 1
if attempts < limit then
  return {}
end

-- The lane is open; it closes when the log falls below the limit, unless attempts go on.
local oldest = redis.call('ZRANGE', KEYS[4], attempts - limit, attempts - limit, 'WITHSCORES')
local lane_until = tonumber(oldest[2]) + window
local lane = KEYS[3]
local next_turn = tonumber(redis.call('HGET', lane, 'next') or '0')
if not known then
  next_turn = now + delay  -- this attempt takes the turn
  redis.call('HSET', lane, 'next', string.format('%.17g', next_turn))
end
local state = redis.call('HMGET', lane, 'until', 'period')
redis.call('HSET', lane, 'until', string.format('%.6f', lane_until), 'user', ARGV[12], 'ip', '')
redis.call('EXPIRE', lane, math.ceil(math.max(lane_until, next_turn) - now) + 60)
redis.call('ZADD', KEYS[8], lane_until, lane)
if tonumber(state[1] or '0') > now and state[2]
    and redis.call('HEXISTS', KEYS[6], state[2]) == 1 then
  redis.call('ZADD', KEYS[7], lane_until, state[2])
  return {}
end
-- A new lock period: the lane has just opened.
local period = lane .. '@' .. ARGV[7]
redis.call('HSET', lane, 'period', period)
redis.call('HSET', KEYS[6], period, ARGV[11])
redis.call('ZADD', KEYS[7], lane_until, period)
redis.call('HINCRBY', KEYS[9], 'lockouts:account', 1)
local event = cjson.decode(ARGV[10])
event['reason'] = 'account'
event['until'] = lane_until
redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[8], '*', 'd', cjson.encode(event))
return {}
