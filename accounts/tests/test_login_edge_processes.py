"""The login edge under gunicorn (two workers): bursts, concurrency, proxies, hostile addresses."""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from audit import services as audit_services
from audit.models import AuditEvent, AuditSession
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Stderr:
    """A running (or stopped) gunicorn's stderr, its log, as the harness captures it."""

    def __init__(self, server) -> None:
        self.server = server

    def warnings(self) -> list[str]:
        lines = self.server.log().splitlines()
        return [line for line in lines if " WARNING " in line or " ERROR " in line]


def start(server, **env) -> Stderr:
    server.start(extra_env=env)
    return Stderr(server)


def request(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback test server
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def stream_events() -> list[dict]:
    return [json.loads(entry[b"d"]) for _, entry in get_redis().xrange(keys.events())]


def test_a_burst_at_a_lock_writes_one_event_and_one_log_line(gunicorn_server, user, password):
    """Hundreds of requests at a locked pair through the real API: every one refused, counted,
    and the audit and the log each get one line for the whole lock period."""
    log = start(gunicorn_server)
    url = f"{gunicorn_server.url}/api/auth/token/"
    wrong = {"username": user.username, "password": "wrong"}
    assert [request(url, wrong)[0] for _ in range(5)] == [401] * 5
    before = len(log.warnings())

    burst = 600
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: request(url, wrong), range(burst)))
    elapsed = time.monotonic() - started
    print(f"burst: {burst} refused requests in {elapsed:.2f} s ({burst / elapsed:.0f} req/s)")

    assert {status for status, _ in answers} == {429}
    assert all(int(headers["Retry-After"]) > 0 for _, headers in answers)
    assert request(url, {"username": user.username, "password": password})[0] == 429
    events = stream_events()
    throttled = [e for e in events if e["type"] == "login_failed" and e["reason"] == "throttled"]
    assert len(throttled) == 1
    assert [e["type"] for e in events].count("locked_out") == 1
    assert int(get_redis().hget(keys.stats(), "login_failures:throttled")) == burst + 1
    gunicorn_server.stop()
    refusal_lines = log.warnings()[before:]
    assert len(refusal_lines) == 1, refusal_lines[:5]
    assert "login refused: user_ip lock in force" in refusal_lines[0]


def test_simultaneous_guesses_from_many_addresses_stay_within_the_account_limit(
    gunicorn_server, user, password, settings
):
    """200 guesses at once, each from its own address (through a trusted proxy): attempts are
    counted when admitted, so no more than the account's limit reach the password check."""
    start(gunicorn_server, TRUSTED_PROXIES="1")
    url = f"{gunicorn_server.url}/api/auth/token/"
    limit = settings.SESSIONHUB["LOGIN_ACCOUNT_FAILURE_LIMIT"]

    def guess(n: int) -> int:
        forwarded = {"X-Forwarded-For": f"100.{n // 250}.{n % 250}.1"}
        return request(url, {"username": user.username, "password": f"guess{n}"}, forwarded)[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(guess, range(200)))
    assert statuses.count(401) == limit
    assert statuses.count(429) == 200 - limit


def test_hostile_forwarded_addresses_through_a_trusted_proxy(gunicorn_server, user, password):
    """Behind a trusted proxy (loopback here), an unparsable right-most hop is an opaque client:
    never the proxy's own (loopback) address, so never on the /metrics allowlist; an address
    with a zone id is not stored, so the audit sync keeps working."""
    start(gunicorn_server, TRUSTED_PROXIES="127.0.0.1/32")
    metrics = f"{gunicorn_server.url}/metrics"
    assert request(metrics)[0] == 200  # loopback itself may read it
    for hop in ("garbage", "127.1", "0177.0.0.1", "fe80::1%lo", "::1%1"):
        assert request(metrics, headers={"X-Forwarded-For": hop})[0] == 403, hop

    hostile = {"X-Forwarded-For": "fe80::1%<img src=x onerror=alert('ip')>"}
    status, _ = request(
        f"{gunicorn_server.url}/api/auth/token/",
        {"username": user.username, "password": "wrong"},
        hostile,
    )
    assert status == 401
    req = urllib.request.Request(  # noqa: S310
        f"{gunicorn_server.url}/api/auth/token/",
        data=json.dumps({"username": user.username, "password": password}).encode(),
        headers={"Content-Type": "application/json", **hostile},
    )
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        access = json.loads(response.read())["access"]
    for _ in range(3):
        assert (
            request(
                f"{gunicorn_server.url}/api/me/",
                headers={"Authorization": f"Bearer {access}", **hostile},
            )[0]
            == 200
        )
    gunicorn_server.stop()  # flushes the workers' counts

    result = audit_services.sync_run()
    assert result.sessions == 1
    [session] = AuditSession.objects.all()
    assert session.ip is None and session.api_call_count == 3
    assert set(AuditEvent.objects.values_list("ip", flat=True)) == {None}
