"""bench_prune — retention of one month of 10M audit events: DROP partition vs batched DELETE.

Two copies of audit_event in the bench database, each holding the same 10M events in one
month (past the retention) and 1M in the next (kept): `bench_prune_partitioned`, partitioned
by month as audit_event is now (the same columns, keys and indexes, and a default partition),
and `bench_prune_plain`, the table as it was before partitioning (primary key `id`, unique
`stream_id`, the same other indexes). On each, in the same run, the month is pruned the way
the code does it: `audit.partitions.partitions_drop_before` (count, then DROP TABLE of the
partition) plus the batched DELETE of what is left before the cut-off (nothing here), and the
previous `prune_audit`: `DELETE … WHERE id IN (SELECT id … LIMIT 10000)` in one transaction
per batch until none is left. Both tables are vacuumed and analyzed first; each case starts
after a CHECKPOINT and reports its time and the WAL it wrote (`pg_current_wal_lsn()` before
and after; WAL is per server, so writes of other databases at the same time count too).
"""

import sys
import time
from datetime import UTC, datetime

from . import common

EVENTS = 10_000_000
KEPT = 1_000_000
BATCH = 10_000
PARTITIONED = "bench_prune_partitioned"
PLAIN = "bench_prune_plain"
MONTH = datetime(2026, 1, 1, tzinfo=UTC)  # the month pruned
NEXT = datetime(2026, 2, 1, tzinfo=UTC)
AFTER = datetime(2026, 3, 1, tzinfo=UTC)

# As bench_admin: one in 20 a failed login; times spread evenly over the month.
ROWS = """
SELECT g, g || '-0',
       CASE WHEN g %% 20 = 0 THEN 'login_failed'
            ELSE (ARRAY['login', 'token_refresh', 'token_refresh', 'logout'])[1 + g %% 4] END,
       'user' || (g %% 100000), ('203.0.' || (g %% 20) || '.' || (g %% 250))::inet, 'bench/1.0',
       '', CASE WHEN g %% 20 = 0 THEN 'bad_password' ELSE '' END,
       %(start)s::timestamptz + (g - %(first)s) * (%(span)s::interval / %(count)s),
       NULL::bigint, CASE WHEN g %% 20 = 0 THEN NULL ELSE g %% 100000 END
FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(count)s - 1) g
"""

# The indexes of audit_event other than its keys, as its migrations made them.
INDEXES = [
    "CREATE INDEX {t}_occurred ON {t} (occurred_at, id)",
    "CREATE INDEX {t}_type_time ON {t} (event_type, occurred_at)",
    "CREATE INDEX {t}_user_time ON {t} (user_id, occurred_at DESC)",
    "CREATE INDEX {t}_username_ci ON {t} (upper(username))",
    "CREATE INDEX {t}_failed_login_hour ON {t} "
    "((date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')) "
    "WHERE event_type = 'login_failed'",
]

# audit.services.audit_prune before partitioning.
PREVIOUS_DELETE = (
    f"DELETE FROM {PLAIN} WHERE id IN (SELECT id FROM {PLAIN} WHERE occurred_at < %s LIMIT %s)"
)
# What audit_prune deletes in batches after dropping partitions: the rest before the cut-off.
REMAINDER_DELETE = (
    f"DELETE FROM {PARTITIONED} WHERE occurred_at < %s AND (id, occurred_at) IN ("
    f"  SELECT id, occurred_at FROM {PARTITIONED} WHERE occurred_at < %s LIMIT %s)"
)


def _execute(sql: str, params=None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _fill(table: str) -> None:
    columns = (
        "id, stream_id, event_type, username, ip, user_agent, session_id, reason, occurred_at, "
        "actor_id, user_id"
    )
    for first, count, start, span in (
        (1, EVENTS, MONTH, "31 days"),
        (EVENTS + 1, KEPT, NEXT, "28 days"),
    ):
        _execute(
            f"INSERT INTO {table} ({columns}) {ROWS}",
            {"first": first, "count": count, "start": start, "span": span},
        )


def _build() -> dict[str, float]:
    timings = {}
    _execute(f"DROP TABLE IF EXISTS {PARTITIONED}, {PLAIN}")
    _execute(
        f"CREATE TABLE {PARTITIONED} (LIKE audit_event INCLUDING DEFAULTS)"
        " PARTITION BY RANGE (occurred_at)"
    )
    for name, low, high in (("m01", MONTH, NEXT), ("m02", NEXT, AFTER)):
        _execute(
            f"CREATE TABLE {PARTITIONED}_{name} PARTITION OF {PARTITIONED}"
            " FOR VALUES FROM (%s) TO (%s)",
            [low, high],
        )
    _execute(f"CREATE TABLE {PARTITIONED}_default PARTITION OF {PARTITIONED} DEFAULT")
    _execute(f"ALTER TABLE {PARTITIONED} ADD PRIMARY KEY (id, occurred_at)")
    _execute(f"ALTER TABLE {PARTITIONED} ADD UNIQUE (stream_id, occurred_at)")
    _execute(f"CREATE TABLE {PLAIN} (LIKE audit_event INCLUDING DEFAULTS)")
    _execute(f"ALTER TABLE {PLAIN} ADD PRIMARY KEY (id)")
    _execute(f"ALTER TABLE {PLAIN} ADD UNIQUE (stream_id)")
    for table in (PARTITIONED, PLAIN):
        for sql in INDEXES:
            _execute(sql.format(t=table))
        print(f"    filling {table} (11M rows)", flush=True)
        started = time.perf_counter()
        _fill(table)
        timings[table] = time.perf_counter() - started
    return timings


def _wal_lsn() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        return cursor.fetchone()[0]


def _wal_bytes(since: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [since])
        return int(cursor.fetchone()[0])


def _count(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def _background_wal_rate(seconds: float = 5.0) -> float:
    """WAL bytes/s the server writes meanwhile for others (WAL is per server, not database)."""
    lsn = _wal_lsn()
    time.sleep(seconds)
    return _wal_bytes(lsn) / seconds


def _measure(prune) -> tuple[float, int, int]:
    _execute("CHECKPOINT")
    common.wait_for_quiet(patience=120)
    lsn = _wal_lsn()
    started = time.perf_counter()
    deleted = prune()
    return time.perf_counter() - started, _wal_bytes(lsn), deleted


def _drop_partition() -> int:
    from audit import partitions, services

    dropped = partitions.partitions_drop_before(NEXT, table=PARTITIONED)
    remainder = services._delete_in_batches(REMAINDER_DELETE, [NEXT, NEXT], BATCH, None)
    return dropped.rows + remainder


def _batched_delete() -> int:
    from audit import services

    return services._delete_in_batches(PREVIOUS_DELETE, [NEXT], BATCH, None)


def _human_bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} B"


def run(duration: float) -> str:
    common.django_setup()
    build = _build()
    for table in (PARTITIONED, PLAIN):
        _execute(f"VACUUM ANALYZE {table}")
    common.wait_for_quiet(patience=120)
    background = _background_wal_rate()
    # The exact count the prune reports is most of the DROP case: its cost alone, first.
    count_s, count_wal, _ = _measure(lambda: _count(f"{PARTITIONED}_m01"))
    print("    pruning: DROP partition", flush=True)
    drop_s, drop_wal, drop_rows = _measure(_drop_partition)
    print("    pruning: batched DELETE", flush=True)
    delete_s, delete_wal, delete_rows = _measure(_batched_delete)
    kept = (_count(PARTITIONED), _count(PLAIN))
    assert drop_rows == delete_rows == EVENTS, (drop_rows, delete_rows)
    assert kept == (KEPT, KEPT), kept
    _execute(f"DROP TABLE {PARTITIONED}, {PLAIN}")
    rows = [
        [
            "count(*) of the month alone (part of the next row)",
            "-",
            f"{count_s:.2f}",
            _human_bytes(count_wal),
        ],
        [
            "DROP partition (count, DROP TABLE, remainder DELETE)",
            f"{drop_rows:,}",
            f"{drop_s:.2f}",
            _human_bytes(drop_wal),
        ],
        [
            f"batched DELETE ({BATCH:,} rows per transaction)",
            f"{delete_rows:,}",
            f"{delete_s:.2f}",
            _human_bytes(delete_wal),
        ],
    ]
    return common.section(
        "Prune one month of 10M events",
        sys.modules[__name__],
        common.md_table(["Prune", "rows removed", "seconds", "WAL written"], rows),
        "",
        f"DROP is {delete_s / drop_s:,.0f} times faster and writes "
        f"{delete_wal / max(drop_wal, 1):,.0f} times less WAL. Both tables kept the next "
        f"month's {KEPT:,} rows. Filling the tables "
        f"({EVENTS + KEPT:,} rows each, with their indexes): partitioned "
        f"{build[PARTITIONED]:.0f} s, plain "
        f"{build[PLAIN]:.0f} s. Other databases of the server wrote "
        f"{_human_bytes(int(background))}/s of WAL just before (counted in the figures above).",
        "",
    )
