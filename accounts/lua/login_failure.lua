-- Count one failed login and decide on a lock-out, atomically.
-- Addresses are counted by bucket (an IPv4 address, an IPv6 /64; see throttling.ip_bucket).
-- Per (username, bucket) pair: after LIMIT failures the pair is locked for
--   min(BASE * 2^(failures - LIMIT), MAX) seconds — exponential cool-off.
-- Per bucket: the number of *distinct usernames* that failed from it (credential stuffing); past
--   IP_LIMIT the bucket is locked the same way. Counting distinct usernames, not attempts, is
--   what keeps one user's typos from ever locking out the other users behind the same address.
-- (The per-account limit is applied before the password check: login_gate.lua.)
-- A lock that starts opens a lock period: a locked_out event now, and a lockout_lifted template
-- that lockout_close.lua completes (time, refusals, actor) when the period ends.
-- KEYS: 1 pair hash, 2 bucket's failed-username set, 3 bucket lock hash, 4 lockout index,
--       5 stats hash, 6 event stream, 7 lock periods hash, 8 lock periods due (sorted set),
--       9 this minute's failed-login counter (the admin overview's live tiles; it expires)
-- ARGV: 1 now, 2 window seconds, 3 LIMIT, 4 IP_LIMIT, 5 BASE, 6 MAX, 7 username hash,
--       8 username (as typed), 9 bucket, 10 stream max length, 11 failure event JSON,
--       12 lock-out event JSON (its reason is set to the scope), 13 failure reason,
--       14 lockout_lifted event template, 15 a unique id for this call
-- Returns {pair_locked_until, ip_locked_until} (0 when not locked).
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, ip_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local base, max = tonumber(ARGV[5]), tonumber(ARGV[6])

local function lock_for(excess)
  return math.min(base * 2 ^ excess, max)
end

-- Lock `key` until `locked_until`: a new lock period, or a longer one when the lock is still in
-- force (two failures raced past the gate).
local function lock(key, scope, locked_until)
  local state = redis.call('HMGET', key, 'until', 'period')
  redis.call('HSET', key, 'until', string.format('%.6f', locked_until))
  redis.call('ZADD', KEYS[4], locked_until, key)
  if tonumber(state[1] or '0') > now and state[2]
      and redis.call('HEXISTS', KEYS[7], state[2]) == 1 then
    redis.call('ZADD', KEYS[8], locked_until, state[2])
    return
  end
  local period = key .. '@' .. ARGV[15]
  redis.call('HSET', key, 'period', period)
  redis.call('HSET', KEYS[7], period, ARGV[14])
  redis.call('ZADD', KEYS[8], locked_until, period)
  redis.call('HINCRBY', KEYS[5], 'lockouts:' .. scope, 1)
  local event = cjson.decode(ARGV[12])
  event['reason'] = scope
  event['until'] = locked_until
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'd', cjson.encode(event))
end

redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'd', ARGV[11])
redis.call('HINCRBY', KEYS[5], 'login_failures:' .. ARGV[13], 1)
redis.call('INCR', KEYS[9])
redis.call('EXPIRE', KEYS[9], 7200)

local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'user', ARGV[8], 'ip', ARGV[9], 'last', ARGV[1])
local pair_until = 0
if failures >= limit then
  pair_until = now + lock_for(failures - limit)
  lock(KEYS[1], 'user_ip', pair_until)
end
redis.call('EXPIRE', KEYS[1], math.max(window, math.ceil(pair_until - now)) + 60)

redis.call('SADD', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[2], window)
local distinct = redis.call('SCARD', KEYS[2])
local ip_until = 0
if distinct >= ip_limit then
  local previous = tonumber(redis.call('HGET', KEYS[3], 'until') or '0')
  if previous <= now then
    ip_until = now + lock_for(distinct - ip_limit)
    redis.call('HSET', KEYS[3], 'ip', ARGV[9], 'user', '')
    lock(KEYS[3], 'ip', ip_until)
    redis.call('EXPIRE', KEYS[3], math.ceil(ip_until - now) + 60)
  else
    ip_until = previous
  end
end
return {string.format('%.6f', pair_until), string.format('%.6f', ip_until)}
