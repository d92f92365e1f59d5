"""Suspicious IPs against a workload whose answer is written out here by hand.

Failed logins go through the real login gate (accounts.services.login) on a hand-moved clock,
reach PostgreSQL through the real sync, and the views' clock is pinned to the same "now" T.

address          when          failures                               24 h   7 d
198.51.100.50    T-2h          15 unknown usernames, 3 user agents    yes    yes   stuffer
198.51.100.60    T-20/17/14h   12 wrong passwords for alice, 4 a time yes  yes   >= 10 failures
198.51.100.90    T-5h          5 usernames, once each                 yes    yes   = 5 usernames
198.51.100.91    T-4h          4 usernames, twice each (8)            no     no    under both
198.51.100.70    T-1h          3 wrong passwords for bob (a typo)     no     no
198.51.100.80    T-3d          6 usernames                            no     yes
"""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse

from accounts import services as account_services
from accounts.tracking import tracker
from analytics import selectors
from analytics import services as analytics_services
from audit import services as audit_services
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db

HOUR = 3600
T = datetime(2026, 11, 20, 14, 30, tzinfo=UTC).timestamp()


def _window_passes() -> None:
    """The throttling's counters live in Redis, which expires them on its own (real) clock: on
    the hand-moved clock hours pass without them going, so they go here."""
    client = get_redis()
    for key in client.scan_iter(match=f"{keys.prefix}:thr:*", count=1000):
        client.delete(key)


def _fail(clock, at: float, username: str, ip: str, agent: str = "client/1") -> None:
    clock.now = at
    with pytest.raises((account_services.LoginFailed, account_services.LoginThrottled)):
        account_services.login(username=username, password="wrong", ip=ip, user_agent=agent)


@pytest.fixture
def attacks(django_user_model, password, frozen_clock):
    for name in ("alice", "bob"):
        django_user_model.objects.create_user(name, password=password)
    for n in range(6):
        _fail(frozen_clock, T - 72 * HOUR + n, f"old{n}", "198.51.100.80")
    for start in (20, 17, 14):
        _window_passes()
        for n in range(4):
            agent = "guesser/1" if start == 20 else "guesser/2"
            _fail(frozen_clock, T - start * HOUR + n * 10, "alice", "198.51.100.60", agent)
    _window_passes()
    for n in range(5):
        _fail(frozen_clock, T - 5 * HOUR + n, f"five{n}", "198.51.100.90")
    for n in range(8):
        _fail(frozen_clock, T - 4 * HOUR + n, f"four{n % 4}", "198.51.100.91")
    for n in range(15):
        agent = ("stuffer/a", "stuffer/b", "stuffer/c")[n % 3]
        _fail(frozen_clock, T - 2 * HOUR + n, f"user{n:02d}", "198.51.100.50", agent)
    for n in range(3):
        _fail(frozen_clock, T - HOUR + n * 30, "bob", "198.51.100.70")
    frozen_clock.now = T
    assert tracker.flush()
    audit_services.sync_run()
    with connection.cursor() as cursor:
        cursor.execute(f"SET sessionhub.now = '{datetime.fromtimestamp(T, UTC).isoformat()}'")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


def _summary(rows) -> list[tuple]:
    return [(r.ip, r.attempts, r.usernames_tried, r.user_agent_count) for r in rows]


def test_one_row_per_address_past_the_threshold_stuffer_first(attacks):
    rows = selectors.suspicious_ips(hours=24)
    assert _summary(rows) == [
        ("198.51.100.50", 15, 15, 3),
        ("198.51.100.90", 5, 5, 1),
        ("198.51.100.60", 12, 1, 2),
    ]
    stuffer = rows[0]
    assert stuffer.user_agents == ["stuffer/a", "stuffer/b", "stuffer/c"]
    assert stuffer.first_seen.timestamp() == T - 2 * HOUR
    assert stuffer.last_seen.timestamp() == T - 2 * HOUR + 14
    assert rows[2].first_seen.timestamp() == T - 20 * HOUR


def test_the_range_reaches_back_seven_days(attacks):
    assert _summary(selectors.suspicious_ips(hours=168)) == [
        ("198.51.100.50", 15, 15, 3),
        ("198.51.100.80", 6, 6, 1),
        ("198.51.100.90", 5, 5, 1),
        ("198.51.100.60", 12, 1, 2),
    ]


def test_the_threshold_is_configurable(attacks, settings):
    settings.SESSIONHUB = {
        **settings.SESSIONHUB,
        "SUSPICIOUS_IP_MIN_FAILURES": 3,
        "SUSPICIOUS_IP_MIN_USERNAMES": 100,
    }
    assert [r.ip for r in selectors.suspicious_ips(hours=24)] == [
        "198.51.100.50",
        "198.51.100.90",
        "198.51.100.91",
        "198.51.100.60",
        "198.51.100.70",
    ]


def test_the_view_grafana_reads_is_the_same_definition(attacks, settings):
    analytics_services.thresholds_sync()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT host(ip), attempts, usernames_tried, user_agent_count "
            "FROM analytics_suspicious_ips ORDER BY usernames_tried DESC, attempts DESC"
        )
        assert cursor.fetchall() == _summary(selectors.suspicious_ips(hours=24))
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SUSPICIOUS_IP_MIN_USERNAMES": 6}
    analytics_services.thresholds_sync()
    with connection.cursor() as cursor:
        cursor.execute("SELECT host(ip) FROM analytics_suspicious_ips ORDER BY 1")
        assert cursor.fetchall() == [("198.51.100.50",), ("198.51.100.60",)]


def test_the_security_pages_range_switch_applies_to_the_table(attacks, admin_client):
    url = reverse("admin:analytics_security")
    day = admin_client.get(url).content.decode()
    week = admin_client.get(url, {"range": "7d"}).content.decode()
    assert "Suspicious IPs, last 24 hours" in day and "Suspicious IPs, last 7 days" in week
    assert "198.51.100.80" not in day and "198.51.100.80" in week
    for html in (day, week):
        assert "198.51.100.70" not in html and "198.51.100.91" not in html
        assert html.index("198.51.100.50") < html.index("198.51.100.60")
        assert 'stuffer/a</span>, <span class="user-agent">stuffer/b' in html
