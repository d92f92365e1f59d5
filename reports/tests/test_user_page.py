"""The per-user page against a workload whose answer is written out here by hand.

alice  T-3d..T-2d   60 sessions, each logged in and out (120 timeline entries)
       T-8d         1 wrong password from 203.0.113.1 (outside the 7 days)
       T-20h        3 wrong passwords as "ALICE" from 203.0.113.1, 2 from 203.0.113.2 (T-30 min)
       T-10 min     a Firefox-on-Linux session: 3 calls at T-3 min, 4 at T-2 min
       T-5 min      a curl session: 5 calls at T-2 min, 6 at T-1 min
bob             3 wrong passwords from 203.0.113.1 (not alice's)
Timeline: 120 + 2 live sessions started + 5 failed logins in 7 days + 1 older = 128 entries.
"""

import pytest
from django.urls import reverse

from accounts import livesessions
from accounts import services as account_services
from accounts.tracking import Verdict, tracker
from analytics import selectors
from audit import services as audit_services
from core import clock

pytestmark = pytest.mark.django_db

MINUTE, HOUR, DAY = 60, 3600, 86400
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CURL = "curl/8.5.0"


def _fail(frozen_clock, at, username, ip):
    frozen_clock.now = at
    with pytest.raises(account_services.LoginFailed):
        account_services.login(username=username, password="wrong", ip=ip, user_agent="guess/1")


def _calls(frozen_clock, at, user, pair, agent, n):
    frozen_clock.now = at
    session = livesessions.get(pair.sid)
    for _ in range(n):
        verdict = tracker.authorize(
            sid=pair.sid,
            user_id=user.pk,
            started_at=session.started_at,
            ip="192.0.2.10",
            user_agent=agent,
        )
        assert verdict is Verdict.OK
    assert tracker.flush()


@pytest.fixture
def alice(django_user_model, password, frozen_clock):
    # Whole minutes, so that "T-2 min" is one minute bucket; the views' clock is the real one.
    now = (clock.now() // MINUTE) * MINUTE + 30
    user = django_user_model.objects.create_user("alice", password=password)
    django_user_model.objects.create_user("bob", password=password)
    _fail(frozen_clock, now - 8 * DAY, "alice", "203.0.113.1")
    for n in range(60):
        frozen_clock.now = now - 3 * DAY + n * 600
        pair = account_services.login(
            username="alice", password=password, ip="192.0.2.10", user_agent="app/1"
        )
        frozen_clock.now += 60
        account_services.logout(raw_refresh=pair.refresh)
    for n in range(3):
        _fail(frozen_clock, now - 20 * HOUR + n, "ALICE", "203.0.113.1")
        _fail(frozen_clock, now - 20 * HOUR + 10 + n, "bob", "203.0.113.1")
    for n in range(2):
        _fail(frozen_clock, now - 30 * MINUTE + n, "alice", "203.0.113.2")
    frozen_clock.now = now - 10 * MINUTE
    firefox = account_services.login(
        username="alice", password=password, ip="192.0.2.10", user_agent=FIREFOX
    )
    frozen_clock.now = now - 5 * MINUTE
    curl = account_services.login(
        username="alice", password=password, ip="192.0.2.11", user_agent=CURL
    )
    _calls(frozen_clock, now - 3 * MINUTE, user, firefox, FIREFOX, 3)
    _calls(frozen_clock, now - 2 * MINUTE, user, firefox, FIREFOX, 4)
    _calls(frozen_clock, now - 2 * MINUTE + 1, user, curl, CURL, 5)
    _calls(frozen_clock, now - 1 * MINUTE, user, curl, CURL, 6)
    frozen_clock.now = now
    audit_services.sync_run()
    return user


def test_the_timeline_comes_a_page_at_a_time_newest_first(alice):
    pages = [
        selectors.user_timeline(user_id=alice.pk, username="alice", page=n, per_page=50)
        for n in (1, 2, 3)
    ]
    assert [len(p.entries) for p in pages] == [50, 50, 28]
    assert [p.has_next for p in pages] == [True, True, False]
    entries = [entry for p in pages for entry in p.entries]
    times = [entry.at for entry in entries]
    assert times == sorted(times, reverse=True)
    kinds = [entry.kind for entry in entries]
    assert kinds.count("Session started") == 62
    assert kinds.count("Session ended") == 60
    assert kinds.count("Login failed") == 6
    assert entries[0].kind == "Session started" and entries[0].user_agent == CURL


def test_failed_logins_against_the_account(alice):
    failures = selectors.account_failures(username="alice")
    assert (failures.last_24h, failures.last_7d) == (5, 5)
    assert [(s.ip, s.attempts, s.reasons) for s in failures.sources] == [
        # "ALICE" is no username (they are case-sensitive) but names the account, as the
        # login gate counts it (case-folded).
        ("203.0.113.1", 3, ["unknown_user"]),
        ("203.0.113.2", 2, ["bad_password"]),
    ]


def test_devices_and_calls_per_minute_now(alice, frozen_clock):
    detail = selectors.user_detail(user_id=alice.pk)
    assert [(d.device.label, d.sessions, d.ips) for d in detail.devices] == [
        ("curl 8.5.0 (script)", 1, ["192.0.2.11"]),
        ("Firefox 133 on Linux (desktop)", 1, ["192.0.2.10"]),
    ]
    per_minute = detail.calls_per_minute
    assert len(per_minute) == 60 and per_minute[-1][0] == livesessions.minute_of(frozen_clock.now)
    assert [calls for _, calls in per_minute[-4:]] == [3, 9, 6, 0]
    assert sum(calls for _, calls in per_minute) == 18


def test_the_page_renders_every_section(alice, admin_client):
    url = reverse("admin:analytics_user_detail", args=[alice.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for section in (
        'id="user-daily-chart"',
        'id="user-minute-chart"',
        'id="user-live-sessions"',
        'id="user-devices"',
        'id="user-failed-logins"',
        'id="timeline"',
        'id="timeline-older"',
    ):
        assert section in html, section
    assert "API calls per minute (calls per minute), last hour" in html
    assert "API calls per day (calls per UTC day), last 30 days" in html
    assert response.context["calls_last_hour"] == 18
    assert html.count('<tr class="device">') == 2
    assert len(response.context["detail"].timeline.entries) == 50
    last = admin_client.get(url, {"page": 3})
    assert len(last.context["detail"].timeline.entries) == 28
    assert 'id="timeline-older"' not in last.content.decode()
    assert 'id="timeline-newer"' in last.content.decode()


def test_the_page_says_so_when_redis_is_away(alice, admin_client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = admin_client.get(reverse("admin:analytics_user_detail", args=[alice.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("Redis is unavailable right now.") == 2  # live sessions, per-minute chart
    assert 'id="timeline"' in html and 'id="user-failed-logins"' in html
