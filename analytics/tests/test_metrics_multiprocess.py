"""Metrics under gunicorn with two workers: one consistent view whichever worker answers."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test server
        return response.read().decode()


def healthz_requests(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "django_http_requests_total_by_view_transport_method":
            total += sum(
                s.value
                for s in family.samples
                if s.labels.get("view") == "healthz" and s.name.endswith("_total")
            )
    return total


def test_every_scrape_sees_all_workers_and_counters_never_go_back(gunicorn_server):
    gunicorn_server.start()
    for _ in range(60):
        get(f"{gunicorn_server.url}/healthz")
    seen = [healthz_requests(get(f"{gunicorn_server.url}/metrics")) for _ in range(20)]
    # Every worker that answered agrees: the 60 plus the start-up probes, every time.
    assert len(set(seen)) == 1
    assert 60 < seen[0] < 65
    files = list(gunicorn_server.multiproc_dir.iterdir())
    assert files and len(files) <= 2 * 4  # per worker: counter, gauge, histogram, summary


def test_restart_starts_from_a_clean_directory(gunicorn_server):
    gunicorn_server.start()
    for _ in range(30):
        get(f"{gunicorn_server.url}/healthz")
    gunicorn_server.stop()
    stale = gunicorn_server.multiproc_dir / "counter_999999.db"
    stale.write_bytes(b"not a metrics file")
    gunicorn_server.start()
    assert not stale.exists()
    after_start = healthz_requests(get(f"{gunicorn_server.url}/metrics"))
    assert after_start < 5  # only the start-up probes: the earlier 30 are gone with the files
    for _ in range(5):
        get(f"{gunicorn_server.url}/healthz")
    assert healthz_requests(get(f"{gunicorn_server.url}/metrics")) == after_start + 5
