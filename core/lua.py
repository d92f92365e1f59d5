"""Lua scripts, read and registered once per Redis client: each call is an EVALSHA, which
redis-py's Script turns into one EVAL after a Redis restart (NOSCRIPT)."""

from functools import cache
from pathlib import Path

import redis
from redis.commands.core import Script

from core.redis import get_redis


def source(folder: Path, name: str, includes: tuple[str, ...] = ()) -> str:
    """`name`.lua from `folder`, with the shared parts it needs (`includes`) put in front."""
    return "\n".join((folder / f"{part}.lua").read_text() for part in (*includes, name))


@cache
def _registered(folder: Path, name: str, includes: tuple[str, ...], client: redis.Redis) -> Script:
    return client.register_script(source(folder, name, includes))


def script(folder: Path, name: str, includes: tuple[str, ...] = ()) -> Script:
    return _registered(folder, name, includes, get_redis())
