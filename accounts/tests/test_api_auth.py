"""The JWT endpoints: one session per login, rotation within it, logout that really ends it."""

import json

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import livesessions
from accounts.events import EndReason
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, live_session, login, sid_of

pytestmark = pytest.mark.django_db

GENERIC = {"detail": "No active account found with the given credentials"}


def stream_events() -> list[dict]:
    return [json.loads(fields[b"d"]) for _, fields in get_redis().xrange(keys.events())]


def test_login_opens_one_live_session(api_client, user, password):
    response = login(
        api_client, user.username, password, HTTP_USER_AGENT="probe/1.0", REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access, refresh = AccessToken(body["access"]), RefreshToken(body["refresh"])
    assert access["sid"] == refresh["sid"]
    assert access["user_id"] == refresh["user_id"] == user.pk
    session = livesessions.get(access["sid"])
    assert session.user_id == user.pk
    assert session.ip == "198.51.100.7"
    assert session.user_agent == "probe/1.0"
    assert session.api_call_count == 0
    assert not session.is_ended
    [event] = stream_events()
    assert event["type"] == "login"
    assert event["sid"] == access["sid"]
    assert password not in json.dumps(event)


def test_me_returns_user_and_current_session(api_client, tokens, user):
    response = api_client.get("/api/me/", **bearer(tokens["access"]))
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == user.username
    assert body["session"]["sid"] == sid_of(tokens["access"])
    assert body["session"]["current"] is True
    assert body["tracking"] == "ok"


def test_refresh_keeps_the_session_and_blacklists_the_old_token(api_client, tokens):
    sid = sid_of(tokens["access"])
    first = api_client.post(
        "/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert first.status_code == 200
    rotated = first.json()
    assert sid_of(rotated["access"]) == sid
    assert RefreshToken(rotated["refresh"])["sid"] == sid
    assert rotated["refresh"] != tokens["refresh"]
    assert api_client.get("/api/me/", **bearer(rotated["access"])).status_code == 200
    assert BlacklistedToken.objects.filter(
        token__jti=RefreshToken(tokens["refresh"], verify=False)["jti"]
    ).exists()
    assert len(livesessions.user_sids(AccessToken(rotated["access"])["user_id"])) == 1
    assert [event["type"] for event in stream_events()] == ["login", "token_refresh"]


def test_verify_accepts_live_and_refuses_ended(api_client, tokens):
    ok = api_client.post("/api/auth/token/verify/", {"token": tokens["access"]}, format="json")
    assert ok.status_code == 200
    api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    for token in (tokens["access"], tokens["refresh"]):
        response = api_client.post("/api/auth/token/verify/", {"token": token}, format="json")
        assert response.status_code == 401


def test_logout_ends_the_session_and_kills_the_access_token_at_once(api_client, tokens):
    assert api_client.get("/api/me/", **bearer(tokens["access"])).status_code == 200
    response = api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204
    assert api_client.get("/api/me/", **bearer(tokens["access"])).status_code == 401
    refresh = api_client.post(
        "/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refresh.status_code == 401
    session = live_session(sid_of(tokens["access"]))
    assert session.end_reason == EndReason.LOGOUT
    assert session.api_call_count == 1  # the call before logout counts, the refused one not
    assert stream_events()[-1]["type"] == "logout"


def test_logout_twice_is_refused(api_client, tokens):
    body = {"refresh": tokens["refresh"]}
    assert api_client.post("/api/auth/logout/", body, format="json").status_code == 204
    assert api_client.post("/api/auth/logout/", body, format="json").status_code == 401


@pytest.mark.parametrize("case", ["unknown", "wrong_password", "inactive"])
def test_bad_credentials_get_one_generic_answer(api_client, user, password, case):
    if case == "inactive":
        user.is_active = False
        user.save()
    username = "nobody" if case == "unknown" else user.username
    secret = "wrong" if case == "wrong_password" else password
    response = login(api_client, username, secret)
    assert response.status_code == 401
    assert response.json() == GENERIC
    [event] = stream_events()
    assert event["type"] == "login_failed"
    assert (
        event["reason"]
        == {"unknown": "unknown_user", "wrong_password": "bad_password", "inactive": "inactive"}[
            case
        ]
    )
    assert event["username"] == username
    assert secret not in json.dumps(event)


def test_malformed_json_body_is_400(api_client):
    response = api_client.post(
        "/api/auth/token/", data=b'{"username": "a", "pass', content_type="application/json"
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "a"},
        {"username": ["a"], "password": "b"},
        {"username": "a\x00b", "password": "b"},
        {"username": "x" * 10_000, "password": "b"},
        {"username": "\ud800", "password": "b"},
    ],
)
def test_invalid_login_bodies_are_400(api_client, body):
    response = api_client.post(
        "/api/auth/token/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400


def test_login_does_not_read_the_database_on_tracked_requests(
    api_client, tokens, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = api_client.get("/api/sessions/", **bearer(tokens["access"]))
    assert response.status_code == 200
