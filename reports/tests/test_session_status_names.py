"""The third session status is "inactive" wherever a status shows: the admin's live sessions,
overview and user activity, the REST API and its OpenAPI schema, the CSV exports. "Idle" names
only the idle-users report, never a status."""

import csv
import io
import re

import pytest
from django.db import connection
from django.urls import reverse

from accounts.livesessions import SessionStatus
from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services
from core import clock

from .test_admin import staff

pytestmark = pytest.mark.django_db

STATUSES = ["active_now", "recent", "inactive"]
LABELS = ["active now", "recent", "inactive"]


@pytest.fixture
def three_statuses(
    settings, django_user_model, api_client, user, staff_user, password, frozen_clock
):
    """alice: a session last used 2 h ago (inactive) and one 10 min ago (recent); operator: one
    used just now (active now). The idle timeout is 4 h here, so an inactive session lives."""
    settings.SESSIONHUB = {**settings.SESSIONHUB, "IDLE_TIMEOUT": 4 * 3600}
    login(api_client, user.username, password)
    frozen_clock.advance(2 * 3600)
    recent = login(api_client, user.username, password).json()
    frozen_clock.advance(600)
    login(api_client, staff_user.username, password)
    assert tracker.flush()
    audit_services.sync_run()
    with connection.cursor() as cursor:
        cursor.execute("SET sessionhub.now = %s", [clock.to_datetime(clock.now()).isoformat()])
    analytics_services.analytics_refresh()
    yield recent
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


@pytest.fixture
def analyst(django_user_model):
    return staff(django_user_model, "analyst", "view_analytics")


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_statuses_are_named_and_labelled_once():
    assert [s.value for s in SessionStatus] == STATUSES
    assert [s.label for s in SessionStatus] == LABELS
    assert SessionStatus.choices() == list(zip(STATUSES, LABELS, strict=True))


def test_admin_live_sessions_show_inactive(client, analyst, three_statuses):
    client.force_login(analyst)
    url = reverse("admin:analytics_live_sessions")
    html = client.get(url).content.decode()
    cells = re.findall(r'<td class="status">([^<]*)</td>', html)
    assert sorted(cells) == sorted(LABELS)
    status_filter = re.search(r'<div class="sh-filters" id="status-filter">(.*?)</div>', html, re.S)
    assert re.findall(r">([^<]+)</a>", status_filter[1]) == ["all", *LABELS]
    assert 'href="?status=inactive"' in status_filter[1] and "idle" not in status_filter[1]
    page = client.get(url, {"status": "inactive"}).context["page"]
    assert [(row.username, row.status) for row in page.rows] == [("alice", "inactive")]
    assert client.get(url, {"status": "idle"}).context["status"] is None  # not a status


def test_admin_overview_shows_inactive(client, analyst, three_statuses):
    client.force_login(analyst)
    response = client.get(reverse("admin:index"))
    assert response.context["overview"].sessions_by_status == [(status, 1) for status in STATUSES]
    chart = str(response.context["status_chart"])
    assert all(f"{label}: 1" in chart for label in LABELS)
    assert "idle" not in chart and "active_now" not in chart


def test_admin_user_activity_filters_and_shows_inactive(client, analyst, three_statuses):
    client.force_login(analyst)
    url = reverse("admin:analytics_useractivity_changelist")
    response = client.get(url, {"status": "inactive"})
    # The analyst never called the API: a never-active user is inactive too.
    assert [row.username for row in response.context["cl"].result_list] == ["analyst"]
    html = response.content.decode()
    assert '<td class="field-status_label">inactive</td>' in html
    assert "?status=inactive" in html and "?status=idle" not in html


def test_the_api_says_inactive(api_client, three_statuses):
    response = api_client.get("/api/sessions/", **bearer(three_statuses["access"]))
    assert response.status_code == 200
    statuses = [row["status"] for row in response.json()["results"]]
    assert len(statuses) == 2 and statuses[-1] == "inactive" and "idle" not in statuses
    schemas = api_client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    assert schemas["LiveSession"]["properties"]["status"]["$ref"].endswith("/SessionStatusEnum")
    assert schemas["SessionStatusEnum"]["enum"] == STATUSES
    assert "`inactive` - inactive" in schemas["SessionStatusEnum"]["description"]


def test_the_csv_exports_say_inactive(client, analyst, three_statuses):
    client.force_login(analyst)
    live = _csv(client.get(reverse("admin:analytics_live_sessions_csv")))
    assert sorted(row["status"] for row in live) == sorted(STATUSES)
    activity = _csv(client.get(reverse("admin:analytics_useractivity_export_csv")))
    assert {row["username"]: row["status"] for row in activity} == {
        "alice": "recent",
        "operator": "active_now",
        "analyst": "inactive",
    }
