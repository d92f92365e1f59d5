"""Login throttling: per (username, IP) and per IP, exponential cool-off, no enumeration."""

import json
import logging
import time

import pytest

from accounts import services, throttling
from audit import services as audit_services
from audit.models import AuditEvent
from core.redis import get_redis
from core.rediskeys import keys

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
    [lock] = [lock for lock in throttling.lockouts_current(now=time.time()) if lock.scope == "ip"]
    assert lock.ip == "203.0.113.50"


def test_lifting_a_lockout(api_client, user, password, staff_user, limits):
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"])
    [lock] = throttling.lockouts_current(now=time.time())
    assert (lock.username, lock.scope) == (user.username, "user_ip")
    assert services.lockout_lift(key=lock.key, actor_id=staff_user.pk)
    assert login(api_client, user.username, password).status_code == 200
    assert not throttling.lockouts_current(now=time.time())


def test_failures_are_counted_by_bounded_reason(api_client, user, limits):
    login(api_client, "ghost", "x")
    login(api_client, user.username, "x")
    stats = get_redis().hgetall(keys.stats())
    assert stats[b"login_failures:unknown_user"] == b"1"
    assert stats[b"login_failures:bad_password"] == b"1"


# --- helpers of the attack replays ---------------------------------------------------------


def stream_events(event_type: str | None = None) -> list[dict]:
    found = [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]
    return [event for event in found if event_type is None or event["type"] == event_type]


def throttled_count() -> int:
    return int(get_redis().hget(keys.stats(), "login_failures:throttled") or 0)


def checked(statuses: list[int]) -> int:
    """Attempts whose password was checked (answered 401/200, not refused with 429)."""
    return sum(status != 429 for status in statuses)


# --- IPv6: a /64 is one client ---------------------------------------------------------------


def test_addresses_of_one_ipv6_64_share_the_pair_counter(api_client, user, password, limits):
    """40 addresses of one /64, 4 wrong passwords each: the pair locks after 5 failures."""
    statuses = [
        login(api_client, user.username, "wrong", REMOTE_ADDR=f"2001:db8:1:2::{n:x}").status_code
        for n in range(1, 41)
        for _ in range(4)
    ]
    assert checked(statuses) == limits["LOGIN_FAILURE_LIMIT"]
    assert (
        login(api_client, user.username, password, REMOTE_ADDR="2001:db8:1:2::ffff").status_code
        == 429
    )
    # The victim elsewhere is not locked out.
    assert (
        login(api_client, user.username, password, REMOTE_ADDR="2001:db8:1:3::1").status_code == 200
    )
    [lock] = throttling.lockouts_current(now=time.time())
    assert (lock.scope, lock.ip) == ("user_ip", "2001:db8:1:2::/64")


def test_addresses_of_one_ipv6_64_share_the_ip_lock(api_client, user, password, limits):
    for n in range(limits["LOGIN_IP_USERNAME_LIMIT"]):
        response = login(
            api_client, f"victim{n}", "hunter2", REMOTE_ADDR=f"2001:db8:9:9::{n + 1:x}"
        )
        assert response.status_code == 401
    rotated = {"REMOTE_ADDR": "2001:db8:9:9:ffff:ffff:ffff:fffe"}
    assert login(api_client, user.username, password, **rotated).status_code == 429
    assert (
        login(api_client, user.username, password, REMOTE_ADDR="2001:db8:9:a::1").status_code == 200
    )


# --- one account, guessed at from many addresses ---------------------------------------------


def test_distributed_guessing_is_slowed_but_the_real_user_gets_in(
    api_client, user, password, limits, frozen_clock
):
    home = {"REMOTE_ADDR": "198.51.100.10"}
    assert login(api_client, user.username, password, **home).status_code == 200
    # 40 addresses, 4 wrong passwords each: 160 attempts, none enough for a pair lock.
    statuses, waits = [], set()
    for n in range(40):
        for _ in range(4):
            response = login(api_client, user.username, "wrong", REMOTE_ADDR=f"192.0.2.{n + 1}")
            statuses.append(response.status_code)
            if response.status_code == 429:
                waits.add(int(response["Retry-After"]))
    assert checked(statuses) == limits["LOGIN_ACCOUNT_FAILURE_LIMIT"]
    assert statuses.count(429) == 160 - limits["LOGIN_ACCOUNT_FAILURE_LIMIT"]
    assert max(waits) <= limits["LOGIN_ACCOUNT_DELAY_SECONDS"]
    # The attacker's next address, right password or not, waits for the turn...
    stranger = {"REMOTE_ADDR": "192.0.2.200"}
    assert login(api_client, user.username, password, **stranger).status_code == 429
    # ...the user, from where they logged in before, is not slowed at all...
    assert login(api_client, user.username, password, **home).status_code == 200
    # ...and from a new address gets the next turn.
    frozen_clock.advance(limits["LOGIN_ACCOUNT_DELAY_SECONDS"])
    assert login(api_client, user.username, password, REMOTE_ADDR="203.0.113.77").status_code == 200
    [lane] = [
        lock
        for lock in throttling.lockouts_current(now=frozen_clock.now)
        if lock.scope == "account"
    ]
    assert lane.username == user.username
    assert [e["reason"] for e in stream_events("locked_out")] == ["account"]


def test_the_slow_lane_answers_unknown_usernames_alike(api_client, user, limits, frozen_clock):
    def attack(username: str) -> list[tuple[int, str | None]]:
        return [
            (r.status_code, r.get("Retry-After"))
            for r in (
                login(api_client, username, "wrong", REMOTE_ADDR=f"192.0.2.{n + 1}")
                for n in range(limits["LOGIN_ACCOUNT_FAILURE_LIMIT"] + 5)
            )
        ]

    assert attack(user.username) == attack("ghost")


def test_an_hour_of_distributed_guessing_stays_within_asvs_limit(
    api_client, user, limits, frozen_clock
):
    """ASVS 2.2.1: at most 100 failed attempts an hour on one account. An attacker with a fresh
    address every 4 s, for two hours: no hour sees more password checks than the lane lets by."""
    checks = []
    for n in range(1800):
        address = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        if login(api_client, user.username, "wrong", REMOTE_ADDR=address).status_code == 401:
            checks.append(frozen_clock.now)
        frozen_clock.advance(4)
    ceiling = limits["LOGIN_ACCOUNT_FAILURE_LIMIT"] + 3600 // limits["LOGIN_ACCOUNT_DELAY_SECONDS"]
    worst = max(sum(1 for t in checks if start <= t < start + 3600) for start in checks)
    print(f"worst hour: {worst} password checks of {len(checks)} in 2 h (ceiling {ceiling})")
    assert limits["LOGIN_ACCOUNT_FAILURE_LIMIT"] < worst <= ceiling <= 100


def test_account_limits_are_settings(api_client, user, settings, frozen_clock):
    settings.SESSIONHUB = {
        **settings.SESSIONHUB,
        "LOGIN_ACCOUNT_FAILURE_LIMIT": 3,
        "LOGIN_ACCOUNT_DELAY_SECONDS": 7,
    }
    statuses = [
        login(api_client, user.username, "wrong", REMOTE_ADDR=f"192.0.2.{n + 1}") for n in range(5)
    ]
    assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
    assert statuses[-1]["Retry-After"] == "7"


# --- refusals while locked: counted, reported once per lock period ---------------------------


def test_refusals_write_one_event_and_one_log_line_per_lock_period(
    api_client, user, limits, frozen_clock, caplog
):
    attacker = {"REMOTE_ADDR": "198.51.100.66", "HTTP_USER_AGENT": "burst/1"}
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"], **attacker)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert fail_times(api_client, user.username, 300, **attacker) == [429] * 300
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["accounts.throttling"]
    assert "198.51.100.66" not in warnings[0].getMessage()
    assert throttled_count() == 300  # the metric still counts every refusal
    [first] = [e for e in stream_events("login_failed") if e["reason"] == "throttled"]
    assert (first["ip"], first["ua"]) == ("198.51.100.66", "burst/1")
    assert len(stream_events("locked_out")) == 1
    assert stream_events("lockout_lifted") == []

    # The lock ends: the beat job reports the period, dated when it ended.
    until = throttling.lockouts_current(now=frozen_clock.now)[0].locked_until
    frozen_clock.advance(limits["LOGIN_LOCKOUT_BASE_SECONDS"] + 1)
    assert services.lockout_periods_close() == 1
    assert services.lockout_periods_close() == 0  # once
    [lifted] = stream_events("lockout_lifted")
    assert (lifted["reason"], lifted["actor"], lifted["username"]) == ("refused=300", None, "alice")
    assert lifted["ts"] == pytest.approx(until, abs=0.01)

    # The next lock is a new period: one more event and log line, its own count.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert fail_times(api_client, user.username, 11, **attacker) == [401] + [429] * 10
    refusal_lines = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.getMessage().startswith("Unauthorized")
    ]
    assert [r.name for r in refusal_lines] == ["accounts.throttling"]
    frozen_clock.advance(limits["LOGIN_LOCKOUT_BASE_SECONDS"] * 2 + 1)
    services.lockout_periods_close()
    assert [e["reason"] for e in stream_events("lockout_lifted")] == ["refused=300", "refused=10"]
    assert len([e for e in stream_events("login_failed") if e["reason"] == "throttled"]) == 2

    # And the counts reach the audit trail in PostgreSQL.
    audit_services.sync_run()
    assert list(
        AuditEvent.objects.filter(event_type="lockout_lifted")
        .order_by("occurred_at")
        .values_list("reason", flat=True)
    ) == ["refused=300", "refused=10"]


def test_an_admin_lift_reports_the_refusals_and_names_the_admin(
    api_client, user, password, staff_user, limits
):
    fail_times(api_client, user.username, limits["LOGIN_FAILURE_LIMIT"])
    fail_times(api_client, user.username, 7)
    [lock] = throttling.lockouts_current(now=time.time())
    assert services.lockout_lift(key=lock.key, actor_id=staff_user.pk)
    [lifted] = stream_events("lockout_lifted")
    assert (lifted["reason"], lifted["actor"]) == ("refused=7", staff_user.pk)
    assert services.lockout_periods_close() == 0  # the lift closed the period
    assert login(api_client, user.username, password).status_code == 200


def test_the_beat_job_closes_the_periods():
    from django.conf import settings

    from accounts import tasks

    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["accounts.tasks.lockout_periods_close"]["schedule"] <= 30
    assert tasks.lockout_periods_close() == 0


# --- the client address the counters see -----------------------------------------------------


def test_a_direct_client_cannot_steer_its_address_in_hop_count_mode(
    api_client, user, password, limits, settings
):
    settings.TRUSTED_PROXIES = "1"
    direct = {"REMOTE_ADDR": "8.8.4.4"}
    assert api_client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1", **direct).status_code == 403
    statuses = [
        login(api_client, user.username, "wrong", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}", **direct)
        for n in range(limits["LOGIN_FAILURE_LIMIT"] + 3)
    ]
    assert [r.status_code for r in statuses][-3:] == [429] * 3


@pytest.mark.parametrize("hop", ["garbage", "127.1", "0177.0.0.1", "::1%1"])
def test_an_unparsable_hop_is_an_untrusted_client(api_client, settings, hop):
    settings.TRUSTED_PROXIES = "127.0.0.1/32"
    behind_proxy = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": hop}
    assert api_client.get("/metrics", **behind_proxy).status_code == 403
    assert api_client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_clients_without_an_address_are_served_and_throttled_together(
    api_client, user, password, limits, settings
):
    settings.TRUSTED_PROXIES = "1"
    for n in range(limits["LOGIN_FAILURE_LIMIT"]):
        forged = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"fe80::{n + 1}%<img>"}
        assert login(api_client, user.username, "wrong", **forged).status_code == 401
    other = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "not-an-address"}
    assert login(api_client, user.username, password, **other).status_code == 429
    assert {e["ip"] for e in stream_events("login_failed")} == {""}
    audit_services.sync_run()
    assert set(AuditEvent.objects.values_list("ip", flat=True)) == {None}
