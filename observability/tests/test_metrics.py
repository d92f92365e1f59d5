"""/metrics: the seed's names, exact values from Redis, bounded labels, not public."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker

pytestmark = pytest.mark.django_db

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def scrape(client, **meta) -> str:
    response = client.get("/metrics", **(meta or LOOPBACK))
    assert response.status_code == 200
    return response.content.decode()


def samples(text: str) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_not_public(client, settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "METRICS_TOKEN": "s3cret-token-for-scrapes"}
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.5").status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    right = client.get(
        "/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer s3cret-token-for-scrapes"
    )
    assert right.status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_allowlist_and_proxies(client, settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "METRICS_ALLOWED_IPS": "10.20.0.0/16"}
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 403
    # Behind a local reverse proxy, a public client is not "loopback".
    settings.TRUSTED_PROXIES = "1"
    proxied = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert proxied.status_code == 403


def test_the_seeds_metrics_with_their_exact_names_and_types(client):
    found = types(scrape(client))
    assert found["sessions_active_total"] == "gauge"
    assert found["api_calls"] == "counter"  # exposed as api_calls_total
    assert found["session_duration_seconds"] == "histogram"
    assert found["login_failures"] == "counter"


def test_values_follow_the_traffic(api_client, client, user, password):
    tokens = login(api_client, user.username, password).json()
    for _ in range(3):
        assert api_client.get("/api/sessions/", **bearer(tokens["access"])).status_code == 200
    login(api_client, user.username, "wrong")
    login(api_client, "ghost", "wrong")
    api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    tracker.flush()
    values = samples(scrape(client))
    assert values[("api_calls_total", ())] == 3
    assert values[("sessions_started_total", ())] == 1
    assert values[("sessions_ended_total", (("reason", "logout"),))] == 1
    assert values[("session_duration_seconds_count", ())] == 1
    assert values[("session_duration_seconds_bucket", (("le", "60"),))] == 1
    assert values[("login_failures_total", (("reason", "bad_password"),))] == 1
    assert values[("login_failures_total", (("reason", "unknown_user"),))] == 1
    assert values[("login_failures_total", (("reason", "throttled"),))] == 0
    assert values[("sessions_active_total", ())] == 0  # logged out: no longer live
    assert values[("sessionhub_redis_up", ())] == 1


def test_session_anomalies_are_counted_without_naming_anyone(api_client, client, user, password):
    tokens = login(api_client, user.username, password).json()
    for address, agent in (("198.51.100.23", "Firefox/128.0"), ("203.0.113.77", "curl/8.5")):
        response = api_client.get(
            "/api/sessions/",
            **bearer(tokens["access"]),
            REMOTE_ADDR=address,
            HTTP_USER_AGENT=agent,
        )
        assert response.status_code == 200
    tracker.flush()
    text = scrape(client)
    assert types(text)["session_anomalies"] == "counter"
    assert samples(text)[("session_anomalies_total", ())] == 1
    assert "203.0.113" not in text and "curl" not in text


def test_active_sessions_and_status(api_client, client, user, password, frozen_clock):
    for _ in range(2):
        login(api_client, user.username, password)
    frozen_clock.advance(600)
    login(api_client, user.username, password)
    values = samples(scrape(client))
    assert values[("sessions_active_total", ())] == 1
    assert values[("sessions_by_status", (("status", "active_now"),))] == 1
    assert values[("sessions_by_status", (("status", "recent"),))] == 2
    assert values[("sessions_by_status", (("status", "inactive"),))] == 0


def test_cardinality_does_not_grow_with_users_or_ips(
    api_client, client, django_user_model, password
):
    def series_after(n_users: int) -> set:
        for n in range(n_users):
            name = f"user{n}-{n_users}"
            django_user_model.objects.create_user(username=name, password=password)
            login(api_client, name, password, REMOTE_ADDR=f"198.51.100.{n % 250}")
            login(api_client, name, "wrong", REMOTE_ADDR=f"203.0.113.{n % 250}")
        tracker.flush()
        return {
            key for key in samples(scrape(client)) if not key[0].startswith(("python_", "process_"))
        }

    few = series_after(2)
    many = series_after(60)
    assert {name for name, _ in few} == {name for name, _ in many}
    django_series = {key for key in many if key[0].startswith("django_")}
    assert len(many - django_series) == len(
        few - {key for key in few if key[0].startswith("django_")}
    )
    labels = " ".join(str(labels) for _, labels in many)
    assert "user5-60" not in labels and "198.51.100." not in labels and "203.0.113." not in labels


def test_redis_down_is_reported_not_a_500(client, private_redis):
    private_redis.kill()
    values = samples(scrape(client))
    assert values[("sessionhub_redis_up", ())] == 0


# The interface contract fixes `sessions_active_total` as a gauge (the seed's name and type);
# Prometheus' naming lint reserves `_total` for counters. The contract wins, and this is the
# only complaint promtool may have.
CONTRACT_LINT_EXCEPTION = (
    'sessions_active_total non-counter metrics should not have "_total" suffix'
)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by make test")
def test_promtool_finds_nothing_else_to_complain_about(api_client, client, user, password):
    tokens = login(api_client, user.username, password).json()
    api_client.get("/api/sessions/", **bearer(tokens["access"]))
    login(api_client, user.username, "wrong")
    api_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json")
    tracker.flush()
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=scrape(client),
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = (result.stdout + result.stderr).strip().splitlines()
    assert complaints == [CONTRACT_LINT_EXCEPTION]
