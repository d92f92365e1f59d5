"""A real Prometheus, with the repository's prometheus.yml and rules, scrapes the app under
gunicorn and the real Redis and PostgreSQL exporters while the API sees logins, failed logins,
authenticated calls, a logout and a credential-stuffing run. Every recording rule must return
data, every alert expression must parse and evaluate, and every metric the rules read must
exist."""

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import pytest
import yaml

from testing import free_port

from .helpers import (
    APP_JOB,
    RULES_DIR,
    alert_rules,
    materialize_prometheus_config,
    metric_names,
    need,
    recorded_names,
    rules,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "metrics-token-of-the-integration-test"
DEADLINE_SECONDS = 30
NEEDS_HISTORY = "job:api_calls_and_logins:rate15m_offset5m"


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
            return error.code, {"body": raw.decode(errors="replace")}


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params) -> dict:
        status, answer = request(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        assert status == 200 and answer.get("status") == "success", (path, params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query; an error (a parse error above all) fails the test."""
        return self.get("/api/v1/query", query=expr)["result"]


def start_exporters(background, redis_url: str, db: dict) -> dict[str, str]:
    redis_exporter = need("redis_exporter", "prometheus-redis-exporter")
    postgres_exporter = need("postgres_exporter", "prometheus-postgres-exporter")
    redis = urlsplit(redis_url)
    redis_port, postgres_port = free_port(), free_port()
    background.start(
        "redis_exporter",
        [
            redis_exporter,
            f"-redis.addr=redis://{redis.hostname}:{redis.port or 6379}",
            f"-web.listen-address=127.0.0.1:{redis_port}",
        ],
    )
    dsn = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?sslmode=disable"
    background.start(
        "postgres_exporter",
        [postgres_exporter, f"--web.listen-address=127.0.0.1:{postgres_port}"],
        env={"DATA_SOURCE_NAME": dsn, "PATH": "/usr/bin:/bin"},
    )
    background.wait_http("redis_exporter", f"http://127.0.0.1:{redis_port}/metrics")
    background.wait_http("postgres_exporter", f"http://127.0.0.1:{postgres_port}/metrics")
    return {"redis": f"127.0.0.1:{redis_port}", "postgres": f"127.0.0.1:{postgres_port}"}


def start_prometheus(background, tmp_path, targets: dict[str, str]) -> PrometheusAPI:
    """prometheus.yml as shipped, with 1 s intervals, local targets, no Alertmanager."""
    prometheus = need("prometheus")
    etc = tmp_path / "etc-prometheus"
    etc.mkdir()
    path = materialize_prometheus_config(etc, token=METRICS_TOKEN)
    config = yaml.safe_load(path.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_DIR / "*.yml")]  # the repository's own files
    del config["alerting"]
    port = free_port()
    targets = {**targets, "prometheus": f"127.0.0.1:{port}"}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    path.write_text(yaml.safe_dump(config))
    background.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    background.wait_http("prometheus", f"{url}/-/ready")
    return PrometheusAPI(url)


def generate_traffic(app: str, username: str, password: str) -> None:
    def login(name: str, secret: str) -> tuple[int, dict]:
        return request(f"{app}/api/auth/token/", {"username": name, "password": secret})

    status, first = login(username, password)
    assert status == 200, first
    status, second = login(username, password)
    assert status == 200, second
    for _ in range(5):
        assert request(f"{app}/api/sessions/", token=first["access"])[0] == 200
    for _ in range(2):
        assert request(f"{app}/api/me/", token=second["access"])[0] == 200
    for _ in range(2):
        assert login(username, "not the password")[0] == 401
    assert login("ghost", "whatever")[0] == 401
    status, body = request(f"{app}/api/auth/logout/", {"refresh": first["refresh"]})
    assert status == 204, body
    # Credential stuffing: one IP, ever new usernames, until the IP is locked out.
    for n in range(40):
        if login(f"stuffed-{n}", "password123")[0] == 429:
            return
    pytest.fail("no IP lock-out after 40 usernames")


@pytest.mark.timeout(120)
def test_prometheus_with_our_rules_against_the_running_app(
    gunicorn_server, background, tmp_path, user, password, settings
):
    from django.db import connection

    gunicorn_server.start(extra_env={"METRICS_TOKEN": METRICS_TOKEN})
    targets = start_exporters(background, settings.REDIS_URL, connection.settings_dict)
    targets[APP_JOB] = urlsplit(gunicorn_server.url).netloc
    api = start_prometheus(background, tmp_path, targets)

    def wait(what: str, check, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{background.log('prometheus')}")
            time.sleep(0.25)

    # Every target scraped, and the app's counters seen at least once before the traffic (a
    # rate needs a sample from before).
    wait(
        "every target up",
        lambda: {r["metric"]["job"] for r in api.query("up == 1")} == {*targets, "prometheus"},
    )
    wait("a first scrape of the app", lambda: api.query(f'api_calls_total{{job="{APP_JOB}"}}'))
    time.sleep(1.5)

    generate_traffic(gunicorn_server.url, user.username, password)

    expectations = [
        f'job:api_calls:rate1m{{job="{APP_JOB}"}} > 0',
        'job_reason:login_failures:increase1m{reason="bad_password"} > 0',
        'job_reason:login_failures:increase1m{reason="unknown_user"} > 0',
        "job:sessions_started:increase1m > 0",
        "job:login_failures:ratio_rate5m > 0 < 1",
        'job_reason:sessions_ended:rate5m{reason="logout"} > 0',
        'job:session_duration_seconds:quantile_rate1h{quantile="0.5"} > 0',
        "job:session_duration_seconds:mean_rate1h >= 0",
        "job:sessions_active_total:max > 0",
        'job_scope:lockouts:increase1h{scope="ip"} > 0',
        'ALERTS{alertname="CredentialStuffing", alertstate="firing"}',
        # Every recording rule returns data, but the outage baseline: it reads 5 to 20 minutes
        # ago, which this fresh Prometheus has not seen (test_alert_chain backfills them).
        *sorted(recorded_names() - {NEEDS_HISTORY}),
        f"absent({NEEDS_HISTORY})",
    ]
    missing = expectations
    deadline = time.monotonic() + DEADLINE_SECONDS
    while missing and time.monotonic() < deadline:
        missing = [expr for expr in missing if not api.query(expr)]
        time.sleep(0.5)
    assert not missing, f"no data for: {missing}"

    # Prometheus loaded every rule of the files, and each one evaluates without error.
    loaded = [rule for group in api.get("/api/v1/rules")["groups"] for rule in group["rules"]]
    assert sorted(r["name"] for r in loaded) == sorted(
        rule.get("alert") or rule["record"] for rule in rules()
    )
    unhealthy = [
        (r["name"], r["health"], r.get("lastError")) for r in loaded if r["health"] != "ok"
    ]
    assert not unhealthy

    # Every alert expression parses and evaluates through the HTTP API.
    for name, rule in alert_rules().items():
        assert isinstance(api.query(rule["expr"]), list), name

    # Every metric the rules read exists: the app's, the exporters' and Prometheus' own.
    exported = set(api.get("/api/v1/label/__name__/values"))
    read = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert {name for name in read if ":" not in name} - exported == set()

    # The traffic set off credential stuffing, and nothing else fires.
    firing = {r["metric"]["alertname"] for r in api.query('ALERTS{alertstate="firing"}')}
    assert firing == {"CredentialStuffing"}
