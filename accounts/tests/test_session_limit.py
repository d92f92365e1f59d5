"""A user's live sessions are bounded (SESSION_LIMIT_PER_USER) and listed a page at a time."""

import json
import threading

import pytest
import requests
from rest_framework.test import APIClient

from accounts import livesessions
from accounts.events import EndReason, EventType
from core.conf import get_settings
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, live_session, login, sid_of


def call(access: str) -> int:
    return APIClient().get("/api/me/", **bearer(access)).status_code


def stream_events() -> list[dict]:
    return [json.loads(fields[b"d"]) for _, fields in get_redis().xrange(keys.events())]


def ended_events(reason: str) -> list[dict]:
    return [
        e
        for e in stream_events()
        if e["type"] == EventType.SESSION_REVOKED and e["reason"] == reason
    ]


@pytest.mark.django_db
def test_logins_beyond_the_limit_end_the_oldest_sessions(api_client, user, password):
    limit = get_settings().SESSION_LIMIT_PER_USER
    assert limit == 50  # the default
    pairs = [login(api_client, user.username, password).json() for _ in range(limit + 10)]
    sids = [sid_of(pair["access"]) for pair in pairs]
    assert sorted(livesessions.user_sids(user.pk)) == sorted(sids[10:])
    for pair in pairs[:10]:
        assert call(pair["access"]) == 401
        refused = api_client.post(
            "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
        )
        assert refused.status_code == 401
        assert live_session(sid_of(pair["access"])).end_reason == EndReason.SESSION_LIMIT
    assert call(pairs[10]["access"]) == 200
    assert call(pairs[-1]["access"]) == 200
    assert {e["sid"] for e in ended_events(EndReason.SESSION_LIMIT)} == set(sids[:10])
    assert int(get_redis().hget(keys.stats(), "sessions_ended:session_limit")) == 10


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_logins_never_leave_more_than_the_limit(
    gunicorn_server, django_user_model, password
):
    """24 logins at once through 4 gunicorn processes with a limit of 5: exactly 5 live, the
    other 19 ended once each, each by the login that found it the oldest."""
    gunicorn_server.workers = 4
    gunicorn_server.start(
        extra_env={"GUNICORN_CMD_ARGS": "--threads 6", "SESSION_LIMIT_PER_USER": "5"}
    )
    user = django_user_model.objects.create_user(username="crowd", password=password)
    barrier = threading.Barrier(24)
    pairs: list[dict] = []

    def log_in() -> None:
        with requests.Session() as http:
            http.get(f"{gunicorn_server.url}/healthz", timeout=10)
            barrier.wait()
            response = http.post(
                f"{gunicorn_server.url}/api/auth/token/",
                json={"username": user.username, "password": password},
                timeout=30,
            )
            pairs.append(response.json())

    threads = [threading.Thread(target=log_in) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sids = {sid_of(pair["access"]) for pair in pairs}
    assert len(sids) == 24

    # Replay the logins in the order the script ran them (the stream's order): each keeps its
    # own new session and ends the oldest of the others. A session created a moment earlier
    # may reach the script later, so "the newest five by id" is not the rule; this is.
    live: set[str] = set()
    expected_ends: list[str] = []
    for event in stream_events():
        if event["type"] == EventType.LOGIN and event["sid"] in sids:
            live.add(event["sid"])
            for oldest in sorted(live - {event["sid"]})[: max(0, len(live) - 5)]:
                live.remove(oldest)
                expected_ends.append(oldest)
    assert len(live) == 5 and len(expected_ends) == 19
    assert sorted(livesessions.user_sids(user.pk)) == sorted(live)
    assert [e["sid"] for e in ended_events(EndReason.SESSION_LIMIT)] == expected_ends


@pytest.mark.django_db
def test_the_session_list_is_paginated(api_client, user, password, settings):
    pairs = [login(api_client, user.username, password).json() for _ in range(30)]
    me = bearer(pairs[-1]["access"])
    first = api_client.get("/api/sessions/", **me).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 30
    assert len(first["results"]) == get_settings().SESSION_LIST_PAGE_SIZE == 20
    assert first["next"].endswith("/api/sessions/?limit=20&offset=20")
    second = api_client.get("/api/sessions/?limit=20&offset=20", **me).json()
    assert len(second["results"]) == 10 and second["next"] is None
    listed = {row["sid"] for row in first["results"] + second["results"]}
    assert listed == {sid_of(pair["access"]) for pair in pairs}
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SESSION_LIST_PAGE_SIZE": 7}
    assert len(api_client.get("/api/sessions/", **me).json()["results"]) == 7
    for query in ("limit=0", "limit=-3", "limit=x", "offset=-1", "offset=99", "limit=99999"):
        response = api_client.get(f"/api/sessions/?{query}", **me)
        assert response.status_code == 200, query


@pytest.mark.django_db
def test_the_new_end_reasons_reach_the_audit_trail_and_its_filters(
    api_client, user, password, settings, django_user_model
):
    from django.test import Client
    from django.urls import reverse

    from audit import services as audit_services
    from audit.models import AuditEvent, AuditSession

    settings.SESSIONHUB = {**settings.SESSIONHUB, "SESSION_LIMIT_PER_USER": 1}
    evicted = login(api_client, user.username, password).json()
    stolen = login(api_client, user.username, password).json()
    assert (
        api_client.post(
            "/api/auth/token/refresh/", {"refresh": stolen["refresh"]}, format="json"
        ).status_code
        == 200
    )
    assert (
        api_client.post(
            "/api/auth/token/refresh/", {"refresh": stolen["refresh"]}, format="json"
        ).status_code
        == 401
    )
    audit_services.sync_run()
    reasons = dict(AuditSession.objects.values_list("sid", "end_reason"))
    assert reasons == {
        sid_of(evicted["access"]): EndReason.SESSION_LIMIT,
        sid_of(stolen["access"]): EndReason.REFRESH_REUSE,
    }
    reused = AuditEvent.objects.get(event_type=EventType.REFRESH_TOKEN_REUSED)
    assert (reused.user_id, reused.session_id) == (user.pk, sid_of(stolen["access"]))

    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", password=password))
    sessions = reverse("admin:audit_auditsession_changelist")

    def listed(url: str) -> list:
        page = admin.get(url)
        assert page.status_code == 200, url
        return list(page.context["cl"].result_list)

    for reason, session in ((EndReason.SESSION_LIMIT, evicted), (EndReason.REFRESH_REUSE, stolen)):
        [row] = listed(f"{sessions}?end_reason={reason}")
        assert row.sid == sid_of(session["access"])
    events = reverse("admin:audit_auditevent_changelist")
    assert listed(f"{events}?event_type={EventType.REFRESH_TOKEN_REUSED}") == [reused]
    [limit_end] = listed(f"{events}?reason={EndReason.SESSION_LIMIT}")
    assert limit_end.session_id == sid_of(evicted["access"])
