"""Fault: Redis loses its data (FLUSHDB of its database) under load.

PostgreSQL still holds the sessions as open; Redis knows none of them. The sessions whose
clients carry on are rebuilt in Redis by the web processes (a new generation) and must stay
open — never closed as lost. The ones nobody uses again must be closed by the sync as `lost`
once past their idle timeout (plus the grace of audit.lost), within a sync cycle; then the
overview (analytics_sessions_by_status), the session history (audit_session) and the live
sessions (Redis' index) name the same sessions.
"""

import time

import psycopg
import pytest
import requests

from accounts.tests.helpers import sid_of

from .helpers import PASSWORD, Load, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

IDLE_TIMEOUT = 12
SYNC_INTERVAL = 1
GRACE = 2 * SYNC_INTERVAL + 5  # audit.lost.grace() with this sync interval
SETTINGS = {
    "SYNC_INTERVAL": SYNC_INTERVAL,
    "SESSION_IDLE_TIMEOUT": IDLE_TIMEOUT,
    "SESSION_EXPIRE_INTERVAL": 30,
}


def _sessions(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT sid, ended_at, end_reason FROM audit_session").fetchall()
    return {sid: (ended_at, reason) for sid, ended_at, reason in rows}


def _overview_open(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT sum(sessions) FROM analytics_sessions_by_status").fetchone()[0]


def _lost_events(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT session_id FROM audit_event WHERE reason = 'lost'"
            " AND event_type = 'session_expired'"
        ).fetchall()
    return sorted(row[0] for row in rows)


def test_sessions_redis_lost_are_closed_as_lost_and_the_live_ones_stay_open(
    stack, django_user_model, capsys
):
    for n in range(3):
        django_user_model.objects.create_user(username=f"lost{n}", password=PASSWORD)
    stack.start_web(**SETTINGS)
    stack.start_worker("worker", **SETTINGS)
    stack.start_beat("beat", **SETTINGS)
    tokens = stack.login_many([f"lost{n % 3}" for n in range(6)])
    abandoned, kept = tokens[:3], tokens[3:]
    for token in abandoned:  # a few calls, then never again
        for _ in range(3):
            response = requests.get(
                f"{stack.web_url}/api/me/", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert response.status_code == 200
    all_sids = {sid_of(token) for token in tokens}
    abandoned_sids = {sid_of(token) for token in abandoned}
    kept_sids = {sid_of(token) for token in kept}

    load = Load(stack.web_url, "/api/me/", kept, pause=0.05).start()
    try:
        wait_until(
            lambda: (
                {sid for sid, (ended, _) in _sessions(stack.database_url).items() if not ended}
                == all_sids
            ),
            30,
            0.2,
            "the six sessions open in PostgreSQL",
        )
        stack.redis.flushdb()  # Redis loses everything, mid-workload
        flushed = time.monotonic()
        wait_until(
            lambda: (
                {sid for sid, (_, why) in _sessions(stack.database_url).items() if why == "lost"}
                == abandoned_sids
            ),
            IDLE_TIMEOUT + GRACE + 20,
            0.2,
            "the abandoned sessions closed as lost",
        )
        closed_after = time.monotonic() - flushed
        time.sleep(3)  # the load goes on: nothing else is closed
    finally:
        load.stop()
    assert load.errors == [] and load.server_errors() == 0, load.summary()

    sessions = _sessions(stack.database_url)
    open_in_postgres = {sid for sid, (ended, _) in sessions.items() if ended is None}
    live_in_redis = {sid.decode() for sid in stack.redis.zrange("shtest:idx:started", 0, -1)}
    assert open_in_postgres == kept_sids == live_in_redis
    assert {sid for sid, (_, why) in sessions.items() if why == "lost"} == abandoned_sids
    assert _overview_open(stack.database_url) == len(kept_sids)
    assert _lost_events(stack.database_url) == sorted(abandoned_sids)
    assert stack.stat("sessions_ended:lost") == len(abandoned_sids)
    with capsys.disabled():
        print(
            f"\n[redis FLUSHDB under load] {load.ok} calls; 3 abandoned sessions closed as lost "
            f"{closed_after:.1f} s after the flush (idle timeout {IDLE_TIMEOUT} s + grace "
            f"{GRACE} s after their last call); 3 in use stayed open"
        )
