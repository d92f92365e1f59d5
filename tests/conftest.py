"""Fixtures shared by the cross-cutting tests (monitoring, grafana, compose, reliability)."""

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


class Background:
    """Processes started by a test, each logging to a file; all are killed at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("w")
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory
        )
        log.close()
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def wait_http(self, name: str, url: str, seconds: float = 20) -> None:
        """Wait until `url` answers 200, failing early (with the log) if the process died."""
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
