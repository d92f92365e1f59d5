"""Lua scripts, read and registered once per Redis client: each call is an EVALSHA, which
redis-py's Script turns into one EVAL after a Redis restart (NOSCRIPT).

Several script calls in one round trip (`run`): a pipeline on a single Redis. A Redis Cluster's
pipeline refuses EVALSHA, so there the calls are grouped by the master that owns their slot
and sent as one plain pipeline per master. A master that answers NOSCRIPT (a replica promoted
by a fail-over has no scripts) gets the script and those calls again (they did not run); a
call whose slot has moved, or whose master does not answer, comes back as a ConnectionError
(its caller waits and tries again) and the client relearns the cluster's slots.
"""

from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import AskError, MovedError, NoScriptError

from core.redis import REDIS_UNAVAILABLE, get_redis, is_cluster, relearn_slots

# One script call: the script, its keys, its arguments.
Call = tuple[Script, list, list]


def source(folder: Path, name: str, includes: tuple[str, ...] = ()) -> str:
    """`name`.lua from `folder`, with the shared parts it needs (`includes`) put in front."""
    return "\n".join((folder / f"{part}.lua").read_text() for part in (*includes, name))


@cache
def _registered(folder: Path, name: str, includes: tuple[str, ...], client: Any) -> Script:
    return client.register_script(source(folder, name, includes))


def script(folder: Path, name: str, includes: tuple[str, ...] = ()) -> Script:
    return _registered(folder, name, includes, get_redis())


def run(calls: list[Call], *, raise_on_error: bool = True) -> list:
    """Run script calls in one round trip (per master, on a cluster); their replies in order,
    errors in their place unless `raise_on_error` (then the first is raised)."""
    if not calls:
        return []
    client = get_redis()
    if is_cluster(client):
        results = _run_on_cluster(client, calls)
    else:
        pipe = client.pipeline(transaction=False)
        for called, keys, args in calls:
            called(keys=keys, args=args, client=pipe)
        results = pipe.execute(raise_on_error=False)
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


def _run_on_cluster(client: Any, calls: list[Call]) -> list:
    results: list[Any] = [None] * len(calls)
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for index, (_, keys, _) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        by_node.setdefault(node.name, (node, []))[1].append(index)
    relearn = False
    for node, indexes in by_node.values():
        server = client.get_redis_connection(node)
        try:
            replies = _pipelined(server, [calls[i] for i in indexes])
        except REDIS_UNAVAILABLE as exc:
            replies, relearn = [exc] * len(indexes), True
        for index, reply in zip(indexes, replies, strict=True):
            if isinstance(reply, MovedError | AskError):
                reply, relearn = redis.ConnectionError(f"slot moved: {reply}"), True
            results[index] = reply
    if relearn:
        relearn_slots(client)
    return results


def _pipelined(server: redis.Redis, calls: list[Call]) -> list:
    pipe = server.pipeline(transaction=False)
    for called, keys, args in calls:
        pipe.evalsha(called.sha, len(keys), *keys, *args)
    replies = pipe.execute(raise_on_error=False)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    for script_ in {id(calls[i][0]): calls[i][0] for i in missing}.values():
        server.script_load(script_.script)
    for i in missing:
        called, keys, args = calls[i]
        try:
            replies[i] = server.evalsha(called.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            replies[i] = exc
    return replies
