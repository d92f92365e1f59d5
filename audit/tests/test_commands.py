from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from audit.models import AuditEvent, AuditSession, AuditUserActivity

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_sync_sessions_prints_a_summary(api_client, user, password):
    tokens = login(api_client, user.username, password).json()
    api_client.get("/api/sessions/", **bearer(tokens["access"]))
    tracker.flush()
    output = run("sync_sessions")
    assert "synced 1 sessions, 1 events" in output
    assert "backlog left: 0 sessions, 0 events" in output
    assert AuditSession.objects.get().api_call_count == 1


def test_refresh_analytics(api_client, user, password):
    output = run("refresh_analytics")
    assert "refreshed analytics_user_stats" in output
    assert "refreshed 3 rollups" in output


def test_prune_audit_deletes_only_what_is_old(api_client, user, password):
    login(api_client, user.username, password)
    tracker.flush()
    run("sync_sessions")
    old = timezone.now() - timedelta(days=100)
    AuditEvent.objects.create(stream_id="1-1", event_type="login", occurred_at=old)
    AuditSession.objects.create(
        sid="old", user=user, started_at=old, last_active=old, ended_at=old, end_reason="logout"
    )
    output = run("prune_audit", "--older-than", "90d")
    assert "pruned 1 events and 1 ended sessions older than 90 days" in output
    assert AuditEvent.objects.count() == 1
    assert AuditSession.objects.count() == 1


def test_prune_audit_removes_rows_of_users_deleted_during_a_sync(user, django_user_model):
    """audit_session has no FK constraint: a sync committing while the user's deletion runs
    can leave a row behind, as these two rows written after the deletion do."""
    gone = django_user_model.objects.create_user(username="gone", password="x")
    gone_id, now = gone.pk, timezone.now()
    gone.delete()
    AuditSession.objects.create(sid="orphan", user_id=gone_id, started_at=now, last_active=now)
    AuditUserActivity.objects.create(user_id=gone_id, first_active=now, last_active=now)
    AuditSession.objects.create(sid="kept", user=user, started_at=now, last_active=now)

    output = run("prune_audit")

    assert "and 2 rows of deleted users" in output
    assert list(AuditSession.objects.values_list("sid", flat=True)) == ["kept"]
    assert not AuditUserActivity.objects.exists()


def test_deleting_a_user_deletes_their_sessions(api_client, user, password):
    login(api_client, user.username, password)
    tracker.flush()
    run("sync_sessions")
    user.delete()
    assert AuditSession.objects.count() == AuditUserActivity.objects.count() == 0


def test_prune_audit_refuses_a_bad_age():
    with pytest.raises(CommandError, match="--older-than"):
        run("prune_audit", "--older-than", "ninety days")


def test_expired_outstanding_tokens_are_flushed(api_client, user, password):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    from audit.services import outstanding_tokens_flush

    login(api_client, user.username, password)
    login(api_client, user.username, password)
    OutstandingToken.objects.filter(pk=OutstandingToken.objects.first().pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert outstanding_tokens_flush() == 1
    assert OutstandingToken.objects.count() == 1
