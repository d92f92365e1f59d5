"""Fixtures of the Grafana tests: the ground-truth workload, queries run as Grafana's role,
and background processes (Prometheus, exporters) that are always stopped."""

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection, transaction

# The workload of audit/tests/test_ground_truth.py, whose every number is written down there.
from audit.tests.test_ground_truth import NOW, world  # noqa: F401

from .helpers import ROLE


class GrafanaSql:
    """Runs SQL on the test connection as Grafana would: under the read-only role."""

    def run(self, sql: str) -> tuple[list[str], list[tuple]]:
        # A savepoint: a refused statement rolls back to it, SET ROLE included.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {ROLE}")
            cursor.execute(sql)
            columns = [column.name for column in cursor.description]
            rows = cursor.fetchall()
            cursor.execute("RESET ROLE")
        return columns, rows


@pytest.fixture
def grafana_sql(world):  # noqa: F811 - the imported fixture
    """The workload in place, "now" pinned for the views, the rollups refreshed."""
    from analytics import services

    with connection.cursor() as cursor:
        cursor.execute(f"SET sessionhub.now = '{NOW}+00:00'")
    services.analytics_refresh()
    yield GrafanaSql()
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


class Background:
    """Processes started by a test, each logging to a file; all are stopped at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict | None = None) -> None:
        with (self.directory / f"{name}.log").open("w") as log:
            self.processes[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory
            )

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def wait_http(self, name: str, url: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                pytest.fail(
                    f"{name} exited with {self.processes[name].returncode}:\n{self.log(name)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{name} did not answer {url} within {seconds:.0f} s:\n{self.log(name)}")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def background(tmp_path):
    directory = tmp_path / "background"
    directory.mkdir()
    processes = Background(directory)
    yield processes
    processes.stop_all()
