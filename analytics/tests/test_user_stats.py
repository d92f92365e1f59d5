"""analytics_user_stats is kept by triggers and rolled as time passes (analytics.rollups): at
every step of a workload across hour and day boundaries it equals its recomputation from the
sessions for the current windows, and the figures are the ones written down by hand."""

from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.tracking import tracker
from analytics import rollups, selectors
from audit import services as audit_services
from audit import signals
from audit.tests.workload import NOW, Workload, build_world

pytestmark = pytest.mark.django_db

FIGURES = "api_calls_24h, api_calls_7d, api_calls_30d, days_active_7d, days_active_30d"


@pytest.fixture
def pin():
    """Pins analytics_now() (the views' and the roll's clock) to a given UTC time."""

    def pin(when: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('sessionhub.now', %s, false)", [when + "+00:00"])

    yield pin
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


def figures(user) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {FIGURES} FROM analytics_user_stats WHERE user_id = %s", [user.pk])
        return cursor.fetchone()


def anchors() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT day, hour_start FROM analytics_user_stats_state")
        return cursor.fetchone()


def rolled(pin, when: str) -> str:
    pin(when)
    return rollups.roll()


def test_kept_across_hours_and_days_equals_the_recomputation(
    django_user_model, password, frozen_clock, pin
):
    user = django_user_model.objects.create_user(username="night", password=password)
    w = Workload(frozen_clock, password)
    tokens = w.login(user, "2026-11-20T23:10:00")
    w.calls(tokens, 10, "2026-11-20T23:15:00")
    pin("2026-11-20T23:20:00")
    w.sync_and_refresh("2026-11-20T23:20:00")
    assert anchors() == (date(2026, 11, 20), datetime(2026, 11, 20, 0, tzinfo=UTC))
    assert figures(user) == (10, 10, 10, 1, 1)
    assert rollups.stats_differences() == []

    # Calls on both sides of midnight; the day closes (roll) before the sync writes them: the
    # 23:40 calls arrive late for a closed day, the 00:05 ones on the anchored day.
    w.calls(tokens, 5, "2026-11-20T23:40:00")
    w.calls(tokens, 8, "2026-11-21T00:05:00")
    assert rolled(pin, "2026-11-21T00:02:00") == "rolled"
    assert anchors() == (date(2026, 11, 21), datetime(2026, 11, 20, 1, tzinfo=UTC))
    assert figures(user) == (10, 10, 10, 1, 1)
    w.at("2026-11-21T00:06:00")
    w.sync_and_refresh("2026-11-21T00:06:00")
    assert figures(user) == (23, 23, 23, 2, 2)
    assert rollups.stats_differences() == []

    steps = [
        # (now, 24 h, 7 d, 30 d, days 7 d, days 30 d)
        ("2026-11-21T00:59:00", 23, 23, 23, 2, 2),  # same hour: nothing moves
        ("2026-11-21T22:30:00", 23, 23, 23, 2, 2),  # the window starts at 11-20 23:00
        ("2026-11-21T23:00:00", 8, 23, 23, 2, 2),  # 11-20 23:00-24:00 left it
        ("2026-11-22T00:30:00", 0, 23, 23, 2, 2),  # and 11-21 00:00-01:00
        ("2026-11-26T12:00:00", 0, 23, 23, 2, 2),
        ("2026-11-27T12:00:00", 0, 8, 23, 1, 2),  # 11-20 left the 7 d window
        ("2026-11-28T12:00:00", 0, 0, 23, 0, 2),
        ("2026-12-19T12:00:00", 0, 0, 23, 0, 2),  # 21 days in one roll
        ("2026-12-20T12:00:00", 0, 0, 8, 0, 1),  # 11-20 left the 30 d window
        ("2026-12-21T12:00:00", 0, 0, 0, 0, 0),
    ]
    for when, *expected in steps:
        rolled(pin, when)
        assert figures(user) == tuple(expected), when
        assert rollups.stats_differences() == [], when

    # Far ahead or back in time: recomputed instead of rolled.
    assert rolled(pin, "2027-03-01T12:00:00") == "rebuilt"
    assert rolled(pin, "2026-11-21T00:30:00") == "rebuilt"
    assert figures(user) == (23, 23, 23, 2, 2)
    assert rolled(pin, "2026-11-21T00:40:00") == "unchanged"
    assert rollups.stats_differences() == []


def test_accounts_and_activity_follow(django_user_model, password, frozen_clock, pin):
    build_world(django_user_model, password, frozen_clock)
    pin(NOW)
    rollups.roll()

    def idle() -> tuple[int, int, int]:
        count = selectors.idle_user_count()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM analytics_idle_users")
            (rows,) = cursor.fetchone()
        return count.idle_users, count.never_active, rows

    assert idle() == (2, 1, 2)  # carol (idle 40 days) and dave (never active; erin inactive)
    new = django_user_model.objects.create_user(username="newcomer", password=password)
    assert idle() == (3, 2, 3)
    new.is_active = False
    new.save()
    assert idle() == (2, 1, 2)
    django_user_model.objects.filter(username="carol").update(is_active=False)
    assert idle() == (1, 1, 1)
    bob = django_user_model.objects.get(username="bob")
    bob.username = "robert"
    bob.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT username FROM analytics_power_users WHERE user_id = %s", [bob.pk])
        assert {row[0] for row in cursor.fetchall()} == {"robert"}
    assert rollups.stats_differences() == []
    django_user_model.objects.filter(username__in=["carol", "alice"]).delete()
    assert rollups.stats_differences() == []
    assert idle() == (1, 1, 1)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_user_activity SET last_active = %s", [NOW + "+00:00"])
    assert rollups.stats_differences() == []
    assert idle() == (1, 1, 1)  # bob is active now; dave never was
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_user_activity")
    assert rollups.stats_differences() == []
    assert idle() == (2, 2, 2)


def test_rebuilt_equals_kept(django_user_model, password, frozen_clock, pin):
    build_world(django_user_model, password, frozen_clock)
    pin(NOW)
    rollups.roll()

    def table() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT user_id, is_active, last_active, {FIGURES} FROM analytics_user_stats "
                "ORDER BY user_id"
            )
            return cursor.fetchall()

    kept = table()
    assert len(kept) == django_user_model.objects.count()
    assert rollups.stats_differences() == []
    with connection.cursor() as cursor:  # damaged by hand: --check says so
        cursor.execute("UPDATE analytics_user_stats SET api_calls_7d = api_calls_7d + 1")
    with pytest.raises(SystemExit):
        call_command("rebuild_rollups", "--check", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("rebuild_rollups", stdout=out)
    assert f"rebuilt analytics_user_stats: {len(kept)} users" in out.getvalue()
    assert table() == kept
    call_command("rebuild_rollups", "--check", stdout=out)


def test_daily_rows_stored_as_days_close_equal_their_recomputation(
    django_user_model, password, frozen_clock, pin
):
    """analytics_daily: each day stored once as it closes, today's recomputed by the refresh;
    the rows equal a recomputation of the 90 days from scratch (rebuild_rollups)."""
    ann, ben, cid = (
        django_user_model.objects.create_user(username=name, password=password)
        for name in ("ann", "ben", "cid")
    )
    w = Workload(frozen_clock, password)

    def day(when: str, *users) -> None:
        for user in users:
            w.calls(w.login(user, when), 3, when)
        pin(when)
        w.sync_and_refresh(when)

    def daily() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT to_char(day, 'MM-DD'), dau, wau, mau, sessions_started, api_calls, "
                "logins FROM analytics_daily WHERE day >= '2026-11-17' ORDER BY day"
            )
            return cursor.fetchall()

    day("2026-11-18T10:00:00", ann)
    day("2026-11-19T10:00:00", ben)
    day("2026-11-20T10:00:00", ann, cid)
    assert daily() == [
        ("11-17", 0, 0, 0, 0, 0, 0),
        ("11-18", 1, 1, 1, 1, 3, 1),
        ("11-19", 1, 2, 2, 1, 3, 1),
        ("11-20", 2, 3, 3, 2, 6, 2),
    ]
    for when in ("2026-11-25T12:00:00", "2026-11-26T12:00:00", "2026-11-27T12:00:00"):
        rolled(pin, when)
        rollups.daily_refresh()
    kept = daily()
    assert kept[-3:] == [  # 11-19 (ben) leaves the 7 d window on 11-26, 11-20 on 11-27
        ("11-25", 0, 3, 3, 0, 0, 0),
        ("11-26", 0, 2, 3, 0, 0, 0),
        ("11-27", 0, 0, 3, 0, 0, 0),
    ]
    rollups.rebuild()
    assert daily() == kept


def test_a_bulk_sync_sets_last_active_once_at_its_fold(
    django_user_model, password, frozen_clock, pin, settings, monkeypatch
):
    """In a run of several transactions the trigger on audit_user_activity only notes the users
    it wrote; the fold at the run's end sets their last_active from audit_user_activity, once.
    A note left by a run that stopped before its fold is folded by the next reader, and a user
    whose activity was deleted meanwhile gets none."""
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SYNC_BATCH_SIZE": 1, "SYNC_COMMIT_ROWS": 1}
    pin("2026-11-20T10:06:00")
    rollups.roll()
    w = Workload(frozen_clock, password)
    users = [
        django_user_model.objects.create_user(username=f"bulk{n}", password=password)
        for n in range(3)
    ]
    for user in users:  # two sessions each: the user is written by two transactions
        for minute in ("00", "01"):
            w.calls(w.login(user, f"2026-11-20T10:{minute}:00"), 2, "2026-11-20T10:05:00")
    w.at("2026-11-20T10:06:00")
    assert tracker.flush()

    def last_active() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT u.username, s.last_active IS NOT NULL, "
                "EXISTS (SELECT FROM analytics_user_activity_delta d WHERE d.user_id = u.id) "
                "FROM analytics_user_stats s JOIN accounts_user u ON u.id = s.user_id "
                "WHERE u.username LIKE 'bulk%%' ORDER BY 1"
            )
            return cursor.fetchall()

    def rows_written() -> int:
        """Row versions this (the test's) transaction wrote into analytics_user_stats."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'analytics_user_stats'"
            )
            return cursor.fetchone()[0]

    before_fold = []
    send = signals.sessions_synced.send

    def spy(**kwargs):
        before_fold.append((last_active(), rows_written()))
        return send(**kwargs)

    monkeypatch.setattr(signals.sessions_synced, "send", spy)
    audit_services.sync_run()
    # Six transactions wrote the three users' activity: nothing reached the table, each user
    # was noted; the fold set last_active with the calls, one write per user, and emptied the
    # notes.
    [(before_fold, written_before_fold)] = before_fold
    assert rows_written() - written_before_fold == 3
    assert before_fold == [("bulk0", False, True), ("bulk1", False, True), ("bulk2", False, True)]
    assert last_active() == [("bulk0", True, False), ("bulk1", True, False), ("bulk2", True, False)]
    assert rollups.stats_differences() == []

    with connection.cursor() as cursor:  # a run that stopped before its fold, then a deletion
        cursor.execute(
            "INSERT INTO analytics_user_activity_delta SELECT id FROM accounts_user "
            "WHERE username IN ('bulk0', 'bulk1')"
        )
        cursor.execute("DELETE FROM audit_user_activity WHERE user_id = %s", [users[1].pk])
    assert last_active()[1] == ("bulk1", False, True)  # a deletion is applied at once
    assert rollups.stats_differences() == []  # folds first
    assert last_active() == [
        ("bulk0", True, False),
        ("bulk1", False, False),
        ("bulk2", True, False),
    ]
