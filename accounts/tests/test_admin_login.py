"""The admin's login form counts failures and locks exactly like the API's token endpoint."""

import json
import logging
import re

import pytest
from django.test import Client

from accounts import throttling
from core import clock
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import login

pytestmark = pytest.mark.django_db

LOGIN_URL = "/admin/login/"


@pytest.fixture
def admin_user(django_user_model, password):
    return django_user_model.objects.create_superuser(username="admin", password=password)


@pytest.fixture
def limits(settings):
    return settings.SESSIONHUB


def admin_login(client: Client, username: str, password: str, **extra):
    return client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def stream_events(event_type: str) -> list[dict]:
    found = [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]
    return [event for event in found if event["type"] == event_type]


def test_thirty_wrong_admin_passwords_lock_the_pair(
    client, admin_user, password, limits, frozen_clock
):
    """The replayed attack: 30 wrong passwords for `admin` from one IP, then the right one."""
    statuses = [admin_login(client, "admin", f"guess{n}").status_code for n in range(30)]
    limit = limits["LOGIN_FAILURE_LIMIT"]
    assert statuses == [200] * limit + [429] * (30 - limit)
    response = admin_login(client, "admin", password)
    assert response.status_code == 429
    assert int(response["Retry-After"]) == limits["LOGIN_LOCKOUT_BASE_SECONDS"]
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
    # The same events as the API's failures and locks.
    assert [e["reason"] for e in stream_events("login_failed")] == ["bad_password"] * limit + [
        "throttled"
    ]
    assert [e["reason"] for e in stream_events("locked_out")] == ["user_ip"]


def test_the_admin_and_the_api_share_one_set_of_counters(
    client, api_client, admin_user, password, limits
):
    for n in range(limits["LOGIN_FAILURE_LIMIT"] - 1):
        assert login(api_client, "admin", f"guess{n}").status_code == 401
    assert admin_login(client, "admin", "one more").status_code == 200  # the 5th failure
    assert login(api_client, "admin", password).status_code == 429
    response = admin_login(client, "admin", password)
    assert response.status_code == 429 and response["Retry-After"]
    [lock] = throttling.lockouts_current(now=clock.now())
    assert (lock.scope, lock.username, lock.ip) == ("user_ip", "admin", "127.0.0.1")


def test_the_lock_out_page_is_the_same_for_unknown_usernames(
    client, admin_user, limits, frozen_clock
):
    for username in ("admin", "nobody"):
        for _ in range(limits["LOGIN_FAILURE_LIMIT"]):
            admin_login(client, username, "wrong")
    real, unknown = admin_login(client, "admin", "x"), admin_login(client, "nobody", "x")
    assert real.status_code == unknown.status_code == 429
    assert real["Retry-After"] == unknown["Retry-After"]
    assert page(real, "admin") == page(unknown, "nobody")


def page(response, username: str) -> str:
    """The page without what differs by design: the username typed and the CSRF token."""
    text = response.content.decode().replace(f'value="{username}"', 'value=""')
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)


def test_success_after_the_lock_logs_in_and_records_the_login(
    client, admin_user, password, limits, frozen_clock
):
    for _ in range(limits["LOGIN_FAILURE_LIMIT"]):
        admin_login(client, "admin", "wrong")
    frozen_clock.advance(limits["LOGIN_LOCKOUT_BASE_SECONDS"] + 1)
    response = admin_login(client, "admin", password, HTTP_USER_AGENT="browser/1")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    [event] = stream_events("login")
    assert (event["uid"], event["reason"], event["sid"], event["ua"]) == (
        admin_user.pk,
        "admin",
        "",
        "browser/1",
    )
    # A success resets the pair: five more failures are needed for the next lock.
    client.logout()
    assert [
        admin_login(client, "admin", "wrong").status_code
        for _ in range(limits["LOGIN_FAILURE_LIMIT"] - 1)
    ] == [200] * (limits["LOGIN_FAILURE_LIMIT"] - 1)


def test_a_non_staff_user_is_refused_like_a_wrong_password(client, user, password):
    response = admin_login(client, user.username, password)
    assert response.status_code == 200
    assert b"correct username and password for a staff account" in response.content
    assert "_auth_user_id" not in client.session
    assert stream_events("login") == []


def test_admin_refusals_log_once_per_lock_period(client, admin_user, limits, caplog):
    for _ in range(limits["LOGIN_FAILURE_LIMIT"]):
        admin_login(client, "admin", "wrong")
    with caplog.at_level(logging.INFO):
        assert {admin_login(client, "admin", "wrong").status_code for _ in range(50)} == {429}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["accounts.throttling"]
    assert len([e for e in stream_events("login_failed") if e["reason"] == "throttled"]) == 1
