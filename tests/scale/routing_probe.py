"""Run as `python -m tests.scale.routing_probe` with DATABASE_URL and DATABASE_REPLICA_URL set:
requests through Django's test client, and the SQL each one sent to each database, as JSON.

A separate process because the aliases are fixed when Django starts: the test's own process
has a single database.
"""

import json
import sys

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402


def capture(call) -> dict:
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections["replica"]) as replica,
    ):
        response = call()
        if response.streaming:
            b"".join(response.streaming_content)
        elif hasattr(response, "render"):
            response.render()
    return {
        "status": response.status_code,
        "default": [query["sql"] for query in primary.captured_queries],
        "replica": [query["sql"] for query in replica.captured_queries],
    }


def main(staff_name: str, username: str, password: str) -> None:
    users = get_user_model().objects
    staff, user = users.get(username=staff_name), users.get(username=username)
    admin = Client()
    admin.force_login(staff)
    api = Client()
    out = {}
    reports = {
        "overview": reverse("admin:index"),
        "power_users": reverse("admin:analytics_poweruser_changelist"),
        "power_users_csv": reverse("admin:analytics_poweruser_export_csv"),
        "idle_users": reverse("admin:analytics_idleuser_changelist"),
        "user_activity": reverse("admin:analytics_useractivity_changelist"),
        "suspicious_ips": reverse("admin:analytics_suspiciousip_changelist"),
        "session_history": reverse("admin:audit_auditsession_changelist"),
        "session_history_csv": reverse("admin:audit_auditsession_export_csv"),
        "events": reverse("admin:audit_auditevent_changelist"),
        "security": reverse("admin:analytics_security"),
        "user_detail": reverse("admin:analytics_user_detail", args=[user.pk]),
        # The analytics API, with the admin's session cookie as the overview polls it.
        "api_power_users": "/api/analytics/power-users/",
        "api_sessions": "/api/analytics/sessions/",
        "api_suspicious_ips": "/api/analytics/suspicious-ips/",
        "api_security": "/api/analytics/security/",
        "api_user": f"/api/analytics/users/{user.pk}/",
    }
    for name, url in reports.items():
        out[name] = capture(lambda url=url: admin.get(url))
    # The admin's change pages read what they are about to write: the primary.
    superuser = Client()
    superuser.force_login(users.create_superuser(username="probe-root", password=password))
    out["user_change_page"] = capture(
        lambda: superuser.get(reverse("admin:accounts_user_change", args=[user.pk]))
    )

    def post(url: str, body: dict):
        return api.post(url, body, content_type="application/json")

    credentials = {"username": username, "password": password}
    out["login"] = capture(lambda: post("/api/auth/token/", credentials))
    pair = json.loads(post("/api/auth/token/", credentials).content)
    out["me"] = capture(lambda: api.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {pair['access']}"))
    refreshed = {}

    def refresh():
        response = post("/api/auth/token/refresh/", {"refresh": pair["refresh"]})
        refreshed.update(json.loads(response.content))
        return response

    out["refresh"] = capture(refresh)
    out["logout"] = capture(lambda: post("/api/auth/logout/", {"refresh": refreshed["refresh"]}))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:4])
