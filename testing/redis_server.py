import shutil
import subprocess
from pathlib import Path

import redis

from .net import wait_until


class PrivateRedis:
    """A redis-server of the caller's own, on its own port and directory, without RDB snapshots.

    `stop()` is Redis's own shutdown (SIGTERM: with AOF on, the file is flushed and fsynced);
    `kill()` is a crash. `start()` again reuses the port, the directory and the last arguments.
    """

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        self.args: list[str] = []

    def start(self, *args: str) -> None:
        self.args = list(args) or self.args
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        log = (self.workdir / "redis.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.workdir),
                    "--save",
                    "",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            wait_until(lambda: self._ping(client), 20, 0.05, "redis-server to answer")
        finally:
            client.close()

    @staticmethod
    def _ping(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def stop(self) -> None:
        """SIGTERM: Redis's own shutdown."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing written on the way out."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
