"""Every path that removes or disables a user ends its sessions, and a session serves only the
user that opened it (ASVS 3.3.1; ASVS 5.0 7.4.2)."""

import time

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import livesessions, tasks
from accounts.events import EndReason
from accounts.models import SessionEndRequest, User
from accounts.tracking import tracker

from .helpers import bearer, live_session, login, sid_of

pytestmark = pytest.mark.django_db(transaction=True)


def call(access: str) -> int:
    return APIClient().get("/api/sessions/", **bearer(access)).status_code


def refresh(token: str) -> int:
    return APIClient().post("/api/auth/token/refresh/", {"refresh": token}, format="json")


@pytest.fixture
def people(django_user_model, password):
    return [
        django_user_model.objects.create_user(username=name, password=password)
        for name in ("bob", "carol", "dave")
    ]


def test_the_admins_bulk_delete_ends_the_sessions_of_every_deleted_user(
    api_client, people, password, django_user_model
):
    bob, carol, _ = people
    tokens = {u.username: login(api_client, u.username, password).json() for u in people}
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", password=password))
    response = admin.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_selected", "_selected_action": [bob.pk, carol.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk__in=[bob.pk, carol.pk]).exists()
    for name in ("bob", "carol"):  # at once, without waiting for the beat job
        assert call(tokens[name]["access"]) == 401
        assert refresh(tokens[name]["refresh"]).status_code == 401
        assert live_session(sid_of(tokens[name]["access"])).end_reason == EndReason.USER_DISABLED
    assert call(tokens["dave"]["access"]) == 200


@pytest.mark.parametrize("path", ["update", "raw_sql"])
def test_a_deactivation_that_bypasses_save_ends_the_sessions(path, api_client, people, password):
    bob, carol, _ = people
    tokens = login(api_client, bob.username, password).json()
    others = login(api_client, carol.username, password).json()
    if path == "update":
        User.objects.filter(pk=bob.pk).update(is_active=False)
    else:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE accounts_user SET is_active = false WHERE id = %s", [bob.pk])
    [recorded] = SessionEndRequest.objects.all()  # written by the database, in that UPDATE
    assert (recorded.user_id, recorded.reason) == (bob.pk, EndReason.USER_DISABLED)
    assert refresh(tokens["refresh"]).status_code == 401
    assert tasks.session_ends_apply() == 1  # the beat job
    assert call(tokens["access"]) == 401
    assert live_session(sid_of(tokens["access"])).end_reason == EndReason.USER_DISABLED
    assert call(others["access"]) == 200


def test_a_queryset_delete_ends_the_sessions(api_client, people, password):
    bob = people[0]
    tokens = login(api_client, bob.username, password).json()
    User.objects.filter(pk=bob.pk).delete()
    assert call(tokens["access"]) == 401
    assert live_session(sid_of(tokens["access"])).end_reason == EndReason.USER_DISABLED


def test_the_reconciliation_ends_sessions_that_reach_redis_after_the_user_was_removed(
    private_redis, api_client, people, password
):
    """Logins made while Redis was down reach it with their web process's next flush — here
    after their users were deactivated (`update()`) or deleted and the beat job found nothing to
    end. The reconciliation finds them by walking the live sessions."""
    bob, carol, _ = people
    private_redis.kill()
    tokens = {u.username: login(api_client, u.username, password).json() for u in people}
    User.objects.filter(pk=bob.pk).update(is_active=False)
    User.objects.filter(pk=carol.pk).delete()
    tracker._redis_retry_at = float("inf")  # this process will not flush yet
    private_redis.start()
    assert tasks.session_ends_apply() == 0
    tracker._redis_retry_at = 0
    assert tracker.flush()
    for name in ("bob", "carol", "dave"):
        assert not livesessions.get(sid_of(tokens[name]["access"])).is_ended
        assert call(tokens[name]["access"]) == 200
    assert refresh(tokens["bob"]["refresh"]).status_code == 401
    assert refresh(tokens["carol"]["refresh"]).status_code == 401

    assert tasks.sessions_reconcile() == 2
    assert call(tokens["bob"]["access"]) == 401
    assert call(tokens["carol"]["access"]) == 401
    assert call(tokens["dave"]["access"]) == 200
    for name in ("bob", "carol"):
        session = live_session(sid_of(tokens[name]["access"]))
        assert session.end_reason == EndReason.USER_DISABLED
    assert tasks.sessions_reconcile() == 0


def test_the_reconciliation_walks_every_live_session_in_batches(api_client, people, password):
    bob, carol, _ = people
    for _ in range(7):
        login(api_client, bob.username, password)
        login(api_client, carol.username, password)
    User.objects.filter(pk=bob.pk).update(is_active=False)
    assert tasks.services.sessions_reconcile(batch=3) == 7
    assert len(livesessions.user_sids(carol.pk)) == 7
    assert livesessions.user_sids(bob.pk) == []


def forged(token_class, raw: str, sid: str) -> str:
    """A validly signed token that names another user's session: minted by whoever holds the
    signing key (or by a bug) — the session must still serve only its own user."""
    token = token_class(raw)
    token["sid"] = sid
    token.set_jti()
    return str(token)


def test_a_token_naming_another_users_session_is_refused(api_client, people, password):
    bob, carol, _ = people
    victim = login(api_client, bob.username, password).json()
    own = login(api_client, carol.username, password).json()
    sid = sid_of(victim["access"])
    assert call(victim["access"]) == 200
    bad_refresh = forged(RefreshToken, own["refresh"], sid)
    bad_access = forged(AccessToken, own["access"], sid)

    assert refresh(bad_refresh).status_code == 401
    verify = "/api/auth/token/verify/"
    assert api_client.post(verify, {"token": bad_refresh}, format="json").status_code == 401
    assert api_client.post(verify, {"token": bad_access}, format="json").status_code == 401
    logout = api_client.post("/api/auth/logout/", {"refresh": bad_refresh}, format="json")
    assert logout.status_code == 401
    # The request path makes no Redis round trip: the flush that would count the call finds
    # the session is someone else's, counts nothing, and the process refuses the token from then.
    call(bad_access)
    deadline = time.monotonic() + 5
    while call(bad_access) != 401:  # the flusher thread may be the one that hears it
        assert tracker.flush()
        assert time.monotonic() < deadline, "the token is still served"
    assert call(victim["access"]) == 200  # the owner's session is untouched
    session = live_session(sid)
    assert not session.is_ended
    assert session.user_id == bob.pk
    assert session.api_call_count == 2
