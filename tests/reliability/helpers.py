"""What the fault tests share: real processes (gunicorn, Celery worker and beat, a private
Redis or PostgreSQL), a load generator that counts exactly what it got, and the audit totals
as PostgreSQL and Redis hold them.

Every process runs in a session of its own, logs to a file under the test's temporary
directory (shown when a test fails) and is stopped by the fixture that started it.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import redis
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SYNC_TASK = "audit.tasks.sync_sessions"
TRACKED = "/api/sessions/"  # needs Redis, no SQL
TRACKED_SQL = "/api/me/"  # needs PostgreSQL (the user row), answers without Redis
PASSWORD = "reliability-password-1"


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


# --- processes -------------------------------------------------------------------------------


class Process:
    """A child process in its own session (so `kill -9` can take its whole group)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL to the process and every child it started: nothing gets to clean up."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.popen = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """A graceful stop (the process's own shutdown), then SIGKILL if it does not end."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        # Children left behind (a worker's pool) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.returncode
        self.popen = None
        return code


class Stack:
    """The app's processes on one PostgreSQL database and one Redis database.

    `redis_url` is the URL as the processes use it: the test settings move any REDIS_URL to
    database TEST_REDIS_DB, so it already names that database.
    """

    def __init__(self, *, database_url: str, redis_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.redis = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=5)
        self.celery = Celery(
            "reliability-client", broker=redis_url, backend=redis_url, set_as_current=False
        )
        self.celery.conf.update(
            accept_content=["json"],
            task_serializer="json",
            result_serializer="json",
            broker_connection_retry_on_startup=True,
        )

    def env(self, **extra: str) -> dict:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sessionhub.settings.test",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PYTHONUNBUFFERED": "1",
            **{name: str(value) for name, value in extra.items()},
        }

    def _spawn(self, name: str, argv: list[str], **extra) -> Process:
        process = Process(name, argv, self.env(**extra), self.log_dir).start()
        self.processes.append(process)
        return process

    def manage(self, *args: str, timeout: float = 120, **extra) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start_web(self, workers: int = 2, **extra) -> Process:
        extra.setdefault("PROMETHEUS_MULTIPROC_DIR", self.log_dir / "prometheus-multiproc")
        process = self._spawn(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "sessionhub.wsgi", "-c", "sessionhub/gunicorn.py"],
            GUNICORN_BIND=f"127.0.0.1:{self.web_port}",
            WEB_CONCURRENCY=workers,
            GUNICORN_ACCESS_LOG="",
            **extra,
        )

        def answers() -> bool:
            assert process.running, process.log()
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{self.web_url}/healthz", timeout=2).status_code == 200
            return False

        wait_until(answers, 30, 0.2, "gunicorn to answer /healthz")
        return process

    def start_worker(self, name: str = "worker", concurrency: int = 2, **extra) -> Process:
        """A Celery worker as the Procfile runs it (prefork pool)."""
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "sessionhub",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            **extra,
        )
        wait_until(
            lambda: " ready." in process.log() or not process.running,
            60,
            0.2,
            f"{name} to be ready",
        )
        assert process.running, process.log()
        return process

    def start_beat(self, name: str = "beat", **extra) -> Process:
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "sessionhub",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.log_dir / f"{name}-schedule"),
            ],
            **extra,
        )
        wait_until(
            lambda: "beat: Starting" in process.log() or not process.running,
            60,
            0.2,
            f"{name} to start",
        )
        assert process.running, process.log()
        return process

    def stop_all(self) -> None:
        """Stop every process (the last started first); one failing to stop stops no other."""
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop(timeout=30)
            except Exception as exc:  # reported after the others are stopped too
                errors.append(f"{process.name}: {exc!r}")
        with contextlib.suppress(Exception):
            self.celery.close()
            self.redis.close()
        assert not errors, errors

    def logs(self) -> str:
        out = []
        for process in self.processes:
            text = process.log()
            out.append(f"----- {process.name} (last 3000 chars) -----\n{text[-3000:]}")
        return "\n".join(out)

    # --- API -----------------------------------------------------------------------------

    def login(self, username: str, password: str = PASSWORD, **headers) -> requests.Response:
        return requests.post(
            f"{self.web_url}/api/auth/token/",
            json={"username": username, "password": password},
            headers=headers,
            timeout=30,
        )

    def login_many(self, usernames: list[str], threads: int = 4) -> list[str]:
        """One session per username (repeat a name for several sessions): the access tokens."""
        tokens: list[str | None] = [None] * len(usernames)

        def work(offset: int) -> None:
            with requests.Session() as http:
                for index in range(offset, len(usernames), threads):
                    response = http.post(
                        f"{self.web_url}/api/auth/token/",
                        json={"username": usernames[index], "password": PASSWORD},
                        timeout=30,
                    )
                    assert response.status_code == 200, response.text
                    tokens[index] = response.json()["access"]

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert None not in tokens
        return tokens

    def api_calls_exported(self) -> float:
        """api_calls_total as /metrics exports it (computed from Redis at scrape time)."""
        text = requests.get(f"{self.web_url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "api_calls":
                return sum(s.value for s in family.samples if s.name == "api_calls_total")
        raise AssertionError("api_calls_total not exported")

    # --- sync ------------------------------------------------------------------------------

    def stat(self, name: str) -> int:
        return int(self.redis.hget("shtest:stats", name) or 0)

    def backlog(self) -> tuple[int, int]:
        dirty = self.redis.scard("shtest:dirty") + self.redis.scard("shtest:dirty:inflight")
        return dirty, self.redis.xlen("shtest:events")

    def sync(self, timeout: float = 90) -> dict:
        """One sync run by the Celery worker; its result (sessions, events, skipped)."""
        return self.celery.send_task(SYNC_TASK).get(timeout=timeout)

    def sync_until_done(self, timeout: float = 150) -> list[dict]:
        """Runs of the sync on the worker until one ran (not skipped) and left no backlog."""
        deadline = time.monotonic() + timeout
        results = []
        while True:
            result = self.sync(timeout=max(deadline - time.monotonic(), 1))
            results.append(result)
            if not result["skipped"] and self.backlog() == (0, 0):
                return results
            assert time.monotonic() < deadline, (
                f"sync did not finish: {results}\n{self.diagnosis()}"
            )
            time.sleep(0.5)

    def diagnosis(self) -> str:
        """What a failed wait for the processes should report: the sync's counters and backlog
        (if Redis answers), and each process's last warnings and errors."""
        counters = ("sync_runs:ok", "sync_runs:skipped", "sync_runs:error", "api_calls")
        try:
            stats = {name: self.stat(name) for name in counters}
            state = f"stats {stats}, backlog {self.backlog()}"
        except redis.RedisError as exc:
            state = f"Redis: {exc!r}"
        noteworthy = re.compile(r"ERROR|WARNING|CRITICAL|Connected to|Cannot connect|retry")
        out = [state]
        for process in self.processes:
            lines = [line for line in process.log().splitlines() if noteworthy.search(line)]
            out.append(f"--- {process.name}: " + "\n".join(line[:200] for line in lines[-12:]))
        return "\n".join(out)


# --- load ------------------------------------------------------------------------------------


class Load:
    """A few threads doing authenticated GETs round the given tokens, counting every answer.

    Each thread pauses between requests (the machine is shared); it stops when told, after
    `max_seconds`, or after `max_requests` in all. A request that gets no answer at all is
    recorded as an error: the server may or may not have counted it, so a test of exact totals
    demands that there be none.
    """

    def __init__(
        self,
        base_url: str,
        path: str,
        tokens: list[str],
        *,
        threads: int = 3,
        pause: float = 0.01,
        max_seconds: float = 110,
        max_requests: int = 200_000,
    ) -> None:
        self.url = base_url + path
        self.tokens = list(tokens)
        self.threads = threads
        self.pause = pause
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.statuses: Counter[int] = Counter()
        self.ok_times: list[float] = []  # when each 2xx answer came
        self.other: list[tuple[float, int]] = []  # when and what each other answer was
        self.errors: list[str] = []
        self.sent = 0

    def add_tokens(self, tokens: list[str]) -> None:
        with self._lock:
            self.tokens.extend(tokens)

    @property
    def ok(self) -> int:
        with self._lock:
            return len(self.ok_times)

    def ok_between(self, start: float, end: float) -> int:
        """2xx answers that came between two `time.monotonic()` instants."""
        with self._lock:
            return sum(1 for t in self.ok_times if start <= t <= end)

    def server_errors(self) -> int:
        with self._lock:
            return sum(n for status, n in self.statuses.items() if status >= 500)

    def _run(self, offset: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        index = offset
        with requests.Session() as http:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.sent >= self.max_requests:
                        return
                    self.sent += 1
                    token = self.tokens[index % len(self.tokens)]
                index += self.threads
                try:
                    response = http.get(
                        self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                    )
                except requests.RequestException as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                now, status = time.monotonic(), response.status_code
                with self._lock:
                    self.statuses[status] += 1
                    if 200 <= status < 300:
                        self.ok_times.append(now)
                    else:
                        self.other.append((now, status))
                self._stop.wait(self.pause)

    def start(self) -> "Load":
        self._workers = [
            threading.Thread(target=self._run, args=(n,), name=f"load-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def summary(self) -> str:
        return f"{self.ok} ok, statuses {dict(self.statuses)}, {len(self.errors)} errors"


# --- what PostgreSQL and Redis hold ----------------------------------------------------------


def audit_totals(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        sessions, calls = conn.execute(
            "SELECT count(*), coalesce(sum(api_call_count), 0) FROM audit_session"
        ).fetchone()
        (hour_calls,) = conn.execute(
            "SELECT coalesce(sum(h.calls::bigint), 0) "
            "FROM audit_session, jsonb_each_text(hourly_calls) AS h(hour, calls)"
        ).fetchone()
        events, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT stream_id) FROM audit_event"
        ).fetchone()
        by_type = dict(conn.execute("SELECT event_type, count(*) FROM audit_event GROUP BY 1"))
        (sessions_with_login,) = conn.execute(
            "SELECT count(*) FROM audit_session s WHERE EXISTS ("
            "  SELECT 1 FROM audit_event e WHERE e.session_id = s.sid AND e.event_type = 'login')"
        ).fetchone()
    return {
        "sessions": sessions,
        "calls": int(calls),
        "hour_calls": int(hour_calls),
        "events": events,
        "distinct_stream_ids": distinct,
        "by_type": by_type,
        "sessions_with_login": sessions_with_login,
    }


def assert_exact(stack: Stack, dsn: str, *, calls: int, logins: int, failed_logins: int) -> dict:
    """The promise: every 2xx tracked call counted once, every event stored once."""
    totals = audit_totals(dsn)
    assert totals["calls"] == calls, (totals, calls)
    assert totals["hour_calls"] == calls, (totals, calls)
    assert totals["sessions"] == logins, totals
    assert totals["sessions_with_login"] == logins, totals
    assert totals["events"] == totals["distinct_stream_ids"] == logins + failed_logins, totals
    assert totals["by_type"] == {"login": logins, "login_failed": failed_logins}, totals
    assert stack.stat("api_calls") == calls
    assert stack.backlog() == (0, 0)
    return totals


def settle_and_assert_exact(
    stack: Stack, dsn: str, *, calls: int, logins: int, failed_logins: int
) -> dict:
    """After the load: every call flushed to Redis and exported, a final sync, then the promise
    (assert_exact). Returns PostgreSQL's totals."""
    assert wait_for_flushed(stack, calls) == calls
    assert stack.api_calls_exported() == calls
    stack.sync_until_done()
    return assert_exact(stack, dsn, calls=calls, logins=logins, failed_logins=failed_logins)


def wait_for_flushed(stack: Stack, calls: int, timeout: float = 10) -> int:
    """Wait until the web workers' flushes have brought Redis's api_calls up to `calls`."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: stack.stat("api_calls") >= calls, timeout, 0.1, "tracking flushes")
    return stack.stat("api_calls")


def database_url(settings_dict: dict) -> str:
    """The URL of Django's current database (the test database, during a test)."""
    db = settings_dict
    user = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# --- private servers -------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl), run as `postgres` under root.

    It lives in a directory of its own under the system temporary directory: the `postgres`
    user cannot enter pytest's (root-only) temporary directories.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="sessionhub-reliability-pg-"))
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.bindir = self._bindir()
        self.url = f"postgres://postgres@127.0.0.1:{port}/sessionhub"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.running = False

    @staticmethod
    def _bindir() -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
        if not candidates:
            import pytest

            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        return candidates[0].parent

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        argv = list(cmd)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr + self.server_log()

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def init(self) -> None:
        self.run_dir.mkdir()
        if os.geteuid() == 0:
            for path in (self.root, self.run_dir):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.run_dir} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def create_database(self, name: str = "sessionhub") -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
