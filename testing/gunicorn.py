import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from .net import free_port

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """The project's WSGI app under gunicorn on a free loopback port, started and stopped by
    the caller; stopped with SIGTERM, so workers finish their request and run `worker_exit`.

    `config` is gunicorn's `--config` (a path, or `python:module`); `env` is added to this
    process's environment. Subclasses say when the server is ready (`ready`).
    """

    startup_timeout = 30.0

    def __init__(
        self,
        *,
        config: str,
        env: dict[str, str],
        port: int | None = None,
        stdout: int | IO | None = subprocess.DEVNULL,
        stderr: int | IO | None = subprocess.PIPE,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.env = env
        self.stdout = stdout
        self.stderr = stderr
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "sessionhub.wsgi:application",
            "--config",
            self.config,
        ]

    def start(self) -> None:
        stderr = self.stderr
        if stderr == subprocess.PIPE:
            # Captured in a file, not a pipe: nobody reads a pipe while the server runs, and a
            # full one (64 KiB of log lines) blocks every worker thread at its next log line.
            if self._log is not None:
                self._log.close()
            self._log = stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept for log()
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=stderr,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start: {self.failure()}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {self.startup_timeout:g} s")

    def ready(self) -> bool:
        """Serving: /healthz answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    def answers(self, path: str) -> bool:
        """Any HTTP answer at all (a 401 without a token too) means a worker is serving."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def log(self) -> str:
        """What the server has written to its stderr so far (captured by default), also after
        it stopped."""
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.fileno(), "rb", closefd=False) as log:
            log.seek(0)
            return log.read().decode(errors="replace")

    def failure(self) -> str:
        """What the dead server said, when its stderr was captured."""
        return self.log()[-20_000:] if self._log is not None else "see its log"

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(child) for child in children]

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.process.pid, *self.worker_pids()] if self.process else []

    def stop(self, timeout: float = 60) -> int | None:
        """Graceful stop (SIGTERM); killed if it has not exited within `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code
