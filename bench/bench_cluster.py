"""Live sessions on one Redis and on a 3-master Redis Cluster, side by side in one run.

Both targets are started by the bench on this machine, with the same options (no persistence):
`one Redis` is a single redis-server (one shard, the default mode); `cluster` is 3 masters with
a replica each (testing/redis_cluster.py), REDIS_CLUSTER_NODES naming them, REDIS_SHARDS=16.
On each, in this order:

* SESSIONS sessions are opened through `accounts.livesessions.start` (the login's script);
* `tracking`: CALLS tracked requests (CALLS_PER_SESSION per session, in a random order) go
  through a `Tracker` of their own — `_record`, what a request costs in the web process — and
  are flushed every FLUSH_EVERY requests (100 ms of a busy process's traffic), one Lua call per
  shard touched: tracked requests/s through the flush, and the Redis CPU (user + system, from
  INFO cpu of every master) per tracked request;
* `sync`: every session is now dirty; `audit.services.sync_run` (every shard in turn, one
  process, what one worker does) copies them to PostgreSQL: sessions/s, and the Redis CPU per
  synced session.

The CPU per master shows how the work spreads over the shards. On a machine with 2 cores the
three masters, their replicas, the client and PostgreSQL share them: the cluster cannot be
faster here, and its figures per request are what a sizing multiplies (docs/deployment.md).
"""

import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import common

SESSIONS = 20_000
USERS = 2_000
CALLS_PER_SESSION = 5
FLUSH_EVERY = 2_000
SHARDS = 16
PORTS = range(7400, 7500)


@dataclass
class Figures:
    target: str
    shards: int
    masters: int
    start_s: float
    track_s: float
    track_cpu: list[float]
    sync_s: float
    sync_cpu: list[float]
    synced: int
    shards_per_master: list[int]
    session_bytes: float

    @property
    def calls(self) -> int:
        return SESSIONS * CALLS_PER_SESSION


def _cpu(clients) -> list[float]:
    seconds = []
    for client in clients:
        info = client.info("cpu")
        seconds.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
    return seconds


def _memory(clients) -> int:
    """Bytes the masters use for data (used_memory), summed."""
    return sum(int(client.info("memory")["used_memory"]) for client in clients)


def _users() -> list[int]:
    return common.bench_users("clusterbench", USERS)


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE audit_session, audit_user_activity, audit_event, audit_sync_cursor"
        )


def _shards_per_master(masters, shards: int) -> list[int]:
    """How many of the virtual shards each master holds (by the slot of the shard's tag)."""
    from core.rediskeys import keys

    counts = []
    for client in masters:
        if shards == 1:
            counts.append(1)
            continue
        owned = set()
        for low, high in _own_slots(client):
            owned.update(range(low, high + 1))
        counts.append(
            sum(1 for shard in range(shards) if _slot(client, keys.active_index(shard)) in owned)
        )
    return counts


def _own_slots(client) -> list[tuple[int, int]]:
    me = client.execute_command("CLUSTER MYID").decode()
    ranges = []
    for entry in client.execute_command("CLUSTER SLOTS"):
        low, high, master = entry[0], entry[1], entry[2]
        if master[2].decode() == me:
            ranges.append((int(low), int(high)))
    return ranges


def _slot(client, key: str) -> int:
    return int(client.execute_command("CLUSTER KEYSLOT", key))


def _measure(target: str, masters, shards: int, users: list[int]) -> Figures:
    from accounts import livesessions
    from accounts.tracking import Tracker
    from audit import services as audit_services

    _truncate()
    rng = random.Random(7)
    now = time.time()
    sessions = []
    memory_before = _memory(masters)
    began = time.perf_counter()
    for n in range(SESSIONS):
        user = users[n % len(users)]
        sid = livesessions.new_sid()
        livesessions.start(
            sid=sid,
            user_id=user,
            started_at=now,
            ip=f"198.51.{n % 256}.{n // 256 % 256}",
            user_agent="bench-client/1.0",
            username=f"clusterbench-{user}",
        )
        sessions.append((sid, user))
    start_s = time.perf_counter() - began
    session_bytes = (_memory(masters) - memory_before) / SESSIONS

    calls = [session for session in sessions for _ in range(CALLS_PER_SESSION)]
    rng.shuffle(calls)
    tracker = Tracker()  # no threads: flushed here, when FLUSH_EVERY requests are pending
    cpu_before = _cpu(masters)
    began = time.perf_counter()
    for index, (sid, user) in enumerate(calls, 1):
        tracker._record(sid, user, now, "198.51.100.7", "bench-client/1.0", now + index * 1e-4)
        if index % FLUSH_EVERY == 0 and not tracker.flush():
            raise RuntimeError("a tracking flush failed")
    if not tracker.flush():
        raise RuntimeError("the last tracking flush failed")
    track_s = time.perf_counter() - began
    track_cpu = [b - a for a, b in zip(cpu_before, _cpu(masters), strict=True)]

    cpu_before = _cpu(masters)
    began = time.perf_counter()
    result = audit_services.sync_run()
    sync_s = time.perf_counter() - began
    sync_cpu = [b - a for a, b in zip(cpu_before, _cpu(masters), strict=True)]
    if result.sessions != SESSIONS:
        raise RuntimeError(f"{target}: synced {result.sessions} sessions of {SESSIONS}")
    _check_totals(target)
    return Figures(
        target,
        shards,
        len(masters),
        start_s,
        track_s,
        track_cpu,
        sync_s,
        sync_cpu,
        result.sessions,
        _shards_per_master(masters, shards),
        session_bytes,
    )


def _check_totals(target: str) -> None:
    """Every tracked call reached PostgreSQL, once."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(api_call_count), 0) FROM audit_session")
        sessions, calls = cursor.fetchone()
    if (sessions, calls) != (SESSIONS, SESSIONS * CALLS_PER_SESSION):
        raise RuntimeError(f"{target}: PostgreSQL holds {sessions} sessions, {calls} calls")


def _one_redis(workdir: Path, users: list[int]) -> Figures:
    import redis
    from django.conf import settings
    from django.test import override_settings

    from testing.net import free_port
    from testing.redis_server import PrivateRedis

    (workdir / "one").mkdir()
    server = PrivateRedis(free_port(), workdir / "one")
    server.start()
    try:
        conf = {**settings.SESSIONHUB, "REDIS_SHARDS": 1}
        url = f"redis://127.0.0.1:{server.port}/0"
        with override_settings(REDIS_URL=url, REDIS_CLUSTER_NODES=[], SESSIONHUB=conf):
            client = redis.Redis(port=server.port)
            try:
                return _measure("one Redis", [client], 1, users)
            finally:
                client.close()
    finally:
        server.stop()


def _cluster(workdir: Path, users: list[int]) -> Figures:
    from django.conf import settings
    from django.test import override_settings

    from testing.redis_cluster import RedisClusterHarness

    harness = RedisClusterHarness(workdir / "cluster", ports=PORTS)
    try:
        harness.start()
        nodes = [("127.0.0.1", node.port) for node in harness.nodes]
        conf = {**settings.SESSIONHUB, "REDIS_SHARDS": SHARDS}
        with override_settings(REDIS_CLUSTER_NODES=nodes, SESSIONHUB=conf):
            masters = [node.client() for node in harness.master_nodes()]
            try:
                return _measure("cluster", masters, SHARDS, users)
            finally:
                for client in masters:
                    client.close()
    finally:
        harness.stop()


def _us(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:.1f}"


def _rows(figures: list[Figures]) -> list[list[str]]:
    base = figures[0]
    rows = []
    for f in figures:
        rows.append(
            [
                f.target,
                f"{f.masters} / {f.shards} ({' · '.join(map(str, f.shards_per_master))})",
                f"{f.calls / f.track_s:,.0f}",
                f"{(f.calls / f.track_s) / (base.calls / base.track_s):.2f}",
                _us(sum(f.track_cpu), f.calls),
                " · ".join(_us(cpu, f.calls) for cpu in f.track_cpu),
                f"{f.synced / f.sync_s:,.0f}",
                f"{(f.synced / f.sync_s) / (base.synced / base.sync_s):.2f}",
                _us(sum(f.sync_cpu), f.synced),
                " · ".join(_us(cpu, f.synced) for cpu in f.sync_cpu),
            ]
        )
    return rows


def run(duration: float) -> str:
    """One round of each target (the workload is fixed: `duration` does not apply)."""
    common.django_setup()
    users = _users()
    workdir = Path(tempfile.mkdtemp(prefix="sessionhub-bench-cluster-"))
    try:
        figures = [_one_redis(workdir, users), _cluster(workdir, users)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _truncate()
    table = common.md_table(
        [
            "Target",
            "masters / shards (per master)",
            "tracked requests/s (flush)",
            "vs one",
            "Redis CPU µs per tracked request",
            "… per master",
            "sync sessions/s",
            "vs one",
            "Redis CPU µs per synced session",
            "… per master",
        ],
        _rows(figures),
    )
    memory = ", ".join(f"{f.session_bytes:,.0f} B ({f.target})" for f in figures)
    return common.section(
        "Live sessions: one Redis and a 3-master Redis Cluster",
        sys.modules[__name__],
        f"{SESSIONS:,} sessions of {USERS:,} users, {SESSIONS * CALLS_PER_SESSION:,} tracked "
        f"requests flushed every {FLUSH_EVERY:,}, then one sync of every session; exact totals "
        "checked in PostgreSQL on both targets.",
        "",
        table,
        "",
        "Session opens took "
        + ", ".join(f"{f.start_s:.1f} s ({f.target})" for f in figures)
        + f"; Redis memory per live session (masters, after the logins): {memory}.",
    )
