"""Lua scripts, read and registered once per Redis client: each call is an EVALSHA, which
redis-py's Script turns into one EVAL after a Redis restart (NOSCRIPT).

In a pipeline, a plain Redis pipeline loads its scripts before it runs; a Redis Cluster's
pipeline does not (and a replica promoted by a fail-over has none of them): `execute` runs a
pipeline and, for the commands a node refused with NOSCRIPT, loads the scripts on every
master and runs those commands again (they did not run).
"""

from functools import cache
from pathlib import Path
from typing import Any

from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from core.redis import get_redis

# Every script registered by this process, by digest: what a NOSCRIPT reply asks for.
_SOURCES: dict[str, str] = {}


def source(folder: Path, name: str, includes: tuple[str, ...] = ()) -> str:
    """`name`.lua from `folder`, with the shared parts it needs (`includes`) put in front."""
    return "\n".join((folder / f"{part}.lua").read_text() for part in (*includes, name))


@cache
def _registered(folder: Path, name: str, includes: tuple[str, ...], client: Any) -> Script:
    registered = client.register_script(source(folder, name, includes))
    _SOURCES[registered.sha] = registered.script
    return registered


def script(folder: Path, name: str, includes: tuple[str, ...] = ()) -> Script:
    return _registered(folder, name, includes, get_redis())


def _queued_args(pipe: Any) -> list[tuple]:
    queue = getattr(pipe, "command_queue", None)  # a cluster pipeline
    if queue is not None:
        return [command.args for command in queue]
    return [args for args, _ in pipe.command_stack]


def execute(pipe: Any, *, raise_on_error: bool = True) -> list:
    """Run a pipeline that may hold script calls (see above); errors as pipe.execute has them."""
    queued = _queued_args(pipe)
    results = pipe.execute(raise_on_error=False)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        client = get_redis()
        for sha in {queued[i][1] for i in missing}:
            sha = sha.decode() if isinstance(sha, bytes) else sha
            if sha in _SOURCES:
                client.script_load(_SOURCES[sha])
        for i in missing:
            try:
                results[i] = client.execute_command(*queued[i])
            except ResponseError as exc:  # a refusal, as the pipeline reports it
                results[i] = exc
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results
