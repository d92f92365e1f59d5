"""Audit sync throughput: Redis → PostgreSQL, beside a naive ORM loop and a plain COPY.

For each size, N changed sessions (two hour buckets each, spread over 10,000 users) are put in
Redis the way the tracker leaves them, then:

* `sync` — the project's `audit.sync.sync_sessions`: Lua batch reads overlapped with binary
  COPY into a staging table and `INSERT … ON CONFLICT` into audit_session and
  audit_user_activity, then the acknowledgement in Redis. End to end.
* `naive ORM` — one HGETALL and one `update_or_create` per session, the way a first version
  would do it; run on a sample (it is slow) and reported as a rate.
* `plain COPY` — a binary COPY of the same session rows, already in memory, into an empty
  unindexed table: the physical ceiling of writing those rows at all.

Then `incremental`: with everything synced, 10,000 of the N sessions change again and are
synced — that time must not grow with N.
"""

import random
import sys
import time
from datetime import UTC, datetime

from . import common

USERS = 10_000
NAIVE_SAMPLE = 5_000
INCREMENTAL = 10_000
POPULATE_CHUNK = 5_000


def _users() -> list[int]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    have = user_model.objects.filter(username__startswith="syncbench-").count()
    if have < USERS:
        password = make_password("x")
        user_model.objects.bulk_create(
            [user_model(username=f"syncbench-{n}", password=password) for n in range(have, USERS)],
            batch_size=5000,
        )
    return list(
        user_model.objects.filter(username__startswith="syncbench-").values_list("pk", flat=True)
    )


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # audit_session's TRUNCATE trigger empties analytics_user_day (naming the rollup in the
        # same statement would be TRUNCATE within its own trigger: refused).
        cursor.execute(
            "TRUNCATE audit_session, audit_user_activity, audit_event, audit_sync_cursor"
        )


def _populate(sids: list[str], users: list[int], now: float) -> list[tuple]:
    """Sessions as the tracker leaves them in Redis, marked dirty. Returns their rows."""
    from core.rediskeys import keys

    client = common.redis_client()
    rng = random.Random(len(sids))
    hour = int(now // 3600 * 3600)
    rows = []
    for start in range(0, len(sids), POPULATE_CHUNK):
        pipe = client.pipeline(transaction=False)
        chunk = sids[start : start + POPULATE_CHUNK]
        for sid in chunk:
            user = users[rng.randrange(len(users))]
            started = now - rng.randrange(60, 7000)
            calls_a, calls_b = rng.randrange(1, 500), rng.randrange(1, 500)
            fields = {
                "u": user,
                "st": repr(started),
                "la": repr(now - rng.randrange(0, 60)),
                "n": calls_a + calls_b,
                "ip": f"198.51.{rng.randrange(256)}.{rng.randrange(256)}",
                "ua": "bench-client/1.0",
                f"h:{hour - 3600}": calls_a,
                f"h:{hour}": calls_b,
            }
            pipe.hset(keys.session(sid), mapping=fields)
            hours = {str(hour - 3600): calls_a, str(hour): calls_b}
            rows.append((sid, user, fields["ip"], fields["ua"], started, calls_a + calls_b, hours))
        pipe.sadd(keys.dirty(), *chunk)
        pipe.execute()
    return rows


def _sync() -> tuple[int, float]:
    from django.conf import settings

    from audit import sync

    started = time.perf_counter()
    written = sync.sync_sessions(batch_size=settings.SESSIONHUB["SYNC_BATCH_SIZE"]).rows
    return written, time.perf_counter() - started


def _naive(sids: list[str]) -> float:
    """update_or_create per row, one Redis command per session: sessions per second."""
    from audit.models import AuditSession
    from core.rediskeys import keys

    client = common.redis_client()
    started = time.perf_counter()
    for sid in sids:
        raw = {k.decode(): v.decode() for k, v in client.hgetall(keys.session(sid)).items()}
        AuditSession.objects.update_or_create(
            sid=sid,
            defaults={
                "user_id": int(raw["u"]),
                "ip": raw["ip"],
                "user_agent": raw["ua"],
                "started_at": datetime.fromtimestamp(float(raw["st"]), tz=UTC),
                "last_active": datetime.fromtimestamp(float(raw["la"]), tz=UTC),
                "api_call_count": int(raw["n"]),
                "hourly_calls": {k[2:]: int(v) for k, v in raw.items() if k.startswith("h:")},
            },
        )
    return len(sids) / (time.perf_counter() - started)


def _plain_copy(rows: list[tuple]) -> float:
    """Binary COPY of the session rows into an empty, unindexed table: rows per second."""
    import ipaddress

    from django.db import connection, transaction

    prepared = [
        (
            sid,
            user,
            ipaddress.ip_address(ip),
            ua,
            datetime.fromtimestamp(st, tz=UTC),
            datetime.fromtimestamp(st, tz=UTC),
            None,
            "",
            calls,
            hours,
        )
        for sid, user, ip, ua, st, calls, hours in rows
    ]
    connection.ensure_connection()
    with transaction.atomic(), connection.connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_copy")
        cursor.execute(
            "CREATE TABLE bench_plain_copy (sid text, user_id bigint, ip inet, user_agent text, "
            "started_at timestamptz, last_active timestamptz, ended_at timestamptz, "
            "end_reason text, api_call_count bigint, hourly_calls jsonb)"
        )
    started = time.perf_counter()
    with (
        transaction.atomic(),
        connection.connection.cursor() as cursor,
        cursor.copy("COPY bench_plain_copy FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(
            [
                "text",
                "int8",
                "inet",
                "text",
                "timestamptz",
                "timestamptz",
                "timestamptz",
                "text",
                "int8",
                "jsonb",
            ]
        )
        for row in prepared:
            copy.write_row(row)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_copy")
    return len(rows) / seconds


def _measure(size: int, users: list[int]) -> dict:
    from django.db import connection

    from accounts.livesessions import new_sid

    common.redis_flush()
    _truncate()
    now = time.time()
    sids = [new_sid() for _ in range(size)]
    print(f"    {size:,} sessions: populating Redis", flush=True)
    rows = _populate(sids, users, now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_session")
    print(f"    {size:,} sessions: sync", flush=True)
    written, seconds = _sync()
    assert written == size, (written, size)
    print(f"    {size:,} sessions: incremental sync of {INCREMENTAL:,}", flush=True)
    _populate(sids[:INCREMENTAL], users, now + 30)
    _, incremental_seconds = _sync()
    print(f"    {size:,} sessions: plain COPY", flush=True)
    copy_rate = _plain_copy(rows)
    print(f"    {size:,} sessions: naive ORM loop on {NAIVE_SAMPLE:,}", flush=True)
    _truncate()
    naive_rate = _naive(sids[:NAIVE_SAMPLE])
    return {
        "size": size,
        "seconds": seconds,
        "rate": size / seconds,
        "copy": copy_rate,
        "naive": naive_rate,
        "incremental": incremental_seconds,
    }


def run(duration: float) -> str:
    sizes = (100_000, 1_000_000) if duration >= 30 else (20_000, 100_000)
    users = _users()
    results = [_measure(size, users) for size in sizes]
    common.redis_flush()
    _truncate()
    table = common.md_table(
        [
            "Changed sessions",
            "sync (s)",
            "sync sessions/s",
            "naive ORM sessions/s",
            "plain COPY rows/s",
            "sync / COPY",
            "sync / naive",
            f"incremental {INCREMENTAL:,} (s)",
        ],
        [
            [
                f"{r['size']:,}",
                f"{r['seconds']:.2f}",
                f"{r['rate']:,.0f}",
                f"{r['naive']:,.0f}",
                f"{r['copy']:,.0f}",
                f"{r['rate'] / r['copy']:.2f}",
                f"{r['rate'] / r['naive']:.0f}x",
                f"{r['incremental']:.2f}",
            ]
            for r in results
        ],
        align="rrrrrrrr",
    )
    return common.section(
        "Audit sync throughput",
        sys.modules[__name__],
        table,
        "",
        f"The naive loop ran on {NAIVE_SAMPLE:,} sessions; its rate is per session, two hour "
        "buckets each, like the others. Target: sync ≥ 150,000 sessions/s, ≥ 0.25 of plain "
        "COPY, ≥ 20x the naive loop.",
        "",
    )
