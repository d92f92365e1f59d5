"""What the monitoring tests share: the repository's files, their rules, and the binaries."""

import base64
import json
import re
import shutil
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
RULE_TESTS_DIR = ROOT / "prometheus" / "tests"
ALERTMANAGER_DIR = ROOT / "alertmanager"

# Where prometheus.yml expects its files inside the prometheus container.
CONTAINER_CONFIG_DIR = "/etc/prometheus/"

# The scrape jobs of the compose stack, and the alerts' job="..." matchers, must agree.
APP_JOB = "sessionhub"


def need(*names: str) -> str:
    """The first of these binaries on PATH, or skip the test saying which is missing."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{' / '.join(names)} not installed (make test installs it)")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    # Our own binaries and files, found with shutil.which: no untrusted input.
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def rule_groups() -> Iterator[dict]:
    for path in rule_files():
        yield from load_yaml(path)["groups"]


def rules() -> Iterator[dict]:
    for group in rule_groups():
        yield from group["rules"]


def alert_rules() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for rule in rules():
        if "alert" in rule:
            assert rule["alert"] not in found, f"alert {rule['alert']} is defined twice"
            found[rule["alert"]] = rule
    return found


def recording_rules() -> list[dict]:
    return [rule for rule in rules() if "record" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in recording_rules()}


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSETS = re.compile(r"\boffset\s+-?\w+")
_NUMBERS = re.compile(r"(?<![\w:])\d[\w.]*")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    text = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING, _OFFSETS, _NUMBERS):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


DUMMY_METRICS_TOKEN = "dummy-metrics-token"


def materialize_prometheus_config(directory: Path, token: str = DUMMY_METRICS_TOKEN) -> Path:
    """prometheus.yml with its container paths moved under `directory` (rules, token file)."""
    text = PROMETHEUS_YML.read_text()
    assert CONTAINER_CONFIG_DIR in text, "prometheus.yml no longer uses /etc/prometheus/ paths"
    shutil.copytree(RULES_DIR, directory / "rules")
    (directory / "secrets").mkdir()
    (directory / "secrets" / "metrics_token").write_text(token)
    path = directory / "prometheus.yml"
    path.write_text(text.replace(CONTAINER_CONFIG_DIR, f"{directory}/"))
    return path


# --- Catchers for Alertmanager's notifications ---------------------------------------------


class FakeSlack(ThreadingHTTPServer):
    """Records the JSON posted to the webhook, by path, and when each arrived (monotonic)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.arrived: list[float] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.arrived.append(time.monotonic())
                server.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


class FakeSMTP(socketserver.ThreadingTCPServer):
    """Just enough ESMTP (with AUTH PLAIN, no STARTTLS) to receive Alertmanager's mail; each
    message records its recipients, authentication, data and arrival (monotonic)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[dict] = []
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                message = {"rcpt": [], "auth": None, "data": ""}
                self.reply("220 fake ESMTP")
                while line := self.rfile.readline().decode():
                    verb = line.split(" ", 1)[0].strip().upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-fake\r\n250-AUTH PLAIN\r\n250 8BITMIME")
                    elif verb == "AUTH":
                        _, user, password = base64.b64decode(line.split()[2]).split(b"\0")
                        message["auth"] = (user.decode(), password.decode())
                        self.reply("235 2.7.0 accepted")
                    elif verb == "MAIL":
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        message["rcpt"].append(line.split(":", 1)[1].strip())
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        lines = []
                        while (data := self.rfile.readline().decode()) not in (".\r\n", ""):
                            # Transparency (RFC 5321 4.5.2): the sender doubled a leading dot.
                            lines.append(data[1:] if data.startswith(".") else data)
                        message["data"] = "".join(lines)
                        message["at"] = time.monotonic()
                        server.messages.append(dict(message))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        super().__init__(("127.0.0.1", 0), Handler)


def serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
