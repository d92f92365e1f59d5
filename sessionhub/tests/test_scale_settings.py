"""The scale-out settings: Redis Sentinel and the PostgreSQL replica are configured whole or not
at all, and without them everything is as with one Redis and one database."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from .test_settings import GOOD

SCALE_VARIABLES = {
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_CLUSTER_NODES",
    "REDIS_CLUSTER_PASSWORD",
    "REDIS_SHARDS",
    "DATABASE_REPLICA_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
}
SHOW = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "databases": sorted(s.DATABASES),
    "replica_host": s.DATABASES.get("replica", {}).get("HOST"),
    "routers": s.DATABASE_ROUTERS,
    "broker": s.CELERY_BROKER_URL,
    "backend": s.CELERY_RESULT_BACKEND,
    "broker_options": s.CELERY_BROKER_TRANSPORT_OPTIONS,
    "backend_options": s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS,
    "backend_retry": s.CELERY_RESULT_BACKEND_ALWAYS_RETRY,
    "cache": s.CACHES["default"],
    "cluster": s.REDIS_CLUSTER_NODES,
    "shards": s.SESSIONHUB["REDIS_SHARDS"],
}, default=list))
"""


def load(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {*GOOD, *SCALE_VARIABLES, "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        env={
            **clean,
            **GOOD,
            "DJANGO_SETTINGS_MODULE": "sessionhub.settings.production",
            "REDIS_URL": "redis://:secret@127.0.0.1:6379/3",
            **env,
        },
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def shown(env: dict[str, str]) -> dict:
    result = load(env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_scale_variables_one_redis_and_one_database():
    values = shown({})
    assert values["databases"] == ["default"]
    assert values["broker"] == values["backend"] == "redis://:secret@127.0.0.1:6379/3"
    assert values["broker_options"] == {"visibility_timeout": 3600}
    assert values["backend_options"] == {}
    assert values["backend_retry"] is False
    assert values["cache"]["LOCATION"] == "redis://:secret@127.0.0.1:6379/3"
    assert values["cache"]["OPTIONS"]["CLIENT_CLASS"] == "django_redis.client.DefaultClient"
    assert "SENTINELS" not in values["cache"]["OPTIONS"]


def test_sentinel_configures_the_cache_and_celery():
    values = shown(
        {
            "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,10.0.0.3:26380",
            "REDIS_SENTINEL_MASTER": "sessionhub",
        }
    )
    expected = ";".join(
        f"sentinel://:secret@{address}/3"
        for address in ("10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26380")
    )
    assert values["broker"] == values["backend"] == expected
    assert values["broker_options"]["master_name"] == "sessionhub"
    assert values["broker_options"]["visibility_timeout"] == 3600
    assert values["backend_options"]["master_name"] == "sessionhub"
    assert values["backend_retry"] is True
    cache = values["cache"]
    assert cache["LOCATION"] == "redis://:secret@sessionhub/3"
    assert cache["OPTIONS"]["CLIENT_CLASS"] == "django_redis.client.SentinelClient"
    assert cache["OPTIONS"]["SENTINELS"] == [
        ["10.0.0.1", 26379],
        ["10.0.0.2", 26379],
        ["10.0.0.3", 26380],
    ]


def test_an_explicit_broker_url_wins_over_sentinel():
    values = shown(
        {
            "REDIS_SENTINELS": "10.0.0.1:26379",
            "REDIS_SENTINEL_MASTER": "sessionhub",
            "CELERY_BROKER_URL": "amqp://guest:guest@rabbitmq:5672/sessionhub",
        }
    )
    assert values["broker"] == "amqp://guest:guest@rabbitmq:5672/sessionhub"
    assert "master_name" not in values["broker_options"]
    assert values["backend"].startswith("sentinel://")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "sessionhub"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINEL_PASSWORD": "pw"}, "REDIS_SENTINELS"),
    ],
)
def test_half_a_sentinel_configuration_refuses_to_start(env, named):
    result = load(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_a_replica_url_adds_the_replica_alias():
    values = shown({"DATABASE_REPLICA_URL": "postgres://reader@replica.internal:5432/sessionhub"})
    assert values["databases"] == ["default", "replica"]
    assert values["replica_host"] == "replica.internal"
    assert values["routers"] == ["core.replica.ReplicaRouter"]


def test_a_redis_cluster_spreads_the_sessions_over_16_shards_by_default():
    values = shown({"REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7000"})
    assert values["cluster"] == [["10.0.0.1", 7000], ["10.0.0.2", 7000]]
    assert values["shards"] == 16
    # The cache and Celery stay on REDIS_URL's plain Redis (kombu cannot use a cluster).
    assert values["broker"] == "redis://:secret@127.0.0.1:6379/3"
    assert values["cache"]["LOCATION"] == "redis://:secret@127.0.0.1:6379/3"
    assert shown({"REDIS_CLUSTER_NODES": "10.0.0.1:7000", "REDIS_SHARDS": "6"})["shards"] == 6
    single = shown({})
    assert (single["cluster"], single["shards"]) == ([], 1)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {
                "REDIS_CLUSTER_NODES": "10.0.0.1:7000",
                "REDIS_SENTINELS": "10.0.0.1:26379",
                "REDIS_SENTINEL_MASTER": "m",
            },
            "REDIS_CLUSTER_NODES and REDIS_SENTINELS",
        ),
        ({"REDIS_CLUSTER_NODES": "10.0.0.1"}, "REDIS_CLUSTER_NODES"),
    ],
)
def test_a_wrong_cluster_configuration_refuses_to_start(env, named):
    result = load(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]
