"""Each user's API calls per minute over the last hour, kept in Redis by the tracking flush.

Ground truth: known calls at known minutes (a hand-moved clock), read back exactly; the ring
never grows past its slots; the key really expires.
"""

import time

import pytest
from rest_framework.test import APIClient

from accounts import livesessions, services, tracking
from accounts.tracking import tracker
from core.redis import get_redis
from core.rediskeys import keys

from .helpers import bearer, login

pytestmark = pytest.mark.django_db


def _at_minute_start(frozen_clock) -> None:
    frozen_clock.now = livesessions.minute_of(frozen_clock.now) + 60 + 5


def _call(access: str) -> None:
    assert APIClient().get("/api/me/", **bearer(access)).status_code == 200


def _open(user, password) -> services.TokenPair:
    return services.login(username=user.username, password=password, ip="192.0.2.7", user_agent="t")


def _calls(session: services.TokenPair, user, n: int) -> None:
    for _ in range(n):
        assert (
            tracker.authorize(
                sid=session.sid,
                user_id=user.pk,
                started_at=livesessions.get(session.sid).started_at,
                ip="192.0.2.7",
                user_agent="t",
            )
            is tracking.Verdict.OK
        )


def test_calls_per_minute_are_exact_per_user_and_minute(
    api_client, user, password, django_user_model, frozen_clock
):
    _at_minute_start(frozen_clock)
    other = django_user_model.objects.create_user("other", password=password)
    first = login(api_client, user.username, password).json()["access"]
    second = login(api_client, user.username, password).json()["access"]
    others = login(api_client, other.username, password).json()["access"]
    start = livesessions.minute_of(frozen_clock.now)
    for k in range(5):  # minute k: k + 1 calls on one session, 2 on the other
        for _ in range(k + 1):
            _call(first)
        for _ in range(2):
            _call(second)
        for _ in range(7):
            _call(others)
        assert tracker.flush()
        frozen_clock.advance(60)
    frozen_clock.advance(-60)  # the last minute written is "now"

    minutes = livesessions.calls_per_minute(user_id=user.pk, now=frozen_clock.now)
    assert len(minutes) == 60
    assert minutes[-1][0] == start + 4 * 60
    assert [calls for _, calls in minutes[-5:]] == [3, 4, 5, 6, 7]
    assert sum(calls for _, calls in minutes) == 25
    theirs = livesessions.calls_per_minute(user_id=other.pk, now=frozen_clock.now)
    assert [calls for _, calls in theirs[-5:]] == [7] * 5


def test_a_minute_split_over_many_flushes_adds_up(user, password, frozen_clock):
    _at_minute_start(frozen_clock)
    session = _open(user, password)
    for _ in range(10):
        _calls(session, user, 3)
        assert tracker.flush()
        frozen_clock.advance(1)
    assert livesessions.calls_per_minute(user_id=user.pk, now=frozen_clock.now)[-1][1] == 30


def test_the_ring_keeps_one_hour_and_never_grows(user, password, frozen_clock):
    _at_minute_start(frozen_clock)
    session = _open(user, password)
    for minute in range(150):  # two and a half hours, a different count each minute
        _calls(session, user, minute % 7 + 1)
        assert tracker.flush()
        frozen_clock.advance(60)
    frozen_clock.advance(-60)
    assert get_redis().hlen(keys.user_calls_per_minute(user.pk)) == tracking.CALLS_PER_MINUTE_SLOTS
    minutes = livesessions.calls_per_minute(user_id=user.pk, now=frozen_clock.now)
    assert [calls for _, calls in minutes] == [m % 7 + 1 for m in range(90, 150)]
    # Ten minutes of silence: the ten newest minutes are zero, the oldest ten left the window.
    frozen_clock.advance(600)
    later = livesessions.calls_per_minute(user_id=user.pk, now=frozen_clock.now)
    assert [calls for _, calls in later] == [m % 7 + 1 for m in range(100, 150)] + [0] * 10


def test_the_key_expires_an_hour_after_its_newest_minute(user, password, frozen_clock):
    session = _open(user, password)
    _calls(session, user, 1)
    assert tracker.flush()
    ttl = get_redis().ttl(keys.user_calls_per_minute(user.pk))
    assert 3600 < ttl <= tracking.CALLS_PER_MINUTE_TTL


def test_the_key_really_expires(user, password, monkeypatch):
    monkeypatch.setattr(tracking, "CALLS_PER_MINUTE_TTL", 1)
    session = _open(user, password)
    _calls(session, user, 4)
    assert tracker.flush()
    key = keys.user_calls_per_minute(user.pk)
    assert get_redis().exists(key)
    time.sleep(1.5)
    assert not get_redis().exists(key)
    assert sum(c for _, c in livesessions.calls_per_minute(user_id=user.pk, now=time.time())) == 0


def test_a_foreign_token_counts_nothing_for_either_user(
    user, password, django_user_model, frozen_clock
):
    other = django_user_model.objects.create_user("other", password=password)
    session = _open(user, password)
    assert (
        tracker.authorize(
            sid=session.sid, user_id=other.pk, started_at=frozen_clock.now, ip="", user_agent="t"
        )
        is tracking.Verdict.OK
    )
    assert tracker.flush()
    for someone in (user, other):
        assert not get_redis().exists(keys.user_calls_per_minute(someone.pk))


def test_memory_per_active_user_is_bounded(user, password, frozen_clock):
    """A user active in every minute of the hour, with large counts: the ring's full size."""
    _at_minute_start(frozen_clock)
    session = _open(user, password)
    for _ in range(60):
        _calls(session, user, 1)
        assert tracker.flush()
        frozen_clock.advance(60)
    key = keys.user_calls_per_minute(user.pk)
    client = get_redis()
    assert client.memory_usage(key, samples=0) < 1200  # one call a minute
    for field, value in client.hgetall(key).items():  # 6-digit counts: a very busy client
        client.hset(key, field, value.decode().split(":")[0] + ":123456")
    used = client.memory_usage(key, samples=0)
    assert client.object("encoding", key) == b"listpack"
    assert used < 1400, used  # measured: 1,336 bytes (README, "Performance")
