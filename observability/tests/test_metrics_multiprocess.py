"""Metrics under gunicorn with two workers: one consistent view whichever worker answers."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Requests are counted on a view the server's start-up probe (/healthz) never touches.
COUNTED = "/api/schema/"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test server
        return response.read().decode()


def counted_requests(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "django_http_requests_total_by_view_transport_method":
            total += sum(
                s.value
                for s in family.samples
                if s.labels.get("view") == "schema" and s.name.endswith("_total")
            )
    return total


def test_every_scrape_sees_all_workers_and_counters_never_go_back(gunicorn_server):
    gunicorn_server.start()
    for _ in range(40):
        get(gunicorn_server.url + COUNTED)
    seen = [counted_requests(get(f"{gunicorn_server.url}/metrics")) for _ in range(20)]
    assert seen == [40.0] * 20  # every worker that answered the scrape saw both workers' counts
    files = list(gunicorn_server.multiproc_dir.iterdir())
    assert files and len(files) <= 2 * 4  # per worker: counter, gauge, histogram, summary


def test_restart_starts_from_a_clean_directory(gunicorn_server):
    gunicorn_server.start()
    for _ in range(30):
        get(gunicorn_server.url + COUNTED)
    gunicorn_server.stop()
    stale = gunicorn_server.multiproc_dir / "counter_999999.db"
    stale.write_bytes(b"not a metrics file")
    gunicorn_server.start()
    assert not stale.exists()
    assert counted_requests(get(f"{gunicorn_server.url}/metrics")) == 0
    for _ in range(5):
        get(gunicorn_server.url + COUNTED)
    assert counted_requests(get(f"{gunicorn_server.url}/metrics")) == 5
