"""The process-wide Redis client used by session tracking, throttling and metrics.

Timeouts are short on purpose: Redis being away is a designed state (requests keep working
untracked), and a request must not hang for the OS default while we find that out.
"""

import contextlib
import logging
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from django.core.signals import setting_changed
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import Sentinel

from core.rediskeys import keys

# Errors that mean "Redis is not answering right now", as opposed to a bug in our commands. On
# a Redis Cluster also a cluster that is failing over (CLUSTERDOWN, TRYAGAIN, a slot whose
# node cannot be reached).
REDIS_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    SlotNotCoveredError,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)


def each_shard(job: Callable[[int], T], what: str) -> list[T]:
    """`job(shard)` for every virtual shard (core.rediskeys) in turn. A shard whose Redis node
    is away does not hold up the others: they run, then its error is raised (the beat task
    that called this retries; the shards done meanwhile have nothing left to do)."""
    results: list[T] = []
    failure: Exception | None = None
    for shard in keys.shards():
        try:
            results.append(job(shard))
        except REDIS_UNAVAILABLE as exc:
            logger.warning("%s: shard %d unavailable (%s); the others go on", what, shard, exc)
            failure = failure or exc
    if failure is not None:
        raise failure
    return results


CLIENT_OPTIONS = {
    "socket_connect_timeout": 0.5,
    "socket_timeout": 2.0,
    "health_check_interval": 30,
    "client_name": "sessionhub",
}


@cache
def get_redis() -> Any:
    """redis.Redis, or redis.cluster.RedisCluster with REDIS_CLUSTER_NODES (the commands the
    app uses are the same on both; see core.rediskeys for how keys stay in one slot)."""
    if settings.REDIS_CLUSTER_NODES:
        return _cluster()
    if settings.REDIS_SENTINELS:
        return _sentinel_primary()
    return redis.Redis.from_url(settings.REDIS_URL, **CLIENT_OPTIONS)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def _cluster() -> RedisCluster:
    """A Redis Cluster from its seed nodes: redis-py learns the slots' owners from them, and
    again after a MOVED reply or a connection lost (a fail-over), so a promoted replica is
    found without a restart. Until the cluster has voted, calls to the failed master's slots
    fail like calls to a Redis that is down (REDIS_UNAVAILABLE)."""
    options: dict[str, Any] = {
        key: value for key, value in CLIENT_OPTIONS.items() if key != "client_name"
    }
    try:
        return _connect_cluster(options)
    except RedisClusterException as exc:
        # No seed node answers (the cluster is down at start-up): Redis is away, the designed
        # state every caller handles; the next call tries again (nothing is cached).
        raise redis.ConnectionError(str(exc)) from exc


def _connect_cluster(options: dict[str, Any]) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.REDIS_CLUSTER_NODES],
        password=settings.REDIS_CLUSTER_PASSWORD or None,
        # Fail fast while a master is down (a retry or two, to follow a MOVED slot): the
        # callers hold their work and try again later.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        **options,
    )


def _sentinel_primary() -> redis.Redis:
    """The Sentinel group's primary, found anew by every new connection.

    A fail-over breaks the connections to the old primary (or, once it is back as a replica,
    they get READONLY and are dropped); the next connection asks the sentinels again. Until
    they have elected a new primary, calls fail like calls to a Redis that is down (the
    errors are in REDIS_UNAVAILABLE), which every caller already handles.
    """
    url = urlsplit(settings.REDIS_URL)
    sentinel = Sentinel(
        settings.REDIS_SENTINELS,
        sentinel_kwargs={
            "password": settings.REDIS_SENTINEL_PASSWORD or None,
            "socket_connect_timeout": 0.5,
            "socket_timeout": 0.5,
        },
    )
    return sentinel.master_for(
        settings.REDIS_SENTINEL_MASTER,
        db=int(url.path.lstrip("/") or 0),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        **CLIENT_OPTIONS,
    )


def relearn_slots(client: Any = None) -> None:
    """On a Redis Cluster, ask again which master owns which slot (after a fail-over; redis-py
    does it by itself on a MOVED reply, not always on a lost connection). Nothing on a single
    Redis. If the cluster does not answer, the next failure tries again."""
    with contextlib.suppress(*REDIS_UNAVAILABLE, redis.RedisError, RedisClusterException):
        client = get_redis() if client is None else client
        if is_cluster(client):
            client.nodes_manager.initialize()


def as_text(value: bytes | str) -> str:
    """A Redis reply as text: the client answers bytes (responses are not decoded, so binary
    fields pass through untouched)."""
    return value.decode() if isinstance(value, bytes) else value


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting in {
        "REDIS_URL",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "REDIS_CLUSTER_NODES",
        "REDIS_CLUSTER_PASSWORD",
    }:
        get_redis.cache_clear()


setting_changed.connect(_reset)
