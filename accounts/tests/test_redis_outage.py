"""Redis unreachable is a designed state: the API keeps answering, health says so, no 500."""

import pytest
from rest_framework.test import APIClient

from accounts import livesessions
from accounts.tracking import tracker
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, login, sid_of

pytestmark = pytest.mark.django_db


def test_redis_stopped_mid_test(private_redis, api_client, user, password, staff_user):
    # A Redis that keeps its data across the restart (AOF, fsync always): nothing may be lost.
    private_redis.kill()
    private_redis.start("--appendonly", "yes", "--appendfsync", "always")
    tokens = login(api_client, user.username, password).json()
    assert api_client.get("/api/me/", **bearer(tokens["access"])).status_code == 200
    assert tracker.flush()

    private_redis.kill()
    client = APIClient()
    for _ in range(5):
        assert client.get("/api/me/", **bearer(tokens["access"])).status_code == 200
    assert client.get("/api/sessions/", **bearer(tokens["access"])).status_code in (200, 503)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["failing"] == ["redis"]
    # Logging in keeps working too, and so does a wrong password (401, not 500).
    during = login(client, staff_user.username, password)
    assert during.status_code == 200
    assert login(client, user.username, "wrong").status_code == 401
    assert not tracker.flush()  # counts wait in memory

    private_redis.start("--appendonly", "yes", "--appendfsync", "always")
    tracker._redis_retry_at = 0
    assert tracker.flush()
    # The calls made during the outage arrive, and the session opened during it exists now.
    # 1 before the outage + 5 /me + 1 /sessions (authenticated, then 503 for want of Redis).
    assert livesessions.get(sid_of(tokens["access"])).api_call_count == 7
    opened = livesessions.get(sid_of(during.json()["access"]))
    assert opened is not None and opened.user_id == staff_user.pk
    types = [entry[b"d"] for _, entry in get_redis().xrange(keys.events())]
    assert any(b'"login_failed"' in entry for entry in types)
    assert int(get_redis().hget(keys.stats(), "tracking_errors")) >= 1


@pytest.mark.django_db(transaction=True)
def test_database_down_is_a_503_not_a_500(api_client, user, password, unused_tcp_port):
    from django.db import connection

    tokens = login(api_client, user.username, password).json()
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = unused_tcp_port
    try:
        # Tracked calls need no SQL and keep working; what needs the database says so.
        assert api_client.get("/api/sessions/", **bearer(tokens["access"])).status_code == 200
        response = login(api_client, user.username, password)
        assert response.status_code == 503
        assert response.json() == {"detail": "The database is unavailable; try again shortly."}
        assert api_client.get("/api/me/", **bearer(tokens["access"])).status_code == 503
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved


def test_a_process_starting_while_redis_is_down_serves_on_the_jwt_without_waiting(
    private_redis, api_client, user, password
):
    """The ended sessions cannot be loaded: the worker starts anyway, at once, and serves the
    signature-verified JWT (the designed Redis-down state), with no Redis wait per request."""
    import time

    from accounts.tracking import Tracker

    tokens = login(api_client, user.username, password).json()
    private_redis.kill()
    starting = Tracker()
    try:
        began = time.monotonic()
        assert starting.start(timeout=5) is False
        assert time.monotonic() - began < 2
        claims = {
            "sid": sid_of(tokens["access"]),
            "user_id": user.pk,
            "started_at": time.time(),
            "ip": "",
            "user_agent": "",
        }
        began = time.monotonic()
        for _ in range(50):
            assert starting.authorize(**claims).value == "ok"
        assert time.monotonic() - began < 0.5
    finally:
        starting.shutdown(timeout=0.2)
