"""Fixtures of the scale-out tests; everything started is stopped, pass or fail."""

import pytest
from django.conf import settings

from tests.reliability.conftest import _stop
from tests.reliability.helpers import PrivatePostgres, Stack, free_port, wait_until

from .helpers import PrivateReplica


@pytest.fixture
def pg_pair(request, tmp_path):
    """A private PostgreSQL primary (schema migrated) and its streaming replica, caught up,
    with a Stack on the primary and the test Redis database."""
    primary = PrivatePostgres(free_port())
    replica = PrivateReplica(free_port())
    stack = None
    try:
        primary.init()
        primary.start()
        primary.create_database()
        stack = Stack(database_url=primary.url, redis_url=settings.REDIS_URL, log_dir=tmp_path)
        stack.manage("migrate", "--no-input", timeout=300)
        replica.init_from(primary)
        replica.start()
        wait_until(lambda: replica.caught_up_with(primary), 60, 0.2, "the replica to catch up")
        yield primary, replica, stack
    finally:
        if stack is not None:
            _stop(request, stack)
        replica.destroy()
        primary.destroy()
