"""Refresh rotation is atomic, and a rotated refresh token coming back ends its session
(ASVS 3.5.3; what Auth0 calls refresh token reuse detection)."""

import json
import threading
import time

import pytest
import requests
from rest_framework.test import APIClient

from accounts import livesessions
from accounts.events import EndReason, EventType
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, live_session, sid_of

REFRESH = "/api/auth/token/refresh/"


def stream_events() -> list[dict]:
    return [json.loads(fields[b"d"]) for _, fields in get_redis().xrange(keys.events())]


def refresh(client: APIClient, token: str):
    return client.post(REFRESH, {"refresh": token}, format="json")


@pytest.mark.django_db
def test_a_reused_refresh_token_ends_the_session_and_the_pair_it_was_rotated_into(
    api_client, tokens, user
):
    sid = sid_of(tokens["access"])
    rotated = refresh(api_client, tokens["refresh"])
    assert rotated.status_code == 200
    new = rotated.json()
    assert api_client.get("/api/me/", **bearer(new["access"])).status_code == 200

    # The thief (or the client: they cannot be told apart) presents the old token again.
    replay = refresh(api_client, tokens["refresh"])
    assert replay.status_code == 401
    session = live_session(sid)
    assert session.end_reason == EndReason.REFRESH_REUSE
    assert api_client.get("/api/me/", **bearer(new["access"])).status_code == 401
    assert refresh(api_client, new["refresh"]).status_code == 401
    assert refresh(api_client, tokens["refresh"]).status_code == 401

    reused = [e for e in stream_events() if e["type"] == EventType.REFRESH_TOKEN_REUSED]
    assert [(e["uid"], e["sid"], e["reason"]) for e in reused] == [
        (user.pk, sid, EndReason.REFRESH_REUSE)
    ]
    [ended] = [e for e in stream_events() if e["type"] == EventType.SESSION_REVOKED]
    assert ended["reason"] == EndReason.REFRESH_REUSE
    assert int(get_redis().hget(keys.stats(), "sessions_ended:refresh_reuse")) == 1


@pytest.mark.django_db
def test_a_logged_out_token_coming_back_is_refused_without_a_theft_alarm(api_client, tokens):
    api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    assert refresh(api_client, tokens["refresh"]).status_code == 401
    assert live_session(sid_of(tokens["access"])).end_reason == EndReason.LOGOUT
    assert EventType.REFRESH_TOKEN_REUSED not in {e["type"] for e in stream_events()}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_refreshes_have_exactly_one_winner(
    gunicorn_server, django_user_model, password
):
    """20 threads present one refresh token at the same instant to gunicorn (4 processes of 5
    threads each, so every request is in flight at once)."""
    gunicorn_server.workers = 4
    gunicorn_server.start(extra_env={"GUNICORN_CMD_ARGS": "--threads 5"})
    user = django_user_model.objects.create_user(username="racer", password=password)
    url = gunicorn_server.url
    tokens = requests.post(
        f"{url}/api/auth/token/", json={"username": user.username, "password": password}, timeout=10
    ).json()
    sid = sid_of(tokens["access"])

    barrier = threading.Barrier(20)
    answers: list[requests.Response] = []

    def post_refresh(token: str, http=requests) -> requests.Response:
        return http.post(f"{url}{REFRESH}", json={"refresh": token}, timeout=30)

    def racer() -> None:
        with requests.Session() as http:
            http.get(f"{url}/healthz", timeout=10)  # connected before the start line
            barrier.wait()
            answers.append(post_refresh(tokens["refresh"], http))

    threads = [threading.Thread(target=racer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(answer.status_code for answer in answers)
    unexpected = [a.text for a in answers if a.status_code not in (200, 401)]
    assert statuses == [200] + [401] * 19, unexpected
    [winner] = [answer.json() for answer in answers if answer.status_code == 200]

    # The old token again: refused, and the session is over — the winner's pair with it.
    assert post_refresh(tokens["refresh"]).status_code == 401
    assert livesessions.get(sid).end_reason == EndReason.REFRESH_REUSE

    def access_refused() -> bool:  # every worker hears of the end by pub/sub
        auth = {"Authorization": f"Bearer {winner['access']}"}
        return all(
            requests.get(f"{url}/api/me/", headers=auth, timeout=10).status_code == 401
            for _ in range(8)
        )

    deadline = time.monotonic() + 5
    while not access_refused():
        assert time.monotonic() < deadline, "the winner's access token still works"
        time.sleep(0.1)
    assert post_refresh(winner["refresh"]).status_code == 401
