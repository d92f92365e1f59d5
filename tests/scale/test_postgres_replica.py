"""Reports from a PostgreSQL streaming replica (DATABASE_REPLICA_URL), with real processes: a
private primary, its replica made with pg_basebackup, gunicorn on both.

The replica's replay is paused to tell the two databases apart: a report that reads the
replica cannot see what the primary got since, while a login must (it reads its own writes).
"""

import csv
import io
import json
import re
import subprocess
import sys
import time

import psycopg
import pytest
import requests

from tests.reliability.helpers import (
    PASSWORD,
    ROOT,
    TRACKED,
    wait_for_flushed,
    wait_until,
)

from .helpers import admin_session

pytestmark = pytest.mark.slow

ANALYST = "analyst"
CREATE_USERS = """
from django.contrib.auth.models import Permission
from accounts.models import User
if not User.objects.filter(username="analyst").exists():
    analyst = User.objects.create_user(username="analyst", password={password!r}, is_staff=True)
    analyst.user_permissions.add(Permission.objects.get(codename="view_analytics"))
for name in {names!r}:
    User.objects.create_user(username=name, password={password!r})
"""
WORKLOAD = {"alice": 30, "bob": 20, "carol": 10}  # API calls per user, one session each


def create_users(stack, *names: str) -> None:
    stack.manage("shell", "-c", CREATE_USERS.format(password=PASSWORD, names=list(names)))


def calls(stack, user_calls: dict[str, int]) -> int:
    tokens = stack.login_many(list(user_calls))
    with requests.Session() as http:
        for token, count in zip(tokens, user_calls.values(), strict=True):
            for _ in range(count):
                response = http.get(
                    stack.web_url + TRACKED, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200, response.text
    return sum(user_calls.values())


def sync_and_refresh(stack, total_calls: int) -> None:
    assert wait_for_flushed(stack, total_calls) == total_calls
    stack.manage("sync_sessions")
    stack.manage("refresh_analytics")


def power_users_csv(http: requests.Session, base_url: str) -> dict[str, int]:
    response = http.get(f"{base_url}/admin/analytics/poweruser/export.csv?window=24h", timeout=30)
    assert response.status_code == 200, response.text[:300]
    return {
        row["username"]: int(row["api_calls"]) for row in csv.DictReader(io.StringIO(response.text))
    }


def replica_lag_card(http: requests.Session, base_url: str) -> float:
    page = http.get(f"{base_url}/admin/", timeout=30).text
    match = re.search(r'id="card-replica-lag"><div class="value">([\d.]+) s<', page)
    assert match, page[page.find("sh-cards") : page.find("sh-charts")]
    return float(match.group(1))


def primary_power_users(primary) -> dict[str, int]:
    with psycopg.connect(primary.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT username, api_calls FROM analytics_power_users WHERE \"window\" = '24h'"
        ).fetchall()
    return {name: int(n) for name, n in rows}


def test_reports_read_the_replica_while_logins_and_change_pages_read_the_primary(pg_pair, capsys):
    primary, replica, stack = pg_pair
    create_users(stack, *WORKLOAD)
    stack.start_web(DATABASE_REPLICA_URL=replica.url)
    total = calls(stack, WORKLOAD)
    sync_and_refresh(stack, total)
    wait_until(lambda: replica.caught_up_with(primary), 30, 0.1, "the replica to catch up")
    admin = admin_session(stack.web_url, ANALYST, PASSWORD)
    assert power_users_csv(admin, stack.web_url) == WORKLOAD
    assert replica_lag_card(admin, stack.web_url) == 0.0

    # The replica stops replaying: from now on it answers with the past.
    replica.execute("SELECT pg_wal_replay_pause()")
    create_users(stack, "dave")
    # dave exists on the primary only: his login, calls and token checks all read the primary.
    assert calls(stack, {"dave": 50}) == 50
    sync_and_refresh(stack, total + 50)
    assert primary_power_users(primary) == {**WORKLOAD, "dave": 50}
    assert power_users_csv(admin, stack.web_url) == WORKLOAD  # the replica's past
    time.sleep(1.0)
    lag = replica_lag_card(admin, stack.web_url)
    assert lag >= 1.0, lag

    resumed = time.monotonic()
    replica.execute("SELECT pg_wal_replay_resume()")
    wait_until(lambda: replica.caught_up_with(primary), 30, 0.01, "the replica to catch up")
    caught_up = time.monotonic() - resumed
    assert power_users_csv(admin, stack.web_url) == {**WORKLOAD, "dave": 50}
    assert replica_lag_card(admin, stack.web_url) == 0.0
    # The replica goes away: the reports come from the primary, the lag card says so.
    replica.stop("immediate")
    for _ in range(4):  # every gunicorn worker finds out for itself
        assert power_users_csv(admin, stack.web_url) == {**WORKLOAD, "dave": 50}
        page = admin.get(f"{stack.web_url}/admin/", timeout=30)
        assert page.status_code == 200 and "unreachable" in page.text, page.status_code
        listing = admin.get(f"{stack.web_url}/admin/analytics/poweruser/?window=24h", timeout=30)
        assert listing.status_code == 200 and "dave" in listing.text, listing.status_code
    with capsys.disabled():
        print(
            f"\n[postgres replica] reports from the replica: {WORKLOAD}; replay paused: lag card "
            f"{lag:.1f} s, the new user's 50 calls on the primary only; replay resumed: caught "
            f"up in {caught_up * 1000:.0f} ms, report {power_users_csv(admin, stack.web_url)}"
        )


def test_which_queries_go_where(pg_pair):
    """Report pages and the analytics API send every query of the report to the replica;
    logins, refreshes, token checks, logouts and the admin's change pages send none there."""
    _primary, replica, stack = pg_pair
    create_users(stack, "alice")
    result = subprocess.run(
        [sys.executable, "-m", "tests.scale.routing_probe", ANALYST, "alice", PASSWORD],
        cwd=ROOT,
        env=stack.env(DATABASE_REPLICA_URL=replica.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    routed = json.loads(result.stdout)
    report_tables = re.compile(r'"?(analytics_|audit_)\w+')
    for page in (
        "overview",
        "power_users",
        "power_users_csv",
        "idle_users",
        "user_activity",
        "suspicious_ips",
        "session_history",
        "session_history_csv",
        "events",
        "security",
        "user_detail",
        "api_power_users",
        "api_sessions",
        "api_suspicious_ips",
        "api_security",
        "api_user",
    ):
        queries = routed[page]
        assert queries["status"] == 200, (page, queries["status"])
        assert any(report_tables.search(sql) for sql in queries["replica"]), (page, queries)
        on_primary = [sql for sql in queries["default"] if report_tables.search(sql)]
        assert on_primary == [], (page, on_primary)
    for request in ("user_change_page", "login", "me", "refresh", "logout"):
        queries = routed[request]
        assert queries["status"] in (200, 204), (request, queries["status"])
        assert queries["replica"] == [], (request, queries["replica"])
    assert any("accounts_user" in sql for sql in routed["user_change_page"]["default"])
    assert any("accounts_user" in sql for sql in routed["login"]["default"])
    print(
        json.dumps(
            {name: {db: len(q[db]) for db in ("default", "replica")} for name, q in routed.items()}
        )
    )
