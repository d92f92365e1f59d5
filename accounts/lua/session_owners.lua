-- A batch of live sessions and their users, in one round trip (the reconciliation walks every
-- live session this way, by rank in the start index: no KEYS, no SCAN).
-- KEYS: 1 started index
-- ARGV: 1 session key prefix, 2 first rank, 3 count
-- Returns {sid, user id, sid, user id, …}; '' as the user of an index entry without a session.
local sids = redis.call('ZRANGE', KEYS[1], ARGV[2], tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1)
local found = {}
for _, sid in ipairs(sids) do
  found[#found + 1] = sid
  found[#found + 1] = redis.call('HGET', ARGV[1] .. sid, 'u') or ''
end
return found
