"""Scale-out processes of the tests: a PostgreSQL streaming replica made with pg_basebackup, a
Redis Sentinel group, an admin logged in over HTTP."""

import os
import re
import shutil
import subprocess

import psycopg
import requests

from tests.reliability.helpers import PrivatePostgres, wait_until


class PrivateReplica(PrivatePostgres):
    """A streaming replica of a PrivatePostgres: `pg_basebackup -R` (it writes the
    primary_conninfo and standby.signal), then started on a port of its own."""

    def init_from(self, primary: PrivatePostgres) -> None:
        self.run_dir.mkdir()
        if os.geteuid() == 0:
            for path in (self.root, self.run_dir):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        )

    def execute(self, sql: str):
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def caught_up_with(self, primary: PrivatePostgres) -> bool:
        with psycopg.connect(primary.url, autocommit=True) as conn:
            (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        with psycopg.connect(self.url, autocommit=True) as conn:
            (behind,) = conn.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", [lsn]
            ).fetchone()
        return behind <= 0


def admin_session(base_url: str, username: str, password: str) -> requests.Session:
    """A browser-like admin login through the real login form (CSRF cookie and token)."""
    http = requests.Session()
    page = http.get(f"{base_url}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = http.post(
        f"{base_url}/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/admin/login/"},
        timeout=30,
    )
    assert response.status_code == 200 and "/admin/logout/" in response.text, response.text[:500]
    return http


__all__ = ["PrivateReplica", "admin_session", "wait_until"]


class RabbitVhost:
    """A RabbitMQ virtual host of the test's own on the machine's broker (guest may use it),
    so no other user of that broker shares its queues; deleted afterwards."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 5672) -> None:
        self.name = name
        self.url = f"amqp://guest:guest@{host}:{port}/{name}"

    @staticmethod
    def ctl(*args: str) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def create(self) -> None:
        self.ctl("add_vhost", self.name)
        self.ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def delete(self) -> None:
        self.ctl("delete_vhost", self.name)

    def queues(self) -> dict[str, int]:
        """Queue name → messages published into it so far (RabbitMQ's own count)."""
        out = self.ctl("list_queues", "-p", self.name, "--no-table-headers", "name", "messages")
        return {
            name: int(count)
            for name, count in (line.split("\t") for line in out.splitlines() if line.strip())
        }
