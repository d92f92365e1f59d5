"""Login throttling: per (username, IP) and per IP, exponential cool-off, no enumeration."""

import pytest

from accounts import services, throttling
from sessionhub.redis import get_redis
from sessionhub.rediskeys import keys

from .helpers import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    return settings.SESSIONHUB


def fail_times(api_client, username, times, **extra):
    return [login(api_client, username, "wrong", **extra).status_code for _ in range(times)]


def test_lockout_after_the_limit_refuses_even_the_right_password(
    api_client, user, password, limits, frozen_clock
):
    assert fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"]) == [401] * 5
    response = login(api_client, user.username, password)
    assert response.status_code == 429
    assert int(response["Retry-After"]) == limits["LOGIN_LOCKOUT_BASE_SECONDS"]
    frozen_clock.advance(limits["LOGIN_LOCKOUT_BASE_SECONDS"] + 1)
    assert login(api_client, user.username, password).status_code == 200


def test_cool_off_doubles_with_each_further_failure(api_client, user, limits, frozen_clock):
    base = limits["LOGIN_LOCKOUT_BASE_SECONDS"]
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"])
    waits = []
    for _ in range(3):
        response = login(api_client, user.username, "wrong")
        assert response.status_code == 429
        waits.append(int(response["Retry-After"]))
        frozen_clock.advance(waits[-1] + 1)
        assert login(api_client, user.username, "wrong").status_code == 401
    assert waits == [base, base * 2, base * 4]


def test_throttled_answer_is_the_same_for_real_and_unknown_users(api_client, user, limits):
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"])
    fail_times(api_client, "ghost", limits["LOGIN_FAILURE_LIMIT"])
    real = login(api_client, user.username, "wrong")
    ghost = login(api_client, "ghost", "wrong")
    assert real.status_code == ghost.status_code == 429
    assert real.json() == ghost.json()
    assert real["Retry-After"] == ghost["Retry-After"]


def test_success_resets_the_pair(api_client, user, password, limits):
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"] - 1)
    assert login(api_client, user.username, password).status_code == 200
    assert fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"] - 1) == [401] * 4
    assert login(api_client, user.username, password).status_code == 200


def test_usernames_are_counted_case_insensitively(api_client, user, limits):
    variants = ["alice", "ALICE", "Alice", "aLiCe", "alicE"]
    assert [login(api_client, name, "wrong").status_code for name in variants] == [401] * 5
    assert login(api_client, "ALIce", "wrong").status_code == 429


def test_one_users_failures_never_lock_out_others_behind_the_same_proxy(
    api_client, user, staff_user, password, limits, settings
):
    settings.TRUSTED_PROXIES = "1"
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    attacker = {**proxy, "HTTP_X_FORWARDED_FOR": "198.51.100.66"}
    colleague = {**proxy, "HTTP_X_FORWARDED_FOR": "198.51.100.77"}
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"] * 4, **attacker)
    assert login(api_client, user.username, password, **attacker).status_code == 429
    assert login(api_client, staff_user.username, password, **colleague).status_code == 200
    assert login(api_client, user.username, password, **colleague).status_code == 200
    # Same IP as the locked pair, another account: still let in.
    assert login(api_client, staff_user.username, password, **attacker).status_code == 200


def test_forged_forwarded_for_does_not_escape_the_lock(
    api_client, user, password, limits, settings
):
    settings.TRUSTED_PROXIES = "1"
    fail_times(
        api_client,
        user.username,
        limits["LOGIN_FAILURE_LIMIT"],
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.66",
    )
    forged = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 198.51.100.66"}
    assert login(api_client, user.username, password, **forged).status_code == 429


def test_credential_stuffing_locks_the_ip(api_client, user, password, limits):
    stuffer = {"REMOTE_ADDR": "203.0.113.50"}
    for n in range(limits["LOGIN_IP_USERNAME_LIMIT"]):
        assert login(api_client, f"victim{n}", "hunter2", **stuffer).status_code == 401
    assert login(api_client, user.username, password, **stuffer).status_code == 429
    assert login(api_client, user.username, password, REMOTE_ADDR="203.0.113.51").status_code == 200
    [lock] = [
        lock
        for lock in throttling.lockouts_current(now=__import__("time").time())
        if lock.scope == "ip"
    ]
    assert lock.ip == "203.0.113.50"


def test_lifting_a_lockout(api_client, user, password, staff_user, limits):
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"])
    [lock] = throttling.lockouts_current(now=__import__("time").time())
    assert (lock.username, lock.scope) == (user.username, "user_ip")
    assert services.lockout_lift(key=lock.key, actor_id=staff_user.pk)
    assert login(api_client, user.username, password).status_code == 200
    assert not throttling.lockouts_current(now=__import__("time").time())


def test_failures_are_counted_by_bounded_reason(api_client, user, limits):
    login(api_client, "ghost", "x")
    login(api_client, user.username, "x")
    stats = get_redis().hgetall(keys.stats())
    assert stats[b"login_failures:unknown_user"] == b"1"
    assert stats[b"login_failures:bad_password"] == b"1"
