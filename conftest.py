"""Fixtures shared by every app's tests: real PostgreSQL (pytest-django) and real Redis."""

import pytest
from rest_framework.test import APIClient

from sessionhub.redis import get_redis


@pytest.fixture(autouse=True)
def redis_clean():
    """Each test starts with an empty test Redis database (never the one `make run` uses)."""
    client = get_redis()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    assert db != 0, "the tests must not run against Redis database 0"
    client.flushdb()
    yield client
    client.flushdb()


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
