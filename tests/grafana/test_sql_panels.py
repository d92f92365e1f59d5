"""Every SQL query of every dashboard, its variables and macros expanded as Grafana does, run as
Grafana's read-only role on the ground-truth workload of audit/tests/test_ground_truth.py
("now" 2026-11-20 14:30 UTC), returns the columns and numbers written down there."""

from datetime import UTC, date, datetime, timedelta

import pytest

from .helpers import (
    POSTGRES_UID,
    Target,
    expand_sql,
    expand_sql_macros,
    load_dashboards,
    targets,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
SESSIONS = "sessionhub-sessions"
# Panels on analytics_daily show the last 30 days: 10-21 (the day of now-30d) to 11-20.
DAYS_30 = [(date(2026, 10, 21) + timedelta(days=n)).strftime("%m-%d") for n in range(31)]


def text(value):
    """Timestamps as 'MM-DD HH:MM:SS' (UTC), daily points as 'MM-DD'."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        if value.time() == datetime.min.time():
            return value.strftime("%m-%d")
        return value.strftime("%m-%d %H:%M:%S")
    return value


# (dashboard uid, panel title, refId) -> (columns, rows). Numbers from test_ground_truth.py.
EXPECTED = {
    (SESSIONS, "Suspicious IPs (last 24 h)", "A"): (
        [
            "IP",
            "failed logins",
            "usernames tried",
            "user agents",
            "first 10 agents",
            "first seen",
            "last seen",
        ],
        # alice's 3 typos from 198.51.100.4 stay under the threshold.
        [("203.0.113.9", 21, 21, 1, "stuffer/1.0", "11-20 13:40:00", "11-20 13:40:20")],
    ),
    (SESSIONS, "Failed logins per hour (audit trail)", "A"): (
        ["time", "metric", "failures"],
        [
            ("11-20 13:00:00", "throttled", 1),
            ("11-20 13:00:00", "unknown_user", 20),
            ("11-20 14:00:00", "bad_password", 3),
        ],
    ),
    (SESSIONS, "Top power users ($window)", "A"): (
        ["user", "API calls", "days active (30 d)", "last active"],
        [("alice", 70, 2, "11-20 14:10:00"), ("bob", 10, 2, "11-19 20:05:00")],
    ),
    (SESSIONS, "Idle users", "A"): (["idle users", "never active"], [(2, 1)]),  # carol, dave
    (SESSIONS, "Ended sessions by duration (30 d)", "A"): (
        ["duration", "ended sessions"],
        [
            ("<= 1 min", 0),
            ("1-5 min", 1),
            ("5-15 min", 0),
            ("15 min-1 h", 2),
            ("1 h-1 d", 0),
            ("> 1 d", 0),
        ],
    ),
    (SESSIONS, "Session duration p50 / p95 per day", "A"): (
        ["time", "p50", "p95"],
        # carol's session ended on 10-11, before the 30 days.
        [("11-10", 1200.0, 1200.0), ("11-18", 2100.0, 2100.0), ("11-19", 300.0, 300.0)],
    ),
}

# The daily panels: every day of the range; the days with activity, by hand.
DAILY = {
    (SESSIONS, "Daily, weekly and monthly active users", "A"): (
        ["time", "DAU", "WAU", "MAU"],
        # carol (active 10-11) counts in MAU until 11-09; bob from 11-10, alice from 11-18.
        lambda day: {
            "11-10": (1, 1, 1),
            "11-18": (1, 1, 2),
            "11-19": (1, 2, 2),
            "11-20": (1, 2, 2),
        }.get(day, (0, 1 if "11-10" <= day <= "11-16" else 0, 1)),
    ),
    (SESSIONS, "Stickiness (DAU / MAU)", "A"): (
        ["time", "DAU / MAU"],
        lambda day: {"11-10": (1.0,), "11-18": (0.5,), "11-19": (0.5,), "11-20": (0.5,)}.get(
            day, (0.0,)
        ),
    ),
    (SESSIONS, "API calls and sessions per day", "A"): (
        ["time", "API calls", "sessions started"],
        lambda day: {"11-10": (40, 1), "11-18": (150, 1), "11-19": (10, 1), "11-20": (70, 1)}.get(
            day, (0, 0)
        ),
    ),
    (SESSIONS, "Logins and failed logins per day", "A"): (
        ["time", "logins", "failed logins"],
        lambda day: {"11-10": (1, 0), "11-18": (1, 0), "11-19": (1, 0), "11-20": (1, 24)}.get(
            day, (0, 0)
        ),
    ),
}


def sql_targets() -> dict[tuple, Target]:
    return {t.key: t for t in targets(load_dashboards(), POSTGRES_UID)}


def test_every_sql_query_has_its_expected_result_here():
    assert set(sql_targets()) == set(EXPECTED) | set(DAILY)


def run(grafana_sql, key, **overrides):
    sql = expand_sql(sql_targets()[key], NOW, overrides)
    assert "$" not in sql, f"unexpanded variable or macro left in:\n{sql}"
    columns, rows = grafana_sql.run(sql)
    return columns, [tuple(text(value) for value in row) for row in rows]


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: key[1])
def test_sql_panel_as_grafana_runs_it(grafana_sql, key):
    assert run(grafana_sql, key) == EXPECTED[key]


@pytest.mark.parametrize("key", sorted(DAILY), ids=lambda key: key[1])
def test_daily_panel_as_grafana_runs_it(grafana_sql, key):
    columns, values = DAILY[key]
    assert run(grafana_sql, key) == (columns, [(day, *values(day)) for day in DAYS_30])


@pytest.mark.parametrize(
    ("window", "top", "expected"),
    [
        ("24h", "10", [("alice", 70), ("bob", 10)]),
        ("7d", "10", [("alice", 220), ("bob", 10)]),
        ("30d", "10", [("alice", 220), ("bob", 50)]),
        ("30d", "1", [("alice", 220)]),
    ],
)
def test_the_power_user_variables(grafana_sql, window, top, expected):
    key = (SESSIONS, "Top power users ($window)", "A")
    _, rows = run(grafana_sql, key, window=window, top=top)
    assert [row[:2] for row in rows] == expected


def test_a_quote_in_a_variable_stays_inside_its_string(grafana_sql):
    key = (SESSIONS, "Top power users ($window)", "A")
    _, rows = run(grafana_sql, key, window="24h' OR 'x' = 'x")
    assert rows == []


# --- the expansion itself, as Grafana does it ---------------------------------------------------


def test_time_filter_and_time_from_to_as_grafana_expands_them():
    start, end = NOW - timedelta(days=30), NOW
    assert expand_sql_macros("WHERE $__timeFilter(day)", start, end) == (
        "WHERE day BETWEEN '2026-10-21T14:30:00Z' AND '2026-11-20T14:30:00Z'"
    )
    assert expand_sql_macros("$__timeFrom() $__timeTo()", start, end + timedelta(seconds=0.25)) == (
        "'2026-10-21T14:30:00Z' '2026-11-20T14:30:00.25Z'"
    )
    assert expand_sql_macros("SELECT $__timeGroupAlias(hour, '1h')", start, end) == (
        'SELECT floor(extract(epoch from hour)/3600)*3600 AS "time"'
    )
    with pytest.raises(ValueError, match="unknown macro"):
        expand_sql_macros("$__nonsense(x)", start, end)


def test_panel_time_overrides_apply():
    by_title = {t.panel["title"]: t for t in sql_targets().values()}
    hourly = expand_sql(by_title["Failed logins per hour (audit trail)"], NOW)
    assert "hour BETWEEN '2026-11-13T14:30:00Z' AND '2026-11-20T14:30:00Z'" in hourly
