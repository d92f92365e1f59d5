"""Every analytic against a workload whose true numbers are known.

"Now" is 2026-11-20 14:30 UTC for the session logic (core.clock) and for the SQL views
(SET sessionhub.now). The timeline, and what it must give, is written out here by hand.

alice  11-18 10:00 login; 100 calls 10:10; 50 calls 10:35; logout 10:40
       11-20 13:00 login; 30 calls 13:05, 10 at 13:30, 10 at 13:55, 20 at 14:10 (still open)
bob    11-10 09:00 login; 40 calls 09:20; abandoned -> idle timeout (ended 09:50)
       11-19 20:00 login; 10 calls 20:05; logout 20:10
carol  10-11 08:00 login; 5 calls 08:01; abandoned -> idle timeout
dave   never logs in;  erin: disabled, never logs in
11-20 13:40:00..24  25 failed logins from 203.0.113.9 ("stuffer/1.0"), usernames u00..u24
                    (unknown): 20 counted as unknown_user, then the IP is locked (13:40:19 to
                    13:41:19) and refuses 5: the first is a login_failed (throttled) event, and
                    the lock's lockout_lifted event (dated 13:41:19) counts all 5
11-20 14:00..02     3 wrong passwords for alice from 198.51.100.4 ("client/1")
"""

import pytest
from django.db import connection

from audit.models import AuditEvent, AuditSession

from .workload import NOW, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(django_user_model, password, frozen_clock):
    return build_world(django_user_model, password, frozen_clock)


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SET sessionhub.now = '{NOW}+00:00'")
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture(autouse=True)
def pinned_now(world):
    query("SELECT 1")  # pins the views' clock for this connection
    from analytics import services

    services.analytics_refresh()  # again, now with the views' clock pinned as well
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


def test_sessions_in_postgresql(world):
    rows = {
        (s.user.username, s.started_at.isoformat()): (
            s.api_call_count,
            s.end_reason,
            s.ended_at and s.ended_at.isoformat(),
        )
        for s in AuditSession.objects.select_related("user")
    }
    assert rows == {
        ("carol", "2026-10-11T08:00:00+00:00"): (5, "idle_timeout", "2026-10-11T08:31:00+00:00"),
        ("bob", "2026-11-10T09:00:00+00:00"): (40, "idle_timeout", "2026-11-10T09:50:00+00:00"),
        ("alice", "2026-11-18T10:00:00+00:00"): (150, "logout", "2026-11-18T10:40:00+00:00"),
        ("bob", "2026-11-19T20:00:00+00:00"): (10, "logout", "2026-11-19T20:10:00+00:00"),
        ("alice", "2026-11-20T13:00:00+00:00"): (70, "", None),
    }


def test_events_in_postgresql(world):
    counts = {}
    for event_type in AuditEvent.objects.values_list("event_type", flat=True):
        counts[event_type] = counts.get(event_type, 0) + 1
    assert counts == {
        "login": 5,
        "login_failed": 24,
        "logout": 2,
        "session_expired": 2,
        "locked_out": 1,
        "lockout_lifted": 1,
    }
    lifted = AuditEvent.objects.get(event_type="lockout_lifted")
    assert (str(lifted.ip), lifted.reason, lifted.actor_id) == ("203.0.113.9", "refused=5", None)
    assert lifted.occurred_at.isoformat() == "2026-11-20T13:41:19+00:00"
    failure = AuditEvent.objects.filter(event_type="login_failed", username="alice").first()
    assert str(failure.ip) == "198.51.100.4"
    assert failure.user_agent == "client/1"
    assert failure.user_id is None  # a failed attempt is not attributed to the account


def test_user_activity(world):
    rows = query(
        "SELECT username, api_calls_24h, api_calls_7d, api_calls_30d, days_active_30d, status,"
        " never_active, last_active FROM analytics_user_activity ORDER BY username"
    )
    as_text = [(*row[:7], row[7] and row[7].isoformat()) for row in rows]
    assert as_text == [
        ("alice", 70, 220, 220, 2, "recent", False, "2026-11-20T14:10:00+00:00"),
        ("bob", 10, 10, 50, 2, "inactive", False, "2026-11-19T20:05:00+00:00"),
        ("carol", 0, 0, 0, 0, "inactive", False, "2026-10-11T08:01:00+00:00"),
        ("dave", 0, 0, 0, 0, "inactive", True, None),
        ("erin", 0, 0, 0, 0, "inactive", True, None),
    ]


def test_power_users(world):
    def top(window: str) -> list[tuple]:
        return query(
            "SELECT username, api_calls, days_active_30d FROM analytics_power_users "
            'WHERE "window" = %s ORDER BY api_calls DESC, username',
            [window],
        )

    assert top("24h") == [("alice", 70, 2), ("bob", 10, 2)]
    assert top("7d") == [("alice", 220, 2), ("bob", 10, 2)]
    assert top("30d") == [("alice", 220, 2), ("bob", 50, 2)]
    by_days = query(
        "SELECT username FROM analytics_power_users WHERE \"window\" = '30d' "
        "ORDER BY days_active_30d DESC, username"
    )
    assert by_days == [("alice",), ("bob",)]


def test_idle_users(world):
    rows = query(
        "SELECT username, idle_days, never_active FROM analytics_idle_users ORDER BY username"
    )
    assert rows == [("carol", 40, False), ("dave", None, True)]


def test_sessions_by_status(world):
    assert query("SELECT status, sessions FROM analytics_sessions_by_status") == [
        ("active_now", 0),
        ("recent", 1),
        ("inactive", 0),
    ]


def test_failed_logins_over_time(world):
    rows = query(
        "SELECT to_char(hour AT TIME ZONE 'UTC', 'MM-DD HH24'), reason, failures "
        "FROM analytics_failed_logins_hourly ORDER BY 1, 2"
    )
    assert rows == [
        ("11-20 13", "throttled", 1),
        ("11-20 13", "unknown_user", 20),
        ("11-20 14", "bad_password", 3),
    ]


def test_suspicious_ips(world):
    # alice's 3 wrong passwords from 198.51.100.4 stay under the threshold (10 failures or
    # 5 usernames): only the stuffer is listed.
    rows = query(
        "SELECT host(ip), user_agent_count, user_agents, attempts, usernames_tried, "
        "to_char(first_seen AT TIME ZONE 'UTC', 'HH24:MI:SS'), "
        "to_char(last_seen AT TIME ZONE 'UTC', 'HH24:MI:SS') "
        "FROM analytics_suspicious_ips ORDER BY attempts DESC"
    )
    assert rows == [("203.0.113.9", 1, ["stuffer/1.0"], 21, 21, "13:40:00", "13:40:20")]


def test_session_duration_distribution(world):
    rows = query("SELECT bucket, sessions FROM analytics_session_durations")
    # alice 10:00-10:35 = 2100 s, bob 09:00-09:20 = 1200 s, bob 20:00-20:05 = 300 s; carol's
    # session ended more than 30 days ago.
    assert rows == [
        ("<= 1 min", 0),
        ("1-5 min", 1),
        ("5-15 min", 0),
        ("15 min-1 h", 2),
        ("1 h-1 d", 0),
        ("> 1 d", 0),
    ]


def test_daily_rollup(world):
    rows = query(
        "SELECT to_char(day, 'MM-DD'), dau, wau, mau, sessions_started, api_calls, logins, "
        "failed_logins, duration_p50, duration_p95 FROM analytics_daily "
        "WHERE dau > 0 OR failed_logins > 0 ORDER BY day"
    )
    assert rows == [
        ("10-11", 1, 1, 1, 1, 5, 1, 0, 60.0, 60.0),
        ("11-10", 1, 1, 1, 1, 40, 1, 0, 1200.0, 1200.0),
        ("11-18", 1, 1, 2, 1, 150, 1, 0, 2100.0, 2100.0),
        ("11-19", 1, 2, 2, 1, 10, 1, 0, 300.0, 300.0),
        ("11-20", 1, 2, 2, 1, 70, 1, 24, None, None),
    ]
    # MAU on a day with no activity of its own still counts the 30 days before it.
    [(mau,)] = query("SELECT mau FROM analytics_daily WHERE day = '2026-11-15'")
    assert mau == 1
