"""The admin's session ends after 30 minutes idle or 12 hours signed in (ASVS 3.3.2, level 2).

Replayed as a stolen or forgotten admin cookie would be used: signed in through the admin's own
login form, then the clock moves (core.clock, which the middleware reads) and the same
cookie asks for the admin again through the real session store (PostgreSQL).
"""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.admin_session import SEEN_AT, SIGNED_IN_AT

pytestmark = pytest.mark.django_db

MINUTE = 60
HOUR = 3600


def sign_in(client, user, password) -> str:
    response = client.post(
        reverse("admin:login"), {"username": user.username, "password": password, "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert signed_in(client)
    return client.session.session_key


def signed_in(client) -> bool:
    response = client.get(reverse("admin:index"))
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    return False


def test_the_session_ends_after_30_minutes_idle(client, staff_user, password, frozen_clock):
    key = sign_in(client, staff_user, password)
    for _ in range(4):  # two hours of work, a page every 29 minutes
        frozen_clock.advance(29 * MINUTE)
        assert signed_in(client)
    frozen_clock.advance(30 * MINUTE)
    assert not signed_in(client)
    assert not Session.objects.filter(session_key=key).exists()  # ended, not just refused
    assert not signed_in(client)  # and the old cookie stays dead
    sign_in(client, staff_user, password)


def test_the_session_ends_12_hours_after_signing_in_however_busy(
    client, staff_user, password, frozen_clock
):
    sign_in(client, staff_user, password)
    for _ in range(12 * 3 - 1):  # a page every 20 minutes for 11 h 40 min
        frozen_clock.advance(20 * MINUTE)
        assert signed_in(client)
    frozen_clock.advance(20 * MINUTE)
    assert not signed_in(client)


def test_activity_is_written_at_most_once_a_minute(client, staff_user, password, frozen_clock):
    sign_in(client, staff_user, password)

    def session_writes(requests: int, step: float) -> int:
        with CaptureQueriesContext(connection) as queries:
            for _ in range(requests):
                frozen_clock.advance(step)
                assert signed_in(client)
        return sum('UPDATE "django_session"' in q["sql"] for q in queries.captured_queries)

    assert session_writes(11, 5) == 0  # 55 s of pages: the session row is left alone
    assert session_writes(1, 5) == 1  # a minute on: "last seen" moves once
    assert session_writes(20, 1) == 0


def test_the_clocks_start_at_the_login(client, staff_user, password, frozen_clock):
    with CaptureQueriesContext(connection) as queries:
        key = sign_in(client, staff_user, password)
    # Stamped with the login's own session write: the first page writes nothing more.
    assert sum('"django_session"' in q["sql"] and "UPDATE" in q["sql"] for q in queries) == 1
    stored = SessionStore(session_key=key).load()
    assert stored[SIGNED_IN_AT] == stored[SEEN_AT] == frozen_clock.now


def test_a_session_older_than_the_bounds_gets_them_now(client, staff_user, password, frozen_clock):
    """A session signed in before the bounds were deployed carries no stamps."""
    key = sign_in(client, staff_user, password)
    store = SessionStore(session_key=key)
    store.load()
    del store[SIGNED_IN_AT], store[SEEN_AT]
    store.save()
    frozen_clock.advance(10 * HOUR)
    assert signed_in(client)  # its bounds start now ...
    frozen_clock.advance(30 * MINUTE)
    assert not signed_in(client)  # ... and hold


def test_the_bounds_follow_the_settings(client, staff_user, password, frozen_clock, settings):
    settings.SESSIONHUB = {
        **settings.SESSIONHUB,
        "ADMIN_SESSION_IDLE_TIMEOUT": 2 * MINUTE,
        "ADMIN_SESSION_ABSOLUTE_TIMEOUT": 10 * MINUTE,
    }
    sign_in(client, staff_user, password)
    frozen_clock.advance(2 * MINUTE)
    assert not signed_in(client)
    sign_in(client, staff_user, password)
    for _ in range(4):
        frozen_clock.advance(2 * MINUTE - 1)
        assert signed_in(client)
    frozen_clock.advance(2 * MINUTE)  # 10 min signed in, though never idle for 2
    assert not signed_in(client)


def test_the_cookie_lives_no_longer_than_the_absolute_bound(client, staff_user, password):
    response = client.post(
        reverse("admin:login"), {"username": staff_user.username, "password": password}
    )
    cookie = response.cookies["sessionid"]
    assert int(cookie["max-age"]) == 12 * HOUR  # not Django's two weeks
    assert cookie["httponly"]


def test_requests_without_a_session_cookie_never_load_one(client):
    response = client.get("/healthz")
    assert "Cookie" not in response.get("Vary", "")


@pytest.mark.parametrize(("idle", "absolute"), [(0, 3600), (7200, 3600)])
def test_inconsistent_bounds_are_refused(settings, idle, absolute):
    from core.conf import get_settings

    settings.SESSIONHUB = {
        **settings.SESSIONHUB,
        "ADMIN_SESSION_IDLE_TIMEOUT": idle,
        "ADMIN_SESSION_ABSOLUTE_TIMEOUT": absolute,
    }
    with pytest.raises(ImproperlyConfigured, match="ADMIN_SESSION_IDLE_TIMEOUT"):
        get_settings()
