-- Count one failed login and decide on a lock-out, atomically.
-- Per (username, IP) pair: after LIMIT failures the pair is locked for
--   min(BASE * 2^(failures - LIMIT), MAX) seconds — exponential cool-off.
-- Per IP: the number of *distinct usernames* that failed from it (credential stuffing); past
--   IP_LIMIT the IP is locked the same way. Counting distinct usernames, not attempts, is what
--   keeps one user's typos from ever locking out the other users behind the same address.
-- KEYS: 1 pair hash, 2 IP's failed-username set, 3 IP lock hash, 4 lockout index, 5 stats hash,
--       6 event stream
-- ARGV: 1 now, 2 window seconds, 3 LIMIT, 4 IP_LIMIT, 5 BASE, 6 MAX, 7 username hash,
--       8 username (as typed), 9 ip, 10 stream max length, 11 failure event JSON,
--       12 lock-out event JSON (sent when a lock starts; its reason is set to the scope),
--       13 failure reason
-- Returns {pair_locked_until, ip_locked_until} (0 when not locked).
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, ip_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local base, max = tonumber(ARGV[5]), tonumber(ARGV[6])

local function lock_for(excess)
  return math.min(base * 2 ^ excess, max)
end

local function lockout_event(scope, locked_until)
  local event = cjson.decode(ARGV[12])
  event['reason'] = scope
  event['until'] = locked_until
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'd', cjson.encode(event))
end

redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'd', ARGV[11])
redis.call('HINCRBY', KEYS[5], 'login_failures:' .. ARGV[13], 1)

local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'user', ARGV[8], 'ip', ARGV[9], 'last', ARGV[1])
local pair_until = 0
if failures >= limit then
  pair_until = now + lock_for(failures - limit)
  redis.call('HSET', KEYS[1], 'until', string.format('%.6f', pair_until))
  redis.call('ZADD', KEYS[4], pair_until, KEYS[1])
  redis.call('HINCRBY', KEYS[5], 'lockouts:user_ip', 1)
  lockout_event('user_ip', pair_until)
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
    redis.call('HSET', KEYS[3], 'until', string.format('%.6f', ip_until), 'ip', ARGV[9], 'user', '')
    redis.call('EXPIRE', KEYS[3], math.ceil(ip_until - now) + 60)
    redis.call('ZADD', KEYS[4], ip_until, KEYS[3])
    redis.call('HINCRBY', KEYS[5], 'lockouts:ip', 1)
    lockout_event('ip', ip_until)
  else
    ip_until = previous
  end
end
return {string.format('%.6f', pair_until), string.format('%.6f', ip_until)}
