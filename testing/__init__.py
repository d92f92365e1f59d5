"""The harness shared by the test suite (conftest.py, tests/) and the benchmarks (bench/):
free loopback ports, a private redis-server, a Redis Cluster, the project under gunicorn.
Never imported by the product code."""

from .gunicorn import Gunicorn
from .net import free_port, wait_until
from .redis_cluster import RedisClusterHarness
from .redis_server import PrivateRedis

__all__ = ["Gunicorn", "PrivateRedis", "RedisClusterHarness", "free_port", "wait_until"]
