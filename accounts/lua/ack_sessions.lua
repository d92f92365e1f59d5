-- Acknowledge synced sessions, after the PostgreSQL commit: ended sessions may now expire
-- (unless they changed again meanwhile: then they wait for the next sync), and the in-flight
-- set goes.
-- KEYS: 1 in-flight set, 2 dirty set. ARGV: 1 session key prefix, 2 seconds to keep an ended
-- session, 3 '1' to delete the in-flight set, 4.. sids of ended sessions just synced.
for i = 4, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    redis.call('EXPIRE', ARGV[1] .. ARGV[i], ARGV[2])
  end
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
end
return 1
