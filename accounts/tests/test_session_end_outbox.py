"""Ending sessions survives a Redis outage (ASVS 3.3.1, 3.3.3).

A password change, a deactivation or an admin's "end sessions" made while Redis does not answer
is recorded in PostgreSQL with the change itself; refreshes of the affected sessions are refused
at once, and the sessions end in Redis — their access tokens refused — when the beat job finds
Redis back. The Redis here is a real redis-server, paused with SIGSTOP as a hung server would be.
"""

import contextlib
import os
import signal

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import livesessions, tasks
from accounts.events import EndReason
from accounts.models import SessionEndRequest
from accounts.tracking import tracker
from core.conf import get_settings

from .helpers import bearer, live_session, login, sid_of

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "an entirely new passphrase"


@contextlib.contextmanager
def paused(server):
    """The server stops answering (connections hang) and resumes with its data intact."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        tracker._redis_retry_at = 0  # do not wait for this process's back-off


def refresh(token: str) -> int:
    return APIClient().post("/api/auth/token/refresh/", {"refresh": token}, format="json")


def call(access: str) -> int:
    return APIClient().get("/api/sessions/", **bearer(access)).status_code


def end_while_paused(change: str, user, superuser) -> None:
    if change == "password_changed":
        user.set_password(NEW_PASSWORD)
        user.save()
    elif change == "user_disabled":
        user.is_active = False
        user.save()
    else:  # an admin ends the user's sessions from the user's page
        admin = Client()
        admin.force_login(superuser)
        response = admin.post(reverse("admin:analytics_user_detail", args=[user.pk]))
        assert response.status_code == 302


@pytest.mark.parametrize("change", ["password_changed", "user_disabled", "revoked"])
def test_an_end_made_while_redis_hangs_holds_and_reaches_redis_later(
    change, private_redis, api_client, user, password, django_user_model
):
    superuser = django_user_model.objects.create_superuser(username="root", password=password)
    old = login(api_client, user.username, password).json()
    sid = sid_of(old["access"])
    assert call(old["access"]) == 200
    assert tracker.flush()

    with paused(private_redis):
        end_while_paused(change, user, superuser)  # commits; Redis could not be told
        [recorded] = SessionEndRequest.objects.filter(user_id=user.pk)
        assert recorded.reason == change and recorded.applied_at is None
        # Meanwhile PostgreSQL refuses the refresh: no new access token for the session.
        assert refresh(old["refresh"]).status_code == 401

    assert not live_session(sid).is_ended  # Redis answers again but has not heard yet
    assert tasks.session_ends_apply() == 1  # the beat job
    assert call(old["access"]) == 401
    assert refresh(old["refresh"]).status_code == 401
    session = livesessions.get(sid)
    assert session.end_reason == change
    recorded.refresh_from_db()
    assert recorded.applied_at is not None
    assert tasks.session_ends_apply() == 0  # applied once

    if change == "password_changed":  # the new password opens a session that nothing ends
        fresh = login(api_client, user.username, NEW_PASSWORD).json()
        assert tasks.session_ends_apply() == 0
        assert call(fresh["access"]) == 200
        assert refresh(fresh["refresh"]).status_code == 200


def test_a_session_brought_to_redis_after_the_end_was_applied_is_ended_too(
    private_redis, api_client, user, password
):
    """A login made while Redis was down is opened in Redis by its web process's next flush,
    which may come after the beat job applied a password change: the job applies recent ends
    again."""
    private_redis.kill()
    during = login(api_client, user.username, password).json()  # held in this process
    user.set_password(NEW_PASSWORD)
    user.save()
    tracker._redis_retry_at = float("inf")  # this process will not flush yet …
    private_redis.start()
    assert tasks.session_ends_apply() == 0  # … so the end finds no session
    tracker._redis_retry_at = 0
    assert tracker.flush()  # now the session reaches Redis, live
    assert not livesessions.get(sid_of(during["access"])).is_ended
    assert refresh(during["refresh"]).status_code == 401
    assert tasks.session_ends_apply() == 1
    assert livesessions.get(sid_of(during["access"])).end_reason == EndReason.PASSWORD_CHANGED
    assert call(during["access"]) == 401


def test_recorded_ends_are_dropped_after_the_absolute_timeout(user):
    conf = get_settings()
    from accounts import services

    services.session_end_request_record(user_id=user.pk, reason=EndReason.REVOKED)
    SessionEndRequest.objects.update(
        requested_at=services._wall_datetime(
            livesessions.now_ms() - (conf.ABSOLUTE_TIMEOUT + 61) * 1000
        )
    )
    tasks.session_ends_apply()
    assert not SessionEndRequest.objects.exists()


def test_the_beat_runs_the_job(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["session-ends-apply"]["task"] == "accounts.tasks.session_ends_apply"
    assert schedule["session-ends-apply"]["schedule"] <= 10
    assert schedule["sessions-reconcile"]["task"] == "accounts.tasks.sessions_reconcile"


def test_the_admin_lists_recorded_ends_read_only(user, django_user_model, password):
    from accounts import services

    services.session_end_request_record(user_id=user.pk, reason=EndReason.SESSION_LIMIT, sid="x")
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", password=password))
    url = reverse("admin:accounts_sessionendrequest_changelist")
    for query in ("", "?reason=session_limit", "?applied_at__isempty=1", "?q=abc", f"?q={user.pk}"):
        response = admin.get(url + query)
        assert response.status_code == 200, query
    assert b"Session limit reached" in admin.get(url).content
    assert admin.get(reverse("admin:accounts_sessionendrequest_add")).status_code == 403
