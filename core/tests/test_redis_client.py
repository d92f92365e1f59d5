"""core.redis: the client the settings ask for, and a Redis Cluster that does not answer as
the designed "Redis away" state (the real cluster: tests/scale/test_redis_cluster.py)."""

import pytest
import redis

from accounts.tests.helpers import bearer, login
from core.redis import REDIS_UNAVAILABLE, get_redis, is_cluster

pytestmark = pytest.mark.django_db


def test_single_redis_by_default():
    assert not is_cluster(get_redis())


def test_a_cluster_that_does_not_answer_is_redis_away(
    settings, unused_tcp_port, api_client, user, password
):
    settings.REDIS_CLUSTER_NODES = [("127.0.0.1", unused_tcp_port)]
    with pytest.raises(redis.ConnectionError) as raised:
        get_redis()
    assert isinstance(raised.value, REDIS_UNAVAILABLE)
    # Logins and authenticated calls go on (the session is opened in Redis later); /healthz
    # names Redis.
    response = login(api_client, user.username, password)
    assert response.status_code == 200, response.content
    me = api_client.get("/api/me/", **bearer(response.json()["access"]))
    assert me.status_code == 200
    health = api_client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["redis"] != "ok"


@pytest.mark.parametrize("shards", [0, 1025])
def test_the_number_of_shards_is_bounded(settings, shards):
    from django.core.exceptions import ImproperlyConfigured

    from core.conf import get_settings

    settings.SESSIONHUB = {**settings.SESSIONHUB, "REDIS_SHARDS": shards}
    with pytest.raises(ImproperlyConfigured, match="REDIS_SHARDS"):
        get_settings()
