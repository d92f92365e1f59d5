"""The alerting chain end to end: the app under gunicorn → a real Prometheus with the project's
rules → a real Alertmanager configured by alertmanager/entrypoint.sh → Slack and SMTP catchers.

A brute-force burst and an outage (clients stop reaching the API) are driven through the app;
both alerts must reach Slack *and* e-mail, with their texts and with links that open (the
external URLs), within their time budgets.

What is shortened, and only that: every `for:` of the rules (to FOR_SECONDS), the scrape and
evaluation intervals (1 s) and Alertmanager's group_wait (1 s). The rule expressions are the
project's. The outage rule compares the last minute with the 15 minutes that ended 5 minutes
ago: those 20 minutes of API traffic are backfilled into Prometheus' storage (promtool tsdb
create-blocks-from openmetrics) as the counters the app then continues live.
"""

import email
import email.policy
import re
import threading
import time
import urllib.parse
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from core.rediskeys import keys
from observability.services import celery_heartbeat_record
from testing import free_port
from tests.compose.helpers import DUMMY_ENV as COMPOSE_ENV
from tests.compose.helpers import argv, resolved_compose

from .helpers import (
    ALERTMANAGER_DIR,
    APP_JOB,
    PROMETHEUS_YML,
    RULES_DIR,
    FakeSlack,
    FakeSMTP,
    load_yaml,
    need,
    run,
    serve,
    wait_for,
)
from .test_alertmanager import DUMMY_ENV as ALERT_ENV
from .test_alertmanager import entrypoint
from .test_prometheus_integration import PrometheusAPI, request

pytestmark = pytest.mark.django_db(transaction=True)

METRICS_TOKEN = "metrics-token-of-the-alert-chain-test"
PROMETHEUS_URL = "http://prometheus.example.test:9090/"
ALERTMANAGER_URL = "http://alertmanager.example.test:9093/"
FOR_SECONDS = 5
BASELINE_PER_SECOND = 2.0  # the backfilled API traffic (the rule's floor is 1 a second)
LIVE_PER_SECOND = 3.0  # what the test's client keeps up until the outage
BACKFILL_SECONDS = 25 * 60

# From the event to the notification, with the shortened `for:`: the 1-minute rate must fall
# below a quarter of the baseline (about 45 s once calls stop), then FOR_SECONDS, evaluation,
# group_wait and delivery. With the shipped settings the same path takes about 3 minutes
# (see test_an_outage_pages_within_about_three_minutes_as_shipped).
OUTAGE_BUDGET = 60 + FOR_SECONDS + 35
BRUTE_FORCE_BUDGET = FOR_SECONDS + 40
BRUTE_FORCE_TEXT = "More than 5 login attempts per minute have failed"
OUTAGE_TEXT = "less than a quarter of the 2 a second of the 15 minutes before"


def rules_with_short_for(directory: Path) -> Path:
    directory.mkdir()
    for path in RULES_DIR.glob("*.yml"):
        text = re.sub(r"(?m)^(\s+for:) \d+[smh]$", rf"\1 {FOR_SECONDS}s", path.read_text())
        (directory / path.name).write_text(text)
    return directory


def backfill(data: Path, instance: str, calls_now: float, logins_now: float) -> None:
    """The app's counters over the last BACKFILL_SECONDS, as 15-second scrapes would have
    seen them, ending where the live counters are now."""
    now = time.time()
    labels = f'job="{APP_JOB}",instance="{instance}"'
    lines = ["# HELP api_calls Tracked API calls.", "# TYPE api_calls counter"]
    stamps = range(int(now) - BACKFILL_SECONDS, int(now) - 5, 15)
    for stamp in stamps:
        value = calls_now - BASELINE_PER_SECOND * (now - stamp)
        lines.append(f"api_calls_total{{{labels}}} {value:.3f} {stamp}")
    lines += ["# HELP sessions_started Logins.", "# TYPE sessions_started counter"]
    lines += [f"sessions_started_total{{{labels}}} {logins_now} {stamp}" for stamp in stamps]
    source = data.parent / "backfill.om"
    source.write_text("\n".join([*lines, "# EOF"]) + "\n")
    result = run(
        [need("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def start_alertmanager(background, tmp_path: Path, slack, smtp) -> str:
    template = tmp_path / "alertmanager.yml"
    text = (ALERTMANAGER_DIR / "alertmanager.yml").read_text()
    assert text.count("group_wait: 30s") == 1
    template.write_text(text.replace("group_wait: 30s", "group_wait: 1s"))
    port = free_port()
    env = {
        **ALERT_ENV,
        "ALERT_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{slack.server_port}/services/T1/B2/hook",
        "ALERT_SMTP_SMARTHOST": f"127.0.0.1:{smtp.server_address[1]}",
        "ALERT_SMTP_USERNAME": "",
        "ALERT_SMTP_REQUIRE_TLS": "false",
        "ALERTMANAGER_BIN": need("alertmanager", "prometheus-alertmanager"),
    }
    command, environment = entrypoint(
        tmp_path / "alertmanager-runtime",
        env,
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={ALERTMANAGER_URL}",
        "--web.route-prefix=/",
        "--cluster.listen-address=",
        template=template,
    )
    background.start("alertmanager", command, env=environment)
    background.wait_http("alertmanager", f"http://127.0.0.1:{port}/-/ready")
    return f"127.0.0.1:{port}"


def start_prometheus(background, tmp_path: Path, app: str, alertmanager: str) -> PrometheusAPI:
    config = load_yaml(PROMETHEUS_YML)
    config["global"].update(scrape_interval="1s", scrape_timeout="900ms", evaluation_interval="1s")
    config["rule_files"] = [str(rules_with_short_for(tmp_path / "rules") / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    (app_job,) = [job for job in config["scrape_configs"] if job["job_name"] == APP_JOB]
    (tmp_path / "metrics_token").write_text(METRICS_TOKEN)
    app_job["authorization"]["credentials_file"] = str(tmp_path / "metrics_token")
    app_job["static_configs"] = [{"targets": [app]}]
    config["scrape_configs"] = [app_job]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    background.start(
        "prometheus",
        [
            need("prometheus"),
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={PROMETHEUS_URL}",
            "--web.route-prefix=/",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    background.wait_http("prometheus", f"{url}/-/ready")
    return PrometheusAPI(url)


class Clients(threading.Thread):
    """API calls at a steady pace until stopped — the traffic an outage takes away."""

    def __init__(self, app: str, access: str) -> None:
        super().__init__(daemon=True)
        self.app, self.access = app, access
        self.stopped = threading.Event()
        self.failures: list[int] = []

    def run(self) -> None:
        while not self.stopped.wait(1 / LIVE_PER_SECOND):
            status, _ = request(f"{self.app}/api/me/", token=self.access)
            if status != 200:
                self.failures.append(status)


class Beat(threading.Thread):
    """What beat and the worker would keep fresh (heartbeat, last sync), so that only the
    alerts under test fire."""

    def __init__(self, redis) -> None:
        super().__init__(daemon=True)
        self.redis = redis
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            celery_heartbeat_record()
            self.redis.hset(keys.sync_state(), "last_success", repr(time.time()))
            if self.stopped.wait(5):
                return


def notification(slack, smtp, alertname: str) -> tuple:
    """The first Slack post and e-mail about `alertname` firing, with their arrival times."""
    posts = [
        (at, payload)
        for at, (_, payload) in zip(slack.arrived, slack.posts, strict=False)
        if alertname in payload["attachments"][0]["title"]
        and "FIRING" in payload["attachments"][0]["title"]
    ]
    mails = [
        (m["at"], email.message_from_string(m["data"], policy=email.policy.default))
        for m in smtp.messages
        if alertname in m["data"]
    ]
    mails = [(at, mail) for at, mail in mails if "FIRING" in mail["Subject"]]
    return (posts[0], mails[0]) if posts and mails else None


def mail_text(mail) -> str:
    return "\n".join(part.get_content() for part in mail.walk() if not part.is_multipart())


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_brute_force_and_an_outage_reach_slack_and_email_in_time(
    gunicorn_server, background, tmp_path, django_user_model, password, settings, redis_clean
):
    slack, smtp = serve(FakeSlack()), serve(FakeSMTP())
    threads: list = []
    try:
        alertmanager = start_alertmanager(background, tmp_path, slack, smtp)
        gunicorn_server.start(extra_env={"METRICS_TOKEN": METRICS_TOKEN})
        app = gunicorn_server.url
        django_user_model.objects.create_user(username="client", password=password)
        status, pair = request(
            f"{app}/api/auth/token/", {"username": "client", "password": password}
        )
        assert status == 200, pair

        # The traffic of the last 25 minutes continues live from where the backfill ends.
        redis_clean.hset(
            keys.stats(), "api_calls", int(BASELINE_PER_SECOND * BACKFILL_SECONDS) + 100
        )
        beat, clients = Beat(redis_clean), Clients(app, pair["access"])
        threads += [beat, clients]
        beat.start()
        clients.start()
        stats = redis_clean.hgetall(keys.stats())
        data = tmp_path / "prometheus-data"
        data.mkdir()
        instance = urlsplit(app).netloc
        backfill(data, instance, float(stats[b"api_calls"]), float(stats[b"sessions_started"]))
        api = start_prometheus(background, tmp_path, instance, alertmanager)

        wait_for(lambda: api.query(f'up{{job="{APP_JOB}"}} == 1'), 30, "the app scraped")
        # The baseline comes from the backfill, the last minute from both.
        wait_for(
            lambda: (
                api.query("job:api_calls_and_logins:rate15m_offset5m >= 1")
                and api.query("job:api_calls_and_logins:rate1m > 1")
            ),
            30,
            "the traffic rates",
        )
        [minutes] = wait_for(
            lambda: api.query("job:sessions_active_window:minutes"), 10, "the active window"
        )
        assert float(minutes["value"][1]) == settings.SESSIONHUB["ACTIVE_WINDOW"] / 60
        time.sleep(FOR_SECONDS + 3)
        assert not api.query('ALERTS{alertname="ApiTrafficDropped"}'), "a page before the outage"

        # Brute force: one client guessing a password (locked out after 5, and still trying).
        brute_force = time.monotonic()
        for _ in range(60):
            status, _ = request(
                f"{app}/api/auth/token/", {"username": "client", "password": "guess"}
            )
            assert status in (401, 429)

        # The outage: clients no longer get through.
        clients.stopped.set()
        clients.join()
        outage = time.monotonic()
        assert clients.failures == []

        found = {}

        def both_arrived() -> bool:
            for name in ("LoginFailuresHigh", "ApiTrafficDropped"):
                found[name] = found.get(name) or notification(slack, smtp, name)
            return all(found.values())

        wait_for(both_arrived, OUTAGE_BUDGET + 60, "both alerts at Slack and at the SMTP server")
    finally:
        for thread in threads:
            thread.stopped.set()
        for server in (slack, smtp):
            server.shutdown()
            server.server_close()

    (bf_post_at, bf_post), (bf_mail_at, bf_mail) = found["LoginFailuresHigh"]
    (out_post_at, out_post), (out_mail_at, out_mail) = found["ApiTrafficDropped"]
    # In time: each after its event, within its budget.
    for at in (bf_post_at, bf_mail_at):
        assert brute_force < at < brute_force + BRUTE_FORCE_BUDGET, at - brute_force
    for at in (out_post_at, out_mail_at):
        assert outage < at < outage + OUTAGE_BUDGET, at - outage

    # Slack: the channel, the texts, a title linking to Alertmanager, a graph in Prometheus.
    for post, summary, description, expr in (
        (bf_post, "failed logins per minute", BRUTE_FORCE_TEXT, "job:login_failures:rate5m"),
        (out_post, "API traffic fell to", OUTAGE_TEXT, "job:api_calls_and_logins:rate1m"),
    ):
        (attachment,) = post["attachments"]
        assert post["channel"] == ALERT_ENV["ALERT_SLACK_CHANNEL"]
        assert summary in attachment["text"] and description in attachment["text"]
        assert attachment["title_link"].startswith(ALERTMANAGER_URL)
        graph = re.search(r"<(http[^|>]+)\|Graph in Prometheus>", attachment["text"])
        assert graph and graph[1].startswith(f"{PROMETHEUS_URL}graph?g0.expr=")
        assert expr in urllib.parse.unquote(graph[1])

    # E-mail: to the on-call address, the same texts and links.
    for mail, name, description in (
        (bf_mail, "LoginFailuresHigh", BRUTE_FORCE_TEXT),
        (out_mail, "ApiTrafficDropped", OUTAGE_TEXT),
    ):
        assert mail["To"] == ALERT_ENV["ALERT_EMAIL_TO"] and name in mail["Subject"]
        text = mail_text(mail)
        assert description in text
        assert f'href="{ALERTMANAGER_URL}#/alerts?receiver=slack-and-email"' in text
        assert f'href="{PROMETHEUS_URL}graph?g0.expr=' in text


def test_an_outage_pages_within_about_three_minutes_as_shipped():
    """The shipped settings add up to about 3 minutes from the last call to the notification:
    the 1-minute rate at zero (a minute and one scrape), the rule's `for:`, an evaluation
    interval, then Alertmanager's group_wait."""

    def seconds(text: str) -> float:
        return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]

    prometheus = load_yaml(PROMETHEUS_YML)["global"]
    (rule,) = [
        r for p in RULES_DIR.glob("*.yml") for g in load_yaml(p)["groups"] for r in g["rules"]
        if r.get("alert") == "ApiTrafficDropped"
    ]  # fmt: skip
    assert "job:api_calls_and_logins:rate1m" in rule["expr"]
    assert "[1m]" in next(
        r["expr"]
        for r in load_yaml(RULES_DIR / "recording.yml")["groups"][0]["rules"]
        if r["record"] == "job:api_calls_and_logins:rate1m"
    )
    group_wait = load_yaml(ALERTMANAGER_DIR / "alertmanager.yml")["route"]["group_wait"]
    total = (
        60
        + seconds(prometheus["scrape_interval"])
        + seconds(rule["for"])
        + seconds(prometheus["evaluation_interval"])
        + seconds(group_wait)
    )
    assert total <= 3 * 60, total


def test_compose_gives_prometheus_and_alertmanager_the_address_people_open(tmp_path):
    env = {
        **COMPOSE_ENV,
        "PROMETHEUS_EXTERNAL_URL": "https://ops.example.org/prometheus/",
        "ALERTMANAGER_EXTERNAL_URL": "https://ops.example.org/alertmanager/",
    }
    for given, expected in (
        (COMPOSE_ENV, ("http://localhost:9090/", "http://localhost:9093/")),
        (env, (env["PROMETHEUS_EXTERNAL_URL"], env["ALERTMANAGER_EXTERNAL_URL"])),
    ):
        services = resolved_compose(tmp_path, given)["services"]
        for name, url in zip(("prometheus", "alertmanager"), expected, strict=True):
            command = argv(services[name]["command"])
            assert f"--web.external-url={url}" in command, command
            # Routes stay at / (healthchecks, Grafana, Prometheus' alerting) behind a proxy.
            assert "--web.route-prefix=/" in command
