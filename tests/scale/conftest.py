"""Fixtures of the scale-out tests; everything started is stopped, pass or fail."""

from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

# The fault tests' fixtures: the app's processes on the test database and Redis (`stack`), and
# the hook that shows their logs when a test fails.
from tests.reliability.conftest import (  # noqa: F401
    _failed,
    _stop,
    pytest_runtest_makereport,
    stack,
)
from tests.reliability.helpers import (
    PrivatePostgres,
    Stack,
    database_url,
    free_port,
    wait_until,
)

from .helpers import PrivateReplica, RabbitVhost, SentinelGroup, SentinelStack


@pytest.fixture
def pg_pair(request, tmp_path):
    """A private PostgreSQL primary (schema migrated) and its streaming replica, caught up,
    with a Stack on the primary and the test Redis database."""
    primary = PrivatePostgres(free_port())
    replica = PrivateReplica(free_port())
    app = None
    try:
        primary.init()
        primary.start()
        primary.create_database()
        app = Stack(database_url=primary.url, redis_url=settings.REDIS_URL, log_dir=tmp_path)
        app.manage("migrate", "--no-input", timeout=300)
        replica.init_from(primary)
        replica.start()
        wait_until(lambda: replica.caught_up_with(primary), 60, 0.2, "the replica to catch up")
        yield primary, replica, app
    finally:
        if app is not None:
            _stop(request, app)
        replica.destroy()
        primary.destroy()


@pytest.fixture
def rabbitmq_vhost():
    """A virtual host of this test on the machine's RabbitMQ (skipped when there is none)."""
    import shutil
    import uuid

    from kombu import Connection

    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    vhost = RabbitVhost(f"sessionhub-test-{uuid.uuid4().hex[:12]}")
    try:
        vhost.create()
    except AssertionError as exc:
        pytest.skip(f"no RabbitMQ to create a virtual host on: {exc}")
    try:
        with Connection(vhost.url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        yield vhost
    finally:
        vhost.delete()


@pytest.fixture
def sentinel_group(request, tmp_path):
    """1 primary, 1 replica, 3 sentinels (started, replica in sync); stopped afterwards.
    Parametrized indirectly with {"relay": True}, the replica replicates through a relay."""
    workdir = tmp_path / "sentinel"
    workdir.mkdir()
    group = SentinelGroup(workdir, free_port)
    try:
        group.start(**getattr(request, "param", {}))
        yield group
    finally:
        group.stop()


@pytest.fixture
def sentinel_stack(request, sentinel_group, transactional_db, tmp_path):
    """The app's processes on the test database, their Redis the Sentinel group's primary."""
    db = int(urlsplit(settings.REDIS_URL).path.lstrip("/") or 0)
    app = SentinelStack(
        database_url=database_url(connection.settings_dict),
        # Only the database number counts: the sentinels name the primary.
        redis_url=f"redis://127.0.0.1:{sentinel_group.primary_port}/{db}",
        log_dir=tmp_path,
        group=sentinel_group,
    )
    yield app
    if _failed(request):
        print(sentinel_group.logs())
    _stop(request, app)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """A real Redis Cluster of 3 masters and 3 replicas (testing.redis_cluster) on ports
    7100-7199, for the module's tests; stopped afterwards, pass or fail."""
    import shutil

    from testing.redis_cluster import RedisClusterHarness

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are not installed")
    cluster = RedisClusterHarness(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(redis_cluster, settings):
    """The app in this process on the cluster: REDIS_CLUSTER_NODES, 6 virtual shards (two per
    master, whichever way the slots fall), every master emptied first."""
    from core.redis import get_redis

    redis_cluster.heal()  # a master killed by an earlier test: back as a replica
    settings.REDIS_CLUSTER_NODES = [("127.0.0.1", node.port) for node in redis_cluster.nodes]
    settings.SESSIONHUB = {**settings.SESSIONHUB, "REDIS_SHARDS": 6}
    client = get_redis()
    client.flushdb(target_nodes=client.PRIMARIES)
    yield redis_cluster


@pytest.fixture
def cluster_stack(request, redis_cluster, transactional_db, tmp_path):
    """The app's processes with their live sessions on the cluster (6 shards), the broker on
    the test Redis; every master emptied first."""
    from .helpers import ClusterStack

    redis_cluster.heal()
    app = ClusterStack(
        database_url=database_url(connection.settings_dict),
        redis_url=settings.REDIS_URL,
        log_dir=tmp_path,
        cluster=redis_cluster,
        shards=6,
    )
    app.flush_live()
    yield app
    _stop(request, app)
