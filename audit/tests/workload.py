"""A small workload through the real code paths, with a ground truth written down by hand."""

from datetime import UTC, datetime

from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services

NOW = "2026-11-20T14:30:00"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Workload:
    def __init__(self, clock, password: str) -> None:
        self.clock = clock
        self.password = password
        self.client = APIClient()

    def at(self, when: str) -> None:
        self.clock.now = utc(when).timestamp()

    def login(self, user, when: str, ip="198.51.100.10", ua="client/1") -> dict:
        self.at(when)
        response = login(
            self.client, user.username, self.password, REMOTE_ADDR=ip, HTTP_USER_AGENT=ua
        )
        assert response.status_code == 200, response.content
        return response.json()

    def calls(self, tokens: dict, count: int, when: str) -> None:
        self.at(when)
        for _ in range(count):
            response = self.client.get("/api/sessions/", **bearer(tokens["access"]))
            assert response.status_code == 200, response.content

    def logout(self, tokens: dict, when: str) -> None:
        self.at(when)
        response = self.client.post(
            "/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json"
        )
        assert response.status_code == 204, response.content

    def fail(self, username: str, when: str, ip: str, ua: str) -> int:
        self.at(when)
        return login(
            self.client, username, "not-the-password", REMOTE_ADDR=ip, HTTP_USER_AGENT=ua
        ).status_code

    def expire(self, when: str) -> dict:
        assert tracker.flush()  # as the flusher thread would have, long before the job runs
        self.at(when)
        return account_services.sessions_expire_due()

    def sync_and_refresh(self, when: str) -> audit_services.SyncResult:
        self.at(when)
        assert tracker.flush()
        account_services.lockout_periods_close()  # as beat does every 30 s
        result = audit_services.sync_run()
        analytics_services.analytics_refresh()
        return result


def build_world(django_user_model, password, frozen_clock) -> dict:
    """The ground-truth workload of test_ground_truth.py (its docstring has the timeline)."""
    make = django_user_model.objects.create_user
    users = {
        name: make(username=name, password=password) for name in ("alice", "bob", "carol", "dave")
    }
    users["erin"] = make(username="erin", password=password, is_active=False)
    w = Workload(frozen_clock, password)

    carol = w.login(users["carol"], "2026-10-11T08:00:00")
    w.calls(carol, 5, "2026-10-11T08:01:00")
    w.expire("2026-10-11T09:00:00")

    bob1 = w.login(users["bob"], "2026-11-10T09:00:00")
    w.calls(bob1, 40, "2026-11-10T09:20:00")
    w.sync_and_refresh("2026-11-10T09:45:00")  # a sync in the middle changes nothing
    w.expire("2026-11-10T10:30:00")

    alice1 = w.login(users["alice"], "2026-11-18T10:00:00")
    w.calls(alice1, 100, "2026-11-18T10:10:00")
    w.calls(alice1, 50, "2026-11-18T10:35:00")
    w.logout(alice1, "2026-11-18T10:40:00")

    bob2 = w.login(users["bob"], "2026-11-19T20:00:00")
    w.calls(bob2, 10, "2026-11-19T20:05:00")
    w.logout(bob2, "2026-11-19T20:10:00")

    alice2 = w.login(users["alice"], "2026-11-20T13:00:00")
    w.calls(alice2, 30, "2026-11-20T13:05:00")
    w.calls(alice2, 10, "2026-11-20T13:30:00")
    statuses = [
        w.fail(f"u{n:02d}", f"2026-11-20T13:40:{n:02d}", "203.0.113.9", "stuffer/1.0")
        for n in range(25)
    ]
    assert statuses == [401] * 20 + [429] * 5
    w.calls(alice2, 10, "2026-11-20T13:55:00")
    for minute in range(3):
        w.fail("alice", f"2026-11-20T14:0{minute}:00", "198.51.100.4", "client/1")
    w.calls(alice2, 20, "2026-11-20T14:10:00")

    w.sync_and_refresh(NOW)
    return users
