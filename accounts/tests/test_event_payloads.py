"""Every event has the keys its payload function in accounts/events.py gives it, whoever
writes it: Python, or one of the Lua scripts that complete a Python-made template.

The scenario drives each script that writes events through the real code on real Redis —
session_start (a login; the session limit ending the oldest), session_end (a logout),
login_failure (failures, then the lock), login_gate (an attempt the lock refuses),
lockout_close (an admin lifting the lock) and track_flush (a session anomaly) — then reads the
stream back.
"""

import json
import time

import pytest
from rest_framework.test import APIClient

from accounts import events, services, throttling
from accounts.events import EndReason, EventType, FailureReason
from accounts.tracking import tracker
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, login

pytestmark = pytest.mark.django_db

VICTIM = {"REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "Mozilla/5.0 (X11) Firefox/128.0"}
THIEF = {"REMOTE_ADDR": "203.0.113.77", "HTTP_USER_AGENT": "python-requests/2.32"}
WHO = {"ip": "192.0.2.1", "user_agent": "ua"}


def keys_of(payload: str) -> set[str]:
    return set(json.loads(payload))


# The payload function of each event type, with arguments of no importance.
EXPECTED_KEYS = {
    EventType.LOGIN: keys_of(events.login_payload(user_id=1, username="u", sid="s", **WHO)),
    EventType.LOGIN_FAILED: keys_of(
        events.login_failed_payload(
            username="u", reason=FailureReason.BAD_PASSWORD, occurred_at=0.0, **WHO
        )
    ),
    EventType.TOKEN_REFRESH: keys_of(events.token_refresh_payload(user_id=1, sid="s", **WHO)),
    EventType.LOCKED_OUT: keys_of(events.locked_out_payload(username="u", occurred_at=0.0, **WHO)),
    EventType.LOCKOUT_LIFTED: keys_of(events.lockout_lifted_payload(username="u", ip="i")),
    EventType.SESSION_ANOMALY: keys_of(events.session_anomaly_template()),
    EventType.REFRESH_TOKEN_REUSED: keys_of(
        events.refresh_token_reused_payload(user_id=1, sid="s", **WHO)
    ),
    EventType.LOGOUT: keys_of(events.session_ended_payload(sid="s", reason=EndReason.LOGOUT)),
    EventType.SESSION_REVOKED: keys_of(
        events.session_ended_payload(sid="s", reason=EndReason.REVOKED)
    ),
    EventType.SESSION_EXPIRED: keys_of(
        events.session_ended_payload(sid="s", reason=EndReason.IDLE_TIMEOUT)
    ),
}


def test_every_event_type_has_a_payload_function():
    assert set(EXPECTED_KEYS) == set(EventType)


def test_events_written_by_the_lua_scripts_have_the_python_keys(
    api_client, user, password, staff_user, settings
):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SESSION_LIMIT_PER_USER": 1}
    conf = settings.SESSIONHUB

    # session_start + track_flush: a login, then its token used from another network.
    victim = login(api_client, user.username, password, **VICTIM).json()
    assert APIClient().get("/api/sessions/", **bearer(victim["access"]), **VICTIM).status_code
    assert tracker.flush()
    APIClient().get("/api/sessions/", **bearer(victim["access"]), **THIEF)
    assert tracker.flush()
    # session_start ends the first session (limit 1); session_end: a logout.
    second = login(api_client, user.username, password).json()
    api_client.post("/api/auth/logout/", {"refresh": second["refresh"]}, format="json")
    # login_failure: failures up to the lock; login_gate: an attempt it refuses.
    for _ in range(conf["LOGIN_FAILURE_LIMIT"]):
        login(api_client, user.username, "wrong")
    assert login(api_client, user.username, password).status_code == 429
    # lockout_close: an admin lifts the lock.
    [lock] = throttling.lockouts_current(now=time.time())
    assert services.lockout_lift(key=lock.key, actor_id=staff_user.pk)

    written = [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]
    seen = {event["type"] for event in written}
    assert seen >= {
        "login",
        "session_anomaly",
        "session_revoked",
        "logout",
        "login_failed",
        "locked_out",
        "lockout_lifted",
    }
    for event in written:
        assert set(event) == EXPECTED_KEYS[EventType(event["type"])], event
