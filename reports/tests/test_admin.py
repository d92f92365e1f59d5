"""The admin's analytics pages on the ground-truth workload: figures, access, actions, queries."""

import csv
import io
import json

import pytest
from django.urls import reverse

from accounts.tests.helpers import login
from accounts.tracking import tracker
from analytics.tests.conftest import staff
from audit import services as audit_services
from audit.models import AuditEvent
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db

REPORTS = [
    "admin:index",
    "admin:analytics_poweruser_changelist",
    "admin:analytics_idleuser_changelist",
    "admin:analytics_useractivity_changelist",
    "admin:analytics_suspiciousip_changelist",
    "admin:audit_auditsession_changelist",
    "admin:audit_auditevent_changelist",
    "admin:analytics_live_sessions",
    "admin:analytics_security",
]


def page(client, user, name, *args, **params):
    client.force_login(user)
    return client.get(reverse(name, args=args), params)


def test_every_report_needs_staff_and_the_permission(client, django_user_model, analyst):
    plain = django_user_model.objects.create_user(username="plain", password="x")
    no_perm = staff(django_user_model, "nopower")
    for name in REPORTS:
        assert page(client, analyst, name).status_code == 200, name
        response = page(client, plain, name)
        assert response.status_code == 302 and "/login/" in response["Location"], name
        response = page(client, no_perm, name)
        if name == "admin:index":
            assert b'id="overview"' not in response.content
        else:
            assert response.status_code == 403, name


def test_overview_shows_the_known_figures(client, analyst, world, django_assert_max_num_queries):
    client.force_login(analyst)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("admin:index"))
    overview = response.context["overview"]
    assert overview.today.dau == 1 and overview.today.wau == 2 and overview.today.mau == 2
    assert overview.api_calls_24h == 80  # alice 70 + bob 10
    assert overview.failed_logins_1h == 24
    assert overview.live.active_now == 0  # alice's last call was 20 minutes ago
    assert dict(overview.sessions_by_status) == {"active_now": 0, "recent": 1, "inactive": 0}
    html = response.content.decode()
    for card in (
        "card-active-now",
        "card-dau",
        "card-calls-24h",
        "card-failed-1h",
        "card-sync-lag",
    ):
        assert f'id="{card}"' in html
    assert html.count("<svg") >= 4 and "cdn" not in html.lower()


def test_power_users_by_window_and_csv(client, analyst, world):
    response = page(client, analyst, "admin:analytics_poweruser_changelist")
    assert [(r.username, r.api_calls) for r in response.context["cl"].result_list] == [
        ("alice", 70),
        ("bob", 10),
    ]
    response = page(client, analyst, "admin:analytics_poweruser_changelist", window="30d")
    assert [(r.username, r.api_calls) for r in response.context["cl"].result_list] == [
        ("alice", 220),
        ("bob", 50),
    ]
    client.force_login(analyst)
    exported = client.get(reverse("admin:analytics_poweruser_export_csv"), {"window": "7d"})
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert rows[0][:4] == ["window", "user_id", "username", "api_calls"]
    assert [(r[2], r[3]) for r in rows[1:]] == [("alice", "220"), ("bob", "10")]


def test_idle_users_filters(client, analyst, world):
    def names(**params):
        response = page(client, analyst, "admin:analytics_idleuser_changelist", **params)
        return sorted(r.username for r in response.context["cl"].result_list)

    # The analyst reading the report has never used the API either: an idle account too.
    assert names() == ["analyst", "carol", "dave"]
    assert names(idle="30") == ["analyst", "carol", "dave"]
    assert names(idle="90") == ["analyst", "dave"]
    assert names(idle="never") == ["analyst", "dave"]


def test_session_history_and_user_drill_down(client, analyst, world):
    response = page(client, analyst, "admin:audit_auditsession_changelist", state="ended")
    assert len(response.context["cl"].result_list) == 4
    alice = world["alice"]
    response = page(client, analyst, "admin:analytics_user_detail", alice.pk)
    detail = response.context["detail"]
    assert detail.activity.api_calls_24h == 70 and detail.activity.api_calls_30d == 220
    kinds = [entry.kind for entry in detail.timeline.entries]
    assert kinds.count("Session started") == 2 and kinds.count("Login failed") == 3


def test_security_page(client, analyst, world):
    response = page(client, analyst, "admin:analytics_security")
    [stuffer] = response.context["data"].suspicious  # alice's 3 typos are under the threshold
    assert (stuffer.ip, stuffer.user_agents, stuffer.attempts, stuffer.usernames_tried) == (
        "203.0.113.9",
        ["stuffer/1.0"],
        21,
        21,
    )


def test_a_stolen_token_shows_on_the_security_page_and_the_users_page(
    client, analyst, api_client, user, password
):
    victim = {"REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "Firefox/128.0"}
    thief = {"REMOTE_ADDR": "203.0.113.77", "HTTP_USER_AGENT": "<b>curl</b>/8.5"}
    tokens = login(api_client, user.username, password, **victim).json()
    for client_meta in (victim, thief):
        response = api_client.get(
            "/api/sessions/", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}", **client_meta
        )
        assert response.status_code == 200
    tracker.flush()
    audit_services.sync_run()

    html = page(client, analyst, "admin:analytics_security").content.decode()
    [anomaly] = client.get(reverse("admin:analytics_security")).context["data"].anomalies
    assert (anomaly.username, anomaly.earlier_network) == ("alice", "198.51.100.0/24")
    assert (anomaly.ip, anomaly.login_ip) == ("203.0.113.77", "198.51.100.23")
    assert anomaly.login_user_agent == "Firefox/128.0" and anomaly.end_reason == ""
    assert 'id="session-anomalies"' in html and "203.0.113.77" in html
    assert "&lt;b&gt;curl&lt;/b&gt;/8.5" in html and "<b>curl</b>" not in html
    assert reverse("admin:analytics_user_detail", args=[user.pk]) in html

    response = page(client, analyst, "admin:analytics_user_detail", user.pk)
    [entry] = response.context["detail"].anomalies
    assert entry.kind == "Session anomaly" and "198.51.100.0/24" in entry.detail
    assert entry.ip == "203.0.113.77"
    assert 'id="user-anomalies"' in response.content.decode()


def test_ending_sessions_needs_the_change_permission_and_is_audited(
    client, analyst, manager, api_client, user, password
):
    tokens = [login(api_client, user.username, password).json() for _ in range(2)]
    tracker.flush()
    url = reverse("admin:analytics_live_sessions")
    client.force_login(analyst)
    live = client.get(url).context["page"]
    assert live.total == 2
    sid = live.rows[0].session.sid
    assert client.post(url, {"action": "end_selected", "sid": sid}).status_code == 403
    client.force_login(manager)
    response = client.post(url, {"action": "end_selected", "sid": sid})
    assert response.status_code == 302
    assert client.get(url).context["page"].total == 1
    client.post(url, {"action": "end_all"})
    assert client.get(url).context["page"].total == 0
    audit_services.sync_run()
    revoked = AuditEvent.objects.filter(event_type="session_revoked")
    assert revoked.count() == 2
    assert {event.actor_id for event in revoked} == {manager.pk}
    assert len(tokens) == 2


def test_lifting_a_lockout(client, manager, analyst, api_client, user):
    for _ in range(5):
        login(api_client, user.username, "wrong")
    client.force_login(analyst)
    [lock] = client.get(reverse("admin:analytics_security")).context["data"].lockouts
    assert (
        client.post(reverse("admin:analytics_security"), {"lockout": lock.key}).status_code == 403
    )
    client.force_login(manager)
    client.post(reverse("admin:analytics_security"), {"lockout": lock.key})
    assert client.get(reverse("admin:analytics_security")).context["data"].lockouts == []
    lifted = [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]
    assert lifted[-1]["type"] == "lockout_lifted" and lifted[-1]["actor"] == manager.pk


def test_injected_strings_render_escaped(client, analyst, api_client):
    script = "<script>alert(1)</script>"
    login(api_client, script, "x", HTTP_USER_AGENT="<img src=x onerror=alert(2)>")
    tracker.flush()
    audit_services.sync_run()
    for name in (
        "admin:audit_auditevent_changelist",
        "admin:analytics_security",
        "admin:analytics_suspiciousip_changelist",
    ):
        html = page(client, analyst, name).content.decode()
        assert script not in html and "<img src=x" not in html, name
    html = page(client, analyst, "admin:audit_auditevent_changelist").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# SQL queries per page, on the ground-truth workload: a fixed number, whatever the data size.
# (Session and user lookups of the admin itself included.)
PAGE_QUERIES = {
    "admin:index": 13,
    "admin:analytics_poweruser_changelist": 6,
    "admin:analytics_idleuser_changelist": 6,
    "admin:analytics_useractivity_changelist": 6,
    "admin:analytics_suspiciousip_changelist": 6,
    "admin:audit_auditsession_changelist": 6,
    "admin:audit_auditevent_changelist": 6,
    "admin:analytics_live_sessions": 5,
    "admin:analytics_security": 7,
}


@pytest.mark.parametrize(("name", "expected"), PAGE_QUERIES.items())
def test_queries_per_page(client, analyst, world, django_assert_num_queries, name, expected):
    client.force_login(analyst)
    client.get(reverse(name))  # warm: content types and permission caches
    with django_assert_num_queries(expected):
        assert client.get(reverse(name)).status_code == 200


def test_queries_for_one_user(client, analyst, world, django_assert_num_queries):
    client.force_login(analyst)
    url = reverse("admin:analytics_user_detail", args=[world["alice"].pk])
    client.get(url)
    # user, activity, daily calls, live sessions' names, a timeline page, failed logins against
    # the account, anomalies; plus the admin's session, user and permissions.
    with django_assert_num_queries(11):
        assert client.get(url).status_code == 200


def test_live_sessions_sort_and_filter(
    client, analyst, api_client, user, staff_user, password, frozen_clock
):
    login(api_client, user.username, password)
    frozen_clock.advance(600)
    login(api_client, staff_user.username, password)
    client.force_login(analyst)
    url = reverse("admin:analytics_live_sessions")

    def names(**params):
        return [row.username for row in client.get(url, params).context["page"].rows]

    assert names() == ["operator", "alice"]
    assert names(order="oldest") == ["alice", "operator"]
    assert names(status="recent") == ["alice"]
    assert names(q="ALICE") == ["alice"]
    assert names(q="nobody") == []
