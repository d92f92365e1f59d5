-- Take the set of sessions changed since the last sync, unless a previous run's set is still
-- in flight (it crashed before acknowledging): then that one is finished first.
-- KEYS: 1 dirty set, 2 in-flight set. Returns the number of sessions in flight.
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
return redis.call('SCARD', KEYS[2])
