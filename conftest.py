"""Fixtures shared by every app's tests: real PostgreSQL (pytest-django) and real Redis."""

import pytest
from rest_framework.test import APIClient

from core.redis import get_redis, is_cluster
from testing import Gunicorn, PrivateRedis, free_port


@pytest.fixture(autouse=True)
def redis_clean():
    """Each test starts with an empty test Redis database (never the one `make run` uses)."""
    client = get_redis()
    if is_cluster(client):  # a test's own cluster (tests/scale): every master
        client.flushdb(target_nodes=client.PRIMARIES)
        yield client
        return
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
    return free_port()


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
    server.kill()


class AppServer(Gunicorn):
    """The app under gunicorn with several workers, on the test database and test Redis."""

    def __init__(self, port: int, multiproc_dir, workers: int = 2) -> None:
        super().__init__(config="sessionhub/gunicorn.py", env={}, port=port)
        self.multiproc_dir = multiproc_dir
        self.workers = workers

    def start(self, extra_env: dict | None = None) -> None:
        from django.conf import settings as django_settings
        from django.db import connection

        db = connection.settings_dict
        self.env = {
            "DJANGO_SETTINGS_MODULE": "sessionhub.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": django_settings.REDIS_URL,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_ACCESS_LOG": "",
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir),
            **(extra_env or {}),
        }
        super().start()


@pytest.fixture
def gunicorn_server(unused_tcp_port, tmp_path):
    server = AppServer(unused_tcp_port, tmp_path / "prometheus-multiproc")
    yield server
    server.stop()
