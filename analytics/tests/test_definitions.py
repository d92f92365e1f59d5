"""The SQL says what the Python definitions say: session statuses and duration buckets.

Both are defined once, in accounts.livesessions (`SessionStatus`, `session_status`,
`DURATION_BUCKETS`); the views created by the migrations must agree with them, here checked
against the database as migrated.
"""

import re

import pytest
from django.db import connection

from accounts.livesessions import DURATION_BUCKETS, SessionStatus, session_status
from analytics.services import thresholds_sync
from core.conf import get_settings

pytestmark = pytest.mark.django_db


def _one(sql: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()


def test_sql_session_status_is_the_python_one():
    thresholds_sync()
    conf = get_settings()
    ages = [0, 1]
    for window in (conf.ACTIVE_WINDOW, conf.RECENT_WINDOW):
        ages += [window - 1, window, window + 1]
    for age in ages:
        status, now = _one(
            "SELECT analytics_session_status(analytics_now() - make_interval(secs => %s)), "
            "extract(epoch FROM analytics_now())::float8",
            [age],
        )
        assert status == session_status(now - age, now), age


def test_sessions_by_status_lists_every_status_in_order():
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM analytics_sessions_by_status")
        assert [row[0] for row in cursor.fetchall()] == [s.value for s in SessionStatus]


def test_sql_duration_buckets_are_the_python_ones():
    with connection.cursor() as cursor:
        cursor.execute("SELECT upper_seconds FROM analytics_session_durations ORDER BY ord")
        assert [row[0] for row in cursor.fetchall()] == [*DURATION_BUCKETS, None]
    # The rollup puts each session in its bucket with a CASE (PostgreSQL prints it in the
    # select list and again in GROUP BY): the same bounds, in order, every time.
    (definition,) = _one("SELECT pg_get_viewdef('analytics_session_duration_day'::regclass)")
    bounds = [int(b) for b in re.findall(r"duration <= \(?(\d+)", definition)]
    n = len(DURATION_BUCKETS)
    assert bounds
    assert [bounds[i : i + n] for i in range(0, len(bounds), n)] == [list(DURATION_BUCKETS)] * (
        len(bounds) // n
    )
    assert len(bounds) % n == 0
