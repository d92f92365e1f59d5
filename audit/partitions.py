"""The monthly partitions of audit_event: created ahead by beat, dropped whole by retention.

Layout (created by migration 0012): one partition per calendar month (UTC) of `occurred_at`,
named `audit_event_y<YYYY>m<MM>`, and `audit_event_default`, the DEFAULT partition. The
default partition is the safety net: a row whose month has no partition (beat down for
months, a clock far off, an old event replayed) lands there instead of failing the sync's
insert. It is meant to stay empty: creating a month's partition moves that month's rows out
of it first (attaching a range checks that the default partition holds none of it).

Locks: a partition is created standalone and then ATTACHed, which takes only a SHARE UPDATE
EXCLUSIVE lock on audit_event — the sync and the readers go on (CREATE TABLE … PARTITION OF
would take an ACCESS EXCLUSIVE one). Dropping a partition does take an ACCESS EXCLUSIVE lock
on audit_event for the moment of the catalog change (DETACH … CONCURRENTLY is refused while a
default partition exists), so every change here waits at most LOCK_TIMEOUT for its lock and
gives up otherwise, to be tried again by the next run instead of queueing the sync behind it.
"""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.utils import OperationalError

from core import clock
from core.conf import get_settings

logger = logging.getLogger(__name__)

TABLE = "audit_event"
DEFAULT_PARTITION = "audit_event_default"
AHEAD_MONTHS = 2
LOCK_TIMEOUT = "5s"
BOUND = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive


def month_start(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(month: datetime) -> datetime:
    return (month + timedelta(days=32)).replace(day=1)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def partitions_list(*, table: str = TABLE) -> list[Partition]:
    """The monthly partitions, oldest first (the default partition is not among them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        rows = cursor.fetchall()
    partitions = []
    for name, bound in rows:
        match = BOUND.search(bound)
        if match:
            start, end = (datetime.fromisoformat(part).astimezone(UTC) for part in match.groups())
            partitions.append(Partition(name, start, end))
    return sorted(partitions, key=lambda partition: partition.start)


def _partition_create(month: datetime) -> int:
    """Create and attach one month's partition, moving its rows out of the default partition;
    returns the number of rows moved."""
    name, end = partition_name(month), next_month(month)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE})")
        move = (
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION}"  # noqa: S608 - names from constants
            "  WHERE occurred_at >= %s AND occurred_at < %s RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved"
        )
        cursor.execute(move, [month, end])
        moved = cursor.rowcount
        cursor.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [month, end],
        )
    return moved


def partitions_ensure(*, now: datetime | None = None, ahead: int = AHEAD_MONTHS) -> list[str]:
    """Create the missing monthly partitions from the oldest month retention keeps to `ahead`
    months after the current one (beat, every few hours; idempotent). Returns their names.

    A month whose partition cannot get its lock now is left to the next run: its rows go to
    the default partition meanwhile, and are moved out when the partition is created.
    """
    now = now or clock.to_datetime(clock.now())
    retention = timedelta(days=get_settings().AUDIT_RETENTION_DAYS)
    first, last = month_start(now - retention), month_start(now)
    for _ in range(ahead):
        last = next_month(last)
    existing = {partition.start for partition in partitions_list()}
    created = []
    month = first
    while month <= last:
        if month not in existing:
            try:
                moved = _partition_create(month)
            except OperationalError as exc:  # lock_timeout: busy now, the next run tries again
                logger.warning("audit partition %s not created: %s", partition_name(month), exc)
            else:
                created.append(partition_name(month))
                logger.info(
                    "audit partition %s created (%d rows moved from the default partition)",
                    partition_name(month),
                    moved,
                )
        month = next_month(month)
    return created


@dataclass(frozen=True, slots=True)
class Dropped:
    partitions: list[str]
    rows: int


def partitions_drop_before(cutoff: datetime, *, table: str = TABLE) -> Dropped:
    """Drop every monthly partition that ends at or before `cutoff`: its rows are all past
    retention. Counted first (the count reports what the prune removed). `table`: bench_prune
    measures this on a copy."""
    names, rows = [], 0
    for partition in partitions_list(table=table):
        if partition.end > cutoff:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {partition.name}")  # noqa: S608 - from the catalog
            count = cursor.fetchone()[0]
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # PostgreSQL refuses to drop a table with deferred foreign-key checks pending, which
            # rows written earlier in an enclosing transaction leave: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"DROP TABLE {partition.name}")
        names.append(partition.name)
        rows += count
    return Dropped(names, rows)
