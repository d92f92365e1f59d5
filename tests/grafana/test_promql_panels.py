"""Every PromQL query of every dashboard runs on a real Prometheus that scrapes the app under
gunicorn, a real redis_exporter and a real postgres_exporter, after real traffic: each must
parse, execute and return data, and the key panels must show what the traffic did.

Grafana's variables are replaced as Grafana does it (see helpers.py): $__interval is the query
step (1 s), $__rate_interval max($__interval + scrape interval, 4 x scrape interval) with the
1 s scrape interval used here, $__range the span of the test, and the dashboards' label_values()
variables are resolved through Prometheus' API as Grafana resolves them.
"""

import json
import math
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import pytest
import yaml

from .helpers import (
    PROMETHEUS_UID,
    expand_promql,
    load_dashboards,
    parse_label_values,
    prometheus_variable,
    replace_variables,
    targets,
    variable_values,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCRAPE_S = 1
STEP_S = 1
TEST_ALERT = "GrafanaDashboardTestAlert"
# Fires at once (no `for`): the "Alerts firing" panel must list it.
TEST_RULES = {
    "groups": [
        {
            "name": "grafana-dashboard-test",
            "rules": [{"alert": TEST_ALERT, "expr": "vector(1)", "labels": {"severity": "none"}}],
        }
    ]
}
SESSIONS, REDIS, POSTGRES, DJANGO = (
    "sessionhub-sessions",
    "sessionhub-redis",
    "sessionhub-postgresql",
    "sessionhub-django-celery",
)


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' / '.join(names)} is not installed (scripts/setup.sh test installs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else {}
        except ValueError:
            return error.code, {}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params) -> object:
        query = urllib.parse.urlencode(params, doseq=True)
        status, answer = request(f"{self.url}{path}?{query}")
        assert status == 200 and answer.get("status") == "success", (path, params, answer)
        return answer["data"]

    def instant(self, expr: str, at: float) -> list[dict]:
        return self.get("/api/v1/query", query=expr, time=at)["result"]

    def range(self, expr: str, start: float, end: float) -> list[dict]:
        return self.get("/api/v1/query_range", query=expr, start=start, end=end, step=f"{STEP_S}s")[
            "result"
        ]

    def label_values(self, label: str, selector: str | None, start: float, end: float) -> list:
        params = {"start": start, "end": end}
        if selector:
            params["match[]"] = selector
        return self.get(f"/api/v1/label/{label}/values", **params)


def start_stack(background, tmp_path, gunicorn_server, redis_url: str, db: dict) -> Prometheus:
    redis = urlsplit(redis_url)
    ports = {name: free_port() for name in ("redis", "postgres", "prometheus")}
    background.start(
        "redis_exporter",
        [
            binary("redis_exporter", "prometheus-redis-exporter"),
            f"-redis.addr=redis://{redis.hostname}:{redis.port or 6379}",
            f"-web.listen-address=127.0.0.1:{ports['redis']}",
        ],
    )
    dsn = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?sslmode=disable"
    background.start(
        "postgres_exporter",
        [
            binary("postgres_exporter", "prometheus-postgres-exporter"),
            f"--web.listen-address=127.0.0.1:{ports['postgres']}",
        ],
        env={"DATA_SOURCE_NAME": dsn, "PATH": "/usr/bin:/bin"},
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(TEST_RULES))
    jobs = {
        "sessionhub": urlsplit(gunicorn_server.url).netloc,
        "redis": f"127.0.0.1:{ports['redis']}",
        "postgres": f"127.0.0.1:{ports['postgres']}",
    }
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "evaluation_interval": f"{SCRAPE_S}s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in jobs.items()
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    background.start(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            "--log.level=warn",
        ],
    )
    background.wait_http("redis_exporter", f"http://127.0.0.1:{ports['redis']}/metrics")
    background.wait_http("postgres_exporter", f"http://127.0.0.1:{ports['postgres']}/metrics")
    url = f"http://127.0.0.1:{ports['prometheus']}"
    background.wait_http("prometheus", f"{url}/-/ready")
    return Prometheus(url)


def traffic(app: str, username: str, password: str) -> None:
    """Logins, API calls, failed logins (bad password, unknown user), a logout."""

    def login(name: str, secret: str) -> tuple[int, dict]:
        return request(f"{app}/api/auth/token/", {"username": name, "password": secret})

    status, first = login(username, password)
    assert status == 200, first
    status, second = login(username, password)
    assert status == 200, second
    for _ in range(10):
        assert request(f"{app}/api/sessions/", token=first["access"])[0] == 200
    for _ in range(3):
        assert request(f"{app}/api/me/", token=second["access"])[0] == 200
    for _ in range(3):
        assert login(username, "not the password")[0] == 401
    for n in range(2):
        assert login(f"nobody-{n}", "whatever")[0] == 401
    status, body = request(f"{app}/api/auth/logout/", {"refresh": first["refresh"]})
    assert status == 204, body


def warm_up(app: str, username: str, password: str) -> None:
    """One request of each kind before Prometheus' first scrape: a counter series born during
    the traffic shows no increase (its first sample already holds it), one that exists before
    does, as in production where these series exist long before anyone looks."""
    assert request(f"{app}/api/auth/token/", {"username": "nobody", "password": "x"})[0] == 401
    status, tokens = request(f"{app}/api/auth/token/", {"username": username, "password": password})
    assert status == 200, tokens
    assert request(f"{app}/api/sessions/", token=tokens["access"])[0] == 200
    assert request(f"{app}/api/auth/logout/", {"refresh": tokens["refresh"]})[0] == 204


def run_celery_tasks() -> None:
    """The beat-scheduled tasks, run in this process as a worker would run them: the task
    signals record their figures in Redis, where the app's /metrics reads them."""
    from audit.tasks import sync_sessions
    from observability.tasks import heartbeat

    for task in (heartbeat, sync_sessions):
        result = task.apply()
        assert result.successful(), (task.name, result.traceback)


def values(result: list[dict]) -> list[float]:
    found = []
    for series in result:
        points = series.get("values") or [series["value"]]
        found += [float(value) for _, value in points]
    return found


def finite(result: list[dict]) -> list[float]:
    return [v for v in values(result) if math.isfinite(v)]


def by_label(result: list[dict], label: str) -> dict[str, float]:
    """label value -> the largest finite value of that series."""
    return {
        series["metric"].get(label, ""): max(finite([series]), default=math.nan)
        for series in result
    }


# What the traffic must show, panel by panel (dashboard uid, panel title, refId).
SHOWS = {
    (SESSIONS, "Active sessions", "A"): lambda r: max(finite(r)) >= 1,
    (SESSIONS, "Sessions by status", "A"): lambda r: (
        set(by_label(r, "status")) == {"active_now", "recent", "inactive"} and sum(finite(r)) >= 1
    ),
    (SESSIONS, "API calls/s", "A"): lambda r: max(finite(r)) > 0,
    (SESSIONS, "Failed logins by reason", "A"): lambda r: (
        by_label(r, "reason")["bad_password"] > 0
        and by_label(r, "reason")["unknown_user"] > 0
        and all(set(s["metric"]) == {"reason"} for s in r)
    ),
    (SESSIONS, "Logins vs failed logins", "A"): lambda r: max(finite(r)) > 0,
    (SESSIONS, "Logins vs failed logins", "B"): lambda r: max(finite(r)) > 0,
    (SESSIONS, "Session duration distribution", "A"): lambda r: max(finite(r)) > 0,
    (SESSIONS, "Since the last successful sync", "A"): lambda r: 0 <= max(finite(r)) < 120,
    (SESSIONS, "Alerts firing", "A"): lambda r: TEST_ALERT in by_label(r, "alertname"),
    (REDIS, "Up", "A"): lambda r: finite(r) == [1.0],
    (REDIS, "Commands/s", "A"): lambda r: max(finite(r)) > 0,
    (REDIS, "Clients", "A"): lambda r: max(finite(r)) >= 1,
    (POSTGRES, "Up", "A"): lambda r: finite(r) == [1.0],
    (POSTGRES, "Transactions/s", "A"): lambda r: max(finite(r)) > 0,
    (POSTGRES, "Database size", "A"): lambda r: max(finite(r)) > 0,
    (DJANGO, "Requests/s by view", "A"): lambda r: max(finite(r)) > 0,
    (DJANGO, "Responses/s by status", "A"): lambda r: by_label(r, "status").get("401", 0) > 0,
    (DJANGO, "DB queries/s", "A"): lambda r: max(finite(r)) > 0,
    (DJANGO, "Tasks succeeded/s by task", "A"): lambda r: (
        by_label(r, "task").get("sessionhub.tasks.heartbeat", 0) > 0
    ),
    (DJANGO, "Beat heartbeat age", "A"): lambda r: 0 <= max(finite(r)) < 120,
}


# Queries that legitimately return nothing here, each with its reason; asserted empty, so a
# change that gives them data shows up and moves them to the checks above.
NO_DATA = {
    # django-prometheus creates the django_cache_* families at the first cache call, and no
    # code path of the app calls Django's cache today (live sessions, throttles and metrics
    # use Redis directly): the panel stays empty until something does.
    (DJANGO, "Cache hits / misses", "A"): "no Django cache call",
    (DJANGO, "Cache hits / misses", "B"): "no Django cache call",
}


@pytest.mark.timeout(120)
def test_every_promql_query_of_every_dashboard_on_a_real_prometheus(
    gunicorn_server, background, tmp_path, user, password, settings
):
    from django.db import connection

    started = time.monotonic()
    gunicorn_server.start()
    warm_up(gunicorn_server.url, user.username, password)
    api = start_stack(
        background, tmp_path, gunicorn_server, settings.REDIS_URL, connection.settings_dict
    )

    def wait(what: str, check, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{background.log('prometheus')}")
            time.sleep(0.25)

    wait("every target up", lambda: len(api.instant("up == 1", time.time())) == 3)
    t0 = time.time()
    wait("a first scrape of the app", lambda: api.instant("api_calls_total", time.time()))
    time.sleep(2 * SCRAPE_S)  # a rate needs a sample from before the traffic

    traffic(gunicorn_server.url, user.username, password)
    run_celery_tasks()

    boards = load_dashboards()
    prom_targets = targets(boards, PROMETHEUS_UID)
    assert set(SHOWS) <= {t.key for t in prom_targets}, "SHOWS names a missing panel"

    def variables_of(board: dict, end: float) -> dict[str, str]:
        """The dashboard's variables at their defaults, label_values() resolved by Prometheus."""
        resolved: dict[str, str] = {}
        for name, variable in variable_values(board).items():
            if variable["type"] == "custom":
                resolved[name] = prometheus_variable(variable, variable["current"]["value"])
                continue
            assert variable["type"] == "query", (board["uid"], name)
            selector, label = parse_label_values(replace_variables(variable["query"], resolved))
            options = sorted(api.label_values(label, selector, t0, end))
            assert options, f"{board['uid']}: variable {name} has no value ({variable['query']})"
            value = variable["current"]["value"] if variable.get("includeAll") else options[0]
            resolved[name] = prometheus_variable(variable, value)
        return resolved

    def evaluate(target, end: float) -> list[dict]:
        expr = expand_promql(
            target.target["expr"],
            variables_of(target.board, end),
            interval_s=STEP_S,
            scrape_s=SCRAPE_S,
            range_s=end - t0,
        )
        assert "$" not in expr, f"{target}: unexpanded variable in {expr}"
        if target.target.get("instant"):
            return api.instant(expr, end)
        return api.range(expr, t0, end)

    # The traffic shows where it must (scrapes and rate windows take a few seconds).
    failing = dict.fromkeys(SHOWS)
    deadline = time.monotonic() + 25
    while failing and time.monotonic() < deadline:
        time.sleep(SCRAPE_S)
        end = time.time()
        by_key = {t.key: t for t in prom_targets}
        for key in list(failing):
            result = evaluate(by_key[key], end)
            try:
                shown = SHOWS[key](result)
            except (KeyError, ValueError):  # no such series (yet), max() of nothing
                shown = False
            if shown:
                del failing[key]
            else:
                failing[key] = result
    assert not failing, f"panels not showing the traffic: {failing}"

    # Every query of every panel parses, executes and returns finite data (NO_DATA: nothing).
    end = time.time()
    results = {t.key: evaluate(t, end) for t in prom_targets}
    empty = sorted(str(key) for key, result in results.items() if not finite(result))
    assert empty == sorted(str(key) for key in NO_DATA), "queries without data"
    assert all(results[key] == [] for key in NO_DATA)
    assert not api.instant('{__name__=~"django_cache_.*"}', end)
    assert time.monotonic() - started < 60
