"""The redis_* and pg_* metric names the dashboards and the rules use are exported by the
exporter versions compose runs: the same versions, from Debian, are started against the test
Redis and the test PostgreSQL and scraped."""

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from testing import free_port
from tests.monitoring.helpers import metric_names, need, rules

from .helpers import ROOT

DASHBOARDS = ROOT / "grafana" / "dashboards"
PREFIXES = ("redis_", "pg_")


def _prometheus_queries(node, datasource_type: str | None = None):
    """The PromQL of a dashboard: every target `expr`, and the query of every variable whose
    datasource is Prometheus (label_values(metric, label), query_result(...))."""
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and source.get("type"):
            datasource_type = source["type"]
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        if node.get("type") == "query" and datasource_type == "prometheus":
            query = node.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if isinstance(query, str):
                yield query
        for value in node.values():
            yield from _prometheus_queries(value, datasource_type)
    elif isinstance(node, list):
        for item in node:
            yield from _prometheus_queries(item, datasource_type)


def exporter_names(expressions) -> set[str]:
    return {
        name
        for expr in expressions
        for name in metric_names(expr)
        if name.startswith(PREFIXES) and ":" not in name
    }


def dashboard_names() -> dict[str, set[str]]:
    return {
        path.name: exporter_names(_prometheus_queries(json.loads(path.read_text())))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def rule_names() -> set[str]:
    return exporter_names(rule["expr"] for rule in rules())


def test_the_names_are_found_in_the_rules_and_dashboards():
    """The extraction itself: the Down alerts read redis_up and pg_up."""
    assert {"redis_up", "pg_up"} <= rule_names()
    assert exporter_names(['sum(rate(redis_commands_total{cmd=~"$cmd"}[$__rate_interval]))']) == {
        "redis_commands_total"
    }
    assert exporter_names(["label_values(pg_up, instance)"]) == {"pg_up"}
    board = {
        "templating": {
            "list": [
                {
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "prometheus"},
                    "query": {"query": "label_values(redis_db_keys, db)"},
                }
            ]
        }
    }
    assert exporter_names(_prometheus_queries(board)) == {"redis_db_keys"}


class Exporter:
    def __init__(self, name: str, command: list[str], env: dict, port: int, log: Path):
        self.name = name
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    def scrape(self, ready: str, seconds: float = 20) -> str:
        """The exposition once it contains the line `ready` (the exporter reached its server)."""
        deadline = time.monotonic() + seconds
        text = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    text = response.read().decode()
                if ready in text.splitlines():
                    return text
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.name}: no '{ready}' in {seconds:.0f} s:\n{text[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def exporters(tmp_path):
    started: list[Exporter] = []

    def start(*args) -> Exporter:
        exporter = Exporter(*args, log=tmp_path / f"{args[0]}.log")
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")


def exported_names(text: str) -> set[str]:
    """Every series name of a text exposition, as written: histogram/summary series carry their
    _bucket, _sum and _count suffixes. (prometheus_client's parser would add _total to counter
    samples the exporters name without it.)"""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            names.add(match.group(1))
    return names


def test_exported_names_reads_samples_as_written():
    text = (
        "# HELP pg_stat_database_blks_hit Hits\n# TYPE pg_stat_database_blks_hit counter\n"
        'pg_stat_database_blks_hit{datname="x"} 3\n'
        "# TYPE redis_commands_duration_seconds histogram\n"
        'redis_commands_duration_seconds_bucket{le="1"} 1\n'
        "redis_commands_duration_seconds_sum 0.5\nredis_up 1\n"
    )
    assert exported_names(text) == {
        "pg_stat_database_blks_hit",
        "redis_commands_duration_seconds_bucket",
        "redis_commands_duration_seconds_sum",
        "redis_up",
    }


def referenced_names() -> dict[str, set[str]]:
    """redis_*/pg_* name -> where it is used (rules, dashboard files)."""
    where: dict[str, set[str]] = {}
    for name in rule_names():
        where.setdefault(name, set()).add("prometheus/rules")
    for board, names in dashboard_names().items():
        for name in names:
            where.setdefault(name, set()).add(f"grafana/dashboards/{board}")
    return where


@pytest.mark.slow
@pytest.mark.django_db
def test_redis_and_postgres_metric_names_exist_in_the_pinned_exporters(exporters, settings):
    from django.db import connection

    referenced = referenced_names()
    assert any(n.startswith("redis_") for n in referenced)
    assert any(n.startswith("pg_") for n in referenced)

    redis_port = free_port()
    redis = exporters(
        "redis_exporter",
        [
            need("prometheus-redis-exporter"),
            f"--redis.addr={settings.REDIS_URL}",
            f"--web.listen-address=127.0.0.1:{redis_port}",
        ],
        {},
        redis_port,
    )
    db = connection.settings_dict
    dsn = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?sslmode=disable"
    postgres_port = free_port()
    postgres = exporters(
        "postgres_exporter",
        [
            need("prometheus-postgres-exporter"),
            f"--web.listen-address=127.0.0.1:{postgres_port}",
        ],
        {"DATA_SOURCE_NAME": dsn},
        postgres_port,
    )
    exported = exported_names(redis.scrape("redis_up 1")) | exported_names(
        postgres.scrape("pg_up 1")
    )

    missing = {name: sorted(where) for name, where in referenced.items() if name not in exported}
    assert missing == {}
    # The check can fail: a name no exporter has.
    assert "redis_no_such_metric_total" not in exported
