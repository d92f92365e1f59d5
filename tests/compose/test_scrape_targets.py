"""prometheus.yml and docker-compose.yml agree: every target is a compose service that exposes
that port, and every service Prometheus should scrape is scraped."""

import pytest
import yaml

from tests.monitoring.helpers import PROMETHEUS_YML

from .helpers import environment, exposed_ports

# Services that serve /metrics for Prometheus.
SCRAPED = {"app", "redis_exporter", "postgres_exporter"}
# The port each one listens on unless its environment moves it.
LISTEN_ADDRESS_VARIABLES = {
    "redis_exporter": ("REDIS_EXPORTER_WEB_LISTEN_ADDRESS", 9121),
    "postgres_exporter": ("PG_EXPORTER_WEB_LISTEN_ADDRESS", 9187),
}


def prometheus_config() -> dict:
    return yaml.safe_load(PROMETHEUS_YML.read_text())


def scrape_targets() -> dict[str, list[str]]:
    return {
        job["job_name"]: [
            target for static in job.get("static_configs", []) for target in static["targets"]
        ]
        for job in prometheus_config()["scrape_configs"]
    }


def alertmanager_targets() -> list[str]:
    return [
        target
        for manager in prometheus_config()["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]


def resolve(target: str) -> tuple[str, int]:
    """host:port -> (compose service, port); localhost is Prometheus' own container."""
    host, _, port = target.rpartition(":")
    return ("prometheus" if host == "localhost" else host), int(port)


def all_targets() -> list[str]:
    return [t for targets in scrape_targets().values() for t in targets] + alertmanager_targets()


@pytest.mark.parametrize("target", all_targets())
def test_every_target_is_a_service_exposing_that_port(services, target):
    service, port = resolve(target)
    assert service in services, f"{target}: no compose service {service!r}"
    assert port in exposed_ports(services[service]), f"{target}: {service} does not expose it"


def test_every_service_that_serves_metrics_is_scraped():
    scraped = {resolve(t)[0] for targets in scrape_targets().values() for t in targets}
    assert scraped >= SCRAPED, SCRAPED - scraped


def test_the_scraped_processes_listen_on_the_scraped_ports(services):
    ports = {resolve(t)[0]: resolve(t)[1] for targets in scrape_targets().values() for t in targets}
    bind = environment(services["app"])["GUNICORN_BIND"]
    assert int(bind.rsplit(":", 1)[1]) == ports["app"]
    for name, (variable, default) in LISTEN_ADDRESS_VARIABLES.items():
        address = environment(services[name]).get(variable, f":{default}")
        assert int(address.rsplit(":", 1)[1]) == ports[name], name


def test_the_targeted_services_do_not_wait_for_each_other(services):
    """Prometheus must run while the app is down: that is when it alerts."""
    assert not set(services["prometheus"].get("depends_on", {})) & SCRAPED


def test_the_mismatch_check_can_fail(services):
    with pytest.raises(AssertionError):
        test_every_target_is_a_service_exposing_that_port(services, "app:9999")
    with pytest.raises(AssertionError):
        test_every_target_is_a_service_exposing_that_port(services, "exporter:9121")
