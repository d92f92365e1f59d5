"""A lock in Redis that only its holder can renew or release (SET NX PX with a random token).

For work that is safe to repeat but wasteful to run twice at once (the sync): correctness
never depends on it. Its expiry bounds how long a holder that died keeps others waiting.
"""

import secrets

from core.redis import get_redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class LockLost(RuntimeError):
    """The lock expired while its holder was still working (and another may hold it now)."""


class RedisLock:
    def __init__(self, key: str, ttl: float, *, name: str = "lock") -> None:
        self.key = key
        self.name = name
        self.token = secrets.token_hex(16)
        self.ttl_ms = int(ttl * 1000)
        self.client = get_redis()

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> None:
        if not self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
            raise LockLost(f"{self.name} lost (expired while running); stopping this run")

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, self.key, self.token)
