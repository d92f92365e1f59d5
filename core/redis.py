"""The process-wide Redis client used by session tracking, throttling and metrics.

Timeouts are short on purpose: Redis being away is a designed state (requests keep working
untracked), and a request must not hang for the OS default while we find that out.
"""

from functools import cache

import redis
from django.conf import settings
from django.core.signals import setting_changed

# Errors that mean "Redis is not answering right now", as opposed to a bug in our commands.
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        health_check_interval=30,
        client_name="sessionhub",
    )


def as_text(value: bytes | str) -> str:
    """A Redis reply as text: the client answers bytes (responses are not decoded, so binary
    fields pass through untouched)."""
    return value.decode() if isinstance(value, bytes) else value


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "REDIS_URL":
        get_redis.cache_clear()


setting_changed.connect(_reset)
