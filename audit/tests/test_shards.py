"""Live sessions over several virtual shards on the plain test Redis (hash tags change nothing
there): the store, the flush and the per-shard sync give exact totals, each shard's keys carry
its tag, and a shard that cannot be synced holds up no other. The same code on a real Redis
Cluster: tests/scale/test_redis_cluster.py."""

import pytest
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts import livesessions
from accounts import services as account_services
from accounts.events import EndReason
from accounts.tests.helpers import bearer, login, sid_of
from accounts.tracking import tracker
from audit import services, sync
from audit.models import AuditEvent, AuditSession
from core.rediskeys import keys

from .workload import build_world

pytestmark = pytest.mark.django_db

SHARDS = 4


@pytest.fixture(autouse=True)
def four_shards(settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "REDIS_SHARDS": SHARDS}
    assert keys.shard_count == SHARDS and keys.sharded
    yield
    tracker.flush()


def _users(django_user_model, password, count: int) -> list:
    return [
        django_user_model.objects.create_user(username=f"user{n:02d}", password=password)
        for n in range(count)
    ]


def test_keys_carry_their_shards_hash_tag(redis_clean):
    assert keys.session("abc", 3) == "{shtest:3}:s:abc"
    assert keys.user_sessions(7) == "{shtest:3}:u:7"  # 7 % 4
    assert keys.user_calls_per_minute(6) == "{shtest:2}:cpm:6"
    assert keys.events(1) == "{shtest:1}:events"
    assert keys.dirty_inflight(2) == "{shtest:2}:dirty:inflight"
    assert keys.flush_sequence("p", 1) == "{shtest:1}:flush:p"
    # The login gate shares shard 0's tag: its scripts touch one slot.
    assert keys.throttle_ip("1.2.3.4").startswith("{shtest:0}:")
    assert keys.lockouts().startswith("{shtest:0}:")


def test_the_ground_truth_workload_gives_the_same_figures_on_four_shards(
    django_user_model, password, frozen_clock, redis_clean
):
    """The ground-truth timeline (audit/tests/test_ground_truth.py) with its users' sessions
    in three different shards: the same sessions and events reach PostgreSQL."""
    users = build_world(django_user_model, password, frozen_clock)
    assert len({keys.shard_of(users[name].pk) for name in ("alice", "bob", "carol")}) > 1
    rows = {
        (s.user.username, s.started_at.isoformat()): (s.api_call_count, s.end_reason)
        for s in AuditSession.objects.select_related("user")
    }
    assert rows == {
        ("carol", "2026-10-11T08:00:00+00:00"): (5, "idle_timeout"),
        ("bob", "2026-11-10T09:00:00+00:00"): (40, "idle_timeout"),
        ("alice", "2026-11-18T10:00:00+00:00"): (150, "logout"),
        ("bob", "2026-11-19T20:00:00+00:00"): (10, "logout"),
        ("alice", "2026-11-20T13:00:00+00:00"): (70, ""),
    }
    counts: dict[str, int] = {}
    for event_type in AuditEvent.objects.values_list("event_type", flat=True):
        counts[event_type] = counts.get(event_type, 0) + 1
    assert counts == {
        "login": 5,
        "login_failed": 24,
        "logout": 2,
        "session_expired": 2,
        "locked_out": 1,
        "lockout_lifted": 1,
    }
    # Each event names its shard's stream; each shard's cursor is its own row.
    shards_of_events = {
        stream_id.partition(":")[0]
        for stream_id in AuditEvent.objects.values_list("stream_id", flat=True)
    }
    assert shards_of_events == {
        str(keys.shard_of(users[n].pk)) for n in ("alice", "bob", "carol")
    } | {"0"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM audit_sync_cursor ORDER BY name")
        names = {name for (name,) in cursor.fetchall()}
    # A cursor per shard that had events, of that shard's name (never the unsharded one).
    assert {sync.cursor_name(int(shard)) for shard in shards_of_events} <= names
    assert names <= {sync.cursor_name(shard) for shard in keys.shards()}
    assert "events" not in names


def test_many_users_over_every_shard_exact_totals(django_user_model, password, redis_clean):
    """24 users (6 a shard), each with a known number of calls through the API; some log out.
    The flush spreads them over the shards, the per-shard sync brings exact totals."""
    users = _users(django_user_model, password, 24)
    client = APIClient()
    expected_calls, expected_ended = 0, 0
    tokens = []
    for n, user in enumerate(users):
        pair = login(client, user.username, password).json()
        tokens.append(pair)
        for _ in range(n + 1):
            assert client.get("/api/me/", **bearer(pair["access"])).status_code == 200
        expected_calls += n + 1
    for pair in tokens[::3]:  # 8 logouts
        response = client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json")
        assert response.status_code == 204
        expected_ended += 1
    assert tracker.flush()
    # Every shard holds sessions, each in its own indexes and dirty set.
    for shard in keys.shards():
        assert redis_clean.scard(keys.dirty(shard)) == 24 // SHARDS
    assert livesessions.count_active(0) == 24 - expected_ended

    result = services.sync_run()
    assert (result.sessions, result.skipped) == (24, False)
    assert AuditSession.objects.count() == 24
    assert AuditSession.objects.aggregate(calls=Sum("api_call_count"))["calls"] == expected_calls
    assert AuditSession.objects.filter(end_reason=EndReason.LOGOUT).count() == expected_ended
    assert AuditEvent.objects.filter(event_type="login").count() == 24
    assert AuditEvent.objects.filter(event_type="logout").count() == expected_ended
    # Per user: the exact number of calls, whatever the shard.
    per_user = dict(AuditSession.objects.values_list("user__username", "api_call_count"))
    assert per_user == {user.username: n + 1 for n, user in enumerate(users)}
    # Nothing left behind, and a second run changes nothing.
    assert services.sync_backlog() == (0, 0)
    again = services.sync_run()
    assert (again.sessions, again.events) == (0, 0)
    assert AuditSession.objects.aggregate(calls=Sum("api_call_count"))["calls"] == expected_calls


def test_one_flush_sends_one_call_per_shard_it_touches(django_user_model, password, redis_clean):
    users = _users(django_user_model, password, 3)  # ids in 3 consecutive shards
    now = 1_800_000_000.0
    for user in users:
        sid = livesessions.new_sid()
        tracker._record(sid, user.pk, now, "198.51.100.1", "ua", now)
    batch = tracker._take_batch()
    calls = tracker._shard_calls(batch, now)
    assert sorted(shard for shard, _, _ in calls) == sorted({keys.shard_of(u.pk) for u in users})
    for shard, flush_keys, args in calls:
        assert all(key.startswith(keys.base(shard)) for key in flush_keys)
        assert args[0] == keys.session_prefix(shard)


def _last_sync_exported(client) -> float:
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    [line] = [x for x in text.splitlines() if x.startswith("sync_last_success_timestamp_seconds")]
    return float(line.rsplit(" ", 1)[1])


def test_a_shard_that_cannot_be_synced_holds_up_no_other(
    django_user_model, password, redis_clean, client
):
    users = _users(django_user_model, password, 8)
    client = APIClient()
    for user in users:
        pair = login(client, user.username, password).json()
        assert client.get("/api/me/", **bearer(pair["access"])).status_code == 200
    assert tracker.flush()
    busy = keys.shard_of(users[0].pk)
    held = services.SyncLock(shard=busy)  # another worker is syncing this shard
    assert held.acquire()
    result = services.sync_run()
    assert result.sessions == 6  # the other three shards' sessions
    waiting = {u.pk for u in users if keys.shard_of(u.pk) == busy}
    assert (
        set(AuditSession.objects.values_list("user_id", flat=True))
        == {u.pk for u in users} - waiting
    )
    # The others committed, but the exported time of the last sync is the held shard's (none
    # yet): a shard that stopped syncing ages it, and the sync-age alert fires.
    assert redis_clean.hget(keys.sync_state(), "last_success") is not None
    assert _last_sync_exported(client) == 0
    held.release()
    assert services.sync_run(shard=busy).sessions == 2
    assert _last_sync_exported(client) > 0
    assert AuditSession.objects.count() == 8
    assert AuditSession.objects.aggregate(calls=Sum("api_call_count"))["calls"] == 8


def test_the_beat_task_fans_out_one_task_per_shard(
    django_user_model, password, redis_clean, monkeypatch
):
    from audit import tasks
    from sessionhub.celery import app

    users = _users(django_user_model, password, 4)
    client = APIClient()
    for user in users:
        login(client, user.username, password)
    assert tracker.flush()
    ran = []
    original = services.sync_run

    def recording(**kwargs):
        ran.append(kwargs.get("shard"))
        return original(**kwargs)

    monkeypatch.setattr(services, "sync_run", recording)
    app.conf.task_always_eager = True  # the shard tasks run here, as a worker would
    try:
        assert tasks.sync_sessions.apply().get() == {"shards": SHARDS}
    finally:
        app.conf.task_always_eager = False
    assert sorted(ran) == list(range(SHARDS))
    assert AuditSession.objects.count() == 4


def test_session_limit_and_ends_by_sid_work_in_the_users_shard(
    django_user_model, password, redis_clean, settings
):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SESSION_LIMIT_PER_USER": 2}
    user = _users(django_user_model, password, 2)[1]  # shard 1 or more: not shard 0
    shard = keys.shard_of(user.pk)
    client = APIClient()
    opened = [sid_of(login(client, user.username, password).json()["access"]) for _ in range(3)]
    live = livesessions.user_sids(user.pk)
    assert live == sorted(opened[1:])  # the limit ended the oldest, in the user's shard
    assert redis_clean.zcard(keys.started_index(shard)) == 2
    # An admin ends a session knowing only its id: the shards are asked.
    assert livesessions.locate(live[0]) == shard
    assert account_services.session_end(sid=live[0], reason=EndReason.REVOKED)
    assert livesessions.user_sids(user.pk) == live[1:]
    assert livesessions.recently_ended(0).keys() >= {live[0]}
    services.sync_run()
    assert AuditSession.objects.filter(ended_at__isnull=True).count() == 1


def test_metrics_sum_the_shards(django_user_model, password, redis_clean, client, frozen_clock):
    users = _users(django_user_model, password, 5)
    api = APIClient()
    for user in users:
        pair = login(api, user.username, password).json()
        for _ in range(3):
            api.get("/api/me/", **bearer(pair["access"]))
    assert tracker.flush()
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(lines["sessions_active_total"]) == 5
    assert float(lines["api_calls_total"]) == 15
    assert float(lines["sessions_started_total"]) == 5
    # The admin's overview adds the shards up the same way.
    from analytics import selectors

    tiles = selectors.live_tiles()
    assert (tiles.active_now, tiles.api_calls_per_minute) == (5, 15)
    figures = selectors.live_figures()
    assert (figures.active_now, figures.sync_backlog) == (5, 5)


def test_the_admins_live_pages_merge_the_shards(django_user_model, password, redis_clean):
    """The live-sessions list pages through the shards by last activity as one list; the
    overview's tiles add the shards up."""
    from analytics import selectors

    users = _users(django_user_model, password, 8)
    now = 1_800_000_000.0
    for n, user in enumerate(users):
        livesessions.start(
            sid=f"{n:011x}{'0' * 16}",
            user_id=user.pk,
            started_at=now - 100 + n,
            ip="198.51.100.1",
            user_agent="ua",
            username=user.username,
        )
    order = [f"{n:011x}{'0' * 16}" for n in range(8)]
    newest_first = [
        row.session.sid
        for page in (1, 2, 3)
        for row in selectors.live_sessions_page(page=page, per_page=3).rows
    ]
    assert newest_first == order[::-1]
    first = selectors.live_sessions_page(page=1, per_page=3, oldest_first=True)
    assert [row.session.sid for row in first.rows] == order[:3]
    assert first.total == 8
    mine = selectors.live_sessions_page(user_id=users[5].pk)
    assert [row.session.sid for row in mine.rows] == [order[5]]


def test_the_sync_command_takes_one_shard_or_all(django_user_model, password, redis_clean):
    from io import StringIO

    from django.core.management import call_command

    users = _users(django_user_model, password, 4)
    client = APIClient()
    for user in users:
        login(client, user.username, password)
    out = StringIO()
    call_command("sync_sessions", shard=keys.shard_of(users[1].pk), stdout=out)
    assert "synced 1 sessions" in out.getvalue()
    assert list(AuditSession.objects.values_list("user_id", flat=True)) == [users[1].pk]
    out = StringIO()
    call_command("sync_sessions", stdout=out)
    assert "synced 3 sessions" in out.getvalue()
    assert "backlog left: 0 sessions, 0 events" in out.getvalue()
