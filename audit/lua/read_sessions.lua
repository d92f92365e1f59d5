-- Read a batch of in-flight sessions in one round trip: SSCAN the in-flight set (a set of our
-- own, never the keyspace) and return each session's hash.
-- KEYS: 1 in-flight set. ARGV: 1 cursor, 2 batch size, 3 session key prefix.
-- Returns {next cursor, sid, {field, value, ...}, sid, {...}, ...}; a gone session has {}.
local scan = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {scan[1]}
for _, sid in ipairs(scan[2]) do
  out[#out + 1] = sid
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. sid)
end
return out
