import pytest
from django.db import connection

from core.redis import get_redis

pytestmark = pytest.mark.django_db


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
        "failing": [],
    }


def test_redis_down_names_redis(client, settings, unused_tcp_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{unused_tcp_port}/15"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_database_down_names_database(client, unused_tcp_port):
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = unused_tcp_port
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    assert get_redis().ping()
