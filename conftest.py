"""Fixtures shared by every app's tests: real PostgreSQL (pytest-django) and real Redis."""

import pytest
from rest_framework.test import APIClient

from core.redis import get_redis


@pytest.fixture(autouse=True)
def redis_clean():
    """Each test starts with an empty test Redis database (never the one `make run` uses)."""
    client = get_redis()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    assert db != 0, "the tests must not run against Redis database 0"
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(autouse=True)
def fresh_tracker():
    """This process's session tracker starts every test knowing nothing."""
    from accounts.tracking import tracker

    tracker.reset()
    yield tracker
    tracker.flush()
    tracker.reset()


@pytest.fixture
def frozen_clock(monkeypatch):
    """Session logic's clock, moved by hand (core.clock.now)."""
    from accounts.tests.helpers import FrozenClock
    from core import clock

    frozen = FrozenClock(clock.now())
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def password():
    return "correct horse battery staple"


@pytest.fixture
def user(django_user_model, password):
    return django_user_model.objects.create_user(username="alice", password=password)


@pytest.fixture
def staff_user(django_user_model, password):
    return django_user_model.objects.create_user(
        username="operator", password=password, is_staff=True
    )


@pytest.fixture
def unused_tcp_port():
    """A loopback port nothing listens on: a real 'connection refused'."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may stop and restart."""

    def __init__(self, port: int, workdir) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = None

    def start(self, *extra: str) -> None:
        import shutil
        import subprocess
        import time

        import redis

        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path, unused_tcp_port, settings):
    """Point the app at a private Redis (REDIS_URL and the cache) for an outage test."""
    server = PrivateRedis(unused_tcp_port, tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": server.url},
    }
    yield server
    server.stop()


class Gunicorn:
    """The app under gunicorn with several workers, on the test database and test Redis."""

    def __init__(self, port: int, multiproc_dir, workers: int = 2) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.multiproc_dir = multiproc_dir
        self.workers = workers
        self.process = None

    def start(self, extra_env: dict | None = None) -> None:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        from django.conf import settings as django_settings
        from django.db import connection

        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sessionhub.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": django_settings.REDIS_URL,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_ACCESS_LOG": "",
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir),
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "sessionhub.wsgi",
                "--config",
                "sessionhub/gunicorn.py",
            ],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):  # noqa: S310
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()) from None
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 30 s")

    def stop(self) -> None:
        import signal

        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def gunicorn_server(unused_tcp_port, tmp_path):
    server = Gunicorn(unused_tcp_port, tmp_path / "prometheus-multiproc")
    yield server
    server.stop()
