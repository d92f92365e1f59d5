"""Live tracking: exact counts, timeouts on a controlled clock, revocation across processes."""

import os
import threading
import time

import pytest
from rest_framework.test import APIClient

from accounts import livesessions, services
from accounts.events import EndReason
from accounts.tracking import Tracker, Verdict, tracker
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, live_session, login, sid_of

pytestmark = pytest.mark.django_db


def call(access: str, client: APIClient | None = None) -> int:
    return (client or APIClient()).get("/api/sessions/", **bearer(access)).status_code


def test_fifty_concurrent_requests_count_exactly_fifty(tokens):
    statuses = []
    barrier = threading.Barrier(10)

    def worker():
        client = APIClient()
        barrier.wait()
        statuses.extend(call(tokens["access"], client) for _ in range(5))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 50
    session = live_session(sid_of(tokens["access"]))
    assert session.api_call_count == 50
    hour = livesessions.hour_of(session.last_active)
    assert int(get_redis().hget(keys.session(session.sid), f"h:{hour}")) == 50
    assert int(get_redis().hget(keys.stats(), "api_calls")) == 50


def test_flush_batch_is_applied_once_even_if_resent(tokens):
    assert call(tokens["access"]) == 200
    batch = tracker._take_batch()
    assert tracker.flush()  # sends the in-flight batch
    tracker._inflight = batch  # as if the reply had been lost: the same batch goes again
    assert tracker.flush()
    assert livesessions.get(sid_of(tokens["access"])).api_call_count == 1


def test_a_late_repeat_of_a_batch_does_not_drop_the_next_one_in_flight(tokens, monkeypatch):
    """Threaded workers: thread A sends batch 1 and stalls; thread B sends batch 1 again (it is
    applied), then takes batch 2 and stalls; A's reply (-1, already applied) comes back; then
    B's send of batch 2 fails. Batch 2 must still be in flight, and go on the next flush."""
    import redis

    real_script = livesessions.script
    a_sent, a_release = threading.Event(), threading.Event()
    b2_sent, b2_release = threading.Event(), threading.Event()
    calls = []

    def interleaved(name):
        script = real_script(name)
        if name != "track_flush":
            return script

        def send(**kwargs):
            calls.append(threading.current_thread().name)
            number = len(calls)
            if number == 1:  # A, batch 1: reaches Redis, then its reply is late
                result = script(**kwargs)
                a_sent.set()
                a_release.wait(5)
                return result
            if number == 3:  # B, batch 2: stalls, then the connection drops
                b2_sent.set()
                b2_release.wait(5)
                raise redis.ConnectionError("connection dropped mid-flush")
            return script(**kwargs)

        return send

    monkeypatch.setattr(livesessions, "script", interleaved)
    assert call(tokens["access"]) == 200
    thread_a = threading.Thread(target=tracker.flush, name="A")
    thread_a.start()
    assert a_sent.wait(5)
    assert call(tokens["access"]) == 200  # counted into batch 2, pending
    thread_b = threading.Thread(target=tracker.flush, name="B")
    thread_b.start()
    assert b2_sent.wait(5)
    a_release.set()
    thread_a.join(5)
    b2_release.set()
    thread_b.join(5)
    monkeypatch.setattr(livesessions, "script", real_script)
    tracker._redis_retry_at = 0.0  # Redis answers again
    assert tracker.flush()
    assert livesessions.get(sid_of(tokens["access"])).api_call_count == 2


def test_active_sessions_are_counted_with_zcount(api_client, user, password, frozen_clock):
    for _ in range(3):
        login(api_client, user.username, password)
    assert livesessions.count_active(frozen_clock.now - 300) == 3
    frozen_clock.advance(301)
    assert livesessions.count_active(frozen_clock.now - 300) == 0


def test_idle_timeout_on_the_next_request(tokens, frozen_clock, settings):
    assert call(tokens["access"]) == 200
    last = frozen_clock.now
    frozen_clock.advance(settings.SESSIONHUB["IDLE_TIMEOUT"] + 1)
    assert call(tokens["access"]) == 401
    session = live_session(sid_of(tokens["access"]))
    assert session.end_reason == EndReason.IDLE_TIMEOUT
    assert session.ended_at == pytest.approx(last + settings.SESSIONHUB["IDLE_TIMEOUT"])
    assert session.api_call_count == 1


def test_activity_just_inside_the_idle_timeout_keeps_the_session(tokens, frozen_clock, settings):
    for _ in range(4):
        frozen_clock.advance(settings.SESSIONHUB["IDLE_TIMEOUT"] - 1)
        assert call(tokens["access"]) == 200


def test_absolute_timeout_even_when_busy(tokens, frozen_clock, settings):
    conf = settings.SESSIONHUB
    started = float(int(frozen_clock.now))
    steps = int(conf["ABSOLUTE_TIMEOUT"] // (conf["IDLE_TIMEOUT"] - 60))
    for _ in range(steps):
        assert call(tokens["access"]) == 200
        frozen_clock.advance(conf["IDLE_TIMEOUT"] - 60)
    frozen_clock.now = started + conf["ABSOLUTE_TIMEOUT"]
    assert call(tokens["access"]) == 401
    session = live_session(sid_of(tokens["access"]))
    assert session.end_reason == EndReason.ABSOLUTE_TIMEOUT
    assert session.ended_at == started + conf["ABSOLUTE_TIMEOUT"]


def test_expiry_job_ends_abandoned_sessions_with_the_right_reason(
    api_client, user, password, frozen_clock, settings
):
    idle_tokens = login(api_client, user.username, password).json()
    frozen_clock.advance(settings.SESSIONHUB["IDLE_TIMEOUT"] - 10)
    busy_tokens = login(api_client, user.username, password).json()
    frozen_clock.advance(20)
    assert services.sessions_expire_due() == {"idle_timeout": 1, "absolute_timeout": 0}
    assert livesessions.get(sid_of(idle_tokens["access"])).end_reason == "idle_timeout"
    assert not livesessions.get(sid_of(busy_tokens["access"])).is_ended
    assert services.sessions_expire_due() == {"idle_timeout": 0, "absolute_timeout": 0}
    assert get_redis().zcard(keys.active_index()) == 1


def test_revoking_one_session_kills_its_access_token_at_once(api_client, user, password):
    phone = login(api_client, user.username, password).json()
    laptop = login(api_client, user.username, password).json()
    listed = api_client.get("/api/sessions/", **bearer(laptop["access"])).json()["results"]
    assert {row["sid"] for row in listed} == {sid_of(phone["access"]), sid_of(laptop["access"])}
    assert [row["current"] for row in listed if row["sid"] == sid_of(laptop["access"])] == [True]
    response = api_client.delete(
        f"/api/sessions/{sid_of(phone['access'])}/", **bearer(laptop["access"])
    )
    assert response.status_code == 204
    assert call(phone["access"]) == 401
    assert call(laptop["access"]) == 200
    refresh = api_client.post(
        "/api/auth/token/refresh/", {"refresh": phone["refresh"]}, format="json"
    )
    assert refresh.status_code == 401
    assert live_session(sid_of(phone["access"])).end_reason == EndReason.REVOKED


def test_cannot_revoke_someone_elses_session(api_client, user, staff_user, password):
    mine = login(api_client, user.username, password).json()
    theirs = login(api_client, staff_user.username, password).json()
    response = api_client.delete(
        f"/api/sessions/{sid_of(theirs['access'])}/", **bearer(mine["access"])
    )
    assert response.status_code == 404
    assert call(theirs["access"]) == 200


def test_revoke_all_others(api_client, user, password):
    sessions = [login(api_client, user.username, password).json() for _ in range(3)]
    response = api_client.post("/api/sessions/revoke-others/", **bearer(sessions[0]["access"]))
    assert response.json() == {"revoked": 2}
    assert [call(s["access"]) for s in sessions] == [200, 401, 401]


def test_an_end_in_another_process_reaches_this_one_before_the_end_returns(tokens):
    """Two trackers stand for two web processes; one ends the session, and by the time the
    call returns the other refuses it: no waiting for pub/sub on the client's next request."""
    other = Tracker()
    try:
        assert other.wait_subscribed()
        sid = sid_of(tokens["access"])
        started = livesessions.get(sid).started_at
        claims = {"sid": sid, "user_id": 1, "started_at": started, "ip": "", "user_agent": ""}
        assert other.authorize(**claims) is Verdict.OK
        services.session_end(sid=claims["sid"], reason=EndReason.REVOKED)
        assert sid in other._ended
        assert other.authorize(**claims) is Verdict.ENDED
    finally:
        other.shutdown()


def test_a_stalled_process_delays_an_end_by_the_bounded_wait_only(tokens, settings):
    """A subscriber that never acknowledges (a process stuck in a long request, or stopped)
    holds the ending call for REVOCATION_ACK_TIMEOUT, not longer."""
    settings.SESSIONHUB = {**settings.SESSIONHUB, "REVOCATION_ACK_TIMEOUT": 0.3}
    client = get_redis()
    channel = keys.revocation_confirm_channel(client.connection_pool.connection_kwargs["db"])
    stalled = client.pubsub()
    stalled.subscribe(channel)
    assert stalled.get_message(timeout=2)["type"] == "subscribe"
    try:
        started = time.monotonic()
        assert services.session_end(sid=sid_of(tokens["access"]), reason=EndReason.REVOKED)
        waited = time.monotonic() - started
        assert 0.3 <= waited < 1.5
        assert stalled.get_message(timeout=1)["type"] == "message"  # it was told, never said so
    finally:
        stalled.close()


def test_a_listener_whose_connection_drops_while_redis_is_up_resubscribes_at_once(tokens):
    """Only the listener's connection is lost (Redis itself answers): the process must not
    take Redis for down and serve on the JWT alone while ends go by."""
    other = Tracker()
    try:
        assert other.wait_subscribed()
        client = get_redis()
        db = client.connection_pool.connection_kwargs["db"]
        listeners = [
            entry["id"]
            for entry in client.client_list(_type="pubsub")
            if int(entry["db"]) == db and entry["name"] == "sessionhub"
        ]
        assert listeners
        for client_id in listeners:  # this test database's listeners only
            client.client_kill_filter(_id=client_id)
        threading.Event().wait(0.3)
        sid = sid_of(tokens["access"])
        services.session_end(sid=sid, reason=EndReason.REVOKED)
        verdict = other.authorize(
            sid=sid, user_id=1, started_at=livesessions.get(sid).started_at, ip="", user_agent=""
        )
        assert verdict is Verdict.ENDED
    finally:
        other.shutdown()


def test_a_process_that_has_not_loaded_the_ended_sessions_asks_redis(tokens):
    """A worker just forked, or a listener reconnecting: until its set of ended sessions is
    loaded, it cannot tell an ended session from a live one, so it asks Redis."""
    sid = sid_of(tokens["access"])
    services.session_end(sid=sid, reason=EndReason.REVOKED)
    unaware = Tracker()
    unaware._pid = os.getpid()  # as if started, but its listener never subscribed
    claims = {
        "sid": sid,
        "user_id": 1,
        "started_at": livesessions.get(sid).started_at,
        "ip": "",
        "user_agent": "",
    }
    assert unaware.authorize(**claims) is Verdict.ENDED


def test_a_process_that_reconnects_reloads_recent_ends(tokens):
    sid = sid_of(tokens["access"])
    services.session_end(sid=sid, reason=EndReason.REVOKED)
    late = Tracker()  # starts after the end: it never saw the message, only the reload
    try:
        assert late.wait_subscribed()
        verdict = late.authorize(
            sid=sid, user_id=1, started_at=livesessions.get(sid).started_at, ip="", user_agent=""
        )
        assert verdict is Verdict.ENDED
    finally:
        late.shutdown()


def test_password_change_ends_every_session(
    django_capture_on_commit_callbacks, api_client, user, password
):
    sessions = [login(api_client, user.username, password).json() for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        user.set_password("a brand new passphrase")
        user.save()
    assert [call(s["access"]) for s in sessions] == [401, 401]
    for s in sessions:
        assert live_session(sid_of(s["access"])).end_reason == EndReason.PASSWORD_CHANGED


def test_deactivation_ends_every_session(
    django_capture_on_commit_callbacks, api_client, user, password
):
    tokens = login(api_client, user.username, password).json()
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
    assert call(tokens["access"]) == 401
    assert live_session(sid_of(tokens["access"])).end_reason == EndReason.USER_DISABLED


def test_a_login_rehashing_the_password_ends_nothing(
    django_capture_on_commit_callbacks, api_client, user, password, settings
):
    tokens = login(api_client, user.username, password).json()
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert login(api_client, user.username, password).status_code == 200
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")
    assert call(tokens["access"]) == 200


def test_staff_can_end_all_sessions(api_client, user, staff_user, password):
    sessions = [
        login(api_client, name, password).json()
        for name in (user.username, staff_user.username, user.username)
    ]
    assert services.sessions_end_all(actor_id=staff_user.pk) == 3
    assert [call(s["access"]) for s in sessions] == [401, 401, 401]
    assert get_redis().zcard(keys.active_index()) == 0


def test_ending_twice_is_recorded_once(tokens):
    sid = sid_of(tokens["access"])
    assert services.session_end(sid=sid, reason=EndReason.REVOKED) is True
    assert services.session_end(sid=sid, reason=EndReason.REVOKED) is False
    assert int(get_redis().hget(keys.duration_histogram(), "count")) == 1
    assert int(get_redis().hget(keys.stats(), "sessions_ended:revoked")) == 1
