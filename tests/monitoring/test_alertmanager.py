"""alertmanager/: the template renders from the environment, amtool accepts it, routes are
right, no secret is written into it, and a real Alertmanager delivers through it."""

import json
import os
import re
import shutil
import stat
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from testing import free_port

from .helpers import ALERTMANAGER_DIR, FakeSlack, FakeSMTP, need, run, serve, wait_for

TEMPLATE = ALERTMANAGER_DIR / "alertmanager.yml"
ENTRYPOINT = ALERTMANAGER_DIR / "entrypoint.sh"
README = ALERTMANAGER_DIR / "README.md"

WEBHOOK = "https://hooks.slack.invalid/services/T000/B000/not-a-real-webhook"
SMTP_PASSWORD = "not-a-real-smtp-password"
DUMMY_ENV = {
    "ALERT_SLACK_WEBHOOK_URL": WEBHOOK,
    "ALERT_SLACK_CHANNEL": "#sessionhub-alerts",
    "ALERT_EMAIL_TO": "oncall@example.org",
    "ALERT_EMAIL_FROM": "alertmanager@example.org",
    "ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
    "ALERT_SMTP_USERNAME": "alertmanager",
    "ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
}
REQUIRED = [
    "ALERT_SLACK_CHANNEL",
    "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM",
    "ALERT_SMTP_SMARTHOST",
    "ALERT_SLACK_WEBHOOK_URL",
    "ALERT_SMTP_PASSWORD",
]


def entrypoint(runtime_dir: Path, env: dict, *args: str, template: Path = TEMPLATE):
    """The command running entrypoint.sh, and its environment: these variables and PATH."""
    environment = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_TEMPLATE": str(template),
        "ALERTMANAGER_RUNTIME_DIR": str(runtime_dir),
        **env,
    }
    return ["sh", str(ENTRYPOINT), *args], environment


def render(runtime_dir: Path, env: dict) -> subprocess.CompletedProcess:
    command, environment = entrypoint(runtime_dir, env, "--render-only")
    return run(command, env=environment)


def rendered(tmp_path: Path, env: dict | None = None) -> Path:
    result = render(tmp_path / "runtime", DUMMY_ENV if env is None else env)
    assert result.returncode == 0, result.stderr
    config = Path(result.stdout.strip())
    assert config == tmp_path / "runtime" / "alertmanager.yml"
    return config


def amtool_check(config: Path) -> subprocess.CompletedProcess:
    return run([need("amtool"), "check-config", str(config)])


def test_the_rendered_config_passes_amtool_check_config(tmp_path):
    result = amtool_check(rendered(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_check_config_can_fail(tmp_path):
    config = rendered(tmp_path)
    config.write_text(config.read_text().replace("receiver: slack-and-email", "receiver: nobody"))
    assert amtool_check(config).returncode != 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=SyncStalled"], "slack-and-email"),
        (["severity=warning", "alertname=SyncLagHigh"], "email"),
        (["alertname=WithoutSeverity"], "email"),
        # Brute force is a warning, and still reaches Slack.
        (
            ["severity=warning", "component=security", "alertname=LoginFailuresHigh"],
            "slack-and-email",
        ),
        (
            ["severity=critical", "component=security", "alertname=CredentialStuffing"],
            "slack-and-email",
        ),
    ],
)
def test_critical_and_security_go_to_slack_and_email_warning_to_email(tmp_path, labels, receiver):
    config = rendered(tmp_path)
    result = run([need("amtool"), "config", "routes", "test", f"--config.file={config}", *labels])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_the_receivers_are_what_their_names_say(tmp_path):
    receivers = {r["name"]: r for r in yaml.safe_load(rendered(tmp_path).read_text())["receivers"]}
    assert set(receivers) == {"email", "slack-and-email"}
    assert set(receivers["email"]) == {"name", "email_configs"}
    assert set(receivers["slack-and-email"]) == {"name", "slack_configs", "email_configs"}
    for receiver in receivers.values():
        assert [c["to"] for c in receiver["email_configs"]] == ["oncall@example.org"]
    (slack,) = receivers["slack-and-email"]["slack_configs"]
    assert slack["channel"] == "#sessionhub-alerts"


def test_secrets_go_to_private_files_never_into_the_config(tmp_path):
    config = rendered(tmp_path)
    text = config.read_text()
    assert WEBHOOK not in text and SMTP_PASSWORD not in text
    parsed = yaml.safe_load(text)
    (slack,) = parsed["receivers"][1]["slack_configs"]
    webhook_file = Path(slack["api_url_file"])
    password_file = Path(parsed["global"]["smtp_auth_password_file"])
    assert webhook_file.read_text() == WEBHOOK
    assert password_file.read_text() == SMTP_PASSWORD
    for path in (webhook_file, password_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700


def test_mounted_secret_files_are_used_as_they_are(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "webhook").write_text(WEBHOOK)
    (secrets / "password").write_text(SMTP_PASSWORD)
    env = {
        k: v
        for k, v in DUMMY_ENV.items()
        if k not in ("ALERT_SLACK_WEBHOOK_URL", "ALERT_SMTP_PASSWORD")
    }
    env["ALERT_SLACK_WEBHOOK_URL_FILE"] = str(secrets / "webhook")
    env["ALERT_SMTP_PASSWORD_FILE"] = str(secrets / "password")
    parsed = yaml.safe_load(rendered(tmp_path, env).read_text())
    assert parsed["receivers"][1]["slack_configs"][0]["api_url_file"] == str(secrets / "webhook")
    assert parsed["global"]["smtp_auth_password_file"] == str(secrets / "password")


# The awks at hand: Debian's mawk and GNU awk, busybox's (as in the prom/alertmanager image).
AWKS = [name for name in ("mawk", "gawk", "busybox") if shutil.which(name)] or ["awk"]


@pytest.mark.parametrize("awk", AWKS)
def test_values_are_inserted_verbatim_whatever_the_awk(tmp_path, awk):
    """Quotes, backslashes, &, | and even other placeholders in a value stay as they are."""
    binary = need(awk)
    shim = tmp_path / "bin"
    shim.mkdir()
    if awk == "busybox":
        (shim / "awk").write_text(f'#!/bin/sh\nexec {binary} awk "$@"\n')
        (shim / "awk").chmod(0o755)
    else:
        (shim / "awk").symlink_to(binary)
    awkward = {
        "PATH": f"{shim}:{os.environ['PATH']}",
        **DUMMY_ENV,
        "ALERT_SLACK_CHANNEL": '#ops|it\'s & a \\ "test" ${HOME} ${ALERT_EMAIL_TO} {{ .Status }}',
        "ALERT_EMAIL_TO": "O'Brien <obrien@example.org>, ops&co@example.org",
        "ALERT_SMTP_USERNAME": "user|with&odd'chars\\",
    }
    config = rendered(tmp_path, awkward)
    parsed = yaml.safe_load(config.read_text())
    assert parsed["receivers"][1]["slack_configs"][0]["channel"] == awkward["ALERT_SLACK_CHANNEL"]
    assert parsed["receivers"][0]["email_configs"][0]["to"] == awkward["ALERT_EMAIL_TO"]
    assert parsed["global"]["smtp_auth_username"] == awkward["ALERT_SMTP_USERNAME"]
    assert amtool_check(config).returncode == 0


def test_smtp_without_authentication(tmp_path):
    env = {k: v for k, v in DUMMY_ENV.items() if not k.startswith("ALERT_SMTP_")}
    env |= {"ALERT_SMTP_SMARTHOST": "relay.internal:25", "ALERT_SMTP_REQUIRE_TLS": "false"}
    config = rendered(tmp_path, env)
    parsed = yaml.safe_load(config.read_text())["global"]
    assert parsed["smtp_auth_username"] == "" and parsed["smtp_auth_password_file"] == ""
    assert parsed["smtp_require_tls"] is False
    assert amtool_check(config).returncode == 0


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_variable_stops_the_start_naming_it(tmp_path, name):
    result = render(tmp_path / "runtime", {k: v for k, v in DUMMY_ENV.items() if k != name})
    assert result.returncode != 0
    assert name in result.stderr
    assert not (tmp_path / "runtime" / "alertmanager.yml").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALERT_SMTP_REQUIRE_TLS", "yes"),
        ("ALERT_EMAIL_TO", "a@example.org\nb@example.org"),
        ("ALERT_SLACK_WEBHOOK_URL_FILE", "/nonexistent/webhook"),
    ],
)
def test_a_malformed_variable_stops_the_start_naming_it(tmp_path, name, value):
    result = render(tmp_path / "runtime", {**DUMMY_ENV, name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_an_unknown_placeholder_in_the_template_stops_the_start(tmp_path):
    template = tmp_path / "alertmanager.yml"
    template.write_text(TEMPLATE.read_text() + "# ${ALERT_NOT_FILLED}\n")
    command, environment = entrypoint(
        tmp_path / "runtime", DUMMY_ENV, "--render-only", template=template
    )
    result = run(command, env=environment)
    assert result.returncode != 0
    assert "ALERT_NOT_FILLED" in result.stderr


def test_the_template_holds_no_secret_and_only_known_placeholders():
    text = TEMPLATE.read_text()
    for key in ("api_url:", "slack_api_url:", "auth_password:", "smtp_auth_password:"):
        assert not re.search(rf"^\s*{key}", text, re.MULTILINE), f"{key} inline in the template"
    assert "hooks.slack.com" not in text
    placeholders = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    filled = set(re.search(r'PLACEHOLDERS="([^"]*)"', ENTRYPOINT.read_text()).group(1).split())
    assert placeholders == filled


def test_the_readme_documents_every_variable_the_entrypoint_reads():
    names = set(re.findall(r"\b(ALERT(?:MANAGER)?_[A-Z0-9_]+)\b", ENTRYPOINT.read_text()))
    names |= {f"{name}_FILE" for name in ("ALERT_SLACK_WEBHOOK_URL", "ALERT_SMTP_PASSWORD")}
    documented = set(re.findall(r"`(ALERT(?:MANAGER)?_[A-Z0-9_]+)`", README.read_text()))
    assert names <= documented, names - documented


# --- A real Alertmanager, started through the entrypoint ------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_real_alertmanager_sends_critical_to_slack_and_email_and_warning_to_email(tmp_path):
    binary = need("alertmanager", "prometheus-alertmanager")
    slack, smtp = serve(FakeSlack()), serve(FakeSMTP())
    # The configuration as shipped, but notifying at once instead of after 30 s of grouping.
    template = tmp_path / "alertmanager.yml"
    text = TEMPLATE.read_text()
    assert text.count("group_wait: 30s") == 1
    template.write_text(text.replace("group_wait: 30s", "group_wait: 0s"))
    port = free_port()
    env = {
        **DUMMY_ENV,
        "ALERT_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{slack.server_port}/services/T1/B2/secret",
        "ALERT_SMTP_SMARTHOST": f"127.0.0.1:{smtp.server_address[1]}",
        "ALERT_SMTP_REQUIRE_TLS": "false",
        "ALERTMANAGER_BIN": binary,
    }
    command, environment = entrypoint(
        tmp_path / "runtime",
        env,
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        template=template,
    )
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready():
            if process.poll() is not None:
                raise AssertionError((tmp_path / "alertmanager.log").read_text())
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(ready, 20, "Alertmanager to start")
        now = datetime.now(UTC).isoformat()
        alerts = [
            {
                "labels": {"alertname": name, "severity": severity, "job": "sessionhub"},
                "annotations": {"summary": f"{name} summary", "description": "what happened"},
                "startsAt": now,
            }
            for name, severity in (("E2ECritical", "critical"), ("E2EWarning", "warning"))
        ]
        request = urllib.request.Request(
            f"{url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

        def mailed(name):
            return [m for m in smtp.messages if name in m["data"]]

        wait_for(lambda: mailed("E2ECritical") and mailed("E2EWarning"), 20, "both emails")
        wait_for(lambda: slack.posts, 20, "the Slack post")
        time.sleep(1.5)  # room for a wrong Slack post of the warning to arrive
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        for server in (slack, smtp):
            server.shutdown()
            server.server_close()

    for message in mailed("E2ECritical") + mailed("E2EWarning"):
        assert message["rcpt"] == ["<oncall@example.org>"]
        assert message["auth"] == ("alertmanager", SMTP_PASSWORD)  # from the password file
    assert len(slack.posts) == 1, slack.posts
    path, payload = slack.posts[0]
    assert path == "/services/T1/B2/secret"  # the webhook URL, from its file
    assert payload["channel"] == "#sessionhub-alerts"
    text = json.dumps(payload)
    assert "E2ECritical" in text and "E2ECritical summary" in text
    assert "E2EWarning" not in text
