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

Each size is synced four times from the same sessions in Redis, into emptied tables: with the
triggers that keep analytics_user_day disabled (the sync as it was before the rollup), then as
shipped, twice in turn; the best time of each counts, and `with / without` is what the
rollup's upkeep costs the sync.

Last, cost proportional to change: with 2M and with 20M sessions kept in PostgreSQL (30 and
300 days of history at a steady rate, built in bulk with SQL in databases of their own,
`$BENCH_DATABASE_kept2m` and `_kept20m`, reused between runs: 20M take about 12 minutes to
build), 10,000 new sessions are synced, then changed and synced again; the sync's time, rollup
upkeep and fold included, must be the same for both, and the statistics must show no
sequential scan of audit_session or analytics_user_day.
"""

import contextlib
import hashlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime

from . import common

USERS = 10_000
NAIVE_SAMPLE = 5_000
INCREMENTAL = 10_000
POPULATE_CHUNK = 5_000
SYNC_PASSES = 2
KEPT_SIZES = (2_000_000, 20_000_000)
KEPT_PER_DAY = 66_667  # sessions a day: 2M kept are 30 days of history, 20M are 300
KEPT_REPEATS = 5
KEPT_CHUNK = 2_000_000

# History kept in PostgreSQL, built in bulk with SQL: ended sessions of the bench's users,
# %(count)s of them at a steady %(per_day)s a day up to %(end)s (a day ago), two hours of calls
# each, in time order as the sync writes them; this statement writes the %(first)s-th to the
# %(last)s-th. Written with the triggers off (session_replication_role): the rollup is
# rebuilt from them afterwards.
KEPT_SESSIONS = """
INSERT INTO audit_session (sid, user_id, ip, user_agent, started_at, last_active, ended_at,
                           end_reason, api_call_count, hourly_calls, generation, calls_before,
                           hourly_before)
SELECT 'kept' || lpad(to_hex(g), 12, '0'), u.ids[1 + (g * 7919) %% cardinality(u.ids)],
       ('10.' || (g %% 250) || '.' || (g %% 200) || '.' || (g %% 199))::inet, 'kept/1.0',
       t.start, t.start + interval '50 minutes', t.start + interval '80 minutes',
       'idle_timeout', 2 * (30 + g %% 100),
       jsonb_build_object(t.hour::text, 30 + g %% 100, (t.hour + 3600)::text, 30 + g %% 100),
       0, 0, '{}'::jsonb
FROM generate_series(%(first)s::bigint, %(last)s::bigint) g,
     LATERAL (SELECT %(end)s::timestamptz
                     - (%(count)s - g) * interval '1 day' / %(per_day)s AS start) s,
     LATERAL (SELECT s.start, extract(epoch FROM date_trunc('hour', s.start))::bigint AS hour) t,
     (SELECT array_agg(id ORDER BY id) AS ids FROM accounts_user
      WHERE username LIKE 'syncbench-%%') u
"""
KEPT_ACTIVITY = """
INSERT INTO audit_user_activity (user_id, first_active, last_active)
SELECT user_id, min(started_at), max(last_active) FROM audit_session GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE SET first_active = EXCLUDED.first_active,
                                    last_active = EXCLUDED.last_active
"""
KEPT_DATASET = (
    "bench_sync kept "
    + hashlib.sha256(repr((KEPT_SESSIONS, KEPT_PER_DAY, USERS)).encode()).hexdigest()[:12]
)


def _users() -> list[int]:
    return common.bench_users("syncbench", USERS)


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # analytics_user_day is emptied with audit_session, by its TRUNCATE trigger.
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


# The triggers the sync's writes fire to keep the rollups: analytics_user_day's on audit_session
# (analytics migrations 0010 and 0013) and analytics_user_stats' on audit_user_activity (0011;
# its triggers on analytics_user_day fire only when that table is written). Disabled, the sync
# runs as it did before the rollups (TRUNCATE still empties them).
ROLLUP_TRIGGERS = (
    ("audit_session", "analytics_user_day_inserted"),
    ("audit_session", "analytics_user_day_updated"),
    ("audit_user_activity", "analytics_user_stats_inserted"),
    ("audit_user_activity", "analytics_user_stats_updated"),
)


def _set_rollup_triggers(enabled: bool) -> None:
    from django.db import connection

    action = "ENABLE" if enabled else "DISABLE"
    with connection.cursor() as cursor:
        for table, trigger in ROLLUP_TRIGGERS:
            cursor.execute(f"ALTER TABLE {table} {action} TRIGGER {trigger}")


@contextlib.contextmanager
def _rollup(kept: bool):
    if not kept:
        _set_rollup_triggers(False)
    try:
        yield
    finally:
        if not kept:
            # The rollups no longer match the sessions written meanwhile: emptied with them
            # (the TRUNCATE triggers stay on).
            _truncate()
            _set_rollup_triggers(True)


def _mark_changed(sids: list[str]) -> None:
    """The sessions in Redis marked changed again, as they are: the next sync writes them all."""
    from core.rediskeys import keys

    client = common.redis_client()
    for start in range(0, len(sids), POPULATE_CHUNK):
        client.sadd(keys.dirty(), *sids[start : start + POPULATE_CHUNK])


def _sync_case(size: int, sids: list[str], users: list[int], now: float, *, rollup: bool):
    """The `size` sessions in Redis synced into empty tables, then `INCREMENTAL` of them changed
    again at `now` and synced: both times."""
    from django.db import connection

    label = "with" if rollup else "without"
    _truncate()
    _mark_changed(sids)
    with _rollup(rollup):
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_session")
        print(f"    {size:,} sessions: sync {label} the rollup", flush=True)
        written, seconds = _sync()
        assert written == size, (written, size)
        print(f"    {size:,} sessions: incremental sync of {INCREMENTAL:,}", flush=True)
        _populate(sids[:INCREMENTAL], users, now)
        _, incremental_seconds = _sync()
    return seconds, incremental_seconds


def _measure(size: int, users: list[int]) -> dict:
    from accounts.livesessions import new_sid

    common.redis_flush()
    _truncate()
    now = time.time()
    sids = [new_sid() for _ in range(size)]
    print(f"    {size:,} sessions: populating Redis", flush=True)
    rows = _populate(sids, users, now)
    # The same sessions synced without the rollup's upkeep and with it, in turn, twice: the
    # best time of each (the machine is shared: a slow pass is another process's doing).
    passes: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for turn in range(SYNC_PASSES):
        for rollup in (False, True):
            moment = now + 30 * (1 + 2 * turn + rollup)
            passes[rollup].append(_sync_case(size, sids, users, moment, rollup=rollup))
    seconds, bare = (min(t for t, _ in passes[r]) for r in (True, False))
    incremental, bare_incremental = (min(i for _, i in passes[r]) for r in (True, False))
    print(f"    {size:,} sessions: plain COPY", flush=True)
    copy_rate = _plain_copy(rows)
    print(f"    {size:,} sessions: naive ORM loop on {NAIVE_SAMPLE:,}", flush=True)
    _truncate()
    naive_rate = _naive(sids[:NAIVE_SAMPLE])
    return {
        "size": size,
        "seconds": seconds,
        "rate": size / seconds,
        "bare rate": size / bare,
        "copy": copy_rate,
        "naive": naive_rate,
        "incremental": incremental,
        "bare incremental": bare_incremental,
    }


@contextlib.contextmanager
def _database(name: str):
    """Run the block on another bench database (created and migrated if missing): the kept
    histories stay in theirs between runs while the cases above empty the audit tables."""
    from django.core.management import call_command
    from django.db import connection

    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        common._create_database(connection.settings_dict)
        call_command("migrate", interactive=False, verbosity=0)
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


def _kept_present(count: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM audit_session), "
            "obj_description('audit_session'::regclass, 'pg_class')"
        )
        return cursor.fetchone() == (count, KEPT_DATASET)


def build_kept(count: int) -> float:
    """The kept history of `count` sessions in the current database (reused when it is there):
    seconds it took to build, 0 when reused."""
    from django.db import connection, transaction

    from analytics import rollups

    _users()
    if _kept_present(count):
        return 0.0
    started = time.perf_counter()
    _truncate()
    end = datetime.fromtimestamp(time.time() // 3600 * 3600 - 86400, tz=UTC)
    for first in range(1, count + 1, KEPT_CHUNK):
        last = min(count, first + KEPT_CHUNK - 1)
        print(f"    kept {count:,}: sessions {first:,}-{last:,}", flush=True)
        params = {"count": count, "per_day": KEPT_PER_DAY, "end": end, "first": first}
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(KEPT_SESSIONS, {**params, "last": last})
    print(f"    kept {count:,}: user activity, rollup rebuild, VACUUM ANALYZE", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(KEPT_ACTIVITY)
    rollups.rebuild()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_session")
        cursor.execute("VACUUM ANALYZE analytics_user_day")
        cursor.execute("VACUUM ANALYZE audit_user_activity")
        cursor.execute(f"COMMENT ON TABLE audit_session IS '{KEPT_DATASET}'")
    return time.perf_counter() - started


SEQ_SCANS = """
SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables
WHERE relname IN ('audit_session', 'analytics_user_day')
"""


def _seq_scans() -> int:
    """Sequential scans of audit_session and analytics_user_day so far (this backend's counts
    flushed first: the sync runs on this connection)."""
    from django.db import connection

    time.sleep(1.1)  # pending statistics are flushed at most once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(SEQ_SCANS)
        return int(cursor.fetchone()[0])


def _measure_kept(count: int) -> dict:
    """With `count` sessions kept, `INCREMENTAL` new sessions synced, then changed and synced
    again (sync and rollup upkeep, fold included), KEPT_REPEATS times: the median of each."""
    from django.conf import settings
    from django.db import connection

    from accounts.livesessions import new_sid
    from analytics import rollups

    with _database(f"{settings.BENCH_DATABASE}_kept{count // 1_000_000}m"):
        print(f"    {count:,} kept: building (reused when there)", flush=True)
        built = build_kept(count)
        users = _users()
        new, changed, written = [], [], []
        scans = _seq_scans()
        try:
            for _ in range(KEPT_REPEATS):
                common.redis_flush()
                sids = [new_sid() for _ in range(INCREMENTAL)]
                written += sids
                now = time.time()
                _populate(sids, users, now)
                rows, seconds = _sync()
                assert rows == INCREMENTAL, rows
                new.append(seconds)
                _populate(sids, users, now + 30)
                rows, seconds = _sync()
                assert rows == INCREMENTAL, rows
                changed.append(seconds)
            scans = _seq_scans() - scans
        finally:  # back to the kept history alone, for the next run
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM audit_session WHERE sid = ANY(%s)", [written])
        exact = None
        if count <= 2_000_000:  # a recomputation of 20M sessions takes minutes
            exact = rollups.differences() == []
        common.redis_flush()
    return {
        "kept": count,
        "built": built,
        "new": statistics.median(new),
        "changed": statistics.median(changed),
        "seq scans": scans,
        "exact": exact,
    }


def run(duration: float) -> str:
    sizes = (100_000, 1_000_000) if duration >= 30 else (20_000, 100_000)
    users = _users()
    results = [_measure(size, users) for size in sizes]
    common.redis_flush()
    _truncate()
    kept = [_measure_kept(count) for count in KEPT_SIZES]
    table = common.md_table(
        [
            "Changed sessions",
            "sync (s)",
            "sync sessions/s",
            "without rollup sessions/s",
            "with / without",
            "naive ORM sessions/s",
            "plain COPY rows/s",
            "sync / COPY",
            "sync / naive",
            f"incremental {INCREMENTAL:,} (s), with / without rollup",
        ],
        [
            [
                f"{r['size']:,}",
                f"{r['seconds']:.2f}",
                f"{r['rate']:,.0f}",
                f"{r['bare rate']:,.0f}",
                f"{r['rate'] / r['bare rate']:.2f}",
                f"{r['naive']:,.0f}",
                f"{r['copy']:,.0f}",
                f"{r['rate'] / r['copy']:.2f}",
                f"{r['rate'] / r['naive']:.0f}x",
                f"{r['incremental']:.2f} / {r['bare incremental']:.2f}",
            ]
            for r in results
        ],
        align="rrrrrrrrrr",
    )
    first = kept[0]
    kept_table = common.md_table(
        [
            "Sessions kept",
            "built in (s)",
            f"sync {INCREMENTAL:,} new (s)",
            f"sync {INCREMENTAL:,} changed (s)",
            f"new / {first['kept']:,} kept",
            f"changed / {first['kept']:,} kept",
            "seq scans of audit_session, analytics_user_day",
            "rollup == rebuild",
        ],
        [
            [
                f"{k['kept']:,}",
                f"{k['built']:.0f}" if k["built"] else "reused",
                f"{k['new']:.3f}",
                f"{k['changed']:.3f}",
                f"{k['new'] / first['new']:.2f}",
                f"{k['changed'] / first['changed']:.2f}",
                str(k["seq scans"]),
                {True: "yes", False: "NO", None: "not checked"}[k["exact"]],
            ]
            for k in kept
        ],
        align="rrrrrrrl",
    )
    return common.section(
        "Audit sync throughput",
        sys.modules[__name__],
        table,
        "",
        f"The naive loop ran on {NAIVE_SAMPLE:,} sessions; its rate is per session, two hour "
        "buckets each, like the others. Target: sync ≥ 150,000 sessions/s, ≥ 0.25 of plain "
        "COPY, ≥ 20x the naive loop; with the rollup ≥ 0.8 of without it.",
        "",
        f"Cost proportional to change: {INCREMENTAL:,} sessions synced new, then changed, with "
        f"a history of sessions kept ({KEPT_PER_DAY:,} a day: 30 and 300 days), median of "
        f"{KEPT_REPEATS}; sync and rollup upkeep (fold included). Target: 20M within 1.25 of "
        "2M, and no sequential scan of audit_session or analytics_user_day.",
        "",
        kept_table,
        "",
    )
