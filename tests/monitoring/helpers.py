"""What the monitoring tests share: the repository's files, their rules, and the binaries."""

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
