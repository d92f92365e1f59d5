-- The `lua` design: one request's tracking as one script call (the same 4 updates as the
-- `pipeline` design). KEYS: 1 session hash, 2 active index, 3 dirty set. ARGV: 1 sid, 2 now.
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'la', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
