"""Sessions PostgreSQL holds as open that Redis lost are closed `lost` by the sync — and never
one Redis knows, nor one used within its idle timeout."""

import csv
import io

import pytest
from django.db import connection
from django.urls import reverse

from accounts.tests.helpers import bearer, login, sid_of
from accounts.tracking import tracker
from audit import lost, services
from audit.models import AuditEvent, AuditSession
from core.conf import get_settings
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db(transaction=True)


def _session(api_client, user, password, calls: int = 1) -> dict:
    pair = login(api_client, user.username, password).json()
    for _ in range(calls):
        assert api_client.get("/api/me/", **bearer(pair["access"])).status_code == 200
    return pair


def _sync() -> services.SyncResult:
    assert tracker.flush()
    return services.sync_run()


def _past_idle_timeout() -> float:
    return get_settings().IDLE_TIMEOUT + lost.grace() + 1


def _open_in_postgres() -> set[str]:
    return set(AuditSession.objects.filter(ended_at__isnull=True).values_list("sid", flat=True))


def _open_in_overview() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(sessions), 0) FROM analytics_sessions_by_status")
        return cursor.fetchone()[0]


def _live_in_redis() -> set[str]:
    return {sid.decode() for sid in get_redis().zrange(keys.started_index(), 0, -1)}


def test_a_session_redis_lost_is_closed_as_lost_once_past_its_idle_timeout(
    api_client, user, password, frozen_clock
):
    abandoned = _session(api_client, user, password, calls=3)
    kept = _session(api_client, user, password, calls=2)
    _sync()
    assert len(_open_in_postgres()) == 2

    get_redis().flushdb()  # Redis restarted without persistence
    first = _sync()
    # Both were in use a moment ago: their clients may come back. Nothing closed yet.
    assert first.lost == 0
    assert len(_open_in_postgres()) == 2
    # One comes back: a web process rebuilds it in Redis (a new generation).
    assert api_client.get("/api/me/", **bearer(kept["access"])).status_code == 200

    frozen_clock.advance(_past_idle_timeout())
    result = _sync()

    assert result.lost == 1
    gone = AuditSession.objects.get(sid=sid_of(abandoned["access"]))
    assert gone.end_reason == "lost" and gone.ended_at is not None
    assert gone.api_call_count == 3  # what PostgreSQL had is kept
    assert _open_in_postgres() == {sid_of(kept["access"])} == _live_in_redis()
    assert _open_in_overview() == 1
    event = AuditEvent.objects.get(session_id=gone.sid, reason="lost")
    assert event.event_type == "session_expired" and event.user_id == user.pk
    assert int(get_redis().hget(keys.stats(), "sessions_ended:lost")) == 1
    assert _sync().lost == 0  # once
    assert AuditEvent.objects.filter(reason="lost").count() == 1


def test_a_session_redis_knows_is_never_closed_as_lost(api_client, user, password, frozen_clock):
    """Past its idle timeout by PostgreSQL's figures, but live in Redis (its timeout job has
    not run yet): Redis decides, PostgreSQL does not close it."""
    pair = _session(api_client, user, password)
    _sync()
    frozen_clock.advance(_past_idle_timeout())
    get_redis().delete(keys.lost_swept())  # sweep now, not in an hour

    result = lost.sessions_lost_close()

    assert result.swept and result.closed == 0
    assert _open_in_postgres() == {sid_of(pair["access"])}


def test_a_session_used_within_its_idle_timeout_is_not_closed(
    api_client, user, password, frozen_clock
):
    pair = _session(api_client, user, password)
    _sync()
    get_redis().flushdb()
    frozen_clock.advance(get_settings().IDLE_TIMEOUT - 60)

    assert _sync().lost == 0
    assert _open_in_postgres() == {sid_of(pair["access"])}
    assert get_redis().zcard(keys.lost_suspects()) == 1  # checked again when it is due


def test_a_lost_session_whose_client_comes_back_is_reopened(
    api_client, user, password, frozen_clock
):
    pair = _session(api_client, user, password, calls=2)
    _sync()
    get_redis().flushdb()
    frozen_clock.advance(_past_idle_timeout())
    assert _sync().lost == 1

    # Its access token is still valid (real time): a web process rebuilds the session.
    assert api_client.get("/api/me/", **bearer(pair["access"])).status_code == 200
    _sync()

    session = AuditSession.objects.get(sid=sid_of(pair["access"]))
    assert session.ended_at is None and session.end_reason == ""
    assert session.api_call_count == 3  # 2 before the loss, 1 in the new generation
    assert _open_in_postgres() == _live_in_redis()


def test_the_check_costs_no_query_between_sweeps(
    api_client, user, password, django_assert_num_queries
):
    _session(api_client, user, password)
    _sync()  # swept once
    with django_assert_num_queries(0):
        result = lost.sessions_lost_close()
    assert not result.swept and result.closed == 0


def test_lost_is_shown_in_the_session_history_and_its_csv(
    client, api_client, user, password, frozen_clock, django_user_model
):
    pair = _session(api_client, user, password)
    _sync()
    get_redis().flushdb()
    frozen_clock.advance(_past_idle_timeout())
    _sync()
    admin = django_user_model.objects.create_superuser(username="boss", password=password)
    client.force_login(admin)
    sid = sid_of(pair["access"])

    page = client.get(reverse("admin:audit_auditsession_changelist"), {"end_reason": "lost"})
    assert page.status_code == 200
    assert sid[:10] in page.content.decode()
    assert "Lost (Redis no longer knew it)" in page.content.decode()  # the filter's choice

    exported = client.get(reverse("admin:audit_auditsession_export_csv"), {"end_reason": "lost"})
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert [(row["sid"], row["end_reason"]) for row in rows] == [(sid, "lost")]


def test_the_sweep_pages_through_the_open_sessions(api_client, user, password, frozen_clock):
    sids = {sid_of(_session(api_client, user, password)["access"]) for _ in range(3)}
    _sync()
    get_redis().flushdb()
    frozen_clock.advance(_past_idle_timeout())

    result = lost.sessions_lost_close(batch=1)

    assert result.swept and result.closed == 3
    assert set(AuditSession.objects.filter(end_reason="lost").values_list("sid", flat=True)) == sids
