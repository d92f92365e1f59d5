"""audit_event partitioned by month: the migration keeps every row, partitions are created
ahead, retention drops whole months and deletes the rest in batches."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit import partitions, services
from audit.models import AuditEvent

BEFORE = ("audit", "0011_sync_quarantine")
PARTITIONED = ("audit", "0012_partition_audit_event")


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _is_partitioned() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'audit_event'::regclass")
        return cursor.fetchone()[0] == "p"


def _rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, stream_id, event_type, user_id, occurred_at FROM audit_event ORDER BY id"
        )
        return cursor.fetchall()


def _failures_in_view() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(failures), 0) FROM analytics_failed_logins_hourly")
        return cursor.fetchone()[0]


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_event WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_migrating_a_populated_database_keeps_every_row(user):
    """Back to the unpartitioned table, rows over many months (one far in the past, one in the
    future), forward again: the same rows, ids, keys and readers, and the sequence goes on."""
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    _migrate([BEFORE])
    assert not _is_partitioned()
    now = timezone.now()
    times = [now - timedelta(days=days) for days in (0, 1, 20, 40, 70, 100, 130, 400, 3000)]
    times.append(now + timedelta(days=200))  # beyond the months made ahead
    with connection.cursor() as cursor:
        for n, occurred in enumerate(times * 3):
            cursor.execute(
                "INSERT INTO audit_event (stream_id, event_type, user_id, username, user_agent,"
                " session_id, reason, occurred_at) VALUES (%s, %s, %s, '', '', '', '', %s)",
                [f"{n + 1}-0", "login_failed" if n % 2 else "login", user.pk, occurred],
            )
        cursor.execute("DELETE FROM audit_event WHERE stream_id = '5-0'")  # a gap in the ids
    before = _rows()
    assert len(before) == 29
    failures_before = _failures_in_view()
    assert failures_before > 0

    _migrate(leaves)

    assert _is_partitioned()
    assert _rows() == before
    months = {partition.start for partition in partitions.partitions_list()}
    assert {partitions.month_start(t) for t in times} <= months  # each month with rows has one
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partitions.DEFAULT_PARTITION}")
        assert cursor.fetchone()[0] == 0
    # The readers were carried over and read the new table.
    assert _failures_in_view() == failures_before
    created = AuditEvent.objects.create(stream_id="new-0", event_type="login", occurred_at=now)
    assert created.pk > max(row[0] for row in before)


@pytest.mark.django_db(transaction=True)
def test_migrating_back_keeps_every_row_too(user):
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    now = timezone.now()
    for n, days in enumerate((0, 35, 70, 500)):
        AuditEvent.objects.create(
            stream_id=f"{n}-1", event_type="login", user=user, occurred_at=now - timedelta(days)
        )
    before = _rows()
    try:
        _migrate([BEFORE])
        assert not _is_partitioned()
        assert _rows() == before
        created = AuditEvent.objects.create(stream_id="x-1", event_type="login", occurred_at=now)
        assert created.pk > before[-1][0]
    finally:
        _migrate(leaves)
    assert _is_partitioned()


@pytest.mark.django_db
def test_the_sync_insert_stays_exactly_once_with_the_partition_key():
    """ON CONFLICT (stream_id, occurred_at): the same entry delivered twice is stored once."""
    from audit import sync

    entry = (
        "1700000000000-0",
        {b"d": b'{"type":"login_failed","ts":1764000000.5,"username":"x","ip":"10.0.0.1"}'},
    )
    for _ in range(2):
        assert sync.write_events([entry], anonymize_ip=False, quarantined=set()).rows == 1
    assert AuditEvent.objects.filter(stream_id="1700000000000-0").count() == 1


@pytest.mark.django_db
def test_partitions_are_created_ahead_and_take_their_rows_from_the_default_partition():
    now = datetime(2031, 5, 17, 12, tzinfo=UTC)
    stray = AuditEvent.objects.create(
        stream_id="9-9", event_type="login", occurred_at=datetime(2031, 6, 3, tzinfo=UTC)
    )
    assert _partition_of(stray.pk) == partitions.DEFAULT_PARTITION

    created = partitions.partitions_ensure(now=now)

    assert {"audit_event_y2031m05", "audit_event_y2031m06", "audit_event_y2031m07"} <= set(created)
    assert _partition_of(stray.pk) == "audit_event_y2031m06"
    assert partitions.partitions_ensure(now=now) == []  # idempotent


@pytest.mark.django_db(transaction=True)  # as in production: each drop in its own transaction
def test_prune_drops_whole_months_and_deletes_the_rest_in_batches():
    now = timezone.now()
    cutoff_age = timedelta(days=90)
    cutoff = now - cutoff_age
    old_month = partitions.month_start(cutoff) - timedelta(days=40)
    partitions.partitions_ensure(now=old_month + timedelta(days=90))  # partitions back to it
    whole = [partitions.month_start(old_month) + timedelta(hours=h) for h in range(0, 600, 7)]
    partial_old = [cutoff - timedelta(hours=h) for h in (1, 2, 3)]
    partial_old = [t for t in partial_old if t >= partitions.month_start(cutoff)]
    kept = [cutoff + timedelta(hours=h) for h in (1, 2)]
    ancient = [datetime(2003, 1, 1, tzinfo=UTC)]  # in the default partition
    for n, occurred in enumerate(whole + partial_old + kept + ancient):
        AuditEvent.objects.create(stream_id=f"{n}-0", event_type="login", occurred_at=occurred)
    whole_partition = partitions.partition_name(partitions.month_start(old_month))

    result = services.audit_prune(older_than=cutoff_age, batch=2)

    assert whole_partition in result.partitions
    assert whole_partition not in {p.name for p in partitions.partitions_list()}
    assert result.events == len(whole) + len(partial_old) + len(ancient)
    assert sorted(AuditEvent.objects.values_list("occurred_at", flat=True)) == kept
    # Retention starts again at the cut-off's month: nothing older is recreated.
    assert partitions.partitions_list()[0].start == partitions.month_start(cutoff)


def test_beat_creates_the_partitions_ahead(settings):
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["audit.tasks.audit_partitions_ensure"]["schedule"] <= 24 * 3600
