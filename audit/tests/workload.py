"""A small workload through the real code paths, with a ground truth written down by hand."""

from datetime import UTC, datetime

from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services


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
        result = audit_services.sync_run()
        analytics_services.analytics_refresh()
        return result
