"""The staff-only analytics API on the ground-truth workload: access, figures, filters, pages,
and malformed parameters (400, never 500)."""

import pytest

from accounts.tests.helpers import bearer, login
from analytics.tests.conftest import staff

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    "/api/analytics/overview/",
    "/api/analytics/overview/live/",
    "/api/analytics/power-users/",
    "/api/analytics/idle-users/",
    "/api/analytics/live-sessions/",
    "/api/analytics/sessions/",
    "/api/analytics/security/",
    "/api/analytics/suspicious-ips/",
]


@pytest.fixture
def reader(api_client, analyst):
    api_client.force_authenticate(analyst)
    return api_client


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_anonymous_is_401_and_non_staff_403(api_client, django_user_model, password, world):
    no_perm = staff(django_user_model, "nopower")
    urls = [*ENDPOINTS, f"/api/analytics/users/{world['alice'].pk}/"]
    for url in urls:
        response = api_client.get(url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"].startswith("Bearer")
    # A JWT of a plain user (the API's own authentication), then a staff member without the
    # analytics permission (the admin's session): both refused.
    access = login(api_client, "bob", password).json()["access"]
    for url in urls:
        assert api_client.get(url, **bearer(access)).status_code == 403, url
    api_client.force_authenticate(no_perm)
    for url in urls:
        assert api_client.get(url).status_code == 403, url


def test_staff_reads_it_with_a_jwt_or_the_admin_session(
    api_client, client, django_user_model, world
):
    analyst = staff(django_user_model, "jwtanalyst", "view_analytics")
    analyst.set_password("pw-analyst-long")
    analyst.save()
    access = login(api_client, "jwtanalyst", "pw-analyst-long").json()["access"]
    assert api_client.get("/api/analytics/power-users/", **bearer(access)).status_code == 200
    client.force_login(analyst)  # the admin's overview polls with its session cookie
    assert client.get("/api/analytics/overview/live/").status_code == 200


def test_power_users_windows_search_and_pages(reader, world):
    rows = results(reader.get("/api/analytics/power-users/"))
    assert [(r["username"], r["api_calls"]) for r in rows] == [("alice", 70), ("bob", 10)]
    rows = results(reader.get("/api/analytics/power-users/", {"window": "30d"}))
    assert [(r["username"], r["api_calls"]) for r in rows] == [("alice", 220), ("bob", 50)]
    rows = results(reader.get("/api/analytics/power-users/", {"window": "30d", "search": "BO"}))
    assert [r["username"] for r in rows] == ["bob"]
    page = reader.get("/api/analytics/power-users/", {"window": "30d", "limit": 1}).json()
    assert page["count"] == 2 and [r["username"] for r in page["results"]] == ["alice"]
    following = reader.get(page["next"]).json()
    assert [r["username"] for r in following["results"]] == ["bob"] and following["next"] is None


def test_idle_users_filters_match_the_admin(reader, world):
    def names(**params):
        return sorted(
            r["username"] for r in results(reader.get("/api/analytics/idle-users/", params))
        )

    assert names() == ["analyst", "carol", "dave"]
    assert names(idle_for="90") == ["analyst", "dave"]
    assert names(idle_for="never") == ["analyst", "dave"]


def test_session_history_filters(reader, world):
    ended = results(reader.get("/api/analytics/sessions/", {"state": "ended"}))
    assert len(ended) == 4
    assert all(len(r["sid"]) >= 20 for r in ended)  # whole ids, never an ambiguous prefix
    alice = world["alice"].pk
    mine = results(reader.get("/api/analytics/sessions/", {"user_id": alice}))
    assert {r["username"] for r in mine} == {"alice"} and len(mine) == 2
    logouts = results(reader.get("/api/analytics/sessions/", {"end_reason": "logout"}))
    assert logouts and {r["end_reason"] for r in logouts} == {"logout"}
    found = results(reader.get("/api/analytics/sessions/", {"search": "ALI"}))
    assert {r["username"] for r in found} == {"alice"}
    one = results(reader.get("/api/analytics/sessions/", {"search": ended[0]["sid"][-12:]}))
    assert [r["sid"] for r in one] == [ended[0]["sid"]]


def test_security_and_suspicious_ips(reader, world):
    rows = results(reader.get("/api/analytics/suspicious-ips/"))
    assert (rows[0]["ip"], rows[0]["attempts"], rows[0]["usernames_tried"]) == (
        "203.0.113.9",
        21,
        21,
    )
    assert rows[0]["user_agent_count"] == len(rows[0]["user_agents"]) >= 1
    week = results(reader.get("/api/analytics/suspicious-ips/", {"range": "7d"}))
    assert week[0]["ip"] == "203.0.113.9"
    first = reader.get("/api/analytics/suspicious-ips/", {"limit": 1}).json()
    assert len(first["results"]) == 1
    assert first["next_offset"] == (1 if len(rows) > 1 else None)
    security = reader.get("/api/analytics/security/", {"range": "7d"}).json()
    assert security["hours"] == 168
    assert sum(r["failures"] for r in security["failed_by_hour"]) >= 24
    assert security["suspicious_ips"][0]["ip"] == "203.0.113.9"


def test_overview_says_where_each_figure_comes_from(reader, world):
    overview = reader.get("/api/analytics/overview/").json()
    assert overview["live"]["source"] == "live" and overview["live"]["available"]
    assert overview["rolled_up"]["source"] == "rolled_up"
    assert overview["rolled_up"]["as_of"] is not None
    assert overview["rolled_up"]["api_calls_24h"] == 80
    assert overview["synced"]["failed_logins_1h"] == 24
    assert [u["username"] for u in overview["rolled_up"]["top_power_users_24h"]] == [
        "alice",
        "bob",
    ]
    days = overview["rolled_up"]["active_users_30d"]
    assert days and [d["partial"] for d in days].count(True) <= 1
    assert not any(d["partial"] for d in days[:-1])


def test_live_tiles_count_calls_and_failures_as_they_happen(
    reader, api_client, user, password, frozen_clock
):
    from accounts.tracking import tracker

    tiles = reader.get("/api/analytics/overview/live/").json()
    assert (tiles["active_now"], tiles["api_calls_per_minute"], tiles["failed_logins_5m"]) == (
        0,
        0,
        0,
    )
    client = type(api_client)()
    access = login(client, user.username, password).json()["access"]
    for _ in range(7):
        assert client.get("/api/me/", **bearer(access)).status_code == 200
    for _ in range(3):
        assert login(client, user.username, "wrong password").status_code == 401
    assert tracker.flush()
    tiles = reader.get("/api/analytics/overview/live/").json()
    assert tiles["active_now"] == 1
    assert tiles["api_calls_per_minute"] == 7
    assert (tiles["failed_logins_5m"], tiles["failed_logins_1h"]) == (3, 3)
    frozen_clock.advance(600)  # ten minutes on: out of the 5-minute window, in the hour
    tiles = reader.get("/api/analytics/overview/live/").json()
    assert (tiles["api_calls_per_minute"], tiles["failed_logins_5m"]) == (0, 0)
    assert tiles["failed_logins_1h"] == 3


def test_user_detail(reader, world):
    alice = world["alice"].pk
    detail = reader.get(f"/api/analytics/users/{alice}/").json()
    assert detail["username"] == "alice" and detail["activity"]["api_calls_30d"] == 220
    assert [e["kind"] for e in detail["timeline"]].count("Login failed") == 3
    short = reader.get(f"/api/analytics/users/{alice}/", {"per_page": 2}).json()
    assert len(short["timeline"]) == 2 and short["timeline_has_next"]
    second = reader.get(f"/api/analytics/users/{alice}/", {"per_page": 2, "page": 2}).json()
    assert second["timeline"] == detail["timeline"][2:4]
    assert len(detail["calls_per_minute_1h"]) == 60
    assert reader.get("/api/analytics/users/999999/").status_code == 404


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/api/analytics/power-users/", {"window": "1y"}),
        ("/api/analytics/power-users/", {"limit": "abc"}),
        ("/api/analytics/power-users/", {"limit": "0"}),
        ("/api/analytics/power-users/", {"offset": "-1"}),
        ("/api/analytics/idle-users/", {"idle_for": "7 days"}),
        ("/api/analytics/live-sessions/", {"status": "idle'--"}),
        ("/api/analytics/live-sessions/", {"user_id": "x"}),
        ("/api/analytics/live-sessions/", {"user_id": str(2**70)}),
        ("/api/analytics/live-sessions/", {"order": "sideways"}),
        ("/api/analytics/sessions/", {"state": "gone"}),
        ("/api/analytics/sessions/", {"end_reason": "\x00"}),
        ("/api/analytics/sessions/", {"search": "a\x00b"}),
        ("/api/analytics/power-users/", {"search": "x" * 151}),
        ("/api/analytics/security/", {"range": "1d"}),
        ("/api/analytics/suspicious-ips/", {"limit": "1e9"}),
        ("/api/analytics/users/1/", {"per_page": "many"}),
        ("/api/analytics/users/1/", {"page": "0"}),
    ],
)
def test_malformed_parameters_are_400(reader, url, params):
    response = reader.get(url, params)
    assert response.status_code == 400, (url, params, response.content)
    assert response["Content-Type"] == "application/json"


def test_live_sessions_filter_and_page(
    reader, api_client, user, staff_user, password, frozen_clock
):
    login(api_client, user.username, password)
    frozen_clock.advance(600)
    login(api_client, staff_user.username, password)

    def names(**params):
        return [r["username"] for r in results(reader.get("/api/analytics/live-sessions/", params))]

    assert names() == ["operator", "alice"]
    assert names(order="oldest") == ["alice", "operator"]
    assert names(status="recent") == ["alice"]
    assert names(user_id=user.pk) == ["alice"]
    page = reader.get("/api/analytics/live-sessions/", {"limit": 1, "offset": 1}).json()
    assert page["count"] == 2 and [r["username"] for r in page["results"]] == ["alice"]
    assert page["previous"] is not None and page["next"] is None


def test_the_schema_documents_every_report(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    for url in [*ENDPOINTS, "/api/analytics/users/{user_id}/"]:
        assert url in schema["paths"], url
    power = schema["paths"]["/api/analytics/power-users/"]["get"]
    assert {"window", "limit", "offset", "search"} <= {p["name"] for p in power["parameters"]}


def test_one_definition_admin_and_api_agree(reader, client, analyst, world):
    """The API and the admin page read the same selector: same rows, same order."""
    client.force_login(analyst)
    admin_rows = client.get("/admin/analytics/poweruser/", {"window": "7d"}).context["cl"]
    api_rows = results(reader.get("/api/analytics/power-users/", {"window": "7d"}))
    assert [r.username for r in admin_rows.result_list] == [r["username"] for r in api_rows]
