"""A stolen token shows itself: one session used from two distant clients at once."""

import json
import time

import pytest
import requests
from rest_framework.test import APIClient

from accounts import livesessions
from accounts.events import EndReason
from accounts.tracking import tracker
from audit import services as audit_services
from audit.models import AuditEvent
from core import clock
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, live_session, login, sid_of

pytestmark = pytest.mark.django_db

VICTIM = {"REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "Mozilla/5.0 (X11) Firefox/128.0"}
THIEF = {"REMOTE_ADDR": "203.0.113.77", "HTTP_USER_AGENT": "python-requests/2.32"}


def call(access: str, client: dict) -> int:
    return APIClient().get("/api/sessions/", **bearer(access), **client).status_code


def anomalies() -> list[dict]:
    events = [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]
    return [event for event in events if event["type"] == "session_anomaly"]


def anomaly_count() -> int:
    return int(get_redis().hget(keys.stats(), "session_anomalies") or 0)


@pytest.fixture
def victim(api_client, user, password):
    tokens = login(api_client, user.username, password, **VICTIM).json()
    assert call(tokens["access"], VICTIM) == 200
    assert tracker.flush()
    return tokens


def test_a_token_replayed_from_another_network_and_browser_is_recorded(victim, user):
    assert call(victim["access"], THIEF) == 200  # recorded, not refused (the default action)
    assert call(victim["access"], VICTIM) == 200
    assert tracker.flush()
    [event] = anomalies()
    sid = sid_of(victim["access"])
    assert event["sid"] == sid and event["uid"] == user.pk
    assert (event["ip"], event["ua"]) == (THIEF["REMOTE_ADDR"], THIEF["HTTP_USER_AGENT"])
    assert event["reason"] == "198.51.100.0/24"  # where the session was in use until then
    assert anomaly_count() == 1
    assert not live_session(sid).is_ended

    # The new event type reaches PostgreSQL through the audit sync like any other.
    audit_services.sync_run()
    stored = AuditEvent.objects.get(event_type="session_anomaly")
    assert (stored.user_id, stored.session_id) == (user.pk, sid)
    assert (str(stored.ip), stored.user_agent) == (THIEF["REMOTE_ADDR"], THIEF["HTTP_USER_AGENT"])
    assert stored.reason == "198.51.100.0/24"
    assert stored.get_event_type_display() == "Session anomaly"


def test_both_clients_within_one_flush_of_one_process(api_client, user, password):
    tokens = login(api_client, user.username, password, **VICTIM).json()
    assert call(tokens["access"], VICTIM) == 200
    assert call(tokens["access"], THIEF) == 200
    assert tracker.flush()
    assert len(anomalies()) == 1


@pytest.mark.parametrize(
    ("what", "second"),
    [
        ("same /24, another browser", {**THIEF, "REMOTE_ADDR": "198.51.100.200"}),
        ("another network, the same browser", {**VICTIM, "REMOTE_ADDR": "203.0.113.77"}),
        ("the same client", VICTIM),
    ],
)
def test_a_client_that_moves_or_updates_its_browser_is_no_anomaly(victim, what, second):
    assert call(victim["access"], second) == 200
    assert tracker.flush()
    assert anomalies() == [] and anomaly_count() == 0, what


def test_ipv6_networks_compare_by_slash_64(api_client, user, password):
    home = {"REMOTE_ADDR": "2001:db8:1:2::10", "HTTP_USER_AGENT": "Firefox/128.0"}
    tokens = login(api_client, user.username, password, **home).json()
    assert call(tokens["access"], home) == 200
    assert call(tokens["access"], {**home, "REMOTE_ADDR": "2001:db8:1:2:ffff::1"}) == 200
    assert call(tokens["access"], {**home, "HTTP_USER_AGENT": "Chrome/126"}) == 200
    assert tracker.flush()
    assert anomalies() == []
    assert (
        call(tokens["access"], {"REMOTE_ADDR": "2001:db8:1:3::10", "HTTP_USER_AGENT": "x"}) == 200
    )
    assert tracker.flush()
    [event] = anomalies()
    assert event["reason"] == "2001:db8:1:2::/64"


def test_uses_further_apart_than_the_window_are_no_anomaly(victim, frozen_clock, settings):
    frozen_clock.advance(settings.SESSIONHUB["ANOMALY_WINDOW"] + 1)
    assert call(victim["access"], THIEF) == 200
    assert tracker.flush()
    assert anomalies() == []


def test_one_event_per_window_however_often_the_clients_alternate(victim, frozen_clock, settings):
    for _ in range(5):
        assert call(victim["access"], THIEF) == 200
        assert tracker.flush()
        assert call(victim["access"], VICTIM) == 200
        assert tracker.flush()
        frozen_clock.advance(1)
    assert len(anomalies()) == 1
    frozen_clock.advance(settings.SESSIONHUB["ANOMALY_WINDOW"])
    assert call(victim["access"], VICTIM) == 200  # within the window of the last switch
    assert call(victim["access"], THIEF) == 200
    assert tracker.flush()
    assert len(anomalies()) == 2 and anomaly_count() == 2


def test_the_end_action_ends_the_session_for_both_clients(victim, settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "ANOMALY_ACTION": "end"}
    assert call(victim["access"], THIEF) == 200
    assert tracker.flush()  # notices the anomaly, then ends the session
    assert call(victim["access"], THIEF) == 401
    assert call(victim["access"], VICTIM) == 401
    session = live_session(sid_of(victim["access"]))
    assert session.end_reason == EndReason.ANOMALY
    refreshed = APIClient().post(
        "/api/auth/token/refresh/", {"refresh": victim["refresh"]}, format="json", **VICTIM
    )
    assert refreshed.status_code == 401
    audit_services.sync_run()
    assert list(
        AuditEvent.objects.filter(session_id=session.sid)
        .exclude(event_type="login")
        .order_by("occurred_at")
        .values_list("event_type", "reason")
    ) == [("session_anomaly", "198.51.100.0/24"), ("session_revoked", "anomaly")]


def test_a_call_counted_after_the_end_raises_no_anomaly(victim, user):
    """A call served just before the end elsewhere is flushed after it: counted, not flagged."""
    sid = sid_of(victim["access"])
    session = livesessions.get(sid)
    livesessions.end(sid=sid, reason=EndReason.REVOKED, ended_at=clock.now())
    tracker._record(sid, user.pk, session.started_at, THIEF["REMOTE_ADDR"], "curl/8", clock.now())
    assert tracker.flush()
    assert anomalies() == []
    assert livesessions.get(sid).api_call_count == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stolen_token_replayed_through_the_proxy_is_ended_in_every_worker(
    gunicorn_server, user, password
):
    """Behind one trusted proxy (it appends the address it saw to X-Forwarded-For), a thief
    replays the victim's token from elsewhere with another client — and claims the victim's
    address in a hop of its own. With SESSION_ANOMALY_ACTION=end the session is ended and
    every worker refuses it, the victim included (who logs in again)."""
    gunicorn_server.workers = 3
    gunicorn_server.start(extra_env={"TRUSTED_PROXIES": "1", "SESSION_ANOMALY_ACTION": "end"})
    url = gunicorn_server.url
    victim = {"X-Forwarded-For": "198.51.100.23", "User-Agent": "Mozilla/5.0 Firefox/128.0"}
    thief = {"X-Forwarded-For": "198.51.100.23, 203.0.113.77", "User-Agent": "curl/8.5.0"}

    def call(access: str, headers: dict) -> int:
        return requests.get(
            f"{url}/api/sessions/",
            headers={"Authorization": f"Bearer {access}", **headers},
            timeout=30,
        ).status_code

    tokens = requests.post(
        f"{url}/api/auth/token/",
        json={"username": user.username, "password": password},
        headers=victim,
        timeout=30,
    ).json()
    for _ in range(6):
        assert call(tokens["access"], victim) == 200
    time.sleep(0.3)  # the workers have flushed: the session's fingerprint is the victim's
    assert call(tokens["access"], thief) == 200  # noticed by the next flush, ended then
    deadline = time.monotonic() + 3
    while call(tokens["access"], thief) == 200:
        assert time.monotonic() < deadline, "the session was not ended"
        time.sleep(0.05)
    assert [call(tokens["access"], who) for who in (thief, victim) * 6] == [401] * 12
    sid = sid_of(tokens["access"])
    assert livesessions.get(sid).end_reason == EndReason.ANOMALY
    [event] = anomalies()
    assert (event["sid"], event["ip"], event["reason"]) == (sid, "203.0.113.77", "198.51.100.0/24")
    assert anomaly_count() == 1


def test_an_unknown_action_is_refused_at_start(settings):
    from django.core.exceptions import ImproperlyConfigured

    from core.conf import get_settings

    settings.SESSIONHUB = {**settings.SESSIONHUB, "ANOMALY_ACTION": "block"}
    with pytest.raises(ImproperlyConfigured, match="SESSION_ANOMALY_ACTION"):
        get_settings()
