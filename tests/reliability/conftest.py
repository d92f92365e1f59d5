"""Fixtures of the fault tests: the app's real processes on the test database and Redis, or on
a private Redis / PostgreSQL the test may stop. Everything started is stopped, pass or fail."""

from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from testing import PrivateRedis, free_port

from .helpers import PrivatePostgres, Stack, database_url, with_db


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _test_redis_db() -> int:
    return int(urlsplit(settings.REDIS_URL).path.lstrip("/") or 0)


def _stop(request, stack: Stack) -> None:
    try:
        if _failed(request):
            print(stack.logs())
    finally:
        stack.stop_all()


@pytest.fixture
def stack(request, transactional_db, tmp_path):
    """Processes on the test database and the test Redis database."""
    app = Stack(
        database_url=database_url(connection.settings_dict),
        redis_url=settings.REDIS_URL,
        log_dir=tmp_path,
    )
    yield app
    _stop(request, app)


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server (not started yet: the test chooses its persistence)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(free_port(), workdir)
    yield server
    server.stop()


@pytest.fixture
def redis_stack(request, redis_server, transactional_db, tmp_path):
    """Processes on the test database and the private Redis (same database number as the
    test settings give any REDIS_URL)."""
    app = Stack(
        database_url=database_url(connection.settings_dict),
        redis_url=with_db(f"redis://127.0.0.1:{redis_server.port}/0", _test_redis_db()),
        log_dir=tmp_path,
    )
    yield app
    _stop(request, app)


@pytest.fixture
def postgres_server():
    """A private PostgreSQL cluster, started, with an empty `sessionhub` database."""
    server = PrivatePostgres(free_port())
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_stack(request, postgres_server, tmp_path):
    """Processes on the private PostgreSQL (schema migrated into it) and the test Redis."""
    app = Stack(database_url=postgres_server.url, redis_url=settings.REDIS_URL, log_dir=tmp_path)
    yield app
    _stop(request, app)
