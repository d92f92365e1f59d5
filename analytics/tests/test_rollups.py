"""analytics_user_day is kept by the sync (triggers on audit_session, in the sync's own
transaction) and must always equal its recomputation from the sessions: after the
ground-truth workload, across a UTC day boundary, when the sync runs twice or is replayed,
when a sync rolls back, and when sessions are pruned. `rebuild_rollups` recomputes it."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from accounts.tracking import tracker
from analytics import rollups
from audit import services as audit_services
from audit.models import AuditSession
from audit.tests.workload import Workload, build_world

pytestmark = pytest.mark.django_db


def user_days(username: str | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.username, to_char(d.day, 'MM-DD'), d.api_calls, d.sessions_started "
            "FROM analytics_user_day d JOIN accounts_user u ON u.id = d.user_id "
            "WHERE %s::text IS NULL OR u.username = %s ORDER BY 1, 2",
            [username, username],
        )
        return cursor.fetchall()


def test_ground_truth_workload_kept_exactly(django_user_model, password, frozen_clock):
    build_world(django_user_model, password, frozen_clock)
    assert user_days() == [
        ("alice", "11-18", 150, 1),
        ("alice", "11-20", 70, 1),
        ("bob", "11-10", 40, 1),
        ("bob", "11-19", 10, 1),
        ("carol", "10-11", 5, 1),
    ]
    assert rollups.differences() == []
    kept = user_days()
    with connection.cursor() as cursor:  # damaged by hand, then rebuilt
        cursor.execute("UPDATE analytics_user_day SET api_calls = api_calls + 7")
        cursor.execute(
            "DELETE FROM analytics_user_day WHERE sessions_started = 1 AND api_calls = 47"
        )
    assert rollups.differences() != []
    out = StringIO()
    call_command("rebuild_rollups", stdout=out)
    assert "rebuilt analytics_user_day: 5 (user, day) rows" in out.getvalue()
    assert user_days() == kept
    call_command("rebuild_rollups", "--check", stdout=out)


def test_across_midnight_and_synced_twice(django_user_model, password, frozen_clock):
    user = django_user_model.objects.create_user(username="night", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T23:50:00")
    w.calls(tokens, 12, "2026-11-20T23:55:00")
    w.sync_and_refresh("2026-11-20T23:58:00")
    assert user_days("night") == [("night", "11-20", 12, 1)]
    w.calls(tokens, 5, "2026-11-20T23:59:00")
    w.calls(tokens, 8, "2026-11-21T00:10:00")
    w.sync_and_refresh("2026-11-21T00:11:00")
    w.sync_and_refresh("2026-11-21T00:12:00")  # nothing changed: nothing added
    assert user_days("night") == [("night", "11-20", 17, 1), ("night", "11-21", 8, 0)]
    w.calls(tokens, 3, "2026-11-21T00:20:00")
    w.sync_and_refresh("2026-11-21T00:21:00")
    assert user_days("night") == [("night", "11-20", 17, 1), ("night", "11-21", 11, 0)]
    assert AuditSession.objects.get(user=user).api_call_count == 28
    assert rollups.differences() == []


def test_a_replayed_sync_adds_nothing(django_user_model, password, frozen_clock):
    """The sync acknowledges Redis only after its commit: a crash in between makes the next
    run write the same sessions again (here: the in-flight set claimed and written twice by
    writing the same staged rows again through the upsert)."""
    user = django_user_model.objects.create_user(username="replay", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T10:00:00")
    w.calls(tokens, 9, "2026-11-20T10:05:00")
    w.at("2026-11-20T10:06:00")
    assert tracker.flush()
    audit_services.sync_run()
    session = AuditSession.objects.get(user=user)
    with connection.cursor() as cursor:  # the same absolute counts, written again
        cursor.execute(
            "UPDATE audit_session SET hourly_calls = hourly_calls, "
            "api_call_count = GREATEST(api_call_count, 9) WHERE sid = %s",
            [session.sid],
        )
    assert user_days("replay") == [("replay", "11-20", 9, 1)]
    assert rollups.differences() == []


def test_a_rolled_back_sync_changes_nothing(django_user_model, password, frozen_clock):
    user = django_user_model.objects.create_user(username="undone", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T10:00:00")
    w.calls(tokens, 4, "2026-11-20T10:05:00")
    w.sync_and_refresh("2026-11-20T10:06:00")
    with pytest.raises(RuntimeError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_session SET hourly_calls = audit_hours_sum(hourly_calls, hourly_calls)"
        )
        assert user_days("undone") == [("undone", "11-20", 8, 1)]
        raise RuntimeError("the sync failed before its commit")
    assert user_days("undone") == [("undone", "11-20", 4, 1)]


def test_pruned_and_deleted_sessions_leave_the_rollup(django_user_model, password, frozen_clock):
    build_world(django_user_model, password, frozen_clock)
    AuditSession.objects.filter(user__username="carol").delete()
    django_user_model.objects.filter(username="bob").delete()
    assert [row[0] for row in user_days()] == ["alice", "alice"]
    assert rollups.differences() == []


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_migrating_a_populated_database_keeps_the_rollup(user):
    """Back to the materialized view, sessions written and refreshed there, forward again: the
    table starts with exactly the view's rows, and the triggers keep it from there."""
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    _migrate([("analytics", "0009_session_status_inactive")])
    started = datetime(2026, 11, 19, 23, 30, tzinfo=UTC)
    hours = {str(int(started.timestamp()) - 1800): 4, str(int(started.timestamp()) + 1800): 6}
    AuditSession.objects.create(
        sid="before",
        user=user,
        started_at=started,
        last_active=started,
        hourly_calls=hours,
        api_call_count=10,
    )
    with connection.cursor() as cursor:
        cursor.execute("REFRESH MATERIALIZED VIEW analytics_user_day")
        cursor.execute("SELECT user_id, day, api_calls, sessions_started FROM analytics_user_day")
        in_view = sorted(cursor.fetchall())
    assert [row[2:] for row in in_view] == [(4, 1), (6, 0)]

    _migrate(leaves)

    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, day, api_calls, sessions_started FROM analytics_user_day")
        assert sorted(cursor.fetchall()) == in_view
    AuditSession.objects.filter(sid="before").update(
        hourly_calls={**hours, str(int(started.timestamp()) + 1800): 9}, api_call_count=13
    )
    assert [row[2:] for row in user_days(user.username)] == [(4, 1), (9, 0)]
    assert rollups.differences() == []
