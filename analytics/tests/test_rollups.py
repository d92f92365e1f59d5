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

from accounts import export
from accounts.tracking import tracker
from analytics import rollups
from analytics import services as analytics_services
from audit import services as audit_services
from audit import signals, sync
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


def pending_deltas() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.username, to_char(d.day, 'MM-DD'), d.api_calls, d.sessions_started "
            "FROM analytics_user_day_delta d JOIN accounts_user u ON u.id = d.user_id "
            "ORDER BY 1, 2"
        )
        return cursor.fetchall()


def written_unacknowledged(w: Workload, tokens: dict, calls: int, at: str, flushed_at: str):
    """`calls` more calls at `at`, flushed at `flushed_at` and written by one transaction of a
    bulk sync run (deltas appended), with no fold and no acknowledgement after it; returns the
    batch."""
    w.calls(tokens, calls, at)
    w.at(flushed_at)
    assert tracker.flush()
    export.changed_claim()
    [batch] = list(export.changed_sessions(100))
    sync.write_sessions(batch, anonymize_ip=False, defer_upkeep=True)
    return batch


def test_the_sync_appends_deltas_and_folds_them_once_a_run(
    django_user_model, password, frozen_clock
):
    """In the sync's transactions the triggers append narrow deltas; the end of the run folds
    them into analytics_user_day. A run that stopped between its commit and its fold (and its
    acknowledgement) leaves them for the next run, which writes the same sessions again
    without adding anything, and folds."""
    user = django_user_model.objects.create_user(username="folded", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T10:00:00")
    written_unacknowledged(w, tokens, 9, "2026-11-20T10:05:00", "2026-11-20T10:06:00")
    assert pending_deltas() == [("folded", "11-20", 9, 1)]
    assert user_days("folded") == []

    audit_services.sync_run()  # the in-flight set again, then the fold
    assert pending_deltas() == []
    assert user_days("folded") == [("folded", "11-20", 9, 1)]
    assert rollups.fold() == 0  # folded once

    written_unacknowledged(w, tokens, 4, "2026-11-20T10:10:00", "2026-11-20T10:11:00")
    assert pending_deltas() == [("folded", "11-20", 4, 0)]
    assert rollups.differences() == []  # folds what is pending first
    assert pending_deltas() == []
    assert user_days("folded") == [("folded", "11-20", 13, 1)]


def test_the_refresh_folds_what_a_stopped_run_left(django_user_model, password, frozen_clock):
    user = django_user_model.objects.create_user(username="stopped", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T10:00:00")
    written_unacknowledged(w, tokens, 6, "2026-11-20T10:05:00", "2026-11-20T10:06:00")
    analytics_services.analytics_refresh()
    assert pending_deltas() == []
    assert user_days("stopped") == [("stopped", "11-20", 6, 1)]


def test_other_writers_apply_at_once_and_truncate_empties_the_deltas(
    django_user_model, password, frozen_clock
):
    """Outside the sync's upsert (the timeout job, a session written by hand, prune) the
    triggers apply at once, even later in a transaction that ran the sync's upsert."""
    user = django_user_model.objects.create_user(username="direct", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T10:00:00")
    w.calls(tokens, 5, "2026-11-20T10:05:00")
    w.at("2026-11-20T10:06:00")
    assert tracker.flush()
    export.changed_claim()
    [batch] = list(export.changed_sessions(100))
    with transaction.atomic():
        sync.write_sessions(batch, anonymize_ip=False, defer_upkeep=True)
        AuditSession.objects.filter(user=user).update(
            hourly_calls={str(int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp())): 7},
            api_call_count=7,
        )
        assert pending_deltas() == [("direct", "11-20", 5, 1)]
        assert user_days("direct") == [("direct", "11-20", 2, 0)]
    assert rollups.differences() == []
    assert user_days("direct") == [("direct", "11-20", 7, 1)]
    sync.write_sessions(batch, anonymize_ip=False, defer_upkeep=True)  # older: changes nothing
    assert pending_deltas() == []
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO analytics_user_day_delta VALUES (%s, '2026-11-20', 1, 0)", [user.pk]
        )
        cursor.execute("TRUNCATE audit_session")
    assert pending_deltas() == []
    assert user_days() == []


def test_a_run_of_several_transactions_folds_once_at_its_end(
    django_user_model, password, frozen_clock, settings, monkeypatch
):
    """A run larger than one transaction defers: its transactions append deltas, the end of the
    run folds them (a run of one transaction applies at once, as other writers do)."""
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SYNC_BATCH_SIZE": 1, "SYNC_COMMIT_ROWS": 1}
    w = Workload(frozen_clock, password)
    for n, calls in enumerate((3, 5, 7)):
        user = django_user_model.objects.create_user(username=f"many{n}", password=password)
        tokens = w.login(user, "2026-11-20T10:00:00")
        w.calls(tokens, calls, "2026-11-20T10:05:00")
    w.at("2026-11-20T10:06:00")
    assert tracker.flush()
    before_fold = []
    send = signals.sessions_synced.send

    def spy(**kwargs):
        before_fold.append(pending_deltas())
        return send(**kwargs)

    monkeypatch.setattr(signals.sessions_synced, "send", spy)
    audit_services.sync_run()
    assert before_fold == [
        [("many0", "11-20", 3, 1), ("many1", "11-20", 5, 1), ("many2", "11-20", 7, 1)]
    ]
    assert pending_deltas() == []
    assert user_days() == [
        ("many0", "11-20", 3, 1),
        ("many1", "11-20", 5, 1),
        ("many2", "11-20", 7, 1),
    ]
    assert rollups.differences() == []
