"""The sync's exactly-once effect under faults: totals are exact after every one of them."""

import threading

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.db.utils import OperationalError
from rest_framework.test import APIClient

from accounts import export
from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from audit import services, sync
from audit.models import AuditEvent, AuditSession
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def traffic(django_user_model, password):
    """Three users, four sessions, 60 calls, one logout, two failed logins."""
    client = APIClient()
    expected = {"calls": 0, "sessions": 0, "runs": 0}
    users = [
        django_user_model.objects.create_user(username=f"user{n}", password=password)
        for n in range(3)
    ]

    def run(calls_per_session=(10, 20, 5, 25)):
        tokens = []
        for n, calls in enumerate(calls_per_session):
            pair = login(client, users[n % 3].username, password).json()
            tokens.append(pair)
            for _ in range(calls):
                assert client.get("/api/sessions/", **bearer(pair["access"])).status_code == 200
            expected["calls"] += calls
            expected["sessions"] += 1
        client.post("/api/auth/logout/", {"refresh": tokens[0]["refresh"]}, format="json")
        login(client, "user1", "wrong")
        login(client, "nobody", "wrong")
        expected["runs"] += 1
        assert tracker.flush()
        return tokens

    run.expected = expected
    return run


def totals() -> dict:
    sessions = AuditSession.objects.aggregate(n=Count("sid"), calls=Sum("api_call_count"))
    return {
        "sessions": sessions["n"],
        "calls": sessions["calls"] or 0,
        "hour_calls": sum(
            sum(hours.values())
            for hours in AuditSession.objects.values_list("hourly_calls", flat=True)
        ),
        "events": AuditEvent.objects.count(),
        "ended": AuditSession.objects.filter(ended_at__isnull=False).count(),
        # The rollup the analytics layer's triggers keep in the sync's transaction (read by
        # name: audit does not import analytics): the table, plus the deltas the sync's
        # transactions appended and the end of a run (sessions_synced) folds into it.
        "rollup": _rollup_totals(),
    }


def _rollup_totals() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(api_calls), 0), coalesce(sum(sessions_started), 0) FROM ("
            "SELECT api_calls, sessions_started FROM analytics_user_day UNION ALL "
            "SELECT api_calls, sessions_started FROM analytics_user_day_delta) kept"
        )
        calls, sessions = cursor.fetchone()
    return int(calls), int(sessions)


def expected_totals(traffic) -> dict:
    calls, sessions, runs = (traffic.expected[k] for k in ("calls", "sessions", "runs"))
    # events: one login per session; per run one logout and two failed logins
    return {
        "sessions": sessions,
        "calls": calls,
        "hour_calls": calls,
        "events": sessions + 3 * runs,
        "ended": runs,
        "rollup": (calls, sessions),
    }


def test_sync_moves_everything_and_acknowledges(traffic):
    traffic()
    result = services.sync_run()
    assert (result.sessions, result.events) == (4, 7)
    assert totals() == expected_totals(traffic)
    client = get_redis()
    assert client.scard(keys.dirty()) == 0 and not client.exists(keys.dirty_inflight())
    assert client.xlen(keys.events()) == 0
    # The ended session may now expire from Redis; the live ones stay.
    ttls = [client.ttl(keys.session(s.sid)) for s in AuditSession.objects.all()]
    assert sorted(ttl > 0 for ttl in ttls) == [False, False, False, True]


def test_a_replay_changes_nothing(traffic):
    traffic()
    services.sync_run()
    before = totals()
    # Everything marked changed again, and the event cursor wound back: a full replay.
    client = get_redis()
    client.sadd(keys.dirty(), *AuditSession.objects.values_list("sid", flat=True))
    connection.cursor().execute("UPDATE audit_sync_cursor SET last_ms = 0, last_seq = 0")
    services.sync_run()
    assert totals() == before == expected_totals(traffic)


def test_crash_between_commit_and_acknowledgement(traffic, monkeypatch):
    traffic()
    real_script = export._script

    def killed(**kwargs):
        raise ConnectionError("worker killed after the commit")

    def failing_ack(name):
        return killed if name == "ack_sessions" else real_script(name)

    monkeypatch.setattr(export, "_script", failing_ack)
    with pytest.raises(ConnectionError):
        services.sync_run()
    assert get_redis().exists(keys.dirty_inflight())  # not acknowledged: still in Redis
    monkeypatch.setattr(export, "_script", real_script)
    traffic((7,))  # more traffic meanwhile, in a fresh dirty set
    services.sync_run()
    assert totals() == expected_totals(traffic)
    assert not get_redis().exists(keys.dirty_inflight())


def test_crash_between_event_commit_and_trim(traffic, monkeypatch):
    traffic()
    client = get_redis()
    real_xtrim = type(client).xtrim
    calls = {"n": 0}

    def xtrim_dies_after_commit(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first trim is the start-of-run catch-up
            raise ConnectionError("worker killed after the commit")
        return real_xtrim(self, *args, **kwargs)

    monkeypatch.setattr(type(client), "xtrim", xtrim_dies_after_commit)
    with pytest.raises(ConnectionError):
        services.sync_run()
    assert client.xlen(keys.events()) == 7  # committed in PostgreSQL, still in the stream
    monkeypatch.undo()
    services.sync_run()
    assert totals() == expected_totals(traffic)
    assert client.xlen(keys.events()) == 0


def test_the_same_batch_delivered_twice(traffic):
    traffic()
    client = get_redis()
    export.changed_claim()
    [batch] = list(export.changed_sessions(100))
    sync.write_sessions(batch, anonymize_ip=False)
    sync.write_sessions(batch, anonymize_ip=False)
    assert client.exists(keys.dirty_inflight())
    services.sync_run()
    services.sync_run()
    assert totals() == expected_totals(traffic)


def test_a_batch_holding_a_session_twice_keeps_the_newer_copy(traffic):
    """SSCAN may return a member twice; the transaction then de-duplicates (most calls wins)."""
    tokens = traffic((10, 20, 5, 25))
    client = APIClient()
    export.changed_claim()
    [older] = list(export.changed_sessions(100))
    for _ in range(7):  # the second session (open) gets 7 more calls before the re-read
        assert client.get("/api/sessions/", **bearer(tokens[1]["access"])).status_code == 200
    assert tracker.flush()
    [newer] = list(export.changed_sessions(100))
    newer.extend(older)  # the newer copies first: the older ones must not win by order
    assert not newer.distinct

    sync.write_sessions(newer, anonymize_ip=False)

    written = totals()
    assert written["sessions"] == 4
    assert written["calls"] == written["hour_calls"] == 60 + 7
    assert written["rollup"] == (60 + 7, 4)


def test_two_syncs_at_once_without_the_lock(traffic, monkeypatch):
    traffic((30, 30, 30, 30, 30, 30))
    for method in ("acquire", "renew", "release"):  # as if the lock did not exist
        monkeypatch.setattr(services.SyncLock, method, lambda self: True)
    errors = []
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            services.sync_run(batch_size=2)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    services.sync_run()
    assert totals() == expected_totals(traffic)


def test_the_lock_keeps_a_second_run_out(traffic):
    traffic()
    lock = services.SyncLock()
    assert lock.acquire()
    try:
        assert services.sync_run().skipped
        assert totals()["sessions"] == 0
    finally:
        lock.release()
    assert not services.sync_run().skipped
    assert int(get_redis().hget(keys.stats(), "sync_runs:skipped")) == 1


def test_postgresql_down_during_a_sync(traffic, unused_tcp_port):
    traffic()
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = unused_tcp_port
    try:
        with pytest.raises(OperationalError):
            services.sync_run()
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved
    client = get_redis()
    assert client.scard(keys.dirty_inflight()) + client.scard(keys.dirty()) == 4
    assert client.xlen(keys.events()) == 7
    assert int(client.hget(keys.stats(), "sync_runs:error")) == 1
    services.sync_run()
    assert totals() == expected_totals(traffic)


def test_ip_anonymization(traffic, settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "AUDIT_IP_ANONYMIZE": True}
    traffic()
    services.sync_run()
    assert {str(ip) for ip in AuditSession.objects.values_list("ip", flat=True)} == {"127.0.0.0"}
    event_ips = AuditEvent.objects.exclude(ip=None).values_list("ip", flat=True)
    assert {str(ip) for ip in event_ips} == {"127.0.0.0"}


def test_redis_losing_a_session_does_not_hide_its_new_calls(api_client, user, password):
    """Redis restarts empty: the session is rebuilt from its token counting from zero, as a new
    generation that PostgreSQL adds to what it had, instead of keeping the larger count."""
    client = get_redis()
    tokens = login(api_client, user.username, password).json()

    def calls(n):
        for _ in range(n):
            assert api_client.get("/api/sessions/", **bearer(tokens["access"])).status_code == 200
        assert tracker.flush()
        services.sync_run()
        session = AuditSession.objects.get()
        return session.api_call_count, sum(session.hourly_calls.values())

    assert calls(10) == (10, 10)
    client.flushdb()  # what a restart without persistence leaves
    assert calls(5) == (15, 15)
    assert calls(3) == (18, 18)
    client.sadd(keys.dirty(), AuditSession.objects.get().sid)  # a replay changes nothing
    services.sync_run()
    assert AuditSession.objects.get().api_call_count == 18
