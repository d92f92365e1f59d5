"""docker-compose.yml: docker-compose and the Compose Specification schema accept it, every
secret comes from the environment and goes only where it is needed, ports stay on loopback,
and every service has the image, healthcheck, restart policy and volumes it should."""

import importlib.resources
import json
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator

from tests.monitoring.helpers import need, run

from .helpers import (
    COMPOSE_FILE,
    DJANGO_SERVICES,
    DUMMY_ENV,
    ENV_EXAMPLE,
    PRODUCTION_SETTINGS,
    ROOT,
    argv,
    compose_text,
    docker_compose,
    environment,
    healthcheck_enabled,
    mounts,
    published_ports,
    raw_compose,
    referenced_variables,
    required_variables,
    resolved_compose,
    tmpfs_paths,
    under,
)

SERVICES = {
    "redis",
    "redis_exporter",
    "postgres",
    "postgres_exporter",
    "migrate",
    "app",
    "worker",
    "beat",
    "prometheus",
    "alertmanager",
    "grafana",
}

# The secrets, and the services that need each one: no other service may receive it.
SECRETS = {
    "SECRET_KEY": DJANGO_SERVICES,
    "JWT_SIGNING_KEY": DJANGO_SERVICES,
    "METRICS_TOKEN": DJANGO_SERVICES | {"prometheus"},
    "POSTGRES_PASSWORD": DJANGO_SERVICES | {"postgres", "postgres_exporter"},
    "GRAFANA_ADMIN_PASSWORD": {"grafana"},
    "GRAFANA_DB_PASSWORD": {"migrate", "grafana"},
    "ALERT_SLACK_WEBHOOK_URL": {"alertmanager"},
}
# Secret, yet optional: needed only with ALERT_SMTP_USERNAME (alertmanager/entrypoint.sh
# refuses to start without it then).
OPTIONAL_SECRETS = {"ALERT_SMTP_PASSWORD"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|WEBHOOK|DATA_SOURCE_NAME|DATABASE_URL")

# Services with no healthcheck, and why.
WITHOUT_HEALTHCHECK = {
    "redis_exporter": "the image has no shell or HTTP client; Prometheus watches it",
    "beat": "serves nothing to ask; the Celery heartbeat alert watches it",
    "migrate": "one-off: exits when the migrations are applied",
}

# Where each stateful service keeps its data: a named volume must be mounted there.
DATA_DIRECTORIES = {
    "redis": "/data",
    "postgres": "/var/lib/postgresql/data",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
    "grafana": "/var/lib/grafana",
    "beat": "/app/.local",
}


def tool_version(*command: str) -> str:
    """The x.y.z version a Debian tool prints (its own --version output)."""
    result = run([need(command[0]), *command[1:]])
    output = result.stdout + result.stderr
    match = re.search(r"(?:version |Exporter )v?(\d+\.\d+\.\d+)", output)
    assert match, output
    return match.group(1)


# --- the file is valid ----------------------------------------------------------------------


def test_docker_compose_config_accepts_the_file(tmp_path):
    result = docker_compose(tmp_path, DUMMY_ENV, "config", "-q")
    assert result.returncode == 0, result.stderr
    # A "WARNING: The X variable is not set" would mean a variable without a default.
    assert "WARNING" not in result.stderr, result.stderr


def test_the_services(services):
    assert set(services) == SERVICES


@pytest.mark.parametrize("name", sorted(required_variables()))
def test_an_empty_required_variable_stops_docker_compose_naming_it(tmp_path, name):
    """`cp .env.example .env` leaves the secrets empty: compose must refuse to go on."""
    result = docker_compose(tmp_path, {**DUMMY_ENV, name: ""}, "config", "-q")
    assert result.returncode != 0
    assert f"set {name} in .env" in result.stderr, result.stderr


def test_a_missing_secret_stops_docker_compose_naming_it(tmp_path):
    env = {name: value for name, value in DUMMY_ENV.items() if name != "JWT_SIGNING_KEY"}
    result = docker_compose(tmp_path, env, "config", "-q")
    assert result.returncode != 0
    assert "set JWT_SIGNING_KEY in .env" in result.stderr, result.stderr


def test_the_dummy_env_provides_exactly_the_required_variables():
    assert set(DUMMY_ENV) == required_variables()


def test_every_reference_to_a_secret_requires_it():
    """${NAME:?...} (stops when missing OR empty) at every use, never a default."""
    references = referenced_variables()
    for name in SECRETS:
        assert references.get(name) == {":?"}, f"{name}: {references.get(name)}"


def compose_spec_schema() -> dict:
    """The Compose Specification JSON schema, as vendored by check-jsonschema (the schema can't
    be downloaded at test time)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    assert schema.get("title") == "Compose Specification", schema.get("title")
    Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(document: dict) -> list[str]:
    validator = Draft202012Validator(compose_spec_schema())
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_the_file_as_written_follows_the_compose_specification_schema():
    assert schema_errors(raw_compose()) == []


def test_the_resolved_file_follows_the_compose_specification_schema(compose):
    assert schema_errors(compose) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda doc: doc["services"]["app"].update(restart_policy="always"),
        lambda doc: doc["services"]["app"]["depends_on"]["migrate"].update(condition="done"),
        lambda doc: doc["services"]["redis"].update(healthcheck={"test": 1}),
    ],
    ids=["unknown-key", "bad-condition", "bad-healthcheck"],
)
def test_the_schema_check_can_fail(mutate):
    document = raw_compose()
    mutate(document)
    assert schema_errors(document)


# --- secrets --------------------------------------------------------------------------------


def test_no_secret_value_is_written_in_the_file(raw):
    text = compose_text()
    # user:password@ in a URL is always an interpolated variable.
    for match in re.finditer(r"://[^/\s:@]+:([^@\s]+)@", text):
        assert match.group(1).startswith("${"), match.group(0)
    for name, service in raw["services"].items():
        env = service.get("environment") or {}
        for variable, value in env.items():
            if SECRET_NAME.search(variable) and value is not None:
                assert "${" in str(value), f"{name}: {variable} is written in the file"


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_each_secret_reaches_only_the_services_that_need_it(services, secret):
    value = DUMMY_ENV[secret]
    receivers = {
        name
        for name, service in services.items()
        if any(value in setting for setting in environment(service).values())
    }
    assert receivers == SECRETS[secret]


def test_no_service_reads_a_whole_env_file(services):
    """env_file would hand every secret of .env to the service."""
    assert [name for name, service in services.items() if "env_file" in service] == []


def test_the_optional_smtp_password_goes_to_alertmanager_only(tmp_path):
    env = {**DUMMY_ENV, "ALERT_SMTP_USERNAME": "am", "ALERT_SMTP_PASSWORD": "dummy-smtp-secret"}
    services = resolved_compose(tmp_path, env)["services"]
    receivers = {
        name
        for name, service in services.items()
        if "dummy-smtp-secret" in environment(service).values()
    }
    assert receivers == {"alertmanager"}
    assert referenced_variables()["ALERT_SMTP_PASSWORD"] <= {":-"}
    assert OPTIONAL_SECRETS.isdisjoint(SECRETS)


# --- ports ----------------------------------------------------------------------------------


def test_published_ports_listen_on_loopback_by_default(services):
    published = {
        name: port for name, service in services.items() for port in published_ports(service)
    }
    assert published, "nothing is published"
    for name, port in published.items():
        assert port.host_ip == "127.0.0.1", f"{name} publishes {port}"


def test_only_the_operator_facing_services_are_published(services):
    assert {name for name, service in services.items() if published_ports(service)} == {
        "app",
        "grafana",
        "prometheus",
        "alertmanager",
    }


def test_the_app_and_grafana_addresses_can_be_opened_by_the_operator(tmp_path):
    env = {**DUMMY_ENV, "APP_BIND_ADDRESS": "192.0.2.10", "GRAFANA_BIND_ADDRESS": "192.0.2.11"}
    services = resolved_compose(tmp_path, env)["services"]
    assert [port.host_ip for port in published_ports(services["app"])] == ["192.0.2.10"]
    assert [port.host_ip for port in published_ports(services["grafana"])] == ["192.0.2.11"]
    assert [port.host_ip for port in published_ports(services["prometheus"])] == ["127.0.0.1"]


# --- images ---------------------------------------------------------------------------------


def test_images_are_pinned(services):
    for name, service in services.items():
        if name in DJANGO_SERVICES:
            continue
        image = service["image"]
        # A version: at least major.minor (PostgreSQL numbers its releases 15.x).
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.fullmatch(r"v?\d+\.\d+(?:\.\d+)?", tag), f"{name}: {image} is not pinned"


def test_redis_and_postgres_majors(services):
    assert re.fullmatch(r"redis:7\.\d+\.\d+", services["redis"]["image"])
    assert re.fullmatch(r"postgres:15\.\d+", services["postgres"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_monitoring_images_are_the_versions_the_tests_run(services):
    """The exporters, Prometheus and Alertmanager are the versions of the Debian tools that
    check their configuration and metric names in this test suite."""
    redis_exporter = tool_version("prometheus-redis-exporter", "--version")
    postgres_exporter = tool_version("prometheus-postgres-exporter", "--version")
    prometheus = tool_version("promtool", "--version")
    alertmanager = tool_version("amtool", "--version")
    assert services["redis_exporter"]["image"] == f"oliver006/redis_exporter:v{redis_exporter}"
    assert (
        services["postgres_exporter"]["image"]
        == f"quay.io/prometheuscommunity/postgres-exporter:v{postgres_exporter}"
    )
    assert services["prometheus"]["image"] == f"prom/prometheus:v{prometheus}"
    assert services["alertmanager"]["image"] == f"prom/alertmanager:v{alertmanager}"
    assert prometheus.startswith("2.")


def test_the_django_services_share_one_image_built_here(services):
    images = {services[name]["image"] for name in DJANGO_SERVICES}
    assert len(images) == 1
    for name in DJANGO_SERVICES:
        assert services[name]["build"]["context"] == str(COMPOSE_FILE.parent)
    assert {name for name, service in services.items() if "build" in service} == DJANGO_SERVICES


# --- health, restarts, ordering, data -------------------------------------------------------


def test_healthchecks(services):
    missing = {name for name, service in services.items() if not healthcheck_enabled(service)}
    assert missing == set(WITHOUT_HEALTHCHECK)


def test_restart_policies(services):
    for name, service in services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name


def test_depends_on_always_names_a_condition_that_can_be_met(raw, services):
    for name, service in raw["services"].items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for dependency, spec in depends_on.items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert healthcheck_enabled(services[dependency]), f"{name} -> {dependency}"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{name} -> {dependency}"
            else:
                assert condition == "service_started", f"{name} -> {dependency}: {condition}"


@pytest.mark.parametrize("name", ["app", "worker", "beat", "grafana"])
def test_the_services_using_the_schema_wait_for_the_migrations(services, name):
    depends_on = services[name]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    if name != "grafana":
        assert depends_on["redis"]["condition"] == "service_healthy"


def test_migrate_runs_the_migrations_once_postgres_is_up(services):
    migrate = services["migrate"]
    assert argv(migrate["command"]) == ["python", "manage.py", "migrate", "--no-input"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Static files are collected in the image (Dockerfile), not here.


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes", {}))
    for name, directory in DATA_DIRECTORIES.items():
        found = [m for m in mounts(services[name]) if m.target == directory]
        assert len(found) == 1, f"{name}: nothing mounted at {directory}"
        assert found[0].kind == "volume" and not found[0].read_only, found[0]
        assert found[0].source in declared, found[0]
    used = {m.source for s in services.values() for m in mounts(s) if m.kind == "volume"}
    assert used == declared


def test_redis_persists_and_never_evicts(services):
    command = argv(services["redis"]["command"])
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--save"].split() and options["--save"] != '""'  # RDB snapshots too
    assert options["--maxmemory-policy"] == "noeviction"


def test_postgres_database_and_exporter_dsn(services):
    postgres = environment(services["postgres"])
    assert postgres["POSTGRES_PASSWORD"] == DUMMY_ENV["POSTGRES_PASSWORD"]
    dsn = urlsplit(environment(services["postgres_exporter"])["DATA_SOURCE_NAME"])
    assert (dsn.hostname, dsn.port, dsn.path) == ("postgres", 5432, f"/{postgres['POSTGRES_DB']}")
    assert (dsn.username, dsn.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    redis_addr = urlsplit(environment(services["redis_exporter"])["REDIS_ADDR"])
    assert (redis_addr.hostname, redis_addr.port) == ("redis", 6379)


# --- the Django processes -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DJANGO_SERVICES))
def test_django_services_connect_to_the_compose_postgres_and_redis(services, name):
    env = environment(services[name])
    postgres = environment(services["postgres"])
    database = urlsplit(env["DATABASE_URL"])
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.path == f"/{postgres['POSTGRES_DB']}"
    assert (database.username, database.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    redis_url = urlsplit(env["REDIS_URL"])
    assert (redis_url.hostname, redis_url.port) == ("redis", 6379)


def test_the_app_listens_on_all_container_interfaces_and_keeps_metrics_on_tmpfs(services):
    app = services["app"]
    env = environment(app)
    assert env["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert any(under(env["PROMETHEUS_MULTIPROC_DIR"], path) for path in tmpfs_paths(app))
    for name in DJANGO_SERVICES - {"app"}:
        # Outside gunicorn, prometheus_client would write its files there too.
        assert "PROMETHEUS_MULTIPROC_DIR" not in environment(services[name]), name


def test_trusted_proxies_and_optional_settings_are_passed_through(tmp_path, services):
    assert environment(services["app"])["TRUSTED_PROXIES"] == ""
    env = {**DUMMY_ENV, "TRUSTED_PROXIES": "1", "LOG_LEVEL": "DEBUG", "SECURE_COOKIES": "false"}
    changed = resolved_compose(tmp_path, env)["services"]
    for name in DJANGO_SERVICES:
        app_env = environment(changed[name])
        assert (app_env["TRUSTED_PROXIES"], app_env["LOG_LEVEL"]) == ("1", "DEBUG"), name
        assert app_env["SECURE_COOKIES"] == "false"
    # Not set: not passed at all (an empty SECURE_COOKIES would turn secure cookies off).
    assert "SECURE_COOKIES" not in environment(services["app"])
    assert "LOG_LEVEL" not in environment(services["app"])


def test_the_production_settings_load_with_the_compose_environment(services):
    """The app's environment satisfies sessionhub.settings.production, with the host names
    Prometheus and the container healthcheck use."""
    env = environment(services["app"])
    assert env["DJANGO_SETTINGS_MODULE"] == PRODUCTION_SETTINGS
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps({'debug': settings.DEBUG, 'hosts': settings.ALLOWED_HOSTS, "
        "'secure': settings.SESSION_COOKIE_SECURE, "
        "'token': settings.SESSIONHUB['METRICS_TOKEN'], 'proxies': settings.TRUSTED_PROXIES}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is False
    assert loaded["secure"] is True
    assert loaded["token"] == DUMMY_ENV["METRICS_TOKEN"]
    assert {DUMMY_ENV["ALLOWED_HOSTS"], "app", "localhost"} <= set(loaded["hosts"])


def test_exactly_one_beat(raw, services):
    beats = [
        name
        for name, service in services.items()
        if argv(service.get("command"))[:1] == ["celery"] and "beat" in argv(service.get("command"))
    ]
    assert beats == ["beat"]
    beat = raw["services"]["beat"]
    assert "scale" not in beat
    assert beat.get("deploy", {}).get("replicas", 1) == 1


def test_the_grafana_service(raw, services):
    env = environment(services["grafana"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == DUMMY_ENV["GRAFANA_ADMIN_PASSWORD"]
    assert raw["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GRAFANA_DB_PASSWORD"] == DUMMY_ENV["GRAFANA_DB_PASSWORD"]
    targets = {m.target: m for m in mounts(services["grafana"])}
    for directory in ("/etc/grafana/provisioning", "/var/lib/grafana/dashboards"):
        assert targets[directory].kind == "bind" and targets[directory].read_only, directory


# --- Prometheus' token file -----------------------------------------------------------------

TOKEN_FILE = "/etc/prometheus/secrets/metrics_token"


def test_prometheus_gets_the_apps_metrics_token(services):
    prometheus = services["prometheus"]
    assert environment(prometheus)["METRICS_TOKEN"] == environment(services["app"])["METRICS_TOKEN"]
    assert any(under(TOKEN_FILE, path) for path in tmpfs_paths(prometheus))
    assert TOKEN_FILE in argv(prometheus["entrypoint"])[2]


def test_the_prometheus_entrypoint_writes_the_token_file_then_starts_prometheus(services, tmp_path):
    """Run the entrypoint script with the container paths moved under tmp_path."""
    entrypoint = argv(services["prometheus"]["entrypoint"])
    assert entrypoint[:2] == ["/bin/sh", "-c"] and len(entrypoint) == 4
    script = entrypoint[2]
    assert "/etc/prometheus/secrets/" in script and "/bin/prometheus" in script
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    fake = tmp_path / "prometheus"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho "token variable: ${METRICS_TOKEN-unset}"\n')
    fake.chmod(0o755)
    script = script.replace("/etc/prometheus/secrets/", f"{secrets}/").replace(
        "/bin/prometheus", str(fake)
    )
    assert "/etc/prometheus" not in script
    command = argv(services["prometheus"]["command"])
    result = subprocess.run(
        ["sh", "-c", script, entrypoint[3], *command],
        env={"PATH": os.environ["PATH"], **environment(services["prometheus"])},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    token = secrets / "metrics_token"
    assert token.read_text() == DUMMY_ENV["METRICS_TOKEN"]  # no trailing newline
    assert token.stat().st_mode & 0o777 == 0o600
    assert f"args: {' '.join(command)}" in result.stdout
    assert "token variable: unset" in result.stdout
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


# --- .env.example ---------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    """NAME -> value of .env.example; commented-out `#NAME=value` lines count, as ''."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(#?)([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(2)] = "" if match.group(1) else match.group(3)
    return found


def test_env_example_lists_every_variable_compose_reads():
    missing = set(referenced_variables()) - set(env_example())
    # Optional settings passed through by name (`NAME:` with no value) must be listed too.
    passed = {
        variable
        for service in raw_compose()["services"].values()
        for variable, value in (service.get("environment") or {}).items()
        if value is None
    }
    missing |= passed - set(env_example())
    assert missing == set()


def test_env_example_leaves_every_secret_empty():
    example = env_example()
    for name in set(SECRETS) | OPTIONAL_SECRETS:
        assert example[name] == "", name


def test_every_env_example_variable_is_commented():
    """Each variable line belongs to a block of lines that starts with a comment."""
    commented = False
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            commented = False
        elif re.fullmatch(r"#?[A-Z][A-Z0-9_]*=.*", stripped):
            assert commented, f"no comment above: {line}"
        elif stripped.startswith("#"):
            commented = True


def test_env_example_with_its_secrets_filled_in_is_accepted(tmp_path):
    """cp .env.example .env, fill in the empty required values: compose accepts it."""
    env = {name: value for name, value in env_example().items() if value}
    for name in required_variables():
        env.setdefault(name, DUMMY_ENV[name])
    result = docker_compose(tmp_path, env, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_every_container_log_rotates(services):
    for name, service in services.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging["options"]["max-size"] and logging["options"]["max-file"], name
